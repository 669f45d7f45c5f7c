/*
 * libFuzzer target: the object header decoder (user/python/types.c) on a
 * target address space made of the input: its bytes are memory at 0x10000,
 * everything else unmapped. The first byte picks the version; the block
 * heads at each 64-byte step are decoded as memtop decodes a live block:
 * each candidate offset's ob_type validated and named, and checked to fit.
 */
#include <stdint.h>
#include <string.h>
#include "python/types.h"

#define BASE 0x10000ull

struct img {
	const uint8_t *p;
	size_t n;
};

static int rd(void *ctx, uint64_t addr, void *buf, size_t len)
{
	const struct img *m = ctx;

	if (addr < BASE || addr - BASE > m->n || len > m->n - (addr - BASE))
		return -1;
	memcpy(buf, m->p + (addr - BASE), len);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned offs[] = {0, 16, 32};
	struct img m = {data, size};
	struct pyt_layout l;
	struct pyt_type t;

	if (size < 1 || pyt_layout_for(11 + data[0] % 5, &l))
		return 0;
	for (size_t b = 0; b + PYT_HEAD_BYTES <= size && b < 64 * 64; b += 64) {
		for (size_t i = 0; i < 3; i++) {
			uint64_t ta;

			if (!pyt_candidate(data + b, PYT_HEAD_BYTES, offs[i],
					   &ta))
				continue;
			if (!pyt_read_type(&l, rd, &m, ta, &t)) {
				/* A named type's name is a terminated string.
				 */
				if (!memchr(t.name, '\0', sizeof(t.name)))
					__builtin_trap();
				(void)pyt_fits(&l, &t, offs[i], data[b] * 8u);
			}
		}
	}
	return 0;
}
