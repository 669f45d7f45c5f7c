/*
 * One refresh's reads, part of the tracer (tracer_int.h): the pending
 * blocks flushed, every site (the map iterator, else batch lookups) and the
 * processes' sums of them, peaks, anonymous mmap, the cyclic collector's
 * frees, growth mode's counts, the counters and the programs' recursion
 * misses into a raw sample; stacks and Python stacks by site; the live
 * blocks for --types. Unwind tables follow the traced processes' mappings
 * here too (a read is when memtop looks).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "growth.h"
#include "memtop.skel.h"
#include "tracer_int.h"

static int emit_site(void *ctx, const void *k, const void *v)
{
	struct raw_site s;

	memcpy(&s.key, k, sizeof(s.key));
	memcpy(&s.st, v, sizeof(s.st));
	/* BPF keeps cumulative counters only (two atomics an event). A
	 * growth site's "outstanding" is what it touched: nothing is freed. */
	s.st.outstanding_bytes = (__s64)(s.st.alloc_bytes - s.st.free_bytes);
	s.st.outstanding_allocs = (__s64)(s.st.allocs - s.st.frees);
	return sample_add_site(ctx, &s);
}

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
		nrec = have / sizeof(struct mt_site_rec);
		for (i = 0; i < nrec && !err; i++) {
			struct mt_site_rec r;

			memcpy(&r, t->iter_buf + i * sizeof(r), sizeof(r));
			err = emit_site(raw, &r.key, &r.st);
		}
		if (err)
			break;
		total += nrec;
		have -= nrec * sizeof(struct mt_site_rec);
		memmove(t->iter_buf,
			t->iter_buf + nrec * sizeof(struct mt_site_rec), have);
	}
	close(fd);
	return err;
}

static int cmp_site_key(const void *a, const void *b)
{
	const struct raw_site *x = a, *y = b;

	if (x->key.tgid != y->key.tgid)
		return x->key.tgid < y->key.tgid ? -1 : 1;
	if (x->key.kind != y->key.kind)
		return x->key.kind < y->key.kind ? -1 : 1;
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
		qsort(raw->sites, raw->nsites, sizeof(*raw->sites),
		      cmp_site_key);
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
		if (raw->sites[i].key.kind == MT_SITE_TOUCHED) {
			/* Growth mode's figures are a category of their own. */
			p->touched_bytes += st->alloc_bytes;
			p->touched_faults += st->allocs;
			continue;
		}
		p->st.outstanding_bytes += st->outstanding_bytes;
		p->st.outstanding_allocs += st->outstanding_allocs;
		p->st.allocs += st->allocs;
		p->st.frees += st->frees;
		p->st.alloc_bytes += st->alloc_bytes;
		p->st.free_bytes += st->free_bytes;
		if (!p->st.first_ns ||
		    (st->first_ns && st->first_ns < p->st.first_ns))
			p->st.first_ns = st->first_ns;
		if (st->last_ns > p->st.last_ns)
			p->st.last_ns = st->last_ns;
	}
	return 0;
}

/*
 * At each refresh (at most 10 times a second), the traced processes'
 * mappings again: a library loaded since (dlopen, or by ld.so after an
 * exec) gets its table, one unloaded leaves. Unchanged mappings cost a
 * read of /proc/PID/maps. -p targets and
 * followed children only; system-wide, the processes are too many.
 */
static void uw_refresh(struct tracer *t, uint64_t now)
{
	if (!t->uw || now - t->uw_synced_ns < 100000000ull)
		return;
	t->uw_synced_ns = now;
	pthread_mutex_lock(&t->lock);
	unwinder_sync_all(t->uw);
	pthread_mutex_unlock(&t->lock);
}

/*
 * System-wide growth mode: a process that keeps growing gets its unwind
 * tables, so that its faults inside code without frame pointers (the C
 * library, the allocator) reach their callers from then on. Only growers:
 * a candidate has touched UW_GROWER_BYTES since attach and touched more
 * since the previous read (most processes touch a few pages and exit, a
 * compiler grows for a second), the fastest first, and the syncs of a read
 * stop after UW_SYNC_BUDGET_NS (a sync compiles the tables of objects not
 * seen before: 10-90 ms each for the C library or libstdc++).
 */
#define UW_GROWER_BYTES	    (256 * 1024)
#define UW_GROWERS_PER_READ 4
#define UW_SYNC_BUDGET_NS   100000000ull

static int cmp_grower(const void *a, const void *b)
{
	const struct uw_grower *x = a, *y = b;

	return x->tgid < y->tgid ? -1 : x->tgid > y->tgid;
}

static void uw_growers(struct tracer *t, const struct raw_sample *raw)
{
	struct uw_grower top[UW_GROWERS_PER_READ];
	struct uw_grower *now = NULL;
	size_t nnow = 0;
	int ntop = 0;
	uint64_t t0;

	if (!t->uw || !t->opts.growth || t->opts.npids)
		return;
	now = malloc((raw->nprocs + 1) * sizeof(*now));
	if (!now)
		return;
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < raw->nprocs; i++) {
		const struct raw_proc *p = &raw->procs[i];
		struct uw_grower key = {.tgid = p->tgid}, *was;
		bool failed = false;
		uint64_t rate;
		int k;

		if (p->touched_bytes < UW_GROWER_BYTES ||
		    (pid_t)p->tgid == getpid() ||
		    unwinder_has(t->uw, (pid_t)p->tgid))
			continue;
		for (int f = 0; f < UW_FAILED; f++)
			failed |= t->uw_failed[f] == p->tgid;
		if (failed)
			continue;
		now[nnow].tgid = p->tgid;
		now[nnow++].touched = p->touched_bytes;
		was = t->uw_prev ? bsearch(&key, t->uw_prev, t->uw_nprev,
					   sizeof(key), cmp_grower)
				 : NULL;
		if (!was || p->touched_bytes <= was->touched)
			continue;
		rate = p->touched_bytes - was->touched;
		if (ntop == UW_GROWERS_PER_READ &&
		    top[ntop - 1].touched >= rate)
			continue;
		if (ntop < UW_GROWERS_PER_READ)
			ntop++;
		for (k = ntop - 1; k > 0 && top[k - 1].touched < rate; k--)
			top[k] = top[k - 1];
		top[k].tgid = p->tgid;
		top[k].touched = rate;
	}
	/* One that exited (the sample keeps the dead) is not tried again. */
	t0 = mono_ns();
	for (int k = 0; k < ntop && mono_ns() - t0 < UW_SYNC_BUDGET_NS; k++)
		if (discover_unwind(t, (pid_t)top[k].tgid))
			t->uw_failed[t->uw_nfailed++ % UW_FAILED] = top[k].tgid;
	pthread_mutex_unlock(&t->lock);
	qsort(now, nnow, sizeof(*now), cmp_grower);
	free(t->uw_prev);
	t->uw_prev = now;
	t->uw_nprev = nnow;
}

void tracer_unwind_stats(struct tracer *t, struct tracer_unwind_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!t->uw)
		return;
	out->enabled = true;
	pthread_mutex_lock(&t->lock);
	unwinder_stats(t->uw, &out->tables);
	pthread_mutex_unlock(&t->lock);
	for (__u32 k = 0; k < UW_ENDS; k++) {
		if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.unwind_ends),
					&k, t->percpu))
			continue;
		for (int c = 0; c < t->ncpus; c++)
			out->ends[k] += t->percpu[c];
	}
}

/*
 * Each process's peaks (struct mt_peak). An interval without a change of
 * its own held one level throughout: the level the next change started
 * from, or the level now.
 */
static void read_peaks(struct tracer *t, struct raw_sample *raw, uint64_t epoch)
{
	int fd = bpf_map__fd(t->skel->maps.peaks);
	unsigned s = epoch & 1, n = (epoch + 1) & 1;
	struct mt_peak pk;

	for (size_t i = 0; i < raw->nprocs; i++) {
		struct raw_proc *p = &raw->procs[i];

		if (bpf_map_lookup_elem(fd, &p->tgid, &pk))
			continue;
		p->has_peak = true;
		p->peak_bytes = pk.peak;
		p->peak_ns = pk.peak_ns;
		if (pk.ival_epoch[s] == epoch)
			p->interval_peak_bytes = pk.ival_peak[s];
		else if (pk.ival_epoch[n] == epoch + 1)
			p->interval_peak_bytes = pk.ival_start[n];
		else
			p->interval_peak_bytes = pk.cur;
	}
}

static void read_anon(struct tracer *t, struct raw_sample *raw)
{
	struct bpfmap_walk w = bpfmap_walk(
		bpf_map__fd(t->skel->maps.anon_procs), sizeof(__u32));
	struct mt_anon a;
	__u32 key;

	while (bpfmap_next(&w, &key, &a)) {
		struct raw_proc *p = sample_find_proc(raw, key);

		if (!p && !t->global)
			p = sample_add_proc(raw, key);
		if (p)
			p->anon_bytes = a.bytes;
	}
}

/* The cyclic collector's frees per site: only Python sites have them. */
static void read_gc(struct tracer *t, struct raw_sample *raw)
{
	struct bpfmap_walk w = bpfmap_walk(bpf_map__fd(t->skel->maps.gc_sites),
					   sizeof(struct mt_site_key));
	struct raw_gc g;

	while (bpfmap_next(&w, &g.key, &g.gc))
		if (sample_add_gc(raw, &g))
			break;
}

int tracer_read(struct tracer *t, struct raw_sample *raw)
{
	struct bpf_program *prog;
	uint64_t epoch;
	int err, fd;

	raw->mono_ns = mono_ns();
	clock_gettime(CLOCK_REALTIME, &raw->wall);
	pyprobes_follow(t);
	uw_refresh(t, raw->mono_ns);
	/* The interval that ends now: BPF keeps the next one's peaks apart. */
	epoch = __sync_fetch_and_add(&t->skel->bss->peak_epoch, 1);
	/* Exec'd processes' blocks drop from their sites before the read. */
	forget_sweep(t, true);
	/* Blocks still waiting in the per-CPU pending slots are charged to
	 * their sites first (bpf/pending.bpf.h: flush_pending). */
	{
		LIBBPF_OPTS(bpf_test_run_opts, ro);

		if (bpf_prog_test_run_opts(
			    bpf_program__fd(t->skel->progs.flush_pending),
			    &ro) &&
		    !t->flush_warned) {
			t->flush_warned = true;
			fprintf(stderr,
				"memtop: cannot flush the pending blocks (%s): "
				"the newest block of each CPU may show one "
				"refresh late\n",
				strerror(errno));
		}
	}
	err = read_sites_iter(t, raw);
	if (err == 1)
		err = bpfmap_read_all(&t->batch,
				      bpf_map__fd(t->skel->maps.sites),
				      sizeof(struct mt_site_key),
				      sizeof(struct mt_stats), emit_site, raw);
	if (!err)
		err = sum_procs(raw);
	if (err) {
		fprintf(stderr, "memtop: cannot read the BPF maps: %s\n",
			strerror(-err));
		return err;
	}
	uw_growers(t, raw);
	/* Retired before this read first: a site retired now is still among
	 * the sites read, and only from the next read on among the retired. */
	forget_add_retired(t, raw);
	forget_idle(t, raw);
	read_anon(t, raw);
	read_gc(t, raw);
	read_peaks(t, raw, epoch);
	if (t->opts.growth) {
		growth_read(t->skel, raw, !t->global);
		for (size_t i = 0; i < raw->nprocs; i++)
			raw->procs[i].exact =
				discover_has_set(t, (pid_t)raw->procs[i].tgid);
	}
	pyprobes_note(t, raw);
	pthread_mutex_lock(&t->lock);
	discover_note_go(t, raw);
	pthread_mutex_unlock(&t->lock);
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
	{
		uint64_t full = raw->counters[MT_CNT_STACK_FULL] +
				raw->counters[MT_CNT_SITE_FULL];

		t->full_pressure = full != t->full_seen;
		t->full_seen = full;
	}
	bpf_object__for_each_program(prog, t->skel->obj)
	{
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);

		/* The page-allocation program skips pages allocated inside
		 * other BPF programs (their map elements): no fault's huge
		 * page, nothing lost. */
		if (prog == t->skel->progs.growth_thp)
			continue;
		if (!bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len))
			raw->recursion_misses += info.recursion_misses;
	}
	return 0;
}

struct live_cb {
	void (*fn)(void *ctx, uint32_t tgid, uint64_t addr, uint64_t size,
		   uint64_t stack_id);
	void *ctx;
};

static int emit_live(void *ctx, const void *k, const void *v)
{
	const struct mt_live_key *lk = k;
	const struct mt_live *lv = v;
	struct live_cb *cb = ctx;

	cb->fn(cb->ctx, lk->tgid, lk->addr, lv->size, lv->stack_id);
	return 0;
}

int tracer_read_live(struct tracer *t,
		     void (*fn)(void *ctx, uint32_t tgid, uint64_t addr,
				uint64_t size, uint64_t stack_id),
		     void *ctx)
{
	struct live_cb cb = {fn, ctx};

	return bpfmap_read_all(&t->batch, bpf_map__fd(t->skel->maps.live),
			       sizeof(struct mt_live_key),
			       sizeof(struct mt_live), emit_live, &cb);
}

int tracer_pystack(struct tracer *t, const struct mt_site_key *site,
		   struct mt_py_stack *out)
{
	struct mt_site_key key = *site;
	bool python;

	/* Only a CPython process found (pyprobes_check) has Python stacks: the
	 * others' sites cost no lookup, many of them system-wide. */
	pthread_mutex_lock(&t->lock);
	python = pyprobes_has(t, site->tgid);
	pthread_mutex_unlock(&t->lock);
	if (!python)
		return -ENOENT;
	key.kind = MT_SITE_ALLOC; /* stacks are stored under kind 0 */
	if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.py_stacks), &key,
				out))
		return -errno;
	return 0;
}

int tracer_stack(struct tracer *t, const struct mt_site_key *site,
		 struct mt_stack *out)
{
	struct mt_site_key k = *site, *key = &k;
	struct mt_stack_short s;

	k.kind = MT_SITE_ALLOC; /* stacks are stored under kind 0 */
	if (!bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.stacks_short), key,
				 &s)) {
		out->nr =
			s.nr > MEMTOP_SHORT_FRAMES ? MEMTOP_SHORT_FRAMES : s.nr;
		out->pad = 0;
		memcpy(out->ips, s.ips, sizeof(s.ips));
		return 0;
	}
	if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.stacks), key, out))
		return -errno;
	return 0;
}
