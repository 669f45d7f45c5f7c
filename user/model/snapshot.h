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
	const char *func;     /* demangled, without parameters; never NULL */
	const char *location; /* "file.c:42" or "[module+0x1a2b]"; never NULL */
	const char *module;   /* basename of the mapped file, or "" */
	/* The same, for outputs that keep them apart (pprof); NULL when
	 * unknown. */
	const char *file;     /* source file basename */
	int line;	      /* 0 when unknown */
	const char *path;     /* the mapped file as the process maps it */
	const char *build_id; /* GNU build id in hex */
	uint64_t offset;      /* ip's offset in that file */
	/* A JIT's function from the process's perf map (JavaScript under
	 * node), which names its site as a Python frame does. */
	bool jit_func;
};

struct snap_site {
	uint32_t pid;
	uint64_t stack_id; /* 0: the stack was not captured */
	char site_id[17];  /* stack_id in hex: stable for the whole run */
	int64_t outstanding_bytes;
	int64_t outstanding_allocs;
	uint64_t allocs, frees, alloc_bytes, free_bytes; /* cumulative */
	/* Of the frees, those made by CPython's cyclic garbage collector
	 * (cumulative): near all of them means the site's objects live in
	 * reference cycles until a collection. */
	uint64_t gc_frees, gc_free_bytes;
	double growth_bps; /* outstanding bytes per second, recent or since
			      baseline */
	double alloc_rate,
		free_rate; /* calls per second over the last interval */
	double age_s;	   /* seconds since the site's first allocation */
	/* Outstanding bytes, oldest first: ntrend values in a buffer owned by
	 * the snapshot (rows stay small to sort; a copy kept past the next
	 * refresh must copy the values too). */
	int64_t *trend;
	int ntrend;
	bool suspect; /* rose in most of the recent refreshes */
	/* Growth mode: a stack whose page faults are counted, not its
	 * allocations. outstanding_bytes, the trend and growth_bps then hold
	 * its TOUCHED bytes and their rate; the allocation figures are 0. */
	bool touched;
	uint64_t touched_bytes; /* bytes of new pages first touched since attach
				 */
	const char *function;	/* frames[0].func, or a placeholder */
	const char *location;
	/* Rows of the process sharing function and location: what tells this
	 * one apart ("via caller", "in frame", "#site_id"); else NULL. */
	const char *via;
	int name_frame; /* frames[name_frame] gave function and location */
	int nframes;
	const struct snap_frame
		*frames; /* innermost (the allocator's caller) first */
};

/* A site that allocated live objects of a type (--types). */
struct snap_type_site {
	uint64_t stack_id;
	int64_t objects, bytes;
	const char *function, *location; /* the site's; never NULL */
};

/* Live objects of one type in one process, allocated since attach. */
struct snap_type {
	uint32_t pid;
	const char *name; /* tp_name, or the qualified name of a class */
	int64_t objects, bytes;
	double growth_objs; /* objects per second, recent or since baseline */
	double growth_bps;
	int64_t delta_objects; /* since the baseline, or since first seen */
	int nsites;
	const struct snap_type_site *sites; /* most objects first */
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
	int64_t mmap_bytes; /* anonymous mmap outside the allocator */
	/* Highest outstanding bytes since attach, and within the last
	 * interval (blocks allocated and freed between two samples count),
	 * never below outstanding_bytes; how long ago the peak was reached
	 * (100 ms resolution). */
	int64_t peak_bytes, interval_peak_bytes;
	double peak_ago_s;
	/* What memtop cannot see in this process ("; "-separated), or "":
	 * said wherever its figures are. */
	char not_seen[256];
	/* Resources beside memory, from /proc: files (sockets, pipes) open and
	 * threads, and their change since the first sample (or the baseline).
	 */
	bool has_resources;
	uint32_t open_fds, threads;
	int32_t fds_growth, threads_growth;
	/* CPython's cyclic collector: collections run (cumulative, and in the
	 * last interval) and what it freed of the traced blocks. */
	/* --types: live blocks named by type, untyped (not an object, or a
	 * header that did not validate), not read yet; types refused. */
	bool has_types;
	uint64_t obj_typed, obj_untyped, obj_unread, bad_types;
	bool has_gc;
	uint64_t gc_collections, gc_frees, gc_free_bytes;
	uint64_t gc_delta_collections, gc_delta_bytes;
	/* Growth mode. growth (and not exact): the trend, growth_bps and
	 * delta_bytes follow touched_bytes. */
	bool growth; /* its page faults are charged */
	bool exact;  /* switched to exact tracing from the live view */
	uint64_t touched_bytes, touched_faults;
	uint64_t returned_bytes, returned_calls; /* munmap, madvise, brk */
	int64_t rss_change; /* RSS now minus RSS when first seen */
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
	double elapsed_s;     /* since tracing started */
	double interval_s;    /* since the previous snapshot */
	uint64_t seq;	      /* 1 for the first snapshot */
	unsigned scale; /* 1: exact; N (--sample N): figures are estimates, x N
			 */
	uint64_t min_size; /* --min-size: blocks below not counted; 0 = all */
	unsigned depth; /* --depth: stacks cut to this many frames; 0 = whole */
	/* Frames at the start of every stack that are the allocator's own
	 * (--show-allocator): 0 or 1. */
	int allocator_frames;
	/* memtop's own cost: CPU time of this process (user + system) and
	 * the kernel memory its BPF maps and programs hold (0: not read). */
	double self_cpu_s;
	uint64_t self_kernel_bytes;
	uint64_t lost[MT_CNT_NR];
	uint64_t recursion_misses;
	uint64_t lost_total; /* every lost event except unknown frees */
	bool baseline;	     /* growth is since the baseline */
	/* --growth: "growth mode: RSS growth by stack from page faults, no
	 * allocator probes" (SNAP_GROWTH_LABEL) on every view. */
	bool growth;
	uint64_t touched_bytes; /* over all processes */
	int nprocs;
	struct snap_proc *procs; /* sorted by outstanding bytes */
	int nsites;
	struct snap_site *sites; /* all processes, sorted by the sort field */
	bool types_on; /* objects by type were read (--types, or the view) */
	int ntypes;
	struct snap_type *types; /* by live objects, most first */
	/* Totals over all traced processes. */
	int64_t outstanding_bytes, outstanding_allocs;
	uint64_t allocs, frees;
	double alloc_rate, free_rate;
	uint64_t rss_bytes;
};

#define SNAP_GROWTH_LABEL                                                      \
	"growth mode: RSS growth by stack from page faults, no allocator "     \
	"probes"

const char *sort_field_name(enum sort_field f);
/* Does a process of s have CPython's collector figures (GC% applies)? */
bool snapshot_has_gc(const struct snapshot *s);
/* AVG: the mean outstanding block, 0 without blocks. */
double snapshot_avg(int64_t bytes, int64_t blocks);
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
void snapshot_sort_sites_from(struct snap_site *sites, int n, enum sort_field f,
			      bool reverse, const uint32_t *start,
			      uint32_t *order);

#endif
