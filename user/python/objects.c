/*
 * The object reader (see objects.h). Per process, two open-addressing
 * tables of live blocks (this refresh's and the last), so a block keeps the
 * type found for it while it lives and only new blocks are read; a type
 * cache by type address, each type validated and named once; and per
 * refresh a table of (type, site) sums. The blocks to read are grouped by
 * the 16 KiB region they start in (a pymalloc pool: pymalloc packs small
 * objects into them), the regions put in address order and merged into
 * ranges, so a million blocks cost a few thousand process_vm_readv iovecs,
 * not a million, and one counting pass orders them instead of a sort. The
 * ranges are read a megabyte at a time into one buffer and named while it is
 * in cache.
 */
#define _GNU_SOURCE /* process_vm_readv */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include "util/array.h"
#include "python/objects.h"
#include "python/python.h"

#define T_UNREAD     (-1)
#define T_UNTYPED    (-2)
#define RANGE_GAP    512 /* blocks this close share one read */
#define RANGE_MAX    (64 << 10)
#define IOV_BATCH    1024
#define REGION_SHIFT 14	       /* pymalloc's pool size, 16 KiB since 3.10 */
#define READ_BATCH   (1 << 20) /* bytes a process_vm_readv call */

struct blk {
	uint64_t addr; /* 0: empty slot */
	uint64_t stack_id;
	uint64_t size;
	int32_t type; /* index into types (a canonical one), or T_* */
	/* While it is being read: its region, then its place in todo. */
	uint32_t region;
};

/* A block to read, with what the reading needs: grouped by region and
 * walked in address order without touching the block table until the
 * answer, which replaces it, in the order of the walk, and is fetched by
 * the table's pass in its own order (a million answers stored in address
 * order into an array in table order would be as many random stores, each
 * a cache miss; the fetches are independent loads, which overlap). Four
 * bytes: the grouping's scattered stores miss once a cache line, and the
 * fetches hit an array half as large. */
union todo {
	/* Its address inside its region (REGION_SHIFT bits) above its size,
	 * at most TODO_SIZE_MAX: only compared to a type's basic size, which
	 * no type has as large. */
	uint32_t at_size;
	int32_t type; /* the answer, once named */
};
#define TODO_SIZE_BITS (32 - REGION_SHIFT)
#define TODO_SIZE_MAX  ((1u << TODO_SIZE_BITS) - 1)

/* The blocks to read that start in one 16 KiB region. */
struct region {
	uint64_t key;	      /* address >> REGION_SHIFT */
	uint64_t lo, hi;      /* the span of their heads */
	uint32_t count, next; /* blocks; where the next one goes in todo2 */
	uint32_t range;	      /* its range in the current read batch */
	uint32_t buf_off;     /* lo's place in the buffer */
};

static uint64_t todo_addr(const struct region *g, const union todo *b)
{
	return g->key << REGION_SHIFT | b->at_size >> TODO_SIZE_BITS;
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
	struct blk *cur, *old; /* this refresh's blocks, the last one's */
	size_t cur_cap, ncur, old_cap, nold, cursor;
	uint32_t *oidx; /* hash index of old: its index + 1 */
	size_t oidx_cap;
	bool oidx_ok;
	struct tinfo *types;
	size_t ntypes, types_cap;
	uint32_t *tmap; /* type address -> index + 1 */
	size_t tmap_cap;
	uint64_t bad_types;
	/* The last candidate looked up and its tinfo index + 1 (0: refused):
	 * a pool's blocks are of one size, often of one type. */
	uint64_t memo_addr;
	uint32_t memo;
	struct agg *agg;
	size_t agg_cap;
};

struct objects {
	unsigned max_reads;
	struct oproc *procs;
	size_t nprocs, procs_cap;
	size_t last;	  /* index + 1 of the last process looked up */
	union todo *todo; /* the blocks to read, by region */
	size_t todo_cap;
	struct region *regs;
	size_t nregs, regs_cap;
	uint32_t *rmap; /* region key -> index + 1 */
	size_t rmap_cap;
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

static struct oproc *proc_get(struct objects *o, uint32_t pid)
{
	struct oproc *p;

	if (o->last && o->procs[o->last - 1].pid == pid)
		return &o->procs[o->last - 1];
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
 * next but for what was freed or added: this refresh's blocks are an array
 * in that order, and each is looked for first where the cursor into the
 * last refresh's array stands (one compare, in sequence), and only on a
 * miss through a hash index of that array, built at the first miss.
 */
static int old_index(struct oproc *p)
{
	size_t cap = 1024;

	while (cap < 2 * p->nold)
		cap *= 2;
	free(p->oidx);
	p->oidx = calloc(cap, sizeof(*p->oidx));
	if (!p->oidx)
		return -ENOMEM;
	p->oidx_cap = cap;
	for (size_t i = 0; i < p->nold; i++) {
		size_t j = mix(p->old[i].addr) & (cap - 1);

		while (p->oidx[j])
			j = (j + 1) & (cap - 1);
		p->oidx[j] = (uint32_t)i + 1;
	}
	return 0;
}

static const struct blk *old_find(struct oproc *p, uint64_t addr)
{
	if (p->cursor < p->nold && p->old[p->cursor].addr == addr)
		return &p->old[p->cursor++];
	if (!p->nold || (!p->oidx_ok && (old_index(p) || !(p->oidx_ok = true))))
		return NULL;
	for (size_t j = mix(addr) & (p->oidx_cap - 1); p->oidx[j];
	     j = (j + 1) & (p->oidx_cap - 1)) {
		const struct blk *b = &p->old[p->oidx[j] - 1];

		if (b->addr == addr) {
			p->cursor = (size_t)(b - p->old) + 1;
			return b;
		}
	}
	return NULL;
}

void objects_begin(struct objects *o)
{
	for (size_t i = 0; i < o->nprocs; i++) {
		struct oproc *p = &o->procs[i];
		struct blk *t = p->old;
		size_t cap = p->old_cap;

		p->old = p->cur;
		p->old_cap = p->cur_cap;
		p->nold = p->ncur;
		p->cur = t;
		p->cur_cap = cap;
		p->ncur = 0;
		/* As many blocks as the last time, most likely: room for them
		 * at once, not by doubling (each a copy of the table). On a
		 * failure objects_block grows it as it goes. */
		(void)array_reserve((void **)&p->cur, &p->cur_cap,
				    p->nold + p->nold / 8, sizeof(*p->cur));
		p->cursor = 0;
		p->oidx_ok = false;
	}
}

void objects_block(struct objects *o, uint32_t pid, uint64_t addr,
		   uint64_t size, uint64_t stack_id)
{
	struct oproc *p = proc_get(o, pid);
	const struct blk *old;
	struct blk *b;

	if (!p || !addr || !check_python(p))
		return;
	if (p->ncur == p->cur_cap &&
	    array_reserve((void **)&p->cur, &p->cur_cap,
			  p->cur_cap ? 2 * p->cur_cap : 1024, sizeof(*p->cur)))
		return;
	b = &p->cur[p->ncur++];
	b->addr = addr;
	b->stack_id = stack_id;
	b->size = size;
	b->type = T_UNREAD;
	old = old_find(p, addr);
	/* The same allocation still: what its header said holds. */
	if (old && old->stack_id == stack_id && old->size == size)
		b->type = old->type;
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
		p->memo_addr = 0;
	}
}

/* The type at addr, validated once: its entry, or NULL when refused. */
static const struct tinfo *type_of(struct oproc *p, uint64_t addr)
{
	struct rctx rc = {p};
	struct tinfo *ti;
	size_t j;

	if (addr == p->memo_addr)
		return p->memo && p->types[p->memo - 1].ok
			       ? &p->types[p->memo - 1]
			       : NULL;
	if ((p->ntypes + 1) * 2 > p->tmap_cap && tmap_grow(p))
		return NULL;
	for (j = mix(addr) & (p->tmap_cap - 1); p->tmap[j];
	     j = (j + 1) & (p->tmap_cap - 1)) {
		ti = &p->types[p->tmap[j] - 1];
		if (ti->addr == addr) {
			p->memo_addr = addr;
			p->memo = p->tmap[j];
			return ti->ok ? ti : NULL;
		}
	}
	if (ARRAY_RESERVE(p->types, p->types_cap, p->ntypes + 1))
		return NULL;
	ti = &p->types[p->ntypes];
	memset(ti, 0, sizeof(*ti));
	ti->addr = addr;
	ti->ok = !pyt_read_type(&p->lay, read_mem, &rc, addr, &ti->t);
	ti->canon = (int32_t)p->ntypes;
	if (ti->ok) {
		ti->pre = pyt_preheader(&p->lay, ti->t.flags);
		ti->min_size = pyt_fits(&p->lay, &ti->t, ti->pre, ti->pre + 16)
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
	p->memo_addr = addr;
	p->memo = (uint32_t)p->ntypes;
	return ti->ok ? ti : NULL;
}

/* Name the object in a block from its head (len bytes read). */
static int32_t classify(struct oproc *p, uint64_t size, const uint8_t *head,
			size_t len)
{
	static const unsigned offs[] = {0, 16, 32};

	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		const struct tinfo *ti;
		uint64_t ta;

		if (!pyt_candidate(head, len, offs[i], &ta))
			continue;
		/* Fitted to the type itself, named by the first of its
		 * name. */
		ti = type_of(p, ta);
		if (ti && ti->pre == offs[i] && size >= ti->min_size)
			return ti->canon;
	}
	return T_UNTYPED;
}

/* ---- reading new blocks ---- */

static int rmap_grow(struct objects *o)
{
	size_t ncap = o->rmap_cap ? o->rmap_cap * 2 : 4096;
	uint32_t *nt = calloc(ncap, sizeof(*nt));

	if (!nt)
		return -ENOMEM;
	for (size_t i = 0; i < o->nregs; i++) {
		size_t j = mix(o->regs[i].key) & (ncap - 1);

		while (nt[j])
			j = (j + 1) & (ncap - 1);
		nt[j] = (uint32_t)i + 1;
	}
	free(o->rmap);
	o->rmap = nt;
	o->rmap_cap = ncap;
	return 0;
}

/* The region a block's head [addr, end) starts in, its span grown to hold
 * it: its index, or -ENOMEM. */
static int64_t region_add(struct objects *o, uint64_t addr, uint64_t end)
{
	uint64_t key = addr >> REGION_SHIFT;
	struct region *r;
	size_t j;

	/* At most an eighth full: a million lookups in random order, and a
	 * probe that goes on past the first slot is a mispredicted branch
	 * (at half full, one lookup in four or so; this costs 10 ms a
	 * million in typereader). */
	if ((o->nregs + 1) * 8 > o->rmap_cap && rmap_grow(o))
		return -ENOMEM;
	for (j = mix(key) & (o->rmap_cap - 1); o->rmap[j];
	     j = (j + 1) & (o->rmap_cap - 1)) {
		r = &o->regs[o->rmap[j] - 1];
		if (r->key == key) {
			r->lo = addr < r->lo ? addr : r->lo;
			r->hi = end > r->hi ? end : r->hi;
			r->count++;
			return o->rmap[j] - 1;
		}
	}
	if (ARRAY_RESERVE(o->regs, o->regs_cap, o->nregs + 1))
		return -ENOMEM;
	r = &o->regs[o->nregs];
	memset(r, 0, sizeof(*r));
	r->key = key;
	r->lo = addr;
	r->hi = end;
	r->count = 1;
	o->rmap[j] = (uint32_t)++o->nregs;
	return (int64_t)o->nregs - 1;
}

static int cmp_region(const void *a, const void *b, void *arg)
{
	const struct region *regs = arg;
	uint64_t x = regs[*(const uint32_t *)a].key,
		 y = regs[*(const uint32_t *)b].key;

	return (x > y) - (x < y);
}

static size_t head_len(uint64_t size)
{
	return size < PYT_HEAD_BYTES ? size : PYT_HEAD_BYTES;
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

/* Name the blocks of regions rorder[from, to), read into o->buf. */
static void name_regions(struct objects *o, struct oproc *p, size_t from,
			 size_t to)
{
	for (size_t r = from; r < to; r++) {
		const struct region *g = &o->regs[o->rorder[r]];
		union todo *b = o->todo + (g->next - g->count);

		/* Each answer is stored over what it was made from. */
		for (uint32_t k = 0; k < g->count; k++, b++)
			b->type = o->rok[g->range]
					  ? classify(p, todo_size(b),
						     o->buf + g->buf_off +
							     (todo_addr(g, b) -
							      g->lo),
						     head_len(todo_size(b)))
					  : name_alone(p, g, b);
	}
}

/* The first n unread blocks of p into o->todo, grouped by region, the
 * regions in address order: a counting pass. */
static int group_todo(struct objects *o, struct oproc *p, size_t n)
{
	uint32_t at = 0;

	if (ARRAY_RESERVE(o->todo, o->todo_cap, n) ||
	    ARRAY_RESERVE(o->rorder, o->rorder_cap, o->nregs))
		return -ENOMEM;
	for (size_t i = 0; i < o->nregs; i++)
		o->rorder[i] = (uint32_t)i;
	qsort_r(o->rorder, o->nregs, sizeof(*o->rorder), cmp_region, o->regs);
	for (size_t r = 0; r < o->nregs; r++) {
		struct region *g = &o->regs[o->rorder[r]];

		g->next = at;
		at += g->count;
	}
	for (size_t k = 0, j = 0; k < p->ncur && j < n; k++) {
		struct blk *b = &p->cur[k];
		union todo *t;

		if (b->type != T_UNREAD)
			continue;
		b->region = o->regs[b->region].next++;
		j++;
		t = &o->todo[b->region];
		t->at_size = (uint32_t)(b->addr & ((1u << REGION_SHIFT) - 1))
				     << TODO_SIZE_BITS |
			     (b->size > TODO_SIZE_MAX ? TODO_SIZE_MAX
						      : (uint32_t)b->size);
	}
	return 0;
}

/* Read and name up to max_reads unread blocks of p. */
static int read_new(struct objects *o, struct oproc *p)
{
	size_t n = 0, r = 0;
	int err;

	if (array_reserve((void **)&o->buf, &o->buf_cap, READ_BATCH + RANGE_MAX,
			  1))
		return -ENOMEM;
	o->nregs = 0;
	if (o->rmap)
		memset(o->rmap, 0, o->rmap_cap * sizeof(*o->rmap));
	for (size_t k = 0; k < p->ncur && n < o->max_reads; k++) {
		struct blk *b = &p->cur[k];
		int64_t g;

		if (b->type != T_UNREAD)
			continue;
		g = region_add(o, b->addr, b->addr + head_len(b->size));
		if (g < 0)
			return (int)g;
		b->region = (uint32_t)g;
		n++;
	}
	if (!n)
		return 0;
	recheck_heap_types(p);
	err = group_todo(o, p, n);
	if (!err)
		err = array_reserve((void **)&o->riov, &o->riov_cap, o->nregs,
				    sizeof(*o->riov));
	if (!err)
		err = array_reserve((void **)&o->rok, &o->rok_cap, o->nregs,
				    sizeof(*o->rok));
	if (err)
		return err;
	/* Batches of regions in address order, up to READ_BATCH bytes: their
	 * ranges (a region close to the last range joins it) are read, then
	 * their blocks named. */
	while (r < o->nregs) {
		size_t from = r, nr = 0, total = 0;

		for (; r < o->nregs; r++) {
			struct region *g = &o->regs[o->rorder[r]];
			struct iovec *v = nr ? &o->riov[nr - 1] : NULL;
			uint64_t rs = v ? (uint64_t)(uintptr_t)v->iov_base : 0;

			if (v && g->lo <= rs + v->iov_len + RANGE_GAP &&
			    g->hi - rs <= RANGE_MAX) {
				if (g->hi > rs + v->iov_len) {
					total += g->hi - rs - v->iov_len;
					v->iov_len = g->hi - rs;
				}
			} else {
				if (total >= READ_BATCH)
					break;
				v = &o->riov[nr++];
				v->iov_base = (void *)(uintptr_t)g->lo;
				v->iov_len = g->hi - g->lo;
				rs = g->lo;
				total += v->iov_len;
			}
			g->range = (uint32_t)(nr - 1);
			g->buf_off =
				(uint32_t)(total - v->iov_len + (g->lo - rs));
		}
		read_ranges(o, p, nr);
		name_regions(o, p, from, r);
	}
	/* The answers into the table in one pass in its order. */
	for (size_t k = 0, j = 0; k < p->ncur && j < n; k++)
		if (p->cur[k].type == T_UNREAD) {
			p->cur[k].type = o->todo[p->cur[k].region].type;
			j++;
		}
	return 0;
}

/* ---- per-type sums ---- */

static struct agg *agg_slot(struct oproc *p, int32_t type, uint64_t stack_id)
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
	for (size_t i = 0; i < p->ncur; i++) {
		const struct blk *b = &p->cur[i];
		struct agg *a;

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
	free(p->cur);
	free(p->old);
	free(p->oidx);
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
	free(o->todo);
	free(o->regs);
	free(o->rmap);
	free(o->rorder);
	free(o->rok);
	free(o->buf);
	free(o->riov);
	free(o);
}
