/*
 * The object reader (see objects.h). Per process, two tables of live blocks
 * (this refresh's and the last), so a block keeps the type found for it
 * while it lives and only new blocks are read; a type cache by type address,
 * each type validated and named once; and per refresh a table of (type,
 * site) sums. The tables are made of 2 MiB segments kept from one refresh to
 * the next, on huge pages where the kernel gives them: a million blocks are
 * 32 MB, and a table grown by realloc or allocated anew at each refresh
 * costs a page fault every 4 KiB of it. A new block is given, as it
 * arrives, its place among the blocks to read of the 16 KiB region it starts
 * in (a pymalloc pool: pymalloc packs small objects into them), in chunks
 * chained per region, so no pass over the table groups them. The regions
 * are put in address order and merged into ranges, so a million blocks cost
 * a few thousand process_vm_readv iovecs, not a million; the ranges are read
 * a megabyte at a time into one buffer and named while it is in cache, and
 * the pass that sums the types fetches each answer into the table.
 */
#define _GNU_SOURCE /* process_vm_readv */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include "util/array.h"
#include "python/objects.h"
#include "python/python.h"

#define T_UNREAD  (-1)
#define T_UNTYPED (-2)
/* Read this refresh: its answer is todo[slot] until the table fetches it. */
#define T_PENDING    (-3)
#define RANGE_GAP    512 /* blocks this close share one read */
#define RANGE_MAX    (64 << 10)
#define IOV_BATCH    1024
#define REGION_SHIFT 14	       /* pymalloc's pool size, 16 KiB since 3.10 */
#define READ_BATCH   (1 << 20) /* bytes a process_vm_readv call */
#define CHUNK_MAX    64	       /* slots in a region's chunk of todo, at most */
#define FETCH_AHEAD  16	       /* blocks */
#define PEND_AHEAD   8	       /* blocks, a power of 2 */
#define NAME_AHEAD   4	       /* blocks */

struct blk {
	uint64_t addr;
	uint64_t stack_id;
	uint64_t size;
	int32_t type;  /* index into types (a canonical one), or T_* */
	uint32_t slot; /* T_PENDING: its place in todo */
};

/* A table of blocks: segments of SEG_BLKS, each 2 MiB and aligned to it,
 * so the kernel can back one with a huge page (a fault, not 512). */
#define SEG_SHIFT 16
#define SEG_BLKS  ((size_t)1 << SEG_SHIFT)
#define SEG_BYTES (SEG_BLKS * sizeof(struct blk))
_Static_assert(SEG_BYTES == 2u << 20, "a table segment is a huge page");

struct btab {
	struct blk **seg;
	size_t nseg, seg_cap; /* segments held; room in seg */
	size_t n;	      /* blocks */
};

/* A block to read, in its region's chunk of todo: first its address inside
 * the region (REGION_SHIFT bits) above its size, at most TODO_SIZE_MAX
 * (only compared to a type's basic size, which no type has as large), then
 * the answer, stored over it. Four bytes: the scattered stores miss once a
 * cache line, and the table's fetches hit an array half as large. A
 * chunk's first element is the index of the region's next chunk (0: none;
 * chunks are laid one after the other, so a next one is never at 0). */
union todo {
	uint32_t at_size;
	int32_t type;
	uint32_t next;
};
#define TODO_SIZE_BITS (32 - REGION_SHIFT)
#define TODO_SIZE_MAX  ((1u << TODO_SIZE_BITS) - 1)

/*
 * The blocks to read that start in one 16 KiB region. Its chunks of todo
 * hold 1, 2, 4 .. CHUNK_MAX slots, then CHUNK_MAX each, so a region of one
 * block wastes none and a pool of hundreds has a few.
 */
struct region {
	uint64_t key;	       /* address >> REGION_SHIFT */
	uint32_t count, first; /* blocks; its first chunk */
	uint32_t tail;	       /* where its next block goes */
	uint16_t lo, hi;       /* the span of their heads, from its start */
	uint32_t range;	       /* its range in the current read batch */
	uint32_t buf_off;      /* lo's place in the buffer */
};
_Static_assert((1u << REGION_SHIFT) + PYT_HEAD_BYTES <= UINT16_MAX,
	       "a head's end in its region fits region.hi");

static uint64_t region_base(const struct region *g)
{
	return g->key << REGION_SHIFT;
}

/*
 * A block's region is found through a window of WIN_SIZE regions (1 GiB of
 * address space): the window's table of region indexes + 1, zero but where
 * this refresh's regions are, and few of its pages touched, a heap's
 * regions being close together; the windows in a small open-addressing
 * table, the last one found looked at first. A million lookups in random
 * order then load from a few KiB of slots and the dense regions, not from
 * a hash table as large as the regions are many.
 */
#define WIN_SHIFT 16
#define WIN_SIZE  (1u << WIN_SHIFT)
#define WIN_BYTES (WIN_SIZE * sizeof(uint32_t))
#define WIN_KEEP  16 /* windows kept from one refresh to the next, at most */
struct rwin {
	uint64_t key; /* region key >> WIN_SHIFT, + 1; 0: empty */
	uint32_t *slot;
};

static uint32_t todo_at(const union todo *b)
{
	return b->at_size >> TODO_SIZE_BITS;
}

static uint64_t todo_addr(const struct region *g, const union todo *b)
{
	return region_base(g) | todo_at(b);
}

/* The slots of the chunk a region's next block starts, after count blocks
 * (when chunk_full). */
static uint32_t chunk_next_cap(uint32_t count)
{
	return count + 1 < CHUNK_MAX ? count + 1 : CHUNK_MAX;
}

/* Whether count blocks fill a region's chunks exactly: count is 0, 1, 3, 7
 * .. 63, 127, 191 .. */
static bool chunk_full(uint32_t count)
{
	return count < 2 * CHUNK_MAX - 1 ? !(count & (count + 1))
					 : !((count + 1) & (CHUNK_MAX - 1));
}

static uint32_t todo_size(const union todo *b)
{
	return b->at_size & TODO_SIZE_MAX;
}

struct tinfo {
	uint64_t addr;
	bool ok;
	int32_t canon; /* the first type of the same name */
	/* Where its objects start in a block (pyt_preheader) and the smallest
	 * block one fits in (pyt_fits), worked out once. */
	uint32_t pre;
	uint64_t min_size;
	struct pyt_type t;
};

/* What naming a block needs of a candidate type, by its address, in a small
 * direct-mapped cache in front of the types' table: a block's lookup is
 * then a load and a compare, most often in L1. */
#define TCACHE_BITS 9
#define TCACHE_SIZE (1u << TCACHE_BITS)
struct tcache {
	uint64_t addr;	   /* 0: empty */
	int32_t canon;	   /* T_UNTYPED: refused */
	uint32_t pre;	   /* tinfo.pre */
	uint64_t min_size; /* tinfo.min_size */
};

struct agg {
	int32_t type; /* -1: empty slot */
	uint64_t stack_id;
	int64_t objects, bytes;
};

struct oproc {
	uint32_t pid;
	bool checked, python;
	struct pyt_layout lay;
	objects_readv_fn readv;
	struct btab cur, old; /* this refresh's blocks, the last one's */
	size_t cursor;
	uint32_t *oidx; /* hash index of old: its index + 1 */
	size_t oidx_cap;
	bool oidx_ok;
	/* This refresh's blocks to read (at most max_reads), by region. */
	size_t npending;
	union todo *todo;
	size_t ntodo, todo_cap;
	struct region *regs; /* dense */
	size_t nregs, regs_cap;
	struct rwin *wins; /* open addressing, by key */
	size_t nwins, wins_cap;
	struct rwin *wlast; /* the last window found */
	int err; /* a block that could not be given its place: -ENOMEM */
	struct blk *ring[PEND_AHEAD]; /* pend_later's blocks */
	unsigned nring, ring_at;
	struct tinfo *types;
	size_t ntypes, types_cap;
	uint32_t *tmap; /* type address -> index + 1 */
	size_t tmap_cap;
	uint64_t bad_types;
	struct tcache tc[TCACHE_SIZE];
	struct agg *agg;
	size_t agg_cap;
};

struct objects {
	unsigned max_reads;
	struct oproc *procs;
	size_t nprocs, procs_cap;
	size_t last; /* index + 1 of the last process looked up */
	/* The reading's buffers, shared by the processes. */
	uint32_t *rorder; /* regions by address */
	size_t rorder_cap;
	uint8_t *buf;
	size_t buf_cap;
	struct iovec *riov;
	size_t riov_cap;
	bool *rok; /* per range: read */
	size_t rok_cap;
};

static uint64_t mix(uint64_t h)
{
	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 29;
	return h;
}

/* ---- tables of blocks ---- */

static struct blk *bt_at(const struct btab *t, size_t i)
{
	return &t->seg[i >> SEG_SHIFT][i & (SEG_BLKS - 1)];
}

/* One more segment, aligned to its size (mapped twice as large, the rest
 * given back). Only from the second on are huge pages asked for: a process
 * of a few blocks costs the 4 KiB pages it touches, not 2 MiB. */
static int bt_grow(struct btab *t)
{
	uint8_t *m, *a;

	if (ARRAY_RESERVE(t->seg, t->seg_cap, t->nseg + 1))
		return -ENOMEM;
	m = mmap(NULL, 2 * SEG_BYTES, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return -ENOMEM;
	a = (uint8_t *)(((uintptr_t)m + SEG_BYTES - 1) & ~(SEG_BYTES - 1));
	if (a > m)
		munmap(m, (size_t)(a - m));
	munmap(a + SEG_BYTES, (size_t)(m + SEG_BYTES - a));
	if (t->nseg)
		(void)madvise(a, SEG_BYTES, MADV_HUGEPAGE);
	t->seg[t->nseg++] = (struct blk *)a;
	return 0;
}

static struct blk *bt_push(struct btab *t)
{
	if (t->n == t->nseg << SEG_SHIFT && bt_grow(t))
		return NULL;
	return bt_at(t, t->n++);
}

/* Give back the segments past the first keep. */
static void bt_trim(struct btab *t, size_t keep)
{
	while (t->nseg > keep)
		munmap(t->seg[--t->nseg], SEG_BYTES);
}

static void bt_free(struct btab *t)
{
	bt_trim(t, 0);
	free(t->seg);
	memset(t, 0, sizeof(*t));
}

int objects_new(struct objects **out, unsigned max_reads)
{
	struct objects *o = calloc(1, sizeof(*o));

	*out = NULL;
	if (!o)
		return -ENOMEM;
	o->max_reads = max_reads ? max_reads : 100000;
	*out = o;
	return 0;
}

static struct oproc *proc_find(struct objects *o, uint32_t pid)
{
	struct oproc *p;

	for (size_t i = 0; i < o->nprocs; i++)
		if (o->procs[i].pid == pid) {
			o->last = i + 1;
			return &o->procs[i];
		}
	if (ARRAY_RESERVE(o->procs, o->procs_cap, o->nprocs + 1))
		return NULL;
	p = &o->procs[o->nprocs++];
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	o->last = o->nprocs;
	return p;
}

/* The process of pid, made if new (NULL: no memory); the last one looked
 * up first, a block's caller giving a process's blocks mostly in a row. */
static inline struct oproc *proc_get(struct objects *o, uint32_t pid)
{
	if (o->last && o->procs[o->last - 1].pid == pid)
		return &o->procs[o->last - 1];
	return proc_find(o, pid);
}

void objects_set_process(struct objects *o, uint32_t pid,
			 const struct pyt_layout *lay, objects_readv_fn readv)
{
	struct oproc *p = proc_get(o, pid);

	if (!p)
		return;
	p->checked = true;
	p->python = true;
	p->lay = *lay;
	p->readv = readv;
}

static bool check_python(struct oproc *p)
{
	unsigned major, minor;

	if (p->checked)
		return p->python;
	/* Not known yet: ask again at the next refresh (attach is async). */
	if (python_version((pid_t)p->pid, &major, &minor))
		return false;
	p->checked = true;
	p->python = major == 3 && !pyt_layout_for(minor, &p->lay);
	return p->python;
}

/*
 * The blocks come in the live map's order, the same from one read to the
 * next but for what was freed or added: this refresh's blocks are a table
 * in that order, and each is looked for first where the cursor into the
 * last refresh's table stands (one compare, in sequence), and only on a
 * miss through a hash index of that table, built at the first miss.
 */
static int old_index(struct oproc *p)
{
	size_t cap = 1024;

	while (cap < 2 * p->old.n)
		cap *= 2;
	free(p->oidx);
	p->oidx = calloc(cap, sizeof(*p->oidx));
	if (!p->oidx)
		return -ENOMEM;
	p->oidx_cap = cap;
	for (size_t i = 0; i < p->old.n; i++) {
		size_t j = mix(bt_at(&p->old, i)->addr) & (cap - 1);

		while (p->oidx[j])
			j = (j + 1) & (cap - 1);
		p->oidx[j] = (uint32_t)i + 1;
	}
	return 0;
}

static const struct blk *old_find(struct oproc *p, uint64_t addr)
{
	const struct blk *b;

	if (p->cursor < p->old.n) {
		b = bt_at(&p->old, p->cursor);
		if (b->addr == addr) {
			p->cursor++;
			return b;
		}
	}
	if (!p->old.n ||
	    (!p->oidx_ok && (old_index(p) || !(p->oidx_ok = true))))
		return NULL;
	for (size_t j = mix(addr) & (p->oidx_cap - 1); p->oidx[j];
	     j = (j + 1) & (p->oidx_cap - 1)) {
		b = bt_at(&p->old, p->oidx[j] - 1);
		if (b->addr == addr) {
			p->cursor = p->oidx[j];
			return b;
		}
	}
	return NULL;
}

static size_t head_len(uint64_t size)
{
	return size < PYT_HEAD_BYTES ? size : PYT_HEAD_BYTES;
}

static int wins_grow(struct oproc *p)
{
	size_t ncap = p->wins_cap ? p->wins_cap * 2 : 16;
	struct rwin *nt = calloc(ncap, sizeof(*nt));

	if (!nt)
		return -ENOMEM;
	for (size_t i = 0; i < p->wins_cap; i++) {
		size_t j;

		if (!p->wins[i].key)
			continue;
		j = mix(p->wins[i].key) & (ncap - 1);
		while (nt[j].key)
			j = (j + 1) & (ncap - 1);
		nt[j] = p->wins[i];
	}
	free(p->wins);
	p->wins = nt;
	p->wins_cap = ncap;
	p->wlast = NULL;
	return 0;
}

/* The window of key (region key >> WIN_SHIFT, + 1), or NULL. */
static struct rwin *win_find(struct oproc *p, uint64_t key)
{
	if (p->wlast && p->wlast->key == key)
		return p->wlast;
	for (size_t j = p->wins_cap ? mix(key) & (p->wins_cap - 1) : 0;
	     p->wins_cap && p->wins[j].key; j = (j + 1) & (p->wins_cap - 1))
		if (p->wins[j].key == key)
			return p->wlast = &p->wins[j];
	return NULL;
}

/* The window of key, made if new. */
static struct rwin *win_get(struct oproc *p, uint64_t key)
{
	struct rwin *w = win_find(p, key);
	void *m;
	size_t j;

	if (w)
		return w;
	if ((p->nwins + 1) * 2 > p->wins_cap && wins_grow(p))
		return NULL;
	for (j = mix(key) & (p->wins_cap - 1); p->wins[j].key;
	     j = (j + 1) & (p->wins_cap - 1))
		;
	/* Mapped, not allocated: its pages are zero until touched. */
	m = mmap(NULL, WIN_BYTES, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	p->wins[j].slot = m;
	p->wins[j].key = key;
	p->nwins++;
	return p->wlast = &p->wins[j];
}

static void wins_free(struct oproc *p)
{
	for (size_t i = 0; i < p->wins_cap; i++)
		if (p->wins[i].key)
			munmap(p->wins[i].slot, WIN_BYTES);
	free(p->wins);
	p->wins = p->wlast = NULL;
	p->nwins = p->wins_cap = 0;
}

/* No regions: each window's slots zero again (those of the regions only),
 * and the windows let go of if many (or if one was not found, which would
 * leave a stale slot). */
static void wins_reset(struct oproc *p)
{
	bool lost = false;

	for (size_t i = 0; i < p->nregs; i++) {
		struct rwin *w = win_find(p, (p->regs[i].key >> WIN_SHIFT) + 1);

		if (w)
			w->slot[p->regs[i].key & (WIN_SIZE - 1)] = 0;
		else
			lost = true;
	}
	p->nregs = 0;
	if (lost || p->nwins > WIN_KEEP)
		wins_free(p);
}

void objects_begin(struct objects *o)
{
	for (size_t i = 0; i < o->nprocs; i++) {
		struct oproc *p = &o->procs[i];
		struct btab t = p->old;
		size_t keep;

		p->old = p->cur;
		p->cur = t;
		p->cur.n = 0;
		/* Room for as many blocks as the last time, and a quarter:
		 * the rest is given back. */
		keep = (p->old.n + p->old.n / 4 + SEG_BLKS - 1) >> SEG_SHIFT;
		bt_trim(&p->cur, keep > 1 ? keep : 1);
		p->cursor = 0;
		p->oidx_ok = false;
		wins_reset(p);
		/* As much todo as the last time, at once, not by doubling. */
		(void)ARRAY_RESERVE(p->todo, p->todo_cap, p->ntodo);
		p->nregs = p->ntodo = p->npending = 0;
		p->nring = 0;
		p->err = 0;
	}
}

/* The region of key (address >> REGION_SHIFT), made empty if new. */
static struct region *region_get(struct oproc *p, uint64_t key)
{
	struct rwin *w = win_get(p, (key >> WIN_SHIFT) + 1);
	struct region *r;
	uint32_t *s;

	if (!w)
		return NULL;
	s = &w->slot[key & (WIN_SIZE - 1)];
	if (*s)
		return &p->regs[*s - 1];
	if (p->nregs >= UINT32_MAX ||
	    ARRAY_RESERVE(p->regs, p->regs_cap, p->nregs + 1))
		return NULL;
	r = &p->regs[p->nregs];
	memset(r, 0, sizeof(*r));
	r->key = key;
	r->lo = UINT16_MAX;
	*s = (uint32_t)++p->nregs;
	return r;
}

/* A region's next chunk of todo (region.count blocks in it so far). */
static int chunk_new(struct oproc *p, struct region *g)
{
	uint32_t cap = g->count ? chunk_next_cap(g->count) : 1;
	size_t at = p->ntodo;

	if (at + 1 + cap > UINT32_MAX ||
	    ARRAY_RESERVE(p->todo, p->todo_cap, at + 1 + cap))
		return -ENOMEM;
	p->todo[at].next = 0;
	if (g->count)
		p->todo[g->tail - chunk_next_cap(g->count / 2) - 1].next =
			(uint32_t)at;
	else
		g->first = (uint32_t)at;
	g->tail = (uint32_t)at + 1;
	p->ntodo = at + 1 + cap;
	return 0;
}

/* A block to read this refresh: its place in its region's todo. */
static void pend(struct oproc *p, struct blk *b)
{
	uint32_t at = (uint32_t)(b->addr & ((1u << REGION_SHIFT) - 1)),
		 end = at + (uint32_t)head_len(b->size);
	struct region *g = region_get(p, b->addr >> REGION_SHIFT);

	if (!g || (chunk_full(g->count) && chunk_new(p, g))) {
		p->err = -ENOMEM;
		return;
	}
	g->lo = at < g->lo ? (uint16_t)at : g->lo;
	g->hi = end > g->hi ? (uint16_t)end : g->hi;
	g->count++;
	b->slot = g->tail++;
	p->todo[b->slot].at_size =
		at << TODO_SIZE_BITS |
		(b->size > TODO_SIZE_MAX ? TODO_SIZE_MAX : (uint32_t)b->size);
}

/*
 * A new block to read: its region's entry is a likely cache miss (a million
 * lookups in random order), so it is fetched now and the block given its
 * place PEND_AHEAD blocks later, in the same order, the miss overlapped
 * with the work on the blocks between.
 */
static void pend_later(struct oproc *p, struct blk *b)
{
	uint64_t key = b->addr >> REGION_SHIFT;
	struct blk **s = &p->ring[p->ring_at++ & (PEND_AHEAD - 1)];
	const struct rwin *w = p->wlast;

	b->type = T_PENDING;
	p->npending++;
	if (w && w->key == (key >> WIN_SHIFT) + 1 &&
	    w->slot[key & (WIN_SIZE - 1)])
		__builtin_prefetch(&p->regs[w->slot[key & (WIN_SIZE - 1)] - 1]);
	if (p->nring == PEND_AHEAD)
		pend(p, *s);
	else
		p->nring++;
	*s = b;
}

static void pend_flush(struct oproc *p)
{
	for (; p->nring; p->nring--)
		pend(p, p->ring[(p->ring_at - p->nring) & (PEND_AHEAD - 1)]);
}

void objects_block(struct objects *o, uint32_t pid, uint64_t addr,
		   uint64_t size, uint64_t stack_id)
{
	struct oproc *p = proc_get(o, pid);
	const struct blk *old;
	struct blk *b;

	if (!p || !addr || !check_python(p))
		return;
	b = bt_push(&p->cur);
	if (!b)
		return;
	b->addr = addr;
	b->stack_id = stack_id;
	b->size = size;
	b->type = T_UNREAD;
	old = old_find(p, addr);
	/* The same allocation still: what its header said holds (an answer
	 * the last refresh did not get to is read again). */
	if (old && old->stack_id == stack_id && old->size == size &&
	    old->type != T_UNREAD && old->type != T_PENDING)
		b->type = old->type;
	else if (p->npending < o->max_reads)
		pend_later(p, b);
}

/* ---- types ---- */

struct rctx {
	struct oproc *p;
};

static int read_mem(void *ctx, uint64_t addr, void *buf, size_t len)
{
	struct oproc *p = ((struct rctx *)ctx)->p;
	struct iovec l = {buf, len}, r = {(void *)(uintptr_t)addr, len};
	ssize_t n = p->readv ? p->readv((pid_t)p->pid, &l, 1, &r, 1)
			     : process_vm_readv((pid_t)p->pid, &l, 1, &r, 1, 0);

	return n == (ssize_t)len ? 0 : -EFAULT;
}

static int tmap_grow(struct oproc *p)
{
	size_t ncap = p->tmap_cap ? p->tmap_cap * 2 : 256;
	uint32_t *nt = calloc(ncap, sizeof(*nt));

	if (!nt)
		return -ENOMEM;
	for (size_t i = 0; i < p->ntypes; i++) {
		size_t j = mix(p->types[i].addr) & (ncap - 1);

		if (!p->types[i].addr)
			continue; /* retired (recheck_heap_types) */
		while (nt[j])
			j = (j + 1) & (ncap - 1);
		nt[j] = (uint32_t)i + 1;
	}
	free(p->tmap);
	p->tmap = nt;
	p->tmap_cap = ncap;
	return 0;
}

/*
 * A class freed and another made at its address would keep the old one's
 * name: before new blocks are named, each cached heap type is read again,
 * and one that is no longer the same type (flags, sizes, name) is retired,
 * so its address is validated and named afresh when next seen. Blocks
 * named already keep their answer: their objects held the old class alive.
 * Static types cannot go away; refused candidates stay refused.
 */
static void recheck_heap_types(struct oproc *p)
{
	struct rctx rc = {p};

	for (size_t i = 0; i < p->ntypes; i++) {
		struct tinfo *ti = &p->types[i];
		struct pyt_type t;

		if (!ti->addr || !ti->ok ||
		    !(ti->t.flags & PYT_TPFLAGS_HEAPTYPE))
			continue;
		if (!pyt_read_type(&p->lay, read_mem, &rc, ti->addr, &t) &&
		    t.flags == ti->t.flags && t.basicsize == ti->t.basicsize &&
		    t.itemsize == ti->t.itemsize && !strcmp(t.name, ti->t.name))
			continue;
		ti->addr = 0;
		memset(p->tc, 0, sizeof(p->tc));
	}
}

/* The type at addr, validated once, into its cache entry c: 0, or -ENOMEM
 * (c left as it was). */
static int type_of(struct oproc *p, uint64_t addr, struct tcache *c)
{
	struct rctx rc = {p};
	struct tinfo *ti = NULL;
	size_t j;

	if ((p->ntypes + 1) * 2 > p->tmap_cap && tmap_grow(p))
		return -ENOMEM;
	for (j = mix(addr) & (p->tmap_cap - 1); p->tmap[j];
	     j = (j + 1) & (p->tmap_cap - 1))
		if (p->types[p->tmap[j] - 1].addr == addr) {
			ti = &p->types[p->tmap[j] - 1];
			break;
		}
	if (!ti) {
		if (ARRAY_RESERVE(p->types, p->types_cap, p->ntypes + 1))
			return -ENOMEM;
		ti = &p->types[p->ntypes];
		memset(ti, 0, sizeof(*ti));
		ti->addr = addr;
		ti->ok = !pyt_read_type(&p->lay, read_mem, &rc, addr, &ti->t);
		ti->canon = (int32_t)p->ntypes;
		if (ti->ok) {
			ti->pre = pyt_preheader(&p->lay, ti->t.flags);
			ti->min_size =
				pyt_fits(&p->lay, &ti->t, ti->pre, ti->pre + 16)
					? ti->pre + 16
					: (uint64_t)ti->t.basicsize + ti->pre;
		} else {
			p->bad_types++;
		}
		for (size_t i = 0; ti->ok && i < p->ntypes; i++)
			if (p->types[i].ok && p->types[i].canon == (int32_t)i &&
			    !strcmp(p->types[i].t.name, ti->t.name)) {
				ti->canon = (int32_t)i;
				break;
			}
		p->tmap[j] = (uint32_t)++p->ntypes;
	}
	c->addr = addr;
	c->canon = ti->ok ? ti->canon : T_UNTYPED;
	c->pre = ti->pre;
	c->min_size = ti->min_size;
	return 0;
}

/*
 * Name the object in a block from its head (len bytes read). Which of the
 * offsets 0, 16, 32 could hold an object is worked out for all three at
 * once, and those taken in order: a branch on each in turn is mispredicted
 * whenever a block's layout differs from the last one's (a GC object after
 * a plain one).
 */
static int32_t classify(struct oproc *p, uint64_t size, const uint8_t *head,
			size_t len)
{
	uint64_t ta[3] = {0};
	unsigned m = (unsigned)pyt_candidate(head, len, 0, &ta[0]) |
		     (unsigned)pyt_candidate(head, len, 16, &ta[1]) << 1 |
		     (unsigned)pyt_candidate(head, len, 32, &ta[2]) << 2;

	for (; m; m &= m - 1) {
		unsigned i = (unsigned)__builtin_ctz(m);
		struct tcache *c = &p->tc[(ta[i] * 0x9e3779b97f4a7c15ull) >>
					  (64 - TCACHE_BITS)];

		if (c->addr != ta[i] && type_of(p, ta[i], c))
			continue;
		/* Fitted to the type itself, named by the first of its
		 * name. */
		if (c->canon >= 0 && c->pre == 16 * i && size >= c->min_size)
			return c->canon;
	}
	return T_UNTYPED;
}

/* ---- reading new blocks ---- */

static int cmp_region(const void *a, const void *b, void *arg)
{
	const struct region *regs = arg;
	uint64_t x = regs[*(const uint32_t *)a].key,
		 y = regs[*(const uint32_t *)b].key;

	return (x > y) - (x < y);
}

/*
 * Read nr ranges (o->riov) into o->buf, in calls of at most IOV_BATCH: a
 * range that cannot be read (freed and unmapped meanwhile, or never mapped)
 * is marked so in o->rok, and the reading goes on after it.
 */
static void read_ranges(struct objects *o, struct oproc *p, size_t nr)
{
	size_t i = 0, off = 0;

	while (i < nr) {
		size_t k = nr - i < IOV_BATCH ? nr - i : IOV_BATCH, len = 0;
		struct iovec l;
		ssize_t got;

		for (size_t j = 0; j < k; j++)
			len += o->riov[i + j].iov_len;
		l.iov_base = o->buf + off;
		l.iov_len = len;
		got = p->readv ? p->readv((pid_t)p->pid, &l, 1, &o->riov[i], k)
			       : process_vm_readv((pid_t)p->pid, &l, 1,
						  &o->riov[i], k, 0);
		if (got < 0)
			got = 0;
		while (k && (size_t)got >= o->riov[i].iov_len) {
			got -= (ssize_t)o->riov[i].iov_len;
			off += o->riov[i].iov_len;
			o->rok[i++] = true;
			k--;
		}
		if (k) {
			off += o->riov[i].iov_len;
			o->rok[i++] = false;
		}
	}
}

/* A block of a range that could not be read (part of it unmapped: freed
 * meanwhile, or hostile memory) is read by itself. */
static int32_t name_alone(struct oproc *p, const struct region *g,
			  const union todo *b)
{
	struct rctx rc = {p};
	uint8_t head[PYT_HEAD_BYTES];
	size_t len = head_len(todo_size(b));

	if (read_mem(&rc, todo_addr(g, b), head, len))
		return T_UNTYPED;
	return classify(p, todo_size(b), head, len);
}

/* Name the k blocks of a chunk whose region was read to at + its offsets:
 * they come in the order they were allocated in, not the address order,
 * so each head is fetched a few blocks ahead (the buffer is larger than
 * the cache closest to the CPU). */
static void name_chunk(struct oproc *p, union todo *b, uint32_t k,
		       const uint8_t *at)
{
	for (uint32_t x = 0; x < k; x++) {
		uint32_t size = todo_size(&b[x]);

		if (x + NAME_AHEAD < k)
			__builtin_prefetch(at + todo_at(&b[x + NAME_AHEAD]));
		b[x].type =
			classify(p, size, at + todo_at(&b[x]), head_len(size));
	}
}

/* Name the blocks of regions rorder[from, to), read into o->buf: a region's
 * chunks in turn, each answer stored over what it was made from. */
static void name_regions(struct objects *o, struct oproc *p, size_t from,
			 size_t to)
{
	for (size_t r = from; r < to; r++) {
		const struct region *g = &p->regs[o->rorder[r]];
		bool ok = o->rok[g->range];
		uint32_t c = g->first, cap = 1, left = g->count;

		/* todo was written long before (and the reads since went
		 * through the cache): the next region's first chunk, and each
		 * chunk's next, are fetched ahead. */
		if (r + 1 < to)
			__builtin_prefetch(p->todo +
					   p->regs[o->rorder[r + 1]].first);
		while (left) {
			union todo *b = p->todo + c + 1;
			uint32_t k = left < cap ? left : cap;

			left -= k;
			if (left) {
				__builtin_prefetch(p->todo + p->todo[c].next);
				__builtin_prefetch(p->todo + p->todo[c].next +
						   16);
			}
			if (ok)
				name_chunk(p, b, k,
					   o->buf + g->buf_off - g->lo);
			else
				for (; k; k--, b++)
					b->type = name_alone(p, g, b);
			c = p->todo[c].next;
			cap = cap < CHUNK_MAX ? 2 * cap : CHUNK_MAX;
		}
	}
}

/* Read and name the blocks pending in p. */
static int read_new(struct objects *o, struct oproc *p)
{
	size_t r = 0;

	pend_flush(p);
	if (p->err)
		return p->err;
	if (!p->npending)
		return 0;
	if (array_reserve((void **)&o->buf, &o->buf_cap, READ_BATCH + RANGE_MAX,
			  1) ||
	    ARRAY_RESERVE(o->rorder, o->rorder_cap, p->nregs) ||
	    ARRAY_RESERVE(o->riov, o->riov_cap, p->nregs) ||
	    ARRAY_RESERVE(o->rok, o->rok_cap, p->nregs))
		return -ENOMEM;
	recheck_heap_types(p);
	for (size_t i = 0; i < p->nregs; i++)
		o->rorder[i] = (uint32_t)i;
	qsort_r(o->rorder, p->nregs, sizeof(*o->rorder), cmp_region, p->regs);
	/* Batches of regions in address order, up to READ_BATCH bytes: their
	 * ranges (a region close to the last range joins it) are read, then
	 * their blocks named. */
	while (r < p->nregs) {
		size_t from = r, nr = 0, total = 0;

		for (; r < p->nregs; r++) {
			struct region *g = &p->regs[o->rorder[r]];
			struct iovec *v = nr ? &o->riov[nr - 1] : NULL;
			uint64_t rs = v ? (uint64_t)(uintptr_t)v->iov_base : 0,
				 lo = region_base(g) + g->lo,
				 hi = region_base(g) + g->hi;

			if (v && lo <= rs + v->iov_len + RANGE_GAP &&
			    hi - rs <= RANGE_MAX) {
				if (hi > rs + v->iov_len) {
					total += hi - rs - v->iov_len;
					v->iov_len = hi - rs;
				}
			} else {
				if (total >= READ_BATCH)
					break;
				v = &o->riov[nr++];
				v->iov_base = (void *)(uintptr_t)lo;
				v->iov_len = hi - lo;
				rs = lo;
				total += v->iov_len;
			}
			g->range = (uint32_t)(nr - 1);
			g->buf_off = (uint32_t)(total - v->iov_len + (lo - rs));
		}
		read_ranges(o, p, nr);
		name_regions(o, p, from, r);
	}
	return 0;
}

/* ---- per-type sums ---- */

static inline struct agg *agg_slot(struct oproc *p, int32_t type,
				   uint64_t stack_id)
{
	size_t j = mix(stack_id ^ ((uint64_t)type << 40)) & (p->agg_cap - 1);

	while (p->agg[j].type >= 0 &&
	       (p->agg[j].type != type || p->agg[j].stack_id != stack_id))
		j = (j + 1) & (p->agg_cap - 1);
	return &p->agg[j];
}

static int cmp_agg(const void *a, const void *b)
{
	const struct agg *x = a, *y = b;

	if (x->type != y->type)
		return x->type < y->type ? -1 : 1;
	return (x->objects < y->objects) - (x->objects > y->objects);
}

static int emit(struct oproc *p, struct raw_sample *raw)
{
	uint64_t typed = 0, untyped = 0, unread = 0;
	size_t need = 64, na = 0;
	struct raw_proc *rp;
	int err = 0;

	while (need < 2 * (p->ntypes + 1) * 4 || need < 1024)
		need *= 2;
	/* Sized by the (type, site) pairs of the last refresh, grown here. */
	if (p->agg_cap < need) {
		free(p->agg);
		p->agg = malloc(need * sizeof(*p->agg));
		if (!p->agg) {
			p->agg_cap = 0;
			return -ENOMEM;
		}
		p->agg_cap = need;
	}
	for (size_t i = 0; i < p->agg_cap; i++)
		p->agg[i].type = -1;
	for (size_t i = 0; i < p->cur.n; i++) {
		struct blk *seg = p->cur.seg[i >> SEG_SHIFT], *b;
		size_t x = i & (SEG_BLKS - 1);
		struct agg *a;

		/* The answer of a block read this refresh, in todo's order:
		 * each a likely cache miss, fetched some blocks ahead (within
		 * the segment). */
		if (x + FETCH_AHEAD < SEG_BLKS && i + FETCH_AHEAD < p->cur.n &&
		    seg[x + FETCH_AHEAD].type == T_PENDING)
			__builtin_prefetch(p->todo + seg[x + FETCH_AHEAD].slot);
		b = &seg[x];
		if (b->type == T_PENDING)
			b->type = p->todo[b->slot].type;
		if (b->type == T_UNREAD) {
			unread++;
			continue;
		}
		if (b->type < 0) {
			untyped++;
			continue;
		}
		typed++;
		if ((na + 1) * 2 > p->agg_cap) {
			/* Grow: rehash what is there. */
			struct agg *old = p->agg;
			size_t ocap = p->agg_cap;

			p->agg = malloc(2 * ocap * sizeof(*p->agg));
			if (!p->agg) {
				p->agg = old;
				return -ENOMEM;
			}
			p->agg_cap = 2 * ocap;
			for (size_t k = 0; k < p->agg_cap; k++)
				p->agg[k].type = -1;
			for (size_t k = 0; k < ocap; k++)
				if (old[k].type >= 0)
					*agg_slot(p, old[k].type,
						  old[k].stack_id) = old[k];
			free(old);
		}
		a = agg_slot(p, b->type, b->stack_id);
		if (a->type < 0) {
			a->type = b->type;
			a->stack_id = b->stack_id;
			a->objects = a->bytes = 0;
			na++;
		}
		a->objects++;
		a->bytes += (int64_t)b->size;
	}
	/* Compact, by type, then the sites with most objects first. */
	na = 0;
	for (size_t i = 0; i < p->agg_cap; i++)
		if (p->agg[i].type >= 0)
			p->agg[na++] = p->agg[i];
	qsort(p->agg, na, sizeof(*p->agg), cmp_agg);
	for (size_t i = 0; i < na && !err;) {
		struct raw_type t = {.pid = p->pid,
				     .name = p->types[p->agg[i].type].t.name,
				     .first_site = raw->ntype_sites};
		int32_t ty = p->agg[i].type;

		for (; i < na && p->agg[i].type == ty && !err; i++) {
			struct raw_type_site s = {p->agg[i].stack_id,
						  p->agg[i].objects,
						  p->agg[i].bytes};

			t.objects += s.objects;
			t.bytes += s.bytes;
			t.nsites++;
			err = sample_add_type_site(raw, &s);
		}
		if (!err)
			err = sample_add_type(raw, &t);
	}
	rp = sample_find_proc(raw, p->pid);
	if (rp) {
		rp->has_types = true;
		rp->obj_typed = typed;
		rp->obj_untyped = untyped;
		rp->obj_unread = unread;
		rp->bad_types = p->bad_types;
	}
	return err;
}

int objects_end(struct objects *o, struct raw_sample *raw)
{
	int err = 0;

	for (size_t i = 0; i < o->nprocs && !err; i++) {
		struct oproc *p = &o->procs[i];

		if (!p->python)
			continue;
		err = read_new(o, p);
		if (!err)
			err = emit(p, raw);
	}
	return err;
}

static void proc_clear(struct oproc *p)
{
	bt_free(&p->cur);
	bt_free(&p->old);
	free(p->oidx);
	free(p->todo);
	free(p->regs);
	wins_free(p);
	free(p->types);
	free(p->tmap);
	free(p->agg);
}

void objects_forget(struct objects *o, uint32_t pid)
{
	for (size_t i = 0; i < o->nprocs; i++)
		if (o->procs[i].pid == pid) {
			proc_clear(&o->procs[i]);
			o->procs[i] = o->procs[--o->nprocs];
			o->last = 0;
			return;
		}
}

void objects_free(struct objects *o)
{
	if (!o)
		return;
	for (size_t i = 0; i < o->nprocs; i++)
		proc_clear(&o->procs[i]);
	free(o->procs);
	free(o->rorder);
	free(o->rok);
	free(o->buf);
	free(o->riov);
	free(o);
}
