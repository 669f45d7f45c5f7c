/*
 * The collector: memtop's model. It turns raw samples into snapshots:
 * per-site and per-process rates, growth, trends, leak suspects and a
 * baseline, and the frames of each site, fetched and symbolized once through
 * the hooks it is given. It knows nothing of libbpf or curses.
 */
#ifndef MEMTOP_COLLECTOR_H
#define MEMTOP_COLLECTOR_H

#include <stdbool.h>
#include "sample.h"
#include "snapshot.h"
#include "symbolizer.h"

struct collector;

struct collector_hooks {
	void *ctx;
	/* Frames of a site's stack; 0 or -errno. */
	int (*stack)(void *ctx, const struct mt_site_key *key,
		     struct mt_stack *out);
	/* Names for a frame; strings are copied by the collector. */
	int (*symbolize)(void *ctx, uint32_t pid, uint64_t ip,
			 struct sym_info *out);
};

struct collector_opts {
	enum sort_field sort;
	bool reverse;
	int growth_window;  /* refreshes over which GROWTH is measured */
	int suspect_window; /* refreshes looked at for leak suspects */
	uint64_t start_ns;  /* CLOCK_MONOTONIC when tracing started; 0 = first
			       update */
	int function_frame; /* frame naming the site: 1 when stacks start in the
			       allocator */
	unsigned scale; /* --sample N: figures multiplied by N (estimates); 0/1
			   exact */
	uint64_t min_size; /* --min-size: smaller blocks not recorded (0 = all)
			    */
	unsigned
		depth; /* --depth: stacks cut to this many frames (0 = whole) */
	bool growth; /* --growth: sites of kind MT_SITE_TOUCHED, page faults */
	/* Allocator wrappers (symbol/wrappers.h): a site is named after the
	 * first frame outside them; NULL = the innermost frame. */
	const struct wrappers *skip;
};

int collector_new(struct collector **out, const struct collector_opts *opts,
		  const struct collector_hooks *hooks);
/* Fold a raw sample in; the returned snapshot is valid until the next call. */
int collector_update(struct collector *c, const struct raw_sample *raw,
		     const struct snapshot **out);
/* The latest snapshot again, re-sorted (no new reading). */
const struct snapshot *collector_snapshot(struct collector *c);
void collector_set_sort(struct collector *c, enum sort_field f, bool reverse);
/* Set the baseline at the latest snapshot; clear it when on is false. */
void collector_set_baseline(struct collector *c, bool on);
/* Collapse sites by function (stacks that share frames[0].func). */
void collector_set_collapse(struct collector *c, bool on);
/*
 * Does the model still hold this site? A row copied out of a snapshot keeps
 * pointers to the site's names and frames, valid only while it does: sites
 * go when their process is forgotten or the tracer reclaimed them.
 */
bool collector_has_site(struct collector *c, uint32_t pid, uint64_t stack_id);
/* Drop a process and its sites (it exited and has been shown). */
void collector_forget(struct collector *c, uint32_t pid);
void collector_free(struct collector *c);

#endif
