/*
 * libFuzzer target: pydbg_decode (user/python/debug_offsets.c) on the first
 * bytes of a _PyRuntime, which come from a file or process memtop does not
 * trust. Accepted offsets must lie inside their structures; a refusal is one
 * non-empty line.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "python/debug_offsets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pydbg_offsets o;
	char why[256];
	int rc = pydbg_decode(data, size, &o, why, sizeof(why));

	if (rc == 0) {
		if (o.struct_size > size || o.major != 3 ||
		    o.ts_native_thread_id + 8 > o.ts_size ||
		    o.ts_current_frame + 8 > o.ts_size ||
		    o.fr_owner + 1 > o.fr_size ||
		    o.fr_previous + 8 > o.fr_size ||
		    o.fr_instr_ptr + 8 > o.fr_size || o.ts_size > 0xffff ||
		    o.fr_size > 0xffff || o.co_code_adaptive > o.co_size ||
		    o.str_ascii_size > o.str_compact_size)
			abort();
	} else if (rc == -ENOTSUP) {
		if (!why[0] || strchr(why, '\n'))
			abort();
	} else if (rc != -ENOENT) {
		abort();
	}
	return 0;
}
