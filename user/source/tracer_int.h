/*
 * The tracer's own state, shared by the files that make it up (tracer.h is
 * its interface to the rest of memtop). The tracer owns the BPF skeleton
 * and is split by job:
 *   tracer.c   the skeleton's lifecycle: open, size and load the programs,
 *              attach the process tracepoints, the event thread (exec and
 *              fork events start discovery), teardown;
 *   discover.c which files each process maps and which of them to probe
 *              (one walk of /proc/PID/maps for the -p precheck and the
 *              attach), attaching those probes, growth mode's switch;
 *   pyprobes.c CPython processes: frames enabled, the allocator-table
 *              probes that follow PyMem_SetAllocator, what cannot be seen;
 *   read.c     one refresh's reads of the maps into a raw sample, stacks;
 *   forget.c   what leaves the maps: gone processes' blocks (the sweep),
 *              their sites and stacks, idle sites (reclaim).
 */
#ifndef MEMTOP_TRACER_INT_H
#define MEMTOP_TRACER_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <bpf/libbpf.h>
#include "bpfmap.h"
#include "procfs.h"
#include "tracer.h"
/* Names of exited processes, from their exit events (a small cache). */
#define NCOMMS	 4096
#define ITER_BUF (256 * 1024) /* read() size for the sites iterator */
struct comm_entry {
	__u32 tgid;
	char comm[16];
};

struct retired;
struct py_probes;

struct tracer {
	struct tracer_opts opts;
	struct retired *retired; /* reclaimed sites' counts, per process */
	int nretired;
	uint64_t reclaim_races;
	/* The maps-full counters at the last read: when they grew, idle
	 * empty sites give their room back sooner (forget_idle). */
	uint64_t full_seen;
	bool full_pressure;
	int *fds;	   /* uprobe_multi links */
	pid_t *fd_pids;	   /* whose probes each is (-1: every process) */
	bool uprobe_multi; /* else one perf-event uprobe per function */
	bool session;	   /* uprobe sessions (6.13+): pymalloc's returns */
	bool fexit;	   /* fexit programs attach (the mmap syscalls') */
	int nfds;
	size_t fds_cap, fd_pids_cap;
	struct growth *growth; /* --growth: the fault programs' attachments */
	int nprobes;
	bool global; /* probes attached for every process (pid -1) */
	struct file_set *sets;
	int nsets;
	struct ring_buffer *rb;
	pthread_t thread;
	bool thread_running;
	volatile bool stop_thread;
	pthread_mutex_t lock; /* links, sets, comms: the event thread's too */
	struct comm_entry comms[NCOMMS];
	struct memtop_bpf *skel;
	struct bpf_link **links;
	int nlinks;
	size_t links_cap;
	int ncpus;
	uint64_t *percpu;	     /* scratch for per-CPU lookups */
	struct bpfmap_buf batch;     /* whole-map reads */
	struct bpf_link *sites_iter; /* dump_sites on the sites map, or NULL */
	bool flush_warned;
	char *iter_buf;
	struct unwinder *uw;   /* unwind tables, or NULL (--max-unwind-mb 0) */
	uint64_t uw_synced_ns; /* last re-read of the traced mappings */
	/* System-wide growth: growers whose tables could not be loaded. */
#define UW_FAILED 64
	uint32_t uw_failed[UW_FAILED];
	unsigned uw_nfailed;
	/* The candidates of the last read, by tgid, with what they had
	 * touched: a grower is one that touched more since. */
	struct uw_grower {
		uint32_t tgid;
		uint64_t touched;
	} * uw_prev;
	size_t uw_nprev;
	/* Processes given Python frames ("py_procs"): the only ones whose
	 * sites have Python stacks to look up (t->lock). */
	uint32_t *py_pids;
	size_t npy_pids, py_pids_cap;
	/* Named Go programs: the notes say their heap is not seen. */
	uint32_t *go_pids;
	size_t ngo_pids, go_pids_cap;
	struct py_probes *pyp; /* CPython allocator table probes, per pid */
	int npyp;
	/* The sweep of gone processes' blocks (forget_sweep), from the event
	 * thread and from reads. */
	pthread_mutex_t sweep_lock;
	struct bpfmap_buf sweep_batch;
	uint32_t swept_epoch; /* live_epoch as of the last sweep */
	uint64_t swept_ns;
	bool sweep_warned;
};

/* The files probed for one process (or every process), by device and inode:
 * each is probed once a set, as two probes on one instruction count twice. */
struct file_id {
	dev_t dev;
	ino_t ino;
};

struct file_set {
	pid_t pid; /* whose probes (-1: every process) */
	struct file_id *ids;
	int n;
};

/* tracer.c */
/* Close probe link fds from parallel threads (each waits a grace period). */
void tracer_close_fds(int *fds, int n);

/* discover.c; t->lock held, or no event thread yet. */
/* Refuse what can be refused before the BPF programs load; 0 or -errno. */
int discover_precheck(const struct tracer_opts *o);
/* Could a target be (or become) a CPython process? *pid: the first that
 * maps a CPython runtime, 0 if none is known. */
bool discover_python_possible(const struct tracer_opts *o, pid_t *pid);
/* Probe the allocator files pid maps (and check it for CPython): the
 * number of functions probed, or -errno. */
int discover_pid(struct tracer *t, pid_t pid);
/* The --lib files, probed for pid (-1: every process). */
int discover_libs(struct tracer *t, pid_t pid);
/* A -p target: discover_pid and discover_libs, errors said and fatal. */
int discover_target(struct tracer *t, pid_t pid);
void discover_note_go(struct tracer *t, struct raw_sample *raw);
void discover_forget_go(struct tracer *t, uint32_t tgid);
/* Every process (system-wide). */
int discover_system(struct tracer *t);
/* Load pid's mappings' unwind tables (when there is an unwinder). */
int discover_unwind(struct tracer *t, pid_t pid);
/* Has pid a file set of its own (a -p target, an exact growth process)? */
bool discover_has_set(struct tracer *t, pid_t pid);
/* Open the file pid maps at e as the process maps it; fd or -errno. */
int discover_open_mapping(pid_t pid, const struct maps_entry *e);
/* n probes of prog on path in pid (-1: all): uprobe_multi (or session)
 * links, else a perf-event uprobe each; their fds go to t->fds. */
int discover_attach(struct tracer *t, struct bpf_program *prog, pid_t pid,
		    const char *path, const uint64_t *offs,
		    const uint64_t *cookies, int n, bool ret, bool session);

/* pyprobes.c */
/* path, mapped by pid at start: a CPython runtime? Then its frames, and
 * its allocator tables' functions probed. */
void pyprobes_check(struct tracer *t, pid_t pid, const char *path,
		    uint64_t start);
/* Are pid's allocator tables probed (and not CPython's API functions)? */
bool pyprobes_tables(struct tracer *t, pid_t pid);
/* Has pid Python frames (t->lock held)? */
bool pyprobes_has(const struct tracer *t, uint32_t pid);
/* Probe the tables' new functions where a process changed them. */
void pyprobes_follow(struct tracer *t);
/* Each CPython process's "not seen" note into raw. */
void pyprobes_note(struct tracer *t, struct raw_sample *raw);
/* Forget tgid's Python state and its anonymous-mmap entry. */
void pyprobes_forget(struct tracer *t, uint32_t tgid);
/* Detach every table probe and free them (teardown). */
void pyprobes_close(struct tracer *t);

/* forget.c */
/* Forget gone processes' blocks (force: wait for a sweep under way). */
void forget_sweep(struct tracer *t, bool force);
/* Delete tgid's sites of one kind (-1: all) and their stacks. */
void forget_sites(struct tracer *t, uint32_t tgid, int kind);
/* Reclaimed sites' counts back into their processes' figures. */
void forget_add_retired(struct tracer *t, struct raw_sample *raw);
/* Delete the sites of raw that hold nothing and have been idle long. */
void forget_idle(struct tracer *t, struct raw_sample *raw);

#endif
