/*
 * The tracer owns the BPF skeleton: it opens it, sizes the maps, loads it,
 * finds in each target the mapped files that export allocator entry points
 * (libc, libstdc++, jemalloc, a static executable, or what --lib names),
 * attaches uprobes and uretprobes filtered by PID, reads the aggregate maps
 * into raw samples and detaches everything on close. It is the only file
 * that knows the skeleton.
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "memtop.skel.h"
#include "placement.h"
#include "procfs.h"
#include "tracer.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524 /* the kernel's, seen by bpf(2) callers */
#endif

_Static_assert(sizeof(struct mt_site_key) == 16, "mt_site_key ABI");
_Static_assert(sizeof(struct mt_stack) == 8 + 8 * MEMTOP_MAX_FRAMES,
	       "mt_stack ABI");
_Static_assert(sizeof(struct mt_stats) == 64, "mt_stats ABI");
_Static_assert(sizeof(struct mt_live_key) == 16, "mt_live_key ABI");
_Static_assert(sizeof(struct mt_live) == 24, "mt_live ABI");
_Static_assert(sizeof(struct mt_inflight) == 56, "mt_inflight ABI");

enum probe_prog {
	P_MALLOC,
	P_CALLOC,
	P_REALLOC,
	P_REALLOCARRAY,
	P_MEMALIGN,
	P_POSIX_MEMALIGN,
	P_FREE,
	P_DELETE,
};

struct probe_sym {
	const char *name;
	enum probe_prog prog;
	bool ret; /* needs the uretprobe */
};

static const struct probe_sym probe_syms[] = {
	{ "malloc", P_MALLOC, true },
	{ "calloc", P_CALLOC, true },
	{ "realloc", P_REALLOC, true },
	{ "reallocarray", P_REALLOCARRAY, true },
	{ "free", P_FREE, false },
	{ "posix_memalign", P_POSIX_MEMALIGN, true },
	{ "aligned_alloc", P_MEMALIGN, true },
	{ "memalign", P_MEMALIGN, true },
	{ "valloc", P_MALLOC, true },
	{ "pvalloc", P_MALLOC, true },
	/* C++: every operator new takes the size first. */
	{ "_Znwm", P_MALLOC, true },
	{ "_Znam", P_MALLOC, true },
	{ "_ZnwmRKSt9nothrow_t", P_MALLOC, true },
	{ "_ZnamRKSt9nothrow_t", P_MALLOC, true },
	{ "_ZnwmSt11align_val_t", P_MALLOC, true },
	{ "_ZnamSt11align_val_t", P_MALLOC, true },
	{ "_ZnwmSt11align_val_tRKSt9nothrow_t", P_MALLOC, true },
	{ "_ZnamSt11align_val_tRKSt9nothrow_t", P_MALLOC, true },
	/* ... and every operator delete the pointer first. */
	{ "_ZdlPv", P_DELETE, false },
	{ "_ZdaPv", P_DELETE, false },
	{ "_ZdlPvm", P_DELETE, false },
	{ "_ZdaPvm", P_DELETE, false },
	{ "_ZdlPvRKSt9nothrow_t", P_DELETE, false },
	{ "_ZdaPvRKSt9nothrow_t", P_DELETE, false },
	{ "_ZdlPvSt11align_val_t", P_DELETE, false },
	{ "_ZdaPvSt11align_val_t", P_DELETE, false },
	{ "_ZdlPvmSt11align_val_t", P_DELETE, false },
	{ "_ZdaPvmSt11align_val_t", P_DELETE, false },
	{ "_ZdlPvSt11align_val_tRKSt9nothrow_t", P_DELETE, false },
	{ "_ZdaPvSt11align_val_tRKSt9nothrow_t", P_DELETE, false },
};

#define NSYMS (sizeof(probe_syms) / sizeof(probe_syms[0]))

struct tracer {
	struct memtop_bpf *skel;
	struct bpf_link **links;
	int nlinks, links_cap;
	int ncpus;
	uint64_t *percpu; /* scratch for per-CPU lookups */
	void *batch_keys;
	void *batch_vals;
	size_t batch_cap;
};

static struct bpf_program *prog_of(struct tracer *t, enum probe_prog p)
{
	switch (p) {
	case P_MALLOC:
		return t->skel->progs.malloc_enter;
	case P_CALLOC:
		return t->skel->progs.calloc_enter;
	case P_REALLOC:
		return t->skel->progs.realloc_enter;
	case P_REALLOCARRAY:
		return t->skel->progs.reallocarray_enter;
	case P_MEMALIGN:
		return t->skel->progs.memalign_enter;
	case P_POSIX_MEMALIGN:
		return t->skel->progs.posix_memalign_enter;
	case P_FREE:
		return t->skel->progs.free_enter;
	case P_DELETE:
		return t->skel->progs.delete_enter;
	}
	return NULL;
}

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

static int attach_one(struct tracer *t, pid_t pid, const char *path,
		      const char *func, uint64_t off, struct bpf_program *prog,
		      bool ret)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = ret);
	struct bpf_link *l;
	int err;

	l = bpf_program__attach_uprobe_opts(prog, pid, path, off, &opts);
	if (!l) {
		err = -errno;
		fprintf(stderr,
			"memtop: cannot attach %s to %s in %s (pid %d): %s\n",
			ret ? "uretprobe" : "uprobe", func, path, pid,
			strerror(-err));
		return err;
	}
	return add_link(t, l);
}

/* Probe every allocator entry point path defines, in pid. */
static int attach_file(struct tracer *t, pid_t pid, const char *path,
		       bool required, const struct tracer_opts *o)
{
	struct sym_loc locs[NSYMS];
	int n, err, attached = 0;

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
		for (size_t j = 0; j < k; j++)
			dup |= locs[j].addr == locs[k].addr;
		if (dup)
			continue;
		if (!o->entry_probes &&
		    placement_choose(locs[k].code, locs[k].ncode,
				     ps->prog == P_FREE || ps->prog == P_DELETE,
				     &delta))
			delta = 0;
		err = attach_one(t, pid, path, ps->name,
				 locs[k].file_off + delta,
				 prog_of(t, ps->prog), false);
		/* At delta the stack pointer and the return address are still
		 * the entry's, so the uretprobe can go there too. */
		if (!err && ps->ret)
			err = attach_one(t, pid, path, ps->name,
					 locs[k].file_off + delta,
					 t->skel->progs.alloc_exit, true);
		if (err)
			return err;
		if (o->verbose && delta)
			fprintf(stderr, "memtop: probing %s at +%llu\n",
				ps->name, (unsigned long long)delta);
		attached++;
	}
	if (o->verbose)
		fprintf(stderr, "memtop: pid %d: %d functions probed in %s\n",
			pid, attached, path);
	return attached;
}

struct file_id {
	dev_t dev;
	ino_t ino;
};

struct file_set {
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

/*
 * Attach to every mapped file of pid that defines allocator functions, opened
 * through /proc/PID/root so that a process in a container is probed in its
 * own files, then to the --lib files. Each file (by device and inode) is
 * probed once: two probes on one instruction would count twice.
 */
static int attach_pid(struct tracer *t, pid_t pid, const struct tracer_opts *o)
{
	char mpath[64], line[4096 + 256], path[PATH_MAX + 64];
	struct file_set seen = { 0 };
	struct maps_entry e;
	int total = 0, err = 0, n;
	FILE *f;

	snprintf(mpath, sizeof(mpath), "/proc/%d/maps", pid);
	f = fopen(mpath, "re");
	if (!f) {
		err = -errno;
		fprintf(stderr, "memtop: cannot read %s: %s\n", mpath,
			strerror(-err));
		return err;
	}
	while (fgets(line, sizeof(line), f)) {
		if (procfs_parse_maps_line(line, &e) || e.path[0] != '/' ||
		    !e.inode)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/root%s", pid, e.path);
		n = file_set_add(&seen, path);
		if (n == -ENOMEM) {
			err = n;
			goto cleanup;
		}
		if (n <= 0)
			continue; /* seen, or gone (deleted): nothing to probe */
		n = attach_file(t, pid, path, false, o);
		if (n < 0 && n != -ENOEXEC && n != -ENOENT && n != -EACCES) {
			err = n;
			goto cleanup;
		}
		if (n > 0)
			total += n;
	}
	for (int i = 0; i < o->nlibs; i++) {
		n = file_set_add(&seen, o->libs[i]);
		if (n < 0) {
			fprintf(stderr, "memtop: --lib %s: %s\n", o->libs[i],
				strerror(-n));
			err = n;
			goto cleanup;
		}
		if (n == 0)
			continue; /* already probed as one of pid's mappings */
		n = attach_file(t, pid, o->libs[i], true, o);
		if (n < 0) {
			err = n;
			goto cleanup;
		}
		total += n;
	}
	if (!total) {
		fprintf(stderr,
			"memtop: pid %d maps no allocator library to probe (a static binary? use --lib PATH)\n",
			pid);
		err = -ENOENT;
	}
cleanup:
	free(seen.ids);
	fclose(f);
	return err;
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
	if (o->max_allocs)
		bpf_map__set_max_entries(t->skel->maps.live, o->max_allocs);
	if (o->max_stacks) {
		bpf_map__set_max_entries(t->skel->maps.sites, o->max_stacks);
		bpf_map__set_max_entries(t->skel->maps.stacks, o->max_stacks);
	}
	err = memtop_bpf__load(t->skel);
	if (err) {
		fprintf(stderr, "memtop: cannot load the BPF programs: %s\n",
			strerror(-err));
		goto cleanup;
	}
	for (int i = 0; i < o->npids; i++) {
		err = attach_pid(t, o->pids[i], o);
		if (err)
			goto cleanup;
	}
	*out = t;
	return 0;
cleanup:
	tracer_close(t);
	return err;
}

int tracer_nprobes(const struct tracer *t)
{
	return t->nlinks;
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
	if (errno != EINVAL && errno != EPERM && errno != ENOTSUPP &&
	    errno != EOPNOTSUPP)
		return -errno;
	/* Fallback: walk keys (a partial batch read above is re-read). */
	(void)total;
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
	return sample_add_site(ctx, &s);
}

static int emit_proc(void *ctx, const void *k, const void *v)
{
	struct raw_proc *p = sample_add_proc(ctx, *(const __u32 *)k);

	if (!p)
		return -ENOMEM;
	p->has_stats = true;
	memcpy(&p->st, v, sizeof(p->st));
	return 0;
}

int tracer_read(struct tracer *t, struct raw_sample *raw)
{
	struct bpf_program *prog;
	struct timespec ts;
	int err, fd;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	raw->mono_ns = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
	clock_gettime(CLOCK_REALTIME, &raw->wall);
	err = read_map(t, bpf_map__fd(t->skel->maps.sites),
		       sizeof(struct mt_site_key), sizeof(struct mt_stats),
		       emit_site, raw);
	if (!err)
		err = read_map(t, bpf_map__fd(t->skel->maps.procs),
			       sizeof(__u32), sizeof(struct mt_stats),
			       emit_proc, raw);
	if (err) {
		fprintf(stderr, "memtop: cannot read the BPF maps: %s\n",
			strerror(-err));
		return err;
	}
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

int tracer_stack(struct tracer *t, const struct mt_site_key *key,
		 struct mt_stack *out)
{
	if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.stacks), key, out))
		return -errno;
	return 0;
}

void tracer_close(struct tracer *t)
{
	if (!t)
		return;
	for (int i = t->nlinks - 1; i >= 0; i--)
		bpf_link__destroy(t->links[i]);
	free(t->links);
	memtop_bpf__destroy(t->skel);
	free(t->percpu);
	free(t->batch_keys);
	free(t->batch_vals);
	free(t);
}
