/*
 * The other part of a split function, from the ELF file alone. GCC's
 * hot/cold partitioning (PGO builds: Debian's CPython 3.13-3.15) moves part
 * of _PyEval_EvalFrameDefault into a separate range of .text with its own
 * call-frame entry and no symbol; there the eval loop's dispatch runs, so
 * the return addresses of the calls the loop makes lie in that part, not in
 * the symbol's [st_value, st_value + st_size). The part is the range of the
 * .eh_frame FDE that a direct jump of the function's own code lands in, and
 * whose code jumps back into the function (an unrelated function reached by
 * a tail jump never does). Pure: an Elf in, a range out.
 */
#ifndef MEMTOP_PYTHON_EVAL_PARTS_H
#define MEMTOP_PYTHON_EVAL_PARTS_H

#include <gelf.h>
#include <stdint.h>

/*
 * The FDE covering vaddr in elf's .eh_frame (through .eh_frame_hdr's
 * table): 0 with [*lo, *hi), -ENOENT when none covers it, -ENOTSUP for an
 * encoding memtop does not read.
 */
int fde_range(Elf *elf, uint64_t vaddr, uint64_t *lo, uint64_t *hi);

/*
 * The split-off part of the function at [fn, fn + size): 0 with [*lo, *hi),
 * -ENOENT when the function has none.
 */
int eval_split_part(Elf *elf, uint64_t fn, uint64_t size, uint64_t *lo,
		    uint64_t *hi);

#endif
