/*
 * Reading /proc for what the BPF side cannot know: whether a process is
 * alive, its name and command line, its RSS, and its mappings, and the one
 * way to open a file as the process sees it (tracer and symbolizer). The
 * maps line parser takes untrusted text (paths are chosen by the target)
 * and is kept separate so it can be unit-tested and fuzzed.
 */
#define _GNU_SOURCE /* asprintf, O_PATH */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include "procfs.h"
#include "source/resources.h"

int procfs_parse_maps_line(const char *line, struct maps_entry *e)
{
	unsigned long long start, end, off, ino;
	unsigned maj, min;
	char perms[5];
	int n = 0;
	const char *p;
	size_t len;

	memset(e, 0, sizeof(*e));
	if (sscanf(line, "%llx-%llx %4s %llx %x:%x %llu%n", &start, &end, perms,
		   &off, &maj, &min, &ino, &n) != 7)
		return -EINVAL;
	if (end < start || strlen(perms) != 4)
		return -EINVAL;
	e->start = start;
	e->end = end;
	e->offset = off;
	e->dev_major = maj;
	e->dev_minor = min;
	e->inode = ino;
	memcpy(e->perms, perms, sizeof(e->perms));
	p = line + n;
	while (*p == ' ' || *p == '\t')
		p++;
	len = strcspn(p, "\n");
	if (len >= sizeof(e->path))
		return -EINVAL;
	memcpy(e->path, p, len);
	e->path[len] = '\0';
	return 0;
}

static ssize_t read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, total = 0;

	if (fd < 0)
		return -errno;
	while ((size_t)total + 1 < len) {
		n = read(fd, buf + total, len - 1 - total);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			total = -errno;
			break;
		}
		if (n == 0)
			break;
		total += n;
	}
	close(fd);
	if (total >= 0)
		buf[total] = '\0';
	return total;
}

/*
 * A process chooses its name and command line: no control characters may
 * reach a terminal (escape sequences) or break a line of output.
 */
static void sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

bool procfs_alive(pid_t pid)
{
	char path[64], buf[512];
	ssize_t n;
	char *rp;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	n = read_file(path, buf, sizeof(buf));
	if (n <= 0)
		return false;
	/* A zombie has exited: its memory is gone. */
	rp = strrchr(buf, ')');
	return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

int procfs_parse_stat(const char *buf, uint64_t *start, uint64_t *rss_pages)
{
	/* The name may hold ") " itself: the fields follow the last ')'. */
	const char *p = strrchr(buf, ')');
	unsigned long long v[22];
	int field = 0;

	if (!p)
		return -EINVAL;
	p++;
	/* From the state (field 3) to rss (field 24). */
	while (field < 22) {
		char *end;

		while (*p == ' ')
			p++;
		if (!*p)
			return -EINVAL;
		if (field == 0) {
			v[field++] = 0; /* the state, a letter */
			p++;
			continue;
		}
		errno = 0;
		v[field] = strtoull(p, &end, 10);
		if (end == p || errno || (*end && *end != ' ' && *end != '\n'))
			return -EINVAL;
		p = end;
		field++;
	}
	*start = v[19];
	*rss_pages = v[21];
	return 0;
}

int procfs_start_rss(pid_t pid, uint64_t *start, uint64_t *rss)
{
	char path[64], buf[1024];
	uint64_t pages;
	ssize_t n;
	int err;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	n = read_file(path, buf, sizeof(buf));
	if (n <= 0)
		return n < 0 ? (int)n : -ESRCH;
	err = procfs_parse_stat(buf, start, &pages);
	if (err)
		return err;
	*rss = pages * (uint64_t)sysconf(_SC_PAGESIZE);
	return 0;
}

void procfs_fill(struct raw_proc *p)
{
	char path[64], buf[4096];
	ssize_t n;
	long pages;
	int fds, threads = -1;

	p->alive = procfs_alive(p->tgid);
	if (!p->alive)
		return;
	snprintf(path, sizeof(path), "/proc/%u/comm", p->tgid);
	n = read_file(path, buf, sizeof(buf));
	if (n > 0) {
		if (buf[n - 1] == '\n') /* the kernel's; a name may hold more */
			buf[n - 1] = '\0';
		sanitize(buf);
		snprintf(p->comm, sizeof(p->comm), "%.15s", buf);
	}
	snprintf(path, sizeof(path), "/proc/%u/cmdline", p->tgid);
	n = read_file(path, buf, sizeof(buf));
	if (n > 0) {
		for (ssize_t i = 0; i < n - 1; i++)
			if (buf[i] == '\0')
				buf[i] = ' ';
		sanitize(buf);
		snprintf(p->cmdline, sizeof(p->cmdline), "%.255s", buf);
	} else if (!p->cmdline[0]) {
		snprintf(p->cmdline, sizeof(p->cmdline), "[%s]", p->comm);
	}
	snprintf(path, sizeof(path), "/proc/%u/status", p->tgid);
	n = read_file(path, buf, sizeof(buf));
	if (n > 0) {
		char *u = strstr(buf, "\nUid:");

		if (u)
			p->uid = (uint32_t)strtoul(u + 5, NULL, 10);
		threads = resources_parse_threads(buf);
	}
	fds = resources_open_fds((pid_t)p->tgid);
	p->has_resources = fds >= 0 && threads >= 0;
	if (p->has_resources) {
		p->open_fds = (uint32_t)fds;
		p->threads = (uint32_t)threads;
	}
	snprintf(path, sizeof(path), "/proc/%u/statm", p->tgid);
	n = read_file(path, buf, sizeof(buf));
	if (n > 0 && sscanf(buf, "%*s %ld", &pages) == 1)
		p->rss_bytes =
			(uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

void procfs_self_cost(double *cpu_s, uint64_t *kernel_bytes)
{
	struct timespec ts;
	struct dirent *de;
	uint64_t total = 0;
	DIR *d;

	*cpu_s = clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
			 ? 0
			 : (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	d = opendir("/proc/self/fd");
	if (!d) {
		*kernel_bytes = 0;
		return;
	}
	while ((de = readdir(d))) {
		char path[300], link[64], line[256];
		unsigned long long v;
		ssize_t n;
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strcmp(link, "anon_inode:bpf-map") &&
		    strcmp(link, "anon_inode:bpf-prog"))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%s",
			 de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "memlock: %llu", &v) == 1)
				total += v;
		fclose(f);
	}
	closedir(d);
	*kernel_bytes = total;
}

/*
 * Open path as the process sees it. RESOLVE_IN_ROOT keeps a container's
 * absolute symlinks inside the container instead of resolving them against
 * our root; older kernels (or seccomp) fall back to the plain /proc path.
 */
int procfs_open_in_root(pid_t pid, const char *path, int flags,
			uint64_t resolve)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = resolve | RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	char root[64], *full;
	int dfd, fd, err;

	snprintf(root, sizeof(root), "/proc/%d/root", (int)pid);
	dfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	while (*path == '/')
		path++;
	fd = syscall(SYS_openat2, dfd, path, &how, sizeof(how));
	err = errno;
	close(dfd);
	if (fd >= 0)
		return fd;
	if (err != ENOSYS && err != EPERM)
		return -err;
	if (asprintf(&full, "%s/%s", root, path) < 0)
		return -ENOMEM;
	fd = open(full, flags | O_CLOEXEC);
	err = errno;
	free(full);
	return fd >= 0 ? fd : -err;
}
