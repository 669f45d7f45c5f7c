/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The one ABI shared by the BPF programs and userspace: map keys and values,
 * lost-event counter indices and limits. Only fixed-width types with explicit
 * padding, so both compilers lay the structs out identically; the sizes
 * are asserted at the end of this file, where both compilers check them.
 */
#ifndef MEMTOP_H
#define MEMTOP_H

#ifndef __VMLINUX_H__
#include <linux/types.h> /* userspace; BPF gets the types from vmlinux.h */
#endif

#define MEMTOP_MAX_FRAMES 127

/* Counters in the per-CPU "counters" array; every lost event has one. */
enum memtop_counter {
	MT_CNT_LIVE_FULL = 0, /* allocation not tracked: live map full */
	MT_CNT_SITE_FULL,     /* allocation not tracked: site map full */
	MT_CNT_STACK_FULL,    /* stack not stored: stack map full */
	MT_CNT_STACK_FAIL,    /* user stack capture failed */
	MT_CNT_INFLIGHT_FULL, /* call not tracked: per-thread map full */
	MT_CNT_UNKNOWN_FREE,  /* free of a block not seen allocated */
	MT_CNT_PROC_FULL,     /* per-process map full */
	MT_CNT_DEPTH_RESET,   /* abandoned allocator call (unwound) */
	MT_CNT_MEMPTR_FAIL,   /* posix_memalign result unreadable */
	MT_CNT_EVENTS_LOST,  /* exec/exit notification dropped: ring buffer full
			      */
	MT_CNT_TARGETS_FULL, /* a forked child not followed: targets map full */
	MT_CNT_ANON_FULL,    /* anonymous mapping not tracked: anon map full */
	MT_CNT_FAULT_LOST, /* growth mode: a first touch whose fault event went
			      astray */
	MT_CNT_NR,
};

/*
 * Kinds of allocator entry point: the attach cookie of each probe, and what
 * the thread is in between an allocation's entry and its return.
 */
enum memtop_kind {
	MT_K_MALLOC = 1,     /* size in arg0 (malloc, valloc, pvalloc, new) */
	MT_K_CALLOC,	     /* nmemb * size */
	MT_K_REALLOC,	     /* old pointer, size */
	MT_K_REALLOCARRAY,   /* old pointer, nmemb * size */
	MT_K_MEMALIGN,	     /* alignment, size (memalign, aligned_alloc) */
	MT_K_POSIX_MEMALIGN, /* memptr, alignment, size */
	MT_K_FREE,	     /* pointer */
	MT_K_DELETE, /* pointer; its free of the same block is not counted */
};
/* Or'ed into a probe's kind: the function takes a context pointer first
 * (CPython's allocator table functions: _PyObject_Malloc(ctx, size)). */
#define MT_K_CTX_ARG 0x100

/* Notifications to userspace: rare process events, never allocations. */
enum memtop_event_type {
	MT_EV_EXEC = 1, /* tgid exec'd: its mappings (and allocator) changed */
	MT_EV_EXIT,	/* tgid's last thread exited */
	MT_EV_FORK,	/* a followed process forked tgid */
};

struct mt_event {
	__u32 type;
	__u32 tgid;
	char comm[16]; /* a short-lived process is gone before /proc is read */
};

/*
 * Key of the per-site aggregate and stack maps: a stack is per process. The
 * stack maps always use kind MT_SITE_ALLOC; a site's kind says what its
 * mt_stats count.
 */
struct mt_site_key {
	__u32 tgid;
	__u32 kind;	/* enum mt_site_kind */
	__u64 stack_id; /* hash of the frames; 0 = stack not captured */
};

enum mt_site_kind {
	MT_SITE_ALLOC = 0, /* allocator calls (exact mode) */
	/* Growth mode: first touches of private pages, from page faults.
	 * allocs counts the faults charged, alloc_bytes their bytes; the
	 * frees stay 0. */
	MT_SITE_TOUCHED = 1,
};

struct mt_stack {
	__u32 nr;
	__u32 pad;
	__u64 ips[MEMTOP_MAX_FRAMES];
};

/*
 * Most stacks are short: those of up to MEMTOP_SHORT_FRAMES frames are kept
 * in "stacks_short" (256 bytes a stack instead of 1 KiB), the rest in
 * "stacks". Same key in both; a stack is in exactly one.
 */
#define MEMTOP_SHORT_FRAMES 31
struct mt_stack_short {
	__u32 nr;
	__u32 pad;
	__u64 ips[MEMTOP_SHORT_FRAMES];
};

/* Aggregates; updated atomically by BPF, never reset. */
struct mt_stats {
	__s64 outstanding_bytes;
	__s64 outstanding_allocs;
	__u64 allocs;
	__u64 frees;
	__u64 alloc_bytes;
	__u64 free_bytes;
	__u64 first_ns; /* first allocation seen at this site or process */
	__u64 last_ns;	/* last allocation */
};

/* The sites iterator's records (dump_sites): one per site, back to back
 * in the stream userspace reads. */
struct mt_site_rec {
	struct mt_site_key key;
	struct mt_stats st;
};

/*
 * A traced process's outstanding bytes as blocks are born and die, pending
 * blocks included (map "peaks", by tgid): the highest since attach, and the
 * highest of each sample interval, so that memory allocated and freed
 * between two reads still shows. memtop bumps peak_epoch before each read;
 * the first change of an interval e sets slot e & 1: ival_start the level
 * the interval began with, ival_peak the highest level since.
 */
struct mt_peak {
	__s64 cur;
	__s64 peak;
	__u64 peak_ns; /* clock_ns when peak was reached */
	__s64 ival_peak[2];
	__s64 ival_start[2];
	__u64 ival_epoch[2];
};

struct mt_live_key {
	__u32 tgid;
	__u32 pad;
	__u64 addr;
};

/* 16 bytes: with the key, a live block's element fits the kernel's 64-byte
 * allocation class (a timestamp here made it 96: 1M blocks cost 92 MB). */
struct mt_live {
	__u64 size;
	__u64 stack_id;
	__u32 epoch; /* live_epoch when it entered: tells the blocks of a
		      * process gone (exit, exec) from those after */
	__u32 pad;
};

/* An anonymous mapping outside the allocator ("anon_regions", by
 * {tgid, start}); epoch as in mt_live. */
struct mt_region {
	__u64 len;
	__u32 epoch;
	__u32 pad;
};

/*
 * A process's blocks and regions to forget ("dead", by {tgid, epoch}):
 * those of epoch <= epoch. memtop's sweep walks the live and anon_regions
 * maps for them, off the exit path, and has them forgotten by
 * forget_blocks. The value: 1 for an exec (the heap went with the image,
 * the sites drop), 0 for an exit (the sites keep what the process held
 * when it died).
 */
struct mt_dead_key {
	__u32 tgid;
	__u32 epoch;
};

/* forget_blocks' input (map "forget_buf"): up to MT_FORGET_MAX blocks, or
 * regions, of one kind. */
#define MT_FORGET_MAX 4096
enum mt_forget_kind {
	MT_FORGET_EXIT = 0, /* live blocks, the sites left as they are */
	MT_FORGET_EXEC,	    /* live blocks, freed from their sites */
	MT_FORGET_REGION,   /* anonymous regions */
	MT_FORGET_KINDS,
};
struct mt_forget {
	__u64 addr;
	__u32 tgid;
	__u32 epoch;
};

struct mt_forget_buf {
	__u32 n;
	__u32 kind; /* enum mt_forget_kind */
	struct mt_forget b[MT_FORGET_MAX];
};

/* Per-thread state between an allocator call's entry and its return. */
struct mt_inflight {
	__u64 arg0;
	__u64 arg1;
	__u64 sp0;  /* stack pointer at the outermost entry */
	__u64 ret0; /* the return address at sp0 then */
	__u64 stack_id;
	__u64 last_freed; /* operator delete's pointer, so its free is not
			     counted twice */
	__u64 pred; /* what pymalloc was predicted to return: checked at the
		       return (bpf/pymalloc.bpf.h) */
	__u32 depth;
	__u32 kind;
	__u32 py_gil; /* the outermost call's Python frames were walked: this
			 thread holds the GIL */
	__u32 pad;
};

/* ---- Python and anonymous mmap (bpf/python.bpf.h, user/python/) ---- */
#define MT_PY_MAX_FRAMES 16
#define MT_PY_NONE	 0xffff /* an offset the version does not have */

/*
 * Per traced CPython process (map "py_procs", filled by userspace from a
 * per-version table checked against the binary): where the thread state
 * holding the GIL is, and the layout of the structures walked.
 */
struct mt_py_proc {
	__u64 tstate_ptr; /* where the GIL holder's tstate is: 3.11
			     gilstate.tstate_current, 3.12 the main
			     interpreter's _gil.last_holder */
	__u64 ns_dev; /* the target's PID namespace (stat of /proc/PID/ns/pid)
		       */
	__u64 ns_ino;
	__u16 ts_native_tid; /* PyThreadState.native_thread_id */
	__u16 ts_cframe; /* PyThreadState.cframe, or .current_frame if cf_frame
			    is NONE */
	__u16 cf_frame;	 /* _PyCFrame.current_frame */
	__u16 fr_code;	 /* _PyInterpreterFrame.f_code */
	__u16 fr_previous;
	__u16 fr_prev_instr;
	__u16 fr_flag; /* a byte kept with each frame: is_entry (3.11), owner
			  (3.12) */
	__u16 fr_span; /* bytes of a frame holding the four fields above */
	__u16 pad[2];
	__u64 gc_collecting; /* the main interpreter's gc.collecting (int); 0:
				unknown */
	/* _PyEval_EvalFrameDefault's code, runtime addresses (0, 0: not
	 * known): the native walk of a stack with Python frames ends at its
	 * innermost call of the eval loop, the Python frames say the rest. */
	__u64 eval_lo;
	__u64 eval_hi;
	/* Its part split off by a PGO build (GCC's hot/cold partitioning),
	 * where the loop's dispatch runs (0, 0: none). */
	__u64 eval2_lo;
	__u64 eval2_hi;
};

/*
 * Map "py_pymalloc", per CPython process whose pymalloc state was found:
 * where the main interpreter's usedpools[] is (found by userspace from its
 * shape, user/python/pymalloc.c), and how the BPF side's predictions of
 * pymalloc's result (the head of the size class's first pool's free list,
 * read at the call's entry) fared. They are trusted, and the return probe
 * skipped, once MT_PM_TRUST predictions checked at the return were all
 * right; one in MT_PM_RECHECK is checked again; one wrong stops them.
 */
#define MT_PM_TRUST   64
#define MT_PM_RECHECK 64
struct mt_pymalloc {
	__u64 usedpools; /* runtime address */
	__u64 checked;	 /* predictions checked at the return */
	__u64 wrong;	 /* ... that were wrong */
	__u64 skipped;	 /* returns skipped, the prediction recorded */
};

/*
 * Map "gc_sites", keyed like "sites": frees made by the GIL holder while the
 * cyclic garbage collector runs (its "collecting" flag is set), per site.
 */
struct mt_gc {
	__u64 frees;
	__u64 free_bytes;
};

/* One Python frame: code object, and prev_instr with the frame's fr_flag
 * byte in bits 56-63 (user addresses are below 2^47). */
struct mt_py_frame {
	__u64 code;
	__u64 instr;
};

/* Map "py_stacks", keyed like "stacks": the Python frames, innermost first. */
struct mt_py_stack {
	__u32 nr;
	__u32 pad;
	struct mt_py_frame f[MT_PY_MAX_FRAMES];
};

/* Map "anon_procs": anonymous private memory mapped outside the allocator. */
struct mt_anon {
	__s64 bytes; /* currently mapped */
	__s64 regions;
	__u64 mapped; /* cumulative */
	__u64 unmapped;
};

/*
 * Growth mode, map "gprocs": per process, memory handed back to the kernel
 * (munmap, madvise(MADV_DONTNEED/MADV_FREE/MADV_REMOVE), a shrinking brk or
 * mremap): address-range bytes, of which at most all were resident.
 */
struct mt_gproc {
	__u64 returned_bytes;
	__u64 returned_calls;
	__u64 brk; /* the break as of the last brk(): a lower one returns */
	__u64 pad;
};

/* Frames of an interpreter (not addresses) in stacks handed to the collector.
 */
#define MT_IP_INTERP_TAG (1ull << 63)

/* ---- Unwinding from call-frame information (bpf/unwind.bpf.h, user/unwind/)
 * ---- */

/*
 * One row of an object's compiled unwind table: from pc on (an offset from
 * the table's base address, until the next row), how the caller's frame is
 * found. Rows are sorted by pc, adjacent equal rows merged, and a gap
 * between functions is a row of its own (MT_UW_END), so the row of an
 * address is the last one whose pc is not above it. The return address is
 * always at CFA - 8 (x86-64: call pushed it); a rule saying otherwise is
 * compiled as MT_UW_BAD.
 */
enum mt_unwind_type {
	MT_UW_END = 0, /* no caller: outermost frame, or no rule covers pc */
	MT_UW_RSP,     /* CFA = rsp + cfa * 8 */
	MT_UW_RBP,     /* CFA = rbp + cfa * 8 */
	MT_UW_PLT,     /* PLT stub: CFA = rsp + 8, + 8 when (rip & 15) >= cfa */
	MT_UW_BAD,     /* a rule the BPF walk cannot evaluate: the stack ends */
	/* A signal trampoline (its FDE has the 'S' augmentation): the
	 * kernel's signal frame is at rsp, the interrupted thread's rsp saved
	 * at rsp + cfa * 8, its rip right after, its rbp at rsp + rbp * 8. */
	MT_UW_SIGNAL,
};

#define MT_UW_RBP_SAME 0      /* rbp: the caller's value is still in rbp */
#define MT_UW_RBP_LOST (-128) /* rbp: the caller's value is not known */

struct mt_unwind_row {
	__u32 pc;
	__u16 cfa; /* CFA offset from the register, in 8-byte units */
	__u8 type; /* enum mt_unwind_type */
	__s8 rbp;  /* caller's rbp saved at CFA + rbp * 8, or SAME / LOST;
		    * MT_UW_SIGNAL: at rsp + rbp * 8 */
};

/*
 * A traced process's executable mappings (map "unwind_procs", by tgid),
 * sorted by start: the unwinder's answer to "is this a code address, and
 * whose table covers it". table MT_UW_NO_TABLE: code without compiled
 * CFI (JIT code, an object without .eh_frame, one over the memory
 * limit): frame pointers are followed there.
 */
#define MT_UW_MAPS     256
#define MT_UW_NO_TABLE 0xffffffffu

/*
 * nrows | MT_UW_FP: the object keeps frame pointers (most of its code runs
 * inside an rbp frame): a return address there is walked by rbp, with no
 * table search; the table serves interrupted pcs (faults), which may be in
 * a prologue.
 */
#define MT_UW_FP	0x80000000u
#define MT_UW_ROWS_MASK 0x00ffffffu

/*
 * After an object's rows, in the same map, its fences: fence b is the
 * range of rows [lo, hi] where the row of a table pc in
 * [fence_base + (b << fence_shift), fence_base + ((b + 1) << fence_shift))
 * lies (the last bucket: every pc above too). A search is one lookup of
 * the fence and log2(hi - lo + 1) of rows, not log2(rows): a few rows per
 * bucket (fence_shift chosen per object, about one fence per 4 rows).
 */
struct mt_unwind_fence {
	__u32 lo;
	__u32 hi;
};

struct mt_unwind_map {
	__u64 start;
	__u64 end;
	__u64 bias;	   /* table pc = address - bias */
	__u32 table;	   /* key in "unwind_tables", or MT_UW_NO_TABLE */
	__u32 nrows;	   /* rows, | MT_UW_FP */
	__u32 fence_base;  /* table pc of fence 0 */
	__u32 fence_nr;	   /* fences after the rows; 0: none */
	__u32 fence_shift; /* a fence's share of the pcs, log2 */
	__u32 gen; /* the table's load, unique while memtop runs: a slot is
		      reused by other objects, a generation is not */
};

struct mt_unwind_proc {
	__u32 nr;
	__u32 pad;
	struct mt_unwind_map m[MT_UW_MAPS];
};

/* Every record that crosses, at the size both sides were written for. */
_Static_assert(sizeof(struct mt_site_key) == 16, "mt_site_key ABI");
_Static_assert(sizeof(struct mt_stack) == 8 + 8 * MEMTOP_MAX_FRAMES,
	       "mt_stack ABI");
_Static_assert(sizeof(struct mt_stack_short) == 8 + 8 * MEMTOP_SHORT_FRAMES,
	       "mt_stack_short ABI");
_Static_assert(sizeof(struct mt_stats) == 64, "mt_stats ABI");
_Static_assert(sizeof(struct mt_peak) == 72, "mt_peak ABI");
_Static_assert(sizeof(struct mt_live_key) == 16, "mt_live_key ABI");
_Static_assert(sizeof(struct mt_live) == 24, "mt_live ABI");
_Static_assert(sizeof(struct mt_region) == 16, "mt_region ABI");
_Static_assert(sizeof(struct mt_forget_buf) == 8 + 16 * MT_FORGET_MAX,
	       "mt_forget_buf ABI");
_Static_assert(sizeof(struct mt_inflight) == 72, "mt_inflight ABI");
_Static_assert(sizeof(struct mt_site_rec) == 80, "mt_site_rec ABI");
_Static_assert(sizeof(struct mt_event) == 24, "mt_event ABI");
_Static_assert(sizeof(struct mt_py_proc) == 88, "mt_py_proc ABI");
_Static_assert(sizeof(struct mt_pymalloc) == 32, "mt_pymalloc ABI");
_Static_assert(sizeof(struct mt_gc) == 16, "mt_gc ABI");
_Static_assert(sizeof(struct mt_py_frame) == 16, "mt_py_frame ABI");
_Static_assert(sizeof(struct mt_py_stack) == 8 + 16 * MT_PY_MAX_FRAMES,
	       "mt_py_stack ABI");
_Static_assert(sizeof(struct mt_anon) == 32, "mt_anon ABI");
_Static_assert(sizeof(struct mt_unwind_row) == 8, "mt_unwind_row ABI");
_Static_assert(sizeof(struct mt_unwind_map) == 48, "mt_unwind_map ABI");
_Static_assert(sizeof(struct mt_unwind_fence) == 8, "mt_unwind_fence ABI");
_Static_assert(sizeof(struct mt_unwind_proc) == 8 + 48 * MT_UW_MAPS,
	       "mt_unwind_proc ABI");
_Static_assert(sizeof(struct mt_gproc) == 32, "mt_gproc ABI");
_Static_assert(sizeof(struct mt_dead_key) == 8, "mt_dead_key ABI");
_Static_assert(sizeof(struct mt_forget) == 16, "mt_forget ABI");

#endif /* MEMTOP_H */
