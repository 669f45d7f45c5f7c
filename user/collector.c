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
#include "collector.h"

/*
 * A ring that stores each value twice, SNAP_TREND apart, so the last n values
 * are always contiguous at val + head, oldest first: rows point at them
 * instead of copying (no memmove or copy per site per refresh).
 */
struct history {
	int64_t val[2 * SNAP_TREND];
	uint64_t t_ns[SNAP_TREND];
	int n; /* valid entries */
	int head; /* index of the oldest */
};

/* What a refresh touches comes first: 65k sites do not fit in a cache. */
struct site_state {
	struct mt_site_key key;
	struct mt_stats st;
	uint64_t prev_allocs, prev_frees;
	uint64_t seen_seq;
	int64_t base_bytes;
	uint64_t base_ns;
	bool has_base;
	char site_id[17]; /* formatted once: snprintf per row per refresh showed */
	const char *function, *location; /* interned */
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
	int64_t mmap_bytes; /* issue 7 */
	struct history hist;
	int64_t base_bytes;
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
	int nprocs, procs_cap;
	uint64_t seq;
	uint64_t start_ns, last_ns;
	bool baseline;
	uint64_t baseline_ns;
	bool collapse;
	struct snapshot snap;
	struct snap_site *rows;
	size_t rows_cap;
	/* Last refresh's sorted order, as indices of rows in sample order:
	 * the next sort starts from it. */
	uint32_t *order;
	size_t norder;
	int64_t *trends; /* collapsed rows' summed trends, trends_cap rows */
	size_t trends_cap;
	struct snap_proc *prows;
	int prows_cap;
	struct mt_stack stack_buf;
	/* Every name, location and module string once (frames of different
	 * sites share most of them): a set of strings that lives as long as
	 * the collector. Per-site copies cost ~3 KB a site at 50k sites. */
	char **pool;
	size_t pool_cap, pool_n;
};

static void site_free(struct site_state *s);

static uint64_t key_hash(const struct mt_site_key *k)
{
	uint64_t h = k->stack_id ^ ((uint64_t)k->tgid * 0x9e3779b97f4a7c15ull);

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
	if (c->opts.growth_window < 1)
		c->opts.growth_window = 5;
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
		if (tab[j].key.tgid == k->tgid &&
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
	struct mt_site_key k = { .tgid = pid, .stack_id = stack_id };

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

static double hist_growth(const struct history *h, int window)
{
	int i0, last;
	double dt;

	if (h->n < 2)
		return 0;
	i0 = h->n - 1 - window;
	if (i0 < 0)
		i0 = 0;
	last = h->n - 1;
	dt = (double)(h->t_ns[(h->head + last) % SNAP_TREND] -
		      h->t_ns[(h->head + i0) % SNAP_TREND]) / 1e9;
	return dt > 0 ? (double)(h->val[h->head + last] - h->val[h->head + i0]) / dt
		      : 0;
}

/* Rose in more than half of the last `window` refreshes, and never fell much. */
static bool hist_suspect(const struct history *h, int window)
{
	const int64_t *v = h->val + h->head;
	int rises = 0, steps = 0;

	for (int i = h->n - 1; i > 0 && steps < window; i--, steps++)
		if (v[i] > v[i - 1])
			rises++;
	return steps >= 3 && rises * 2 > steps && v[h->n - 1] > v[h->n - 1 - steps];
}

static uint64_t str_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

static int pool_grow(struct collector *c)
{
	size_t ncap = c->pool_cap ? c->pool_cap * 2 : 4096;
	char **nt = calloc(ncap, sizeof(*nt));

	if (!nt)
		return -ENOMEM;
	for (size_t i = 0; i < c->pool_cap; i++) {
		size_t j;

		if (!c->pool[i])
			continue;
		for (j = str_hash(c->pool[i]) & (ncap - 1); nt[j];
		     j = (j + 1) & (ncap - 1))
			;
		nt[j] = c->pool[i];
	}
	free(c->pool);
	c->pool = nt;
	c->pool_cap = ncap;
	return 0;
}

/*
 * The pooled copy of s, NULL without memory. Names come from the target's
 * files (symbols, source paths, module names): a control character in one
 * must not reach a terminal or split a CSV line, so the copy is cleaned.
 */
static const char *intern(struct collector *c, const char *s)
{
	char buf[1024], *tmp = NULL, *clean = buf, *d = NULL;
	size_t j, len = strlen(s);

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
	if ((c->pool_n + 1) * 2 > c->pool_cap && pool_grow(c))
		goto out;
	for (j = str_hash(clean) & (c->pool_cap - 1); c->pool[j];
	     j = (j + 1) & (c->pool_cap - 1)) {
		if (!strcmp(c->pool[j], clean)) {
			d = c->pool[j];
			goto out;
		}
	}
	d = tmp ? tmp : strdup(clean);
	tmp = NULL;
	if (!d)
		goto out;
	c->pool[j] = d;
	c->pool_n++;
out:
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

static int site_resolve(struct collector *c, struct site_state *s)
{
	struct mt_stack *st = &c->stack_buf;
	int n = 0;

	if (s->key.stack_id && c->hooks.stack &&
	    !c->hooks.stack(c->hooks.ctx, &s->key, st))
		n = st->nr > MEMTOP_MAX_FRAMES ? MEMTOP_MAX_FRAMES : (int)st->nr;
	if (n) {
		s->frames = calloc(n, sizeof(*s->frames));
		if (!s->frames)
			return -ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		struct snap_frame *f = &s->frames[i];
		struct sym_info si = { 0 };
		/* The hook looks up ip-1, the call of a return address; frames
		 * inside the allocator are probe addresses, not return ones. */
		uint64_t ip = st->ips[i] + (i < c->opts.function_frame);
		bool ok = c->hooks.symbolize &&
			  !c->hooks.symbolize(c->hooks.ctx, s->key.tgid, ip,
					      &si);
		char loc[512];

		f->ip = st->ips[i];
		f->func = ok && si.func ? intern(c, si.func)
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
		if (!f->func || !f->location || !f->module)
			return -ENOMEM;
		s->nframes = i + 1;
	}
	if (s->nframes) {
		int k = c->opts.function_frame < s->nframes ? c->opts.function_frame
							   : s->nframes - 1;

		/* Issue 7: an interpreter's frame names the site if there is one. */
		for (int i = 0; i < s->nframes; i++) {
			if (s->frames[i].ip & MT_IP_INTERP_TAG) {
				k = i;
				break;
			}
		}
		s->function = s->frames[k].func;
		s->location = s->frames[k].location;
	} else {
		s->function = s->key.stack_id ? "[stack unavailable]"
					      : "[stack not captured]";
		s->location = "[unknown]";
	}
	return s->function && s->location ? 0 : -ENOMEM;
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
		/* Keep the site with what it has: numbers matter more than names. */
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
	if (c->nprocs == c->procs_cap) {
		int ncap = c->procs_cap ? c->procs_cap * 2 : 16;

		p = realloc(c->procs, ncap * sizeof(*p));
		if (!p)
			return NULL;
		c->procs = p;
		c->procs_cap = ncap;
	}
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
	r->alloc_rate = rate(st->allocs, s->prev_allocs, dt);
	r->free_rate = rate(st->frees, s->prev_frees, dt);
	r->growth_bps = s->has_base ? growth_since(st->outstanding_bytes,
						   s->base_bytes, c->last_ns,
						   s->base_ns)
				    : hist_growth(&s->hist, c->opts.growth_window);
	r->age_s = st->first_ns && c->last_ns > st->first_ns
			   ? (double)(c->last_ns - st->first_ns) / 1e9
			   : 0;
	r->trend = hist_vals(&s->hist);
	r->ntrend = s->hist.n;
	r->suspect = hist_suspect(&s->hist, c->opts.suspect_window);
	r->function = s->function;
	r->location = s->location;
	r->nframes = s->nframes;
	r->frames = s->frames;
}

static int cmp_row_collapse(const void *a, const void *b)
{
	const struct snap_site *x = a, *y = b;
	int d;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	d = strcmp(x->function, y->function);
	if (d)
		return d;
	return x->outstanding_bytes > y->outstanding_bytes ? -1
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

		if (out && d->pid == rows[i].pid &&
		    !strcmp(d->function, rows[i].function)) {
			d->outstanding_bytes += rows[i].outstanding_bytes;
			d->outstanding_allocs += rows[i].outstanding_allocs;
			d->allocs += rows[i].allocs;
			d->frees += rows[i].frees;
			d->alloc_bytes += rows[i].alloc_bytes;
			d->free_bytes += rows[i].free_bytes;
			d->alloc_rate += rows[i].alloc_rate;
			d->free_rate += rows[i].free_rate;
			d->growth_bps += rows[i].growth_bps;
			if (rows[i].age_s > d->age_s)
				d->age_s = rows[i].age_s;
			for (int k = 0; k < d->ntrend && k < rows[i].ntrend; k++)
				d->trend[d->ntrend - 1 - k] +=
					rows[i].trend[rows[i].ntrend - 1 - k];
			d->suspect |= rows[i].suspect;
			continue;
		}
		rows[out++] = rows[i];
	}
	return out;
}

static int cmp_proc(const void *a, const void *b)
{
	const struct snap_proc *x = a, *y = b;

	if (x->outstanding_bytes != y->outstanding_bytes)
		return x->outstanding_bytes > y->outstanding_bytes ? -1 : 1;
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
		struct snap_proc key = { .pid = rows[k].pid }, *p;

		p = bsearch(&key, s->procs, s->nprocs, sizeof(*s->procs),
			    cmp_proc_pid);
		if (p) {
			p->nsites++;
			p->nsuspects += rows[k].suspect;
		}
	}
}

static int build_snapshot(struct collector *c, size_t n, double dt)
{
	struct snapshot *s = &c->snap;

	if (c->prows_cap < c->nprocs) {
		struct snap_proc *p = realloc(c->prows, c->nprocs * sizeof(*p));

		if (!p)
			return -ENOMEM;
		c->prows = p;
		c->prows_cap = c->nprocs;
	}
	if (c->collapse) {
		/* Sums go into the collector's buffers, not the sites' history. */
		if (c->trends_cap < n) {
			int64_t *tr = realloc(c->trends,
					      n * SNAP_TREND * sizeof(*tr));

			if (!tr)
				return -ENOMEM;
			c->trends = tr;
			c->trends_cap = n;
		}
		for (size_t i = 0; i < n; i++) {
			int64_t *dst = c->trends + i * SNAP_TREND;

			memcpy(dst, c->rows[i].trend,
			       sizeof(*dst) * c->rows[i].ntrend);
			c->rows[i].trend = dst;
		}
		n = collapse_rows(c->rows, n);
	}
	s->sites = c->rows;
	s->nsites = (int)n;
	s->procs = c->prows;
	s->nprocs = 0;
	s->outstanding_bytes = s->outstanding_allocs = 0;
	s->allocs = s->frees = 0;
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
		r->delta_bytes = p->st.outstanding_bytes - p->prev_bytes;
		r->delta_allocs = p->st.outstanding_allocs - p->prev_count;
		r->alloc_rate = rate(p->st.allocs, p->prev_allocs, dt);
		r->free_rate = rate(p->st.frees, p->prev_frees, dt);
		r->growth_bps = p->has_base
					? growth_since(p->st.outstanding_bytes,
						       p->base_bytes, c->last_ns,
						       p->base_ns)
					: hist_growth(&p->hist,
						      c->opts.growth_window);
		r->rss_bytes = p->rss_bytes;
		r->mmap_bytes = p->mmap_bytes;
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
		snapshot_sort_sites_from(s->sites, s->nsites, c->opts.sort,
					 c->opts.reverse,
					 c->norder == n ? c->order : NULL,
					 c->order);
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
	c->last_ns = raw->mono_ns;
	if (c->rows_cap < raw->nsites) {
		struct snap_site *rows = realloc(c->rows,
						 raw->nsites * sizeof(*rows));

		if (!rows)
			return -ENOMEM;
		c->rows = rows;
		c->rows_cap = raw->nsites;
		c->snap.sites = rows; /* the last snapshot, moved: still whole */
	}
	if (c->hint_cap < raw->nsites) {
		struct site_state **h = realloc(c->hint,
						raw->nsites * sizeof(*h));

		if (!h)
			return -ENOMEM;
		c->hint = h;
		c->hint_cap = raw->nsites;
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
			/* New since the last refresh: all its calls were in it. */
			st->prev_allocs = 0;
			st->prev_frees = 0;
		}
		st->st = scaled(c, &r->st);
		st->seen_seq = c->seq;
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
		p->prev_bytes = p->st.outstanding_bytes;
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
		p->seen_seq = c->seq;
		hist_push(&p->hist, p->st.outstanding_bytes, raw->mono_ns);
	}
	evict_unseen(c, nrows);
	err = build_snapshot(c, nrows, dt);
	if (err)
		return err;
	s->seq = c->seq;
	s->scale = c->opts.scale > 1 ? c->opts.scale : 1;
	s->min_size = c->opts.min_size;
	s->depth = c->opts.depth;
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
		c->procs[i].base_bytes = c->procs[i].st.outstanding_bytes;
		c->procs[i].base_ns = c->last_ns;
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
	for (size_t i = 0; i < c->pool_cap; i++)
		free(c->pool[i]);
	free(c->pool);
	free(c->order);
	free(c->hint);
	free(c->rows);
	free(c->trends);
	free(c->prows);
	free(c);
}
