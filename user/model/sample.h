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
#include "clock.h"
#include "memtop.h"

struct raw_site {
	struct mt_site_key key;
	struct mt_stats st;
};

/* Frees a site's blocks got from CPython's cyclic collector (cumulative). */
struct raw_gc {
	struct mt_site_key key;
	struct mt_gc gc;
};

/*
 * Live objects of one type in one process (--types): the type's name
 * (owned by the object reader, valid until the next sample), and the sites
 * that allocated them, sites[first_site .. first_site + nsites) of
 * raw_sample.type_sites.
 */
struct raw_type {
	uint32_t pid;
	const char *name;
	int64_t objects, bytes;
	size_t first_site, nsites;
};

struct raw_type_site {
	uint64_t stack_id;
	int64_t objects, bytes;
};

struct raw_proc {
	uint32_t tgid;
	bool alive;	/* /proc/PID still exists (and is the same process) */
	bool has_stats; /* the BPF side has seen an allocation */
	struct mt_stats st;
	uint64_t rss_bytes;
	/* RSS when memtop began counting this process's faults and
	 * allocations (the attach, or its start for a command memtop ran):
	 * given once, in the first sample that has the process alive. */
	bool has_rss_base;
	uint64_t rss_base;
	int64_t anon_bytes; /* anonymous mmap outside the allocator */
	/* Growth mode: sums of its MT_SITE_TOUCHED sites, and memory it
	 * handed back to the kernel (address-range bytes). */
	uint64_t touched_bytes, touched_faults;
	uint64_t returned_bytes, returned_calls;
	bool exact; /* growth mode: switched to exact tracing */
	/* Highest outstanding bytes since attach (when, CLOCK_MONOTONIC ns at
	 * 100 ms resolution) and since the previous read, blocks still
	 * pending included (struct mt_peak). */
	bool has_peak;
	int64_t peak_bytes, interval_peak_bytes;
	uint64_t peak_ns;
	/* What memtop cannot see in this process ("; "-separated), or "". */
	char not_seen[256];
	uint32_t uid;	    /* real uid, from /proc/PID/status */
	bool has_resources; /* open_fds and threads were read */
	uint32_t open_fds, threads;
	/* --types: live blocks since attach named by type, not objects (or
	 * refused: a header that does not validate), not read yet; types
	 * refused (unreadable, or not a type). */
	bool has_types;
	uint64_t obj_typed, obj_untyped, obj_unread, bad_types;
	bool has_gc; /* a CPython whose collector state memtop reads */
	uint64_t gc_collections; /* cumulative, all generations */
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
	struct raw_gc *gcs;
	size_t ngcs, gcs_cap;
	struct raw_type *types;
	size_t ntypes, types_cap;
	struct raw_type_site *type_sites;
	size_t ntype_sites, type_sites_cap;
	uint64_t counters[MT_CNT_NR];
	uint64_t recursion_misses; /* summed over the BPF programs */
	/* memtop's own CPU time and its BPF objects' kernel memory, when the
	 * source read them (procfs_self_cost). */
	double self_cpu_s;
	uint64_t self_kernel_bytes;
};

void sample_reset(struct raw_sample *s);
int sample_add_site(struct raw_sample *s, const struct raw_site *site);
int sample_add_gc(struct raw_sample *s, const struct raw_gc *g);
int sample_add_type(struct raw_sample *s, const struct raw_type *t);
int sample_add_type_site(struct raw_sample *s, const struct raw_type_site *t);
struct raw_proc *sample_add_proc(struct raw_sample *s, uint32_t tgid);
struct raw_proc *sample_find_proc(struct raw_sample *s, uint32_t tgid);
/* Keep only the processes keep() accepts, and their sites. */
int sample_filter(struct raw_sample *s,
		  bool (*keep)(void *ctx, const struct raw_proc *p), void *ctx);
void sample_free(struct raw_sample *s);

#endif
