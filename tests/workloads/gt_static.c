/*
 * gt_static: statically linked (the Makefile adds -static), so malloc and
 * friends live in the executable itself; memtop must be pointed at it with
 * --lib /proc/PID/exe (or the binary's path).
 */
#include "gt_common.h"

static void *volatile sink;
static void *warm[4];

GT_NOINLINE static void static_malloc(void)
{
	for (int i = 0; i < 4; i++)
		if (!(sink = malloc(3000)))
			gt_die("malloc");
	gt_add("static_malloc", 4 * 3000, 4);
	gt_cum("static_malloc", 4, 0);
}

GT_NOINLINE static void static_calloc(void)
{
	for (int i = 0; i < 3; i++)
		if (!(sink = calloc(11, 111)))
			gt_die("calloc");
	gt_add("static_calloc", 3 * 11 * 111, 3);
}

GT_NOINLINE static void static_free_some(void)
{
	void *p[10];
	for (int i = 0; i < 10; i++)
		if (!(p[i] = malloc(640)))
			gt_die("malloc");
	for (int i = 0; i < 7; i++)
		free(p[i]);
	sink = p[9];
	gt_add("static_free_some", 3 * 640, 3);
	gt_cum("static_free_some", 10, 7);
}

GT_NOINLINE static void static_realloc(void)
{
	void *p = realloc(NULL, 2000);
	if (!p)
		gt_die("realloc");
	sink = p;
	gt_add("static_realloc", 2000, 1);
}

GT_NOINLINE static void free_pre_attach(void)
{
	for (int i = 0; i < 4; i++)
		free(warm[i]);
}

int main(void)
{
	gt_setup();
	free(calloc(1, 10));
	free(realloc(NULL, 10));
	for (int i = 0; i < 4; i++)
		warm[i] = malloc(48);
	gt_ready_and_wait();

	static_malloc();
	static_calloc();
	static_free_some();
	static_realloc();
	free_pre_attach();

	gt_report(4);
	gt_done_and_wait();
	return 0;
}
