/*
 * Starting a command for memtop to trace from its first allocation: the
 * child is forked first and waits until memtop's probes are in place, then
 * execs; its exit status becomes memtop's.
 */
#ifndef MEMTOP_LAUNCH_H
#define MEMTOP_LAUNCH_H

#include <stdbool.h>
#include <sys/types.h>

struct launch {
	pid_t pid;
	int go_fd;     /* write end: one byte lets the child exec */
	int status_fd; /* read end: the child's exec errno, EOF on success */
	bool reaped;
	int status; /* waitpid status once reaped */
};

/* Can argv[0] be executed (looked up in PATH like execvp)? 0 or -errno. */
int launch_check(const char *file);
/* Fork the child, stopped before exec. 0 or -errno. */
int launch_start(struct launch *l, char *const argv[]);
/* Let it exec; -errno (e.g. -ENOENT) when exec failed. */
int launch_release(struct launch *l);
/* Reap it if it has ended; true once it has. */
bool launch_reap(struct launch *l);
/* Its status as a shell reports it: the exit code, or 128 + signal. */
int launch_exit_code(const struct launch *l);
/* Kill a child that never got to run (memtop failed before releasing it). */
void launch_abort(struct launch *l);

#endif
