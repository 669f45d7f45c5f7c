/*
 * CPython processes, part of the tracer (tracer_int.h): a runtime found on
 * discovery's walk gets its frames walked by the BPF side (py_procs), and
 * the functions its allocator tables point at probed, followed at each
 * read when the process changes them (tracemalloc, PyMem_SetAllocator);
 * where the tables cannot be read, CPython's API functions are probed
 * instead (discover.c). Each such process's figures say what memtop
 * cannot see there.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "array.h"
#include "memtop.skel.h"
#include "placement.h"
#include "procfs.h"
#include "python.h"
#include "python/pymalloc.h"
#include "tracer_int.h"

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

static struct py_probes *pyp_find(struct tracer *t, pid_t pid)
{
	for (int i = 0; i < t->npyp; i++)
		if (t->pyp[i].pid == pid)
			return &t->pyp[i];
	return NULL;
}

bool pyprobes_tables(struct tracer *t, pid_t pid)
{
	struct py_probes *pp = pyp_find(t, pid);

	return pp && !pp->fallback;
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
			fn->kind == (MT_K_CALLOC | MT_K_CTX_ARG) ||
			fn->kind == (MT_K_REALLOC | MT_K_CTX_ARG));
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
	fd = discover_open_mapping(pp->pid, &e);
	if (fd < 0)
		return fd;
	off = fn->addr - e.start + e.offset;
	n = pread(fd, code, sizeof(code), (off_t)off);
	if (n > 0 && !t->opts.entry_probes &&
	    placement_choose(code, (size_t)n, false, &delta))
		delta = 0;
	off += delta;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	/* pymalloc's malloc, calloc and realloc: one session probe, whose
	 * entry skips the return where it can tell the result
	 * (bpf/pymalloc.bpf.h). */
	if (session)
		err = discover_attach(
			t,
			(fn->kind & ~MT_K_CTX_ARG) == MT_K_REALLOC
				? t->skel->progs.py_realloc_session
				: t->skel->progs.py_alloc_session,
			pp->pid, path, &off, &cookie, 1, false, true);
	else
		err = discover_attach(t, t->skel->progs.alloc_enter, pp->pid,
				      path, &off, &cookie, 1, false, false);
	if (!err)
		pp->fds[pp->nfds++] = t->fds[--t->nfds];
	if (!err && !is_free && !session) {
		err = discover_attach(t, t->skel->progs.alloc_exit, pp->pid,
				      path, &off, NULL, 1, true, false);
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
void pyprobes_note(struct tracer *t, struct raw_sample *raw)
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
bool pyprobes_has(const struct tracer *t, uint32_t pid)
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
void pyprobes_check(struct tracer *t, pid_t pid, const char *path,
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
	else if (n == 1 && !pyprobes_has(t, key) &&
		 !ARRAY_RESERVE(t->py_pids, t->py_pids_cap, t->npy_pids + 1))
		t->py_pids[t->npy_pids++] = key;
	if (n < 0 || (n == 1 && t->opts.verbose))
		fprintf(stderr, "memtop: %s\n", note);
	if (n != 0)
		pyp_start(t, pid);
}

/* tgid's Python state (its py_stacks and gc_sites keys: the caller). */
void pyprobes_forget(struct tracer *t, uint32_t tgid)
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
	python_forget((pid_t)tgid);
}

/* A process that changed its allocator tables (tracemalloc.start(),
 * PyMem_SetAllocator) is probed at its new functions. */
void pyprobes_follow(struct tracer *t)
{
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
}

void pyprobes_close(struct tracer *t)
{
	for (int i = 0; i < t->npyp; i++)
		pyp_detach(t, &t->pyp[i]);
	free(t->pyp);
}
