/*
 * The tracer: the owner of the BPF skeleton. It finds each target's
 * allocator libraries, opens, configures, loads and attaches the programs,
 * reads the maps into raw samples, forgets what is gone, and detaches
 * everything on close. Its files (tracer.c, discover.c, pyprobes.c,
 * read.c, forget.c) share tracer_int.h.
 */
#ifndef MEMTOP_TRACER_H
#define MEMTOP_TRACER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "python.h"
#include "sample.h"
#include "unwind/unwinder.h"

struct tracer;

struct tracer_opts {
	const pid_t *pids;
	int npids;
	char *const *libs; /* --lib paths, probed in every target */
	int nlibs;
	unsigned long max_allocs;
	unsigned long max_stacks;
	bool verbose;
	bool show_allocator; /* the allocator's frame tops each stack */
	bool python_native;  /* C frames below Python frames walked too */
	bool entry_probes;   /* no probe placement past the first instruction */
	bool empty;	     /* benchmarks: programs that return at once */
	/*
	 * npids == 0: every process. filter: probe globally but record only
	 * the pids given (and, with follow, the children they fork).
	 */
	bool filter;
	bool follow;
	uint64_t min_size;     /* allocations below are not recorded */
	unsigned depth;	       /* frames captured per stack; 0 = all */
	uint32_t sample_every; /* record one in N allocations; 0/1 = all */
	uint64_t reclaim_ns; /* idle empty sites are deleted after this; 0 never
			      */
	enum python_mode python; /* --python */
	bool growth; /* --growth: page-fault programs, no allocator probes */
	uint64_t max_unwind_bytes; /* --max-unwind-mb; 0: frame pointers only */
};

/* How the BPF unwinder's walks ended (bpf/unwind.bpf.h, enum uw_end). */
#define UW_ENDS 6
struct tracer_unwind_stats {
	bool enabled;
	struct unwinder_stats tables;
	uint64_t ends[UW_ENDS]; /* outermost, no mapping, rule, read, fp, depth
				 */
};
void tracer_unwind_stats(struct tracer *t, struct tracer_unwind_stats *out);

int tracer_open(struct tracer **out, const struct tracer_opts *opts);
/* Aggregates and counters into raw (sites, procs with has_stats, counters). */
int tracer_read(struct tracer *t, struct raw_sample *raw);
int tracer_stack(struct tracer *t, const struct mt_site_key *key,
		 struct mt_stack *out);
/* The Python frames stored with a stack; 0 or -errno (-ENOENT). */
int tracer_pystack(struct tracer *t, const struct mt_site_key *key,
		   struct mt_py_stack *out);
/*
 * Every live block the maps hold (the "live" map: blocks allocated since
 * attach and not freed), one call each: O(live blocks), for --types only.
 */
int tracer_read_live(struct tracer *t,
		     void (*fn)(void *ctx, uint32_t tgid, uint64_t addr,
				uint64_t size, uint64_t stack_id),
		     void *ctx);
/* Delete a dead process's aggregates from the maps. */
void tracer_forget(struct tracer *t, uint32_t tgid);
/* tracer_forget for n processes at once: one walk of each map. */
void tracer_forget_many(struct tracer *t, const uint32_t *tgids, size_t n);
/*
 * Growth mode: trace one process exactly (uprobes on its allocator, its
 * faults no longer charged) or back in growth mode; 0 or -errno.
 */
int tracer_set_exact(struct tracer *t, uint32_t tgid, bool on);
/* Number of uprobes attached. */
int tracer_nprobes(const struct tracer *t);
void tracer_close(struct tracer *t);

#endif
