/*
 * gt_stackfill: after SIGUSR1 makes GT_STACKS (default 360) distinct call
 * stacks that each allocate and free one block (churn that fills a small
 * --max-stacks with sites holding nothing), then for GT_KEEP_MS (default
 * 6000) keeps one 64-byte block every 20 ms from keep_new. memtop must give
 * the idle empty sites' room back soon enough for keep_new's stack to be
 * stored, not only after --reclaim-after.
 */
#include "gt_common.h"
#include <time.h>

GT_NOINLINE static void leaf_a(void)
{
	free(malloc(32));
}

GT_NOINLINE static void leaf_b(void)
{
	free(malloc(48));
}

GT_NOINLINE static void leaf_c(void)
{
	free(malloc(80));
}

GT_NOINLINE static void descend(int d, int leaf)
{
	if (d > 0) {
		descend(d - 1, leaf);
		return;
	}
	if (leaf == 0)
		leaf_a();
	else if (leaf == 1)
		leaf_b();
	else
		leaf_c();
}

GT_NOINLINE static void keep_new(void)
{
	if (!malloc(64))
		gt_die("malloc");
	gt_add("keep_new", 64, 1);
}

int main(void)
{
	const char *e = getenv("GT_STACKS"), *k = getenv("GT_KEEP_MS");
	int n = e ? atoi(e) : 360, ms = k ? atoi(k) : 6000;
	struct timespec gap = {0, 20000000};

	if (n < 3 || n > 3 * 120)
		n = 360;
	if (ms < 0 || ms > 60000)
		ms = 6000;
	gt_setup();
	gt_ready_and_wait();
	for (int i = 0; i < n; i++)
		descend(i / 3, i % 3);
	for (int t = 0; t < ms; t += 20) {
		keep_new();
		nanosleep(&gap, NULL);
	}
	gt_report(-1);
	gt_done_and_wait();
	return 0;
}
