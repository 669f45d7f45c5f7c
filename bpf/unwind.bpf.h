/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The user-stack unwinder: from a register state (ip, sp, bp) to the chain
 * of return addresses, frame by frame, for code with or without frame
 * pointers. Userspace (user/unwind/) loads each object's compiled CFI rows
 * into "unwind_tables" (one array map per object) and each traced
 * process's executable mappings into "unwind_procs". Per frame: a binary
 * search of the process's mappings finds the object (an address in no
 * executable mapping ends the stack before it is stored, so no junk word
 * becomes a frame), a binary search of its rows finds the rule (CFA from
 * rsp or rbp, where rbp was saved), and the caller's state is read from
 * the stack. Mappings
 * without a table (JIT code, objects without CFI) follow the frame
 * pointer. A row with no rule ends the stack cleanly. A signal
 * trampoline's row sends the walk on from the interrupted thread's
 * registers in the kernel's signal frame.
 *
 * Included by memtop.bpf.c after count() and the stack chunk; uw_walk() is
 * the one entry point, for any program that has a user register state.
 */
#ifndef MEMTOP_UNWIND_BPF_H
#define MEMTOP_UNWIND_BPF_H

#define UW_TABLES    4096 /* objects with a table loaded at once */
#define UW_MAP_STEPS 8	  /* log2(MT_UW_MAPS) */
#define UW_ROW_STEPS 24	  /* rows per table: 16M */

struct uw_rows {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP); /* each object's own size */
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct mt_unwind_row));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, UW_TABLES);
	__type(key, __u32);
	__array(values, struct uw_rows);
} unwind_tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 12);
	__type(key, __u32);
	__type(value, struct mt_unwind_proc);
} unwind_procs SEC(".maps");

/* How walks ended (per-CPU, read by memtop for -v and the tests). */
enum uw_end {
	UW_END_OK = 0, /* an END row: outermost frame */
	UW_END_NOMAP,  /* return address in no executable mapping */
	UW_END_BAD,    /* a rule the walk cannot evaluate */
	UW_END_READ,   /* the stack could not be read */
	UW_END_FP,     /* frame pointer chain ended (code without a table) */
	UW_END_DEPTH,  /* frame limit */
	UW_END_NR,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UW_END_NR);
	__type(key, __u32);
	__type(value, __u64);
} unwind_ends SEC(".maps");

struct uw_walk {
	__u64 ip, sp, bp;
	__u64 hash;
	struct mt_unwind_proc *proc;
	struct stack_chunk *chunk; /* the stack from chunk_sp on, or NULL */
	__u64 chunk_sp;
	__u64 *ips;
	__u32 nr0; /* frames before the walk: step i's goes to ips[nr0 + i] */
	__u32 nr, max;
	__u32 end;
	__u32 map; /* the mapping of the last frame, MT_UW_MAPS: none yet */
	struct walk_stop stop; /* a return address there ends the walk */
	bool exact; /* ip is the interrupted pc, not a return address */
	bool bp_ok; /* bp holds the caller's rbp value */
};

/*
 * Whether a return address that lies in no mapping the walk knows is
 * still kept as the last frame: code mapped since the list was written
 * (a JIT's new code, named by its perf map) is, a word that cannot be a
 * user code address (ASCII digits, a small count) is not.
 */
static __always_inline bool uw_plausible(__u64 ra)
{
	return ra >= 0x10000 && ra < 0x800000000000ULL;
}

/*
 * Bounds of a frame-pointer step, for code whose rbp may be a general
 * register (no frame pointers, or hand-written code in an object that
 * keeps them): a frame lies in the stack at or above sp, within a default
 * stack's size, word-aligned; a heap pointer (below the main stack, or
 * far from a thread's) or a string's address held in rbp is no frame and
 * ends the walk before its words become frames.
 */
#define UW_STACK_SPAN (8ULL << 20)

static __always_inline bool uw_frame_ok(__u64 bp, __u64 sp)
{
	return bp - sp < UW_STACK_SPAN && !(bp & 7);
}

/*
 * A return address read through a frame pointer that lies in the stack
 * just above the frame (a stack buffer's pointer into itself, read as a
 * frame by a wrong rbp) is no code: no JIT maps code inside a thread's
 * stack. Only for addresses in no known mapping (a mapped one is code).
 */
#define UW_STACK_NEAR (1ULL << 20)

static __always_inline bool uw_in_stack(__u64 ra, __u64 sp)
{
	return ra - sp < UW_STACK_NEAR;
}

/*
 * v, as a value the verifier does not know: a global function's result.
 * Frame counts leave the open-coded walk below as a different constant
 * per frame, and an array index makes the verifier track every value it
 * came from as precise (the walk's sp, the loop's counter), so states
 * never merge from one frame to the next; laundered, the paths after it
 * are checked once (unlaundered, the allocator and fault programs went
 * past the verifier's limit).
 */
__noinline __u32 uw_opaque(__u32 v)
{
	asm volatile("" : "+r"(v)); /* nor does the compiler */
	return v;
}

/* Frame at of the stack: ip, folded into the hash. */
static __always_inline void uw_store(struct uw_walk *w, __u32 at, __u64 ip)
{
	w->ips[uw_opaque(at) & 127] = ip;
	w->nr = at + 1;
	w->hash = (w->hash ^ ip) * 0xff51afd7ed558ccdULL;
	w->hash ^= w->hash >> 29;
}

static __always_inline void uw_end_count(__u32 why)
{
	__u64 *v = bpf_map_lookup_elem(&unwind_ends, &why);

	if (v)
		*v += 1; /* per-CPU: no atomic needed */
}

/* A word of the stack: from the chunk read at entry when it covers it. */
static __always_inline int uw_read(struct uw_walk *w, __u64 addr, __u64 *val)
{
	__u64 off = addr - w->chunk_sp;

	if (w->chunk && addr >= w->chunk_sp && off <= sizeof(w->chunk->w) - 8 &&
	    !(off & 7)) {
		*val = w->chunk->w[uw_opaque(off / 8) & (CHUNK_WORDS - 1)];
		return 0;
	}
	return bpf_probe_read_user(val, sizeof(*val), (void *)addr);
}

/*
 * 1 when a <= b, for a and b below 2^63 (user addresses, table pcs):
 * arithmetic, not a branch, so a binary search is one verifier path
 * instead of one per outcome of each comparison.
 */
static __always_inline __u64 uw_le(__u64 a, __u64 b)
{
	return 1 - ((b - a) >> 63);
}

/*
 * The searches are global functions: the verifier checks each once, on its
 * own, instead of inside every path through the bpf_loop callback of each
 * program that walks (a fault's walk took it past a million instructions).
 */

/* The index of the mapping holding pc, MT_UW_MAPS if none: the hint (the
 * last frame's, callers being mostly in the callee's object) first, else
 * the last mapping starting at or below pc, n halving each step. */
__noinline __u32 uw_map_of(const struct mt_unwind_proc *proc, __u64 pc,
			   __u32 hint)
{
	const struct mt_unwind_map *m;
	__u64 lo = 0, n, half;

	if (!proc || !proc->nr)
		return MT_UW_MAPS;
	m = &proc->m[hint & (MT_UW_MAPS - 1)];
	if (hint < MT_UW_MAPS && pc >= m->start && pc < m->end)
		return hint;
	n = proc->nr & (2 * MT_UW_MAPS - 1);
	for (int k = 0; k < UW_MAP_STEPS + 1; k++) {
		half = n >> 1;
		lo += half &
		      -uw_le(proc->m[(lo + half) & (MT_UW_MAPS - 1)].start, pc);
		n -= half;
	}
	m = &proc->m[lo & (MT_UW_MAPS - 1)];
	if (pc < m->start || pc >= m->end)
		return MT_UW_MAPS;
	return (__u32)lo & (MT_UW_MAPS - 1);
}

#define UW_NO_ROW (~0ULL) /* a row's bytes: pc 0xffffffff, type 0xff */

/*
 * Rows this CPU found lately, by (table generation, table pc): the same
 * few return addresses (an interpreter's allocation paths, a server's
 * request loop) are looked up at almost every allocation, and a hit saves
 * the search's four or five inner-map lookups. An entry is three words
 * written one by one; the third checks the other two, so a program that
 * interrupted the writer on this CPU never takes half an entry for a row.
 */
#define UW_RCACHE     512
#define UW_RCACHE_CHK 0x5bd1e9955bd1e995ULL

struct uw_rcache {
	struct {
		__u64 tag;
		__u64 row;
		__u64 chk;
	} e[UW_RCACHE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uw_rcache);
} unwind_rcache SEC(".maps");

/* The search: the fence of tpc's bucket narrows it to a few rows. */
static __always_inline __u64 uw_row_search(const struct mt_unwind_map *m,
					   __u64 tpc)
{
	struct mt_unwind_row *row;
	struct mt_unwind_fence *f;
	__u64 lo = 0, n, half, b, out;
	__u32 table, idx;
	void *rows;

	table = m->table;
	rows = bpf_map_lookup_elem(&unwind_tables, &table);
	if (!rows)
		return UW_NO_ROW;
	n = m->nrows & MT_UW_ROWS_MASK;
	if (m->fence_nr && tpc >= m->fence_base) {
		b = (tpc - m->fence_base) >> (m->fence_shift & 31);
		if (b >= m->fence_nr)
			b = m->fence_nr - 1;
		idx = (__u32)(n + b);
		f = bpf_map_lookup_elem(rows, &idx);
		if (f && f->lo <= f->hi && f->hi < n) {
			lo = f->lo;
			n = (__u64)f->hi - f->lo + 1;
		}
	}
	/* log2(rows) lookups, not UW_ROW_STEPS: each is a helper call (the
	 * verifier does not inline inner-map lookups), about 11 ns here. */
	for (int k = 0; k < UW_ROW_STEPS && n > 1; k++) {
		half = n >> 1;
		idx = (__u32)(lo + half);
		row = bpf_map_lookup_elem(rows, &idx);
		if (!row)
			break;
		lo += half & -uw_le(row->pc, tpc);
		n -= half;
	}
	idx = (__u32)lo;
	row = bpf_map_lookup_elem(rows, &idx);
	if (!row || row->pc > tpc)
		return UW_NO_ROW;
	__builtin_memcpy(&out, row, sizeof(out));
	return out;
}

/* The row of table pc tpc in m's table, as its 8 bytes; UW_NO_ROW if
 * none: from this CPU's cache, else searched and cached. */
__noinline __u64 uw_row_of(const struct mt_unwind_map *m, __u64 tpc)
{
	__u64 tag, t, r, c;
	struct uw_rcache *rc;
	__u32 zero = 0, i;

	if (!m || tpc > 0xffffffffULL)
		return UW_NO_ROW;
	tag = ((__u64)m->gen << 32) | tpc;
	rc = bpf_map_lookup_elem(&unwind_rcache, &zero);
	if (!rc)
		return uw_row_search(m, tpc);
	i = (__u32)((tag * 0x9e3779b97f4a7c15ULL) >> 55) & (UW_RCACHE - 1);
	t = rc->e[i].tag;
	r = rc->e[i].row;
	c = rc->e[i].chk;
	if (t == tag && c == (t ^ r ^ UW_RCACHE_CHK))
		return r;
	r = uw_row_search(m, tpc);
	rc->e[i].tag = tag;
	rc->e[i].row = r;
	rc->e[i].chk = tag ^ r ^ UW_RCACHE_CHK;
	return r;
}

static long uw_step(__u32 i, struct uw_walk *w)
{
	struct mt_unwind_proc *proc = w->proc;
	struct mt_unwind_map *m;
	struct mt_unwind_row r, *row = &r;
	__u64 pc = w->exact ? w->ip : w->ip - 1, cfa, ra, bp = w->bp, bits;
	bool exact = false;
	__u32 mi;

	/* One frame per step: the index comes from the loop counter, which
	 * the verifier does not track as a constant, so it checks this
	 * callback once instead of once per frame. The frame the last step
	 * found (at - 1) is stored here, once its mapping is found: a word
	 * that is no code address (a wrong frame pointer, a stack slot that
	 * held something else) ends the stack without becoming a frame; one
	 * in no known mapping that could be new code (uw_plausible) is the
	 * last frame. */
	__u32 at = w->nr0 + i;

	if (!proc)
		return 1;
	if (i && at - 1 >= w->max) {
		w->end = UW_END_DEPTH;
		return 1;
	}
	mi = uw_map_of(proc, pc, w->map);
	if (mi >= MT_UW_MAPS) {
		if (i && uw_plausible(w->ip) && !uw_in_stack(w->ip, w->sp))
			uw_store(w, at - 1, w->ip + w->exact);
		w->end = UW_END_NOMAP;
		return 1;
	}
	if (i)
		uw_store(w, at - 1, w->ip + w->exact);
	w->map = mi;
	m = &proc->m[mi & (MT_UW_MAPS - 1)];

	if (m->table == MT_UW_NO_TABLE ||
	    ((m->nrows & MT_UW_FP) && !w->exact)) {
		/* Frame pointers: {saved rbp, return address} at rbp. */
		if (!w->bp_ok || !uw_frame_ok(bp, w->sp) ||
		    uw_read(w, bp + 8, &ra) || uw_read(w, bp, &w->bp)) {
			w->end = UW_END_FP;
			return 1;
		}
		cfa = bp + 16;
		goto next;
	}

	bits = uw_row_of(m, pc - m->bias);
	if (bits == UW_NO_ROW) {
		w->end = UW_END_NOMAP;
		return 1;
	}
	__builtin_memcpy(&r, &bits, sizeof(r));
	switch (row->type) {
	case MT_UW_RSP:
		cfa = w->sp + row->cfa * 8;
		break;
	case MT_UW_RBP:
		if (!w->bp_ok) {
			w->end = UW_END_BAD;
			return 1;
		}
		cfa = bp + row->cfa * 8;
		break;
	case MT_UW_PLT:
		cfa = w->sp + 8 + ((w->ip & 15) >= row->cfa ? 8 : 0);
		break;
	case MT_UW_END:
		w->end = UW_END_OK;
		return 1;
	case MT_UW_SIGNAL:
		/* The kernel's signal frame at sp: the interrupted thread's
		 * rsp, rip and rbp as it saved them. The rip is an
		 * interrupted pc, looked up as it is. */
		cfa = w->sp + row->cfa * 8;
		if (uw_read(w, cfa, &bits) || uw_read(w, cfa + 8, &ra) ||
		    uw_read(w, w->sp + row->rbp * 8, &w->bp)) {
			w->end = UW_END_READ;
			return 1;
		}
		cfa = bits;
		w->bp_ok = true;
		exact = true;
		goto next;
	default:
		w->end = UW_END_BAD;
		return 1;
	}
	if (cfa <= w->sp || uw_read(w, cfa - 8, &ra)) {
		w->end = UW_END_READ;
		return 1;
	}
	if (row->rbp == MT_UW_RBP_LOST) {
		w->bp_ok = false;
	} else if (row->rbp != MT_UW_RBP_SAME) {
		if (uw_read(w, cfa + (__s64)row->rbp * 8, &w->bp)) {
			w->end = UW_END_READ;
			return 1;
		}
		w->bp_ok = true;
	}
next:
	if (!ra) {
		w->end = UW_END_OK;
		return 1;
	}
	w->sp = cfa;
	w->ip = ra;
	/* An interrupted pc is stored one past itself, as a return address
	 * is the instruction after its call: the symbolizer looks up the
	 * byte before every frame. */
	w->exact = exact;
	if (walk_stops(&w->stop, ra + exact)) {
		/* The interpreter's loop (code) takes over from here. */
		if (at < w->max)
			uw_store(w, at, ra + exact);
		w->end = UW_END_OK;
		return 1;
	}
	return 0;
}

/*
 * The frames a walk from a return address can take by rbp, open-coded:
 * while each return address lies in an object that keeps frame pointers
 * (or in code without a table), the same step as uw_step's frame-pointer
 * case, without a callback call and a mapping search per frame (the
 * mapping of the last frame is checked inline first). Returns true when
 * the walk ended here; false when the next frame needs its object's table
 * (uw_step from w->nr on).
 */
static __always_inline bool uw_fp_frames(struct uw_walk *w)
{
	struct mt_unwind_proc *proc = w->proc;
	struct mt_unwind_map *m;
	__u64 pc, ra, bp;
	__u32 mi, nr;

	/* As in uw_step, the return address the last frame found (from the
	 * second frame on) is stored once its mapping is found, or when it
	 * could be code mapped since (uw_plausible). */
	for (int i = 0; i < MEMTOP_MAX_FRAMES; i++) {
		nr = w->nr;
		if (i && nr >= w->max) {
			w->end = UW_END_DEPTH;
			return true;
		}
		pc = w->ip - 1;
		mi = w->map;
		m = &proc->m[mi & (MT_UW_MAPS - 1)];
		if (mi >= MT_UW_MAPS || pc < m->start || pc >= m->end) {
			mi = uw_map_of(proc, pc, w->map);
			if (mi >= MT_UW_MAPS) {
				if (i && uw_plausible(w->ip) &&
				    !uw_in_stack(w->ip, w->sp))
					uw_store(w, nr, w->ip);
				w->end = UW_END_NOMAP;
				return true;
			}
			m = &proc->m[mi & (MT_UW_MAPS - 1)];
		}
		if (i)
			uw_store(w, nr, w->ip);
		w->map = mi;
		if (m->table != MT_UW_NO_TABLE && !(m->nrows & MT_UW_FP))
			return false;
		bp = w->bp;
		if (!w->bp_ok || !uw_frame_ok(bp, w->sp) ||
		    uw_read(w, bp + 8, &ra) || uw_read(w, bp, &w->bp)) {
			w->end = UW_END_FP;
			return true;
		}
		if (!ra) {
			w->end = UW_END_OK;
			return true;
		}
		w->sp = bp + 16;
		w->ip = ra;
		if (walk_stops(&w->stop, ra)) {
			if (w->nr < w->max)
				uw_store(w, w->nr, ra);
			w->end = UW_END_OK;
			return true;
		}
	}
	w->end = UW_END_DEPTH; /* frames enough: ra is not stored */
	return true;
}

/*
 * Walk tgid's user stack from (ip, sp, bp), exact when ip is an
 * interrupted pc (a fault, a sample) rather than a return address:
 * appends the callers' return addresses to ips[*nr..max) and folds each
 * into *hash. chunk, when not NULL, holds the stack's words from chunk_sp
 * on. A return address stop covers is the last frame (the
 * caller knows the rest of the stack another way). Returns false when tgid has
 * no mappings loaded (the caller then falls back to its frame-pointer walk).
 */
static __always_inline bool uw_walk(__u32 tgid, __u64 ip, __u64 sp, __u64 bp,
				    bool exact, struct stack_chunk *chunk,
				    __u64 chunk_sp, __u64 *ips, __u32 *nr,
				    __u32 max, __u64 *hash,
				    const struct walk_stop *stop)
{
	struct uw_walk w = {
		.ip = ip,
		.sp = sp,
		.bp = bp,
		.hash = *hash,
		.chunk = chunk,
		.chunk_sp = chunk_sp,
		.ips = ips,
		.nr0 = *nr,
		.nr = *nr,
		.max = max,
		.stop = *stop,
		.end = UW_END_DEPTH,
		.map = MT_UW_MAPS,
		.exact = exact,
		.bp_ok = true,
	};

	w.proc = bpf_map_lookup_elem(&unwind_procs, &tgid);
	if (!w.proc)
		return false;
	/* Frame-pointer frames first, the table's rules from the first
	 * frame that needs them (an interrupted pc: from the start). One
	 * step more than frames: the last one stores the frame before. */
	if (exact || !uw_fp_frames(&w)) {
		w.nr = uw_opaque(w.nr);
		if (w.nr > max)
			w.nr = max;
		w.nr0 = w.nr;
		bpf_loop(MEMTOP_MAX_FRAMES + 1, uw_step, &w, 0);
	} else {
		w.nr = uw_opaque(w.nr);
	}
	uw_end_count(w.end);
	*nr = w.nr;
	*hash = w.hash;
	return true;
}

#endif /* MEMTOP_UNWIND_BPF_H */
