/*
 * What memtop reads of a process from /proc: liveness, command name and
 * line, RSS, and the executable and library mappings. Parsers are separate
 * from the reads so they can be unit-tested and fuzzed.
 */
#ifndef MEMTOP_PROCFS_H
#define MEMTOP_PROCFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "sample.h"

struct maps_entry {
	uint64_t start, end, offset;
	char perms[5];
	uint64_t inode;
	unsigned dev_major, dev_minor;
	char path[4096];
};

/* Parse one /proc/PID/maps line; 0, or -EINVAL. */
int procfs_parse_maps_line(const char *line, struct maps_entry *e);
/* Fill p->alive, comm, cmdline, rss_bytes, open_fds, threads for p->tgid. */
void procfs_fill(struct raw_proc *p);
bool procfs_alive(pid_t pid);
/*
 * From the text of /proc/PID/stat: the start time (clock ticks after boot,
 * field 22: a pid reused by another process has another) and the resident
 * pages (field 24). 0, or -EINVAL.
 */
int procfs_parse_stat(const char *buf, uint64_t *start, uint64_t *rss_pages);
/* The same read from /proc for pid, RSS in bytes. 0 or -errno. */
int procfs_start_rss(pid_t pid, uint64_t *start, uint64_t *rss);
/*
 * Open path as process pid sees it (flags as open(2), resolve: more
 * RESOLVE_* flags): its root's symlinks resolve inside it. 0+ fd or -errno.
 */
int procfs_open_in_root(pid_t pid, const char *path, int flags,
			uint64_t resolve);
/*
 * memtop's own cost: the CPU time of this process (every thread, user and
 * system) and the kernel memory its BPF maps and programs hold (the
 * memlock figures of its BPF file descriptors).
 */
void procfs_self_cost(double *cpu_s, uint64_t *kernel_bytes);

#endif
