/*
 * Choosing where in an allocator function its uprobe goes, so the kernel
 * emulates the probed instruction instead of single-stepping it.
 */
#ifndef MEMTOP_PLACEMENT_H
#define MEMTOP_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * code: the function's first bytes. null_skips: the function does nothing
 * for a NULL first argument (free, delete), so a leading NULL check may be
 * skipped. *offset: bytes from the entry to probe at (0 = the entry).
 * Returns 0, or -errno when the disassembler cannot start.
 */
int placement_choose(const uint8_t *code, size_t len, bool null_skips,
		     uint64_t *offset);

#endif
