/*
 * Counting a process's open descriptors and threads from /proc. Since Linux
 * 6.2 the size of /proc/PID/fd is the number of open descriptors, one stat
 * instead of a directory walk; older kernels report 0 and get the walk.
 * The status parser takes text the kernel wrote but is kept pure so it can
 * be unit-tested.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "resources.h"

static int count_entries(const char *path)
{
	struct dirent *de;
	DIR *d = opendir(path);
	int n = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

int resources_open_fds(pid_t pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if (stat(path, &st) < 0)
		return -errno;
	if (st.st_size > 0 && st.st_size < (1 << 30))
		return (int)st.st_size;
	return count_entries(path);
}

int resources_parse_threads(const char *status)
{
	const char *p;
	char *end;
	long v;

	if (!status)
		return -ENOENT;
	if (!strncmp(status, "Threads:", 8))
		p = status;
	else if ((p = strstr(status, "\nThreads:")))
		p++;
	else
		return -ENOENT;
	v = strtol(p + 8, &end, 10);
	if (end == p + 8 || v < 0 || v > (1L << 30))
		return -ENOENT;
	return (int)v;
}
