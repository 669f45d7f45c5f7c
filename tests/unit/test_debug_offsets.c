/*
 * Unit test of the _Py_DebugOffsets decoder on the first bytes of real
 * interpreters' .PyRuntime sections (tests/data/pydebug: Debian unstable's
 * 3.13.18, 3.14.10, 3.15.2 and pyenv's 3.13.0), checked against offsetof()
 * on each version's own internal headers (libpython3.X-dev, compiled with
 * Py_BUILD_CORE), then on the same bytes damaged the ways a wrong or hostile
 * binary would be: each must be refused with a line naming the version.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "python/debug_offsets.h"

#ifndef DATA_DIR
#define DATA_DIR "tests/data/pydebug/"
#endif

struct want {
	const char *file;
	unsigned minor;
	uint64_t ts_native, ts_frame, fr_owner, fr_instr, co_adaptive,
		is_holder, is_gil, rt_head;
	uint64_t is_gc, gc_size, gc_collecting;
};

/* offsetof(PyThreadState, native_thread_id), (.., current_frame),
 * (_PyInterpreterFrame, owner), (.., instr_ptr), (PyCodeObject,
 * co_code_adaptive), (PyInterpreterState, _gil.last_holder), (.., _gil),
 * (_PyRuntimeState, interpreters.head), (PyInterpreterState, gc),
 * sizeof(struct _gc_runtime_state) and offsetof(.., collecting) (3.14+;
 * 3.13's debug offsets do not give them). */
static const struct want wants[] = {
	{"debian-3.13.18", 13, 160, 72, 70, 56, 200, 7760, 7752, 632, 7400, 0,
	 0},
	{"pyenv-3.13.0", 13, 160, 72, 70, 56, 200, 7760, 7752, 632, 7400, 0, 0},
	{"debian-3.14.10", 14, 160, 72, 74, 56, 208, 7792, 7784, 808, 7408, 264,
	 192},
	{"debian-3.15.2", 15, 184, 72, 74, 56, 208, 7744, 7736, 936, 7400, 176,
	 112},
};

static size_t load(const char *name, uint8_t *buf, size_t cap)
{
	char path[256];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), DATA_DIR "%s", name);
	f = fopen(path, "rb");
	if (!f)
		return 0;
	n = fread(buf, 1, cap, f);
	fclose(f);
	return n;
}

static void put(uint8_t *b, size_t at, uint64_t v)
{
	memcpy(b + at, &v, sizeof(v));
}

/* A damaged copy must be refused with a one-line reason naming 3.minor. */
static void refused(const uint8_t *orig, size_t len, size_t at, uint64_t v,
		    unsigned minor, const char *what, const char *word)
{
	uint8_t b[PYDBG_MAX_BYTES];
	struct pydbg_offsets o;
	char why[256], ver[16];
	int rc;

	memcpy(b, orig, len);
	if (at < len)
		put(b, at, v);
	rc = pydbg_decode(b, at == (size_t)-1 ? v : len, &o, why, sizeof(why));
	snprintf(ver, sizeof(ver), "3.%u", minor);
	check(rc == -ENOTSUP && strstr(why, ver) && strstr(why, word) &&
		      !strchr(why, '\n'),
	      "3.%u %s refused: \"%s\"", minor, what, why);
}

int main(void)
{
	uint8_t b[PYDBG_MAX_BYTES];
	struct pydbg_offsets o;
	char why[256];

	for (size_t i = 0; i < sizeof(wants) / sizeof(wants[0]); i++) {
		const struct want *w = &wants[i];
		size_t n = load(w->file, b, sizeof(b));
		int rc;

		check(n == sizeof(b), "%s: %zu bytes read", w->file, n);
		if (n != sizeof(b))
			continue;
		rc = pydbg_decode(b, n, &o, why, sizeof(why));
		check(rc == 0, "%s decodes (%d %s)", w->file, rc, why);
		check(o.major == 3 && o.minor == w->minor, "%s is 3.%u",
		      w->file, w->minor);
		check(o.ts_native_thread_id == w->ts_native &&
			      o.ts_current_frame == w->ts_frame,
		      "%s thread state: native_thread_id %llu current_frame "
		      "%llu",
		      w->file, (unsigned long long)o.ts_native_thread_id,
		      (unsigned long long)o.ts_current_frame);
		check(o.fr_owner == w->fr_owner &&
			      o.fr_instr_ptr == w->fr_instr &&
			      o.fr_executable == 0 && o.fr_previous == 8,
		      "%s frame: owner %llu instr_ptr %llu", w->file,
		      (unsigned long long)o.fr_owner,
		      (unsigned long long)o.fr_instr_ptr);
		check(o.co_code_adaptive == w->co_adaptive &&
			      o.co_qualname == 128 && o.co_linetable == 136 &&
			      o.co_firstlineno == 68 && o.co_filename == 112,
		      "%s code object: co_code_adaptive %llu", w->file,
		      (unsigned long long)o.co_code_adaptive);
		check(o.is_gil_last_holder == w->is_holder &&
			      o.is_gil == w->is_gil && o.is_ceval_gil == 16 &&
			      o.rt_interpreters_head == w->rt_head,
		      "%s GIL: last_holder %llu", w->file,
		      (unsigned long long)o.is_gil_last_holder);
		/* offsetof(PyInterpreterState, gc) is 7400 in both 3.13
		 * builds (the gc_layouts table's figure for pyenv 3.13.0). */
		check(o.is_gc == w->is_gc && o.gc_size == w->gc_size &&
			      o.gc_collecting == w->gc_collecting,
		      "%s collector state at %llu (size %llu, collecting at "
		      "%llu)",
		      w->file, (unsigned long long)o.is_gc,
		      (unsigned long long)o.gc_size,
		      (unsigned long long)o.gc_collecting);
		if (w->minor >= 14) {
			/* A gc group that does not add up drops the collector
			 * state alone: the frames are still read. */
			size_t g = w->minor == 14 ? 648 : 752;
			uint8_t d[PYDBG_MAX_BYTES];
			struct pydbg_offsets od;

			memcpy(d, b, n);
			put(d, g + 8, w->gc_size);
			check(pydbg_decode(d, n, &od, why, sizeof(why)) == 0 &&
				      od.is_gc == 0 && od.gc_collecting == 0 &&
				      od.ts_current_frame == w->ts_frame,
			      "%s collecting past its structure: collector "
			      "state dropped (%s)",
			      w->file, why);
			memcpy(d, b, n);
			put(d, g, 1u << 20);
			check(pydbg_decode(d, n, &od, why, sizeof(why)) == 0 &&
				      od.is_gc == 0,
			      "%s collector state larger than its interpreter: "
			      "dropped",
			      w->file);
		}
		check(o.str_ascii_size == 40 && o.str_compact_size == 56 &&
			      o.str_state == 32 && o.str_length == 16 &&
			      o.bytes_ob_size == 16 && o.bytes_ob_sval == 32,
		      "%s str and bytes headers", w->file);

		/* Damage. */
		refused(b, n, 8,
			0x030e0000 + (uint64_t)(w->minor == 14) * 0x10000,
			w->minor == 14 ? 15 : 14,
			"with another version's number", "");
		refused(b, n, 8, 0x031000f0, 16, "3.16 (unknown layout)",
			"not known");
		refused(b, n, 16, 1, w->minor, "free-threaded",
			"free-threaded");
		refused(b, n, (size_t)-1, o.struct_size - 8, w->minor,
			"truncated", "truncated");
		refused(b, n, 24, 0, w->minor, "runtime size 0",
			"runtime_state");
		refused(b, n,
			(size_t)(w->minor == 13	  ? 224
				 : w->minor == 14 ? 248
						  : 312),
			8, w->minor, "frame size smaller than its fields",
			"interpreter_frame");
		refused(b, n,
			(size_t)(w->minor == 13	  ? 352
				 : w->minor == 14 ? 400
						  : 464),
			24, w->minor, "shifted groups (pyobject size)",
			"pyobject");
	}
	/* Not debug offsets at all: no cookie. */
	memset(b, 0, sizeof(b));
	check(pydbg_decode(b, sizeof(b), &o, why, sizeof(why)) == -ENOENT,
	      "no cookie: not a _Py_DebugOffsets");
	check(pydbg_decode("xdebugpy", 8, &o, why, sizeof(why)) == -ENOENT,
	      "cookie alone: too short");
	printf("%d/%d checks failed\n", failures, checks);
	return failures != 0;
}
