/*
 * gt_basic: one noinline function per allocator entry point, each with an
 * exactly known outstanding size and count (see gt_common.h for the
 * protocol). Where the allocator's behaviour decides the answer (does a
 * realloc move?), the workload looks at the returned pointer and books the
 * bytes at the site memtop must attribute them to.
 */
#include <malloc.h>
#include <stdint.h>
#include "gt_common.h"

#define WARM_N	  8
#define WARM_SIZE 64
#define WARM_FREE 6 /* freed after attach: unknown frees */

static void *warm[WARM_N];
static void *volatile sink; /* keeps pointers observable */
static volatile size_t huge = SIZE_MAX / 2;
static int no_pvalloc; /* GT_NO_PVALLOC=1: valgrind aborts on pvalloc */

GT_NOINLINE static void warm_up(void)
{
	/* Touch every entry point once so libc (and the PLT) is initialised. */
	free(malloc(10));
	free(calloc(2, 10));
	free(realloc(NULL, 10));
	free(reallocarray(NULL, 2, 10));
	void *p = NULL;
	if (posix_memalign(&p, 64, 10) == 0)
		free(p);
	free(aligned_alloc(64, 64));
	free(memalign(64, 10));
	free(valloc(10));
	if (!no_pvalloc)
		free(pvalloc(10));
	for (int i = 0; i < WARM_N; i++)
		if (!(warm[i] = malloc(WARM_SIZE)))
			gt_die("warm malloc");
	gt_warm_bytes = (long long)(WARM_N - WARM_FREE) * WARM_SIZE;
	gt_warm_blocks = WARM_N - WARM_FREE;
}

GT_NOINLINE static void alloc_malloc(void)
{
	for (int i = 0; i < 10; i++) {
		if (!(sink = malloc(1000)))
			gt_die("malloc");
	}
	gt_add("alloc_malloc", 10 * 1000, 10);
	gt_cum("alloc_malloc", 10, 0);
}

GT_NOINLINE static void alloc_calloc(void)
{
	for (int i = 0; i < 3; i++) {
		if (!(sink = calloc(7, 300)))
			gt_die("calloc");
	}
	gt_add("alloc_calloc", 3 * 7 * 300, 3);
	gt_cum("alloc_calloc", 3, 0);
}

GT_NOINLINE static void alloc_realloc_null(void)
{
	for (int i = 0; i < 2; i++) {
		if (!(sink = realloc(NULL, 4096)))
			gt_die("realloc(NULL)");
	}
	gt_add("alloc_realloc_null", 2 * 4096, 2);
	gt_cum("alloc_realloc_null", 2, 0);
}

GT_NOINLINE static void *realloc_move_src(void)
{
	void *p = malloc(16);
	if (!p)
		gt_die("malloc");
	return p;
}

GT_NOINLINE static void alloc_realloc_move(void *p)
{
	void *q = realloc(p, 1 << 20);
	if (!q)
		gt_die("realloc move");
	sink = q;
	gt_declare("realloc_move_src");
	if (q != p)
		gt_add("alloc_realloc_move", 1 << 20, 1);
	else /* grew in place: stays at the malloc's site */
		gt_add("realloc_move_src", 1 << 20, 1);
}

GT_NOINLINE static void *realloc_inplace_src(void)
{
	void *p = malloc(100000);
	if (!p)
		gt_die("malloc");
	return p;
}

GT_NOINLINE static void alloc_realloc_inplace(void *p)
{
	void *q = realloc(p, 90000);
	if (!q)
		gt_die("realloc shrink");
	sink = q;
	gt_declare("realloc_inplace_src");
	gt_declare("alloc_realloc_inplace");
	if (q == p)
		gt_add("realloc_inplace_src", 90000, 1);
	else
		gt_add("alloc_realloc_inplace", 90000, 1);
}

GT_NOINLINE static void realloc_zero(void)
{
	void *p = malloc(777);
	if (!p)
		gt_die("malloc");
	void *q = realloc(p, 0); /* glibc: frees p, returns NULL */
	if (q)
		free(q);
	gt_declare("realloc_zero");
}

GT_NOINLINE static void *realloc_fail_src(void)
{
	void *p = malloc(500);
	if (!p)
		gt_die("malloc");
	return p;
}

GT_NOINLINE static void realloc_fail(void *p)
{
	void *q = realloc(p, huge);
	if (q)
		gt_die("realloc(SIZE_MAX/2) succeeded");
	sink = p;
	gt_add("realloc_fail_src", 500, 1);
	gt_declare("realloc_fail");
}

GT_NOINLINE static void alloc_reallocarray(void)
{
	for (int i = 0; i < 2; i++) {
		if (!(sink = reallocarray(NULL, 12, 100)))
			gt_die("reallocarray");
	}
	/* Overflowing nmemb * size fails with ENOMEM: records nothing. */
	if (reallocarray(NULL, huge, 4))
		gt_die("reallocarray overflow succeeded");
	gt_add("alloc_reallocarray", 2 * 12 * 100, 2);
}

GT_NOINLINE static void alloc_posix_memalign(void)
{
	for (int i = 0; i < 4; i++) {
		void *p = NULL;
		if (posix_memalign(&p, 64, 5000) != 0)
			gt_die("posix_memalign");
		sink = p;
	}
	void *bad = NULL;
	if (posix_memalign(&bad, 3, 100) != EINVAL)
		gt_die("posix_memalign(3) did not fail with EINVAL");
	gt_add("alloc_posix_memalign", 4 * 5000, 4);
}

GT_NOINLINE static void alloc_aligned_alloc(void)
{
	for (int i = 0; i < 2; i++) {
		if (!(sink = aligned_alloc(256, 2048)))
			gt_die("aligned_alloc");
	}
	gt_add("alloc_aligned_alloc", 2 * 2048, 2);
}

GT_NOINLINE static void alloc_memalign(void)
{
	for (int i = 0; i < 3; i++) {
		if (!(sink = memalign(128, 3000)))
			gt_die("memalign");
	}
	gt_add("alloc_memalign", 3 * 3000, 3);
}

GT_NOINLINE static void alloc_valloc(void)
{
	for (int i = 0; i < 2; i++) {
		if (!(sink = valloc(5000)))
			gt_die("valloc");
	}
	gt_add("alloc_valloc", 2 * 5000, 2);
}

GT_NOINLINE static void alloc_pvalloc(void)
{
	gt_declare("alloc_pvalloc");
	if (no_pvalloc)
		return;
	if (!(sink = pvalloc(5000)))
		gt_die("pvalloc");
	gt_add("alloc_pvalloc", 5000, 1); /* requested, not rounded */
}

/* A stack deeper than the short-stack map holds (31 frames): kept whole. */
#define DEEP_LEVELS 40

GT_NOINLINE static void alloc_deep(void)
{
	for (int i = 0; i < 2; i++) {
		if (!(sink = malloc(777)))
			gt_die("deep malloc");
	}
	gt_add("alloc_deep", 2 * 777, 2);
	gt_cum("alloc_deep", 2, 0);
}

GT_NOINLINE static void deep_recurse(int n)
{
	if (n > 1)
		deep_recurse(n - 1);
	else
		alloc_deep();
	__asm__ volatile("" ::: "memory"); /* a call, not a jump */
}

GT_NOINLINE static void free_some(void)
{
	void *p[20];
	for (int i = 0; i < 20; i++)
		if (!(p[i] = malloc(200)))
			gt_die("malloc");
	for (int i = 0; i < 15; i++)
		free(p[i]);
	sink = p[19];
	gt_add("free_some", 5 * 200, 5);
	gt_cum("free_some", 20, 15);
}

GT_NOINLINE static void free_null(void)
{
	free(NULL);
	gt_declare("free_null");
}

GT_NOINLINE static void free_pre_attach(void)
{
	for (int i = 0; i < WARM_FREE; i++)
		free(warm[i]);
}

int main(void)
{
	gt_setup();
	const char *np = getenv("GT_NO_PVALLOC");
	no_pvalloc = np && *np && strcmp(np, "0") != 0;
	warm_up();
	gt_ready_and_wait();

	alloc_malloc();
	deep_recurse(DEEP_LEVELS);
	alloc_calloc();
	alloc_realloc_null();
	alloc_realloc_move(realloc_move_src());
	alloc_realloc_inplace(realloc_inplace_src());
	realloc_zero();
	realloc_fail(realloc_fail_src());
	alloc_reallocarray();
	alloc_posix_memalign();
	alloc_aligned_alloc();
	alloc_memalign();
	alloc_valloc();
	alloc_pvalloc();
	free_some();
	free_null();
	free_pre_attach();

	gt_report(WARM_FREE);
	gt_done_and_wait();
	return 0;
}
