/*
 * The one interface every output has: opened before anything is attached
 * (so a bad path or a port in use ends memtop before it traces), given each
 * refresh's snapshot, and closed with the last one. main wires the outputs
 * the command line asks for from one table; a new output is one instance.
 */
#ifndef MEMTOP_OUTPUT_H
#define MEMTOP_OUTPUT_H

#include <stdbool.h>
#include <linux/types.h> /* memtop.h, reached through snapshot.h, needs __u32 */
#include "config.h"
#include "snapshot.h"

/* write(): the reader has gone (a closed pipe): stop after this refresh. */
#define OUTPUT_STOP 1

struct output_ops {
	const char *name;
	/* Does the command line ask for it? */
	bool (*wanted)(const struct config *cfg);
	/* 0, or -errno with one line on stderr naming the problem. */
	int (*open)(void **ctx, const struct config *cfg);
	/*
	 * Each refresh (NULL: none): 0, OUTPUT_STOP, or -errno when memtop
	 * must end with an error (said on stderr). An output that can go on
	 * without its file says so once and returns 0.
	 */
	int (*write)(void *ctx, const struct snapshot *s);
	/* At the end with the last snapshot (NULL when there was none):
	 * 0, or -errno said on stderr. Frees ctx. */
	int (*close)(void *ctx, const struct snapshot *last);
};

/* In the order they are opened, written and closed. */
extern const struct output_ops output_folded, output_pprof, output_http,
	output_csv, output_batch;

/* Is the HTTP endpoint the only consumer (a daemon: no screen needed)? */
bool output_http_wanted(const struct config *cfg);

#endif
