/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * pymalloc's small allocations with one trap instead of two. Included by
 * memtop.bpf.c after the allocator entry and return programs.
 *
 * CPython's _PyObject_Malloc(ctx, n) (and _PyObject_Calloc) hand out, for
 * 1 <= n <= 512, the head of the free list of the first pool of size class
 * (n - 1) >> 4: pool = usedpools[2 * class]; if pool->nextpool != pool, the
 * result is pool->freeblock. Under the GIL nothing else allocates between
 * the entry and that load, so the entry can record the block, and a uprobe
 * session (Linux 6.13+) lets that entry skip the call's return probe. Where
 * the prediction cannot be made (another size, no pool, a thread without the
 * GIL, a nested call) the return probe runs as for every other allocator.
 * A prediction is trusted only after MT_PM_TRUST of them were checked
 * against the real result, and one in MT_PM_RECHECK is checked again.
 *
 * _PyObject_Realloc(ctx, p, n) is a session too. realloc(NULL, n) jumps to
 * _PyObject_Malloc, whose probe sees the call as made from realloc's
 * caller: the entry lets it. For a block memtop holds, the pool header at
 * the start of p's 16 KiB pool gives its size class S (szidx): p stays where
 * it is when 3S/4 < n <= S (the size is updated at the entry, no return),
 * and otherwise, for n <= 512, moves to the head of n's class as a malloc
 * would (the block is recorded and the old one freed at the entry; the
 * call's own _PyObject_Free of p is then passed over).
 */
#ifndef MEMTOP_PYMALLOC_BPF_H
#define MEMTOP_PYMALLOC_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u32);
	__type(value, struct mt_pymalloc);
} py_pymalloc SEC(".maps");

/*
 * May a prediction be acted on without its return? Only after MT_PM_TRUST
 * were checked right, and never for one in MT_PM_RECHECK.
 */
static __always_inline bool pm_trusted(struct mt_pymalloc *pm)
{
	if (pm->checked < MT_PM_TRUST)
		return false;
	return __sync_fetch_and_add(&pm->skipped, 1) % MT_PM_RECHECK != 0;
}

/*
 * What pymalloc will return for an n-byte request of tgid's current thread:
 * 0 when that cannot be told; the address with bit 0 set when the
 * prediction is trusted (record it, skip the return), without it when it
 * is to be checked at the return. A global function: verified once.
 */
__noinline __u64 pm_predict(__u32 tgid, __u64 n, __u32 gil)
{
	struct mt_pymalloc *pm;
	struct mt_py_proc *pp;
	__u64 pool, bp;

	if (n - 1 >= 512)
		return 0;
	pm = bpf_map_lookup_elem(&py_pymalloc, &tgid);
	if (!pm || !pm->usedpools || pm->wrong)
		return 0;
	/* Only the main interpreter's GIL holder allocates from this state.
	 * gil: the entry's frame walk found this thread holding it. */
	if (!gil) {
		pp = bpf_map_lookup_elem(&py_procs, &tgid);
		if (!pp || !py_gil_tstate(pp))
			return 0;
	}
	pool = py_read(pm->usedpools + ((n - 1) >> 4) * 16);
	if (!pool || py_read(pool + 16) == pool)
		return 0; /* no pool in use: a new pool is taken */
	bp = py_read(pool + 8);
	if (!bp || (bp & 15))
		return 0;
	return pm_trusted(pm) ? bp | 1 : bp;
}

/* The return of a call whose result was predicted: right or wrong? */
static __always_inline void pm_check(__u32 tgid, __u64 predicted, __u64 ret)
{
	struct mt_pymalloc *pm = bpf_map_lookup_elem(&py_pymalloc, &tgid);

	if (!pm)
		return;
	if (predicted == ret)
		__sync_fetch_and_add(&pm->checked, 1);
	else
		__sync_fetch_and_add(&pm->wrong, 1);
}

/*
 * The session's return: check a prediction left by the entry, then what
 * alloc_exit does. A global function, so its frame is not added to the
 * entry path's (the verifier's 512-byte stack bound).
 */
__noinline int pm_exit(__u64 ret)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct mt_inflight *st = thread_get(false);

	if (st && st->depth == 1 && st->pred) {
		pm_check(tgid, st->pred, ret);
		st->pred = 0;
	}
	return exit_common(ret);
}

/* pymalloc's pools (64-bit builds with the radix tree, 3.10+: 16 KiB) and
 * where a pool header keeps its size class. */
#define PM_POOL_SIZE  (1ull << 14)
#define PM_POOL_SZIDX 36

/* pr_predict(): what _PyObject_Realloc will do. */
#define PR_NONE	   0 /* cannot tell: the return probe runs */
#define PR_DONE	   1 /* resized in place here: skip the return */
#define PR_INPLACE 2 /* stays in place: check that at the return */
#define PR_MOVES   3 /* moves within pymalloc: predict as a malloc */

/*
 * A realloc of tgid's block old to n bytes, for an outermost call: where
 * will the block be? A block memtop holds (this CPU's pending slot, or the
 * live map) of 1..512 bytes whose size fits the size class in its pool's
 * header is pymalloc's. A global function: verified once.
 */
__noinline __u64 pr_predict(__u32 tgid, __u64 old, __u64 n)
{
	struct mt_live_key lk = {.tgid = tgid, .addr = old};
	struct mt_inflight *st = thread_get(false);
	struct mt_pymalloc *pm;
	struct mt_live *lv = NULL;
	struct pend *p;
	__u64 k = 0, size = 0, cls;
	__u32 zero = 0, idx = 0;
	__s64 delta;

	if (sample_every > 1 || min_size || n - 1 >= 512 || !traced(tgid))
		return PR_NONE;
	if (st && st->depth > 0)
		return PR_NONE;
	pm = bpf_map_lookup_elem(&py_pymalloc, &tgid);
	if (!pm || !pm->usedpools || pm->wrong)
		return PR_NONE;
	p = bpf_map_lookup_elem(&pending, &zero);
	if (p) {
		k = p->key;
		if (k && !(k & PEND_FLAGS) && PEND_ADDR(k) == old &&
		    p->tgid == tgid) {
			size = p->size;
			if (p->key != k)
				size = 0; /* the slot moved on meanwhile */
		} else {
			k = 0;
		}
	}
	if (!k) {
		lv = bpf_map_lookup_elem(&live, &lk);
		if (lv)
			size = lv->size;
	}
	if (size - 1 >= 512 ||
	    bpf_probe_read_user(
		    &idx, sizeof(idx),
		    (void *)((old & ~(PM_POOL_SIZE - 1)) + PM_POOL_SZIDX)) ||
	    idx >= 32)
		return PR_NONE;
	cls = (idx + 1) * 16;
	/* A block of that class: its request, or an in-place resize. */
	if (size > cls || (size + 16 <= cls && 4 * size <= 3 * cls))
		return PR_NONE;
	if (n > cls || 4 * n <= 3 * cls)
		return PR_MOVES;
	if (!pm_trusted(pm))
		return PR_INPLACE;
	if (lv) {
		live_resize(tgid, lv, n);
		return PR_DONE;
	}
	delta = (__s64)n - (__s64)size;
	if (!p || __sync_val_compare_and_swap(&p->key, k, k | PEND_LOCK) != k)
		return PR_INPLACE; /* taken meanwhile: the return tells */
	/* Pending: the new size is charged when the block leaves the slot. */
	p->size = n;
	peak_add(tgid, delta);
	if (__sync_val_compare_and_swap(&p->key, k | PEND_LOCK, k) !=
	    (k | PEND_LOCK)) {
		/* A free found it locked and left itself to us. */
		account_pend(tgid, p->stack_id, n, true);
		peak_add(tgid, -(__s64)n);
		__sync_lock_test_and_set(&p->key, 0);
		pend_hint_drop(tgid, old);
	}
	return PR_DONE;
}

/* pm_enter()'s and pr_enter()'s answers. */
#define PM_RETURN 0 /* the return probe runs */
#define PM_SKIP	  1 /* done: skip the return */
#define PM_MOVE	  2 /* skip the return once pm_move() has run */

/*
 * The session's entry: what alloc_enter does, then the prediction. A global
 * function taking the context: the program around it keeps a small frame.
 */
__noinline int pm_enter(struct pt_regs *ctx)
{
	__u64 kind = bpf_get_attach_cookie(ctx) & ~(__u64)MT_K_CTX_ARG;
	__u64 a0 = PT_REGS_PARM2(ctx), p;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct mt_inflight *st;

	if (kind == MT_K_CALLOC)
		a0 *= PT_REGS_PARM3(ctx);
	else if (kind != MT_K_MALLOC)
		return PM_RETURN;
	enter(ctx, (__u32)kind, a0, 0);
	if (!traced(tgid))
		return PM_RETURN;
	st = thread_get(false);
	if (!st || st->depth != 1)
		return PM_RETURN; /* nested: the return keeps the depth */
	p = pm_predict(tgid, a0, st->py_gil);
	if (!p)
		return PM_RETURN;
	if (p & 1) {
		if (st->kind)
			record_pending(tgid, p & ~1ull, st->arg0, st->stack_id);
		st->depth = 0;
		return PM_SKIP;
	}
	if (st->kind)
		st->pred = p;
	return PM_RETURN;
}

/*
 * The same for _PyObject_Realloc(ctx, old, n), in its own program
 * (py_realloc_session): with pm_enter's, the verifier walked the stack
 * capture once per kind, past its 1M instructions.
 */
__noinline int pr_enter(struct pt_regs *ctx)
{
	__u64 old = PT_REGS_PARM2(ctx), n = PT_REGS_PARM3(ctx), r, p;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct mt_inflight *st;

	if (!old)
		return PM_SKIP; /* _PyObject_Malloc's probe sees it */
	r = pr_predict(tgid, old, n);
	if (r == PR_DONE)
		return PM_SKIP;
	enter(ctx, MT_K_REALLOC, old, n);
	if (r == PR_NONE || !traced(tgid))
		return PM_RETURN;
	st = thread_get(false);
	if (!st || st->depth != 1)
		return PM_RETURN;
	if (r == PR_INPLACE) {
		st->pred = old;
		return PM_RETURN;
	}
	p = pm_predict(tgid, n, st->py_gil);
	if (!p)
		return PM_RETURN;
	if (p & 1) {
		st->pred = p & ~1ull;
		st->depth = 0;
		return PM_MOVE;
	}
	st->pred = p;
	return PM_RETURN;
}

/*
 * A trusted move of a realloc: the old block (arg0) freed, the new one
 * (pred) recorded, and the call's own _PyObject_Free of the old block
 * passed over (last_freed). Called by the program, not by pm_enter(): the
 * verifier bounds the stack of a chain of calls.
 */
__noinline int pm_move(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct mt_inflight *st = thread_get(false);

	if (!st || !st->pred)
		return 0;
	if (!release_any(tgid, st->arg0, false))
		count(MT_CNT_UNKNOWN_FREE);
	/* Straight into the live map, as the return did: a grown block
	 * tends to live on, and the CPU's pending slot is for the young. */
	record(tgid, st->pred, st->arg1, st->stack_id);
	st->last_freed = st->arg0;
	st->pred = 0;
	return 0;
}

NO_PRIVATE_STACK_MAP(nps_py_session);

/*
 * Entry and return of _PyObject_Malloc / _PyObject_Calloc, attached as a
 * uprobe session: returning 1 from the entry skips this call's return. At
 * the return the kernel has set the ip back to the caller's return address,
 * at the entry it is the probed address.
 */
SEC("uprobe")
int BPF_KPROBE(py_alloc_session)
{
	int r;

	NO_PRIVATE_STACK(ctx, nps_py_session);
	if (empty_programs)
		return 0;
	if (PT_REGS_IP(ctx) != bpf_get_func_ip(ctx)) {
		pm_exit(PT_REGS_RC(ctx));
		return 0;
	}
	r = pm_enter(ctx);
	return r != PM_RETURN ? 1 : 0;
}

NO_PRIVATE_STACK_MAP(nps_py_rsession);

/* Entry and return of _PyObject_Realloc, a uprobe session as above. */
SEC("uprobe")
int BPF_KPROBE(py_realloc_session)
{
	int r;

	NO_PRIVATE_STACK(ctx, nps_py_rsession);
	if (empty_programs)
		return 0;
	if (PT_REGS_IP(ctx) != bpf_get_func_ip(ctx)) {
		pm_exit(PT_REGS_RC(ctx));
		return 0;
	}
	r = pr_enter(ctx);
	if (r == PM_MOVE)
		pm_move();
	return r != PM_RETURN ? 1 : 0;
}

#endif /* MEMTOP_PYMALLOC_BPF_H */
