/*
 * The collector turns raw samples (cumulative aggregates per site and per
 * process, read from the BPF maps) into snapshots: rates over the last
 * interval, growth over a window or since a baseline, a trend of the last
 * refreshes, leak suspects, and each site's symbolized frames. A site's
 * stack is fetched and symbolized once, when it first appears, so a refresh
 * costs O(sites) plus the new sites' frames. No libbpf, no curses, no /proc:
 * everything outside comes in through the raw sample and the hooks.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "array.h"
#include "strpool.h"
#include "wrappers.h"
#include "collector.h"

/*
 * A ring that stores each value twice, SNAP_TREND apart, so the last n values
 * are always contiguous at val + head, oldest first: rows point at them
 * instead of copying (no memmove or copy per site per refresh).
 */
struct history {
	int64_t val[2 * SNAP_TREND];
	uint64_t t_ns[SNAP_TREND];
	int n;	  /* valid entries */
	int head; /* index of the oldest */
};

/* What a refresh touches comes first: 65k sites do not fit in a cache. */
struct site_state {
	struct mt_site_key key;
	struct mt_stats st;
	uint64_t prev_allocs, prev_frees;
	uint64_t seen_seq;
	struct mt_gc gc; /* frees by CPython's cyclic collector */
	int64_t base_bytes;
	uint64_t base_ns;
	bool has_base;
	char site_id[17]; /* formatted once: snprintf per row per refresh showed
			   */
	const char *function, *location; /* interned */
	int name_frame;			 /* frames[name_frame] names it */
	/* Frames named by a perf map: their first, and the names'
	 * generation (resolved again when the map changed). */
	int jit_frame;
	uint32_t jit_gen;
	int nframes;
	struct snap_frame *frames;
	struct history hist;
};

/* The key inline, so a probe past other sites does not touch them. */
struct tab_ent {
	struct mt_site_key key;
	struct site_state *s;
};

struct proc_state {
	uint32_t pid;
	bool alive;
	uint32_t uid;
	char comm[16];
	char cmdline[256];
	struct mt_stats st;
	uint64_t prev_allocs, prev_frees;
	int64_t prev_bytes, prev_count;
	uint64_t rss_bytes;
	int64_t mmap_bytes;
	char not_seen[256];
	bool has_resources, has_res_first;
	uint32_t open_fds, threads;
	uint32_t first_fds, first_threads; /* the first sample's */
	uint32_t base_fds, base_threads;   /* the baseline's, when has_base */
	bool has_types;
	uint64_t obj_typed, obj_untyped, obj_unread, bad_types;
	uint64_t types_seq; /* the refresh its objects were first read in */
	bool has_gc;
	uint64_t gc_collections, prev_gc_collections;
	struct mt_gc gc, prev_gc; /* summed over the process's sites */
	bool has_peak;
	int64_t peak_bytes, interval_peak_bytes; /* scaled */
	uint64_t peak_ns;
	uint64_t touched_bytes, touched_faults, returned_bytes, returned_calls;
	bool exact, has_rss0;
	uint64_t rss0; /* RSS at attach, else when first seen alive */
	struct history hist;
	int64_t base_bytes;
	uint64_t base_ns;
	bool has_base;
	uint64_t seen_seq;
};

/* A type's live objects in a process over the refreshes (--types). */
struct type_state {
	uint32_t pid;
	const char *name; /* interned: the pointer identifies the type */
	int64_t objects, bytes, first_objects;
	struct history hist;  /* objects */
	struct history bhist; /* bytes */
	int64_t base_objects, base_bytes;
	uint64_t base_ns;
	bool has_base;
	uint64_t seen_seq;
};

struct collector {
	struct collector_opts opts;
	struct collector_hooks hooks;
	/* Open-addressing table of sites (their addresses are stable). */
	struct tab_ent *tab;
	/* The sites of the last sample in its order: a map read twice comes
	 * back in the same order, so most lookups are one compare. */
	struct site_state **hint;
	size_t nhint, hint_cap;
	size_t tab_cap, nsites;
	struct proc_state *procs;
	int nprocs;
	size_t procs_cap;
	uint64_t seq;
	uint64_t start_ns, last_ns;
	uint64_t prev_ns; /* the refresh before last_ns (the attach at first) */
	bool baseline;
	uint64_t baseline_ns;
	bool collapse;
	struct snapshot snap;
	struct type_state *tstates;
	size_t ntstates, tstates_cap;
	struct snap_type *trows;
	size_t trows_cap;
	struct snap_type_site *tsites;
	size_t tsites_cap;
	struct snap_site *rows;
	size_t rows_cap;
	/* What tell_apart gave the rows of the last refresh, by row, and a
	 * hash of what it depends on: the same rows, names and frames get
	 * the same again without the work (50k rows: tens of ms). */
	const char **vias;
	size_t vias_cap, nvias;
	uint64_t vias_sig;
	/* Last refresh's sorted order, as indices of rows in sample order:
	 * the next sort starts from it. */
	uint32_t *order;
	size_t norder;
	int64_t *trends; /* collapsed rows' summed trends, trends_cap rows */
	size_t trends_cap;
	struct snap_proc *prows;
	size_t prows_cap;
	struct mt_stack stack_buf;
	/* Every name, location and module string once (frames of different
	 * sites share most of them): a set of strings that lives as long as
	 * the collector. Per-site copies cost ~3 KB a site at 50k sites. */
	struct strpool strs;
};

static void site_free(struct site_state *s);

static uint64_t key_hash(const struct mt_site_key *k)
{
	uint64_t h = k->stack_id ^ ((uint64_t)k->tgid * 0x9e3779b97f4a7c15ull) ^
		     k->kind;

	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 29;
	return h;
}

int collector_new(struct collector **out, const struct collector_opts *opts,
		  const struct collector_hooks *hooks)
{
	struct collector *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->opts = *opts;
	/* The last interval: the header's change per second, and 0 as soon as
	 * growth stops (a longer window lags by window - 1 refreshes). */
	if (c->opts.growth_window < 1)
		c->opts.growth_window = 1;
	if (c->opts.growth_window >= SNAP_TREND)
		c->opts.growth_window = SNAP_TREND - 1;
	if (c->opts.suspect_window < 2)
		c->opts.suspect_window = 8;
	if (c->opts.suspect_window >= SNAP_TREND)
		c->opts.suspect_window = SNAP_TREND - 1;
	c->hooks = *hooks;
	/* elapsed_s and the first interval's rates count from the attach. */
	c->start_ns = opts->start_ns;
	c->last_ns = opts->start_ns;
	c->tab_cap = 1024;
	c->tab = calloc(c->tab_cap, sizeof(*c->tab));
	if (!c->tab) {
		free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

static struct tab_ent *tab_find(struct tab_ent *tab, size_t cap,
				const struct mt_site_key *k)
{
	size_t j;

	for (j = key_hash(k) & (cap - 1); tab[j].s; j = (j + 1) & (cap - 1))
		if (tab[j].key.tgid == k->tgid && tab[j].key.kind == k->kind &&
		    tab[j].key.stack_id == k->stack_id)
			break;
	return &tab[j];
}

static struct tab_ent *tab_slot(struct collector *c,
				const struct mt_site_key *k)
{
	return tab_find(c->tab, c->tab_cap, k);
}

/* Move every site the keep callback accepts into a fresh table of cap. */
static int tab_rebuild(struct collector *c, size_t cap,
		       bool (*keep)(struct collector *, struct site_state *,
				    void *),
		       void *arg)
{
	struct tab_ent *nt = calloc(cap, sizeof(*nt)), *old = c->tab;
	size_t oldcap = c->tab_cap;

	if (!nt)
		return -ENOMEM;
	c->nsites = 0;
	for (size_t i = 0; i < oldcap; i++) {
		struct tab_ent *e;

		if (!old[i].s)
			continue;
		if (keep && !keep(c, old[i].s, arg)) {
			site_free(old[i].s);
			c->nhint = 0; /* it may be there */
			continue;
		}
		e = tab_find(nt, cap, &old[i].key);
		*e = old[i];
		c->nsites++;
	}
	free(old);
	c->tab = nt;
	c->tab_cap = cap;
	return 0;
}

static int tab_grow(struct collector *c)
{
	return tab_rebuild(c, c->tab_cap * 2, NULL, NULL);
}

bool collector_has_site(struct collector *c, uint32_t pid, uint64_t stack_id)
{
	struct mt_site_key k = {.tgid = pid, .stack_id = stack_id};

	if (tab_slot(c, &k)->s)
		return true;
	k.kind = MT_SITE_TOUCHED;
	return tab_slot(c, &k)->s != NULL;
}

static void hist_push(struct history *h, int64_t v, uint64_t t)
{
	int i = (h->head + h->n) % SNAP_TREND;

	h->val[i] = h->val[i + SNAP_TREND] = v;
	h->t_ns[i] = t;
	if (h->n == SNAP_TREND)
		h->head = (h->head + 1) % SNAP_TREND;
	else
		h->n++;
}

/* The values, oldest first; valid until the next push. */
static int64_t *hist_vals(struct history *h)
{
	return h->val + h->head;
}

/*
 * Bytes per second over the last `window` refreshes (fewer while the
 * history is shorter). A single point grew from nothing since origin_ns
 * (the previous refresh, or the attach; 0: unknown): what is outstanding
 * now was allocated since then.
 */
static double hist_growth(const struct history *h, int window,
			  uint64_t origin_ns)
{
	int i0, last;
	double dt;

	if (h->n == 1 && origin_ns && h->t_ns[h->head] > origin_ns)
		return (double)h->val[h->head] /
		       ((double)(h->t_ns[h->head] - origin_ns) / 1e9);
	if (h->n < 2)
		return 0;
	i0 = h->n - 1 - window;
	if (i0 < 0)
		i0 = 0;
	last = h->n - 1;
	dt = (double)(h->t_ns[(h->head + last) % SNAP_TREND] -
		      h->t_ns[(h->head + i0) % SNAP_TREND]) /
	     1e9;
	return dt > 0 ? (double)(h->val[h->head + last] -
				 h->val[h->head + i0]) /
				dt
		      : 0;
}

/* Rose in more than half of the last `window` refreshes, and never fell much.
 */
static bool hist_suspect(const struct history *h, int window)
{
	const int64_t *v = h->val + h->head;
	int rises = 0, steps = 0;

	for (int i = h->n - 1; i > 0 && steps < window; i--, steps++)
		if (v[i] > v[i - 1])
			rises++;
	return steps >= 3 && rises * 2 > steps &&
	       v[h->n - 1] > v[h->n - 1 - steps];
}

/*
 * The pooled copy of s, NULL without memory. Names come from the target's
 * files (symbols, source paths, module names): a control character in one
 * must not reach a terminal or split a CSV line, so the copy is cleaned.
 */
static const char *intern(struct collector *c, const char *s)
{
	char buf[1024], *tmp = NULL, *clean = buf;
	size_t len = strlen(s);
	const char *d;

	/* Whole names, however long: two long templates differ at the end. */
	if (len >= sizeof(buf)) {
		tmp = malloc(len + 1);
		if (!tmp)
			return NULL;
		clean = tmp;
	}
	memcpy(clean, s, len + 1);
	for (char *p = clean; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	d = strpool_intern(&c->strs, clean, len);
	free(tmp);
	return d;
}

static const char *fmt_unknown(struct collector *c, const struct sym_info *si,
			       uint64_t ip)
{
	char buf[512];

	if (si && si->module)
		snprintf(buf, sizeof(buf), "[%s+0x%" PRIx64 "]", si->module,
			 si->offset);
	else
		snprintf(buf, sizeof(buf), "[unknown 0x%" PRIx64 "]", ip);
	return intern(c, buf);
}

/*
 * A page fault in the C library (memset, memcpy), the allocator (writing a
 * fresh chunk's header) or the C++ runtime is charged to their caller: the
 * frame naming a growth site is the innermost one outside them.
 */
static bool runtime_module(const char *m)
{
	static const char *const pre[] = {
		"libc.so",     "libc-",	      "ld-linux",
		"ld-musl",     "libjemalloc", "libtcmalloc",
		"libmimalloc", "libstdc++",   "libpthread",
	};

	for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++)
		if (!strncmp(m, pre[i], strlen(pre[i])))
			return true;
	return false;
}

/*
 * Go's runtime is a Go program's allocator: its pages are first written in
 * runtime.memclrNoHeapPointers or runtime.memmove, called from mallocgc or
 * growslice, all in the program's own file.
 */
static bool go_runtime(const char *func)
{
	return func && !strncmp(func, "runtime.", 8);
}

static int site_resolve(struct collector *c, struct site_state *s)
{
	struct mt_stack *st = &c->stack_buf;
	bool touched = s->key.kind == MT_SITE_TOUCHED;
	/* A fault's frame 0 is the faulting instruction, not a return address.
	 */
	int exact_frames = touched ? 1 : c->opts.function_frame;
	int n = 0;

	s->jit_frame = -1;
	if (s->key.stack_id && c->hooks.stack &&
	    !c->hooks.stack(c->hooks.ctx, &s->key, st))
		n = st->nr > MEMTOP_MAX_FRAMES ? MEMTOP_MAX_FRAMES
					       : (int)st->nr;
	if (n) {
		s->frames = calloc(n, sizeof(*s->frames));
		if (!s->frames)
			return -ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		struct snap_frame *f = &s->frames[i];
		struct sym_info si = {0};
		/* The hook looks up ip-1, the call of a return address; frames
		 * inside the allocator are probe addresses, not return ones. */
		uint64_t ip = st->ips[i] + (i < exact_frames);
		bool ok =
			c->hooks.symbolize &&
			!c->hooks.symbolize(c->hooks.ctx, s->key.tgid, ip, &si);
		char loc[512];

		f->ip = st->ips[i];
		f->func = ok && si.func
				  ? intern(c, si.func)
				  : fmt_unknown(c, ok ? &si : NULL, f->ip);
		if (ok && si.file && si.line)
			snprintf(loc, sizeof(loc), "%s:%d", si.file, si.line);
		else if (ok && si.module)
			snprintf(loc, sizeof(loc), "[%s+0x%" PRIx64 "]",
				 si.module, si.offset);
		else
			snprintf(loc, sizeof(loc), "[unknown]");
		f->location = intern(c, loc);
		f->module = intern(c, ok && si.module ? si.module : "");
		f->jit_func = ok && si.jit_func;
		if (ok && si.jit && s->jit_frame < 0) {
			s->jit_frame = i;
			s->jit_gen = si.jit_gen;
		}
		if (!f->func || !f->location || !f->module)
			return -ENOMEM;
		if (ok) {
			f->file = si.file ? intern(c, si.file) : NULL;
			f->line = si.line;
			f->path = si.path ? intern(c, si.path) : NULL;
			f->build_id =
				si.build_id ? intern(c, si.build_id) : NULL;
			f->offset = si.offset;
			if ((si.file && !f->file) || (si.path && !f->path) ||
			    (si.build_id && !f->build_id))
				return -ENOMEM;
		}
		s->nframes = i + 1;
	}
	if (s->nframes) {
		int k = c->opts.function_frame < s->nframes
				? c->opts.function_frame
				: s->nframes - 1;

		if (touched) {
			int j;

			k = 0;
			while (k + 1 < s->nframes &&
			       runtime_module(s->frames[k].module))
				k++;
			/* Past Go's runtime to the code that called it, if
			 * any did: a stack that is all runtime (the garbage
			 * collector's, a goroutine's stack growing) keeps
			 * its innermost frame, not runtime.goexit. */
			for (j = k;
			     j < s->nframes && go_runtime(s->frames[j].func);
			     j++)
				;
			if (j < s->nframes)
				k = j;
		} else {
			/* Past the allocator's wrappers (zmalloc, palloc,
			 * operator new, std::string's internals): their caller.
			 */
			while (k + 1 < s->nframes &&
			       wrappers_match(c->opts.skip, s->frames[k].func))
				k++;
		}

		/* An interpreter's frame names the site if there is one, or a
		 * JIT's function (JavaScript past V8's builtins and node's own
		 * code to the program's function). */
		for (int i = 0; i < s->nframes; i++) {
			if ((s->frames[i].ip & MT_IP_INTERP_TAG) ||
			    s->frames[i].jit_func) {
				k = i;
				break;
			}
		}
		s->function = s->frames[k].func;
		s->location = s->frames[k].location;
		s->name_frame = k;
	} else {
		s->function = s->key.stack_id ? "[stack unavailable]"
					      : "[stack not captured]";
		s->location = "[unknown]";
	}
	return s->function && s->location ? 0 : -ENOMEM;
}

/*
 * Has a JIT named this site's code anew? JITs reuse code addresses: the
 * perf map's newest entry then names the same return address differently.
 * One symbolizer cache hit per refresh and site with JIT frames.
 */
static bool jit_renamed(struct collector *c, const struct site_state *s)
{
	const struct snap_frame *f = &s->frames[s->jit_frame];
	struct sym_info si = {0};
	uint64_t ip = f->ip + (s->jit_frame < c->opts.function_frame);

	if (!c->hooks.symbolize ||
	    c->hooks.symbolize(c->hooks.ctx, s->key.tgid, ip, &si))
		return false;
	return si.jit_gen != s->jit_gen;
}

static int site_reresolve(struct collector *c, struct site_state *s)
{
	free(s->frames);
	s->frames = NULL;
	s->nframes = 0;
	s->function = s->location = NULL;
	return site_resolve(c, s);
}

static struct site_state *site_get(struct collector *c,
				   const struct mt_site_key *k)
{
	struct tab_ent *slot;
	struct site_state *s;

	if ((c->nsites + 1) * 2 > c->tab_cap && tab_grow(c))
		return NULL;
	slot = tab_slot(c, k);
	if (slot->s)
		return slot->s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->key = *k;
	snprintf(s->site_id, sizeof(s->site_id), "%016" PRIx64,
		 (uint64_t)k->stack_id);
	if (c->baseline) {
		s->has_base = true;
		s->base_ns = c->baseline_ns;
	}
	if (site_resolve(c, s)) {
		/* Keep the site with what it has: numbers matter more than
		 * names. */
		if (!s->function)
			s->function = "[no memory]";
		if (!s->location)
			s->location = "[unknown]";
	}
	slot->key = *k;
	slot->s = s;
	c->nsites++;
	return s;
}

static struct proc_state *proc_get(struct collector *c, uint32_t pid)
{
	struct proc_state *p;

	for (int i = 0; i < c->nprocs; i++)
		if (c->procs[i].pid == pid)
			return &c->procs[i];
	if (ARRAY_RESERVE(c->procs, c->procs_cap, (size_t)c->nprocs + 1))
		return NULL;
	p = &c->procs[c->nprocs++];
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	if (c->baseline) {
		p->has_base = true;
		p->base_ns = c->baseline_ns;
	}
	return p;
}

static double rate(uint64_t now, uint64_t prev, double dt)
{
	return dt > 0 && now >= prev ? (double)(now - prev) / dt : 0;
}

static double growth_since(int64_t now, int64_t base, uint64_t now_ns,
			   uint64_t base_ns)
{
	double dt = (double)(now_ns - base_ns) / 1e9;

	return dt > 0 ? (double)(now - base) / dt : 0;
}

static void fill_site_row(struct collector *c, size_t i, struct site_state *s,
			  double dt)
{
	const struct mt_stats *st = &s->st;
	struct snap_site *r = &c->rows[i];

	memset(r, 0, sizeof(*r));
	r->pid = s->key.tgid;
	r->stack_id = s->key.stack_id;
	memcpy(r->site_id, s->site_id, sizeof(r->site_id));
	r->outstanding_bytes = st->outstanding_bytes;
	r->outstanding_allocs = st->outstanding_allocs;
	r->allocs = st->allocs;
	r->frees = st->frees;
	r->alloc_bytes = st->alloc_bytes;
	r->free_bytes = st->free_bytes;
	r->gc_frees = s->gc.frees;
	r->gc_free_bytes = s->gc.free_bytes;
	r->alloc_rate = rate(st->allocs, s->prev_allocs, dt);
	r->free_rate = rate(st->frees, s->prev_frees, dt);
	r->growth_bps =
		s->has_base ? growth_since(st->outstanding_bytes, s->base_bytes,
					   c->last_ns, s->base_ns)
			    : hist_growth(&s->hist, c->opts.growth_window,
					  c->prev_ns);
	r->age_s = st->first_ns && c->last_ns > st->first_ns
			   ? (double)(c->last_ns - st->first_ns) / 1e9
			   : 0;
	r->trend = hist_vals(&s->hist);
	r->ntrend = s->hist.n;
	r->suspect = hist_suspect(&s->hist, c->opts.suspect_window);
	if (s->key.kind == MT_SITE_TOUCHED) {
		r->touched = true;
		r->touched_bytes = st->alloc_bytes;
	}
	r->function = s->function;
	r->location = s->location;
	r->via = NULL;
	r->name_frame = s->name_frame;
	r->nframes = s->nframes;
	r->frames = s->frames;
}

/* Rows by process, allocation sites before touched ones, then function:
 * the groups collapsing merges and the name order both start from. */
static int cmp_row_group(const struct snap_site *x, const struct snap_site *y)
{
	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	if (x->touched != y->touched)
		return x->touched ? 1 : -1;
	return strcmp(x->function, y->function);
}

static int cmp_row_collapse(const void *a, const void *b)
{
	const struct snap_site *x = a, *y = b;
	int d = cmp_row_group(x, y);

	if (d)
		return d;
	return x->outstanding_bytes > y->outstanding_bytes   ? -1
	       : x->outstanding_bytes < y->outstanding_bytes ? 1
							     : 0;
}

/* Merge rows of one process that share a function; the biggest row's stack
 * stands for the group. */
static size_t collapse_rows(struct snap_site *rows, size_t n)
{
	size_t out = 0;

	if (n)
		qsort(rows, n, sizeof(*rows), cmp_row_collapse);
	for (size_t i = 0; i < n; i++) {
		struct snap_site *d = &rows[out - (out ? 1 : 0)];

		if (out && !cmp_row_group(d, &rows[i])) {
			d->outstanding_bytes += rows[i].outstanding_bytes;
			d->outstanding_allocs += rows[i].outstanding_allocs;
			d->allocs += rows[i].allocs;
			d->frees += rows[i].frees;
			d->alloc_bytes += rows[i].alloc_bytes;
			d->free_bytes += rows[i].free_bytes;
			d->gc_frees += rows[i].gc_frees;
			d->gc_free_bytes += rows[i].gc_free_bytes;
			d->touched_bytes += rows[i].touched_bytes;
			d->alloc_rate += rows[i].alloc_rate;
			d->free_rate += rows[i].free_rate;
			d->growth_bps += rows[i].growth_bps;
			if (rows[i].age_s > d->age_s)
				d->age_s = rows[i].age_s;
			for (int k = 0; k < d->ntrend && k < rows[i].ntrend;
			     k++)
				d->trend[d->ntrend - 1 - k] +=
					rows[i].trend[rows[i].ntrend - 1 - k];
			d->suspect |= rows[i].suspect;
			continue;
		}
		rows[out++] = rows[i];
	}
	return out;
}

static int cmp_row_name(const void *a, const void *b)
{
	const struct snap_site *x = *(const struct snap_site *const *)a;
	const struct snap_site *y = *(const struct snap_site *const *)b;
	int d = cmp_row_group(x, y);

	if (!d)
		d = strcmp(x->location, y->location);
	if (!d)
		d = strcmp(x->site_id, y->site_id);
	return d;
}

/* The frame i steps from the naming frame (callers: i > 0), or NULL. */
static const char *frame_at(const struct snap_site *r, int i)
{
	int k = r->name_frame + i;

	return k >= 0 && k < r->nframes ? r->frames[k].func : NULL;
}

static bool same_name(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* A row of a group and the frame name that may tell it apart. */
struct named {
	const char *f;
	struct snap_site *row;
};

/* By name (none first), then by site id: ties keep one order. */
static int cmp_named(const void *a, const void *b)
{
	const struct named *x = a, *y = b;
	int d;

	if (!x->f || !y->f)
		d = !!x->f - !!y->f;
	else
		d = strcmp(x->f, y->f);
	return d ? d : strcmp(x->row->site_id, y->row->site_id);
}

/*
 * The step from the naming frame where the stacks of v part, callers first
 * (> 0), then frames inside (< 0); 0 when they never do.
 */
static int part_step(struct snap_site *const *v, size_t n)
{
	for (int dir = 1; dir >= -1; dir -= 2) {
		for (int step = dir; step * dir <= MEMTOP_MAX_FRAMES;
		     step += dir) {
			bool all_gone = !frame_at(v[0], step);

			for (size_t j = 1; j < n; j++) {
				if (!same_name(frame_at(v[j], step),
					       frame_at(v[0], step)))
					return step;
				all_gone &= !frame_at(v[j], step);
			}
			if (all_gone)
				break;
		}
	}
	return 0;
}

/* "via caller" (step > 0) or "in frame" (step < 0). */
static const char *part_word(int step)
{
	return step > 0 ? "via" : "in";
}

/*
 * Names the rows of v, all sharing their name at a first parting (or none:
 * first NULL), by where they part among themselves: "<first> via|in
 * name" where that name is theirs alone, else "<first> #site_id". Rows at
 * one Python line whose C frames share a function (two call sites in it)
 * keep that name: "in PyUnicode_New #site_id", not the id alone.
 */
static int tell_run(struct collector *c, struct snap_site **v, size_t n,
		    int step, const char *first, struct named *byname)
{
	char buf[600];
	int d = n > 1 ? part_step(v, n) : 0;
	int at = 0;

	buf[0] = '\0';
	if (first)
		at = snprintf(buf, sizeof(buf), "%s %s ", part_word(step),
			      first);
	if (at < 0 || (size_t)at >= sizeof(buf))
		at = 0;
	for (size_t j = 0; j < n; j++) {
		byname[j].f = d ? frame_at(v[j], d) : NULL;
		byname[j].row = v[j];
	}
	qsort(byname, n, sizeof(*byname), cmp_named);
	for (size_t j = 0; j < n; j++) {
		const char *f = byname[j].f;
		bool uniq = f && (j == 0 || !same_name(byname[j - 1].f, f)) &&
			    (j + 1 == n || !same_name(byname[j + 1].f, f));

		if (n == 1 && first) /* alone with its first name */
			snprintf(buf, sizeof(buf), "%s %s", part_word(step),
				 first);
		else if (uniq)
			snprintf(buf + at, sizeof(buf) - at, "%s %s",
				 part_word(d), f);
		else
			snprintf(buf + at, sizeof(buf) - at, "#%s",
				 byname[j].row->site_id);
		byname[j].row->via = intern(c, buf);
		if (!byname[j].row->via)
			return -ENOMEM;
	}
	return 0;
}

/*
 * Rows of one process that share FUNCTION and LOCATION are different stacks
 * all the same: each gets what tells it apart, the first caller (else the
 * first frame inside) where the group's stacks part, as "via caller" ("in
 * frame"). Rows that share that name too are told apart among themselves
 * the same way (tell_run), and by "#" and the site id where nothing else
 * does.
 */
static int tell_apart(struct collector *c, struct snap_site *rows, size_t n)
{
	struct snap_site **v, **run = NULL;
	struct named *byname = NULL, *byrun = NULL;
	size_t i, j, k, e;
	int err = 0;

	if (n < 2)
		return 0;
	v = malloc(n * sizeof(*v));
	run = malloc(n * sizeof(*run));
	byname = malloc(n * sizeof(*byname));
	byrun = malloc(n * sizeof(*byrun));
	if (!v || !run || !byname || !byrun) {
		err = -ENOMEM;
		goto cleanup;
	}
	for (i = 0; i < n; i++)
		v[i] = &rows[i];
	qsort(v, n, sizeof(*v), cmp_row_name);
	for (i = 0; i < n; i = e) {
		int d;

		for (e = i + 1; e < n && v[e]->pid == v[i]->pid &&
				v[e]->touched == v[i]->touched &&
				!strcmp(v[e]->function, v[i]->function) &&
				!strcmp(v[e]->location, v[i]->location);
		     e++)
			;
		if (e - i < 2)
			continue;
		d = part_step(v + i, e - i);
		for (j = i; j < e; j++) {
			byname[j - i].f = d ? frame_at(v[j], d) : NULL;
			byname[j - i].row = v[j];
		}
		/* Sorted by name, a run of one name is the rows that name
		 * does not tell apart (a group can be every stack of a
		 * process: no pairwise look). */
		qsort(byname, e - i, sizeof(*byname), cmp_named);
		for (j = 0; j < e - i; j = k) {
			for (k = j + 1;
			     k < e - i && same_name(byname[k].f, byname[j].f);
			     k++)
				;
			for (size_t r = j; r < k; r++)
				run[r - j] = byname[r].row;
			err = tell_run(c, run, k - j, d, byname[j].f, byrun);
			if (err)
				goto cleanup;
		}
	}
cleanup:
	free(byrun);
	free(byname);
	free(run);
	free(v);
	return err;
}

static uint64_t sig_mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h * 0xff51afd7ed558ccdULL;
}

/*
 * What tell_apart's answer depends on, in row order: each row's process,
 * mode, stack, names (interned: a pointer stands for its string) and its
 * frames' names.
 */
static uint64_t rows_sig(const struct snap_site *rows, size_t n)
{
	uint64_t h = sig_mix(0, n);

	for (size_t i = 0; i < n; i++) {
		const struct snap_site *r = &rows[i];

		h = sig_mix(h, (uint64_t)r->pid << 1 | r->touched);
		h = sig_mix(h, r->stack_id);
		h = sig_mix(h, (uintptr_t)r->function);
		h = sig_mix(h, (uintptr_t)r->location);
		h = sig_mix(h, (uint64_t)(uint32_t)r->name_frame << 32 |
				       (uint32_t)r->nframes);
		for (int k = 0; k < r->nframes; k++)
			h = sig_mix(h, (uintptr_t)r->frames[k].func);
	}
	return h;
}

static int tell_apart_cached(struct collector *c, struct snap_site *rows,
			     size_t n)
{
	uint64_t sig = rows_sig(rows, n);
	int err;

	if (c->nvias == n && c->vias_sig == sig) {
		for (size_t i = 0; i < n; i++)
			rows[i].via = c->vias[i];
		return 0;
	}
	err = tell_apart(c, rows, n);
	if (err)
		return err;
	if (ARRAY_RESERVE(c->vias, c->vias_cap, n)) {
		c->nvias = 0;
		return 0; /* worked out again next time */
	}
	for (size_t i = 0; i < n; i++)
		c->vias[i] = rows[i].via;
	c->nvias = n;
	c->vias_sig = sig;
	return 0;
}

/* What a process's trend and growth follow: TOUCHED in growth mode. */
static int64_t proc_level(const struct collector *c, const struct proc_state *p)
{
	if (c->opts.growth && !p->exact)
		return (int64_t)p->touched_bytes;
	return p->st.outstanding_bytes;
}

static int64_t row_level(const struct snap_proc *p)
{
	return p->growth ? (int64_t)p->touched_bytes : p->outstanding_bytes;
}

static int cmp_proc(const void *a, const void *b)
{
	const struct snap_proc *x = a, *y = b;

	if (row_level(x) != row_level(y))
		return row_level(x) > row_level(y) ? -1 : 1;
	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

/* --sample N: one allocation in N was recorded; the figures estimate all. */
static struct mt_stats scaled(const struct collector *c,
			      const struct mt_stats *in)
{
	struct mt_stats st = *in;
	int64_t k = c->opts.scale > 1 ? (int64_t)c->opts.scale : 1;

	st.outstanding_bytes *= k;
	st.outstanding_allocs *= k;
	st.allocs *= (uint64_t)k;
	st.frees *= (uint64_t)k;
	st.alloc_bytes *= (uint64_t)k;
	st.free_bytes *= (uint64_t)k;
	return st;
}

static int cmp_proc_pid(const void *a, const void *b)
{
	const struct snap_proc *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

/* Sites and suspects per process: O(rows log procs), not rows x procs. */
static void count_proc_sites(struct snapshot *s, const struct snap_site *rows,
			     size_t n)
{
	qsort(s->procs, s->nprocs, sizeof(*s->procs), cmp_proc_pid);
	for (size_t k = 0; k < n; k++) {
		struct snap_proc key = {.pid = rows[k].pid}, *p;

		p = bsearch(&key, s->procs, s->nprocs, sizeof(*s->procs),
			    cmp_proc_pid);
		if (p) {
			p->nsites++;
			p->nsuspects += rows[k].suspect;
		}
	}
}

static int build_types(struct collector *c, const struct raw_sample *raw);

static int build_snapshot(struct collector *c, size_t n, double dt)
{
	struct snapshot *s = &c->snap;

	if (ARRAY_RESERVE(c->prows, c->prows_cap, (size_t)c->nprocs))
		return -ENOMEM;
	if (c->collapse) {
		/* Sums go into the collector's buffers, not the sites' history.
		 */
		if (array_reserve((void **)&c->trends, &c->trends_cap, n,
				  SNAP_TREND * sizeof(*c->trends)))
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			int64_t *dst = c->trends + i * SNAP_TREND;

			memcpy(dst, c->rows[i].trend,
			       sizeof(*dst) * c->rows[i].ntrend);
			c->rows[i].trend = dst;
		}
		n = collapse_rows(c->rows, n);
	} else if (tell_apart_cached(c, c->rows, n)) {
		return -ENOMEM;
	}
	s->sites = c->rows;
	s->nsites = (int)n;
	s->procs = c->prows;
	s->nprocs = 0;
	s->outstanding_bytes = s->outstanding_allocs = 0;
	s->allocs = s->frees = 0;
	s->touched_bytes = 0;
	s->alloc_rate = s->free_rate = 0;
	s->rss_bytes = 0;
	for (int i = 0; i < c->nprocs; i++) {
		struct proc_state *p = &c->procs[i];
		struct snap_proc *r = &c->prows[s->nprocs++];

		memset(r, 0, sizeof(*r));
		r->pid = p->pid;
		r->alive = p->alive;
		r->uid = p->uid;
		memcpy(r->comm, p->comm, sizeof(r->comm));
		memcpy(r->cmdline, p->cmdline, sizeof(r->cmdline));
		r->outstanding_bytes = p->st.outstanding_bytes;
		r->outstanding_allocs = p->st.outstanding_allocs;
		r->allocs = p->st.allocs;
		r->frees = p->st.frees;
		r->alloc_bytes = p->st.alloc_bytes;
		r->free_bytes = p->st.free_bytes;
		r->delta_bytes = proc_level(c, p) - p->prev_bytes;
		r->delta_allocs = p->st.outstanding_allocs - p->prev_count;
		r->alloc_rate = rate(p->st.allocs, p->prev_allocs, dt);
		r->free_rate = rate(p->st.frees, p->prev_frees, dt);
		r->growth_bps =
			p->has_base
				? growth_since(proc_level(c, p), p->base_bytes,
					       c->last_ns, p->base_ns)
				: hist_growth(&p->hist, c->opts.growth_window,
					      c->prev_ns);
		r->rss_bytes = p->rss_bytes;
		r->mmap_bytes = p->mmap_bytes;
		/* Never below what it holds now (a process with no allocation
		 * since attach has no peak entry: its level is its peak). */
		r->peak_bytes = p->peak_bytes;
		if (r->peak_bytes < r->outstanding_bytes)
			r->peak_bytes = r->outstanding_bytes;
		r->interval_peak_bytes = p->interval_peak_bytes;
		if (r->interval_peak_bytes < r->outstanding_bytes)
			r->interval_peak_bytes = r->outstanding_bytes;
		if (r->interval_peak_bytes > r->peak_bytes)
			r->peak_bytes = r->interval_peak_bytes;
		r->peak_ago_s =
			p->has_peak && c->last_ns > p->peak_ns
				? (double)(c->last_ns - p->peak_ns) / 1e9
				: 0;
		memcpy(r->not_seen, p->not_seen, sizeof(r->not_seen));
		r->has_types = p->has_types;
		r->obj_typed = p->obj_typed;
		r->obj_untyped = p->obj_untyped;
		r->obj_unread = p->obj_unread;
		r->bad_types = p->bad_types;
		r->has_gc = p->has_gc || p->gc.frees;
		r->gc_collections = p->gc_collections;
		r->gc_frees = p->gc.frees;
		r->gc_free_bytes = p->gc.free_bytes;
		r->gc_delta_collections =
			p->gc_collections - p->prev_gc_collections;
		r->gc_delta_bytes =
			p->gc.free_bytes >= p->prev_gc.free_bytes
				? p->gc.free_bytes - p->prev_gc.free_bytes
				: 0;
		r->has_resources = p->has_resources;
		if (p->has_resources) {
			r->open_fds = p->open_fds;
			r->threads = p->threads;
			bool b = p->has_base;

			r->fds_growth =
				(int32_t)(p->open_fds -
					  (b ? p->base_fds : p->first_fds));
			r->threads_growth =
				(int32_t)(p->threads - (b ? p->base_threads
							  : p->first_threads));
		}
		r->growth = c->opts.growth && !p->exact;
		r->exact = p->exact;
		r->touched_bytes = p->touched_bytes;
		r->touched_faults = p->touched_faults;
		r->returned_bytes = p->returned_bytes;
		r->returned_calls = p->returned_calls;
		r->rss_change =
			p->has_rss0 && p->alive
				? (int64_t)p->rss_bytes - (int64_t)p->rss0
				: 0;
		s->touched_bytes += p->touched_bytes;
		r->ntrend = p->hist.n;
		memcpy(r->trend, hist_vals(&p->hist),
		       sizeof(r->trend[0]) * p->hist.n);
		if (c->nprocs == 1) {
			r->nsites = (int)n;
			for (size_t k = 0; k < n; k++)
				r->nsuspects += c->rows[k].suspect;
		}
		s->outstanding_bytes += r->outstanding_bytes;
		s->outstanding_allocs += r->outstanding_allocs;
		s->allocs += r->allocs;
		s->frees += r->frees;
		s->alloc_rate += r->alloc_rate;
		s->free_rate += r->free_rate;
		s->rss_bytes += r->rss_bytes;
	}
	if (c->nprocs > 1)
		count_proc_sites(s, c->rows, n);
	s->baseline = c->baseline;
	if (s->nprocs)
		qsort(s->procs, s->nprocs, sizeof(*s->procs), cmp_proc);
	if (n > c->norder || !c->order) {
		uint32_t *o = realloc(c->order, (n ? n : 1) * sizeof(*o));

		if (!o)
			return -ENOMEM;
		c->order = o;
	} else if (n < c->norder) {
		c->norder = 0; /* not a permutation of 0..n-1 any more */
	}
	if (c->collapse) {
		snapshot_sort_sites(s->sites, s->nsites, c->opts.sort,
				    c->opts.reverse);
		c->norder = 0;
	} else {
		snapshot_sort_sites_from(
			s->sites, s->nsites, c->opts.sort, c->opts.reverse,
			c->norder == n ? c->order : NULL, c->order);
		c->norder = n;
	}
	return 0;
}

static void site_free(struct site_state *s)
{
	free(s->frames);
	free(s);
}

/*
 * Sites the tracer reclaimed (empty and idle) stop appearing in samples: drop
 * them after a few refreshes so memory follows the live sites, not every
 * stack ever seen.
 */
static bool seen_lately(struct collector *c, struct site_state *s, void *arg)
{
	(void)arg;
	return s->seen_seq + 3 >= c->seq;
}

static void evict_unseen(struct collector *c, size_t nseen)
{
	bool stale = false;

	if (nseen == c->nsites)
		return; /* every site was in this sample: no scan of them all */
	for (size_t i = 0; i < c->tab_cap && !stale; i++)
		stale = c->tab[i].s && !seen_lately(c, c->tab[i].s, NULL);
	/* On failure keep them: a stale row is better than a crash. */
	if (stale)
		tab_rebuild(c, c->tab_cap, seen_lately, NULL);
}

int collector_update(struct collector *c, const struct raw_sample *raw,
		     const struct snapshot **out)
{
	struct snapshot *s = &c->snap;
	size_t nrows = 0;
	double dt;
	int err;

	c->seq++;
	if (!c->start_ns)
		c->start_ns = raw->mono_ns;
	dt = c->last_ns ? (double)(raw->mono_ns - c->last_ns) / 1e9 : 0;
	c->prev_ns = c->last_ns;
	c->last_ns = raw->mono_ns;
	if (ARRAY_RESERVE(c->rows, c->rows_cap, raw->nsites))
		return -ENOMEM;
	c->snap.sites = c->rows; /* the last snapshot, maybe moved: whole */
	if (ARRAY_RESERVE(c->hint, c->hint_cap, raw->nsites))
		return -ENOMEM;
	/* The collector's frees, into the sites known (a site new in this
	 * sample gets them from the next one on). */
	for (int i = 0; i < c->nprocs; i++) {
		c->procs[i].prev_gc = c->procs[i].gc;
		memset(&c->procs[i].gc, 0, sizeof(c->procs[i].gc));
	}
	for (size_t i = 0; i < raw->ngcs; i++) {
		const struct raw_gc *g = &raw->gcs[i];
		uint64_t k = c->opts.scale > 1 ? c->opts.scale : 1;
		struct proc_state *p = NULL;
		struct tab_ent *e;

		for (int j = 0; j < c->nprocs && !p; j++)
			if (c->procs[j].pid == g->key.tgid)
				p = &c->procs[j];
		if (p) {
			p->gc.frees += g->gc.frees * k;
			p->gc.free_bytes += g->gc.free_bytes * k;
		}
		if (!c->tab_cap)
			continue;
		e = tab_slot(c, &g->key);
		if (e->s) {
			e->s->gc.frees = g->gc.frees * k;
			e->s->gc.free_bytes = g->gc.free_bytes * k;
		}
	}
	/* Each site's row is filled while its state is in the cache. */
	for (size_t i = 0; i < raw->nsites; i++) {
		const struct raw_site *r = &raw->sites[i];
		struct site_state *st = i < c->nhint ? c->hint[i] : NULL;

		/* 65k sites are ~50 MB: fetch a few sites ahead, or every one
		 * is a cache (and TLB) miss in turn. */
		if (i + 8 < c->nhint) {
			const char *p = (const char *)c->hint[i + 8];

			__builtin_prefetch(p);
			__builtin_prefetch(p + 64);
			__builtin_prefetch(p + 128);
		}

		if (!st || st->key.tgid != r->key.tgid ||
		    st->key.kind != r->key.kind ||
		    st->key.stack_id != r->key.stack_id)
			st = site_get(c, &r->key);
		if (!st) {
			c->nhint = 0;
			return -ENOMEM;
		}
		c->hint[i] = st;
		if (st->seen_seq == c->seq)
			continue; /* the same key twice in a sample: once */
		if (st->seen_seq && r->st.allocs >= st->st.allocs) {
			st->prev_allocs = st->st.allocs;
			st->prev_frees = st->st.frees;
		} else {
			/* New, or reclaimed by the tracer and started again. */
			/* New since the last refresh: all its calls were in it.
			 */
			st->prev_allocs = 0;
			st->prev_frees = 0;
		}
		st->st = scaled(c, &r->st);
		st->seen_seq = c->seq;
		if (st->jit_frame >= 0 && jit_renamed(c, st) &&
		    site_reresolve(c, st))
			return -ENOMEM;
		hist_push(&st->hist, r->st.outstanding_bytes, raw->mono_ns);
		fill_site_row(c, nrows++, st, dt);
	}
	c->nhint = raw->nsites;
	for (size_t i = 0; i < raw->nprocs; i++) {
		const struct raw_proc *r = &raw->procs[i];
		struct proc_state *p = proc_get(c, r->tgid);

		if (!p)
			return -ENOMEM;
		p->prev_allocs = p->st.allocs;
		p->prev_frees = p->st.frees;
		p->prev_bytes = proc_level(c, p);
		p->prev_count = p->st.outstanding_allocs;
		if (r->has_stats)
			p->st = scaled(c, &r->st);
		p->alive = r->alive;
		if (r->alive)
			p->uid = r->uid;
		if (r->comm[0])
			memcpy(p->comm, r->comm, sizeof(p->comm));
		if (r->cmdline[0])
			memcpy(p->cmdline, r->cmdline, sizeof(p->cmdline));
		p->rss_bytes = r->alive ? r->rss_bytes : 0;
		p->mmap_bytes = r->anon_bytes;
		if (r->has_peak) {
			int64_t k =
				c->opts.scale > 1 ? (int64_t)c->opts.scale : 1;

			p->has_peak = true;
			p->peak_bytes = r->peak_bytes * k;
			p->interval_peak_bytes = r->interval_peak_bytes * k;
			p->peak_ns = r->peak_ns;
		}
		if (r->alive || r->not_seen[0])
			memcpy(p->not_seen, r->not_seen, sizeof(p->not_seen));
		if (r->has_gc) {
			p->prev_gc_collections = p->has_gc ? p->gc_collections
							   : r->gc_collections;
			p->gc_collections = r->gc_collections;
			p->has_gc = true;
		} else {
			p->prev_gc_collections = p->gc_collections;
		}
		p->has_types = r->has_types;
		if (r->has_types && !p->types_seq)
			p->types_seq = c->seq;
		p->obj_typed = r->obj_typed;
		p->obj_untyped = r->obj_untyped;
		p->obj_unread = r->obj_unread;
		p->bad_types = r->bad_types;
		p->has_resources = r->alive && r->has_resources;
		if (p->has_resources) {
			p->open_fds = r->open_fds;
			p->threads = r->threads;
			if (!p->has_res_first) {
				p->first_fds = r->open_fds;
				p->first_threads = r->threads;
				p->has_res_first = true;
			}
		}
		p->touched_bytes = r->touched_bytes;
		p->touched_faults = r->touched_faults;
		p->returned_bytes = r->returned_bytes;
		p->returned_calls = r->returned_calls;
		if (p->exact != r->exact) {
			/* Switched: the other figure's history means nothing.
			 */
			p->exact = r->exact;
			p->hist.n = 0;
			p->has_base = false;
			p->prev_bytes = proc_level(c, p);
		}
		/* RSS since attach: from the RSS the source read as it
		 * attached (when TOUCHED and the allocation counts start),
		 * not from a first sample that may come seconds later. */
		if (r->alive && !p->has_rss0 &&
		    (r->has_rss_base || r->rss_bytes)) {
			p->rss0 = r->has_rss_base ? r->rss_base : r->rss_bytes;
			p->has_rss0 = true;
		}
		p->seen_seq = c->seq;
		hist_push(&p->hist, proc_level(c, p), raw->mono_ns);
	}
	evict_unseen(c, nrows);
	err = build_snapshot(c, nrows, dt);
	if (!err)
		err = build_types(c, raw);
	if (err)
		return err;
	s->seq = c->seq;
	s->growth = c->opts.growth;
	s->scale = c->opts.scale > 1 ? c->opts.scale : 1;
	s->min_size = c->opts.min_size;
	s->depth = c->opts.depth;
	s->allocator_frames = c->opts.function_frame;
	s->self_cpu_s = raw->self_cpu_s;
	s->self_kernel_bytes = raw->self_kernel_bytes;
	s->wall = raw->wall;
	s->elapsed_s = (double)(raw->mono_ns - c->start_ns) / 1e9;
	s->interval_s = dt;
	memcpy(s->lost, raw->counters, sizeof(s->lost));
	s->recursion_misses = raw->recursion_misses;
	s->lost_total = raw->recursion_misses;
	for (int i = 0; i < MT_CNT_NR; i++)
		if (i != MT_CNT_UNKNOWN_FREE && i != MT_CNT_DEPTH_RESET)
			s->lost_total += raw->counters[i];
	*out = s;
	return 0;
}

/* ---- objects by type ---- */

static struct type_state *type_get(struct collector *c, uint32_t pid,
				   const char *name)
{
	struct type_state *t;

	/* Types per process are few (hundreds): a scan, most recent last. */
	for (size_t i = c->ntstates; i-- > 0;)
		if (c->tstates[i].pid == pid && c->tstates[i].name == name)
			return &c->tstates[i];
	if (ARRAY_RESERVE(c->tstates, c->tstates_cap, c->ntstates + 1))
		return NULL;
	t = &c->tstates[c->ntstates++];
	memset(t, 0, sizeof(*t));
	t->pid = pid;
	t->name = name;
	t->first_objects = -1;
	if (c->baseline) {
		t->has_base = true;
		t->base_ns = c->baseline_ns;
	}
	return t;
}

/* Is this the first refresh in which pid's objects were read? */
static bool type_first_reading(struct collector *c, uint32_t pid)
{
	for (int i = 0; i < c->nprocs; i++)
		if (c->procs[i].pid == pid)
			return c->procs[i].types_seq == c->seq;
	return true;
}

static int cmp_trow(const void *a, const void *b)
{
	const struct snap_type *x = a, *y = b;

	if (x->objects != y->objects)
		return x->objects > y->objects ? -1 : 1;
	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int build_types(struct collector *c, const struct raw_sample *raw)
{
	struct snapshot *s = &c->snap;
	size_t n = 0, ns = 0;

	s->types = c->trows;
	s->ntypes = 0;
	if (ARRAY_RESERVE(c->trows, c->trows_cap, raw->ntypes) ||
	    ARRAY_RESERVE(c->tsites, c->tsites_cap, raw->ntype_sites))
		return -ENOMEM;
	for (size_t i = 0; i < raw->ntypes; i++) {
		const struct raw_type *rt = &raw->types[i];
		const char *name = intern(c, rt->name);
		struct type_state *t;
		struct snap_type *r;

		if (!name || !(t = type_get(c, rt->pid, name)))
			return -ENOMEM;
		t->objects = rt->objects;
		t->bytes = rt->bytes;
		/* A type that appears after the first reading of its
		 * process had no objects before: all of them are new. */
		if (t->first_objects < 0)
			t->first_objects = type_first_reading(c, rt->pid)
						   ? rt->objects
						   : 0;
		t->seen_seq = c->seq;
		hist_push(&t->hist, rt->objects, raw->mono_ns);
		hist_push(&t->bhist, rt->bytes, raw->mono_ns);
		r = &c->trows[n++];
		memset(r, 0, sizeof(*r));
		r->pid = rt->pid;
		r->name = name;
		r->objects = rt->objects;
		r->bytes = rt->bytes;
		if (t->has_base) {
			r->growth_objs =
				growth_since(t->objects, t->base_objects,
					     c->last_ns, t->base_ns);
			r->growth_bps = growth_since(t->bytes, t->base_bytes,
						     c->last_ns, t->base_ns);
			r->delta_objects = t->objects - t->base_objects;
		} else {
			r->growth_objs =
				hist_growth(&t->hist, c->opts.growth_window, 0);
			r->growth_bps = hist_growth(&t->bhist,
						    c->opts.growth_window, 0);
			r->delta_objects = t->objects - t->first_objects;
		}
		r->sites = &c->tsites[ns];
		for (size_t k = 0; k < rt->nsites; k++) {
			const struct raw_type_site *q =
				&raw->type_sites[rt->first_site + k];
			struct mt_site_key key = {.tgid = rt->pid,
						  .stack_id = q->stack_id};
			struct tab_ent *e =
				c->tab_cap ? tab_slot(c, &key) : NULL;
			struct snap_type_site *d = &c->tsites[ns++];

			d->stack_id = q->stack_id;
			d->objects = q->objects;
			d->bytes = q->bytes;
			d->function = e && e->s && e->s->function
					      ? e->s->function
					      : "[site gone]";
			d->location = e && e->s && e->s->location
					      ? e->s->location
					      : "";
		}
		r->nsites = (int)rt->nsites;
	}
	/* A type with no live object now: its state stays, at 0, so growth
	 * and the baseline still compare. */
	for (size_t i = 0; i < c->ntstates; i++)
		if (c->tstates[i].seen_seq != c->seq) {
			c->tstates[i].objects = c->tstates[i].bytes = 0;
		}
	if (n > 1)
		qsort(c->trows, n, sizeof(*c->trows), cmp_trow);
	s->types = c->trows;
	s->ntypes = (int)n;
	s->types_on = false;
	for (int i = 0; i < s->nprocs; i++)
		s->types_on |= s->procs[i].has_types;
	return 0;
}

const struct snapshot *collector_snapshot(struct collector *c)
{
	snapshot_sort_sites(c->snap.sites, c->snap.nsites, c->opts.sort,
			    c->opts.reverse);
	return &c->snap;
}

void collector_set_sort(struct collector *c, enum sort_field f, bool reverse)
{
	c->opts.sort = f;
	c->opts.reverse = reverse;
	snapshot_sort_sites(c->snap.sites, c->snap.nsites, f, reverse);
}

void collector_set_baseline(struct collector *c, bool on)
{
	if (!c->seq)
		return; /* nothing to compare with yet */
	c->baseline = on;
	c->baseline_ns = c->last_ns;
	for (size_t i = 0; i < c->tab_cap; i++) {
		struct site_state *s = c->tab[i].s;

		if (!s)
			continue;
		s->has_base = on;
		s->base_bytes = s->st.outstanding_bytes;
		s->base_ns = c->last_ns;
	}
	for (int i = 0; i < c->nprocs; i++) {
		c->procs[i].has_base = on;
		c->procs[i].base_bytes = proc_level(c, &c->procs[i]);
		c->procs[i].base_ns = c->last_ns;
		c->procs[i].base_fds = c->procs[i].open_fds;
		c->procs[i].base_threads = c->procs[i].threads;
	}
	for (size_t i = 0; i < c->ntstates; i++) {
		c->tstates[i].has_base = on;
		c->tstates[i].base_objects = c->tstates[i].objects;
		c->tstates[i].base_bytes = c->tstates[i].bytes;
		c->tstates[i].base_ns = c->last_ns;
	}
	c->snap.baseline = on;
}

void collector_set_collapse(struct collector *c, bool on)
{
	c->collapse = on;
}

static bool other_pid(struct collector *c, struct site_state *s, void *arg)
{
	(void)c;
	return s->key.tgid != *(uint32_t *)arg;
}

void collector_forget(struct collector *c, uint32_t pid)
{
	/* Open addressing has no cheap deletion: rebuild. On failure keep it:
	 * a stale row is better than a crash. */
	tab_rebuild(c, c->tab_cap, other_pid, &pid);
	/* Nor may the last snapshot keep rows of the sites just freed. */
	{
		int n = 0;

		for (int i = 0; i < c->snap.nsites; i++)
			if (c->snap.sites[i].pid != pid)
				c->snap.sites[n++] = c->snap.sites[i];
		c->snap.nsites = n;
		n = 0;
		for (int i = 0; i < c->snap.nprocs; i++)
			if (c->snap.procs[i].pid != pid)
				c->snap.procs[n++] = c->snap.procs[i];
		c->snap.nprocs = n;
	}
	for (int i = 0; i < c->nprocs; i++) {
		if (c->procs[i].pid != pid)
			continue;
		c->procs[i] = c->procs[--c->nprocs];
		break;
	}
	{
		size_t n = 0;
		int k = 0;

		for (size_t i = 0; i < c->ntstates; i++)
			if (c->tstates[i].pid != pid)
				c->tstates[n++] = c->tstates[i];
		c->ntstates = n;
		for (int i = 0; i < c->snap.ntypes; i++)
			if (c->snap.types[i].pid != pid)
				c->snap.types[k++] = c->snap.types[i];
		c->snap.ntypes = k;
	}
}

void collector_free(struct collector *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->tab_cap; i++)
		if (c->tab[i].s)
			site_free(c->tab[i].s);
	free(c->tab);
	free(c->procs);
	strpool_free(&c->strs);
	free(c->order);
	free(c->hint);
	free(c->rows);
	free(c->vias);
	free(c->trends);
	free(c->prows);
	free(c->tstates);
	free(c->trows);
	free(c->tsites);
	free(c);
}
