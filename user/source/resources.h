/*
 * Resources beside memory: how many files (sockets, pipes) a process holds
 * open and how many threads it runs, read from /proc at every sample, so a
 * service leaking descriptors or threads that are never joined is seen as
 * such next to its memory.
 */
#ifndef MEMTOP_RESOURCES_H
#define MEMTOP_RESOURCES_H

#include <stdint.h>
#include <sys/types.h>

/* Open descriptors of pid: >= 0, or -errno. */
int resources_open_fds(pid_t pid);
/* The "Threads:" figure of a /proc/PID/status text: >= 0, or -ENOENT. */
int resources_parse_threads(const char *status);

#endif
