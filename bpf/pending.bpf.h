/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The per-CPU pending slots. Included by memtop.bpf.c after live_enter()
 * and release(), before the allocator programs.
 *
 * Most blocks die young: the benchmark frees 90% right after malloc returns.
 * The newest block of each CPU waits in a per-CPU "pending" slot instead of
 * the live map (an insert, a lookup and a delete: ~450 ns a pair here); it
 * goes into the live map only when the CPU's next allocation needs the slot,
 * or when memtop is about to read the sites (flush_pending). Its site is
 * charged then, or, when it is freed first, with the allocation and the
 * free at once: one site lookup for the pair instead of two.
 *
 * A slot is shared by whatever runs on the CPU, a block may be freed on
 * another CPU, and a program may be interrupted (or, on preemptible
 * kernels, preempted) anywhere, so the slot's key changes by atomic
 * operations only:
 *   key = address << 15 | generation (15 bits), 0 when empty;
 *   PEND_LOCK: whoever set it owns the slot (reads its fields, then empties
 *   it): the free that takes the block, a flush, a purge. A block being
 *   written in is PEND_LOCK with no address;
 *   PEND_FREED: a free found the block locked by a flush and left the free
 *   to it; the flush then releases the block from the live map itself.
 * The generation tells a refilled slot from the block a free looked at.
 * Addresses from 2^47 up (5-level paging) bypass the slots.
 *
 * The ways in: record_pending() (an allocation returned; the slot's old
 * block is flushed first), release_any() (a free: this CPU's slot, the live
 * map, the hinted slot, every slot, the live map again after a concurrent
 * flush), unpend() (a realloc in place needs the block in the live map),
 * pend_purge_cpu() (purge() of an exited or exec'd process) and the
 * flush_pending program (memtop, before it reads the sites).
 */
#ifndef MEMTOP_PENDING_BPF_H
#define MEMTOP_PENDING_BPF_H

#define PEND_LOCK     (1ULL << 63)
#define PEND_FREED    (1ULL << 62)
#define PEND_FLAGS    (PEND_LOCK | PEND_FREED)
#define PEND_ADDR(k)  (((k) & ~PEND_FLAGS) >> 15)
#define PEND_MAX_ADDR (1ULL << 47)

struct pend {
	__u64 key;
	__u32 tgid;
	__u32 gen;
	__u64 size;
	__u64 stack_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pend);
} pending SEC(".maps");

/*
 * Where pending blocks are, so that a free that misses its own CPU's slot
 * and the live map need not look at every CPU's slot (192 of them on big
 * machines, each a cache line another CPU writes): n counts the blocks in
 * slots whose {tgid, address} hash to the bucket, cpu is the slot the
 * latest of them went into. n goes up before a block's key is in its slot
 * and down after the slot let go of it, so it never reads 0 while the
 * block is pending. A free finds n at 0 (the block is in no slot: most
 * frees of blocks memtop never saw), or the block in the hinted slot, and
 * looks at every slot only when another block of the bucket moved the
 * hint: userspace sizes the buckets at 1024 a CPU (pend_hint_mask).
 */
struct pend_hint {
	__u32 n;
	__u32 cpu;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct pend_hint);
} pend_hints SEC(".maps");

const volatile __u32 pend_hint_mask = 4095;

static __always_inline struct pend_hint *pend_hint(__u32 tgid, __u64 addr)
{
	__u32 i = (__u32)(mix64(addr ^ ((__u64)tgid << 47)) >> 32) &
		  pend_hint_mask;

	return bpf_map_lookup_elem(&pend_hints, &i);
}

/* A block left its slot (emptied after it, never before). */
static __always_inline void pend_hint_drop(__u32 tgid, __u64 addr)
{
	struct pend_hint *h = pend_hint(tgid, addr);

	if (h)
		__sync_fetch_and_add(&h->n, -1);
}

/* Charge a block's allocation to its site (and, freed, its free too). */
static __always_inline void account_pend(__u32 tgid, __u64 stack_id, __u64 size,
					 bool freed)
{
	struct mt_site_key sk = {.tgid = tgid, .stack_id = stack_id};
	struct mt_stats *ss;

	ss = stats_get(&sites, &sk, MT_CNT_SITE_FULL, clock_ns);
	if (!ss)
		return;
	stats_add(ss, size, 1);
	ss->last_ns = clock_ns;
	if (freed)
		stats_add(ss, -(__s64)size, -1);
	else
		proc_live_add(tgid, 1);
}

/*
 * Lock slot p, which held key k (no flags), and take its block if it is
 * tgid's: 1 with its size and site in *b and the slot empty; 0 when the
 * key moved on; -1 when the block is another process's (the slot is left
 * as it was).
 */
static __always_inline int pend_take(struct pend *p, __u64 k, __u32 tgid,
				     struct mt_live *b)
{
	if (__sync_val_compare_and_swap(&p->key, k, k | PEND_LOCK) != k)
		return 0;
	/* Ours: the fields are the block's. */
	if (p->tgid != tgid) {
		__sync_lock_test_and_set(&p->key, k);
		return -1;
	}
	b->size = p->size;
	b->stack_id = p->stack_id;
	__sync_lock_test_and_set(&p->key, 0);
	pend_hint_drop(tgid, PEND_ADDR(k));
	return 1;
}

/*
 * Free tgid's block at addr if slot p holds it: 1 when done (taken and
 * charged, or left to the flush that holds it), 0 when p does not hold it.
 * A few tries: each failed compare-and-swap means the slot moved on.
 */
static __always_inline int pend_free(struct pend *p, __u32 tgid, __u64 addr,
				     bool by_free)
{
	struct mt_live b;
	__u64 k;
	int i;

	for (i = 0; i < 4; i++) {
		k = p->key;
		if (!k || PEND_ADDR(k) != addr)
			return 0;
		if (k & PEND_LOCK) {
			/* Freed twice, or locked by someone else's purge or a
			 * free of another process's block: not ours to free. */
			if ((k & PEND_FREED) || p->tgid != tgid)
				return 0;
			if (__sync_val_compare_and_swap(&p->key, k,
							k | PEND_FREED) == k)
				return 1;
			continue;
		}
		switch (pend_take(p, k, tgid, &b)) {
		case 1:
			account_pend(tgid, b.stack_id, b.size, true);
			peak_add(tgid, -(__s64)b.size);
			if (by_free)
				py_gc_free(tgid, b.stack_id, b.size);
			return 1;
		case -1:
			return 0;
		}
	}
	return 0;
}

/* Move a pending block, if any, into the live map. */
static __always_inline void pend_flush(struct pend *p)
{
	__u64 k = p->key, size, sid, addr;
	__u32 tgid;

	if (!k || (k & PEND_LOCK))
		return;
	if (__sync_val_compare_and_swap(&p->key, k, k | PEND_LOCK) != k)
		return; /* taken meanwhile */
	tgid = p->tgid;
	size = p->size;
	sid = p->stack_id;
	addr = PEND_ADDR(k);
	live_enter(tgid, addr, size, sid, false);
	__sync_fetch_and_add(&flush_seq.n,
			     1); /* after the insert, before the slot empties */
	/* A free that came meanwhile left itself to us. */
	if (__sync_val_compare_and_swap(&p->key, k | PEND_LOCK, 0) !=
	    (k | PEND_LOCK)) {
		release(tgid, addr, false);
		__sync_lock_test_and_set(&p->key, 0);
	}
	pend_hint_drop(tgid, addr);
}

static __always_inline void record_pending(__u32 tgid, __u64 addr, __u64 size,
					   __u64 stack_id)
{
	struct pend_hint *h;
	struct pend *p;
	__u32 zero = 0;

	p = bpf_map_lookup_elem(&pending, &zero);
	if (!p || size < min_size || addr >= PEND_MAX_ADDR) {
		record(tgid, addr, size, stack_id);
		return;
	}
	pend_flush(p);
	/* Another program on this CPU may hold the slot: the live map then. */
	if (__sync_val_compare_and_swap(&p->key, 0, PEND_LOCK) != 0) {
		record(tgid, addr, size, stack_id);
		return;
	}
	p->tgid = tgid;
	p->size = size;
	p->stack_id = stack_id;
	p->gen++;
	peak_add(tgid, size);
	h = pend_hint(tgid, addr);
	if (h) {
		__sync_fetch_and_add(&h->n, 1);
		h->cpu = bpf_get_smp_processor_id();
	}
	__sync_lock_test_and_set(&p->key, addr << 15 | (p->gen & 0x7fff));
}

struct pend_scan {
	__u32 tgid;
	bool found, account, by_free;
	__u32 first; /* pend_scan_cpu: the first CPU looked at */
	__u64 addr;
};

/* A free's look at CPU first + i's slot. */
static long pend_scan_cpu(__u32 i, struct pend_scan *c)
{
	__u32 zero = 0;
	struct pend *p =
		bpf_map_lookup_percpu_elem(&pending, &zero, c->first + i);

	if (!p)
		return 1;
	if (pend_free(p, c->tgid, c->addr, c->by_free)) {
		c->found = true;
		return 1;
	}
	return 0;
}

/*
 * A process gone: its blocks leave the slots, charged as held when it died
 * (exit) or freed with its heap (exec). One locked by a flush is left freed
 * to the flush, which then takes it out of the live map again.
 */
static long pend_purge_cpu(__u32 cpu, struct pend_scan *c)
{
	__u32 zero = 0;
	struct pend *p = bpf_map_lookup_percpu_elem(&pending, &zero, cpu);
	struct mt_live b;
	__u64 k;

	if (!p)
		return 1;
	k = p->key;
	if (!k || !PEND_ADDR(k) || p->tgid != c->tgid)
		return 0;
	if (k & PEND_LOCK) {
		if (!(k & PEND_FREED))
			__sync_val_compare_and_swap(&p->key, k, k | PEND_FREED);
		return 0;
	}
	if (pend_take(p, k, c->tgid, &b) > 0)
		account_pend(c->tgid, b.stack_id, b.size, c->account);
	return 0;
}

/*
 * Free tgid's block at addr wherever it is: this CPU's slot, the live map,
 * another CPU's slot, or the live map again (a flush that ended while we
 * looked has put it there: a flush inserts before it empties the slot).
 */
static __always_inline bool release_any(__u32 tgid, __u64 addr, bool by_free)
{
	struct pend_scan c = {.tgid = tgid, .addr = addr, .by_free = by_free};
	struct pend_hint *h;
	struct pend *p;
	__u32 zero = 0;
	__u64 seq;

	p = bpf_map_lookup_elem(&pending, &zero);
	if (p && pend_free(p, tgid, addr, by_free))
		return true;
	seq = flush_seq.n;
	if (release(tgid, addr, by_free))
		return true;
	h = pend_hint(tgid, addr);
	if (h && !h->n)
		goto again; /* in no slot */
	if (h) {
		c.first = h->cpu;
		bpf_loop(1, pend_scan_cpu, &c, 0);
		if (c.found)
			return true;
		c.first = 0;
	}
	bpf_loop(nr_cpus, pend_scan_cpu, &c, 0);
	if (c.found)
		return true;
again:
	/* A second look only when a flush ended meanwhile: a free of a block
	 * memtop never saw (sampled out, too small, from before) is common
	 * in the cheaper modes, and each look is a cache miss in a big map. */
	return flush_seq.n != seq && release(tgid, addr, by_free);
}

/* Wait (bounded) while a flush holds the block; it ends in the live map. */
static long pend_wait_present(__u32 i, struct pend_scan *c)
{
	struct mt_live_key lk = {.tgid = c->tgid, .addr = c->addr};

	return bpf_map_lookup_elem(&live, &lk) ? 1 : 0;
}

/* A pending block of tgid at addr, if any, into the live map: for realloc. */
static long pend_unpend_cpu(__u32 cpu, struct pend_scan *c)
{
	__u32 zero = 0;
	struct pend *p = bpf_map_lookup_percpu_elem(&pending, &zero, cpu);
	__u64 k;

	if (!p)
		return 1;
	k = p->key;
	if (!k || PEND_ADDR(k) != c->addr || p->tgid != c->tgid)
		return 0;
	if (k & PEND_LOCK) {
		c->found = true; /* a flush has it: wait for the live entry */
		return 1;
	}
	pend_flush(p);
	return 1;
}

/* realloc in place looks the block up in the live map: put it there first. */
static __always_inline void unpend(__u32 tgid, __u64 addr)
{
	struct mt_live_key lk = {.tgid = tgid, .addr = addr};
	struct pend_scan c = {.tgid = tgid, .addr = addr};
	struct pend_hint *h = pend_hint(tgid, addr);

	if (bpf_map_lookup_elem(&live, &lk) || (h && !h->n))
		return;
	bpf_loop(nr_cpus, pend_unpend_cpu, &c, 0);
	if (c.found)
		bpf_loop(8192, pend_wait_present, &c, 0);
}

static long flush_cpu(__u32 cpu, void *unused)
{
	__u32 zero = 0;
	struct pend *p = bpf_map_lookup_percpu_elem(&pending, &zero, cpu);

	if (!p)
		return 1;
	pend_flush(p);
	return 0;
}

/*
 * Run by memtop (BPF_PROG_TEST_RUN) before it reads the sites: every pending
 * block is charged to its site, so a read misses none of them.
 */
SEC("raw_tp")
int flush_pending(void *ctx)
{
	bpf_loop(nr_cpus, flush_cpu, NULL, 0);
	return 0;
}

#endif /* MEMTOP_PENDING_BPF_H */
