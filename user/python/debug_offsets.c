/*
 * _Py_DebugOffsets decoder: where each field memtop reads sits in the
 * struct, per minor version (from CPython's Include/internal/
 * pycore_runtime.h in 3.13, pycore_debug_offsets.h in 3.14 and 3.15), and
 * the checks that make the values trustworthy. See debug_offsets.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "python/debug_offsets.h"

/* Byte positions inside _Py_DebugOffsets (each entry is a uint64). */
struct schema {
	unsigned minor;
	uint16_t struct_size;
	uint16_t rt, rt_head; /* runtime_state group, interpreters_head */
	uint16_t is, is_threads_head, is_ceval_gil, is_gil, is_holder;
	uint16_t is_gc; /* 0: not decoded for this version */
	uint16_t gc;	/* the gc group (3.14+); 0: none */
	uint16_t ts, ts_interp, ts_frame, ts_tid, ts_ntid;
	uint16_t fr, fr_previous, fr_executable, fr_instr, fr_owner;
	uint16_t co, co_filename, co_qualname, co_linetable, co_firstlineno,
		co_adaptive;
	uint16_t ob;		   /* pyobject group */
	uint16_t by;		   /* bytes_object group */
	uint16_t str, str_compact; /* unicode_object; 0: no compact size */
};

static const struct schema schemas[] = {
	{.minor = 13,
	 .struct_size = 584,
	 .rt = 24,
	 .rt_head = 40,
	 .is = 48,
	 .is_threads_head = 72,
	 .is_ceval_gil = 112,
	 .is_gil = 120,
	 .is_holder = 144,
	 .is_gc = 80,
	 .ts = 152,
	 .ts_interp = 176,
	 .ts_frame = 184,
	 .ts_tid = 192,
	 .ts_ntid = 200,
	 .fr = 224,
	 .fr_previous = 232,
	 .fr_executable = 240,
	 .fr_instr = 248,
	 .fr_owner = 264,
	 .co = 272,
	 .co_filename = 280,
	 .co_qualname = 296,
	 .co_linetable = 304,
	 .co_firstlineno = 312,
	 .co_adaptive = 344,
	 .ob = 352,
	 .by = 512,
	 .str = 536},
	{.minor = 14,
	 .struct_size = 760,
	 .rt = 24,
	 .rt_head = 40,
	 .is = 48,
	 .is_threads_head = 72,
	 .is_ceval_gil = 120,
	 .is_gil = 128,
	 .is_holder = 152,
	 .is_gc = 88,
	 .gc = 648,
	 .ts = 176,
	 .ts_interp = 200,
	 .ts_frame = 208,
	 .ts_tid = 216,
	 .ts_ntid = 224,
	 .fr = 248,
	 .fr_previous = 256,
	 .fr_executable = 264,
	 .fr_instr = 272,
	 .fr_owner = 288,
	 .co = 312,
	 .co_filename = 320,
	 .co_qualname = 336,
	 .co_linetable = 344,
	 .co_firstlineno = 352,
	 .co_adaptive = 384,
	 .ob = 400,
	 .by = 592,
	 .str = 616},
	{.minor = 15,
	 .struct_size = 888,
	 .rt = 24,
	 .rt_head = 40,
	 .is = 48,
	 .is_threads_head = 72,
	 .is_ceval_gil = 120,
	 .is_gil = 128,
	 .is_holder = 152,
	 .is_gc = 88,
	 .gc = 752,
	 .ts = 176,
	 .ts_interp = 200,
	 .ts_frame = 208,
	 .ts_tid = 240,
	 .ts_ntid = 248,
	 .fr = 312,
	 .fr_previous = 320,
	 .fr_executable = 328,
	 .fr_instr = 336,
	 .fr_owner = 352,
	 .co = 376,
	 .co_filename = 384,
	 .co_qualname = 400,
	 .co_linetable = 408,
	 .co_firstlineno = 416,
	 .co_adaptive = 448,
	 .ob = 464,
	 .by = 688,
	 .str = 712,
	 .str_compact = 744},
};

static uint64_t u64(const uint8_t *b, uint16_t at)
{
	uint64_t v;

	memcpy(&v, b + at, sizeof(v));
	return v;
}

/* No structure CPython describes is this large; a bigger "size" means the
 * bytes are not what the schema says they are. */
#define SIZE_MAX_SANE (64ull << 20)

/* field + width must fit in a structure of size bytes. */
static bool fits(uint64_t field, unsigned width, uint64_t size)
{
	return size && size <= SIZE_MAX_SANE && field < size &&
	       width <= size - field;
}

int pydbg_decode(const void *buf, size_t len, struct pydbg_offsets *out,
		 char *why, size_t whylen)
{
	const uint8_t *b = buf;
	const struct schema *s = NULL;
	const char *bad = NULL;
	struct pydbg_offsets o;
	uint64_t ft;

	why[0] = '\0';
	memset(out, 0, sizeof(*out));
	if (len < 24 || memcmp(b, "xdebugpy", 8))
		return -ENOENT;
	memset(&o, 0, sizeof(o));
	o.version = u64(b, 8);
	o.major = (o.version >> 24) & 0xff;
	o.minor = (o.version >> 16) & 0xff;
	ft = u64(b, 16);
	for (size_t i = 0; i < sizeof(schemas) / sizeof(schemas[0]); i++)
		if (o.major == 3 && schemas[i].minor == o.minor)
			s = &schemas[i];
	if (!s) {
		snprintf(why, whylen,
			 "CPython %u.%u: its _Py_DebugOffsets layout is not "
			 "known to memtop (3.13, 3.14 and 3.15 are)",
			 o.major, o.minor);
		return -ENOTSUP;
	}
	if (ft) {
		snprintf(why, whylen,
			 "CPython %u.%u free-threaded build (no GIL): Python "
			 "frames not supported",
			 o.major, o.minor);
		return -ENOTSUP;
	}
	if (len < s->struct_size) {
		snprintf(why, whylen,
			 "CPython %u.%u: _Py_DebugOffsets truncated (%zu of %u "
			 "bytes)",
			 o.major, o.minor, len, s->struct_size);
		return -ENOTSUP;
	}
	o.struct_size = s->struct_size;
	o.rt_size = u64(b, s->rt);
	o.rt_interpreters_head = u64(b, s->rt_head);
	o.is_size = u64(b, s->is);
	o.is_threads_head = u64(b, s->is_threads_head);
	o.is_ceval_gil = u64(b, s->is_ceval_gil);
	o.is_gil = u64(b, s->is_gil);
	o.is_gil_last_holder = u64(b, s->is_holder);
	o.is_gc = s->is_gc ? u64(b, s->is_gc) : 0;
	if (s->gc) {
		o.gc_size = u64(b, s->gc);
		o.gc_collecting = u64(b, s->gc + 8);
	}
	o.ts_size = u64(b, s->ts);
	o.ts_interp = u64(b, s->ts_interp);
	o.ts_current_frame = u64(b, s->ts_frame);
	o.ts_thread_id = u64(b, s->ts_tid);
	o.ts_native_thread_id = u64(b, s->ts_ntid);
	o.fr_size = u64(b, s->fr);
	o.fr_previous = u64(b, s->fr_previous);
	o.fr_executable = u64(b, s->fr_executable);
	o.fr_instr_ptr = u64(b, s->fr_instr);
	o.fr_owner = u64(b, s->fr_owner);
	o.co_size = u64(b, s->co);
	o.co_filename = u64(b, s->co_filename);
	o.co_qualname = u64(b, s->co_qualname);
	o.co_linetable = u64(b, s->co_linetable);
	o.co_firstlineno = u64(b, s->co_firstlineno);
	o.co_code_adaptive = u64(b, s->co_adaptive);
	o.ob_type = u64(b, s->ob + 8);
	o.bytes_ob_size = u64(b, s->by + 8);
	o.bytes_ob_sval = u64(b, s->by + 16);
	o.str_state = u64(b, s->str + 8);
	o.str_length = u64(b, s->str + 16);
	o.str_ascii_size = u64(b, s->str + 24);
	/* Before 3.15 the compact header is the ASCII one plus utf8_length
	 * and utf8 (PyCompactUnicodeObject, unchanged since 3.12). */
	o.str_compact_size =
		s->str_compact ? u64(b, s->str_compact) : o.str_ascii_size + 16;

	/* The collector's state is optional: dropped if it does not fit (in
	 * 3.13, which does not describe it, its fields up to "collecting" span
	 * 208 bytes; 3.14+ give its size and where "collecting" is in it). */
	if (o.is_gc && !s->gc && !fits(o.is_gc, 208, o.is_size))
		o.is_gc = 0;
	if (o.is_gc && s->gc &&
	    (o.gc_size > 0xffff || !fits(o.gc_collecting, 4, o.gc_size) ||
	     !fits(o.is_gc, (unsigned)o.gc_size, o.is_size)))
		o.is_gc = 0;
	if (!o.is_gc)
		o.gc_size = o.gc_collecting = 0;
	/* A field memtop reads must lie inside its structure. */
	if (!fits(o.rt_interpreters_head, 8, o.rt_size))
		bad = "runtime_state";
	else if (!fits(o.is_threads_head, 8, o.is_size) ||
		 !fits(o.is_ceval_gil, 8, o.is_size) ||
		 !fits(o.is_gil, 8, o.is_size) ||
		 !fits(o.is_gil_last_holder, 8, o.is_size))
		bad = "interpreter_state";
	else if (!fits(o.ts_interp, 8, o.ts_size) ||
		 !fits(o.ts_current_frame, 8, o.ts_size) ||
		 !fits(o.ts_thread_id, 8, o.ts_size) ||
		 !fits(o.ts_native_thread_id, 8, o.ts_size) ||
		 o.ts_size > 0xffff)
		bad = "thread_state";
	else if (!fits(o.fr_previous, 8, o.fr_size) ||
		 !fits(o.fr_executable, 8, o.fr_size) ||
		 !fits(o.fr_instr_ptr, 8, o.fr_size) ||
		 !fits(o.fr_owner, 1, o.fr_size) || o.fr_size > 0xffff)
		bad = "interpreter_frame";
	else if (!fits(o.co_filename, 8, o.co_size) ||
		 !fits(o.co_qualname, 8, o.co_size) ||
		 !fits(o.co_linetable, 8, o.co_size) ||
		 !fits(o.co_firstlineno, 4, o.co_size) ||
		 o.co_code_adaptive > o.co_size || o.co_size > 0xffff)
		bad = "code_object";
	else if (u64(b, s->ob) != 16 || o.ob_type != 8)
		bad = "pyobject"; /* every non-debug build: refcount, type */
	else if (!fits(o.bytes_ob_size, 8, u64(b, s->by)) ||
		 o.bytes_ob_sval > u64(b, s->by))
		bad = "bytes_object";
	else if (!fits(o.str_state, 4, o.str_ascii_size) ||
		 !fits(o.str_length, 8, o.str_ascii_size) ||
		 o.str_ascii_size > o.str_compact_size ||
		 o.str_compact_size > u64(b, s->str) || u64(b, s->str) > 256)
		bad = "unicode_object";
	if (bad) {
		snprintf(why, whylen,
			 "CPython %u.%u: _Py_DebugOffsets group %s does not "
			 "match its sizes (not the %u.%u layout memtop knows)",
			 o.major, o.minor, bad, o.major, o.minor);
		return -ENOTSUP;
	}
	*out = o;
	return 0;
}
