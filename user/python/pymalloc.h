/*
 * Finding pymalloc's usedpools[] in a CPython process from its shape, so
 * the BPF side can tell what a small allocation will return (see
 * bpf/pymalloc.bpf.h). usedpools[2 * c] and [2 * c + 1] are the next and
 * previous links of a fake pool header of size class c, placed 16 bytes
 * before them: an unused class links to itself, a used one to pools
 * (POOL_SIZE-aligned in arenas) whose own links and size class point back.
 * Its place differs by version (a static in 3.11, in _PyRuntime or the
 * main interpreter later) and no symbol is needed: the interpreter's
 * writable data is searched. The 64 words and the pools they name must
 * all agree, so nothing else matches.
 */
#ifndef MEMTOP_PYTHON_PYMALLOC_H
#define MEMTOP_PYTHON_PYMALLOC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PYMALLOC_CLASSES 32 /* 512-byte threshold, 16-byte alignment */

/* Read the word at addr of the target into *val: 0, or -errno. */
typedef int (*pymalloc_read_fn)(void *arg, uint64_t addr, uint64_t *val);

/*
 * Pure: n words of the target's memory read from base. Returns 1 with
 * *out = the address of usedpools[0], 0 when nothing there has its shape,
 * -EEXIST when two places do (then none is trusted).
 */
int pymalloc_match(const uint64_t *w, size_t n, uint64_t base,
		   pymalloc_read_fn rd, void *arg, uint64_t *out);

/*
 * Search the writable data of the file mapped at code_addr in pid (the
 * CPython runtime) and the anonymous mapping after it (its .bss). Returns
 * 1 with *out, 0 when not found, -errno.
 */
int pymalloc_find(pid_t pid, uint64_t code_addr, uint64_t *out);

#endif
