/*
 * libFuzzer target: python_linetable_line (user/python/python.c) on a
 * location table read from a traced interpreter's memory, which memtop does
 * not trust. Input: first line (4 bytes, little-endian), code unit (4 bytes),
 * then the table. The decoder must stay inside the table, and a truncated
 * table must give the full table's line or -1, never another line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "python.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int32_t first, unit;
	const uint8_t *tab;
	uint8_t *copy;
	size_t len;
	int full;

	if (size < 8)
		return 0;
	memcpy(&first, data, 4);
	memcpy(&unit, data + 4, 4);
	/* Lines and units as CPython has them: no overflow in the sums. */
	first &= 0xffffff;
	unit &= 0xffffff;
	tab = data + 8;
	len = size - 8;
	/* An exact-size copy, so ASan sees a read past the end. */
	copy = malloc(len ? len : 1);
	if (!copy)
		return 0;
	memcpy(copy, tab, len);
	full = python_linetable_line(copy, len, first, unit);
	for (size_t cut = len > 64 ? len - 64 : 0; cut < len; cut++) {
		int part = python_linetable_line(copy, cut, first, unit);

		if (part != -1 && part != full)
			abort();
	}
	free(copy);
	return 0;
}
