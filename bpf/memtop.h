/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The one ABI shared by the BPF programs and userspace: map keys and values,
 * lost-event counter indices and limits. Only fixed-width types with explicit
 * padding, so both compilers lay the structs out identically; userspace
 * checks the sizes with _Static_assert.
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
	MT_CNT_SITE_FULL, /* allocation not tracked: site map full */
	MT_CNT_STACK_FULL, /* stack not stored: stack map full */
	MT_CNT_STACK_FAIL, /* user stack capture failed */
	MT_CNT_INFLIGHT_FULL, /* call not tracked: per-thread map full */
	MT_CNT_UNKNOWN_FREE, /* free of a block not seen allocated */
	MT_CNT_PROC_FULL, /* per-process map full */
	MT_CNT_DEPTH_RESET, /* abandoned allocator call (unwound) */
	MT_CNT_MEMPTR_FAIL, /* posix_memalign result unreadable */
	MT_CNT_EVENTS_LOST, /* exec/exit notification dropped: ring buffer full */
	MT_CNT_TARGETS_FULL, /* a forked child not followed: targets map full */
	MT_CNT_ANON_FULL, /* anonymous mapping not tracked: anon map full (issue 7) */
	MT_CNT_NR,
};

/*
 * Kinds of allocator entry point: the attach cookie of each probe, and what
 * the thread is in between an allocation's entry and its return.
 */
enum memtop_kind {
	MT_K_MALLOC = 1, /* size in arg0 (malloc, valloc, pvalloc, new) */
	MT_K_CALLOC, /* nmemb * size */
	MT_K_REALLOC, /* old pointer, size */
	MT_K_REALLOCARRAY, /* old pointer, nmemb * size */
	MT_K_MEMALIGN, /* alignment, size (memalign, aligned_alloc) */
	MT_K_POSIX_MEMALIGN, /* memptr, alignment, size */
	MT_K_FREE, /* pointer */
	MT_K_DELETE, /* pointer; its free of the same block is not counted */
};

/* Notifications to userspace: rare process events, never allocations. */
enum memtop_event_type {
	MT_EV_EXEC = 1, /* tgid exec'd: its mappings (and allocator) changed */
	MT_EV_EXIT, /* tgid's last thread exited */
	MT_EV_FORK, /* a followed process forked tgid */
};

struct mt_event {
	__u32 type;
	__u32 tgid;
	char comm[16]; /* a short-lived process is gone before /proc is read */
};

/* Key of the per-site aggregate and stack maps: a stack is per process. */
struct mt_site_key {
	__u32 tgid;
	__u32 pad;
	__u64 stack_id; /* hash of the frames; 0 = stack not captured */
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
	__u64 last_ns; /* last allocation */
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
};

/* Per-thread state between an allocator call's entry and its return. */
struct mt_inflight {
	__u64 arg0;
	__u64 arg1;
	__u64 sp0; /* stack pointer at the outermost entry */
	__u64 ret0; /* the return address at sp0 then */
	__u64 stack_id;
	__u64 last_freed; /* operator delete's pointer, so its free is not counted twice */
	__u32 depth;
	__u32 kind;
};

/* ---- Python and anonymous mmap (issue 7; bpf/python.bpf.h, user/python.c) ---- */
#define MT_PY_MAX_FRAMES 16
#define MT_PY_NONE 0xffff /* an offset the version does not have */

/*
 * Per traced CPython process (map "py_procs", filled by userspace from a
 * per-version table checked against the binary): where the thread state
 * holding the GIL is, and the layout of the structures walked.
 */
struct mt_py_proc {
	__u64 tstate_ptr; /* where the GIL holder's tstate is: 3.11 gilstate.tstate_current, 3.12 the main interpreter's _gil.last_holder */
	__u16 ts_thread_id; /* PyThreadState.thread_id (pthread_self) */
	__u16 ts_cframe; /* PyThreadState.cframe, or .current_frame if cf_frame is NONE */
	__u16 cf_frame; /* _PyCFrame.current_frame */
	__u16 fr_code; /* _PyInterpreterFrame.f_code */
	__u16 fr_previous;
	__u16 fr_prev_instr;
	__u16 fr_flag; /* a byte kept with each frame: is_entry (3.11), owner (3.12) */
	__u16 pad[3];
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

/* Frames of an interpreter (not addresses) in stacks handed to the collector. */
#define MT_IP_INTERP_TAG (1ull << 63)

#endif /* MEMTOP_H */
