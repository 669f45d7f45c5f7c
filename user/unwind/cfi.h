/*
 * CFI table compiler: an ELF object's call-frame information (.eh_frame,
 * and .debug_frame where the object has one), read with libdw's CFI API,
 * compiled into the compact sorted rows the BPF unwinder searches
 * (struct mt_unwind_row in bpf/memtop.h): for each pc range of the
 * executable segments, how the caller's frame is found. Pure: no /proc, no
 * BPF, so it is unit-tested on real objects without root.
 */
#ifndef MEMTOP_UNWIND_CFI_H
#define MEMTOP_UNWIND_CFI_H

#include <gelf.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/types.h>
#include "memtop.h"

struct unwind_table;

struct unwind_table_stats {
	size_t nrows;
	uint64_t covered; /* bytes of code some CFI rule covers */
	uint64_t code;	  /* bytes of executable segments */
	size_t bad;	  /* rows with a rule the BPF walk cannot evaluate */
	uint64_t fp;	  /* bytes of code inside a frame-pointer frame */
	uint64_t stub;	  /* covered bytes of PLT stubs (no return address
			     lies there) */
};

/* Compile elf's CFI. -ENOENT when it has no executable segment or no CFI,
 * -E2BIG when its code spans more than 4 GiB, -ENOMEM. */
int unwind_compile_elf(Elf *elf, struct unwind_table **out);
/* The same for the ELF file open at fd (fd is not closed). */
int unwind_compile_fd(int fd, struct unwind_table **out);

const struct mt_unwind_row *unwind_table_rows(const struct unwind_table *t,
					      size_t *nrows);
/* The ELF virtual address that row pc 0 stands for. */
uint64_t unwind_table_base(const struct unwind_table *t);
/* The row covering ELF virtual address vaddr, or NULL outside the table. */
const struct mt_unwind_row *unwind_table_find(const struct unwind_table *t,
					      uint64_t vaddr);
void unwind_table_stats(const struct unwind_table *t,
			struct unwind_table_stats *out);
void unwind_table_free(struct unwind_table *t);

#endif
