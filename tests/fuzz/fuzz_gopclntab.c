/*
 * libFuzzer target: the .gopclntab reader (user/symbol/gopclntab.c) on a
 * section read from a binary, which memtop does not trust. Input: a pc
 * seed (8 bytes, little-endian), then the section. Every function's entry,
 * the byte after it and the seed pc are looked up; what is found must lie
 * inside the section, and the same table cut short must find the same
 * function and line, or nothing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "gopclntab.h"

static int same_or_none(const uint8_t *full, const uint8_t *cut,
			const struct gopclntab_loc *a,
			const struct gopclntab_loc *c)
{
	if ((const uint8_t *)c->func - cut != (const uint8_t *)a->func - full ||
	    c->func_len != a->func_len || c->entry != a->entry)
		return 0;
	if (c->line && c->line != a->line)
		return 0;
	return !c->file || (const uint8_t *)c->file - cut ==
				   (const uint8_t *)a->file - full;
}

static void inside(const uint8_t *buf, size_t len, const char *s, size_t n)
{
	if (s && ((const uint8_t *)s < buf || n > len ||
		  (size_t)((const uint8_t *)s - buf) > len - n))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gopclntab *t = NULL, *tc = NULL;
	uint64_t seed, pcs[3];
	uint8_t *copy, *cut;
	size_t len, nfunc, i, clen;

	if (size < 8)
		return 0;
	memcpy(&seed, data, 8);
	len = size - 8;
	/* Exact-size copies, so ASan sees a read past the end. */
	copy = malloc(len ? len : 1);
	clen = len - len / 8;
	cut = malloc(clen ? clen : 1);
	if (!copy || !cut)
		goto out;
	memcpy(copy, data + 8, len);
	memcpy(cut, data + 8, clen);
	if (gopclntab_open(copy, len, 0x1000, &t))
		goto out;
	if (gopclntab_open(cut, clen, 0x1000, &tc))
		tc = NULL;
	nfunc = gopclntab_nfunc(t);
	for (i = 0; i <= nfunc && i < 256; i++) {
		pcs[0] = gopclntab_entry(t, i);
		pcs[1] = pcs[0] + 1;
		pcs[2] = i ? seed + i : seed;
		for (int k = 0; k < 3; k++) {
			struct gopclntab_loc a, c;

			if (gopclntab_lookup(t, pcs[k], &a))
				continue;
			if (!a.func || !a.func_len)
				abort();
			inside(copy, len, a.func, a.func_len);
			inside(copy, len, a.file, a.file_len);
			if (tc && !gopclntab_lookup(tc, pcs[k], &c) &&
			    !same_or_none(copy, cut, &a, &c))
				abort();
		}
	}
out:
	gopclntab_free(tc);
	gopclntab_free(t);
	free(cut);
	free(copy);
	return 0;
}
