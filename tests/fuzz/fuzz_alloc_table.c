/*
 * libFuzzer target: pytable_find (user/python/alloc_table.c) on the code of
 * a function in a binary memtop does not trust. Must not crash, and a found
 * slot is what the code addresses (a direct slot near pc, 2 GiB either way).
 */
#include <errno.h>
#include <stdlib.h>
#include "python/alloc_table.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint64_t pc = 0x100000000ull;
	struct pytable_ref r;
	int rc = pytable_find(data, size, pc, &r);

	/* rip-relative reach: +-2 GiB from the instruction (within the
	 * bytes looked at). */
	if (rc == 0 && (r.addr < pc - (1ull << 31) - 1 ||
			r.addr > pc + (1ull << 31) + 256))
		abort();
	if (rc != 0 && rc != -ENOENT)
		abort();
	return 0;
}
