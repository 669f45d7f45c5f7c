/*
 * A raw sample: what the tracer's maps and /proc said at one instant, as
 * plain data. It is the only thing that crosses from the source (tracer.c,
 * procfs.c) to the collector, which therefore needs neither libbpf nor /proc.
 */
#ifndef MEMTOP_SAMPLE_H
#define MEMTOP_SAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <linux/types.h>
#include "memtop.h"

struct raw_site {
	struct mt_site_key key;
	struct mt_stats st;
};

struct raw_proc {
	uint32_t tgid;
	bool alive; /* /proc/PID still exists (and is the same process) */
	bool has_stats; /* the BPF side has seen an allocation */
	struct mt_stats st;
	uint64_t rss_bytes;
	int64_t anon_bytes; /* anonymous mmap outside the allocator (issue 7) */
	uint32_t uid; /* real uid, from /proc/PID/status */
	char comm[16];
	char cmdline[256];
};

struct raw_sample {
	uint64_t mono_ns; /* CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns */
	struct timespec wall; /* CLOCK_REALTIME at the same instant */
	struct raw_site *sites;
	size_t nsites, sites_cap;
	struct raw_proc *procs;
	size_t nprocs, procs_cap;
	uint64_t counters[MT_CNT_NR];
	uint64_t recursion_misses; /* summed over the BPF programs */
};

void sample_reset(struct raw_sample *s);
int sample_add_site(struct raw_sample *s, const struct raw_site *site);
struct raw_proc *sample_add_proc(struct raw_sample *s, uint32_t tgid);
struct raw_proc *sample_find_proc(struct raw_sample *s, uint32_t tgid);
/* Keep only the processes keep() accepts, and their sites. */
int sample_filter(struct raw_sample *s,
		  bool (*keep)(void *ctx, const struct raw_proc *p), void *ctx);
void sample_free(struct raw_sample *s);

/* CLOCK_MONOTONIC in ns: the clock raw samples are stamped with. */
uint64_t mono_ns(void);

#endif
