/*
 * gt_forker: the parent allocates known amounts, forks a child that
 * allocates other known amounts from a different function, then allocates
 * again (see gt_common.h for the protocol). For memtop -f: each process is
 * its own row with exact totals. Neither allocates anything else after
 * main starts (no warm-up), so a run traced from exec (memtop -- COMMAND)
 * is exact from the start too.
 *
 *   parent: "READY", SIGUSR1, parent_alloc, fork, (child's lines),
 *           parent_after, EXPECT lines, EXPECT_TOTAL, "DONE", SIGTERM.
 *   child:  child_alloc, then "CHILD <pid>", "CHILD_EXPECT <fn> <bytes>
 *           <allocs>", "CHILD_TOTAL <bytes> <allocs>", "CHILD_DONE"; it
 *           stays alive until the parent exits (EOF on a pipe), frees
 *           nothing, and exits 0.
 *
 * GT_NO_WAIT=1 skips both waits (the parent exits right after DONE).
 * GT_EXIT_CODE=N makes the parent exit with status N.
 */
#include <sys/wait.h>
#include "gt_common.h"

static void *volatile sink;

GT_NOINLINE static void parent_alloc(void)
{
	for (int i = 0; i < 6; i++)
		if (!(sink = malloc(1234)))
			gt_die("malloc");
	gt_add("parent_alloc", 6 * 1234, 6);
}

GT_NOINLINE static void parent_after(void)
{
	for (int i = 0; i < 2; i++)
		if (!(sink = calloc(4, 1000)))
			gt_die("calloc");
	gt_add("parent_after", 2 * 4 * 1000, 2);
}

GT_NOINLINE static void child_alloc(void)
{
	for (int i = 0; i < 40; i++)
		if (!(sink = malloc(4321)))
			gt_die("malloc");
}

int main(void)
{
	const char *ec = getenv("GT_EXIT_CODE");
	int code = ec ? atoi(ec) : 0;
	int done[2], hold[2];
	pid_t child;
	char c;

	gt_setup();
	gt_ready_and_wait();

	parent_alloc();
	/* done: the child says it has finished; hold: it lives until EOF. */
	if (pipe(done) || pipe(hold))
		gt_die("pipe");
	child = fork();
	if (child < 0)
		gt_die("fork");
	if (child == 0) {
		close(done[0]);
		close(hold[1]);
		child_alloc();
		gt_out("CHILD %d\n", (int)getpid());
		gt_out("CHILD_EXPECT child_alloc %d %d\n", 40 * 4321, 40);
		gt_out("CHILD_TOTAL %d %d\n", 40 * 4321, 40);
		gt_out("CHILD_DONE\n");
		if (write(done[1], "x", 1) != 1)
			_exit(2);
		while (read(hold[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(done[1]);
	close(hold[0]);
	if (read(done[0], &c, 1) != 1)
		gt_die("child");
	parent_after();
	gt_declare("child_alloc"); /* the parent holds none of it */

	gt_report(-1);
	gt_out("DONE\n");
	if (!gt_no_wait) {
		sigset_t set;
		int sig;

		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGINT);
		while (sigwait(&set, &sig) != 0)
			;
	}
	close(hold[1]);
	waitpid(child, NULL, 0);
	_exit(code);
}
