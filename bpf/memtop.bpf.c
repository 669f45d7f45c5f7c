// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * memtop's BPF side: uprobes and uretprobes on the allocator entry points.
 * Each outermost allocator call of a thread is resolved at its return, the
 * live block is remembered by (tgid, address), and the per-site and
 * per-process aggregates are updated here in the kernel, atomically, so that
 * userspace reads O(sites) per refresh and nothing per event crosses over.
 * Every event that cannot be tracked is counted in "counters".
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "memtop.h"

/* vmlinux.h has no errno names; the kernel's value. */
#ifndef EEXIST
#define EEXIST 17
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by userspace before load. */
const volatile __u32 self_tgid = 0;
/* Benchmarks only: the same probe points with programs that do nothing. */
const volatile bool empty_programs = false;
/* Trace only the tgids in "targets" (-- COMMAND, --follow); else all. */
const volatile bool filter_targets = false;
/* No -p, no command: every process's execs and exits matter. */
const volatile bool system_wide = false;
/* --follow: add the children a traced process forks to "targets". */
const volatile bool follow_forks = false;
/* --min-size: allocations smaller than this are not recorded. */
const volatile __u64 min_size = 0;
/* --depth: frames kept per stack (the innermost). */
const volatile __u32 max_depth = MEMTOP_MAX_FRAMES;
/* --sample: record one outermost allocation in sample_every. */
const volatile __u32 sample_every = 0;
/* --show-allocator: keep the allocator's own frame at the top of stacks. */
const volatile bool show_allocator = false;
/* Possible CPUs: how many per-CPU pending slots a free may have to look at. */
const volatile __u32 nr_cpus = 1;

/*
 * Kernels from 6.13 run a kprobe-type program whose frame is 64 bytes or
 * more on a per-CPU private stack, assuming it cannot be preempted. Uprobe
 * programs can be (they run with migration disabled, no more), and another
 * thread's run on the same CPU then overwrites the frame: an oops in the
 * traced process (7.2 with lazy preemption under tools/vmtest). The verifier
 * gives no private stack to a program with a tail call, so each program that
 * can be preempted carries one it never takes: never_taken is a constant to
 * the verifier, which drops the branch. A program array serves programs of
 * one type and attach type only, so each program has its own.
 */
const volatile bool never_taken = false;

#define NO_PRIVATE_STACK_MAP(name)                                             \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_PROG_ARRAY);                         \
		__uint(max_entries, 1);                                        \
		__type(key, __u32);                                            \
		__type(value, __u32);                                          \
	} name SEC(".maps")

#define NO_PRIVATE_STACK(ctx, map)                                             \
	do {                                                                   \
		if (never_taken)                                               \
			bpf_tail_call(ctx, &map, 0);                           \
	} while (0)

/*
 * CLOCK_MONOTONIC as of memtop's last tick (every 100 ms, and before the
 * probes attach). Timestamps serve the AGE column and the idle-site reclaim,
 * which need seconds, not nanoseconds; bpf_ktime_get_ns() cost ~90 ns per
 * allocation on this VM's clocksource, a load of this costs nothing.
 */
volatile __u64 clock_ns = 0;
/* Bumped by memtop before and after it deletes stacks: cached stacks of an
 * older epoch are looked up again (see scache). */
volatile __u64 stack_epoch = 0;
/* Flushes of pending blocks so far (see release_any); its own cache line,
 * written only when a block moves to the live map. */
struct {
	volatile __u64 n;
	__u64 pad[7];
} flush_seq __attribute__((aligned(64))) = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 20); /* --max-allocs */
	__type(key, struct mt_live_key);
	__type(value, struct mt_live);
} live SEC(".maps");

/*
 * Bumped at each exit and exec of a watched process that has live blocks
 * or regions; a block entering the live map carries it (struct mt_live), a
 * region too. A process's blocks all entered before its exit or exec (the
 * thread that execs or exits last is its only one then, and its blocks in
 * pending slots are taken out first), and those of the image after an exec
 * or of a process with the same pid later only after: the blocks of
 * epoch <= the bump's value are the gone ones.
 */
volatile __u32 live_epoch = 0;

/* Processes whose gone blocks memtop has yet to sweep (struct mt_dead_key;
 * the value is 1 for an exec, 0 for an exit). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, struct mt_dead_key);
	__type(value, __u8);
} dead SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mt_forget_buf);
} forget_buf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 16); /* --max-stacks */
	__type(key, struct mt_site_key);
	__type(value, struct mt_stats);
} sites SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 16); /* --max-stacks */
	__type(key, struct mt_site_key);
	__type(value, struct mt_stack);
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 16); /* --max-stacks */
	__type(key, struct mt_site_key);
	__type(value, struct mt_stack_short);
} stacks_short SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u32);
	__type(value, struct mt_stats);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u32);
	__type(value, __u8);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u32);
	__type(value, struct mt_peak);
} peaks SEC(".maps");

/* The sample interval peaks are kept for (struct mt_peak). */
volatile __u64 peak_epoch = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

/*
 * Per-thread allocator-call state. Task storage where the kernel has BTF
 * (bpf_get_current_task_btf needs it): the cheapest per-thread lookup.
 * Elsewhere a preallocated hash by thread id, emptied at each thread's exit
 * (on_exit); userspace shrinks the one not used to a single entry.
 */
const volatile bool task_storage = false;

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct mt_inflight);
} inflight_ts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, __u32);
	__type(value, struct mt_inflight);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MT_CNT_NR);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/*
 * Scratch for stack capture, wide enough that the caller's return address
 * and the allocator's own frame can be put in front of the kernel's frames
 * without copying them.
 */
#define SCRATCH_WORDS (MEMTOP_MAX_FRAMES + 3)
struct scratch {
	__u64 w[SCRATCH_WORDS];
};

/*
 * The per-CPU scratch maps (scratch, stack_chunk, scache, py_scratch,
 * py_frame_buf) hold NSCRATCH entries each. A uprobe program can be
 * preempted (uprobe programs run with migration, not preemption, disabled;
 * 7.x preempts them under lazy preemption), and another thread's run on
 * the same CPU must not overwrite a preempted run's frames: that stores
 * one stack's frames under another's hash. A run takes its CPU's next
 * free entry in turn and marks it busy with an atomic fetch-or, and clears
 * the mark when done (it ends on the CPU it started on). Entries still
 * marked belong to preempted runs, which wait their turn on this CPU's run
 * queue while every other thread there allocates: with 4 threads a CPU
 * (8 on 2 CPUs), taking the next entry or nothing lost 29% of the stacks
 * on 7.2, so the claim looks at every entry before it gives up. Only with
 * NSCRATCH runs preempted on one CPU is there no stack: the allocation is
 * still counted, as "stack failed".
 */
#define NSCRATCH 8

/* Per CPU: the runs started (the entry is the count mod NSCRATCH), and
 * the entries in use. */
struct scratch_claims {
	__u32 next;
	__u32 busy;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch_claims);
} scratch_busy SEC(".maps");

static __always_inline __s32 scratch_claim(void)
{
	__u32 zero = 0, slot, bit;
	struct scratch_claims *c = bpf_map_lookup_elem(&scratch_busy, &zero);

	if (!c)
		return -1;
	/* The next entry in turn, from a count rather than a search of the
	 * mask: the verifier sees one unknown slot, not one path per entry
	 * (a search made it verify the stack walk four times, +5 s to load).
	 * Each busy entry moves the count on by one. */
	for (int i = 0; i < NSCRATCH; i++) {
		slot = __sync_fetch_and_add(&c->next, 1) & (NSCRATCH - 1);
		bit = 1u << slot;
		if (!(__sync_fetch_and_or(&c->busy, bit) & bit))
			return (__s32)slot;
	}
	return -1;
}

static __always_inline void scratch_release(__s32 slot)
{
	__u32 zero = 0;
	struct scratch_claims *c = bpf_map_lookup_elem(&scratch_busy, &zero);

	if (c && slot >= 0)
		__sync_fetch_and_and(&c->busy,
				     ~(1u << (slot & (NSCRATCH - 1))));
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NSCRATCH);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

/*
 * map[key], made from init when there is none: the lookup, an insert that
 * loses quietly to a racing one, the lookup again. NULL when the map is
 * full, counted under full (MT_CNT_NR: not counted).
 */
static __always_inline void *map_get_or_init(void *map, const void *key,
					     const void *init, __u32 full)
{
	void *v = bpf_map_lookup_elem(map, key);

	if (v)
		return v;
	bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	v = bpf_map_lookup_elem(map, key);
	if (!v && full < MT_CNT_NR)
		count(full);
	return v;
}

/* The calling thread's state; create: make it when there is none. */
static __always_inline struct mt_inflight *thread_get(bool create)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct mt_inflight zero = {};

	if (task_storage)
		return bpf_task_storage_get(
			&inflight_ts, bpf_get_current_task_btf(), 0,
			create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	if (!create)
		return bpf_map_lookup_elem(&inflight, &tid);
	return map_get_or_init(&inflight, &tid, &zero, MT_CNT_NR);
}

static __always_inline bool traced(__u32 tgid)
{
	if (tgid == self_tgid)
		return false;
	return !filter_targets || bpf_map_lookup_elem(&targets, &tgid);
}

/* Process events matter for the traced processes only (all, system-wide). */
static __always_inline bool watched(__u32 tgid)
{
	if (tgid == self_tgid)
		return false;
	return system_wide || bpf_map_lookup_elem(&targets, &tgid);
}

static __always_inline __u64 mix64(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/*
 * Return addresses that end a stack walk: into [lo[i], hi[i]) (a process
 * with Python frames: its eval loop, and the part of it a PGO build split
 * off). Empty ranges stop nothing.
 */
struct walk_stop {
	__u64 lo[2];
	__u64 hi[2];
};

static __always_inline bool walk_stops(const struct walk_stop *s, __u64 ra)
{
	return ra - 1 - s->lo[0] < s->hi[0] - s->lo[0] ||
	       ra - 1 - s->lo[1] < s->hi[1] - s->lo[1];
}

/* Python frames (py_frames) and anonymous mmap accounting. */
#include "python.bpf.h"
#include "mmap.bpf.h"

struct frame_rec {
	__u64 fp;
	__u64 ret;
};

#define CHUNK_WORDS 512 /* 4 KiB of stack */
struct stack_chunk {
	__u64 w[CHUNK_WORDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NSCRATCH);
	__type(key, __u32);
	__type(value, struct stack_chunk);
} stack_chunk SEC(".maps");

#include "unwind.bpf.h"

/*
 * Stacks this CPU stored or found lately, by hash: a hot call site skips the
 * stacks map lookup (~50 ns). An entry is trusted for a second and while
 * memtop has deleted no stack (stack_epoch).
 */
#define SCACHE 64
struct scache {
	struct {
		__u64 h;
		__u64 ts;
		__u64 epoch;
		__u32 tgid;
		__u32 pad;
	} e[SCACHE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NSCRATCH);
	__type(key, __u32);
	__type(value, struct scache);
} scache SEC(".maps");

/*
 * Capture the user stack by walking the frame pointers: frame 0 is the return
 * address at the stack pointer (the allocator's caller: at a function entry
 * the caller's frame is not linked yet), then each saved {rbp, return
 * address} pair up the chain. A user read costs ~100 ns here whatever its
 * size, so the first 4 KiB of the stack are read at once (by enter()) and
 * serve most frames; bpf_get_stack() took 1.7 us for 14 frames.
 *
 * The walk is an open-coded bounded loop, not a bpf_loop() callback: the
 * callback's call and per-frame map lookups cost ~180 ns per allocation at
 * 16 frames (tools/bench), for a one-off price in verifier time. Frames are
 * folded into the hash with one multiply each; mix64() finishes it once.
 */
static __always_inline __u64 capture_stack(void *ctx, __u32 tgid, __u64 ret,
					   struct stack_chunk *chunk,
					   bool at_fault, __u32 slot,
					   __u32 *py_gil)
{
	struct pt_regs *regs = ctx;
	struct mt_site_key key = {.tgid = tgid};
	__u64 fp = PT_REGS_FP(regs), sp = PT_REGS_SP(regs);
	__u64 h = 0x9e3779b97f4a7c15ULL, off;
	struct frame_rec fr;
	struct scratch *s;
	struct mt_stack *st;
	struct scache *sc;
	__u64 epoch = stack_epoch; /* read before the lookup it vouches for */
	struct walk_stop stop = {};
	__u64 py_h;
	__u32 nr = 0, i;
	typeof(&sc->e[0]) ce = NULL;

	s = bpf_map_lookup_elem(&scratch, &slot);
	if (!s)
		return 0;
	if (!ret) {
		count(MT_CNT_STACK_FAIL);
		return 0;
	}
	st = (struct mt_stack *)&s->w[0];
	if (show_allocator) {
		st->ips[nr++] = PT_REGS_IP(regs);
		h = (h ^ PT_REGS_IP(regs)) * 0xff51afd7ed558ccdULL;
	}
	st->ips[nr++ & 127] = ret;
	h = (h ^ ret) * 0xff51afd7ed558ccdULL;
	/* python.bpf.h: with Python frames the native stack is the
	 * allocator's caller, or (--python-native) the walk to the eval loop.
	 */
	py_h = py_walk(tgid, slot);
	if (py_h) {
		if (py_gil)
			*py_gil = 1;
		if (!python_native)
			goto walked;
		py_eval_range(tgid, &stop);
	}
	if (walk_stops(&stop, ret))
		goto walked;
	/* Processes with unwind tables loaded: CFI, frame pointers where an
	 * object has none; at the probe (a function entry) the caller's
	 * frame starts just above the return address, at a fault (ret is the
	 * faulting pc) the interrupted function's frame is at sp. */
	if (uw_walk(tgid, ret, at_fault ? sp : sp + 8, fp, at_fault, chunk, sp,
		    st->ips, &nr,
		    max_depth < MEMTOP_MAX_FRAMES ? max_depth
						  : MEMTOP_MAX_FRAMES,
		    &h, &stop))
		goto walked;
	/* Without mappings to check return addresses against, each step is
	 * bounded instead (unwind.bpf.h): a frame pointer lies in the stack
	 * above sp, a return address is a user address outside it. Code without
	 * frame pointers holding a heap pointer or a string's address in rbp
	 * ends the stack there, not with a junk frame and a site per junk
	 * value. */
	for (i = 0; i < MEMTOP_MAX_FRAMES - 2 && nr < max_depth; i++) {
		if (!uw_frame_ok(fp, sp))
			break;
		off = fp - sp;
		if (chunk && fp >= sp && off <= sizeof(chunk->w) - 16 &&
		    !(off & 7)) {
			fr.fp = chunk->w[(off / 8) & (CHUNK_WORDS - 1)];
			fr.ret = chunk->w[(off / 8 + 1) & (CHUNK_WORDS - 1)];
		} else if (bpf_probe_read_user(&fr, sizeof(fr), (void *)fp)) {
			break;
		}
		/* A word that points into the stack walked so far is data. */
		if (!uw_plausible(fr.ret) || fr.ret - sp <= fp - sp)
			break;
		st->ips[nr++ & 127] = fr.ret;
		h = (h ^ fr.ret) * 0xff51afd7ed558ccdULL;
		h ^= h >> 29;
		if (walk_stops(&stop, fr.ret))
			break;
		/* Frames live higher up the stack: anything else is not a
		 * frame pointer (code built without them) and ends the walk. */
		if (fr.fp <= fp)
			break;
		fp = fr.fp;
	}
walked:
	st->nr = nr > MEMTOP_MAX_FRAMES ? MEMTOP_MAX_FRAMES : nr;
	st->pad = 0;
	h = mix64(h);
	if (py_h) /* the interpreter's frames count too */
		h = mix64(h ^ py_h);
	h = h ? h : 1;
	key.stack_id = h;
	sc = bpf_map_lookup_elem(&scache, &slot);
	if (sc) {
		ce = &sc->e[h & (SCACHE - 1)];
		if (ce->h == h && ce->tgid == tgid && ce->epoch == epoch &&
		    clock_ns - ce->ts < 1000000000ULL)
			return h;
	}
	/* A stack the cache knows had its Python frames stored with it. */
	if (py_h)
		py_store(tgid, h, slot);
	if (st->nr <= MEMTOP_SHORT_FRAMES) {
		if (!bpf_map_lookup_elem(&stacks_short, &key) &&
		    bpf_map_update_elem(&stacks_short, &key, st, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&stacks_short, &key)) {
			count(MT_CNT_STACK_FULL);
			return 0;
		}
	} else if (!bpf_map_lookup_elem(&stacks, &key) &&
		   bpf_map_update_elem(&stacks, &key, st, BPF_NOEXIST) &&
		   !bpf_map_lookup_elem(&stacks, &key)) {
		count(MT_CNT_STACK_FULL);
		return 0;
	}
	if (ce) {
		ce->h = h;
		ce->tgid = tgid;
		ce->ts = clock_ns;
		ce->epoch = epoch;
	}
	return h;
}

/* A new entry's contents from read-only data, not the stack: the
 * allocator programs' stacks are near the verifier's 512-byte limit. */
static const struct mt_stats stats_zero;

static __always_inline struct mt_stats *stats_get(void *map, void *key,
						  __u32 full_counter, __u64 now)
{
	struct mt_stats *v;
	long made;

	v = bpf_map_lookup_elem(map, key);
	if (v)
		return v;
	made = bpf_map_update_elem(map, key, &stats_zero, BPF_NOEXIST);
	v = bpf_map_lookup_elem(map, key);
	if (!v)
		count(full_counter);
	else if (!made)
		v->first_ns = now; /* the entry is ours */
	return v;
}

/*
 * Sites keep cumulative counters only; outstanding = allocated - freed is
 * computed in userspace, so an event costs two atomic adds instead of four,
 * and process totals are the sums of their sites: no second map update.
 */
static __always_inline void stats_add(struct mt_stats *v, __s64 bytes,
				      __s64 allocs)
{
	if (allocs > 0) {
		__sync_fetch_and_add(&v->allocs, 1);
		__sync_fetch_and_add(&v->alloc_bytes, bytes);
	} else if (allocs < 0) {
		__sync_fetch_and_add(&v->frees, 1);
		__sync_fetch_and_add(&v->free_bytes, -bytes);
	} else if (bytes > 0) {
		__sync_fetch_and_add(&v->alloc_bytes, bytes);
	} else {
		__sync_fetch_and_add(&v->free_bytes, -bytes);
	}
}

/*
 * System-wide, a process's live-block count decides whether its exit needs a
 * walk of the live map; elsewhere only the few targets exit.
 */
static __always_inline void proc_live_add(__u32 tgid, __s64 allocs)
{
	struct mt_stats *ps;

	if (!system_wide || !allocs)
		return;
	ps = stats_get(&procs, &tgid, MT_CNT_PROC_FULL, 0);
	if (ps)
		__sync_fetch_and_add(&ps->outstanding_allocs, allocs);
}

/*
 * Nothing of peak_add's on the stack, which is near its limit in the
 * allocator programs: a new entry's contents, and the key in a per-CPU slot
 * found by a constant key.
 */
static const struct mt_peak peak_zero;
static const __u32 peak_slot0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} peak_key SEC(".maps");

/*
 * A block of tgid's born (delta > 0) or gone: one lookup and one atomic add.
 * Inlined into every birth and death, callbacks included (a call's frame
 * there takes the stack past its limit on 6.1), and without a branch on
 * the figures: with branches the allocator programs' states multiplied past
 * the verifier's limit. The maxima are plain stores, so two threads raising
 * them at the same instant may keep the lower of two new highs (by a block).
 */
static __always_inline __s64 peak_max(__s64 a, __s64 b)
{
	__s64 d = a - b;

	return a - (d & (d >> 63));
}

static __always_inline void peak_add(__u32 tgid, __s64 delta)
{
	__u64 e = peak_epoch, x;
	__u32 s = e & 1, *key;
	struct mt_peak *p;
	__s64 prev, now, m, r, old;

	key = bpf_map_lookup_elem(&peak_key, &peak_slot0);
	if (!key)
		return;
	*key = tgid;
	p = map_get_or_init(&peaks, key, &peak_zero, MT_CNT_NR);
	if (!p)
		return;
	prev = __sync_fetch_and_add(&p->cur, delta);
	now = prev + delta;
	/* m: all ones when this interval's slot is already this interval's. */
	x = p->ival_epoch[s] ^ e;
	m = (__s64)(((x | -x) >> 63) - 1);
	p->ival_epoch[s] = e;
	p->ival_start[s] = (p->ival_start[s] & m) | (prev & ~m);
	old = (p->ival_peak[s] & m) | (prev & ~m);
	p->ival_peak[s] = peak_max(old, now);
	/* r: all ones when now is a new high. */
	r = (p->peak - now) >> 63;
	p->peak_ns = (clock_ns & r) | (p->peak_ns & ~r);
	p->peak = peak_max(p->peak, now);
}

/* Account a change of a site's live bytes/blocks. */
static __always_inline void account(__u32 tgid, __u64 stack_id, __s64 bytes,
				    __s64 allocs, __u64 now)
{
	struct mt_site_key sk = {.tgid = tgid, .stack_id = stack_id};
	struct mt_stats *ss;

	ss = stats_get(&sites, &sk, MT_CNT_SITE_FULL, now);
	if (ss)
		stats_add(ss, bytes, allocs);
	proc_live_add(tgid, allocs);
}

/* Forget a live block; false when it was not known. */
/*
 * How many live blocks hash to each of 2^18 counters: a free of a block the
 * live map cannot hold (sampled out, below --min-size, from before memtop,
 * or never seen) usually finds its counter at 0 and skips the lookup, a
 * cache and TLB miss in a map of 1M buckets (~250 ns here). A counter goes
 * up before its block's insert and down after its delete, so it never
 * reads 0 while the block is there.
 */
#define LF_BITS 18
struct lfilter {
	__u32 c[1 << LF_BITS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lfilter);
} live_filter SEC(".maps");

static __always_inline __u32 *lf_slot(__u32 tgid, __u64 addr)
{
	__u32 zero = 0;
	struct lfilter *f = bpf_map_lookup_elem(&live_filter, &zero);

	if (!f)
		return NULL;
	return &f->c[(mix64(addr ^ ((__u64)tgid << 47)) >> (64 - LF_BITS)) &
		     ((1 << LF_BITS) - 1)];
}

/* by_free: a free (not a realloc moving the block): the collector's? */
static __always_inline bool release(__u32 tgid, __u64 addr, bool by_free)
{
	struct mt_live_key lk = {.tgid = tgid, .addr = addr};
	struct mt_live *lv;
	__u32 *fc = lf_slot(tgid, addr);
	__u64 size, sid;

	if (fc && !*fc)
		return false;
	lv = bpf_map_lookup_elem(&live, &lk);
	if (!lv)
		return false;
	size = lv->size;
	sid = lv->stack_id;
	/* Whoever deletes it owns the release, so a double free counts once. */
	if (bpf_map_delete_elem(&live, &lk))
		return false;
	if (fc)
		__sync_fetch_and_add(fc, -1);
	account(tgid, sid, -(__s64)size, -1, 0);
	peak_add(tgid, -(__s64)size);
	if (by_free)
		py_gc_free(tgid, sid, size);
	return true;
}

/* Put a block into the live map; false when the map is full. */
static __always_inline bool live_insert(__u32 tgid, __u64 addr, __u64 size,
					__u64 stack_id)
{
	struct mt_live_key lk = {.tgid = tgid, .addr = addr};
	struct mt_live lv = {
		.size = size, .stack_id = stack_id, .epoch = live_epoch};
	__u32 *fc = lf_slot(tgid, addr);
	long err;

	if (fc)
		__sync_fetch_and_add(fc, 1);
	err = bpf_map_update_elem(&live, &lk, &lv, BPF_NOEXIST);
	/* Compared as an int: before 6.4 the map operations the verifier
	 * calls directly returned int, and the upper half of the helper's
	 * 64-bit result is then not the sign (6.1 gave 0xffffffef): an
	 * address still live was counted as "live map full" and dropped. */
	if ((int)err == -EEXIST) { /* its free was missed */
		release(tgid, addr, false);
		err = bpf_map_update_elem(&live, &lk, &lv, BPF_NOEXIST);
	}
	if (err) {
		if (fc)
			__sync_fetch_and_add(fc, -1);
		count(MT_CNT_LIVE_FULL);
		return false;
	}
	return true;
}

/*
 * A block into the live map, charged to its site there: a new one (born),
 * or one from a pending slot, already counted in its process's peak (and
 * no longer, when the map cannot take it).
 */
static __always_inline void live_enter(__u32 tgid, __u64 addr, __u64 size,
				       __u64 stack_id, bool born)
{
	struct mt_site_key sk = {.tgid = tgid, .stack_id = stack_id};
	struct mt_stats *ss;

	/* The site first: a free right after the insert must find it. */
	ss = stats_get(&sites, &sk, MT_CNT_SITE_FULL, clock_ns);
	if (!ss || !live_insert(tgid, addr, size, stack_id)) {
		if (!born)
			peak_add(tgid, -(__s64)size);
		return;
	}
	if (born)
		peak_add(tgid, size);
	stats_add(ss, size, 1);
	ss->last_ns = clock_ns;
	proc_live_add(tgid, 1);
}

static __always_inline void record(__u32 tgid, __u64 addr, __u64 size,
				   __u64 stack_id)
{
	if (size >= min_size)
		live_enter(tgid, addr, size, stack_id, true);
}

/* A live block resized in place (realloc): its site's bytes follow. */
static __always_inline void live_resize(__u32 tgid, struct mt_live *lv,
					__u64 size)
{
	__s64 delta = (__s64)size - (__s64)lv->size;

	lv->size = size;
	account(tgid, lv->stack_id, delta, 0, 0);
	peak_add(tgid, delta);
}

/* The per-CPU pending slots: where most blocks live and die. */
#include "pending.bpf.h"

static __always_inline struct mt_inflight *thread_state(void)
{
	struct mt_inflight *st = thread_get(true);

	if (!st)
		count(MT_CNT_INFLIGHT_FULL);
	return st;
}

/*
 * Is a call entered at sp nested in the thread's outermost allocator call?
 * Nested calls run below the outermost frame, or at it when the outer
 * function tail-called (realloc(NULL, n) jumping to malloc, operator new[]
 * to operator new): then the return slot holds the uretprobe trampoline, not
 * the return address seen at the outer entry. Otherwise the outermost call
 * was left without returning (an exception, longjmp) and a new one starts.
 */
static __always_inline bool nested(struct mt_inflight *st, __u64 sp)
{
	__u64 ret = 0;

	if (sp < st->sp0)
		return true;
	if (sp > st->sp0)
		return false;
	bpf_probe_read_user(&ret, sizeof(ret), (void *)sp);
	return ret != st->ret0;
}

static __always_inline int enter(struct pt_regs *ctx, __u32 kind, __u64 a0,
				 __u64 a1)
{
	__u64 sp = PT_REGS_SP(ctx);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct stack_chunk *chunk;
	struct mt_inflight *st;
	__s32 slot;

	if (!traced(tgid))
		return 0;
	st = thread_state();
	if (!st)
		return 0;
	if (st->depth > 0) {
		if (nested(st, sp)) {
			st->depth++;
			return 0;
		}
		count(MT_CNT_DEPTH_RESET);
	}
	st->depth = 1;
	st->sp0 = sp;
	st->last_freed = 0;
	st->pred = 0;
	st->py_gil = 0;
	/* An unsampled call still counts in the depth, so that what it calls
	 * is not taken for an outermost call. So does one too small for
	 * --min-size whose size is known now (not realloc: its old block
	 * must still be released). */
	if ((sample_every > 1 && bpf_get_prandom_u32() % sample_every) ||
	    (min_size && kind != MT_K_REALLOC && kind != MT_K_REALLOCARRAY &&
	     (kind == MT_K_POSIX_MEMALIGN ? a1 : a0) < min_size)) {
		if (bpf_probe_read_user(&st->ret0, sizeof(st->ret0),
					(void *)sp))
			st->ret0 = 0;
		st->kind = 0;
		return 0;
	}
	/* The stack's first 4 KiB in one user read: the return address at sp
	 * and most frames of the walk come from it. */
	slot = scratch_claim();
	chunk = slot >= 0 ? bpf_map_lookup_elem(&stack_chunk, &slot) : NULL;
	if (chunk &&
	    bpf_probe_read_user(chunk->w, sizeof(chunk->w), (void *)sp))
		chunk = NULL;
	if (chunk)
		st->ret0 = chunk->w[0];
	else if (bpf_probe_read_user(&st->ret0, sizeof(st->ret0), (void *)sp))
		st->ret0 = 0;
	st->kind = kind;
	st->arg0 = a0;
	st->arg1 = a1;
	if (slot >= 0) {
		st->stack_id = capture_stack(ctx, tgid, st->ret0, chunk, false,
					     (__u32)slot, &st->py_gil);
		scratch_release(slot);
	} else {
		st->stack_id = 0;
		count(MT_CNT_STACK_FAIL);
	}
	return 0;
}

NO_PRIVATE_STACK_MAP(nps_alloc_exit);

/* An allocator call returned ret: record what its outermost call did. */
static __always_inline int exit_common(__u64 ret)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct mt_inflight *st;
	__u64 old, size, ptr = 0;

	if (!traced(tgid))
		return 0;
	st = thread_get(false);
	if (!st || st->depth == 0)
		return 0;
	if (--st->depth > 0)
		return 0;

	switch (st->kind) {
	case MT_K_MALLOC:
	case MT_K_CALLOC:
	case MT_K_MEMALIGN:
		if (ret)
			record_pending(tgid, ret, st->arg0, st->stack_id);
		break;
	case MT_K_POSIX_MEMALIGN:
		if ((int)ret != 0)
			break;
		if (bpf_probe_read_user(&ptr, sizeof(ptr), (void *)st->arg0)) {
			count(MT_CNT_MEMPTR_FAIL);
			break;
		}
		if (ptr)
			record(tgid, ptr, st->arg1, st->stack_id);
		break;
	case MT_K_REALLOC:
	case MT_K_REALLOCARRAY:
		old = st->arg0;
		size = st->arg1;
		if (!old) {
			if (ret)
				record(tgid, ret, size, st->stack_id);
		} else if (size == 0 && st->kind == MT_K_REALLOC) {
			/* realloc(p, 0) frees p, whatever it returns. */
			if (!release_any(tgid, old, false))
				count(MT_CNT_UNKNOWN_FREE);
			if (ret)
				record(tgid, ret, 0, st->stack_id);
		} else if (!ret) {
			/* Failed: the old block stays as it was. */
		} else if (ret == old) {
			struct mt_live_key lk = {.tgid = tgid, .addr = old};
			struct mt_live *lv;

			unpend(tgid, old);
			lv = bpf_map_lookup_elem(&live, &lk);

			if (lv) {
				live_resize(tgid, lv, size);
			} else {
				record(tgid, ret, size, st->stack_id);
			}
		} else {
			if (!release_any(tgid, old, false))
				count(MT_CNT_UNKNOWN_FREE);
			record(tgid, ret, size, st->stack_id);
		}
		break;
	}
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(alloc_exit, __u64 ret)
{
	NO_PRIVATE_STACK(ctx, nps_alloc_exit);
	if (empty_programs)
		return 0;
	return exit_common(ret);
}

static __always_inline int do_free(struct pt_regs *ctx, __u64 ptr,
				   bool is_delete)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct mt_inflight *st;

	if (!ptr || !traced(tgid))
		return 0;
	st = thread_state();
	if (!st)
		return 0;
	if (st->depth > 0) {
		if (nested(st, PT_REGS_SP(ctx)))
			return 0; /* inside an allocator call: not the program's
				     free */
		count(MT_CNT_DEPTH_RESET);
		st->depth = 0;
	}
	if (st->last_freed == ptr) {
		/* A wrapper passing its block on: operator delete -> free,
		 * PyObject_Free -> PyMem_RawFree -> free. */
		if (!is_delete)
			st->last_freed = 0;
		return 0;
	}
	st->last_freed = is_delete ? ptr : 0;
	if (!release_any(tgid, ptr, true))
		count(MT_CNT_UNKNOWN_FREE);
	return 0;
}

/*
 * One entry program for every allocator function: the attach cookie says
 * which, so a file's probes are one uprobe_multi link (one detach, one RCU
 * grace period) instead of a link per function.
 */
NO_PRIVATE_STACK_MAP(nps_alloc_enter);

SEC("uprobe")
int BPF_KPROBE(alloc_enter)
{
	__u64 kind = bpf_get_attach_cookie(ctx);
	__u64 a0 = PT_REGS_PARM1(ctx), a1 = PT_REGS_PARM2(ctx), a2;

	NO_PRIVATE_STACK(ctx, nps_alloc_enter);
	if (empty_programs)
		return 0;
	a2 = PT_REGS_PARM3(ctx);
	if (kind & MT_K_CTX_ARG) { /* (ctx, args...): skip the context */
		kind &= ~(__u64)MT_K_CTX_ARG;
		a0 = a1;
		a1 = a2;
		a2 = PT_REGS_PARM4(ctx);
	}
	switch (kind) {
	case MT_K_FREE:
		return do_free(ctx, a0, false);
	case MT_K_DELETE:
		return do_free(ctx, a0, true);
	case MT_K_MALLOC:
		a1 = 0;
		break;
	case MT_K_CALLOC:
		/* An overflowing product makes the call fail: nothing recorded.
		 */
		a0 *= a1;
		a1 = 0;
		break;
	case MT_K_REALLOC:
		break;
	case MT_K_REALLOCARRAY:
		a1 *= a2;
		break;
	case MT_K_MEMALIGN:
		a0 = a1;
		a1 = 0;
		break;
	case MT_K_POSIX_MEMALIGN:
		a1 = a2;
		break;
	default:
		return 0;
	}
	/* One call site: enter() and the stack walk are inlined once. */
	return enter(ctx, (__u32)kind, a0, a1);
}

/* pymalloc's allocations without a return probe where it can be told. */
#include "pymalloc.bpf.h"

static __always_inline void notify(__u32 type, __u32 tgid)
{
	struct mt_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(MT_CNT_EVENTS_LOST);
		return;
	}
	e->type = type;
	e->tgid = tgid;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
}

/*
 * Forget a process's live blocks and anonymous regions so that the maps
 * never fill with the dead. At exit the aggregates keep their last values
 * (what it held when it died); at exec its heap is gone and the aggregates
 * drop with it. The pending slots are nr_cpus looks, done here; the live
 * and region maps are memtop's to sweep (the "dead" map says whose): a
 * walk of the live map's million buckets here, in the exit path with
 * preemption off, cost each exit 13 ms on this VM and 37 ms under qemu
 * TCG, and exits in a row on a loaded host stalled RCU.
 */
static __always_inline void purge(__u32 tgid, bool account_it)
{
	struct pend_scan c = {.tgid = tgid, .account = account_it};
	struct mt_dead_key dk = {.tgid = tgid};
	bool live = true, anon = anon_purge(tgid, account_it);
	struct mt_stats *ps;
	__u8 how = account_it;

	bpf_loop(nr_cpus, pend_purge_cpu, &c, 0);
	if (system_wide) {
		ps = bpf_map_lookup_elem(&procs, &tgid);
		live = ps && ps->outstanding_allocs > 0;
		if (live && !account_it)
			bpf_map_delete_elem(&procs, &tgid);
	}
	if (!live && !anon)
		return;
	dk.epoch = __sync_fetch_and_add(&live_epoch, 1);
	if (bpf_map_update_elem(&dead, &dk, &how, BPF_ANY))
		count(MT_CNT_PROC_FULL);
}

/* Forget blocks of gone processes that memtop's sweep found (forget_buf). */
static long forget_one(__u32 i, void *unused)
{
	__u32 zero = 0;
	struct mt_forget_buf *fb = bpf_map_lookup_elem(&forget_buf, &zero);
	struct mt_live_key lk = {};
	struct mt_live *lv, copy;
	struct mt_region *r;
	__u32 *fc;

	if (!fb || i >= MT_FORGET_MAX)
		return 1;
	lk.tgid = fb->b[i].tgid;
	lk.addr = fb->b[i].addr;
	if (fb->kind == MT_FORGET_REGION) {
		r = bpf_map_lookup_elem(&anon_regions, &lk);
		if (r && (__s32)(r->epoch - fb->b[i].epoch) <= 0)
			bpf_map_delete_elem(&anon_regions, &lk);
		return 0;
	}
	lv = bpf_map_lookup_elem(&live, &lk);
	/* Gone meanwhile (freed, or its address reused by a new block). */
	if (!lv || (__s32)(lv->epoch - fb->b[i].epoch) > 0)
		return 0;
	copy = *lv;
	if (bpf_map_delete_elem(&live, &lk))
		return 0;
	fc = lf_slot(lk.tgid, lk.addr);
	if (fc)
		__sync_fetch_and_add(fc, -1);
	if (fb->kind == MT_FORGET_EXEC)
		account(lk.tgid, copy.stack_id, -(__s64)copy.size, -1, 0);
	return 0;
}

/* Run by memtop (BPF_PROG_TEST_RUN), in its own time, not a target's. */
SEC("raw_tp")
int forget_blocks(void *ctx)
{
	__u32 zero = 0;
	struct mt_forget_buf *fb = bpf_map_lookup_elem(&forget_buf, &zero);
	__u32 n;

	if (!fb)
		return 0;
	n = fb->n;
	if (n > MT_FORGET_MAX)
		n = MT_FORGET_MAX;
	bpf_loop(n, forget_one, NULL, 0);
	return 0;
}

/*
 * The process events come two ways; memtop loads one. With the kernel's BTF,
 * tp_btf programs (raw tracepoints): the kernel skips one only while that
 * very program runs on the CPU. Without it, classic tracepoints, whose
 * records are the kernel's stable formats
 * (/sys/kernel/tracing/events/sched/.../format); the kernel skips those
 * whenever any BPF program, or a bpf() map operation, holds the CPU's
 * bpf_prog_active, and memtop's own map reads hold it for milliseconds: on a
 * preemptible kernel (7.2) a target's exit on that CPU can go unseen.
 */
struct tp_exec {
	__u64 common;
	__u32 filename_loc;
	__s32 pid;
	__s32 old_pid;
};

struct tp_exit {
	__u64 common;
	char comm[16];
	__s32 pid;
	__s32 prio;
	__u8 group_dead; /* only where exit_has_group_dead */
};

struct tp_newtask {
	__u64 common;
	__s32 pid;
	char comm[16];
	__u64 clone_flags;
};

/* sched_process_exit carries group_dead (newer kernels: its format has it at
 * offset 32, its raw tracepoint as the second argument; userspace looks).
 * Without it the group leader's exit stands for the process's. */
const volatile bool exit_has_group_dead = false;

static __always_inline int exec_event(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (!watched(tgid))
		return 0;
	/* New mappings: frame pointers until memtop has loaded them. */
	bpf_map_delete_elem(&unwind_procs, &tgid);
	purge(tgid, true);
	{
		/* Its heap is gone; the highs stay. */
		struct mt_peak *pk = bpf_map_lookup_elem(&peaks, &tgid);

		if (pk)
			pk->cur = 0;
	}
	notify(MT_EV_EXEC, tgid);
	return 0;
}

/* A thread ended; group_dead: its process with it. */
static __always_inline int exit_event(__u64 pid_tgid, bool group_dead)
{
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;

	if (!task_storage)
		bpf_map_delete_elem(&inflight, &tid);
	if (!group_dead)
		return 0;
	if (!watched(tgid))
		return 0;
	purge(tgid, false);
	bpf_map_delete_elem(&targets, &tgid);
	notify(MT_EV_EXIT, tgid);
	return 0;
}

#define MT_CLONE_THREAD 0x00010000

/* The current process made the task ctgid with these clone flags. */
static __always_inline int fork_event(__u32 ctgid, __u64 clone_flags)
{
	__u32 ptgid = bpf_get_current_pid_tgid() >> 32;
	__u8 one = 1;

	if (!follow_forks || (clone_flags & MT_CLONE_THREAD) ||
	    !bpf_map_lookup_elem(&targets, &ptgid))
		return 0;
	if (bpf_map_update_elem(&targets, &ctgid, &one, BPF_ANY)) {
		count(MT_CNT_TARGETS_FULL);
	} else {
		/* The child maps what its parent maps: unwound at once. */
		struct mt_unwind_proc *up =
			bpf_map_lookup_elem(&unwind_procs, &ptgid);

		if (up)
			bpf_map_update_elem(&unwind_procs, &ctgid, up, BPF_ANY);
		notify(MT_EV_FORK, ctgid);
	}
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int on_exec(struct tp_exec *ctx)
{
	return exec_event();
}

SEC("tp_btf/sched_process_exec")
int on_exec_btf(__u64 *ctx)
{
	return exec_event();
}

SEC("tracepoint/sched/sched_process_exit")
int on_exit(struct tp_exit *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	return exit_event(pid_tgid,
			  exit_has_group_dead
				  ? ctx->group_dead
				  : (__u32)pid_tgid == pid_tgid >> 32);
}

/* (struct task_struct *p[, bool group_dead]): the argument is read only
 * where the kernel has it (the verifier refuses a read past the last). */
SEC("tp_btf/sched_process_exit")
int on_exit_btf(__u64 *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	return exit_event(pid_tgid,
			  exit_has_group_dead
				  ? (bool)ctx[1]
				  : (__u32)pid_tgid == pid_tgid >> 32);
}

/* task_newtask, not sched_process_fork: it carries the clone flags, which
 * tell a new process from a new thread without reading the task. Runs in
 * the parent. */
SEC("tracepoint/task/task_newtask")
int on_fork(struct tp_newtask *ctx)
{
	return fork_event(ctx->pid, ctx->clone_flags);
}

SEC("tp_btf/task_newtask")
int BPF_PROG(on_fork_btf, struct task_struct *task, __u64 clone_flags)
{
	return fork_event(BPF_CORE_READ(task, pid), clone_flags);
}

/*
 * A refresh reads every site. The hash map's batch lookup takes each
 * bucket's lock and makes two copies to userspace per bucket: ~480 ns a site,
 * half of a refresh at 50k sites. This iterator writes {key, stats} records
 * into one seq_file stream that userspace read()s in large pieces.
 */
SEC("iter/bpf_map_elem")
int dump_sites(struct bpf_iter__bpf_map_elem *ctx)
{
	struct mt_site_key *k = ctx->key;
	struct mt_stats *v = ctx->value;
	struct mt_site_rec rec;

	if (!k || !v)
		return 0;
	rec.key = *k;
	rec.st = *v;
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}

/* memtop --growth: page faults instead of allocator calls. */
#include "growth.bpf.h"
