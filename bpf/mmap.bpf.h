/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Anonymous memory mapped outside the allocator (issue 7), included by
 * memtop.bpf.c after the "inflight" map. mmap, munmap and mremap of
 * anonymous private mappings by traced threads that are not inside an
 * allocator call (the per-thread depth) are accounted per process in
 * "anon_procs": a category of its own, not call sites. tp_btf on the raw
 * syscall tracepoints: no tracefs needed. Regions are tracked by start
 * address; an munmap that does not start at a tracked region (the middle of
 * one, or a region mapped inside malloc) is ignored.
 */
#ifndef MEMTOP_MMAP_BPF_H
#define MEMTOP_MMAP_BPF_H

#define MT_NR_MMAP 9
#define MT_NR_MUNMAP 11
#define MT_NR_MREMAP 25
#define MT_MAP_TYPE 0x0f
#define MT_MAP_PRIVATE 0x02
#define MT_MAP_ANONYMOUS 0x20
#define MT_PAGE_UP(x) (((x) + 4095) & ~4095ull)

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
	__type(value, __u64);
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

	a = bpf_map_lookup_elem(&anon_procs, &tgid);
	if (!a) {
		bpf_map_update_elem(&anon_procs, &tgid, &zero, BPF_NOEXIST);
		a = bpf_map_lookup_elem(&anon_procs, &tgid);
		if (!a) {
			count(MT_CNT_ANON_FULL);
			return;
		}
	}
	__sync_fetch_and_add(&a->bytes, bytes);
	__sync_fetch_and_add(&a->regions, regions);
	if (bytes > 0)
		__sync_fetch_and_add(&a->mapped, bytes);
	else
		__sync_fetch_and_add(&a->unmapped, -bytes);
}

static __always_inline void anon_region(__u32 tgid, __u64 addr, __u64 len)
{
	struct mt_live_key k = { .tgid = tgid, .addr = addr };

	if (bpf_map_update_elem(&anon_regions, &k, &len, BPF_ANY))
		count(MT_CNT_ANON_FULL);
	else
		anon_add(tgid, len, 1);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(anon_enter, struct pt_regs *regs, long id)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	struct anon_call c = { .nr = id };
	struct mt_inflight *st;

	if (id != MT_NR_MMAP && id != MT_NR_MUNMAP && id != MT_NR_MREMAP)
		return 0;
	if (!watched(tgid)) /* -p targets or everything: not each uprobe's pid */
		return 0;
	st = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0, 0);
	if (st && st->depth > 0)
		return 0; /* the allocator's own: counted as its blocks */
	c.a0 = BPF_CORE_READ(regs, di);
	c.a1 = BPF_CORE_READ(regs, si);
	c.a2 = BPF_CORE_READ(regs, dx);
	if (id == MT_NR_MMAP) {
		__u64 flags = BPF_CORE_READ(regs, r10);

		if (!(flags & MT_MAP_ANONYMOUS) ||
		    (flags & MT_MAP_TYPE) != MT_MAP_PRIVATE)
			return 0;
	}
	bpf_map_update_elem(&anon_calls, &tid, &c, BPF_ANY);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(anon_exit, struct pt_regs *regs, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	struct mt_live_key k = { .tgid = tgid };
	struct anon_call *cp, c;
	__u64 *lenp, len, cut;
	long nr = BPF_CORE_READ(regs, orig_ax);

	if (nr != MT_NR_MMAP && nr != MT_NR_MUNMAP && nr != MT_NR_MREMAP)
		return 0;
	cp = bpf_map_lookup_elem(&anon_calls, &tid);
	if (!cp)
		return 0;
	c = *cp;
	bpf_map_delete_elem(&anon_calls, &tid);
	if (c.nr != nr || (ret < 0 && ret > -4096))
		return 0;
	switch (c.nr) {
	case MT_NR_MMAP:
		anon_region(tgid, (__u64)ret, MT_PAGE_UP(c.a1));
		break;
	case MT_NR_MUNMAP:
		k.addr = c.a0;
		lenp = bpf_map_lookup_elem(&anon_regions, &k);
		if (!lenp)
			break;
		len = *lenp;
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
		lenp = bpf_map_lookup_elem(&anon_regions, &k);
		if (!lenp)
			break;
		len = *lenp;
		if (bpf_map_delete_elem(&anon_regions, &k))
			break;
		anon_add(tgid, -(__s64)len, -1);
		anon_region(tgid, (__u64)ret, MT_PAGE_UP(c.a2));
		break;
	}
	return 0;
}

struct anon_purge_ctx {
	__u32 tgid;
};

static long anon_purge_one(struct bpf_map *map, struct mt_live_key *key,
			   __u64 *val, struct anon_purge_ctx *pc)
{
	if (key->tgid == pc->tgid)
		bpf_map_delete_elem(map, key);
	return 0;
}

/* At exec the address space is new; at exit the last figure stays shown. */
static __always_inline void anon_purge(__u32 tgid, bool reset)
{
	struct anon_purge_ctx pc = { .tgid = tgid };
	struct mt_anon *a = bpf_map_lookup_elem(&anon_procs, &tgid);

	if (!a)
		return;
	if (a->regions > 0)
		bpf_for_each_map_elem(&anon_regions, anon_purge_one, &pc, 0);
	if (reset)
		bpf_map_delete_elem(&anon_procs, &tgid);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(anon_on_exec, struct task_struct *p, pid_t old_pid)
{
	anon_purge(p->tgid, true);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(anon_on_exit, struct task_struct *p, bool group_dead)
{
	if (group_dead)
		anon_purge(p->tgid, false);
	return 0;
}

#endif /* MEMTOP_MMAP_BPF_H */
