/*
 * Go's own function table (the .gopclntab section): function names and
 * file:line for a pc in a Go binary, stripped or not. Go 1.16 and later
 * (magic 0xfffffffa for 1.16-1.17, 0xfffffff0 for 1.18-1.19, 0xfffffff1
 * for 1.20 and later), little-endian, 4- or 8-byte pointers. The bytes
 * come from the file and are trusted in nothing: every offset is checked
 * against the section.
 */
#ifndef MEMTOP_GOPCLNTAB_H
#define MEMTOP_GOPCLNTAB_H

#include <stddef.h>
#include <stdint.h>

struct gopclntab;

/*
 * A decoder of data[0..len), which must outlive it (nothing is copied).
 * text_addr is where the binary's text starts (the .text section's
 * address), used when the table does not say (before Go 1.18, or a header
 * left zero for a relocation to fill in). Returns 0, -EINVAL for bytes that
 * are not a table of a version this reads, or -ENOMEM.
 */
int gopclntab_open(const void *data, size_t len, uint64_t text_addr,
		   struct gopclntab **out);
void gopclntab_free(struct gopclntab *t);

struct gopclntab_loc {
	/* The function's name as Go spells it
	 * ("github.com/x/y.(*T).method"); points into the section, not
	 * NUL-terminated. */
	const char *func;
	size_t func_len;
	/* The source file's path as the table holds it, or NULL. */
	const char *file;
	size_t file_len;
	int line; /* 0 when unknown */
	uint64_t entry;
};

/*
 * The function covering pc (an address in the binary as linked) and the
 * file:line of the instruction at pc. Returns 0, or -ENOENT when no Go
 * function covers pc, -EINVAL when the table's entry for it is malformed.
 */
int gopclntab_lookup(const struct gopclntab *t, uint64_t pc,
		     struct gopclntab_loc *out);

/*
 * The table of an ELF file's .gopclntab section (gopclntab_elf.c), which
 * points into elf's data: 0, -ENOENT when there is none, or as
 * gopclntab_open.
 */
typedef struct Elf Elf;
int gopclntab_open_elf(Elf *elf, struct gopclntab **out);

/* Functions in the table; their entries, for tests and the fuzzer. The
 * last, gopclntab_entry(t, nfunc), is the end of Go's text. */
size_t gopclntab_nfunc(const struct gopclntab *t);
uint64_t gopclntab_entry(const struct gopclntab *t, size_t i);

#endif
