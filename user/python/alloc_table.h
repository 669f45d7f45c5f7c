/*
 * Finding CPython's allocator tables from its API functions' code.
 * PyObject_Malloc & co. are a jump through a PyMemAllocatorEx table (ctx,
 * malloc, calloc, realloc, free): `_PyObject`/`_PyMem` in 3.11,
 * `_PyRuntime.allocators.standard` from 3.12. In a shared libpython the
 * table's address comes from the GOT first (`mov GOT(%rip),%rax; jmp
 * *0x318(%rax)`); in an executable it is rip-relative (`jmp
 * *_PyObject+8(%rip)`); PGO builds compare the slot with pymalloc's own
 * function before inlining it (`mov slot(%rip),%rax; cmp $_PyObject_Malloc,
 * %rax`). Pure: code bytes in, where the slot is out.
 */
#ifndef MEMTOP_PYTHON_ALLOC_TABLE_H
#define MEMTOP_PYTHON_ALLOC_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How many bytes of a function pytable_find() looks at. */
#define PYTABLE_CODE_BYTES 96

struct pytable_ref {
	/* false: the slot is at addr. true: the slot is at (the pointer
	 * stored at addr) + disp, addr being a GOT entry. */
	bool indirect;
	uint64_t addr; /* link-time address (the code's own addressing) */
	int64_t disp;
	/* Non-zero: the code compares the slot with this function (link-time
	 * address) and runs an inlined copy of it when they are equal, so
	 * while the table holds it, calls never reach it. */
	uint64_t speculated;
};

/*
 * code: len bytes of a function linked at pc. Returns 0 with *out, or
 * -ENOENT when the code reaches no table memtop recognises, -errno when the
 * disassembler cannot start.
 */
int pytable_find(const uint8_t *code, size_t len, uint64_t pc,
		 struct pytable_ref *out);

#endif
