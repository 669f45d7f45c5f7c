/*
 * The snapshot: the collector's model of one refresh, everything a view
 * needs and nothing it has to compute or look up. Views only read it;
 * it stays valid until the next collector_update() or collector_free().
 */
#ifndef MEMTOP_SNAPSHOT_H
#define MEMTOP_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "memtop.h"

#define SNAP_TREND 32 /* refreshes of history kept per site and process */

struct snap_frame {
	uint64_t ip;
	const char *func; /* demangled, without parameters; never NULL */
	const char *location; /* "file.c:42" or "[module+0x1a2b]"; never NULL */
	const char *module; /* basename of the mapped file, or "" */
};

struct snap_site {
	uint32_t pid;
	uint64_t stack_id; /* 0: the stack was not captured */
	char site_id[17]; /* stack_id in hex: stable for the whole run */
	int64_t outstanding_bytes;
	int64_t outstanding_allocs;
	uint64_t allocs, frees, alloc_bytes, free_bytes; /* cumulative */
	double growth_bps; /* outstanding bytes per second, recent or since baseline */
	double alloc_rate, free_rate; /* calls per second over the last interval */
	double age_s; /* seconds since the site's first allocation */
	/* Outstanding bytes, oldest first: ntrend values in a buffer owned by
	 * the snapshot (rows stay small to sort; a copy kept past the next
	 * refresh must copy the values too). */
	int64_t *trend;
	int ntrend;
	bool suspect; /* rose in most of the recent refreshes */
	const char *function; /* frames[0].func, or a placeholder */
	const char *location;
	int nframes;
	const struct snap_frame *frames; /* innermost (the allocator's caller) first */
};

struct snap_proc {
	uint32_t pid;
	bool alive;
	uint32_t uid; /* real uid, while it was alive */
	char comm[16];
	char cmdline[256];
	int64_t outstanding_bytes;
	int64_t outstanding_allocs;
	uint64_t allocs, frees, alloc_bytes, free_bytes;
	int64_t delta_bytes, delta_allocs; /* since the previous refresh */
	double growth_bps;
	double alloc_rate, free_rate;
	uint64_t rss_bytes;
	int64_t mmap_bytes; /* anonymous mmap outside the allocator (issue 7) */
	int64_t trend[SNAP_TREND];
	int ntrend;
	int nsites;
	int nsuspects;
};

enum sort_field {
	SORT_OUTSTANDING = 0,
	SORT_COUNT,
	SORT_GROWTH,
	SORT_ALLOC_RATE,
	SORT_FREE_RATE,
	SORT_AVG,
	SORT_AGE,
	SORT_FUNCTION,
	SORT_NR,
};

struct snapshot {
	struct timespec wall; /* when the maps were read */
	double elapsed_s; /* since tracing started */
	double interval_s; /* since the previous snapshot */
	uint64_t seq; /* 1 for the first snapshot */
	unsigned scale; /* 1: exact; N (--sample N): figures are estimates, x N */
	uint64_t min_size; /* --min-size: blocks below not counted; 0 = all */
	unsigned depth; /* --depth: stacks cut to this many frames; 0 = whole */
	uint64_t lost[MT_CNT_NR];
	uint64_t recursion_misses;
	uint64_t lost_total; /* every lost event except unknown frees */
	bool baseline; /* growth is since the baseline */
	int nprocs;
	struct snap_proc *procs; /* sorted by outstanding bytes */
	int nsites;
	struct snap_site *sites; /* all processes, sorted by the sort field */
	/* Totals over all traced processes. */
	int64_t outstanding_bytes, outstanding_allocs;
	uint64_t allocs, frees;
	double alloc_rate, free_rate;
	uint64_t rss_bytes;
};

const char *sort_field_name(enum sort_field f);
/*
 * The cheaper modes in force, for every view to label its figures with:
 * "estimated (1 in N sampled)", "blocks >= N B only", "stacks cut at N
 * frames", comma-separated; "" when none. Returns buf.
 */
char *snapshot_modes(const struct snapshot *s, char *buf, size_t len);
int sort_field_parse(const char *s, enum sort_field *out);
/* Sort sites in place; reverse for ascending. */
void snapshot_sort_sites(struct snap_site *sites, int n, enum sort_field f,
			 bool reverse);
/*
 * The same, starting from the rows in the order start[0..n) (a permutation
 * of 0..n-1, or NULL): the sort is near-linear when that order is already
 * nearly sorted, as last refresh's order is. order (may be start, or NULL)
 * receives, for each sorted position, the index the row had before.
 */
void snapshot_sort_sites_from(struct snap_site *sites, int n,
			      enum sort_field f, bool reverse,
			      const uint32_t *start, uint32_t *order);

#endif
