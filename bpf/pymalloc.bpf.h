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
 * What pymalloc will return for an n-byte request of tgid's current thread:
 * 0 when that cannot be told; the address with bit 0 set when the
 * prediction is trusted (record it, skip the return), without it when it
 * is to be checked at the return. A global function: verified once.
 */
__noinline __u64 pm_predict(__u32 tgid, __u64 n, __u32 gil)
{
	struct mt_pymalloc *pm;
	struct mt_py_proc *pp;
	__u64 pool, bp, k;

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
	if (pm->checked < MT_PM_TRUST)
		return bp;
	k = __sync_fetch_and_add(&pm->skipped, 1);
	return k % MT_PM_RECHECK ? bp | 1 : bp;
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

	if (st && st->depth == 1 && st->arg1 &&
	    (st->kind == MT_K_MALLOC || st->kind == MT_K_CALLOC)) {
		pm_check(tgid, st->arg1, ret);
		st->arg1 = 0;
	}
	return exit_common(ret);
}

/*
 * The session's entry: what alloc_enter does, then the prediction. 1: the
 * block is recorded, skip the return. A global function taking the
 * context: the program around it keeps a small frame.
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
		return 0;
	enter(ctx, (__u32)kind, a0, 0);
	if (!traced(tgid))
		return 0;
	st = thread_get(false);
	if (!st || st->depth != 1)
		return 0; /* nested: the return keeps the depth */
	p = pm_predict(tgid, a0, st->py_gil);
	if (!p)
		return 0;
	if (p & 1) {
		if (st->kind)
			record_pending(tgid, p & ~1ull, st->arg0, st->stack_id);
		st->depth = 0;
		return 1;
	}
	if (st->kind)
		st->arg1 = p;
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
	NO_PRIVATE_STACK(ctx, nps_py_session);
	if (empty_programs)
		return 0;
	if (PT_REGS_IP(ctx) != bpf_get_func_ip(ctx)) {
		pm_exit(PT_REGS_RC(ctx));
		return 0;
	}
	return pm_enter(ctx) ? 1 : 0;
}

#endif /* MEMTOP_PYMALLOC_BPF_H */
