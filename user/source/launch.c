/*
 * memtop -- COMMAND: fork, hold the child on a pipe until the probes are
 * attached (so nothing it allocates is missed), then let it exec. A second,
 * close-on-exec pipe carries exec's errno back, so "command not found" is
 * reported by memtop in one line instead of being a silent exit 127.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "launch.h"

int launch_check(const char *file)
{
	const char *path = getenv("PATH");
	char buf[4096];
	int err = -ENOENT;

	if (strchr(file, '/'))
		return access(file, X_OK) ? -errno : 0;
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t len = strcspn(path, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)len,
			 len ? path : ".", file);
		if (!access(buf, X_OK))
			return 0;
		if (errno == EACCES)
			err = -EACCES;
		path += len + (path[len] == ':');
	}
	return err;
}

int launch_start(struct launch *l, char *const argv[])
{
	int go[2], st[2];

	memset(l, 0, sizeof(*l));
	l->go_fd = l->status_fd = -1;
	if (pipe2(go, O_CLOEXEC))
		return -errno;
	if (pipe2(st, O_CLOEXEC)) {
		int err = -errno;

		close(go[0]);
		close(go[1]);
		return err;
	}
	l->pid = fork();
	if (l->pid < 0) {
		int err = -errno;

		close(go[0]);
		close(go[1]);
		close(st[0]);
		close(st[1]);
		return err;
	}
	if (l->pid == 0) {
		char c;
		int e;

		close(go[1]);
		close(st[0]);
		/* EOF: memtop gave up before the probes were in place. */
		if (read(go[0], &c, 1) != 1)
			_exit(127);
		close(go[0]);
		execvp(argv[0], argv);
		e = errno;
		if (write(st[1], &e, sizeof(e)) < 0)
			_exit(127);
		_exit(127);
	}
	close(go[0]);
	close(st[1]);
	l->go_fd = go[1];
	l->status_fd = st[0];
	return 0;
}

int launch_release(struct launch *l)
{
	char c = 1;
	int e = 0;
	ssize_t n;

	if (write(l->go_fd, &c, 1) != 1)
		return -errno;
	close(l->go_fd);
	l->go_fd = -1;
	do
		n = read(l->status_fd, &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	close(l->status_fd);
	l->status_fd = -1;
	if (n == (ssize_t)sizeof(e)) {
		launch_reap(l);
		return -e;
	}
	return 0;
}

bool launch_reap(struct launch *l)
{
	if (!l->pid || l->reaped)
		return l->reaped;
	if (waitpid(l->pid, &l->status, WNOHANG) == l->pid)
		l->reaped = true;
	return l->reaped;
}

int launch_exit_code(const struct launch *l)
{
	if (!l->reaped)
		return 0;
	if (WIFEXITED(l->status))
		return WEXITSTATUS(l->status);
	if (WIFSIGNALED(l->status))
		return 128 + WTERMSIG(l->status);
	return 1;
}

void launch_abort(struct launch *l)
{
	if (l->go_fd >= 0)
		close(l->go_fd); /* the child reads EOF and exits */
	if (l->status_fd >= 0)
		close(l->status_fd);
	l->go_fd = l->status_fd = -1;
	if (l->pid > 0 && !l->reaped) {
		kill(l->pid, SIGKILL);
		waitpid(l->pid, &l->status, 0);
		l->reaped = true;
	}
}
