/*
 * The tracer owns the BPF skeleton: it opens it, sizes the maps, loads it,
 * finds in each target the mapped files that export allocator entry points
 * (libc, libstdc++, jemalloc, a static executable, or what --lib names),
 * attaches uprobes and uretprobes filtered by PID, reads the aggregate maps
 * into raw samples and detaches everything on close. It is the only file
 * that knows the skeleton.
 */
#define _GNU_SOURCE /* O_PATH */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/perf_event.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "array.h"
#include "bpfmap.h"
#include "memtop.skel.h"
#include "growth.h"
#include "placement.h"
#include "probes.h"
#include "unwind/unwinder.h"
#include "procfs.h"
#include "python.h"
#include "python/pymalloc.h"
#include "tracer.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524 /* the kernel's, seen by bpf(2) callers */
#endif

_Static_assert(sizeof(struct mt_site_key) == 16, "mt_site_key ABI");
_Static_assert(sizeof(struct mt_stack) == 8 + 8 * MEMTOP_MAX_FRAMES,
	       "mt_stack ABI");
_Static_assert(sizeof(struct mt_stack_short) == 8 + 8 * MEMTOP_SHORT_FRAMES,
	       "mt_stack_short ABI");
_Static_assert(sizeof(struct mt_stats) == 64, "mt_stats ABI");
_Static_assert(sizeof(struct mt_peak) == 72, "mt_peak ABI");
_Static_assert(sizeof(struct mt_live_key) == 16, "mt_live_key ABI");
_Static_assert(sizeof(struct mt_live) == 24, "mt_live ABI");
_Static_assert(sizeof(struct mt_region) == 16, "mt_region ABI");
_Static_assert(sizeof(struct mt_forget_buf) == 8 + 16 * MT_FORGET_MAX,
	       "mt_forget_buf ABI");
_Static_assert(sizeof(struct mt_inflight) == 56, "mt_inflight ABI");
_Static_assert(sizeof(struct mt_site_rec) == 80, "mt_site_rec ABI");
_Static_assert(sizeof(struct mt_event) == 24, "mt_event ABI");
_Static_assert(sizeof(struct mt_py_proc) == 88, "mt_py_proc ABI");
_Static_assert(sizeof(struct mt_pymalloc) == 32, "mt_pymalloc ABI");
_Static_assert(sizeof(struct mt_gc) == 16, "mt_gc ABI");
_Static_assert(sizeof(struct mt_py_frame) == 16, "mt_py_frame ABI");
_Static_assert(sizeof(struct mt_py_stack) == 8 + 16 * MT_PY_MAX_FRAMES,
	       "mt_py_stack ABI");
_Static_assert(sizeof(struct mt_anon) == 32, "mt_anon ABI");
_Static_assert(sizeof(struct mt_unwind_row) == 8, "mt_unwind_row ABI");
_Static_assert(sizeof(struct mt_unwind_map) == 48, "mt_unwind_map ABI");
_Static_assert(sizeof(struct mt_unwind_fence) == 8, "mt_unwind_fence ABI");
_Static_assert(sizeof(struct mt_unwind_proc) == 8 + 48 * MT_UW_MAPS,
	       "mt_unwind_proc ABI");

struct file_set;
struct tracer;

/* Defined with tracer_pystack. */
static void read_anon(struct tracer *t, struct raw_sample *raw);
static void read_gc(struct tracer *t, struct raw_sample *raw);
static void read_peaks(struct tracer *t, struct raw_sample *raw,
		       uint64_t epoch);
static void tracer_python_forget(struct tracer *t, uint32_t tgid);
struct py_probes;
static struct py_probes *pyp_find(struct tracer *t, pid_t pid);

/* Names of exited processes, from their exit events (a small cache). */
#define NCOMMS	 4096
#define ITER_BUF (256 * 1024) /* read() size for the sites iterator */
struct comm_entry {
	__u32 tgid;
	char comm[16];
};

struct retired;

struct tracer {
	struct tracer_opts opts;
	struct retired *retired; /* reclaimed sites' counts, per process */
	int nretired;
	uint64_t reclaim_races;
	int *fds;	   /* uprobe_multi links */
	pid_t *fd_pids;	   /* whose probes each is (-1: every process) */
	bool uprobe_multi; /* else one perf-event uprobe per function */
	bool session;	   /* uprobe sessions (6.13+): pymalloc's returns */
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
	struct py_probes *pyp; /* CPython allocator table probes, per pid */
	int npyp;
	/* The sweep of gone processes' blocks (tracer_sweep), from the event
	 * thread and from reads. */
	pthread_mutex_t sweep_lock;
	struct bpfmap_buf sweep_batch;
	uint32_t swept_epoch; /* live_epoch as of the last sweep */
	uint64_t swept_ns;
	bool sweep_warned;
};

/*
 * The probes on what a CPython process's allocator tables point at (see
 * python_alloc_fns), kept apart from the file probes: they follow the
 * tables, detached and attached again when the process changes them.
 */
struct py_probes {
	pid_t pid;
	int n;
	struct python_alloc_fn fns[PYTHON_MAX_ALLOC_FNS];
	int fds[2 * PYTHON_MAX_ALLOC_FNS];
	int nfds;
	bool warned;	    /* the tables could not be followed */
	bool inlined;	    /* the build inlines what the tables hold now */
	bool fallback;	    /* no tables: CPython's API functions are probed */
	bool pm_tried;	    /* pymalloc's usedpools looked for */
	uint64_t usedpools; /* found there (0: not): see bpf/pymalloc.bpf.h */
};

static int add_link(struct tracer *t, struct bpf_link *l)
{
	if (ARRAY_RESERVE(t->links, t->links_cap, (size_t)t->nlinks + 1))
		return -ENOMEM;
	t->links[t->nlinks++] = l;
	return 0;
}

static int add_fd(struct tracer *t, int fd, pid_t pid)
{
	if (ARRAY_RESERVE(t->fds, t->fds_cap, (size_t)t->nfds + 1) ||
	    ARRAY_RESERVE(t->fd_pids, t->fd_pids_cap, (size_t)t->nfds + 1))
		return -ENOMEM;
	t->fd_pids[t->nfds] = pid;
	t->fds[t->nfds++] = fd;
	return 0;
}

/*
 * Without uprobe_multi: a perf-event uprobe per function (same figures,
 * slower to attach and detach), the kind in each link's cookie. Only the
 * link's fd is kept (it holds the perf event), so these close like the
 * uprobe_multi links, per process.
 */
static int attach_each(struct tracer *t, struct bpf_program *prog, pid_t pid,
		       const char *path, const uint64_t *offs,
		       const uint64_t *cookies, int n, bool ret)
{
	int type = probes_pmu_read("type");
	int bit = ret ? probes_pmu_read("format/retprobe") : 0;

	if (type < 0 || bit < 0) {
		fprintf(stderr, "memtop: no uprobe perf events (%s)\n",
			strerror(type < 0 ? -type : -bit));
		return type < 0 ? type : bit;
	}
	for (int i = 0; i < n; i++) {
		LIBBPF_OPTS(bpf_link_create_opts, lo,
			    .perf_event.bpf_cookie = cookies ? cookies[i] : 0);
		struct perf_event_attr pa;
		int pfd, fd = -1, err;

		memset(&pa, 0, sizeof(pa));
		pa.size = sizeof(pa);
		pa.type = type;
		pa.config = ret ? 1ULL << bit : 0;
		pa.config1 = (uintptr_t)path; /* uprobe_path */
		pa.config2 = offs[i];	      /* probe_offset */
		/* A process's probes, or (cpu 0, pid -1) everyone's: a trace
		 * event runs its programs on every CPU. */
		pfd = syscall(__NR_perf_event_open, &pa, pid > 0 ? pid : -1,
			      pid > 0 ? -1 : 0, -1, PERF_FLAG_FD_CLOEXEC);
		err = pfd < 0 ? -errno : 0;
		if (!err) {
			fd = bpf_link_create(bpf_program__fd(prog), pfd,
					     BPF_PERF_EVENT, &lo);
			err = fd < 0 ? -errno : 0;
			close(pfd);
		}
		if (!err) {
			err = add_fd(t, fd, pid);
			if (err)
				close(fd);
		}
		if (err) {
			fprintf(stderr,
				"memtop: cannot attach a %s to %s+%#llx (pid "
				"%d): %s\n",
				ret ? "uretprobe" : "uprobe", path,
				(unsigned long long)offs[i], pid,
				strerror(-err));
			return err;
		}
		t->nprobes++;
	}
	return 0;
}

static int attach_link(struct tracer *t, struct bpf_program *prog, pid_t pid,
		       const char *path, const uint64_t *offs,
		       const uint64_t *cookies, int n, bool ret, bool session)
{
	int fd, err;

	if (!t->uprobe_multi)
		return attach_each(t, prog, pid, path, offs, cookies, n, ret);
	fd = probes_link_create(bpf_program__fd(prog), pid, path, offs, cookies,
				n, ret, session);
	if (fd < 0) {
		err = fd;
		fprintf(stderr,
			"memtop: cannot attach %d %s to %s (pid %d): %s\n", n,
			session ? "uprobe sessions"
			: ret	? "uretprobes"
				: "uprobes",
			path, pid, strerror(-err));
		return err;
	}
	err = add_fd(t, fd, pid);
	if (err)
		close(fd);
	else
		t->nprobes += n;
	return err;
}

static int attach_multi(struct tracer *t, struct bpf_program *prog, pid_t pid,
			const char *path, const uint64_t *offs,
			const uint64_t *cookies, int n, bool ret)
{
	return attach_link(t, prog, pid, path, offs, cookies, n, ret, false);
}

/* Why a file named by --lib cannot be probed (n from probes_find_syms: an
 * error, or 0 functions found), said once; returns the error. */
static int refuse_lib(const char *name, int n)
{
	if (n < 0) {
		fprintf(stderr, "memtop: %s: %s\n", name,
			n == -ENOEXEC ? "not an ELF file" : strerror(-n));
		return n;
	}
	fprintf(stderr, "memtop: %s: exports none of the allocator functions\n",
		name);
	return -ENOENT;
}

/* Probe every allocator entry point path defines, in pid (-1: all). */
/* path: what to open and probe; name: the file's own name, for messages
 * (path may be a /proc/self/fd link). */
static int attach_file(struct tracer *t, pid_t pid, const char *path,
		       const char *name, bool required,
		       const struct tracer_opts *o)
{
	struct sym_loc locs[PROBE_NSYMS];
	uint64_t offs[PROBE_NSYMS], cookies[PROBE_NSYMS], roffs[PROBE_NSYMS];
	int n, nent = 0, nret = 0, err;

	n = probes_find_syms(path, locs);
	if (n <= 0)
		return required ? refuse_lib(name, n) : n;
	for (size_t k = 0; k < PROBE_NSYMS; k++) {
		const struct probe_sym *ps = &probe_syms[k];
		uint64_t delta = 0;
		bool dup = false;

		if (!locs[k].addr)
			continue;
		/* CPython's API: not with --python off, nor where its
		 * allocator tables' functions are probed instead. */
		if (ps->family == PF_PYTHON &&
		    (o->python == PYTHON_OFF ||
		     (pyp_find(t, pid) && !pyp_find(t, pid)->fallback)))
			continue;
		for (size_t j = 0; j < k; j++)
			dup |= locs[j].addr == locs[k].addr;
		if (dup)
			continue;
		if (!o->entry_probes &&
		    placement_choose(locs[k].code, locs[k].ncode,
				     ps->kind == MT_K_FREE ||
					     ps->kind == MT_K_DELETE,
				     &delta))
			delta = 0;
		if (o->verbose && delta)
			fprintf(stderr, "memtop: probing %s at +%llu\n",
				ps->name, (unsigned long long)delta);
		offs[nent] = locs[k].file_off + delta;
		cookies[nent++] = ps->kind;
		/* At delta the stack pointer and the return address are still
		 * the entry's, so the uretprobe can go there too. */
		if (ps->ret)
			roffs[nret++] = locs[k].file_off + delta;
	}
	if (!nent)
		return 0; /* only CPython's API, whose tables are probed */
	err = attach_multi(t, t->skel->progs.alloc_enter, pid, path, offs,
			   cookies, nent, false);
	if (!err && nret)
		err = attach_multi(t, t->skel->progs.alloc_exit, pid, path,
				   roffs, NULL, nret, true);
	if (err)
		return err;
	if (o->verbose)
		fprintf(stderr, "memtop: pid %d: %d functions probed in %s\n",
			pid, nent, name);
	return nent;
}

struct file_id {
	dev_t dev;
	ino_t ino;
};

struct file_set {
	pid_t pid; /* whose probes (-1: every process) */
	struct file_id *ids;
	int n;
};

/* Add path's file to set; 1 if it was new, 0 if seen, -errno. */
static int file_set_add(struct file_set *set, const char *path)
{
	struct file_id *ids;
	struct stat st;

	if (stat(path, &st))
		return -errno;
	for (int i = 0; i < set->n; i++)
		if (set->ids[i].dev == st.st_dev &&
		    set->ids[i].ino == st.st_ino)
			return 0;
	ids = realloc(set->ids, (set->n + 1) * sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	set->ids = ids;
	set->ids[set->n].dev = st.st_dev;
	set->ids[set->n].ino = st.st_ino;
	set->n++;
	return 1;
}

static bool has_set(struct tracer *t, pid_t pid)
{
	for (int i = 0; i < t->nsets; i++)
		if (t->sets[i].pid == pid)
			return true;
	return false;
}

/*
 * Open a path a process maps as that process sees it (procfs_open_in_root).
 * Only a regular file with the mapping's inode is accepted (no device
 * files, nothing swapped in).
 */
static int open_in_root(pid_t pid, const char *path, uint64_t inode)
{
	struct stat st;
	int fd = procfs_open_in_root(pid, path, O_RDONLY, 0);

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
	    (inode && st.st_ino != inode)) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

/*
 * Open the file pid maps at [start, end) through the handle that names that
 * very mapping, /proc/PID/map_files/START-END: right whatever mount
 * namespace or chroot the process lives in (its maps show paths as the
 * kernel resolves them from our root, which inside a chroot are host
 * paths). Where map_files cannot be opened (no CAP_SYS_ADMIN), the path is
 * resolved inside the process's root instead. Either way the inode must be
 * the mapping's.
 */
static int open_mapping(pid_t pid, const struct maps_entry *e)
{
	char mf[96];
	struct stat st;
	int fd;

	snprintf(mf, sizeof(mf), "/proc/%d/map_files/%llx-%llx", pid,
		 (unsigned long long)e->start, (unsigned long long)e->end);
	fd = open(mf, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (!fstat(fd, &st) && S_ISREG(st.st_mode) &&
		    (!e->inode || st.st_ino == e->inode))
			return fd;
		close(fd);
		return -EPERM;
	}
	return open_in_root(pid, e->path, e->inode);
}

/* The probes' file set for pid: one per traced pid, or the global one. */
static struct file_set *set_for(struct tracer *t, pid_t pid)
{
	struct file_set *sets;

	if (t->global && !t->opts.growth)
		return &t->sets[0];
	for (int i = 0; i < t->nsets; i++)
		if (t->sets[i].pid == pid)
			return &t->sets[i];
	sets = realloc(t->sets, (t->nsets + 1) * sizeof(*sets));
	if (!sets)
		return NULL;
	t->sets = sets;
	memset(&t->sets[t->nsets], 0, sizeof(*sets));
	t->sets[t->nsets].pid = pid;
	return &t->sets[t->nsets++];
}

static struct py_probes *pyp_find(struct tracer *t, pid_t pid)
{
	for (int i = 0; i < t->npyp; i++)
		if (t->pyp[i].pid == pid)
			return &t->pyp[i];
	return NULL;
}

static void pyp_detach(struct tracer *t, struct py_probes *pp)
{
	for (int i = 0; i < pp->nfds; i++)
		close(pp->fds[i]);
	t->nprobes -= pp->n;
	pp->nfds = pp->n = 0;
}

/*
 * Probe one allocator table function of pid at addr: the file mapping it,
 * opened through map_files, on the first instruction the kernel emulates
 * (placement), entry and (but for frees) return.
 */
static int pyp_attach_one(struct tracer *t, struct py_probes *pp,
			  const struct python_alloc_fn *fn)
{
	char mpath[64], line[4096 + 256], path[64];
	struct maps_entry e;
	uint8_t code[64];
	uint64_t off, cookie = fn->kind, delta = 0;
	bool found = false, is_free = (fn->kind & ~MT_K_CTX_ARG) == MT_K_DELETE;
	bool session = t->session && pp->usedpools && fn->plain &&
		       (fn->kind == (MT_K_MALLOC | MT_K_CTX_ARG) ||
			fn->kind == (MT_K_CALLOC | MT_K_CTX_ARG));
	ssize_t n;
	int fd, err;
	FILE *f;

	snprintf(mpath, sizeof(mpath), "/proc/%d/maps", pp->pid);
	f = fopen(mpath, "re");
	if (!f)
		return -errno;
	while (!found && fgets(line, sizeof(line), f))
		found = !procfs_parse_maps_line(line, &e) &&
			e.perms[2] == 'x' && e.path[0] == '/' && e.inode &&
			fn->addr >= e.start && fn->addr < e.end;
	fclose(f);
	if (!found)
		return -ENOENT; /* not in a mapped file: nothing to probe */
	fd = open_mapping(pp->pid, &e);
	if (fd < 0)
		return fd;
	off = fn->addr - e.start + e.offset;
	n = pread(fd, code, sizeof(code), (off_t)off);
	if (n > 0 && !t->opts.entry_probes &&
	    placement_choose(code, (size_t)n, false, &delta))
		delta = 0;
	off += delta;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	/* pymalloc's malloc and calloc: one session probe, whose entry skips
	 * the return where it can tell the result (bpf/pymalloc.bpf.h). */
	if (session)
		err = attach_link(t, t->skel->progs.py_alloc_session, pp->pid,
				  path, &off, &cookie, 1, false, true);
	else
		err = attach_multi(t, t->skel->progs.alloc_enter, pp->pid, path,
				   &off, &cookie, 1, false);
	if (!err)
		pp->fds[pp->nfds++] = t->fds[--t->nfds];
	if (!err && !is_free && !session) {
		err = attach_multi(t, t->skel->progs.alloc_exit, pp->pid, path,
				   &off, NULL, 1, true);
		if (!err) {
			pp->fds[pp->nfds++] = t->fds[--t->nfds];
			t->nprobes--; /* one function, two probes: count it once
				       */
		}
	}
	if (!err)
		pp->n++;
	if (!err && t->opts.verbose)
		fprintf(stderr,
			"memtop: pid %d: allocator table function at %#llx "
			"probed (%s+%#llx)%s\n",
			pp->pid, (unsigned long long)fn->addr, e.path,
			(unsigned long long)off,
			session ? ", a session: returns skipped where "
				  "pymalloc's result is known"
				: "");
	close(fd);
	return err;
}

/*
 * Where the uprobe sessions can be used, find pymalloc's usedpools[] once
 * (in the file of the table's first function) and give it to the BPF side,
 * its prediction counts reset: the tables changed, so nothing is trusted
 * until checked again.
 */
static void pm_setup(struct tracer *t, struct py_probes *pp,
		     const struct python_alloc_fn *fns, int n)
{
	struct mt_pymalloc v = {0};
	__u32 key = (__u32)pp->pid;
	int err;

	if (!t->session || !n)
		return;
	if (!pp->pm_tried) {
		pp->pm_tried = true;
		err = pymalloc_find(pp->pid, fns[0].addr, &pp->usedpools);
		if (err != 1)
			pp->usedpools = 0;
		if (t->opts.verbose)
			fprintf(stderr,
				"memtop: pid %d: pymalloc's usedpools %s%s "
				"(%#llx)\n",
				pp->pid, err == 1 ? "found" : "not found",
				err < 0 ? ": ambiguous or unreadable" : "",
				(unsigned long long)pp->usedpools);
	}
	if (!pp->usedpools)
		return;
	v.usedpools = pp->usedpools;
	if (bpf_map_update_elem(bpf_map__fd(t->skel->maps.py_pymalloc), &key,
				&v, BPF_ANY))
		pp->usedpools = 0;
}

/* (Re)probe what pid's allocator tables point at; 0 if unchanged or done. */
static int pyp_sync(struct tracer *t, struct py_probes *pp)
{
	struct python_alloc_fn fns[PYTHON_MAX_ALLOC_FNS];
	bool inlined;
	int n = python_alloc_fns(pp->pid, fns, PYTHON_MAX_ALLOC_FNS, &inlined),
	    err = 0;

	if (n < 0)
		return n;
	pp->inlined = inlined;
	bool same = n == pp->n;

	for (int i = 0; same && i < n; i++)
		same = fns[i].addr == pp->fns[i].addr &&
		       fns[i].kind == pp->fns[i].kind &&
		       fns[i].plain == pp->fns[i].plain;
	if (same)
		return 0;
	if (pp->n && t->opts.verbose)
		fprintf(stderr,
			"memtop: pid %d: its allocator tables changed, probing "
			"their new functions\n",
			pp->pid);
	pyp_detach(t, pp);
	pm_setup(t, pp, fns, n);
	for (int i = 0; i < n && !err; i++)
		err = pyp_attach_one(t, pp, &fns[i]);
	if (err) {
		pyp_detach(t, pp);
		return err;
	}
	memcpy(pp->fns, fns, (size_t)n * sizeof(fns[0]));
	return 0;
}

/* Append "; what" (or "what") to buf. */
static void add_note(char *buf, size_t len, const char *what)
{
	size_t l = strlen(buf);

	if (what[0] && l < len)
		snprintf(buf + l, len - l, "%s%s", l ? "; " : "", what);
}

/*
 * Say, with each CPython process's figures, what memtop cannot see there:
 * frames it cannot read, calls its probes cannot reach.
 */
static void note_not_seen(struct tracer *t, struct raw_sample *raw)
{
	pthread_mutex_lock(&t->lock);
	for (int i = 0; i < t->npyp; i++) {
		const struct py_probes *pp = &t->pyp[i];
		struct raw_proc *p = sample_find_proc(raw, (uint32_t)pp->pid);
		char note[200];

		if (!p)
			p = sample_add_proc(raw, (uint32_t)pp->pid);
		if (!p)
			break;
		p->not_seen[0] = '\0';
		python_frames_note(pp->pid, note, sizeof(note));
		add_note(p->not_seen, sizeof(p->not_seen), note);
		if (pp->inlined)
			add_note(p->not_seen, sizeof(p->not_seen),
				 "small Python objects from pymalloc's fast "
				 "path, which this PGO build inlines into its "
				 "callers (seen while tracemalloc runs)");
		if (pp->fallback)
			add_note(p->not_seen, sizeof(p->not_seen),
				 "Python allocations a PGO/LTO build inlines "
				 "(CPython's allocator tables not found: its "
				 "API functions probed)");
		if (pp->warned)
			add_note(p->not_seen, sizeof(p->not_seen),
				 "Python allocations since its allocator "
				 "tables changed (they could not be followed)");
	}
	pthread_mutex_unlock(&t->lock);
}

/* A CPython process found: probe its allocator tables' functions. */
static bool py_pid_has(const struct tracer *t, uint32_t pid)
{
	for (size_t i = 0; i < t->npy_pids; i++)
		if (t->py_pids[i] == pid)
			return true;
	return false;
}

static void pyp_start(struct tracer *t, pid_t pid)
{
	struct py_probes *pp, *np;
	int err;

	if (t->global || pyp_find(t, pid))
		return;
	np = realloc(t->pyp, (t->npyp + 1) * sizeof(*np));
	if (!np)
		return;
	t->pyp = np;
	pp = &t->pyp[t->npyp++];
	memset(pp, 0, sizeof(*pp));
	pp->pid = pid;
	err = pyp_sync(t, pp);
	if (err || !pp->n) {
		/* The API functions are probed instead (single-stepped, and
		 * blind to the calls a PGO/LTO build inlined). */
		if (err != -ENOENT || t->opts.verbose)
			fprintf(stderr,
				"memtop: pid %d: cannot probe CPython's "
				"allocator table functions (%s): probing its "
				"API functions instead\n",
				pid, strerror(-err ? -err : ENOENT));
		pp->fallback = true;
	}
}

/*
 * Is path, mapped in pid at start, a CPython runtime? Then tell the
 * BPF side how to walk its frames, or say why its stacks stay native.
 */
static void python_check(struct tracer *t, pid_t pid, const char *path,
			 uint64_t start)
{
	struct mt_py_proc pp;
	char note[256];
	__u32 key = (__u32)pid;
	int n = python_detect(pid, path, start, &pp, note, sizeof(note));

	if (n == 1 && bpf_map_update_elem(bpf_map__fd(t->skel->maps.py_procs),
					  &key, &pp, BPF_ANY))
		snprintf(note, sizeof(note),
			 "pid %d: cannot enable Python frames: %s", pid,
			 strerror(errno));
	else if (n == 1 && !py_pid_has(t, key) &&
		 !ARRAY_RESERVE(t->py_pids, t->py_pids_cap, t->npy_pids + 1))
		t->py_pids[t->npy_pids++] = key;
	if (n < 0 || (n == 1 && t->opts.verbose))
		fprintf(stderr, "memtop: %s\n", note);
	if (n != 0)
		pyp_start(t, pid);
}

/*
 * Probe every file mapped by pid that defines allocator functions and is not
 * probed yet, opened through /proc/PID/root so that a process in a container
 * is probed in its own files. Each file (by device and inode) is probed once
 * per set: two probes on one instruction would count twice. Returns the
 * number of functions probed, or -errno.
 */
static int scan_pid(struct tracer *t, pid_t pid)
{
	char mpath[64], line[4096 + 256], path[PATH_MAX + 64];
	/* Growth mode probes only the processes switched to exact tracing;
	 * the others are scanned for CPython alone. */
	bool probes = !t->opts.growth || has_set(t, pid);
	struct file_set *set = probes ? set_for(t, pid) : NULL;
	struct maps_entry e;
	int total = 0, err = 0, n, fd;
	FILE *f;

	if (probes && !set)
		return -ENOMEM;
	snprintf(mpath, sizeof(mpath), "/proc/%d/maps", pid);
	f = fopen(mpath, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (procfs_parse_maps_line(line, &e) || e.path[0] != '/' ||
		    !e.inode)
			continue;
		/* Probe the very file the process maps (open_mapping), then
		 * named by our descriptor so nothing can swap it in between. */
		fd = open_mapping(pid, &e);
		if (fd < 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		if (t->opts.python != PYTHON_OFF && e.offset == 0 &&
		    python_candidate(e.path))
			python_check(t, pid, path, e.start);
		if (!probes) {
			close(fd);
			continue;
		}
		n = file_set_add(set, path);
		if (n == -ENOMEM) {
			close(fd);
			err = n;
			break;
		}
		if (n <= 0) {
			close(fd);
			continue; /* seen already */
		}
		n = attach_file(t, set->pid, path, e.path, false, &t->opts);
		close(fd);
		if (n < 0 && n != -ENOEXEC && n != -ENOENT && n != -EACCES) {
			err = n;
			break;
		}
		if (n > 0)
			total += n;
	}
	fclose(f);
	return err ? err : total;
}

/* --lib files, probed for pid (or globally). */
static int attach_libs(struct tracer *t, pid_t pid)
{
	struct file_set *set = set_for(t, pid);
	int total = 0, n;

	if (!set)
		return -ENOMEM;
	for (int i = 0; i < t->opts.nlibs; i++) {
		n = file_set_add(set, t->opts.libs[i]);
		if (n < 0) {
			fprintf(stderr, "memtop: --lib %s: %s\n",
				t->opts.libs[i], strerror(-n));
			return n;
		}
		if (n == 0)
			continue; /* already probed as a mapping */
		n = attach_file(t, set->pid, t->opts.libs[i], t->opts.libs[i],
				true, &t->opts);
		if (n < 0)
			return n;
		total += n;
	}
	return total;
}

/* Probe what one explicitly named process needs; its errors are fatal. */
/*
 * Load pid's mappings and unwind tables (t->lock held, or no thread yet).
 * Before its probes attach, so its first stacks are unwound already.
 */
static int uw_sync(struct tracer *t, pid_t pid)
{
	int err;

	if (!t->uw)
		return 0;
	err = unwinder_sync(t->uw, pid);
	if (err && err != -ESRCH)
		fprintf(stderr,
			"memtop: cannot load pid %d's unwind tables: %s\n", pid,
			strerror(-err));
	return err;
}

static int attach_target(struct tracer *t, pid_t pid)
{
	int n, total;

	uw_sync(t, pid);
	total = scan_pid(t, pid);
	if (total < 0) {
		fprintf(stderr, "memtop: cannot probe pid %d: %s\n", pid,
			strerror(-total));
		return total;
	}
	n = attach_libs(t, pid);
	if (n < 0)
		return n;
	total += n;
	if (t->opts.python == PYTHON_ON && !python_known(pid)) {
		fprintf(stderr,
			"memtop: pid %d is not a CPython process (--python "
			"on)\n",
			pid);
		return -ENOENT;
	}
	if (!total && !t->global && t->opts.nlibs) {
		fprintf(stderr,
			"memtop: pid %d: neither its mappings nor the --lib "
			"files define allocator functions to probe\n",
			pid);
		return -ENOENT;
	}
	if (!total && !t->global) {
		fprintf(stderr,
			"memtop: pid %d maps no allocator library to probe (a "
			"static binary? use --lib PATH)\n",
			pid);
		return -ENOENT;
	}
	return 0;
}

/* System-wide: every allocator file any process maps, probed once. */
static int attach_everywhere(struct tracer *t)
{
	struct dirent *de;
	DIR *d = opendir("/proc");
	int err;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (*end || pid <= 0 || pid == getpid())
			continue;
		err = scan_pid(t, (pid_t)pid);
		if (err < 0 && err != -ENOENT && err != -ESRCH &&
		    err != -EACCES) {
			closedir(d);
			return err;
		}
	}
	closedir(d);
	return 0;
}

/* Exec'd and forked processes may map allocators not probed yet. */
static int on_event(void *ctx, void *data, size_t len)
{
	struct tracer *t = ctx;
	const struct mt_event *e = data;

	if (len < sizeof(*e))
		return 0;
	if (e->type == MT_EV_EXIT) {
		struct comm_entry *c = &t->comms[e->tgid % NCOMMS];

		pthread_mutex_lock(&t->lock);
		c->tgid = e->tgid;
		memcpy(c->comm, e->comm, sizeof(c->comm));
		c->comm[sizeof(c->comm) - 1] = '\0';
		pthread_mutex_unlock(&t->lock);
	}
	if (e->type == MT_EV_EXEC || e->type == MT_EV_FORK) {
		pthread_mutex_lock(&t->lock);
		if (t->global || has_set(t, e->tgid)) {
			if (!t->global || t->opts.filter)
				uw_sync(t, e->tgid);
			scan_pid(t, e->tgid);
		}
		pthread_mutex_unlock(&t->lock);
	}
	return 0;
}

/*
 * The live blocks and anonymous regions of processes that exited or
 * exec'd: the BPF side lists the processes in "dead" by {tgid, epoch}
 * (memtop.bpf.c: purge), and one walk of each map here finds those of all
 * of them; forget_blocks forgets them MT_FORGET_MAX at a time, each only
 * if it is still the one found (of epoch <= the process's). Here the walks
 * cost memtop's time, in syscalls that can be preempted, instead of the
 * exiting process's with preemption off.
 */
struct sweep_dead {
	struct mt_dead_key k;
	int kind; /* MT_FORGET_EXEC or MT_FORGET_EXIT */
};

struct sweep {
	struct tracer *t;
	struct sweep_dead *dead; /* sorted by tgid, then epoch */
	size_t ndead, cap;
	struct mt_forget_buf *fb[MT_FORGET_KINDS];
	int err;
};

static int cmp_dead(const void *a, const void *b)
{
	const struct mt_dead_key *x = &((const struct sweep_dead *)a)->k,
				 *y = &((const struct sweep_dead *)b)->k;

	if (x->tgid != y->tgid)
		return x->tgid < y->tgid ? -1 : 1;
	return x->epoch < y->epoch ? -1 : x->epoch > y->epoch;
}

static int sweep_add_dead(void *ctx, const void *k, const void *v)
{
	struct sweep *sw = ctx;

	if (ARRAY_RESERVE(sw->dead, sw->cap, sw->ndead + 1))
		return -ENOMEM;
	memcpy(&sw->dead[sw->ndead].k, k, sizeof(sw->dead->k));
	sw->dead[sw->ndead++].kind =
		*(const uint8_t *)v ? MT_FORGET_EXEC : MT_FORGET_EXIT;
	return 0;
}

/* Forget what fb lists; it is empty after. */
static int sweep_forget(struct sweep *sw, int kind)
{
	struct mt_forget_buf *fb = sw->fb[kind];
	__u32 zero = 0;
	LIBBPF_OPTS(bpf_test_run_opts, ro);

	if (!fb->n)
		return 0;
	fb->kind = kind;
	if (bpf_map_update_elem(bpf_map__fd(sw->t->skel->maps.forget_buf),
				&zero, fb, BPF_ANY) ||
	    bpf_prog_test_run_opts(
		    bpf_program__fd(sw->t->skel->progs.forget_blocks), &ro))
		return -errno;
	fb->n = 0;
	return 0;
}

/* The first of tgid's events at or after epoch, or NULL. */
static const struct sweep_dead *sweep_find(const struct sweep *sw,
					   uint32_t tgid, uint32_t epoch)
{
	struct sweep_dead key = {.k = {.tgid = tgid, .epoch = epoch}};
	size_t lo = 0, hi = sw->ndead;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (cmp_dead(&sw->dead[mid], &key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == sw->ndead || sw->dead[lo].k.tgid != tgid)
		return NULL;
	return &sw->dead[lo];
}

static int sweep_add(struct sweep *sw, int kind, const struct mt_live_key *k,
		     uint32_t epoch)
{
	struct mt_forget_buf *fb = sw->fb[kind];

	fb->b[fb->n].addr = k->addr;
	fb->b[fb->n].tgid = k->tgid;
	fb->b[fb->n].epoch = epoch;
	if (++fb->n == MT_FORGET_MAX)
		return sweep_forget(sw, kind);
	return 0;
}

static int sweep_block(void *ctx, const void *k, const void *v)
{
	const struct mt_live_key *lk = k;
	const struct sweep_dead *d =
		sweep_find(ctx, lk->tgid, ((const struct mt_live *)v)->epoch);

	return d ? sweep_add(ctx, d->kind, lk, d->k.epoch) : 0;
}

static int sweep_region(void *ctx, const void *k, const void *v)
{
	const struct mt_live_key *lk = k;
	const struct sweep_dead *d =
		sweep_find(ctx, lk->tgid, ((const struct mt_region *)v)->epoch);

	return d ? sweep_add(ctx, MT_FORGET_REGION, lk, d->k.epoch) : 0;
}

/*
 * Sweep when a process went since the last sweep (live_epoch moved): each
 * read does (force), so that it sees an exec's blocks gone. The event
 * thread only stands in when reads stopped (5 s), and never waits for a
 * sweep under way: it has exec events to serve, whose maps must be read
 * before the process goes.
 */
static void tracer_sweep(struct tracer *t, bool force)
{
	struct sweep sw = {.t = t};
	uint64_t now = mono_ns();
	uint32_t epoch;
	int err;

	if (force)
		pthread_mutex_lock(&t->sweep_lock);
	else if (now - __atomic_load_n(&t->swept_ns, __ATOMIC_RELAXED) <
			 5000000000ull ||
		 pthread_mutex_trylock(&t->sweep_lock))
		return;
	epoch = t->skel->bss->live_epoch;
	if (epoch == t->swept_epoch)
		goto out;
	err = bpfmap_read_all(&t->sweep_batch, bpf_map__fd(t->skel->maps.dead),
			      sizeof(struct mt_dead_key), sizeof(uint8_t),
			      sweep_add_dead, &sw);
	if (err || !sw.ndead)
		goto done;
	qsort(sw.dead, sw.ndead, sizeof(*sw.dead), cmp_dead);
	for (int k = 0; k < MT_FORGET_KINDS; k++) {
		sw.fb[k] = calloc(1, sizeof(*sw.fb[k]));
		if (!sw.fb[k]) {
			err = -ENOMEM;
			goto done;
		}
	}
	err = bpfmap_read_all(&t->sweep_batch, bpf_map__fd(t->skel->maps.live),
			      sizeof(struct mt_live_key),
			      sizeof(struct mt_live), sweep_block, &sw);
	if (!err)
		err = bpfmap_read_all(&t->sweep_batch,
				      bpf_map__fd(t->skel->maps.anon_regions),
				      sizeof(struct mt_live_key),
				      sizeof(struct mt_region), sweep_region,
				      &sw);
	for (int k = 0; k < MT_FORGET_KINDS && !err; k++)
		err = sweep_forget(&sw, k);
	if (!err)
		for (size_t i = 0; i < sw.ndead; i++)
			bpf_map_delete_elem(bpf_map__fd(t->skel->maps.dead),
					    &sw.dead[i].k);
done:
	if (err && !t->sweep_warned) {
		t->sweep_warned = true;
		fprintf(stderr,
			"memtop: cannot forget the blocks of processes gone "
			"(%s): the live map may fill with them\n",
			strerror(-err));
	}
	if (!err)
		t->swept_epoch = epoch;
	__atomic_store_n(&t->swept_ns, now, __ATOMIC_RELAXED);
	free(sw.dead);
	for (int k = 0; k < MT_FORGET_KINDS; k++)
		free(sw.fb[k]);
out:
	pthread_mutex_unlock(&t->sweep_lock);
}

static void *event_thread(void *arg)
{
	struct tracer *t = arg;

	while (!t->stop_thread) {
		int err;

		/* The BPF side's clock (see clock_ns in memtop.bpf.c). */
		t->skel->bss->clock_ns = mono_ns();
		err = ring_buffer__poll(t->rb, 100);

		if (err < 0 && err != -EINTR)
			break;
		tracer_sweep(t, false);
	}
	return NULL;
}

#define TRACEFS "/sys/kernel/tracing"

/*
 * The process and syscall programs are classic tracepoints, which libbpf
 * finds through tracefs: mount it where nobody has.
 */
static int tracefs_ready(void)
{
	int err;

	if (access(TRACEFS "/events", F_OK) == 0)
		return 0;
	if (mount("tracefs", TRACEFS, "tracefs", 0, NULL) == 0)
		return 0;
	err = -errno;
	fprintf(stderr, "memtop: cannot mount tracefs on %s: %s\n", TRACEFS,
		strerror(-err));
	return err;
}

/* Does sched_process_exit carry group_dead, at the offset on_exit reads? */
static bool exit_has_group_dead(void)
{
	FILE *f = fopen(TRACEFS "/events/sched/sched_process_exit/format", "r");
	char line[256];
	bool yes = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "bool group_dead;") &&
		    strstr(line, "offset:32;"))
			yes = true;
	fclose(f);
	return yes;
}

/*
 * Open, configure and load the BPF object. The sites iterator is a tracing
 * program, which kernels without BTF (and sandboxes that deny tracing
 * programs) refuse, and the whole object with it: then load_bpf is tried
 * again without the iterator.
 */
static int load_bpf(struct tracer *t, const struct tracer_opts *o,
		    bool with_iter, bool task_storage)
{
	int err;

	t->skel = memtop_bpf__open();
	if (!t->skel) {
		err = -errno;
		fprintf(stderr, "memtop: cannot open the BPF object: %s\n",
			strerror(-err));
		return err;
	}
	t->skel->rodata->self_tgid = getpid();
	t->skel->rodata->empty_programs = o->empty;
	t->skel->rodata->show_allocator = o->show_allocator;
	t->skel->rodata->nr_cpus = (__u32)(t->ncpus > 0 ? t->ncpus : 1);
	{
		/* 1024 hint buckets a CPU (bpf/pending.bpf.h: pend_hints): a
		 * free of a block in no slot finds its bucket empty but for
		 * one in 1024. */
		__u32 nb = 4096;

		while (nb < (1u << 20) && nb < 1024u * t->skel->rodata->nr_cpus)
			nb <<= 1;
		bpf_map__set_max_entries(t->skel->maps.pend_hints, nb);
		t->skel->rodata->pend_hint_mask = nb - 1;
	}
	t->skel->rodata->filter_targets = o->filter;
	t->skel->rodata->system_wide = o->npids == 0;
	t->skel->rodata->follow_forks = o->follow;
	t->skel->rodata->min_size = o->min_size;
	if (o->depth)
		t->skel->rodata->max_depth = o->depth;
	t->skel->rodata->sample_every = o->sample_every;
	t->skel->rodata->python_frames = o->python != PYTHON_OFF;
	t->skel->rodata->growth_mode = o->growth;
	growth_autoload(t->skel, o->growth);
	t->skel->rodata->exit_has_group_dead = exit_has_group_dead();
	bpf_program__set_autoload(t->skel->progs.dump_sites, with_iter);
	t->skel->rodata->task_storage = task_storage;
	/* The hash needs no room where task storage serves. */
	if (task_storage)
		bpf_map__set_max_entries(t->skel->maps.inflight, 1);
	if (o->max_allocs)
		bpf_map__set_max_entries(t->skel->maps.live, o->max_allocs);
	if (o->max_stacks) {
		bpf_map__set_max_entries(t->skel->maps.sites, o->max_stacks);
		bpf_map__set_max_entries(t->skel->maps.stacks, o->max_stacks);
		bpf_map__set_max_entries(t->skel->maps.stacks_short,
					 o->max_stacks);
		bpf_map__set_max_entries(t->skel->maps.py_stacks,
					 o->max_stacks);
		bpf_map__set_max_entries(t->skel->maps.gc_sites, o->max_stacks);
	}
	if (t->uprobe_multi) {
		bpf_program__set_expected_attach_type(
			t->skel->progs.alloc_enter, MT_BPF_TRACE_UPROBE_MULTI);
		bpf_program__set_expected_attach_type(
			t->skel->progs.alloc_exit, MT_BPF_TRACE_UPROBE_MULTI);
	}
	if (t->session)
		bpf_program__set_expected_attach_type(
			t->skel->progs.py_alloc_session,
			MT_BPF_TRACE_UPROBE_SESSION);
	else
		bpf_program__set_autoload(t->skel->progs.py_alloc_session,
					  false);
	return memtop_bpf__load(t->skel);
}

/*
 * What can be refused without the kernel, before the BPF programs load
 * (the verifier takes seconds): --lib files that are not ELF or export no
 * allocator function, and -p targets that map no file defining one. The
 * messages are those the attach would print.
 */
static int precheck(const struct tracer_opts *o)
{
	struct sym_loc locs[PROBE_NSYMS];
	char mpath[64], line[4096 + 256], path[64];
	struct maps_entry e;
	int n, fd;
	FILE *f;

	for (int i = 0; i < o->nlibs; i++) {
		n = probes_find_syms(o->libs[i], locs);
		if (n <= 0)
			return refuse_lib(o->libs[i], n);
	}
	if (o->nlibs || o->growth || o->filter)
		return 0;
	for (int i = 0; i < o->npids; i++) {
		bool found = false;

		snprintf(mpath, sizeof(mpath), "/proc/%d/maps", o->pids[i]);
		f = fopen(mpath, "re");
		if (!f)
			return 0; /* the attach says why */
		while (!found && fgets(line, sizeof(line), f)) {
			if (procfs_parse_maps_line(line, &e) ||
			    e.path[0] != '/' || !e.inode)
				continue;
			fd = open_mapping(o->pids[i], &e);
			if (fd < 0) {
				found = true; /* unreadable: let the attach
					       * decide */
				break;
			}
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			found = probes_find_syms(path, locs) > 0;
			close(fd);
		}
		fclose(f);
		if (!found) {
			fprintf(stderr,
				"memtop: pid %d maps no allocator library to "
				"probe (a static binary? use --lib PATH)\n",
				o->pids[i]);
			return -ENOENT;
		}
	}
	return 0;
}

int tracer_open(struct tracer **out, const struct tracer_opts *o)
{
	struct tracer *t;
	int err;

	*out = NULL;
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -EINVAL;
	err = precheck(o);
	if (err)
		return err;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	pthread_mutex_init(&t->sweep_lock, NULL);
	t->opts = *o;
	t->global = o->npids == 0 || o->filter;
	if (t->global) {
		t->sets = calloc(1, sizeof(*t->sets));
		if (!t->sets) {
			err = -ENOMEM;
			goto cleanup;
		}
		t->sets[0].pid = -1;
		t->nsets = 1;
	}
	t->ncpus = libbpf_num_possible_cpus();
	if (t->ncpus <= 0) {
		err = t->ncpus ? t->ncpus : -EINVAL;
		goto cleanup;
	}
	t->percpu = calloc(t->ncpus, sizeof(uint64_t));
	if (!t->percpu) {
		err = -ENOMEM;
		goto cleanup;
	}
	err = tracefs_ready();
	if (err)
		goto cleanup;
	t->uprobe_multi = probes_have_uprobe_multi();
	t->session = t->uprobe_multi && o->python != PYTHON_OFF &&
		     probes_have_uprobe_session();
	if (!t->uprobe_multi && o->verbose)
		fprintf(stderr, "memtop: no uprobe_multi links (Linux 6.6 has "
				"them): a perf-event uprobe per function\n");
	{
		/* What the kernel may refuse, most wanted first: the sites
		 * iterator (a tracing program), then task storage (it needs
		 * the kernel's BTF). */
		static const bool tries[][2] = {
			{true, true}, {false, true}, {false, false}};
		bool btf = access("/sys/kernel/btf/vmlinux", R_OK) == 0;
		bool iter = btf && probes_have_map_iter();

		err = -EINVAL;
		for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
			if (!btf && (tries[i][0] || tries[i][1]))
				continue;
			if (!iter && tries[i][0])
				continue;
			memtop_bpf__destroy(t->skel);
			t->skel = NULL;
			err = load_bpf(t, o, tries[i][0], tries[i][1]);
			if (!err) {
				if (o->verbose)
					fprintf(stderr,
						"memtop: sites iterator %s, "
						"per-thread state in %s\n",
						tries[i][0]
							? "on"
							: "off (batch lookup)",
						tries[i][1] ? "task storage"
							    : "a hash");
				break;
			}
			/* The session program last: without it pymalloc's
			 * returns are probed as every other allocator's. */
			if (t->session &&
			    i + 1 == sizeof(tries) / sizeof(tries[0])) {
				t->session = false;
				i = (size_t)-1;
				if (o->verbose)
					fprintf(stderr,
						"memtop: loading again without "
						"the uprobe session program\n");
			}
		}
	}
	if (err) {
		fprintf(stderr, "memtop: cannot load the BPF programs: %s\n",
			strerror(-err));
		goto cleanup;
	}
	t->skel->bss->clock_ns = mono_ns();
	/* Process events first, so nothing exec'd meanwhile is missed. */
	{
		struct bpf_program *tps[] = {
			t->skel->progs.on_exec, t->skel->progs.on_exit,
			t->skel->progs.on_fork, t->skel->progs.anon_enter,
			t->skel->progs.anon_exit};

		for (size_t i = 0; i < sizeof(tps) / sizeof(tps[0]); i++) {
			struct bpf_link *l;

			if (!bpf_program__autoload(tps[i]))
				continue; /* not for this mode */
			l = bpf_program__attach(tps[i]);
			err = l ? add_link(t, l) : -errno;
			if (err) {
				fprintf(stderr,
					"memtop: cannot attach %s to its "
					"tracepoint: %s\n",
					bpf_program__name(tps[i]),
					strerror(-err));
				goto cleanup;
			}
		}
	}
	{
		union bpf_iter_link_info li = {
			.map.map_fd = (__u32)bpf_map__fd(t->skel->maps.sites)};
		LIBBPF_OPTS(bpf_iter_attach_opts, io, .link_info = &li,
			    .link_info_len = sizeof(li));

		/* Without it the batch lookup serves, only slower. */
		t->sites_iter =
			bpf_program__autoload(t->skel->progs.dump_sites)
				? bpf_program__attach_iter(
					  t->skel->progs.dump_sites, &io)
				: NULL;
		t->iter_buf = t->sites_iter ? malloc(ITER_BUF) : NULL;
	}
	t->rb = ring_buffer__new(bpf_map__fd(t->skel->maps.events), on_event, t,
				 NULL);
	if (!t->rb) {
		err = -errno;
		fprintf(stderr,
			"memtop: cannot open the event ring buffer: %s\n",
			strerror(-err));
		goto cleanup;
	}
	if (o->max_unwind_bytes) {
		struct unwinder_opts uo = {
			.tables_fd = bpf_map__fd(t->skel->maps.unwind_tables),
			.procs_fd = bpf_map__fd(t->skel->maps.unwind_procs),
			.max_bytes = o->max_unwind_bytes,
			.verbose = o->verbose,
		};

		err = unwinder_new(&t->uw, &uo);
		if (err)
			goto cleanup;
	}
	for (int i = 0; i < o->npids; i++) {
		__u8 one = 1;

		/* Also for -p alone: its execs and exits are watched. */
		if (bpf_map_update_elem(bpf_map__fd(t->skel->maps.targets),
					&o->pids[i], &one, BPF_ANY)) {
			err = -errno;
			goto cleanup;
		}
		err = o->growth ? 0 : attach_target(t, o->pids[i]);
		if (o->growth) {
			/* Faults inside code without frame pointers (the C
			 * library, the allocator) reach their callers. */
			uw_sync(t, o->pids[i]);
			scan_pid(t, o->pids[i]); /* CPython frames only */
		}
		if (err)
			goto cleanup;
	}
	if (o->growth) {
		/* No allocator probes: the fault programs, and for the system
		 * the CPython processes found (and later exec'd). */
		err = growth_attach(t->skel, t->ncpus, &t->growth);
		if (err)
			goto cleanup;
		if (o->npids == 0 && o->python != PYTHON_OFF)
			attach_everywhere(t);
	} else if (o->npids == 0) {
		err = attach_everywhere(t);
		if (!err)
			err = attach_libs(t, -1);
		if (err < 0) {
			fprintf(stderr, "memtop: cannot probe the system: %s\n",
				strerror(-err));
			goto cleanup;
		}
		err = 0;
	} else if (o->filter) {
		/* A command started by memtop is a copy of memtop until it
		 * execs: probe memtop's own allocator for it too. */
		err = scan_pid(t, getpid());
		if (err < 0)
			goto cleanup;
		err = 0;
	}
	err = pthread_create(&t->thread, NULL, event_thread, t);
	if (err) {
		err = -err;
		goto cleanup;
	}
	t->thread_running = true;
	*out = t;
	return 0;
cleanup:
	tracer_close(t);
	return err;
}

int tracer_nprobes(const struct tracer *t)
{
	return t->nprobes;
}

static int emit_site(void *ctx, const void *k, const void *v)
{
	struct raw_site s;

	memcpy(&s.key, k, sizeof(s.key));
	memcpy(&s.st, v, sizeof(s.st));
	/* BPF keeps cumulative counters only (two atomics an event). A
	 * growth site's "outstanding" is what it touched: nothing is freed. */
	s.st.outstanding_bytes = (__s64)(s.st.alloc_bytes - s.st.free_bytes);
	s.st.outstanding_allocs = (__s64)(s.st.allocs - s.st.frees);
	return sample_add_site(ctx, &s);
}

/*
 * Read the sites through the dump_sites iterator: one stream of records,
 * read in ITER_BUF pieces. 1 when there is no iterator (use the batch
 * lookup); an error after the first record is final, or sites would be
 * emitted twice.
 */
static int read_sites_iter(struct tracer *t, struct raw_sample *raw)
{
	size_t have = 0, total = 0;
	int fd, err = 0;

	if (!t->sites_iter || !t->iter_buf)
		return 1;
	fd = bpf_iter_create(bpf_link__fd(t->sites_iter));
	if (fd < 0)
		return 1;
	for (;;) {
		ssize_t n = read(fd, t->iter_buf + have, ITER_BUF - have);
		size_t i, nrec;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = total ? -errno : 1;
			break;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		nrec = have / sizeof(struct mt_site_rec);
		for (i = 0; i < nrec && !err; i++) {
			struct mt_site_rec r;

			memcpy(&r, t->iter_buf + i * sizeof(r), sizeof(r));
			err = emit_site(raw, &r.key, &r.st);
		}
		if (err)
			break;
		total += nrec;
		have -= nrec * sizeof(struct mt_site_rec);
		memmove(t->iter_buf,
			t->iter_buf + nrec * sizeof(struct mt_site_rec), have);
	}
	close(fd);
	return err;
}

/*
 * What reclaimed sites had counted, per process, so that a process's
 * cumulative figures never go down.
 */
struct retired {
	__u32 tgid;
	struct mt_stats st;
};

static void retire(struct tracer *t, const struct raw_site *r)
{
	struct retired *p = NULL;

	for (int i = 0; i < t->nretired; i++)
		if (t->retired[i].tgid == r->key.tgid)
			p = &t->retired[i];
	if (!p) {
		struct retired *n =
			realloc(t->retired, (t->nretired + 1) * sizeof(*n));

		if (!n)
			return;
		t->retired = n;
		p = &t->retired[t->nretired++];
		memset(p, 0, sizeof(*p));
		p->tgid = r->key.tgid;
	}
	p->st.allocs += r->st.allocs;
	p->st.frees += r->st.frees;
	p->st.alloc_bytes += r->st.alloc_bytes;
	p->st.free_bytes += r->st.free_bytes;
}

static void add_retired(struct tracer *t, struct raw_sample *raw)
{
	for (int i = 0; i < t->nretired; i++) {
		struct raw_proc *p = sample_find_proc(raw, t->retired[i].tgid);

		if (!p)
			continue;
		p->st.allocs += t->retired[i].st.allocs;
		p->st.frees += t->retired[i].st.frees;
		p->st.alloc_bytes += t->retired[i].st.alloc_bytes;
		p->st.free_bytes += t->retired[i].st.free_bytes;
	}
}

static int cmp_site_key(const void *a, const void *b)
{
	const struct raw_site *x = a, *y = b;

	if (x->key.tgid != y->key.tgid)
		return x->key.tgid < y->key.tgid ? -1 : 1;
	if (x->key.kind != y->key.kind)
		return x->key.kind < y->key.kind ? -1 : 1;
	return x->key.stack_id < y->key.stack_id   ? -1
	       : x->key.stack_id > y->key.stack_id ? 1
						   : 0;
}

/*
 * A process's figures are the sums of its sites. Sorted by key, a site read
 * twice (the map iterator resumes a bucket by count: an insert at its head
 * between two reads shows one entry again) is counted once, and the order
 * is the same from one read to the next.
 */
static int sum_procs(struct raw_sample *raw)
{
	struct raw_proc *p = NULL;
	size_t n = 0;

	if (raw->nsites)
		qsort(raw->sites, raw->nsites, sizeof(*raw->sites),
		      cmp_site_key);
	for (size_t i = 0; i < raw->nsites; i++)
		if (!n || cmp_site_key(&raw->sites[n - 1], &raw->sites[i]))
			raw->sites[n++] = raw->sites[i];
	raw->nsites = n;
	for (size_t i = 0; i < raw->nsites; i++) {
		const struct mt_stats *st = &raw->sites[i].st;

		if (!p || p->tgid != raw->sites[i].key.tgid) {
			p = sample_add_proc(raw, raw->sites[i].key.tgid);
			if (!p)
				return -ENOMEM;
			p->has_stats = true;
			memset(&p->st, 0, sizeof(p->st));
		}
		if (raw->sites[i].key.kind == MT_SITE_TOUCHED) {
			/* Growth mode's figures are a category of their own. */
			p->touched_bytes += st->alloc_bytes;
			p->touched_faults += st->allocs;
			continue;
		}
		p->st.outstanding_bytes += st->outstanding_bytes;
		p->st.outstanding_allocs += st->outstanding_allocs;
		p->st.allocs += st->allocs;
		p->st.frees += st->frees;
		p->st.alloc_bytes += st->alloc_bytes;
		p->st.free_bytes += st->free_bytes;
		if (!p->st.first_ns ||
		    (st->first_ns && st->first_ns < p->st.first_ns))
			p->st.first_ns = st->first_ns;
		if (st->last_ns > p->st.last_ns)
			p->st.last_ns = st->last_ns;
	}
	return 0;
}

/*
 * Stack storage must not freeze: a site that holds nothing and has not
 * allocated for a while is deleted with its stack, so that churning stacks
 * do not fill the maps. BPF recreates both if the stack allocates again.
 * lookup-and-delete returns the value as deleted: if an allocation slipped in
 * since the read, the entry is put back.
 */
/*
 * BPF caches which stacks exist (scache in memtop.bpf.c); around deleting
 * some, the epoch moves on so that no cached entry outlives its stack.
 */
static void stack_epoch_bump(struct tracer *t)
{
	__sync_fetch_and_add(&t->skel->bss->stack_epoch, 1);
}

/* A stack lives in one of two maps by its depth; forget it in both. Stacks
 * are stored under kind MT_SITE_ALLOC whatever their sites count. */
static void delete_stack(struct tracer *t, const struct mt_site_key *site)
{
	struct mt_site_key key = *site;

	key.kind = MT_SITE_ALLOC;
	bpf_map_delete_elem(bpf_map__fd(t->skel->maps.stacks), &key);
	bpf_map_delete_elem(bpf_map__fd(t->skel->maps.stacks_short), &key);
}

static void reclaim_idle(struct tracer *t, struct raw_sample *raw)
{
	int sites = bpf_map__fd(t->skel->maps.sites);
	struct mt_stats v;
	bool bumped = false;

	if (!t->opts.reclaim_ns)
		return;
	for (size_t i = 0; i < raw->nsites; i++) {
		struct raw_site *r = &raw->sites[i];

		if (r->key.kind != MT_SITE_ALLOC || r->st.outstanding_allocs ||
		    r->st.outstanding_bytes || !r->st.last_ns ||
		    raw->mono_ns < r->st.last_ns ||
		    raw->mono_ns - r->st.last_ns < t->opts.reclaim_ns)
			continue;
		if (bpf_map_lookup_and_delete_elem(sites, &r->key, &v))
			continue;
		if (v.allocs != r->st.allocs || v.frees != r->st.frees) {
			if (bpf_map_update_elem(sites, &r->key, &v,
						BPF_NOEXIST))
				t->reclaim_races++;
			continue;
		}
		if (!bumped)
			stack_epoch_bump(t);
		bumped = true;
		delete_stack(t, &r->key);
		retire(t, r);
	}
	if (bumped)
		stack_epoch_bump(t);
}

/*
 * At each refresh (at most 10 times a second), the traced processes'
 * mappings again: a library loaded since (dlopen, or by ld.so after an
 * exec) gets its table, one unloaded leaves. Unchanged mappings cost a
 * read of /proc/PID/maps. -p targets and
 * followed children only; system-wide, the processes are too many.
 */
static void uw_refresh(struct tracer *t, uint64_t now)
{
	if (!t->uw || now - t->uw_synced_ns < 100000000ull)
		return;
	t->uw_synced_ns = now;
	pthread_mutex_lock(&t->lock);
	unwinder_sync_all(t->uw);
	pthread_mutex_unlock(&t->lock);
}

/*
 * System-wide growth mode: a process that keeps growing gets its unwind
 * tables, so that its faults inside code without frame pointers (the C
 * library, the allocator) reach their callers from then on. Only growers:
 * a candidate has touched UW_GROWER_BYTES since attach and touched more
 * since the previous read (most processes touch a few pages and exit, a
 * compiler grows for a second), the fastest first, and the syncs of a read
 * stop after UW_SYNC_BUDGET_NS (a sync compiles the tables of objects not
 * seen before: 10-90 ms each for the C library or libstdc++).
 */
#define UW_GROWER_BYTES	    (256 * 1024)
#define UW_GROWERS_PER_READ 4
#define UW_SYNC_BUDGET_NS   100000000ull

static int cmp_grower(const void *a, const void *b)
{
	const struct uw_grower *x = a, *y = b;

	return x->tgid < y->tgid ? -1 : x->tgid > y->tgid;
}

static void uw_growers(struct tracer *t, const struct raw_sample *raw)
{
	struct uw_grower top[UW_GROWERS_PER_READ];
	struct uw_grower *now = NULL;
	size_t nnow = 0;
	int ntop = 0;
	uint64_t t0;

	if (!t->uw || !t->opts.growth || t->opts.npids)
		return;
	now = malloc((raw->nprocs + 1) * sizeof(*now));
	if (!now)
		return;
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < raw->nprocs; i++) {
		const struct raw_proc *p = &raw->procs[i];
		struct uw_grower key = {.tgid = p->tgid}, *was;
		bool failed = false;
		uint64_t rate;
		int k;

		if (p->touched_bytes < UW_GROWER_BYTES ||
		    (pid_t)p->tgid == getpid() ||
		    unwinder_has(t->uw, (pid_t)p->tgid))
			continue;
		for (int f = 0; f < UW_FAILED; f++)
			failed |= t->uw_failed[f] == p->tgid;
		if (failed)
			continue;
		now[nnow].tgid = p->tgid;
		now[nnow++].touched = p->touched_bytes;
		was = t->uw_prev ? bsearch(&key, t->uw_prev, t->uw_nprev,
					   sizeof(key), cmp_grower)
				 : NULL;
		if (!was || p->touched_bytes <= was->touched)
			continue;
		rate = p->touched_bytes - was->touched;
		if (ntop == UW_GROWERS_PER_READ &&
		    top[ntop - 1].touched >= rate)
			continue;
		if (ntop < UW_GROWERS_PER_READ)
			ntop++;
		for (k = ntop - 1; k > 0 && top[k - 1].touched < rate; k--)
			top[k] = top[k - 1];
		top[k].tgid = p->tgid;
		top[k].touched = rate;
	}
	/* One that exited (the sample keeps the dead) is not tried again. */
	t0 = mono_ns();
	for (int k = 0; k < ntop && mono_ns() - t0 < UW_SYNC_BUDGET_NS; k++)
		if (uw_sync(t, (pid_t)top[k].tgid))
			t->uw_failed[t->uw_nfailed++ % UW_FAILED] = top[k].tgid;
	pthread_mutex_unlock(&t->lock);
	qsort(now, nnow, sizeof(*now), cmp_grower);
	free(t->uw_prev);
	t->uw_prev = now;
	t->uw_nprev = nnow;
}

void tracer_unwind_stats(struct tracer *t, struct tracer_unwind_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!t->uw)
		return;
	out->enabled = true;
	pthread_mutex_lock(&t->lock);
	unwinder_stats(t->uw, &out->tables);
	pthread_mutex_unlock(&t->lock);
	for (__u32 k = 0; k < UW_ENDS; k++) {
		if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.unwind_ends),
					&k, t->percpu))
			continue;
		for (int c = 0; c < t->ncpus; c++)
			out->ends[k] += t->percpu[c];
	}
}

int tracer_read(struct tracer *t, struct raw_sample *raw)
{
	struct bpf_program *prog;
	uint64_t epoch;
	int err, fd;

	raw->mono_ns = mono_ns();
	clock_gettime(CLOCK_REALTIME, &raw->wall);
	/* A process that changed its allocator tables (tracemalloc.start(),
	 * PyMem_SetAllocator) is probed at its new functions. */
	pthread_mutex_lock(&t->lock);
	for (int i = 0; i < t->npyp; i++) {
		struct py_probes *pp = &t->pyp[i];
		int perr = pp->fallback ? 0 : pyp_sync(t, pp);

		if (perr && perr != -ESRCH && perr != -EFAULT && !pp->warned) {
			pp->warned = true;
			fprintf(stderr,
				"memtop: pid %d: cannot follow its allocator "
				"tables (%s): its Python allocations are no "
				"longer seen\n",
				pp->pid, strerror(-perr));
		}
	}
	pthread_mutex_unlock(&t->lock);
	uw_refresh(t, raw->mono_ns);
	/* The interval that ends now: BPF keeps the next one's peaks apart. */
	epoch = __sync_fetch_and_add(&t->skel->bss->peak_epoch, 1);
	/* Exec'd processes' blocks drop from their sites before the read. */
	tracer_sweep(t, true);
	/* Blocks still waiting in the per-CPU pending slots are charged to
	 * their sites first (bpf/pending.bpf.h: flush_pending). */
	{
		LIBBPF_OPTS(bpf_test_run_opts, ro);

		if (bpf_prog_test_run_opts(
			    bpf_program__fd(t->skel->progs.flush_pending),
			    &ro) &&
		    !t->flush_warned) {
			t->flush_warned = true;
			fprintf(stderr,
				"memtop: cannot flush the pending blocks (%s): "
				"the newest block of each CPU may show one "
				"refresh late\n",
				strerror(errno));
		}
	}
	err = read_sites_iter(t, raw);
	if (err == 1)
		err = bpfmap_read_all(&t->batch,
				      bpf_map__fd(t->skel->maps.sites),
				      sizeof(struct mt_site_key),
				      sizeof(struct mt_stats), emit_site, raw);
	if (!err)
		err = sum_procs(raw);
	if (err) {
		fprintf(stderr, "memtop: cannot read the BPF maps: %s\n",
			strerror(-err));
		return err;
	}
	uw_growers(t, raw);
	/* Retired before this read first: a site retired now is still among
	 * the sites read, and only from the next read on among the retired. */
	add_retired(t, raw);
	reclaim_idle(t, raw);
	read_anon(t, raw);
	read_gc(t, raw);
	read_peaks(t, raw, epoch);
	if (t->opts.growth) {
		growth_read(t->skel, raw, !t->global);
		for (size_t i = 0; i < raw->nprocs; i++)
			raw->procs[i].exact =
				has_set(t, (pid_t)raw->procs[i].tgid);
	}
	note_not_seen(t, raw);
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < raw->nprocs; i++) {
		struct raw_proc *p = &raw->procs[i];
		struct comm_entry *c = &t->comms[p->tgid % NCOMMS];

		if (c->tgid == p->tgid)
			memcpy(p->comm, c->comm, sizeof(p->comm));
	}
	pthread_mutex_unlock(&t->lock);
	fd = bpf_map__fd(t->skel->maps.counters);
	for (__u32 i = 0; i < MT_CNT_NR; i++) {
		if (bpf_map_lookup_elem(fd, &i, t->percpu))
			continue;
		raw->counters[i] = 0;
		for (int c = 0; c < t->ncpus; c++)
			raw->counters[i] += t->percpu[c];
	}
	bpf_object__for_each_program(prog, t->skel->obj)
	{
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);

		/* The page-allocation program skips pages allocated inside
		 * other BPF programs (their map elements): no fault's huge
		 * page, nothing lost. */
		if (prog == t->skel->progs.growth_thp)
			continue;
		if (!bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len))
			raw->recursion_misses += info.recursion_misses;
	}
	return 0;
}

struct live_cb {
	void (*fn)(void *ctx, uint32_t tgid, uint64_t addr, uint64_t size,
		   uint64_t stack_id);
	void *ctx;
};

static int emit_live(void *ctx, const void *k, const void *v)
{
	const struct mt_live_key *lk = k;
	const struct mt_live *lv = v;
	struct live_cb *cb = ctx;

	cb->fn(cb->ctx, lk->tgid, lk->addr, lv->size, lv->stack_id);
	return 0;
}

int tracer_read_live(struct tracer *t,
		     void (*fn)(void *ctx, uint32_t tgid, uint64_t addr,
				uint64_t size, uint64_t stack_id),
		     void *ctx)
{
	struct live_cb cb = {fn, ctx};

	return bpfmap_read_all(&t->batch, bpf_map__fd(t->skel->maps.live),
			       sizeof(struct mt_live_key),
			       sizeof(struct mt_live), emit_live, &cb);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Keys (struct mt_site_key) of the processes in a sorted set, of one kind
 * (-1: all): one walk of a map for any number of processes, so that the
 * processes that exit together cost one pass, not one each. */
struct forget_ctx {
	struct tracer *t;
	const uint32_t *set;
	size_t n;
	int kind;
};

static bool forget_match(void *ctx, const void *k)
{
	const struct forget_ctx *f = ctx;
	const struct mt_site_key *key = k;

	return (f->kind < 0 || key->kind == (__u32)f->kind) &&
	       bsearch(&key->tgid, f->set, f->n, sizeof(*f->set), cmp_u32);
}

static void forget_stack(void *ctx, const void *k)
{
	delete_stack(((struct forget_ctx *)ctx)->t, k);
}

/* Delete tgid's sites of one kind (-1: all) and their stacks. */
static void forget_sites(struct tracer *t, uint32_t tgid, int kind)
{
	struct forget_ctx f = {.t = t, .set = &tgid, .n = 1, .kind = kind};

	stack_epoch_bump(t);
	bpfmap_delete_if(bpf_map__fd(t->skel->maps.sites),
			 sizeof(struct mt_site_key), forget_match, forget_stack,
			 &f);
	stack_epoch_bump(t);
}

void tracer_forget_many(struct tracer *t, const uint32_t *tgids, size_t n)
{
	struct forget_ctx f = {.t = t, .n = n, .kind = -1};
	uint32_t *set;

	if (!n)
		return;
	set = malloc(n * sizeof(*set));
	if (!set) { /* one at a time then */
		for (size_t i = 0; i < n; i++)
			tracer_forget_many(t, &tgids[i], 1);
		return;
	}
	memcpy(set, tgids, n * sizeof(*set));
	qsort(set, n, sizeof(*set), cmp_u32);
	f.set = set;
	for (size_t k = 0; k < n; k++) {
		uint32_t tgid = set[k];

		/* Only a process that is gone loses its unwind tables:
		 * growth mode's switch forgets sites under t->lock, with the
		 * process still alive. */
		if (t->uw) {
			pthread_mutex_lock(&t->lock);
			unwinder_forget(t->uw, (pid_t)tgid);
			pthread_mutex_unlock(&t->lock);
		}
		if (t->growth)
			growth_forget(t->skel, tgid);
		bpf_map_delete_elem(bpf_map__fd(t->skel->maps.procs), &tgid);
		bpf_map_delete_elem(bpf_map__fd(t->skel->maps.peaks), &tgid);
		for (int i = 0; i < t->nretired; i++)
			if (t->retired[i].tgid == tgid)
				t->retired[i--] = t->retired[--t->nretired];
		tracer_python_forget(t, tgid);
	}
	stack_epoch_bump(t);
	bpfmap_delete_if(bpf_map__fd(t->skel->maps.sites),
			 sizeof(struct mt_site_key), forget_match, forget_stack,
			 &f);
	stack_epoch_bump(t);
	bpfmap_delete_if(bpf_map__fd(t->skel->maps.py_stacks),
			 sizeof(struct mt_site_key), forget_match, NULL, &f);
	bpfmap_delete_if(bpf_map__fd(t->skel->maps.gc_sites),
			 sizeof(struct mt_site_key), forget_match, NULL, &f);
	free(set);
}

void tracer_forget(struct tracer *t, uint32_t tgid)
{
	tracer_forget_many(t, &tgid, 1);
}

/* A stack's Python frames, anonymous mmap, forgetting a process. */
int tracer_pystack(struct tracer *t, const struct mt_site_key *site,
		   struct mt_py_stack *out)
{
	struct mt_site_key key = *site;
	bool python;

	/* Only a CPython process found (python_check) has Python stacks: the
	 * others' sites cost no lookup, many of them system-wide. */
	pthread_mutex_lock(&t->lock);
	python = py_pid_has(t, site->tgid);
	pthread_mutex_unlock(&t->lock);
	if (!python)
		return -ENOENT;
	key.kind = MT_SITE_ALLOC; /* stacks are stored under kind 0 */
	if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.py_stacks), &key,
				out))
		return -errno;
	return 0;
}

/*
 * Each process's peaks (struct mt_peak). An interval without a change of
 * its own held one level throughout: the level the next change started
 * from, or the level now.
 */
static void read_peaks(struct tracer *t, struct raw_sample *raw, uint64_t epoch)
{
	int fd = bpf_map__fd(t->skel->maps.peaks);
	unsigned s = epoch & 1, n = (epoch + 1) & 1;
	struct mt_peak pk;

	for (size_t i = 0; i < raw->nprocs; i++) {
		struct raw_proc *p = &raw->procs[i];

		if (bpf_map_lookup_elem(fd, &p->tgid, &pk))
			continue;
		p->has_peak = true;
		p->peak_bytes = pk.peak;
		p->peak_ns = pk.peak_ns;
		if (pk.ival_epoch[s] == epoch)
			p->interval_peak_bytes = pk.ival_peak[s];
		else if (pk.ival_epoch[n] == epoch + 1)
			p->interval_peak_bytes = pk.ival_start[n];
		else
			p->interval_peak_bytes = pk.cur;
	}
}

static void read_anon(struct tracer *t, struct raw_sample *raw)
{
	struct bpfmap_walk w = bpfmap_walk(
		bpf_map__fd(t->skel->maps.anon_procs), sizeof(__u32));
	struct mt_anon a;
	__u32 key;

	while (bpfmap_next(&w, &key, &a)) {
		struct raw_proc *p = sample_find_proc(raw, key);

		if (!p && !t->global)
			p = sample_add_proc(raw, key);
		if (p)
			p->anon_bytes = a.bytes;
	}
}

/* The cyclic collector's frees per site: only Python sites have them. */
static void read_gc(struct tracer *t, struct raw_sample *raw)
{
	struct bpfmap_walk w = bpfmap_walk(bpf_map__fd(t->skel->maps.gc_sites),
					   sizeof(struct mt_site_key));
	struct raw_gc g;

	while (bpfmap_next(&w, &g.key, &g.gc))
		if (sample_add_gc(raw, &g))
			break;
}

/* tgid's Python state (its py_stacks and gc_sites keys: the caller). */
static void tracer_python_forget(struct tracer *t, uint32_t tgid)
{
	struct py_probes *pp = pyp_find(t, (pid_t)tgid);

	if (pp) {
		pyp_detach(t, pp);
		*pp = t->pyp[--t->npyp];
	}
	bpf_map_delete_elem(bpf_map__fd(t->skel->maps.py_procs), &tgid);
	bpf_map_delete_elem(bpf_map__fd(t->skel->maps.py_pymalloc), &tgid);
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->npy_pids; i++)
		if (t->py_pids[i] == tgid)
			t->py_pids[i--] = t->py_pids[--t->npy_pids];
	pthread_mutex_unlock(&t->lock);
	bpf_map_delete_elem(bpf_map__fd(t->skel->maps.anon_procs), &tgid);
	python_forget((pid_t)tgid);
}

int tracer_stack(struct tracer *t, const struct mt_site_key *site,
		 struct mt_stack *out)
{
	struct mt_site_key k = *site, *key = &k;
	struct mt_stack_short s;

	k.kind = MT_SITE_ALLOC; /* stacks are stored under kind 0 */
	if (!bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.stacks_short), key,
				 &s)) {
		out->nr =
			s.nr > MEMTOP_SHORT_FRAMES ? MEMTOP_SHORT_FRAMES : s.nr;
		out->pad = 0;
		memcpy(out->ips, s.ips, sizeof(s.ips));
		return 0;
	}
	if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.stacks), key, out))
		return -errno;
	return 0;
}

struct destroy_job {
	struct bpf_link **links;
	int n;
};

static void *destroy_thread(void *arg)
{
	struct destroy_job *j = arg;

	for (int i = 0; i < j->n; i++)
		bpf_link__destroy(j->links[i]);
	return NULL;
}

/*
 * Detaching a uprobe waits for an RCU-tasks grace period (~0.1 s here), one
 * link after another: 50 probes took 6 s. Closing them from parallel threads
 * lets the waits overlap, so memtop exits promptly.
 */
static void destroy_links(struct bpf_link **links, int n)
{
	enum { NTHREADS = 32 };
	struct destroy_job jobs[NTHREADS];
	pthread_t tids[NTHREADS];
	bool started[NTHREADS] = {false};
	int per = (n + NTHREADS - 1) / NTHREADS, k = 0;

	for (int i = 0; i < n; i += per, k++) {
		jobs[k].links = links + i;
		jobs[k].n = i + per <= n ? per : n - i;
		started[k] = !pthread_create(&tids[k], NULL, destroy_thread,
					     &jobs[k]);
		if (!started[k])
			destroy_thread(&jobs[k]);
	}
	for (int i = 0; i < k; i++)
		if (started[i])
			pthread_join(tids[i], NULL);
}

/* Each uprobe_multi link waits for one grace period on close: overlap them. */
static void *close_thread(void *arg)
{
	close((int)(intptr_t)arg);
	return NULL;
}

static void close_fds(int *fds, int n)
{
	pthread_t tids[64];
	bool started[64];
	int k = 0;

	while (k < n) {
		int m = n - k < 64 ? n - k : 64;

		for (int i = 0; i < m; i++)
			started[i] =
				!pthread_create(&tids[i], NULL, close_thread,
						(void *)(intptr_t)fds[k + i]);
		for (int i = 0; i < m; i++) {
			if (started[i])
				pthread_join(tids[i], NULL);
			else
				close(fds[k + i]);
		}
		k += m;
	}
}

void tracer_close(struct tracer *t)
{
	if (!t)
		return;
	if (t->thread_running) {
		t->stop_thread = true;
		pthread_join(t->thread, NULL);
	}
	ring_buffer__free(t->rb);
	growth_detach(t->growth);
	for (int i = 0; i < t->nsets; i++)
		free(t->sets[i].ids);
	free(t->sets);
	for (int i = 0; i < t->npyp; i++)
		pyp_detach(t, &t->pyp[i]);
	free(t->pyp);
	close_fds(t->fds, t->nfds);
	free(t->fds);
	free(t->fd_pids);
	free(t->retired);
	destroy_links(t->links, t->nlinks);
	free(t->links);
	bpf_link__destroy(t->sites_iter);
	unwinder_free(t->uw);
	free(t->uw_prev);
	free(t->py_pids);
	memtop_bpf__destroy(t->skel);
	free(t->percpu);
	bpfmap_buf_free(&t->batch);
	bpfmap_buf_free(&t->sweep_batch);
	pthread_mutex_destroy(&t->sweep_lock);
	free(t->iter_buf);
	free(t);
}

/*
 * Growth mode's switch for one process: exact tracing probes its allocator
 * (and its faults are no longer charged), from a fresh start: its earlier
 * exact sites and blocks are forgotten. Back to growth, its probes go.
 */
int tracer_set_exact(struct tracer *t, uint32_t tgid, bool on)
{
	pid_t pid = (pid_t)tgid;
	int err = 0, n, k = 0;

	if (!t->opts.growth)
		return -EINVAL;
	pthread_mutex_lock(&t->lock);
	if (on == has_set(t, pid))
		goto out;
	if (on) {
		forget_sites(t, tgid, MT_SITE_ALLOC);
		growth_purge_live(t->skel, tgid);
		if (!set_for(t, pid)) {
			err = -ENOMEM;
			goto out;
		}
		n = scan_pid(t, pid);
		if (n <= 0) {
			err = n ? n : -ENOENT;
			on = false; /* undo below: no probes, no set */
		} else {
			err = growth_set_exact(t->skel, tgid, true);
			if (!err)
				goto out;
			on = false;
		}
	}
	growth_set_exact(t->skel, tgid, false);
	{
		int *gone = malloc((t->nfds ? t->nfds : 1) * sizeof(*gone));
		int m = 0;

		if (!gone) {
			err = -ENOMEM;
			goto out;
		}
		for (int i = 0; i < t->nfds; i++) {
			if (t->fd_pids[i] == pid) {
				gone[m++] = t->fds[i];
				continue;
			}
			t->fd_pids[k] = t->fd_pids[i];
			t->fds[k++] = t->fds[i];
		}
		t->nfds = k;
		close_fds(gone, m);
		free(gone);
	}
	for (int i = 0; i < t->nsets; i++) {
		if (t->sets[i].pid != pid)
			continue;
		free(t->sets[i].ids);
		t->sets[i] = t->sets[--t->nsets];
		break;
	}
out:
	pthread_mutex_unlock(&t->lock);
	return err;
}
