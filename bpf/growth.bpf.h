/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Growth mode (memtop --growth): which stacks make RSS grow, from page
 * faults, with no allocator probes. Included by memtop.bpf.c after
 * capture_stack() and stats_get().
 *
 * Memory becomes resident when a page is first touched. Two programs see
 * each user-mode fault: the classic tracepoint exceptions:page_fault_user
 * runs first and has the error code (what kind of fault), the software perf
 * event PERF_COUNT_SW_PAGE_FAULTS runs next, in the same fault, and has the
 * user registers a stack walk needs (a classic tracepoint's record holds
 * none, and tracing programs that could fetch them are not available
 * everywhere). The tracepoint decides, per CPU, which fault is a first touch
 * of private memory and leaves a note; the perf event program charges a
 * noted fault to the faulting thread's stack in "sites", under kind
 * MT_SITE_TOUCHED, so a refresh still reads O(stacks).
 *
 * A first touch is a write fault by user code (not an instruction fetch):
 *  - on a page that is not present: fresh anonymous memory (heap, stack,
 *    mmap), a private file page written (copied on write), a page coming
 *    back from swap or after MADV_DONTNEED/MADV_FREE (RSS had gone down);
 *  - on a present page only if this process read-faulted it first since
 *    memtop attached ("zpages"): a read fault on fresh anonymous memory maps
 *    the shared zero page (no RSS), the write then gets a page of its own.
 *    Other write faults on present pages are copy-on-write after a fork
 *    (shared pages become private, RSS does not grow) or dirty tracking,
 *    and are not counted.
 * Read faults and instruction fetches map file pages (page cache) or the
 * zero page: not private memory, not counted. Each first touch is charged
 * the size the fault maps: 4 KiB, and the rest of a transparent huge page
 * (2 MiB, or a smaller multi-size THP) when the fault allocates one. Which
 * one it maps is known only once the fault allocates it, after the stack
 * was charged: the note keeps the charged site, and kmem:mm_page_alloc of a
 * huge anonymous folio (order > 0, the THP allocation flags) in that fault
 * adds the rest of its size there.
 *
 * The syscall tracepoints count, per process, memory handed back (munmap,
 * madvise DONTNEED/FREE/REMOVE, a lower brk, a shrinking mremap) in
 * "gprocs": RSS may fall while TOUCHED, cumulative, does not.
 */
#ifndef MEMTOP_GROWTH_BPF_H
#define MEMTOP_GROWTH_BPF_H

/* --growth: the fault programs charge; no allocator probes are attached. */
const volatile bool growth_mode = false;

#define MT_PF_PROT  0x1 /* the page was present */
#define MT_PF_WRITE 0x2
#define MT_PF_USER  0x4
#define MT_PF_RSVD  0x8
#define MT_PF_INSTR 0x10
#define MT_PF_PK    0x20
#define MT_PF_SHSTK 0x40
#define MT_PAGE	    4096ull

/* Processes switched to exact tracing from the live view: their faults are
 * not charged while their allocator is probed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 10);
	__type(key, __u32);
	__type(value, __u8);
} exact_pids SEC(".maps");

/* Pages a traced process read-faulted (zero page or file page mapped): a
 * write to one of them is a first touch although the page is present. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, struct mt_live_key);
	__type(value, __u8);
} zpages SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u32);
	__type(value, struct mt_gproc);
} gprocs SEC(".maps");

/* The tracepoint's note to the perf event program of the same fault, then
 * (charged) the site it charged, for a huge page the fault may allocate. */
struct fault_note {
	__u64 addr; /* the faulting page */
	__u64 ip;   /* the faulting instruction, once charged */
	__u32 tid;  /* 0: no note */
	__u32 charged;
	struct mt_site_key sk;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fault_note);
} fault_notes SEC(".maps");

static __always_inline bool growth_traced(__u32 tgid)
{
	return growth_mode && traced(tgid) &&
	       !bpf_map_lookup_elem(&exact_pids, &tgid);
}

/* exceptions:page_fault_user's stable record (events/.../format). */
struct tp_fault {
	__u64 common;
	__u64 address;
	__u64 ip;
	__u64 error_code;
};

SEC("tracepoint/exceptions/page_fault_user")
int growth_classify(struct tp_fault *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, zero = 0;
	__u64 ec = ctx->error_code;
	struct mt_live_key pk = {.tgid = tgid};
	struct fault_note *n;
	__u8 one = 1;

	if (!growth_traced(tgid))
		return 0;
	if (ec & (MT_PF_RSVD | MT_PF_INSTR | MT_PF_PK | MT_PF_SHSTK))
		return 0;
	pk.addr = ctx->address & ~(MT_PAGE - 1);
	if (!(ec & MT_PF_WRITE)) {
		if (!(ec & MT_PF_PROT))
			bpf_map_update_elem(&zpages, &pk, &one, BPF_ANY);
		return 0;
	}
	/* A present page: a first touch only after our read fault on it. */
	if ((ec & MT_PF_PROT) && bpf_map_delete_elem(&zpages, &pk))
		return 0;
	n = bpf_map_lookup_elem(&fault_notes, &zero);
	if (!n)
		return 0;
	if (n->tid && !n->charged) /* the last note's perf event never came */
		count(MT_CNT_FAULT_LOST);
	n->addr = pk.addr;
	n->tid = (__u32)pid_tgid;
	n->charged = 0;
	return 0;
}

SEC("perf_event")
int growth_charge(struct bpf_perf_event_data *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, zero = 0;
	struct mt_site_key sk = {.tgid = tgid, .kind = MT_SITE_TOUCHED};
	struct stack_chunk *chunk;
	struct fault_note *n;
	__s32 slot;
	struct mt_stats *ss;
	__u64 addr = ctx->addr, sp = PT_REGS_SP(&ctx->regs);

	if (!growth_mode)
		return 0;
	n = bpf_map_lookup_elem(&fault_notes, &zero);
	if (!n || n->tid != (__u32)pid_tgid || n->charged)
		return 0;
	if (addr && (addr & ~(MT_PAGE - 1)) != n->addr)
		return 0;
	n->tid = 0;
	/* Frame 0 is the faulting instruction, then its callers: the CFI
	 * unwinder from the interrupted state where the process has tables
	 * (a fault inside memset or _int_malloc reaches their caller), else
	 * the frame-pointer chain; the stack's first 4 KiB in one read, as at
	 * an allocator entry. */
	slot = scratch_claim();
	chunk = slot >= 0 ? bpf_map_lookup_elem(&stack_chunk, &slot) : NULL;
	if (chunk &&
	    bpf_probe_read_user(chunk->w, sizeof(chunk->w), (void *)sp))
		chunk = NULL;
	sk.stack_id = slot >= 0 ? capture_stack(&ctx->regs, tgid,
						PT_REGS_IP(&ctx->regs), chunk,
						true, (__u32)slot, NULL)
				: 0;
	scratch_release(slot);
	ss = stats_get(&sites, &sk, MT_CNT_SITE_FULL, clock_ns);
	if (!ss)
		return 0;
	__sync_fetch_and_add(&ss->allocs, 1);
	__sync_fetch_and_add(&ss->alloc_bytes, MT_PAGE);
	ss->last_ns = clock_ns;
	n->tid = (__u32)pid_tgid;
	n->ip = PT_REGS_IP(&ctx->regs);
	n->sk = sk;
	n->charged = 1;
	return 0;
}

/* kmem:mm_page_alloc's record (events/kmem/mm_page_alloc/format). */
struct tp_page_alloc {
	__u64 common;
	__u64 pfn;
	__u32 order;
	__u32 pad;
	__u64 gfp_flags;
};

/* What every anonymous THP allocation asks (vma_thp_gfp_mask():
 * GFP_TRANSHUGE_LIGHT and up): a movable compound page, no emergency
 * reserves. Page-cache folios (readahead) and kernel pages lack one of
 * them. The bits have kept their places since before 6.1. */
#define MT_GFP_MOVABLE	  (1ull << 3)
#define MT_GFP_COMP	  (1ull << 18)
#define MT_GFP_NOMEMALLOC (1ull << 19)
#define MT_GFP_THP	  (MT_GFP_MOVABLE | MT_GFP_COMP | MT_GFP_NOMEMALLOC)

/*
 * A huge folio allocated in a charged fault: the fault maps it all, so its
 * site is charged the rest of it. The same fault is told by the user
 * registers' pc, the faulting instruction still (a syscall that populates
 * memory, MAP_POPULATE or MADV_POPULATE_WRITE, is at a syscall
 * instruction, which faults on no data).
 */
SEC("tracepoint/kmem/mm_page_alloc")
int growth_thp(struct tp_page_alloc *ctx)
{
	__u32 order = ctx->order, zero = 0;
	struct fault_note *n;
	struct mt_stats *ss;
	__u64 ip[1], more;

	/* A failed allocation is traced too (pfn -1): the fault then tries a
	 * smaller folio or a page. */
	if (!order || order > 10 || ctx->pfn == ~0ull ||
	    (ctx->gfp_flags & MT_GFP_THP) != MT_GFP_THP)
		return 0;
	n = bpf_map_lookup_elem(&fault_notes, &zero);
	if (!n || !n->charged || n->tid != (__u32)bpf_get_current_pid_tgid())
		return 0;
	if (bpf_get_stack(ctx, ip, sizeof(ip), BPF_F_USER_STACK) !=
		    sizeof(ip) ||
	    ip[0] != n->ip)
		return 0;
	n->tid = 0;
	n->charged = 0;
	ss = bpf_map_lookup_elem(&sites, &n->sk);
	if (!ss)
		return 0;
	more = ((1ull << order) - 1) * MT_PAGE;
	__sync_fetch_and_add(&ss->alloc_bytes, more);
	return 0;
}

static __always_inline struct mt_gproc *gproc_get(__u32 tgid)
{
	struct mt_gproc zero = {};

	return map_get_or_init(&gprocs, &tgid, &zero, MT_CNT_PROC_FULL);
}

static __always_inline void returned(__u32 tgid, __u64 bytes)
{
	struct mt_gproc *g;

	if (!bytes)
		return;
	g = gproc_get(tgid);
	if (!g)
		return;
	__sync_fetch_and_add(&g->returned_bytes, MT_PAGE_UP(bytes));
	__sync_fetch_and_add(&g->returned_calls, 1);
}

/* syscalls:sys_enter_* records: the number at 8, the arguments from 16. */
struct tp_sys_args {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__u64 args[6];
};

struct tp_sys_ret {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__s64 ret;
};

#define MT_MADV_DONTNEED	4
#define MT_MADV_FREE		8
#define MT_MADV_REMOVE		9
#define MT_MADV_DONTNEED_LOCKED 24

SEC("tracepoint/syscalls/sys_enter_munmap")
int growth_munmap(struct tp_sys_args *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (growth_traced(tgid))
		returned(tgid, ctx->args[1]);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_madvise")
int growth_madvise(struct tp_sys_args *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 adv = ctx->args[2];

	if (!growth_traced(tgid))
		return 0;
	if (adv == MT_MADV_DONTNEED || adv == MT_MADV_FREE ||
	    adv == MT_MADV_REMOVE || adv == MT_MADV_DONTNEED_LOCKED)
		returned(tgid, ctx->args[1]);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_mremap")
int growth_mremap(struct tp_sys_args *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 old_len = ctx->args[1], new_len = ctx->args[2];

	if (growth_traced(tgid) && new_len < old_len)
		returned(tgid, old_len - new_len);
	return 0;
}

/* The break's new value is brk()'s result: a lower one than the last
 * returned the difference. */
SEC("tracepoint/syscalls/sys_exit_brk")
int growth_brk(struct tp_sys_ret *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 now = (__u64)ctx->ret, before;
	struct mt_gproc *g;

	if (!growth_traced(tgid) || ctx->ret <= 0)
		return 0;
	g = gproc_get(tgid);
	if (!g)
		return 0;
	before = g->brk;
	g->brk = now;
	if (before && now < before) {
		__sync_fetch_and_add(&g->returned_bytes, before - now);
		__sync_fetch_and_add(&g->returned_calls, 1);
	}
	return 0;
}

#endif /* MEMTOP_GROWTH_BPF_H */
