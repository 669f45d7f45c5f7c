/*
 * gt_fork: after SIGUSR1 allocates known amounts, then forks a child that
 * allocates a lot and stays alive (printing "CHILD <pid>"), then allocates
 * again. memtop -p traces the parent only: the child's allocations must not
 * show up, and the parent's figures must stay exact across the fork. The
 * child exits when the parent gets SIGTERM (or after 60 s).
 */
#include <sys/wait.h>
#include <time.h>
#include "gt_common.h"

static void *volatile sink;
static pid_t child;

GT_NOINLINE static void before_fork(void)
{
	for (int i = 0; i < 5; i++)
		if (!(sink = malloc(1111)))
			gt_die("malloc");
	gt_add("before_fork", 5 * 1111, 5);
}

GT_NOINLINE static void child_alloc(void)
{
	for (int i = 0; i < 50; i++)
		if (!(sink = malloc(7777)))
			gt_die("malloc");
}

GT_NOINLINE static void after_fork(void)
{
	for (int i = 0; i < 3; i++)
		if (!(sink = calloc(3, 333)))
			gt_die("calloc");
	gt_add("after_fork", 3 * 3 * 333, 3);
}

int main(void)
{
	int fds[2];
	char c;

	gt_setup();
	free(malloc(10));
	gt_ready_and_wait();

	before_fork();
	if (pipe(fds))
		gt_die("pipe");
	child = fork();
	if (child < 0)
		gt_die("fork");
	if (child == 0) {
		struct timespec ts = {60, 0};
		child_alloc();
		if (write(fds[1], "x", 1) != 1)
			_exit(2);
		/* SIGTERM is blocked (inherited mask): sleep, then leave. */
		nanosleep(&ts, NULL);
		_exit(0);
	}
	if (read(fds[0], &c, 1) != 1)
		gt_die("child");
	gt_out("CHILD %d\n", (int)child);
	after_fork();
	gt_declare("child_alloc");

	gt_report(-1);
	gt_out("DONE\n");
	{
		sigset_t set;
		int sig;

		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGINT);
		while (sigwait(&set, &sig) != 0)
			;
	}
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	_exit(0);
}
