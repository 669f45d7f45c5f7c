/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Anonymous memory mapped outside the allocator, included by
 * memtop.bpf.c after the "inflight" map. mmap, munmap and mremap of
 * anonymous private mappings by traced threads that are not inside an
 * allocator call (the per-thread depth) are accounted per process in
 * "anon_procs": a category of its own, not call sites. The three syscalls'
 * own functions or tracepoints (ANON_PROGS). Regions are tracked by start
 * address; an munmap that does not start at a tracked region (the middle of
 * one, or a region mapped inside malloc) is ignored.
 */
#ifndef MEMTOP_MMAP_BPF_H
#define MEMTOP_MMAP_BPF_H

#define MT_NR_MMAP	 9
#define MT_NR_MUNMAP	 11
#define MT_NR_MREMAP	 25
#define MT_MAP_TYPE	 0x0f
#define MT_MAP_PRIVATE	 0x02
#define MT_MAP_ANONYMOUS 0x20
#define MT_PAGE_UP(x)	 (((x) + 4095) & ~4095ull)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u32);
	__type(value, struct mt_anon);
} anon_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 18);
	__type(key, struct mt_live_key);
	__type(value, struct mt_region);
} anon_regions SEC(".maps");

struct anon_call {
	__u64 a0, a1, a2;
	__u32 nr;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u32); /* thread id */
	__type(value, struct anon_call);
} anon_calls SEC(".maps");

static __always_inline void anon_add(__u32 tgid, __s64 bytes, __s64 regions)
{
	struct mt_anon *a, zero = {};

	a = map_get_or_init(&anon_procs, &tgid, &zero, MT_CNT_ANON_FULL);
	if (!a)
		return;
	__sync_fetch_and_add(&a->bytes, bytes);
	__sync_fetch_and_add(&a->regions, regions);
	if (bytes > 0)
		__sync_fetch_and_add(&a->mapped, bytes);
	else
		__sync_fetch_and_add(&a->unmapped, -bytes);
}

static __always_inline void anon_region(__u32 tgid, __u64 addr, __u64 len)
{
	struct mt_live_key k = {.tgid = tgid, .addr = addr};
	struct mt_region r = {.len = len, .epoch = live_epoch};

	if (bpf_map_update_elem(&anon_regions, &k, &r, BPF_ANY))
		count(MT_CNT_ANON_FULL);
	else
		anon_add(tgid, len, 1);
}

/*
 * The syscalls' own tracepoints' records (syscalls/sys_enter_mmap, ...),
 * not raw_syscalls': those run for every syscall on the machine, the
 * uretprobe's return trampoline (a syscall on x86 since 6.11) included,
 * which put two programs and two trace records on every traced malloc.
 */
struct tp_anon_enter {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__u64 args[6];
};

struct tp_anon_exit {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__s64 ret;
};

/* Syscall id (MT_NR_*) entered with args: is it a call to account at its
 * return? Then c holds what the return needs. */
static __always_inline bool anon_call_enter(long id, const __u64 *args,
					    struct anon_call *c)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct mt_inflight *st;

	if (!watched(
		    tgid)) /* -p targets or everything: not each uprobe's pid */
		return false;
	st = thread_get(false);
	if (st && st->depth > 0)
		return false; /* the allocator's own: counted as its blocks */
	c->nr = id;
	c->a0 = args[0];
	c->a1 = args[1];
	/* Only the arguments the syscall has: a program reading past its
	 * tracepoint's record is refused at attach. */
	c->a2 = id != MT_NR_MUNMAP ? args[2] : 0;
	if (id == MT_NR_MMAP) {
		__u64 flags = args[3];

		if (!(flags & MT_MAP_ANONYMOUS) ||
		    (flags & MT_MAP_TYPE) != MT_MAP_PRIVATE)
			return false;
	}
	return true;
}

/* Syscall nr returned ret: account the call c. */
static __always_inline void anon_call_exit(const struct anon_call *cp, long nr,
					   long ret)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct mt_live_key k = {.tgid = tgid};
	struct anon_call c = *cp;
	struct mt_region *rp;
	__u64 len, cut;

	if (c.nr != nr || (ret < 0 && ret > -4096))
		return;
	switch (c.nr) {
	case MT_NR_MMAP:
		anon_region(tgid, (__u64)ret, MT_PAGE_UP(c.a1));
		break;
	case MT_NR_MUNMAP:
		k.addr = c.a0;
		rp = bpf_map_lookup_elem(&anon_regions, &k);
		if (!rp)
			break;
		len = rp->len;
		if (bpf_map_delete_elem(&anon_regions, &k))
			break; /* another thread's munmap owns it */
		cut = MT_PAGE_UP(c.a1);
		if (cut >= len) {
			anon_add(tgid, -(__s64)len, -1);
		} else {
			/* The front went: the rest is a region of its own. */
			anon_add(tgid, -(__s64)len, -1);
			anon_region(tgid, c.a0 + cut, len - cut);
		}
		break;
	case MT_NR_MREMAP:
		k.addr = c.a0;
		rp = bpf_map_lookup_elem(&anon_regions, &k);
		if (!rp)
			break;
		len = rp->len;
		if (bpf_map_delete_elem(&anon_regions, &k))
			break;
		anon_add(tgid, -(__s64)len, -1);
		anon_region(tgid, (__u64)ret, MT_PAGE_UP(c.a2));
		break;
	}
}

/*
 * Two ways, memtop loads one (as for the process events, memtop.bpf.c).
 * Without the kernel's BTF, the syscalls' classic tracepoints, one program
 * per syscall and direction (each its own tail-call map, see
 * NO_PRIVATE_STACK), the call kept in anon_calls from one to the other.
 * With it, an fexit program on each syscall's function, which has the
 * arguments and the result at once: the kernel skips it only while that
 * very program runs on the CPU. Not the raw sys_enter/sys_exit
 * tracepoints: a program on those runs for every syscall on the machine.
 * The syscall number in orig_ax as the classic tracepoints take it (an x32
 * call, whose number has bit 30, reaches the same function).
 */
#define ANON_PROGS(sys, NR)                                                    \
	NO_PRIVATE_STACK_MAP(nps_anon_enter_##sys);                            \
	SEC("tracepoint/syscalls/sys_enter_" #sys)                             \
	int anon_enter_##sys(struct tp_anon_enter *ctx)                        \
	{                                                                      \
		__u32 tid = (__u32)bpf_get_current_pid_tgid();                 \
		struct anon_call c = {};                                       \
                                                                               \
		NO_PRIVATE_STACK(ctx, nps_anon_enter_##sys);                   \
		if (anon_call_enter(NR, ctx->args, &c))                        \
			bpf_map_update_elem(&anon_calls, &tid, &c, BPF_ANY);   \
		return 0;                                                      \
	}                                                                      \
	NO_PRIVATE_STACK_MAP(nps_anon_exit_##sys);                             \
	SEC("tracepoint/syscalls/sys_exit_" #sys)                              \
	int anon_exit_##sys(struct tp_anon_exit *ctx)                          \
	{                                                                      \
		__u32 tid = (__u32)bpf_get_current_pid_tgid();                 \
		struct anon_call *cp, c;                                       \
                                                                               \
		NO_PRIVATE_STACK(ctx, nps_anon_exit_##sys);                    \
		cp = bpf_map_lookup_elem(&anon_calls, &tid);                   \
		if (!cp)                                                       \
			return 0;                                              \
		c = *cp;                                                       \
		bpf_map_delete_elem(&anon_calls, &tid);                        \
		anon_call_exit(&c, NR, ctx->ret);                              \
		return 0;                                                      \
	}                                                                      \
	NO_PRIVATE_STACK_MAP(nps_anon_##sys);                                  \
	SEC("fexit/__x64_sys_" #sys)                                           \
	int BPF_PROG(anon_##sys, const struct pt_regs *regs, long ret)         \
	{                                                                      \
		__u64 args[4];                                                 \
		struct anon_call c = {};                                       \
                                                                               \
		NO_PRIVATE_STACK(ctx, nps_anon_##sys);                         \
		if (regs->orig_ax != NR)                                       \
			return 0;                                              \
		args[0] = regs->di;                                            \
		args[1] = regs->si;                                            \
		args[2] = regs->dx;                                            \
		args[3] = regs->r10;                                           \
		if (anon_call_enter(NR, args, &c))                             \
			anon_call_exit(&c, NR, ret);                           \
		return 0;                                                      \
	}

ANON_PROGS(mmap, MT_NR_MMAP)
ANON_PROGS(munmap, MT_NR_MUNMAP)
ANON_PROGS(mremap, MT_NR_MREMAP)

/*
 * A process gone or exec'd: do its regions need memtop's sweep (see purge
 * in memtop.bpf.c)? At exec the address space is new and the figures
 * start again; at exit the last figure stays shown.
 */
static __always_inline bool anon_purge(__u32 tgid, bool reset)
{
	struct mt_anon *a = bpf_map_lookup_elem(&anon_procs, &tgid);
	bool some;

	if (!a)
		return false;
	some = a->regions > 0;
	if (reset)
		bpf_map_delete_elem(&anon_procs, &tgid);
	return some;
}

#endif /* MEMTOP_MMAP_BPF_H */
