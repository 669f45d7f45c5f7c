/*
 * What leaves the maps, part of the tracer (tracer_int.h): the live blocks
 * and regions of processes that exited or exec'd (the sweep, from reads and
 * the event thread), a gone process's sites, stacks and per-process
 * entries (tracer_forget, by the source once /proc says it is gone), and
 * sites idle long enough to give their room back (reclaim, at each read),
 * whose counts stay in their processes' figures.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "array.h"
#include "clock.h"
#include "growth.h"
#include "memtop.skel.h"
#include "tracer_int.h"

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
void forget_sweep(struct tracer *t, bool force)
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

void forget_add_retired(struct tracer *t, struct raw_sample *raw)
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

/* How idle an empty site may get when the maps were full. */
#define RECLAIM_PRESSED_NS 1000000000ull

/*
 * Stack storage must not freeze: a site that holds nothing and has not
 * allocated for a while is deleted with its stack, so that churning stacks
 * do not fill the maps. BPF recreates both if the stack allocates again.
 * lookup-and-delete returns the value as deleted: if an allocation slipped in
 * since the read, the entry is put back.
 */
void forget_idle(struct tracer *t, struct raw_sample *raw)
{
	int sites = bpf_map__fd(t->skel->maps.sites);
	uint64_t age = t->opts.reclaim_ns;
	struct mt_stats v;
	bool bumped = false;

	if (!age)
		return;
	/* Stacks were lost for want of room since the last read (a busy
	 * machine traced system-wide): a new process would get no stacks
	 * at all until the usual age passed, so wait only a second. */
	if (t->full_pressure && age > RECLAIM_PRESSED_NS)
		age = RECLAIM_PRESSED_NS;
	for (size_t i = 0; i < raw->nsites; i++) {
		struct raw_site *r = &raw->sites[i];

		if (r->key.kind != MT_SITE_ALLOC || r->st.outstanding_allocs ||
		    r->st.outstanding_bytes || !r->st.last_ns ||
		    raw->mono_ns < r->st.last_ns ||
		    raw->mono_ns - r->st.last_ns < age)
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
void forget_sites(struct tracer *t, uint32_t tgid, int kind)
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
		pyprobes_forget(t, tgid);
		pthread_mutex_lock(&t->lock);
		discover_forget_go(t, tgid);
		pthread_mutex_unlock(&t->lock);
		bpf_map_delete_elem(bpf_map__fd(t->skel->maps.anon_procs),
				    &tgid);
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
