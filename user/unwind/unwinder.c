/*
 * Loading unwind tables into the kernel. An object (a mapped ELF file) is
 * known by its build id, or by device, inode, size and mtime when it has
 * none; its table is compiled once (unwind/cfi.c), copied into an array map
 * of exactly its rows, and that map is put in "unwind_tables" under a slot
 * number. A process's entry in "unwind_procs" lists its executable
 * mappings, sorted, each with the slot of its object's table and the bias
 * from an address to a table pc. Mapped files are opened through
 * /proc/PID/map_files, so a file deleted or replaced on disk, or one inside
 * a container, is the one the process runs. Memory is what the kernel
 * holds: rows, each array map's header, and each process's mapping list.
 */
#include <bpf/bpf.h>
#include <elfutils/libdwelf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "memtop.h"
#include "procfs.h"
#include "unwind/cfi.h"
#include "unwind/unwinder.h"

#define UW_TABLES    4096 /* slots in "unwind_tables" (bpf/unwind.bpf.h) */
#define MAP_OVERHEAD 4096 /* an array map's own memory, about */
#define MAX_SEGS     8
/* An object with this share (%) of its code inside rbp frames is walked by
 * frame pointers at return addresses: ~12 ns a frame instead of a table
 * search of log2(rows) map lookups. Built with -fno-omit-frame-pointer:
 * 87-92% here (the rest prologues, epilogues, a few leaf or asm functions);
 * without: libc 17%, libstdc++ 8%, libpython 0%. */
#define FP_SHARE 85

enum obj_state {
	OBJ_LOADED,
	OBJ_NO_CFI, /* no usable CFI: frame pointers */
	OBJ_OVER,   /* did not fit in the limit */
};

struct obj {
	/* identity */
	unsigned char build_id[64];
	size_t build_id_len;
	uint64_t dev, ino, size;
	int64_t mtime_ns;
	/* layout: PT_LOAD segments, for the bias of a mapping */
	struct {
		uint64_t offset, vaddr, filesz;
	} segs[MAX_SEGS];
	int nsegs;
	uint64_t base; /* table base (unwind_table_base) */
	enum obj_state state;
	uint32_t slot;
	uint32_t gen; /* which load of a table: BPF caches rows by it */
	uint32_t nrows;
	uint32_t fence_base, fence_nr, fence_shift; /* struct mt_unwind_fence */
	bool keeps_fp; /* MT_UW_FP: most of its code inside rbp frames */
	uint64_t bytes;
	uint64_t need; /* OBJ_OVER: the bytes it would take */
	int refs;      /* processes mapping it */
	uint64_t last_used;
};

/* A mapping seen at the last sync, and its object: not opened again. */
struct seen {
	uint64_t start, end, offset, inode;
	unsigned dev_major, dev_minor;
	int obj;
};

struct proc {
	pid_t pid;
	struct mt_unwind_proc map; /* as last written */
	int *objs; /* indices of the objects referenced, one per mapping */
	struct seen *seen; /* the mappings behind objs */
	int nobjs;
};

struct unwinder {
	struct unwinder_opts o;
	struct obj *objs;
	int nobjs;
	struct proc *procs;
	int nprocs;
	unsigned char used[UW_TABLES];
	uint64_t table_bytes;
	uint64_t tick;
	uint32_t loads; /* tables loaded so far: the next one's generation */
	double compile_ms;
};

int unwinder_new(struct unwinder **out, const struct unwinder_opts *opts)
{
	struct unwinder *u = calloc(1, sizeof(*u));

	*out = NULL;
	if (!u)
		return -ENOMEM;
	u->o = *opts;
	elf_version(EV_CURRENT);
	*out = u;
	return 0;
}

static struct proc *find_proc(const struct unwinder *u, pid_t pid)
{
	for (int i = 0; i < u->nprocs; i++)
		if (u->procs[i].pid == pid)
			return &u->procs[i];
	return NULL;
}

bool unwinder_has(const struct unwinder *u, pid_t pid)
{
	return find_proc(u, pid) != NULL;
}

static void unload(struct unwinder *u, struct obj *ob)
{
	if (ob->state != OBJ_LOADED)
		return;
	bpf_map_delete_elem(u->o.tables_fd, &ob->slot);
	u->used[ob->slot] = 0;
	u->table_bytes -= ob->bytes;
	ob->state = OBJ_OVER; /* loaded again when mapped again and room */
	ob->need = ob->bytes;
	ob->bytes = 0;
}

/* Room for bytes more: drop tables nobody maps, least recently used first. */
static bool make_room(struct unwinder *u, uint64_t bytes)
{
	while (u->table_bytes + bytes > u->o.max_bytes) {
		struct obj *victim = NULL;

		for (int i = 0; i < u->nobjs; i++) {
			struct obj *ob = &u->objs[i];

			if (ob->state == OBJ_LOADED && ob->refs == 0 &&
			    (!victim || ob->last_used < victim->last_used))
				victim = ob;
		}
		if (!victim)
			return false;
		unload(u, victim);
	}
	return true;
}

static int free_slot(const struct unwinder *u, uint32_t *slot)
{
	for (uint32_t i = 0; i < UW_TABLES; i++)
		if (!u->used[i]) {
			*slot = i;
			return 0;
		}
	return -ENOSPC;
}

_Static_assert(sizeof(struct mt_unwind_fence) == sizeof(struct mt_unwind_row),
	       "a fence takes a row's slot");

/*
 * The fences of rows[0..n) (struct mt_unwind_fence), about one per
 * FENCE_ROWS rows: the smallest power-of-two share of the pcs that needs
 * no more fences than that. Written to fences[0..*nr), which has room for
 * n / FENCE_ROWS + 1.
 */
#define FENCE_ROWS 4
static void build_fences(const struct mt_unwind_row *rows, size_t n,
			 struct mt_unwind_fence *fences, uint32_t *nr,
			 uint32_t *base, uint32_t *shift)
{
	uint64_t span, max = n / FENCE_ROWS + 1, b, nb;
	uint32_t sh = 0;
	size_t r = 0;

	*nr = 0;
	if (n < 2 * FENCE_ROWS)
		return;
	*base = rows[0].pc;
	span = (uint64_t)rows[n - 1].pc - rows[0].pc + 1;
	while (((span - 1) >> sh) + 1 > max)
		sh++;
	nb = ((span - 1) >> sh) + 1;
	for (b = 0; b < nb; b++) {
		uint64_t lo_pc = *base + (b << sh),
			 hi_pc = lo_pc + (1ull << sh);

		/* r: the row of the bucket's first pc, the last at or below
		 * it; the bucket's last row is the last below hi_pc. */
		while (r + 1 < n && rows[r + 1].pc <= lo_pc)
			r++;
		fences[b].lo = (uint32_t)r;
		if (b + 1 == nb) {
			fences[b].hi = (uint32_t)(n - 1);
		} else {
			size_t h = r;

			while (h + 1 < n && rows[h + 1].pc < hi_pc)
				h++;
			fences[b].hi = (uint32_t)h;
		}
	}
	*nr = (uint32_t)nb;
	*shift = sh;
}

/* Copy a compiled table and its fences into a new array map in slot
 * ob->slot. */
static int load_table(struct unwinder *u, struct obj *ob,
		      const struct unwind_table *t)
{
	LIBBPF_OPTS(bpf_map_create_opts, mo, .map_flags = BPF_F_INNER_MAP);
	LIBBPF_OPTS(bpf_map_batch_opts, bo);
	size_t n, total;
	const struct mt_unwind_row *rows = unwind_table_rows(t, &n);
	struct mt_unwind_row *all = NULL;
	uint32_t nf = 0, fbase = 0, fshift = 0;
	uint64_t fn;
	uint64_t bytes =
		(n + n / FENCE_ROWS + 1) * sizeof(*rows) + MAP_OVERHEAD;
	uint32_t *keys = NULL, slot, count;
	struct unwind_table_stats st;
	int fd = -1, err;

	if (n > MT_UW_ROWS_MASK || !make_room(u, bytes) ||
	    free_slot(u, &slot)) {
		ob->state = OBJ_OVER;
		ob->need = bytes;
		return 0;
	}
	all = malloc((n + n / FENCE_ROWS + 1) * sizeof(*all));
	if (!all) {
		err = -ENOMEM;
		goto cleanup;
	}
	memcpy(all, rows, n * sizeof(*rows));
	build_fences(rows, n, (struct mt_unwind_fence *)(all + n), &nf, &fbase,
		     &fshift);
	total = n + nf;
	bytes = total * sizeof(*rows) + MAP_OVERHEAD;
	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "memtop_uwrows", 4,
			    sizeof(*rows), (uint32_t)total, &mo);
	if (fd < 0) {
		err = -errno;
		goto cleanup;
	}
	keys = malloc(total * sizeof(*keys));
	if (!keys) {
		err = -ENOMEM;
		goto cleanup;
	}
	for (size_t i = 0; i < total; i++)
		keys[i] = (uint32_t)i;
	count = (uint32_t)total;
	if (bpf_map_update_batch(fd, keys, all, &count, &bo)) {
		/* Older kernels: one row at a time. */
		for (size_t i = 0; i < total; i++)
			if (bpf_map_update_elem(fd, &keys[i], &all[i], 0)) {
				err = -errno;
				goto cleanup;
			}
	}
	if (bpf_map_update_elem(u->o.tables_fd, &slot, &fd, 0)) {
		err = -errno;
		goto cleanup;
	}
	u->used[slot] = 1;
	ob->slot = slot;
	ob->gen = ++u->loads;
	ob->nrows = (uint32_t)n;
	ob->fence_nr = nf;
	ob->fence_base = fbase;
	ob->fence_shift = fshift;
	unwind_table_stats(t, &st);
	/* The share among functions: PLT stubs hold no return address. */
	fn = st.covered > st.stub ? st.covered - st.stub : 0;
	ob->keeps_fp = fn && st.fp * 100 >= fn * FP_SHARE;
	ob->bytes = bytes;
	ob->state = OBJ_LOADED;
	u->table_bytes += bytes;
	err = 0;
cleanup:
	free(keys);
	free(all);
	if (fd >= 0)
		close(fd); /* the outer map holds it */
	return err;
}

static void read_segs(Elf *elf, struct obj *ob)
{
	size_t nph = 0;

	if (elf_getphdrnum(elf, &nph))
		return;
	for (size_t i = 0; i < nph && ob->nsegs < MAX_SEGS; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		ob->segs[ob->nsegs].offset = ph.p_offset;
		ob->segs[ob->nsegs].vaddr = ph.p_vaddr;
		ob->segs[ob->nsegs].filesz = ph.p_filesz;
		ob->nsegs++;
	}
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* The object open at fd: found in the cache, or compiled and loaded. */
static int get_obj(struct unwinder *u, int fd, const char *what, int *idx)
{
	struct unwind_table *t = NULL;
	const void *bid = NULL;
	struct timespec t0;
	struct stat st;
	struct obj ob = {0}, *objs;
	ssize_t bidlen = 0;
	Elf *elf = NULL;
	int err = 0;

	if (fstat(fd, &st))
		return -errno;
	ob.dev = st.st_dev;
	ob.ino = st.st_ino;
	ob.size = (uint64_t)st.st_size;
	ob.mtime_ns =
		(int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	for (int i = 0; i < u->nobjs; i++) {
		struct obj *o = &u->objs[i];

		if (o->dev == ob.dev && o->ino == ob.ino &&
		    o->size == ob.size && o->mtime_ns == ob.mtime_ns) {
			*idx = i;
			return 0;
		}
	}
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		err = -ENOEXEC;
		goto cleanup;
	}
	bidlen = dwelf_elf_gnu_build_id(elf, &bid);
	if (bidlen > 0 && (size_t)bidlen <= sizeof(ob.build_id)) {
		memcpy(ob.build_id, bid, (size_t)bidlen);
		ob.build_id_len = (size_t)bidlen;
		/* The same object under another name or inode. */
		for (int i = 0; i < u->nobjs; i++)
			if (u->objs[i].build_id_len == ob.build_id_len &&
			    !memcmp(u->objs[i].build_id, ob.build_id,
				    ob.build_id_len)) {
				*idx = i;
				goto cleanup;
			}
	}
	read_segs(elf, &ob);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	err = unwind_compile_elf(elf, &t);
	if (err == -ENOMEM)
		goto cleanup;
	if (err) {
		ob.state = OBJ_NO_CFI;
	} else {
		ob.base = unwind_table_base(t);
		err = load_table(u, &ob, t);
		if (err) {
			fprintf(stderr,
				"memtop: cannot load the unwind table of %s: "
				"%s\n",
				what, strerror(-err));
			ob.state = OBJ_NO_CFI;
		}
	}
	u->compile_ms += ms_since(&t0);
	if (u->o.verbose)
		fprintf(stderr,
			"memtop: unwind table of %s: %u rows, %.1f ms%s\n",
			what, ob.nrows, ms_since(&t0),
			ob.state == OBJ_NO_CFI ? " (no CFI: frame pointers)"
			: ob.state == OBJ_OVER ? " (over --max-unwind-mb)"
			: ob.keeps_fp	       ? " (keeps frame pointers)"
					       : "");
	objs = realloc(u->objs, (size_t)(u->nobjs + 1) * sizeof(*objs));
	if (!objs) {
		err = -ENOMEM;
		goto cleanup;
	}
	u->objs = objs;
	u->objs[u->nobjs] = ob;
	*idx = u->nobjs++;
	err = 0;
cleanup:
	unwind_table_free(t);
	if (elf)
		elf_end(elf);
	return err;
}

/* Table pc = address - bias, for a mapping of ob at start, file offset off. */
static uint64_t bias_of(const struct obj *ob, uint64_t start, uint64_t off)
{
	for (int i = 0; i < ob->nsegs; i++) {
		uint64_t so = ob->segs[i].offset & ~4095ull;

		if (off >= so && off < ob->segs[i].offset + ob->segs[i].filesz)
			return start - off + ob->segs[i].offset -
			       ob->segs[i].vaddr + ob->base;
	}
	return start - off + ob->base;
}

static int open_mapped(pid_t pid, const struct maps_entry *e)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", pid,
		 (unsigned long long)e->start, (unsigned long long)e->end);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 || e->path[0] != '/')
		return fd;
	snprintf(path, sizeof(path), "/proc/%d/root%s", pid, e->path);
	return open(path, O_RDONLY | O_CLOEXEC);
}

static struct proc *add_proc(struct unwinder *u, pid_t pid)
{
	struct proc *np, *p;

	np = realloc(u->procs, (size_t)(u->nprocs + 1) * sizeof(*np));
	if (!np)
		return NULL;
	u->procs = np;
	p = &u->procs[u->nprocs++];
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	p->map.nr = UINT32_MAX; /* never equal: written the first time */
	return p;
}

static void drop_refs(struct unwinder *u, struct proc *p)
{
	for (int i = 0; i < p->nobjs; i++)
		u->objs[p->objs[i]].refs--;
	free(p->objs);
	free(p->seen);
	p->objs = NULL;
	p->seen = NULL;
	p->nobjs = 0;
}

int unwinder_sync(struct unwinder *u, pid_t pid)
{
	struct mt_unwind_proc *m = calloc(1, sizeof(*m));
	int *objs = NULL, nobjs = 0, err = 0;
	struct seen *seen = NULL;
	struct proc *p = find_proc(u, pid);
	char path[64], *line = NULL;
	size_t cap = 0;
	FILE *f = NULL;

	if (!m)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	f = fopen(path, "re");
	if (!f) {
		err = errno == ENOENT ? -ESRCH : -errno;
		goto cleanup;
	}
	u->tick++;
	while (getline(&line, &cap, f) > 0 && m->nr < MT_UW_MAPS) {
		struct maps_entry e;
		struct mt_unwind_map *mm;
		int idx = -1, fd, *no;
		struct seen *ns;

		if (procfs_parse_maps_line(line, &e) || e.perms[2] != 'x' ||
		    e.start >= 0x800000000000ull)
			continue;
		mm = &m->m[m->nr];
		*mm = (struct mt_unwind_map){
			.start = e.start,
			.end = e.end,
			.table = MT_UW_NO_TABLE,
		};
		for (int i = 0; p && i < p->nobjs; i++) {
			const struct seen *s = &p->seen[i];

			if (s->start == e.start && s->end == e.end &&
			    s->offset == e.offset && s->inode == e.inode &&
			    s->dev_major == e.dev_major &&
			    s->dev_minor == e.dev_minor) {
				idx = s->obj;
				break;
			}
		}
		if (idx < 0 && e.inode && e.path[0] == '/') {
			fd = open_mapped(pid, &e);
			if (fd >= 0) {
				err = get_obj(u, fd, e.path, &idx);
				close(fd);
				if (err == -ENOMEM)
					goto cleanup;
				err = 0;
			}
		}
		if (idx >= 0) {
			struct obj *ob = &u->objs[idx];

			ob->last_used = u->tick;
			if (ob->state == OBJ_OVER && make_room(u, ob->need)) {
				/* Room may have been made since. */
				int fd2 = open_mapped(pid, &e);
				struct unwind_table *t = NULL;

				if (fd2 >= 0 && !unwind_compile_fd(fd2, &t))
					load_table(u, ob, t);
				unwind_table_free(t);
				if (fd2 >= 0)
					close(fd2);
			}
			if (ob->state == OBJ_LOADED) {
				mm->table = ob->slot;
				mm->gen = ob->gen;
				mm->nrows = ob->nrows |
					    (ob->keeps_fp ? MT_UW_FP : 0);
				mm->fence_base = ob->fence_base;
				mm->fence_nr = ob->fence_nr;
				mm->fence_shift = ob->fence_shift;
				mm->bias = bias_of(ob, e.start, e.offset);
			}
			no = realloc(objs, (size_t)(nobjs + 1) * sizeof(*no));
			if (!no) {
				err = -ENOMEM;
				goto cleanup;
			}
			objs = no;
			ns = realloc(seen, (size_t)(nobjs + 1) * sizeof(*ns));
			if (!ns) {
				err = -ENOMEM;
				goto cleanup;
			}
			seen = ns;
			seen[nobjs] = (struct seen){
				.start = e.start,
				.end = e.end,
				.offset = e.offset,
				.inode = e.inode,
				.dev_major = e.dev_major,
				.dev_minor = e.dev_minor,
				.obj = idx,
			};
			objs[nobjs++] = idx;
			ob->refs++;
		}
		m->nr++;
	}
	if (!p && !(p = add_proc(u, pid))) {
		err = -ENOMEM;
		goto cleanup;
	}
	drop_refs(u, p);
	p->objs = objs;
	p->seen = seen;
	p->nobjs = nobjs;
	objs = NULL;
	seen = NULL;
	nobjs = 0;
	if (memcmp(&p->map, m, sizeof(*m))) {
		uint32_t key = (uint32_t)pid;

		if (bpf_map_update_elem(u->o.procs_fd, &key, m, 0)) {
			err = -errno;
			goto cleanup;
		}
		p->map = *m;
	}
cleanup:
	for (int i = 0; i < nobjs; i++)
		u->objs[objs[i]].refs--;
	free(objs);
	free(seen);
	free(line);
	if (f)
		fclose(f);
	free(m);
	return err;
}

void unwinder_sync_all(struct unwinder *u)
{
	for (int i = 0; i < u->nprocs; i++) {
		pid_t pid = u->procs[i].pid;

		if (unwinder_sync(u, pid) == -ESRCH) {
			unwinder_forget(u, pid);
			i--; /* the last one took its place */
		}
	}
}

void unwinder_forget(struct unwinder *u, pid_t pid)
{
	struct proc *p = find_proc(u, pid);
	uint32_t key = (uint32_t)pid;

	if (!p)
		return;
	bpf_map_delete_elem(u->o.procs_fd, &key);
	drop_refs(u, p);
	*p = u->procs[--u->nprocs];
}

void unwinder_stats(const struct unwinder *u, struct unwinder_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->max_bytes = u->o.max_bytes;
	out->bytes = u->table_bytes +
		     (uint64_t)u->nprocs * sizeof(struct mt_unwind_proc);
	out->procs = u->nprocs;
	out->compile_ms = u->compile_ms;
	for (int i = 0; i < u->nobjs; i++) {
		const struct obj *ob = &u->objs[i];

		if (ob->state == OBJ_LOADED) {
			out->objects++;
			out->rows += ob->nrows;
		} else if (ob->state == OBJ_NO_CFI) {
			out->no_cfi++;
		} else {
			out->over_limit++;
		}
	}
}

void unwinder_free(struct unwinder *u)
{
	if (!u)
		return;
	for (int i = 0; i < u->nprocs; i++) {
		free(u->procs[i].objs);
		free(u->procs[i].seen);
	}
	free(u->procs);
	free(u->objs);
	free(u);
}
