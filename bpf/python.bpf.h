/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Python frames, included by memtop.bpf.c before capture_stack().
 *
 * At the outermost allocator entry of a thread of a CPython process listed in
 * "py_procs", walk the interpreter's frame chain: the thread state holding the
 * GIL (checked to be this thread: its native_thread_id is this thread's id in
 * the target's PID namespace)
 * -> current frame -> previous ... and keep up to MT_PY_MAX_FRAMES (code
 * object, instruction pointer) pairs. They are mixed into the stack's hash, so
 * two Python lines with the same native stack are two sites, and stored in
 * "py_stacks" under the same key as the native stack. Userspace (user/python.c)
 * decodes the code objects and splices the frames in where the evaluation
 * loop's native frames are. The Python frames are walked first: where there
 * are some, the native walk ends at the innermost eval loop call (the rest
 * of the stack is the interpreter's own frames, each an eval loop call or
 * the C between two: the Python frames name the site). All layout comes
 * from the map value: the BPF side knows no Python version.
 */
#ifndef MEMTOP_PYTHON_BPF_H
#define MEMTOP_PYTHON_BPF_H

/* --python auto|on found a supported interpreter somewhere. */
const volatile bool python_frames = false;
/* --python-native: walk the C frames between the allocator and the
 * innermost Python frame too. Off, a stack with Python frames keeps only
 * the allocator's caller below them, as tracemalloc and memray (without
 * --native) keep none: the walk to the eval loop was most of the cost of
 * a pymalloc call. */
const volatile bool python_native = false;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u32);
	__type(value, struct mt_py_proc);
} py_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 16); /* --max-stacks */
	__type(key, struct mt_site_key);
	__type(value, struct mt_py_stack);
} py_stacks SEC(".maps");

/* One entry per scratch slot (NSCRATCH, see scratch_claim). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NSCRATCH);
	__type(key, __u32);
	__type(value, struct mt_py_stack);
} py_scratch SEC(".maps");

/* A failed read leaves 0: no branch, so the verifier's walk stays small. */
static __always_inline __u64 py_read(__u64 addr)
{
	__u64 v = 0;

	bpf_probe_read_user(&v, sizeof(v), (void *)addr);
	return v;
}

/* One interpreter frame's fields, read at once (fr_span bytes, at most
 * PY_FRAME_BYTES); the words past the read stay zero. */
#define PY_FRAME_BYTES 128
struct py_frame_buf {
	__u8 b[PY_FRAME_BYTES + 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NSCRATCH);
	__type(key, __u32);
	__type(value, struct py_frame_buf);
} py_frame_buf SEC(".maps");

/* The word at off (< PY_FRAME_BYTES) of a frame read into fb. */
static __always_inline __u64 py_field(struct py_frame_buf *fb, __u32 off)
{
	return *(__u64 *)&fb->b[off & (PY_FRAME_BYTES - 1)];
}

/*
 * The thread state holding the GIL, when this thread holds it (its
 * native_thread_id is our thread id as the target's PID namespace numbers
 * it: the process may live in a container); 0 otherwise.
 */
static __always_inline __u64 py_gil_tstate(const struct mt_py_proc *pp)
{
	struct bpf_pidns_info ns = {};
	__u64 ts = py_read(pp->tstate_ptr);

	if (!ts || bpf_get_ns_current_pid_tgid(pp->ns_dev, pp->ns_ino, &ns,
					       sizeof(ns)))
		return 0;
	if ((__u32)py_read(ts + pp->ts_native_tid) != ns.pid)
		return 0;
	return ts;
}

/*
 * Walk the current Python frames of tgid's thread into "py_scratch" and
 * return their hash, or 0 when there are none to walk (not CPython, not the
 * GIL holder, no frame). A global function: verified once, not at every
 * inlined allocator entry. Each frame keeps the byte at fr_flag (is_entry
 * in 3.11, owner in 3.12+) in bits 56-63 of instr: userspace interprets
 * it, the BPF side does not branch. A frame's fields come from one user
 * read of its first fr_span bytes, not one read each.
 */
__noinline __u64 py_walk(__u32 tgid, __u32 slot)
{
	struct py_frame_buf *fb;
	struct mt_py_stack *ps;
	struct mt_py_proc *pp;
	__u64 ts, fr, code, instr, flag, h = 0x2545f4914f6cdd1dULL;
	__u32 i, span;

	if (!python_frames)
		return 0;
	pp = bpf_map_lookup_elem(&py_procs, &tgid);
	if (!pp)
		return 0;
	/* The GIL holder's frames are ours only if we are the GIL holder. */
	ts = py_gil_tstate(pp);
	if (!ts)
		return 0;
	fr = py_read(ts + pp->ts_cframe);
	if (fr && pp->cf_frame != MT_PY_NONE)
		fr = py_read(fr + pp->cf_frame);
	ps = bpf_map_lookup_elem(&py_scratch, &slot);
	fb = bpf_map_lookup_elem(&py_frame_buf, &slot);
	if (!ps || !fb || !fr)
		return 0;
	span = pp->fr_span;
	if (span < 8 || span > PY_FRAME_BYTES)
		return 0;
	for (i = 0; i < MT_PY_MAX_FRAMES; i++) {
		if (bpf_probe_read_user(fb->b, span, (void *)fr))
			break;
		/* 3.14+ f_executable is a _PyStackRef: its low bits are
		 * tags, never address bits (objects are 8-aligned). */
		code = py_field(fb, pp->fr_code) & ~7ull;
		instr = py_field(fb, pp->fr_prev_instr) & ((1ull << 56) - 1);
		flag = py_field(fb, pp->fr_flag) & 0xff;
		instr |= flag << 56;
		ps->f[i].code = code;
		ps->f[i].instr = instr;
		h = mix64(h ^ code);
		h = mix64(h ^ instr);
		fr = py_field(fb, pp->fr_previous);
		if (!fr) {
			i++;
			break;
		}
	}
	if (!i)
		return 0;
	ps->nr = i;
	ps->pad = 0;
	return h ? h : 1;
}

/*
 * Where the native walk of a stack with Python frames may end: in the eval
 * loop's code (its symbol's range and the part split off it), or nowhere.
 */
static __always_inline void py_eval_range(__u32 tgid, struct walk_stop *s)
{
	struct mt_py_proc *pp = bpf_map_lookup_elem(&py_procs, &tgid);

	if (!pp)
		return;
	s->lo[0] = pp->eval_lo;
	s->hi[0] = pp->eval_hi;
	s->lo[1] = pp->eval2_lo;
	s->hi[1] = pp->eval2_hi;
}

/* Store the frames py_walk() left in "py_scratch" as stack stack_id's. */
__noinline int py_store(__u32 tgid, __u64 stack_id, __u32 slot)
{
	struct mt_site_key key = {.tgid = tgid, .stack_id = stack_id};
	struct mt_py_stack *ps;

	ps = bpf_map_lookup_elem(&py_scratch, &slot);
	if (!ps)
		return 0;
	if (!bpf_map_lookup_elem(&py_stacks, &key) &&
	    bpf_map_update_elem(&py_stacks, &key, ps, BPF_NOEXIST) &&
	    !bpf_map_lookup_elem(&py_stacks, &key))
		count(MT_CNT_STACK_FULL);
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 16); /* --max-stacks */
	__type(key, struct mt_site_key);
	__type(value, struct mt_gc);
} gc_sites SEC(".maps");

/*
 * A tracked block of tgid's, from stack_id, was just freed: if the cyclic
 * collector is running and this thread holds the GIL (the collector's own
 * thread: other threads may free raw memory meanwhile without it), count the
 * free for its site in "gc_sites". One read of the interpreter's
 * "collecting" flag; the GIL check only while it is set. A global function:
 * verified once, not in every inlined free path.
 */
__noinline int py_gc_free(__u32 tgid, __u64 stack_id, __u64 size)
{
	struct mt_site_key key = {.tgid = tgid, .stack_id = stack_id};
	struct mt_gc *g, zero = {};
	struct mt_py_proc *pp;
	__u32 collecting = 0;

	if (!python_frames)
		return 0;
	pp = bpf_map_lookup_elem(&py_procs, &tgid);
	if (!pp || !pp->gc_collecting)
		return 0;
	if (bpf_probe_read_user(&collecting, sizeof(collecting),
				(void *)pp->gc_collecting) ||
	    !collecting)
		return 0;
	if (!py_gil_tstate(pp))
		return 0;
	g = map_get_or_init(&gc_sites, &key, &zero, MT_CNT_NR);
	if (!g)
		return 0;
	__sync_fetch_and_add(&g->frees, 1);
	__sync_fetch_and_add(&g->free_bytes, size);
	return 0;
}

#endif /* MEMTOP_PYTHON_BPF_H */
