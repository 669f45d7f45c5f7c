/*
 * gt_exit: allocates known amounts after SIGUSR1, prints EXPECT/DONE, then
 * exits by itself about a second later (GT_EXIT_AFTER seconds; memtop must
 * notice, print "exited", write a final sample and exit 0).
 */
#include <stdlib.h>
#include <time.h>
#include "gt_common.h"

static void *volatile sink;

GT_NOINLINE static void exit_alloc(void)
{
	for (int i = 0; i < 3; i++)
		if (!(sink = malloc(4444)))
			gt_die("malloc");
	gt_add("exit_alloc", 3 * 4444, 3);
}

GT_NOINLINE static void exit_calloc(void)
{
	for (int i = 0; i < 2; i++)
		if (!(sink = calloc(5, 55)))
			gt_die("calloc");
	gt_add("exit_calloc", 2 * 5 * 55, 2);
}

int main(void)
{
	gt_setup();
	free(malloc(10));
	free(calloc(1, 10));
	gt_ready_and_wait();

	exit_alloc();
	exit_calloc();

	gt_report(-1);
	gt_out("DONE\n");
	if (!gt_no_wait) {
		const char *after = getenv("GT_EXIT_AFTER");
		struct timespec ts = {after ? atoi(after) : 1, 0};
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
	exit(0);
}
