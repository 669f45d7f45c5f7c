/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Python frames (issue 7), included by memtop.bpf.c before capture_stack().
 *
 * At the outermost allocator entry of a thread of a CPython process listed in
 * "py_procs", walk the interpreter's frame chain: the thread state holding the
 * GIL (checked to be this thread: its thread_id is pthread_self(), the fs base)
 * -> current frame -> previous ... and keep up to MT_PY_MAX_FRAMES (code
 * object, instruction pointer) pairs. They are mixed into the stack's hash, so
 * two Python lines with the same native stack are two sites, and stored in
 * "py_stacks" under the same key as the native stack. Userspace (user/python.c)
 * decodes the code objects and splices the frames in where the evaluation
 * loop's native frames are. All layout comes from the map value: the BPF side
 * knows no Python version.
 */
#ifndef MEMTOP_PYTHON_BPF_H
#define MEMTOP_PYTHON_BPF_H

/* --python auto|on found a supported interpreter somewhere. */
const volatile bool python_frames = false;

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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
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

/*
 * Mix the current Python frames into h and store them under (tgid, result).
 * A global function: verified once, not at every inlined allocator entry.
 * Each frame keeps the byte at fr_flag (is_entry in 3.11, owner in 3.12) in
 * bits 56-63 of instr: userspace interprets it, the BPF side does not branch.
 */
__noinline __u64 py_frames(__u32 tgid, __u64 h)
{
	struct mt_site_key key = { .tgid = tgid };
	struct task_struct *task;
	struct mt_py_stack *ps;
	struct mt_py_proc *pp;
	__u64 ts, fr, code, instr, flag, flag_off;
	__u32 zero = 0, i;

	if (!python_frames)
		return h;
	pp = bpf_map_lookup_elem(&py_procs, &tgid);
	if (!pp)
		return h;
	ts = py_read(pp->tstate_ptr);
	if (!ts)
		return h;
	/* The GIL holder's frames are ours only if we are the GIL holder. */
	task = bpf_get_current_task_btf();
	if (py_read(ts + pp->ts_thread_id) != BPF_CORE_READ(task, thread.fsbase))
		return h;
	fr = py_read(ts + pp->ts_cframe);
	if (fr && pp->cf_frame != MT_PY_NONE)
		fr = py_read(fr + pp->cf_frame);
	ps = bpf_map_lookup_elem(&py_scratch, &zero);
	if (!ps || !fr)
		return h;
	flag_off = pp->fr_flag;
	for (i = 0; i < MT_PY_MAX_FRAMES; i++) {
		code = py_read(fr + pp->fr_code);
		instr = py_read(fr + pp->fr_prev_instr) & ((1ull << 56) - 1);
		flag = py_read(fr + flag_off) & 0xff;
		instr |= flag << 56;
		ps->f[i].code = code;
		ps->f[i].instr = instr;
		h = mix64(h ^ code);
		h = mix64(h ^ instr);
		fr = py_read(fr + pp->fr_previous);
		if (!fr)
			break;
	}
	ps->nr = i < MT_PY_MAX_FRAMES ? i + 1 : MT_PY_MAX_FRAMES;
	ps->pad = 0;
	if (!h)
		h = 1;
	key.stack_id = h;
	if (!bpf_map_lookup_elem(&py_stacks, &key) &&
	    bpf_map_update_elem(&py_stacks, &key, ps, BPF_NOEXIST) &&
	    !bpf_map_lookup_elem(&py_stacks, &key))
		count(MT_CNT_STACK_FULL);
	return h;
}

#endif /* MEMTOP_PYTHON_BPF_H */
