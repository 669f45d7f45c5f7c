/*
 * Unit test of pymalloc's usedpools finder on memory laid out as CPython's
 * obmalloc lays it out, in this process: a usedpools[] with some size
 * classes empty (linked to themselves) and others heading lists of real
 * page-aligned pool headers, among decoys (zeros, a self-linked array whose
 * pools do not link back, a pool of the wrong size class); then two copies
 * (ambiguous) and a truncated region.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "python/pymalloc.h"

struct pool {
	uint64_t ref, freeblock, next, prev;
	uint32_t arenaindex, szidx;
};

#define NPOOLS 8
static struct pool *pools[NPOOLS];

/* Reads only inside the pools, as the target's memory would fault. */
static int rd(void *arg, uint64_t addr, uint64_t *val)
{
	(void)arg;
	for (int i = 0; i < NPOOLS; i++) {
		uint64_t p = (uint64_t)(uintptr_t)pools[i];

		if (addr >= p && addr + 8 <= p + 4096) {
			memcpy(val, (void *)(uintptr_t)addr, 8);
			return 0;
		}
	}
	return -EFAULT;
}

/* usedpools[] at words w (address base + 8 * at): classes 3 and 7 hold
 * pools 0 and 1..2 (a list of two), the rest are empty. */
static void lay_out(uint64_t *w, uint64_t base, size_t at)
{
	uint64_t a = base + 8 * at;

	for (int c = 0; c < PYMALLOC_CLASSES; c++)
		w[at + 2 * c] = w[at + 2 * c + 1] = a + 16 * (uint64_t)c - 16;
	w[at + 6] = w[at + 7] = (uint64_t)(uintptr_t)pools[0];
	pools[0]->next = pools[0]->prev = a + 16 * 3 - 16;
	pools[0]->szidx = 3;
	w[at + 14] = (uint64_t)(uintptr_t)pools[1];
	w[at + 15] = (uint64_t)(uintptr_t)pools[2];
	pools[1]->prev = pools[2]->next = a + 16 * 7 - 16;
	pools[1]->next = (uint64_t)(uintptr_t)pools[2];
	pools[2]->prev = (uint64_t)(uintptr_t)pools[1];
	pools[1]->szidx = pools[2]->szidx = 7;
}

int main(void)
{
	enum { N = 1024 };
	uint64_t *w = calloc(N, 8), base, out = 0;
	int rc;

	for (int i = 0; i < NPOOLS; i++) {
		pools[i] = aligned_alloc(4096, 4096);
		memset(pools[i], 0, 4096);
	}
	base = (uint64_t)(uintptr_t)w;
	/* A decoy: self-linked like an empty array, but a class whose
	 * "pool" (pool 3) links elsewhere. */
	for (int c = 0; c < PYMALLOC_CLASSES; c++)
		w[10 + 2 * c] = w[11 + 2 * c] =
			base + 80 + 16 * (uint64_t)c - 16;
	w[10] = w[11] = (uint64_t)(uintptr_t)pools[3];
	lay_out(w, base, 300);
	rc = pymalloc_match(w, N, base, rd, NULL, &out);
	check(rc == 1 && out == base + 8 * 300,
	      "usedpools found at word 300 (rc %d, word %lld)", rc,
	      (long long)(out - base) / 8);
	/* Every class empty: nothing in use, nothing to predict, and no
	 * evidence it is pymalloc's: not trusted. */
	{
		uint64_t *e = calloc(N, 8), eb = (uint64_t)(uintptr_t)e;

		for (int c = 0; c < PYMALLOC_CLASSES; c++)
			e[2 * c] = e[2 * c + 1] = eb + 16 * (uint64_t)c - 16;
		check(pymalloc_match(e, N, eb, rd, NULL, &out) == 0,
		      "an array with no pool in use is not taken");
		free(e);
	}
	/* A pool of the wrong size class. */
	pools[0]->szidx = 4;
	check(pymalloc_match(w, N, base, rd, NULL, &out) == 0,
	      "a pool whose size class differs: not found");
	pools[0]->szidx = 3;
	/* A tail pool whose next link does not come back. */
	pools[2]->next = 0;
	check(pymalloc_match(w, N, base, rd, NULL, &out) == 0,
	      "a list that does not come back: not found");
	pools[2]->next = base + 8 * 300 + 16 * 7 - 16;
	/* Cut inside the array. */
	check(pymalloc_match(w, 300 + 40, base, rd, NULL, &out) == 0,
	      "a region ending inside the array: not found");
	/* Two arrays that both check out: ambiguous, neither trusted. The
	 * second one's classes use other pools. */
	{
		uint64_t a2 = base + 8 * 600;

		for (int c = 0; c < PYMALLOC_CLASSES; c++)
			w[600 + 2 * c] = w[601 + 2 * c] =
				a2 + 16 * (uint64_t)c - 16;
		w[600] = w[601] = (uint64_t)(uintptr_t)pools[4];
		pools[4]->next = pools[4]->prev = a2 - 16;
		pools[4]->szidx = 0;
		check(pymalloc_match(w, N, base, rd, NULL, &out) == -EEXIST,
		      "two matching arrays: ambiguous");
	}
	for (int i = 0; i < NPOOLS; i++)
		free(pools[i]);
	free(w);
	printf("%d/%d checks failed\n", failures, checks);
	return failures != 0;
}
