/*
 * The tracer: the one owner of the BPF skeleton. It finds each target's
 * allocator libraries, opens, configures, loads and attaches the programs,
 * reads the maps into raw samples, and detaches everything on close.
 */
#ifndef MEMTOP_TRACER_H
#define MEMTOP_TRACER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "python.h"
#include "sample.h"

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
	bool entry_probes; /* no probe placement past the first instruction */
	bool empty; /* benchmarks: programs that return at once */
	/*
	 * npids == 0: every process. filter: probe globally but record only
	 * the pids given (and, with follow, the children they fork).
	 */
	bool filter;
	bool follow;
	uint64_t min_size; /* allocations below are not recorded */
	unsigned depth; /* frames captured per stack; 0 = all */
	uint32_t sample_every; /* record one in N allocations; 0/1 = all */
	uint64_t reclaim_ns; /* idle empty sites are deleted after this; 0 never */
	enum python_mode python; /* --python (issue 7) */
};

int tracer_open(struct tracer **out, const struct tracer_opts *opts);
/* Aggregates and counters into raw (sites, procs with has_stats, counters). */
int tracer_read(struct tracer *t, struct raw_sample *raw);
int tracer_stack(struct tracer *t, const struct mt_site_key *key,
		 struct mt_stack *out);
/* The Python frames stored with a stack (issue 7); 0 or -errno (-ENOENT). */
int tracer_pystack(struct tracer *t, const struct mt_site_key *key,
		   struct mt_py_stack *out);
/* Delete a dead process's aggregates from the maps. */
void tracer_forget(struct tracer *t, uint32_t tgid);
/* Number of uprobes attached. */
int tracer_nprobes(const struct tracer *t);
void tracer_close(struct tracer *t);

#endif
