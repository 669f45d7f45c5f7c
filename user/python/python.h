/*
 * CPython support: detect a CPython runtime among a process's
 * mapped files, give the BPF side the layout of its thread state and frames
 * (a per-version table, checked against the binary and the live process),
 * splice the Python frames the BPF side captured into the native stack where
 * the evaluation loop's frames are, and name them from the code objects
 * (process_vm_readv: qualified name, file, line from the location table).
 *
 * Python frames travel through the collector as ips tagged with
 * MT_IP_INTERP_TAG (an index into a table here), so the collector and the
 * views need no Python knowledge: python_symbolize() names them.
 */
#ifndef MEMTOP_PYTHON_H
#define MEMTOP_PYTHON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/types.h>
#include "memtop.h"
#include "symbolizer.h"

enum python_mode {
	PYTHON_AUTO = 0, /* Python probes and frames where CPython is found */
	PYTHON_ON, /* the same, and a -p target that is not CPython is an error
		    */
	PYTHON_OFF,
};

int python_mode_parse(const char *s, enum python_mode *out);

/* Could path (a mapped file's name) be a CPython runtime? Cheap, by name. */
bool python_candidate(const char *path);

/*
 * path (opened through /proc/PID/root) is mapped at map_start with file
 * offset 0 in pid. Returns 1 when it is a CPython runtime whose frames are
 * supported (*out filled for the "py_procs" map, pid registered for
 * python_splice/python_symbolize), 0 when it is not CPython, or -ENOTSUP
 * when it is a CPython whose frames cannot be read (an unsupported version,
 * or a layout check failed): note says why, in one line.
 */
int python_detect(pid_t pid, const char *path, uint64_t map_start,
		  struct mt_py_proc *out, char *note, size_t notelen);
/* The version of a supported CPython pid: 0, or -ENOENT. */
int python_version(pid_t pid, unsigned *major, unsigned *minor);
/* Collections the cyclic garbage collector has run in pid, all
 * generations: 0, or -ENOENT (not a supported CPython), -EFAULT. */
int python_gc_collections(pid_t pid, uint64_t *out);
/* Was pid found to be CPython (any version)? */
bool python_known(pid_t pid);

/*
 * Put py's frames into st in place of the evaluation loop frames (one group
 * of Python frames, up to an is_entry frame, per native eval frame); the
 * groups left over go outermost. Python frames become tagged ips.
 */
void python_splice(pid_t pid, struct mt_stack *st,
		   const struct mt_py_stack *py);
/* Name a tagged ip: func = qualified name, file = basename, line. */
int python_symbolize(pid_t pid, uint64_t ip, struct sym_info *out);

/* Decode a 3.11/3.12 location table: the line of code unit `instr`, or -1. */
int python_linetable_line(const uint8_t *tab, size_t len, int firstlineno,
			  int instr);

/*
 * The functions pid's interpreter allocates through now: its object and
 * mem domains' allocator tables (found by python_detect from the code of
 * PyObject_Malloc/PyObject_Free/PyMem_Malloc/PyMem_Free), read live:
 * pymalloc's _PyObject_Malloc & co. by default, tracemalloc's hooks while it
 * traces, whatever PYTHONMALLOC or PyMem_SetAllocator put there. kind is the
 * probe cookie (MT_K_* | MT_K_CTX_ARG: the table's ctx comes first).
 * Returns how many (distinct), or -ENOENT when no table was found.
 * *inlined: the build (PGO) runs inlined copies of the functions the tables
 * hold now, in its callers: those calls reach no probe.
 */
struct python_alloc_fn {
	uint64_t addr;
	uint32_t kind;
	/* Its table's context is NULL: CPython's own allocator (pymalloc, or
	 * malloc or mimalloc as PYTHONMALLOC says), not a hook wrapping one
	 * (tracemalloc, the debug hooks), which may allocate more inside. */
	bool plain;
};
#define PYTHON_MAX_ALLOC_FNS 8
int python_alloc_fns(pid_t pid, struct python_alloc_fn *out, int max,
		     bool *inlined);

/* Why pid's Python frames are not read, as "Python frames (WHY)"; "" when
 * they are (or it is not CPython). Returns the length. */
int python_frames_note(pid_t pid, char *buf, size_t len);

void python_forget(pid_t pid);
void python_free_all(void);

#endif
