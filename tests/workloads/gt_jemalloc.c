/*
 * gt_jemalloc: linked with -ljemalloc, so malloc/calloc/realloc/free resolve
 * to libjemalloc.so.2; memtop must be pointed at that library with --lib.
 */
#include "gt_common.h"

static void *volatile sink;

GT_NOINLINE static void je_alloc(void)
{
	for (int i = 0; i < 5; i++)
		if (!(sink = malloc(700)))
			gt_die("malloc");
	if (!(sink = calloc(9, 99)))
		gt_die("calloc");
	gt_add("je_alloc", 5 * 700 + 9 * 99, 6);
	gt_cum("je_alloc", 6, 0);
}

GT_NOINLINE static void je_free_some(void)
{
	void *p[12];
	for (int i = 0; i < 12; i++)
		if (!(p[i] = malloc(3333)))
			gt_die("malloc");
	for (int i = 0; i < 8; i++)
		free(p[i]);
	sink = p[11];
	gt_add("je_free_some", 4 * 3333, 4);
	gt_cum("je_free_some", 12, 8);
}

GT_NOINLINE static void je_big(void)
{
	/* Large size class (own extent in jemalloc). */
	if (!(sink = malloc(300000)))
		gt_die("malloc");
	gt_add("je_big", 300000, 1);
}

int main(void)
{
	gt_setup();
	free(malloc(10));
	free(calloc(1, 10));
	gt_ready_and_wait();

	je_alloc();
	je_free_some();
	je_big();

	gt_report(-1);
	gt_done_and_wait();
	return 0;
}
