/*
 * gt_many: after SIGUSR1 keeps GT_MANY (default 5000) blocks of 100 bytes
 * live from one function, more than a small --max-allocs can track: memtop
 * must count the allocations it could not track as lost and keep the
 * figures for the ones it tracks consistent.
 */
#include "gt_common.h"

static void *blocks[100000];

GT_NOINLINE static void many_alloc(int n)
{
	for (int i = 0; i < n; i++)
		if (!(blocks[i] = malloc(100)))
			gt_die("malloc");
	gt_add("many_alloc", 100LL * n, n);
}

int main(void)
{
	const char *e = getenv("GT_MANY");
	int n = e ? atoi(e) : 5000;

	if (n < 1 || n > 100000)
		n = 5000;
	gt_setup();
	free(malloc(10));
	gt_ready_and_wait();

	many_alloc(n);

	gt_report(-1);
	gt_done_and_wait();
	return 0;
}
