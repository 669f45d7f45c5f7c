/*
 * CPython's own description of its structures: since 3.13 the interpreter
 * starts _PyRuntime (its own ".PyRuntime" ELF section) with _Py_DebugOffsets,
 * a cookie "xdebugpy", PY_VERSION_HEX, a free-threading flag, then groups of
 * uint64 offsets, each group opened by the size of the structure it
 * describes. The groups themselves change between minor versions, so the
 * decoder knows, per minor version, where each group it reads begins, and
 * refuses what it does not know or what does not add up (a field past its
 * structure's size, a size no build would have). Pure: bytes in, offsets
 * out; the bytes come from a file or a process memtop does not trust.
 */
#ifndef MEMTOP_PYTHON_DEBUG_OFFSETS_H
#define MEMTOP_PYTHON_DEBUG_OFFSETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Enough bytes for every version the decoder knows. */
#define PYDBG_MAX_BYTES 1024

struct pydbg_offsets {
	uint64_t version; /* PY_VERSION_HEX */
	unsigned major, minor;
	size_t struct_size; /* of _Py_DebugOffsets in this version */
	/* _PyRuntimeState */
	uint64_t rt_size, rt_interpreters_head;
	/* PyInterpreterState */
	uint64_t is_size, is_threads_head, is_ceval_gil, is_gil,
		is_gil_last_holder;
	uint64_t is_gc; /* its _gc_runtime_state; 0: not decoded or not valid */
	/* _gc_runtime_state (3.14+; 0 in 3.13, which does not describe it) */
	uint64_t gc_size, gc_collecting;
	/* PyThreadState */
	uint64_t ts_size, ts_interp, ts_current_frame, ts_thread_id,
		ts_native_thread_id;
	/* _PyInterpreterFrame */
	uint64_t fr_size, fr_previous, fr_executable, fr_instr_ptr, fr_owner;
	/* PyCodeObject */
	uint64_t co_size, co_filename, co_qualname, co_linetable,
		co_firstlineno, co_code_adaptive;
	/* PyObject, PyBytesObject, PyUnicodeObject */
	uint64_t ob_type;
	uint64_t bytes_ob_size, bytes_ob_sval;
	uint64_t str_state, str_length, str_ascii_size, str_compact_size;
};

/*
 * Decode len bytes from the start of _PyRuntime. Returns 0, or -ENOENT when
 * they do not start with the cookie (not a _Py_DebugOffsets at all), or
 * -ENOTSUP with why (one line naming the version and what does not match):
 * an unknown minor version, a free-threaded build, too few bytes, a group
 * whose sizes do not add up.
 */
int pydbg_decode(const void *buf, size_t len, struct pydbg_offsets *out,
		 char *why, size_t whylen);

#endif
