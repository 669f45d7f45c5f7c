/*
 * Discovery, part of the tracer (tracer_int.h): which files each process
 * maps (/proc/PID/maps, each file opened as the process maps it, by
 * map_files or inside its root), which of them define allocator functions
 * (probes.c's table), and attaching those probes, once per file per set:
 * for a -p target, every process (system-wide), the --lib files, and the
 * processes growth mode switches to exact tracing. The -p precheck, before
 * the BPF programs load, walks the maps the same way. CPython runtimes met
 * on the walk go to pyprobes.c.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/perf_event.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "array.h"
#include "growth.h"
#include "memtop.skel.h"
#include "placement.h"
#include "probes.h"
#include "procfs.h"
#include "python.h"
#include "tracer_int.h"

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

int discover_attach(struct tracer *t, struct bpf_program *prog, pid_t pid,
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
	return discover_attach(t, prog, pid, path, offs, cookies, n, ret,
			       false);
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
		    (o->python == PYTHON_OFF || pyprobes_tables(t, pid)))
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

bool discover_has_set(struct tracer *t, pid_t pid)
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
int discover_open_mapping(pid_t pid, const struct maps_entry *e)
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

/*
 * Each file pid maps (a path and an inode), opened as the process maps it
 * (discover_open_mapping): fn gets the entry and a name for the open file,
 * /proc/self/fd/N, good for the call, or NULL where it could not be opened.
 * The name is our descriptor's, so nothing can swap the file in between.
 * The walk stops at fn's first nonzero return and returns it; 0 at the end,
 * -errno when the maps cannot be read.
 */
static int maps_walk(pid_t pid,
		     int (*fn)(void *ctx, const struct maps_entry *e,
			       const char *path),
		     void *ctx)
{
	char mpath[64], line[4096 + 256], path[64];
	struct maps_entry e;
	int ret = 0, fd;
	FILE *f;

	snprintf(mpath, sizeof(mpath), "/proc/%d/maps", pid);
	f = fopen(mpath, "re");
	if (!f)
		return -errno;
	while (!ret && fgets(line, sizeof(line), f)) {
		if (procfs_parse_maps_line(line, &e) || e.path[0] != '/' ||
		    !e.inode)
			continue;
		fd = discover_open_mapping(pid, &e);
		if (fd >= 0)
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ret = fn(ctx, &e, fd >= 0 ? path : NULL);
		if (fd >= 0)
			close(fd);
	}
	fclose(f);
	return ret;
}

struct scan {
	struct tracer *t;
	pid_t pid;
	struct file_set *set; /* NULL: looked at for CPython only */
	int total;
};

static int scan_file(void *ctx, const struct maps_entry *e, const char *path)
{
	struct scan *s = ctx;
	struct tracer *t = s->t;
	int n;

	if (!path)
		return 0;
	if (t->opts.python != PYTHON_OFF && e->offset == 0 &&
	    python_candidate(e->path))
		pyprobes_check(t, s->pid, path, e->start);
	if (!s->set)
		return 0;
	n = file_set_add(s->set, path);
	if (n == -ENOMEM)
		return n;
	if (n <= 0)
		return 0; /* seen already */
	n = attach_file(t, s->set->pid, path, e->path, false, &t->opts);
	if (n < 0 && n != -ENOEXEC && n != -ENOENT && n != -EACCES)
		return n;
	if (n > 0)
		s->total += n;
	return 0;
}

/*
 * Probe every file mapped by pid that defines allocator functions and is not
 * probed yet, in pid's set (the global one system-wide), each opened as pid
 * maps it, so that a process in a container is probed in its own files.
 * Returns the number of functions probed, or -errno.
 */
int discover_pid(struct tracer *t, pid_t pid)
{
	/* Growth mode probes only the processes switched to exact tracing;
	 * the others are scanned for CPython alone. */
	bool probes = !t->opts.growth || discover_has_set(t, pid);
	struct scan s = {
		.t = t, .pid = pid, .set = probes ? set_for(t, pid) : NULL};
	int err;

	if (probes && !s.set)
		return -ENOMEM;
	err = maps_walk(pid, scan_file, &s);
	return err ? err : s.total;
}

/* --lib files, probed for pid (or globally). */
int discover_libs(struct tracer *t, pid_t pid)
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

/*
 * Load pid's mappings and unwind tables (t->lock held, or no thread yet).
 * Before its probes attach, so its first stacks are unwound already.
 */
int discover_unwind(struct tracer *t, pid_t pid)
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

/*
 * A Go program allocates its heap in the Go runtime, from memory it maps
 * itself: the allocator probes see only its C allocations (cgo, libc), and
 * the figures would read as a process that holds nothing. Say so once.
 */
static void note_go(struct tracer *t, pid_t pid)
{
	char exe[64];

	snprintf(exe, sizeof(exe), "/proc/%d/exe", pid);
	if (t->opts.growth || probes_is_go(exe) != 1 ||
	    ARRAY_RESERVE(t->go_pids, t->go_pids_cap, t->ngo_pids + 1))
		return;
	t->go_pids[t->ngo_pids++] = (uint32_t)pid;
	fprintf(stderr,
		"memtop: pid %d is a Go program: the Go runtime's heap is not "
		"made with malloc, so only its C allocations are seen "
		"(--growth "
		"shows which stacks grow its RSS)\n",
		pid);
}

/* A named Go program's figures say its heap is not seen (t->lock). */
void discover_note_go(struct tracer *t, struct raw_sample *raw)
{
	if (t->opts.growth)
		return;
	for (size_t i = 0; i < t->ngo_pids; i++) {
		struct raw_proc *p = sample_find_proc(raw, t->go_pids[i]);

		if (!p)
			p = sample_add_proc(raw, t->go_pids[i]);
		if (p && !p->not_seen[0])
			snprintf(p->not_seen, sizeof(p->not_seen), "%s",
				 "the Go runtime's heap (not made with malloc: "
				 "--growth sees it)");
	}
}

/* tgid is gone: no note for it any more (t->lock). */
void discover_forget_go(struct tracer *t, uint32_t tgid)
{
	for (size_t i = 0; i < t->ngo_pids; i++)
		if (t->go_pids[i] == tgid)
			t->go_pids[i--] = t->go_pids[--t->ngo_pids];
}

/* Probe what one explicitly named process needs; its errors are fatal. */
int discover_target(struct tracer *t, pid_t pid)
{
	int n, total;

	discover_unwind(t, pid);
	total = discover_pid(t, pid);
	if (total < 0) {
		fprintf(stderr, "memtop: cannot probe pid %d: %s\n", pid,
			strerror(-total));
		return total;
	}
	n = discover_libs(t, pid);
	if (n < 0)
		return n;
	total += n;
	note_go(t, pid);
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
int discover_system(struct tracer *t)
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
		err = discover_pid(t, (pid_t)pid);
		if (err < 0 && err != -ENOENT && err != -ESRCH &&
		    err != -EACCES) {
			closedir(d);
			return err;
		}
	}
	closedir(d);
	return 0;
}

/* A file that defines allocator functions ends the walk; so does one that
 * cannot be opened: the attach decides then. */
static int precheck_file(void *ctx, const struct maps_entry *e,
			 const char *path)
{
	(void)e;
	return !path || probes_find_syms(path, ctx) > 0;
}

/*
 * What can be refused without the kernel, before the BPF programs load
 * (the verifier takes seconds): --lib files that are not ELF or export no
 * allocator function, and -p targets that map no file defining one. The
 * messages are those the attach would print.
 */
int discover_precheck(const struct tracer_opts *o)
{
	struct sym_loc locs[PROBE_NSYMS];
	int n;

	for (int i = 0; i < o->nlibs; i++) {
		n = probes_find_syms(o->libs[i], locs);
		if (n <= 0)
			return refuse_lib(o->libs[i], n);
	}
	if (o->nlibs || o->growth || o->filter)
		return 0;
	for (int i = 0; i < o->npids; i++) {
		n = maps_walk(o->pids[i], precheck_file, locs);
		if (n < 0)
			return 0; /* the attach says why */
		if (!n) {
			fprintf(stderr,
				"memtop: pid %d maps no allocator library to "
				"probe (a static binary? use --lib PATH)\n",
				o->pids[i]);
			return -ENOENT;
		}
	}
	return 0;
}

/*
 * Could a CPython runtime be met while these targets are traced? Only the
 * -p targets named at load time are known then (system-wide, a command
 * started by memtop and --follow's children are not), and discovery looks
 * for CPython only in files named like one (python_candidate, see
 * scan_file): a target mapping none is no Python unless it execs. The first
 * such target, or 0 where none is known, goes to *pid. Unreadable maps
 * count as a Python.
 */
bool discover_python_possible(const struct tracer_opts *o, pid_t *pid)
{
	char mpath[64], line[4096 + 256];
	struct maps_entry e;

	*pid = 0;
	if (o->python == PYTHON_OFF)
		return false;
	if (!o->npids || o->filter || o->follow || o->growth)
		return true;
	for (int i = 0; i < o->npids; i++) {
		bool found = false;
		FILE *f;

		snprintf(mpath, sizeof(mpath), "/proc/%d/maps", o->pids[i]);
		f = fopen(mpath, "re");
		if (!f)
			return true;
		while (!found && fgets(line, sizeof(line), f))
			found = !procfs_parse_maps_line(line, &e) &&
				python_candidate(e.path);
		fclose(f);
		if (found) {
			*pid = o->pids[i];
			return true;
		}
	}
	return false;
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
	if (on == discover_has_set(t, pid))
		goto out;
	if (on) {
		forget_sites(t, tgid, MT_SITE_ALLOC);
		growth_purge_live(t->skel, tgid);
		if (!set_for(t, pid)) {
			err = -ENOMEM;
			goto out;
		}
		n = discover_pid(t, pid);
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
		tracer_close_fds(gone, m);
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
