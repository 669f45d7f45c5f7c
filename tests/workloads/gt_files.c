/*
 * gt_files: a service leaking resources beside memory. After the trigger it
 * opens GT_FILES descriptors it never closes (files and the two ends of
 * pipes, like connections nobody closes) and starts GT_THREADS threads it
 * never joins, each kept with a small record, then reports the exact counts
 * as "EXPECT_FILES n" and "EXPECT_THREADS n" (see gt_common.h).
 */
#include <fcntl.h>
#include <pthread.h>
#include "gt_common.h"

#define GT_FILES   40 /* 30 files and 5 pipes */
#define GT_THREADS 5

static void *volatile sink;

GT_NOINLINE static void *parked(void *arg)
{
	(void)arg;
	/* Every signal is blocked (inherited from main): this never returns. */
	for (;;)
		pause();
	return NULL;
}

GT_NOINLINE static void open_files(void)
{
	int p[2];

	for (int i = 0; i < 30; i++) {
		if (open("/dev/null", O_RDONLY) < 0)
			gt_die("open");
		if (!(sink = malloc(64)))
			gt_die("malloc");
	}
	for (int i = 0; i < 5; i++)
		if (pipe(p))
			gt_die("pipe");
}

GT_NOINLINE static void start_threads(void)
{
	pthread_t t;

	for (int i = 0; i < GT_THREADS; i++)
		if (pthread_create(&t, NULL, parked, NULL))
			gt_die("pthread_create");
}

int main(void)
{
	gt_setup();
	free(malloc(10));
	gt_ready_and_wait();
	open_files();
	start_threads();
	gt_out("EXPECT_FILES %d\nEXPECT_THREADS %d\n", GT_FILES, GT_THREADS);
	gt_done_and_wait();
	return 0;
}
