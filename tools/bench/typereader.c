/*
 * typereader: the cost of objects by type (--types), in memtop's own code
 * (user/python/objects.c, types.c) against real memory through real
 * process_vm_readv calls: this process lays out N objects the way pymalloc
 * does (packed in 16 KiB pools, headers of 200 distinct types, a GC header
 * and pre-header on a quarter of them) and reads itself. Prints the CPU
 * time (CLOCK_PROCESS_CPUTIME_ID) of the first refresh, which reads every
 * header, and of a second, which reads none (the steady state). Blocks are
 * given in a scattered order, as the live map's hash order gives them.
 *
 *   typereader [N]     default 1000000
 * Output: "objects N first_ms X steady_ms Y typed T"
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/types.h>
#include "python/objects.h"
#include "python/types.h"

#define NTYPES 200
#define OBJ    64 /* bytes a block */

static uint8_t types[NTYPES + 1][1024] __attribute__((aligned(64)));
static char names[NTYPES][32];

static double cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
	struct raw_sample raw = {0};
	struct pyt_layout lay;
	struct objects *o;
	uint8_t *heap;
	uint64_t typed = 0;
	double t0, first = 0, steady = 0;
	uint32_t pid = (uint32_t)getpid();

	pyt_layout_for(12, &lay);
	/* types[NTYPES] is the metatype, its own type. */
	put64(types[NTYPES] + 8, (uint64_t)(uintptr_t)types[NTYPES]);
	put64(types[NTYPES] + 168, (1ull << 12) | (1ull << 31));
	for (int i = 0; i <= NTYPES; i++) {
		if (i < NTYPES) {
			snprintf(names[i], sizeof(names[i]), "Type%d", i);
			put64(types[i] + 8, (uint64_t)(uintptr_t)types[NTYPES]);
			/* A quarter are GC types with a managed dict. */
			put64(types[i] + 168,
			      (1ull << 12) |
				      (i % 4 == 0 ? (1ull << 14) | (1ull << 4)
						  : 0));
		}
		put64(types[i] + 24,
		      (uint64_t)(uintptr_t)(i < NTYPES ? names[i] : "type"));
		put64(types[i] + 32, 16);
	}
	heap = aligned_alloc(16384, n * OBJ);
	if (!heap) {
		perror("typereader: aligned_alloc");
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		int t = (int)(i * 7919 % NTYPES);
		unsigned off = t % 4 == 0 ? 32 : 0;

		memset(heap + i * OBJ, 0, OBJ);
		put64(heap + i * OBJ + off, 1); /* ob_refcnt */
		put64(heap + i * OBJ + off + 8, (uint64_t)(uintptr_t)types[t]);
	}
	if (objects_new(&o, (unsigned)n))
		return 1;
	objects_set_process(o, pid, &lay, NULL);
	for (int round = 0; round < 2; round++) {
		sample_reset(&raw);
		sample_add_proc(&raw, pid);
		t0 = cpu_ms();
		objects_begin(o);
		/* In a hash map's order, as the live map gives them (the
		 * same both times): a permutation of the heap. */
		for (size_t k = 0; k < n; k++) {
			size_t i = (size_t)((k * 2654435761ull) % n);

			objects_block(o, pid,
				      (uint64_t)(uintptr_t)(heap + i * OBJ), 48,
				      1 + i % 1000);
		}
		if (objects_end(o, &raw))
			return 1;
		if (round == 0)
			first = cpu_ms() - t0;
		else
			steady = cpu_ms() - t0;
	}
	for (size_t i = 0; i < raw.ntypes; i++)
		typed += (uint64_t)raw.types[i].objects;
	printf("objects %zu first_ms %.1f steady_ms %.1f typed %llu\n", n,
	       first, steady, (unsigned long long)typed);
	objects_free(o);
	sample_free(&raw);
	free(heap);
	return typed == n ? 0 : 1;
}
