/*
 * gt_exec: allocates after SIGUSR1, then execs itself. The blocks of the old
 * image are gone with it (memtop must purge them: before_exec ends at 0) and
 * the new image's allocations are traced exactly, under the same pid.
 */
#include <limits.h>
#include "gt_common.h"

static void *volatile sink;

GT_NOINLINE static void before_exec(void)
{
	for (int i = 0; i < 5; i++)
		if (!(sink = malloc(1000)))
			gt_die("malloc");
}

GT_NOINLINE static void after_exec(void)
{
	for (int i = 0; i < 7; i++)
		if (!(sink = malloc(3000)))
			gt_die("malloc");
	gt_add("after_exec", 7 * 3000, 7);
}

int main(int argc, char **argv)
{
	char self[PATH_MAX];
	ssize_t n;

	gt_setup();
	if (argc > 1 && !strcmp(argv[1], "after")) {
		after_exec();
		gt_declare("before_exec"); /* the old image's blocks: 0 */
		gt_report(-1);
		gt_done_and_wait();
		return 0;
	}
	gt_ready_and_wait();
	before_exec();
	/* By path, so the new image keeps the comm "gt_exec". */
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		gt_die("readlink");
	self[n] = '\0';
	execl(self, self, "after", (char *)NULL);
	gt_die("execl");
	return 1;
}
