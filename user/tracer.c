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
#include <sys/stat.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "memtop.skel.h"
#include "placement.h"
#include "procfs.h"
#include "python.h"
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
_Static_assert(sizeof(struct mt_live_key) == 16, "mt_live_key ABI");
_Static_assert(sizeof(struct mt_live) == 16, "mt_live ABI");
_Static_assert(sizeof(struct mt_inflight) == 56, "mt_inflight ABI");

struct probe_sym {
	const char *name;
	__u32 kind; /* enum memtop_kind: the probe's attach cookie */
	bool ret; /* needs the uretprobe */
};

static const struct probe_sym probe_syms[] = {
	{ "malloc", MT_K_MALLOC, true },
	{ "calloc", MT_K_CALLOC, true },
	{ "realloc", MT_K_REALLOC, true },
	{ "reallocarray", MT_K_REALLOCARRAY, true },
	{ "free", MT_K_FREE, false },
	{ "posix_memalign", MT_K_POSIX_MEMALIGN, true },
	{ "aligned_alloc", MT_K_MEMALIGN, true },
	{ "memalign", MT_K_MEMALIGN, true },
	{ "valloc", MT_K_MALLOC, true },
	{ "pvalloc", MT_K_MALLOC, true },
	/* C++: every operator new takes the size first. */
	{ "_Znwm", MT_K_MALLOC, true },
	{ "_Znam", MT_K_MALLOC, true },
	{ "_ZnwmRKSt9nothrow_t", MT_K_MALLOC, true },
	{ "_ZnamRKSt9nothrow_t", MT_K_MALLOC, true },
	{ "_ZnwmSt11align_val_t", MT_K_MALLOC, true },
	{ "_ZnamSt11align_val_t", MT_K_MALLOC, true },
	{ "_ZnwmSt11align_val_tRKSt9nothrow_t", MT_K_MALLOC, true },
	{ "_ZnamSt11align_val_tRKSt9nothrow_t", MT_K_MALLOC, true },
	/* ... and every operator delete the pointer first. */
	{ "_ZdlPv", MT_K_DELETE, false },
	{ "_ZdaPv", MT_K_DELETE, false },
	{ "_ZdlPvm", MT_K_DELETE, false },
	{ "_ZdaPvm", MT_K_DELETE, false },
	{ "_ZdlPvRKSt9nothrow_t", MT_K_DELETE, false },
	{ "_ZdaPvRKSt9nothrow_t", MT_K_DELETE, false },
	{ "_ZdlPvSt11align_val_t", MT_K_DELETE, false },
	{ "_ZdaPvSt11align_val_t", MT_K_DELETE, false },
	{ "_ZdlPvmSt11align_val_t", MT_K_DELETE, false },
	{ "_ZdaPvmSt11align_val_t", MT_K_DELETE, false },
	{ "_ZdlPvSt11align_val_tRKSt9nothrow_t", MT_K_DELETE, false },
	{ "_ZdaPvSt11align_val_tRKSt9nothrow_t", MT_K_DELETE, false },
	/* CPython (issue 7): pymalloc serves small objects from arenas, so its
	 * API is probed; the outermost call counts once. Its frees pass the
	 * block on (PyObject_Free -> PyMem_RawFree -> free): MT_K_DELETE. */
	{ "PyObject_Malloc", MT_K_MALLOC, true },
	{ "PyObject_Calloc", MT_K_CALLOC, true },
	{ "PyObject_Realloc", MT_K_REALLOC, true },
	{ "PyObject_Free", MT_K_DELETE, false },
	{ "PyMem_Malloc", MT_K_MALLOC, true },
	{ "PyMem_Calloc", MT_K_CALLOC, true },
	{ "PyMem_Realloc", MT_K_REALLOC, true },
	{ "PyMem_Free", MT_K_DELETE, false },
	{ "PyMem_RawMalloc", MT_K_MALLOC, true },
	{ "PyMem_RawCalloc", MT_K_CALLOC, true },
	{ "PyMem_RawRealloc", MT_K_REALLOC, true },
	{ "PyMem_RawFree", MT_K_DELETE, false },
};

#define NSYMS (sizeof(probe_syms) / sizeof(probe_syms[0]))

struct file_set;
struct tracer;

/* Issue 7 (defined with tracer_pystack). */
static void read_anon(struct tracer *t, struct raw_sample *raw);
static void tracer_python_forget(struct tracer *t, uint32_t tgid);

/* Names of exited processes, from their exit events (a small cache). */
#define NCOMMS 4096
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
	int *fds; /* uprobe_multi links */
	int nfds, fds_cap;
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
	int nlinks, links_cap;
	int ncpus;
	uint64_t *percpu; /* scratch for per-CPU lookups */
	void *batch_keys;
	void *batch_vals;
	size_t batch_cap;
	struct bpf_link *sites_iter; /* dump_sites on the sites map, or NULL */
	bool flush_warned;
	char *iter_buf;
};


struct sym_loc {
	uint64_t addr; /* st_value; 0 = not defined here */
	uint64_t file_off; /* where its code is in the file */
	uint8_t code[32]; /* its first bytes, for probe placement */
	size_t ncode;
};

static void sym_read_code(Elf *elf, GElf_Sym *s, struct sym_loc *loc)
{
	Elf_Scn *scn = elf_getscn(elf, s->st_shndx);
	GElf_Shdr sh;
	Elf_Data *data;
	uint64_t in;

	if (!scn || !gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS ||
	    s->st_value < sh.sh_addr || s->st_value >= sh.sh_addr + sh.sh_size)
		return;
	in = s->st_value - sh.sh_addr;
	loc->file_off = sh.sh_offset + in;
	data = elf_getdata(scn, NULL);
	if (!data || !data->d_buf || in >= data->d_size)
		return;
	loc->ncode = data->d_size - in < sizeof(loc->code) ? data->d_size - in
							     : sizeof(loc->code);
	memcpy(loc->code, (const char *)data->d_buf + in, loc->ncode);
}

/*
 * Which probe_syms a file defines, where, and their first bytes. Symbols at
 * the same address (aliases such as memalign/aligned_alloc) are probed once,
 * as two probes on one instruction would look like a nested call.
 */
static int elf_find_syms(const char *path, struct sym_loc locs[NSYMS])
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	Elf *elf;
	int fd, found = 0;

	memset(locs, 0, sizeof(*locs) * NSYMS);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		found = -ENOEXEC;
		goto cleanup;
	}
	while ((scn = elf_nextscn(elf, scn))) {
		Elf_Data *data;
		size_t n;

		if (!gelf_getshdr(scn, &sh) ||
		    (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB) ||
		    !sh.sh_entsize)
			continue;
		data = elf_getdata(scn, NULL);
		if (!data)
			continue;
		n = sh.sh_size / sh.sh_entsize;
		for (size_t i = 0; i < n; i++) {
			GElf_Sym s;
			const char *name;

			if (!gelf_getsym(data, i, &s) ||
			    GELF_ST_TYPE(s.st_info) != STT_FUNC ||
			    s.st_shndx == SHN_UNDEF || !s.st_value ||
			    (GELF_ST_BIND(s.st_info) != STB_GLOBAL &&
			     GELF_ST_BIND(s.st_info) != STB_WEAK))
				continue;
			name = elf_strptr(elf, sh.sh_link, s.st_name);
			if (!name)
				continue;
			for (size_t k = 0; k < NSYMS; k++) {
				if (locs[k].addr ||
				    strcmp(name, probe_syms[k].name))
					continue;
				locs[k].addr = s.st_value;
				sym_read_code(elf, &s, &locs[k]);
				if (locs[k].file_off)
					found++;
				else
					locs[k].addr = 0;
			}
		}
	}
cleanup:
	if (elf)
		elf_end(elf);
	close(fd);
	return found;
}

static int add_link(struct tracer *t, struct bpf_link *l)
{
	if (t->nlinks == t->links_cap) {
		int ncap = t->links_cap ? t->links_cap * 2 : 64;
		struct bpf_link **p = realloc(t->links, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		t->links = p;
		t->links_cap = ncap;
	}
	t->links[t->nlinks++] = l;
	return 0;
}

/*
 * bpf(BPF_LINK_CREATE) for a uprobe_multi link, which libbpf 1.1 predates;
 * the layout is the kernel's union bpf_attr link_create (6.6+).
 */
struct uprobe_multi_attr {
	__u32 prog_fd;
	__u32 target_fd;
	__u32 attach_type;
	__u32 flags;
	__u64 path;
	__u64 offsets;
	__u64 ref_ctr_offsets;
	__u64 cookies;
	__u32 cnt;
	__u32 um_flags;
	__u32 pid;
	__u32 pad;
};

#define MT_BPF_TRACE_UPROBE_MULTI 48
#define MT_BPF_F_UPROBE_MULTI_RETURN 1

static int add_fd(struct tracer *t, int fd)
{
	if (t->nfds == t->fds_cap) {
		int ncap = t->fds_cap ? t->fds_cap * 2 : 32;
		int *p = realloc(t->fds, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		t->fds = p;
		t->fds_cap = ncap;
	}
	t->fds[t->nfds++] = fd;
	return 0;
}

static int attach_multi(struct tracer *t, struct bpf_program *prog,
			pid_t pid, const char *path, const uint64_t *offs,
			const uint64_t *cookies, int n, bool ret)
{
	struct uprobe_multi_attr a;
	int fd, err;

	memset(&a, 0, sizeof(a));
	a.prog_fd = bpf_program__fd(prog);
	a.attach_type = MT_BPF_TRACE_UPROBE_MULTI;
	a.path = (uintptr_t)path;
	a.offsets = (uintptr_t)offs;
	a.cookies = (uintptr_t)cookies;
	a.cnt = n;
	a.um_flags = ret ? MT_BPF_F_UPROBE_MULTI_RETURN : 0;
	a.pid = pid > 0 ? (__u32)pid : 0;
	fd = syscall(__NR_bpf, BPF_LINK_CREATE, &a, sizeof(a));
	if (fd < 0) {
		err = -errno;
		fprintf(stderr,
			"memtop: cannot attach %d %s to %s (pid %d): %s\n", n,
			ret ? "uretprobes" : "uprobes", path, pid,
			strerror(-err));
		return err;
	}
	err = add_fd(t, fd);
	if (err)
		close(fd);
	else
		t->nprobes += n;
	return err;
}

/* Probe every allocator entry point path defines, in pid (-1: all). */
static int attach_file(struct tracer *t, pid_t pid, const char *path,
		       bool required, const struct tracer_opts *o)
{
	struct sym_loc locs[NSYMS];
	uint64_t offs[NSYMS], cookies[NSYMS], roffs[NSYMS];
	int n, nent = 0, nret = 0, err;

	n = elf_find_syms(path, locs);
	if (n < 0) {
		if (required)
			fprintf(stderr, "memtop: %s: %s\n", path,
				n == -ENOEXEC ? "not an ELF file" : strerror(-n));
		return n;
	}
	if (n == 0) {
		if (required)
			fprintf(stderr,
				"memtop: %s: exports none of the allocator functions\n",
				path);
		return required ? -ENOENT : 0;
	}
	for (size_t k = 0; k < NSYMS; k++) {
		const struct probe_sym *ps = &probe_syms[k];
		uint64_t delta = 0;
		bool dup = false;

		if (!locs[k].addr)
			continue;
		if (!strncmp(ps->name, "Py", 2) && o->python == PYTHON_OFF)
			continue; /* CPython's API, issue 7 */
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
	err = attach_multi(t, t->skel->progs.alloc_enter, pid, path, offs,
			   cookies, nent, false);
	if (!err && nret)
		err = attach_multi(t, t->skel->progs.alloc_exit, pid, path,
				   roffs, NULL, nret, true);
	if (err)
		return err;
	if (o->verbose)
		fprintf(stderr, "memtop: pid %d: %d functions probed in %s\n",
			pid, nent, path);
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
		if (set->ids[i].dev == st.st_dev && set->ids[i].ino == st.st_ino)
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

#ifndef RESOLVE_NO_MAGICLINKS
#define RESOLVE_NO_MAGICLINKS 0x02
#endif
#ifndef RESOLVE_IN_ROOT
#define RESOLVE_IN_ROOT 0x10
#endif

struct open_how_compat {
	__u64 flags;
	__u64 mode;
	__u64 resolve;
};

/*
 * Open a path a process maps as that process sees it: symlinks inside a
 * container resolve inside it, not on the host. Only a regular file with the
 * mapping's inode is accepted (no device files, nothing swapped in).
 */
static int open_in_root(pid_t pid, const char *path, uint64_t inode)
{
	struct open_how_compat how = { .flags = O_RDONLY | O_CLOEXEC,
				       .resolve = RESOLVE_IN_ROOT |
						  RESOLVE_NO_MAGICLINKS };
	char root[64];
	struct stat st;
	int dfd, fd;

	snprintf(root, sizeof(root), "/proc/%d/root", pid);
	dfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	fd = syscall(SYS_openat2, dfd, path, &how, sizeof(how));
	if (fd < 0)
		fd = -errno;
	close(dfd);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
	    (inode && st.st_ino != inode)) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

/* The probes' file set for pid: one per traced pid, or the global one. */
static struct file_set *set_for(struct tracer *t, pid_t pid)
{
	struct file_set *sets;

	if (t->global)
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
 * Issue 7: is path, mapped in pid at start, a CPython runtime? Then tell the
 * BPF side how to walk its frames, or say why its stacks stay native.
 */
static void python_check(struct tracer *t, pid_t pid, const char *path,
			 uint64_t start)
{
	struct mt_py_proc pp;
	char note[256];
	__u32 key = (__u32)pid;
	int n = python_detect(pid, path, start, &pp, note, sizeof(note));

	if (n == 1 &&
	    bpf_map_update_elem(bpf_map__fd(t->skel->maps.py_procs), &key, &pp,
				BPF_ANY))
		snprintf(note, sizeof(note),
			 "pid %d: cannot enable Python frames: %s", pid,
			 strerror(errno));
	if (n < 0 || (n == 1 && t->opts.verbose))
		fprintf(stderr, "memtop: %s\n", note);
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
	struct file_set *set = set_for(t, pid);
	struct maps_entry e;
	int total = 0, err = 0, n, fd;
	FILE *f;

	if (!set)
		return -ENOMEM;
	snprintf(mpath, sizeof(mpath), "/proc/%d/maps", pid);
	f = fopen(mpath, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (procfs_parse_maps_line(line, &e) || e.path[0] != '/' ||
		    !e.inode)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/root%s", pid, e.path);
		if (t->opts.python != PYTHON_OFF && e.offset == 0 &&
		    python_candidate(e.path))
			python_check(t, pid, path, e.start); /* issue 7 */
		/* Probe the very file the process maps: resolved inside its
		 * root, a regular file with the mapping's inode, then named by
		 * our descriptor so nothing can swap it in between. */
		fd = open_in_root(pid, e.path, e.inode);
		if (fd < 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
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
		n = attach_file(t, set->pid, path, false, &t->opts);
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
		n = attach_file(t, set->pid, t->opts.libs[i], true, &t->opts);
		if (n < 0)
			return n;
		total += n;
	}
	return total;
}

/* Probe what one explicitly named process needs; its errors are fatal. */
static int attach_target(struct tracer *t, pid_t pid)
{
	int n, total;

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
	if (t->opts.python == PYTHON_ON && !python_known(pid)) { /* issue 7 */
		fprintf(stderr,
			"memtop: pid %d is not a CPython process (--python on)\n",
			pid);
		return -ENOENT;
	}
	if (!total && !t->global && t->opts.nlibs) {
		fprintf(stderr,
			"memtop: pid %d: neither its mappings nor the --lib files define allocator functions to probe\n",
			pid);
		return -ENOENT;
	}
	if (!total && !t->global) {
		fprintf(stderr,
			"memtop: pid %d maps no allocator library to probe (a static binary? use --lib PATH)\n",
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
		if (t->global || has_set(t, e->tgid))
			scan_pid(t, e->tgid);
		pthread_mutex_unlock(&t->lock);
	}
	return 0;
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
	}
	return NULL;
}

int tracer_open(struct tracer **out, const struct tracer_opts *o)
{
	struct tracer *t;
	int err;

	*out = NULL;
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
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
	t->skel = memtop_bpf__open();
	if (!t->skel) {
		err = -errno;
		fprintf(stderr, "memtop: cannot open the BPF object: %s\n",
			strerror(-err));
		goto cleanup;
	}
	t->skel->rodata->self_tgid = getpid();
	t->skel->rodata->empty_programs = o->empty;
	t->skel->rodata->show_allocator = o->show_allocator;
	t->skel->rodata->nr_cpus = (__u32)(t->ncpus > 0 ? t->ncpus : 1);
	t->skel->rodata->filter_targets = o->filter;
	t->skel->rodata->system_wide = o->npids == 0;
	t->skel->rodata->follow_forks = o->follow;
	t->skel->rodata->min_size = o->min_size;
	if (o->depth)
		t->skel->rodata->max_depth = o->depth;
	t->skel->rodata->sample_every = o->sample_every;
	t->skel->rodata->python_frames = o->python != PYTHON_OFF; /* issue 7 */
	if (o->max_allocs)
		bpf_map__set_max_entries(t->skel->maps.live, o->max_allocs);
	if (o->max_stacks) {
		bpf_map__set_max_entries(t->skel->maps.sites, o->max_stacks);
		bpf_map__set_max_entries(t->skel->maps.stacks, o->max_stacks);
		bpf_map__set_max_entries(t->skel->maps.stacks_short,
					 o->max_stacks);
		bpf_map__set_max_entries(t->skel->maps.py_stacks, o->max_stacks);
	}
	bpf_program__set_expected_attach_type(t->skel->progs.alloc_enter,
					      MT_BPF_TRACE_UPROBE_MULTI);
	bpf_program__set_expected_attach_type(t->skel->progs.alloc_exit,
					      MT_BPF_TRACE_UPROBE_MULTI);
	err = memtop_bpf__load(t->skel);
	if (err) {
		fprintf(stderr, "memtop: cannot load the BPF programs: %s\n",
			strerror(-err));
		goto cleanup;
	}
	t->skel->bss->clock_ns = mono_ns();
	/* Process events first, so nothing exec'd meanwhile is missed. */
	{
		struct bpf_program *tps[] = { t->skel->progs.on_exec,
					      t->skel->progs.on_exit,
					      t->skel->progs.on_fork,
					      /* issue 7: anonymous mmap */
					      t->skel->progs.anon_enter,
					      t->skel->progs.anon_exit,
					      t->skel->progs.anon_on_exec,
					      t->skel->progs.anon_on_exit };

		for (size_t i = 0; i < sizeof(tps) / sizeof(tps[0]); i++) {
			struct bpf_link *l = bpf_program__attach(tps[i]);

			err = l ? add_link(t, l) : -errno;
			if (err) {
				fprintf(stderr,
					"memtop: cannot attach %s to its scheduler tracepoint: %s\n",
					bpf_program__name(tps[i]),
					strerror(-err));
				goto cleanup;
			}
		}
	}
	{
		union bpf_iter_link_info li = {
			.map.map_fd = (__u32)bpf_map__fd(t->skel->maps.sites)
		};
		LIBBPF_OPTS(bpf_iter_attach_opts, io, .link_info = &li,
			    .link_info_len = sizeof(li));

		/* Without it the batch lookup serves, only slower. */
		t->sites_iter = bpf_program__attach_iter(t->skel->progs.dump_sites,
							 &io);
		t->iter_buf = t->sites_iter ? malloc(ITER_BUF) : NULL;
	}
	t->rb = ring_buffer__new(bpf_map__fd(t->skel->maps.events), on_event,
				 t, NULL);
	if (!t->rb) {
		err = -errno;
		fprintf(stderr, "memtop: cannot open the event ring buffer: %s\n",
			strerror(-err));
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
		err = attach_target(t, o->pids[i]);
		if (err)
			goto cleanup;
	}
	if (o->npids == 0) {
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

static int ensure_batch(struct tracer *t, size_t n, size_t ksz, size_t vsz)
{
	void *k, *v;

	if (n <= t->batch_cap)
		return 0;
	k = realloc(t->batch_keys, n * 16 > n * ksz ? n * 16 : n * ksz);
	if (!k)
		return -ENOMEM;
	t->batch_keys = k;
	v = realloc(t->batch_vals, n * vsz);
	if (!v)
		return -ENOMEM;
	t->batch_vals = v;
	t->batch_cap = n;
	return 0;
}

/*
 * Read a whole hash map. Batch lookups cost a fraction of get_next_key walks;
 * the walk remains as a fallback for kernels without them.
 */
static int read_map(struct tracer *t, int fd, size_t ksz, size_t vsz,
		    int (*emit)(void *ctx, const void *k, const void *v),
		    void *ctx)
{
	const size_t chunk = 4096;
	__u64 in = 0, outb = 0;
	void *inp = NULL;
	size_t total = 0;
	int err;
	char key[16], next[16];

	err = ensure_batch(t, chunk, ksz, vsz);
	if (err)
		return err;
	for (;;) {
		__u32 count = chunk;

		err = bpf_map_lookup_batch(fd, inp, &outb, t->batch_keys,
					   t->batch_vals, &count, NULL);
		if (err && errno != ENOENT)
			break;
		for (__u32 i = 0; i < count; i++) {
			int e = emit(ctx, (char *)t->batch_keys + i * ksz,
				     (char *)t->batch_vals + i * vsz);
			if (e)
				return e;
		}
		total += count;
		if (err)
			return 0; /* ENOENT: done */
		in = outb;
		inp = &in;
	}
	/* Fall back to a key walk only for kernels without batch lookups: after
	 * a partial batch the walk would emit those entries a second time. */
	if (total || (errno != EINVAL && errno != EPERM && errno != ENOTSUPP &&
		      errno != EOPNOTSUPP))
		return -errno;
	err = bpf_map_get_next_key(fd, NULL, key);
	while (!err) {
		if (!bpf_map_lookup_elem(fd, key, t->batch_vals)) {
			int e = emit(ctx, key, t->batch_vals);

			if (e)
				return e;
		}
		err = bpf_map_get_next_key(fd, key, next);
		memcpy(key, next, ksz);
	}
	return 0;
}

static int emit_site(void *ctx, const void *k, const void *v)
{
	struct raw_site s;

	memcpy(&s.key, k, sizeof(s.key));
	memcpy(&s.st, v, sizeof(s.st));
	/* BPF keeps cumulative counters only (two atomics an event). */
	s.st.outstanding_bytes = (__s64)(s.st.alloc_bytes - s.st.free_bytes);
	s.st.outstanding_allocs = (__s64)(s.st.allocs - s.st.frees);
	return sample_add_site(ctx, &s);
}

/* Must match struct site_rec in memtop.bpf.c. */
struct site_rec {
	struct mt_site_key key;
	struct mt_stats st;
};

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
		nrec = have / sizeof(struct site_rec);
		for (i = 0; i < nrec && !err; i++) {
			struct site_rec r;

			memcpy(&r, t->iter_buf + i * sizeof(r), sizeof(r));
			err = emit_site(raw, &r.key, &r.st);
		}
		if (err)
			break;
		total += nrec;
		have -= nrec * sizeof(struct site_rec);
		memmove(t->iter_buf, t->iter_buf + nrec * sizeof(struct site_rec),
			have);
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
		struct retired *n = realloc(t->retired, (t->nretired + 1) *
							     sizeof(*n));

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
		qsort(raw->sites, raw->nsites, sizeof(*raw->sites), cmp_site_key);
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
		p->st.outstanding_bytes += st->outstanding_bytes;
		p->st.outstanding_allocs += st->outstanding_allocs;
		p->st.allocs += st->allocs;
		p->st.frees += st->frees;
		p->st.alloc_bytes += st->alloc_bytes;
		p->st.free_bytes += st->free_bytes;
		if (!p->st.first_ns || (st->first_ns && st->first_ns < p->st.first_ns))
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

/* A stack lives in one of two maps by its depth; forget it in both. */
static void delete_stack(struct tracer *t, const struct mt_site_key *key)
{
	bpf_map_delete_elem(bpf_map__fd(t->skel->maps.stacks), key);
	bpf_map_delete_elem(bpf_map__fd(t->skel->maps.stacks_short), key);
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

		if (r->st.outstanding_allocs || r->st.outstanding_bytes ||
		    !r->st.last_ns || raw->mono_ns < r->st.last_ns ||
		    raw->mono_ns - r->st.last_ns < t->opts.reclaim_ns)
			continue;
		if (bpf_map_lookup_and_delete_elem(sites, &r->key, &v))
			continue;
		if (v.allocs != r->st.allocs || v.frees != r->st.frees) {
			if (bpf_map_update_elem(sites, &r->key, &v, BPF_NOEXIST))
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

int tracer_read(struct tracer *t, struct raw_sample *raw)
{
	struct bpf_program *prog;
	int err, fd;

	raw->mono_ns = mono_ns();
	clock_gettime(CLOCK_REALTIME, &raw->wall);
	/* Blocks still waiting in the per-CPU pending slots are charged to
	 * their sites first (memtop.bpf.c: flush_pending). */
	{
		LIBBPF_OPTS(bpf_test_run_opts, ro);

		if (bpf_prog_test_run_opts(
			    bpf_program__fd(t->skel->progs.flush_pending), &ro) &&
		    !t->flush_warned) {
			t->flush_warned = true;
			fprintf(stderr,
				"memtop: cannot flush the pending blocks (%s): the newest block of each CPU may show one refresh late\n",
				strerror(errno));
		}
	}
	err = read_sites_iter(t, raw);
	if (err == 1)
		err = read_map(t, bpf_map__fd(t->skel->maps.sites),
			       sizeof(struct mt_site_key),
			       sizeof(struct mt_stats), emit_site, raw);
	if (!err)
		err = sum_procs(raw);
	if (err) {
		fprintf(stderr, "memtop: cannot read the BPF maps: %s\n",
			strerror(-err));
		return err;
	}
	/* Retired before this read first: a site retired now is still among
	 * the sites read, and only from the next read on among the retired. */
	add_retired(t, raw);
	reclaim_idle(t, raw);
	read_anon(t, raw); /* issue 7 */
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

		if (!bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len))
			raw->recursion_misses += info.recursion_misses;
	}
	return 0;
}

void tracer_forget(struct tracer *t, uint32_t tgid)
{
	int sites = bpf_map__fd(t->skel->maps.sites);
	struct mt_site_key key, next;
	bool first = true;

	stack_epoch_bump(t);
	/* Deleting the current key would restart the walk: step first. */
	while (!bpf_map_get_next_key(sites, first ? NULL : &key, &next)) {
		if (!first && key.tgid == tgid) {
			bpf_map_delete_elem(sites, &key);
			delete_stack(t, &key);
		}
		key = next;
		first = false;
	}
	if (!first && key.tgid == tgid) {
		bpf_map_delete_elem(sites, &key);
		delete_stack(t, &key);
	}
	stack_epoch_bump(t);
	bpf_map_delete_elem(bpf_map__fd(t->skel->maps.procs), &tgid);
	for (int i = 0; i < t->nretired; i++)
		if (t->retired[i].tgid == tgid)
			t->retired[i--] = t->retired[--t->nretired];
	tracer_python_forget(t, tgid); /* issue 7 */
}

/* Issue 7: a stack's Python frames, anonymous mmap, forgetting a process. */
int tracer_pystack(struct tracer *t, const struct mt_site_key *key,
		   struct mt_py_stack *out)
{
	if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.py_stacks), key, out))
		return -errno;
	return 0;
}

static void read_anon(struct tracer *t, struct raw_sample *raw)
{
	int fd = bpf_map__fd(t->skel->maps.anon_procs);
	__u32 key, next;
	struct mt_anon a;
	bool first = true;

	while (!bpf_map_get_next_key(fd, first ? NULL : &key, &next)) {
		struct raw_proc *p;

		first = false;
		key = next;
		if (bpf_map_lookup_elem(fd, &key, &a))
			continue;
		p = sample_find_proc(raw, key);
		if (!p && !t->global)
			p = sample_add_proc(raw, key);
		if (p)
			p->anon_bytes = a.bytes;
	}
}

static void tracer_python_forget(struct tracer *t, uint32_t tgid)
{
	int fd = bpf_map__fd(t->skel->maps.py_stacks);
	struct mt_site_key key, next;
	bool first = true;

	while (!bpf_map_get_next_key(fd, first ? NULL : &key, &next)) {
		if (!first && key.tgid == tgid)
			bpf_map_delete_elem(fd, &key);
		key = next;
		first = false;
	}
	if (!first && key.tgid == tgid)
		bpf_map_delete_elem(fd, &key);
	bpf_map_delete_elem(bpf_map__fd(t->skel->maps.py_procs), &tgid);
	bpf_map_delete_elem(bpf_map__fd(t->skel->maps.anon_procs), &tgid);
	python_forget((pid_t)tgid);
}

int tracer_stack(struct tracer *t, const struct mt_site_key *key,
		 struct mt_stack *out)
{
	struct mt_stack_short s;

	if (!bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.stacks_short), key,
				 &s)) {
		out->nr = s.nr > MEMTOP_SHORT_FRAMES ? MEMTOP_SHORT_FRAMES : s.nr;
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
	bool started[NTHREADS] = { false };
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
			started[i] = !pthread_create(&tids[i], NULL,
						     close_thread,
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
	for (int i = 0; i < t->nsets; i++)
		free(t->sets[i].ids);
	free(t->sets);
	close_fds(t->fds, t->nfds);
	free(t->fds);
	free(t->retired);
	destroy_links(t->links, t->nlinks);
	free(t->links);
	bpf_link__destroy(t->sites_iter);
	memtop_bpf__destroy(t->skel);
	free(t->percpu);
	free(t->batch_keys);
	free(t->iter_buf);
	free(t->batch_vals);
	free(t);
}
