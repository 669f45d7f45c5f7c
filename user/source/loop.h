/*
 * The one refresh loop: paces the source's refreshes every interval for
 * batch mode and the live screen alike. Batch runs it without a view; the
 * screen gives it a view that draws each snapshot and reads keys while the
 * loop waits.
 */
#ifndef MEMTOP_LOOP_H
#define MEMTOP_LOOP_H

#include <signal.h>
#include <stdbool.h>
#include "snapshot.h"

/* refresh's answer when an output failed: stop at once, no error. */
#define LOOP_FAILED 1
/* show's answer when every target has exited: refresh no more. */
#define LOOP_GONE 1

struct loop_opts {
	double interval_s;
	long iterations; /* -n: stop after this many refreshes; 0 = never */
	/*
	 * Batch: the first sample comes one interval in (its rates cover an
	 * interval), a signal still gets a final sample, and the loop ends
	 * when gone() says the targets are gone. The screen: a first sample
	 * at once, a signal quits, and the view tells when they are gone.
	 */
	bool batch;
	/* A new snapshot into *out: 0, LOOP_FAILED, or -errno (the loop
	 * returns it). */
	int (*refresh)(void *ctx, const struct snapshot **out);
	bool (*gone)(void *ctx);
	void *ctx;
};

struct loop_view {
	void *ctx;
	/* Show a new snapshot: 0, LOOP_GONE, or -errno (the loop returns
	 * it). */
	int (*show)(void *ctx, const struct snapshot *s);
	/* Up to ms ms of the user's keys; true to quit. */
	bool (*wait)(void *ctx, int ms);
};

/* The loop's state; its fields are the loop's own. */
struct loop {
	const struct loop_opts *o;
	double interval, next, last;
	long n;
	bool asked;
};

void loop_init(struct loop *l, const struct loop_opts *o);
/* Refreshes until a signal (*stop), -n, the targets are gone (batch) or
 * the view quits. 0 or -errno. */
int loop_run(struct loop *l, const struct loop_view *v,
	     volatile sig_atomic_t *stop);

/* For the view: a refresh now; a new interval, from the last refresh. */
void loop_refresh_now(struct loop *l);
void loop_set_interval(struct loop *l, double s);
double loop_interval(const struct loop *l);

#endif
