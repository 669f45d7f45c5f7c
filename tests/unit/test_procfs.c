/*
 * Unit tests of the /proc readers: the maps line parser on real-looking and
 * junk lines, and procfs_alive / procfs_fill on this process, a child, a
 * zombie and dead PIDs, and the open-file and thread counts.  No root needed.
 * Prints one line per check; exits non-zero if any failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <linux/types.h>
#include <fcntl.h>
#include <pthread.h>
#include "procfs.h"
#include "source/resources.h"

#include "check.h"

static struct maps_entry e;

static void test_maps_good(void)
{
	int rc;

	rc = procfs_parse_maps_line(
		"55d4c8a00000-55d4c8a21000 r-xp 00002000 fd:01 1311962"
		"                    /usr/bin/cat\n",
		&e);
	check(rc == 0, "maps: executable mapping parses");
	check(e.start == 0x55d4c8a00000ull && e.end == 0x55d4c8a21000ull,
	      "maps: start and end");
	check(e.offset == 0x2000, "maps: offset");
	check_str(e.perms, "r-xp", "maps: perms");
	check(e.dev_major == 0xfd && e.dev_minor == 1, "maps: device fd:01");
	check(e.inode == 1311962, "maps: inode");
	check_str(e.path, "/usr/bin/cat", "maps: path, newline stripped");

	rc = procfs_parse_maps_line(
		"7f3a1c000000-7f3a1c021000 r--p 00000000 08:02 4242"
		"                       /home/u/My Programs/lib two.so\n",
		&e);
	check(rc == 0, "maps: path with spaces parses");
	check_str(e.path, "/home/u/My Programs/lib two.so",
		  "maps: spaces kept inside the path");

	rc = procfs_parse_maps_line(
		"7ffd5a1e0000-7ffd5a201000 rw-p 00000000 00:00 0 \n", &e);
	check(rc == 0 && e.path[0] == '\0' && e.inode == 0,
	      "maps: anonymous mapping, empty path");
	rc = procfs_parse_maps_line("7ffd5a1e0000-7ffd5a201000 rw-p 00000000 "
				    "00:00 0",
				    &e);
	check(rc == 0 && e.path[0] == '\0',
	      "maps: no path, no newline, no trailing space");

	rc = procfs_parse_maps_line(
		"55d4c9f6b000-55d4c9f8c000 rw-p 00000000 00:00 0"
		"                          [heap]\n",
		&e);
	check(rc == 0, "maps: [heap] parses");
	check_str(e.path, "[heap]", "maps: [heap] path");
	check_str(e.perms, "rw-p", "maps: [heap] perms");

	rc = procfs_parse_maps_line(
		"7f3a1c200000-7f3a1c3a0000 r-xp 00028000 103:02 917533"
		"                   /usr/lib/libfoo.so.1 (deleted)\n",
		&e);
	check(rc == 0, "maps: deleted mapping parses");
	check_str(e.path, "/usr/lib/libfoo.so.1 (deleted)",
		  "maps: \" (deleted)\" kept for the caller");
	check(e.dev_major == 0x103 && e.dev_minor == 2 && e.offset == 0x28000,
	      "maps: device 103:02, offset");

	rc = procfs_parse_maps_line(
		"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0"
		"                  [vsyscall]\n",
		&e);
	check(rc == 0 && e.start == 0xffffffffff600000ull &&
		      e.end == 0xffffffffff601000ull,
	      "maps: [vsyscall], 64-bit addresses");
	check_str(e.perms, "--xp", "maps: [vsyscall] perms");

	rc = procfs_parse_maps_line(
		"00400000-00452000 r-xp 00000000 08:02 173521\t/bin/tabbed\n",
		&e);
	check(rc == 0, "maps: tab before the path");
	check_str(e.path, "/bin/tabbed", "maps: tab-separated path");
}

static void test_maps_junk(void)
{
	static const char *const junk[] = {
		"",
		"\n",
		"hello world",
		"00400000",
		"00400000-00452000",
		"00400000-00452000 r-xp",
		"00400000-00452000 r-xp 00000000",
		"00400000-00452000 r-xp 00000000 08:02",
		"00400000-00452000 r-xp 00000000 0802 173521 /bin/x",
		"00400000 00452000 r-xp 00000000 08:02 173521 /bin/x",
		"00452000-00400000 r-xp 00000000 08:02 173521 /bin/x",
		"00400000-00452000 rx 00000000 08:02 173521 /bin/x",
		"00400000-00452000 r-xpq 00000000 08:02 173521 /bin/x",
		"0x400000-zz452000 r-xp 00000000 08:02 173521 /bin/x",
		"00400000-00452000 r-xp zzzz 08:02 173521 /bin/x",
		"00400000-00452000 r-xp 00000000 08:02 inode /bin/x",
		"/usr/lib/x86_64-linux-gnu/libc.so.6",
	};
	char *line;
	size_t pre;
	int rc;

	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		memset(&e, 'X', sizeof(e));
		rc = procfs_parse_maps_line(junk[i], &e);
		check(rc == -EINVAL, "maps junk rejected: \"%.*s\" (rc %d)",
		      (int)strcspn(junk[i], "\n"), junk[i], rc);
	}

	/* A path of 4095 bytes fits (with its NUL); 4096 and more do not. */
	line = malloc(16384);
	if (!line) {
		check(0, "malloc");
		return;
	}
	pre = (size_t)sprintf(line, "00400000-00452000 r-xp 00000000 08:02 1 ");
	memset(line + pre, 'a', 4095);
	line[pre] = '/';
	strcpy(line + pre + 4095, "\n");
	rc = procfs_parse_maps_line(line, &e);
	check(rc == 0 && strlen(e.path) == 4095,
	      "maps: 4095-byte path accepted");
	memset(line + pre, 'a', 4096);
	line[pre] = '/';
	strcpy(line + pre + 4096, "\n");
	rc = procfs_parse_maps_line(line, &e);
	check(rc == -EINVAL, "maps: 4096-byte path rejected (rc %d)", rc);
	memset(line + pre, 'b', 12000);
	line[pre + 12000] = '\0';
	rc = procfs_parse_maps_line(line, &e);
	check(rc == -EINVAL, "maps: 12000-byte path rejected (rc %d)", rc);
	free(line);
}

/* Wait until /proc/pid/comm reads want (the child has exec'd). */
static int wait_comm(pid_t pid, const char *want)
{
	char path[64], buf[64];

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	for (int i = 0; i < 400; i++) {
		FILE *f = fopen(path, "r");
		int ok = 0;

		if (f) {
			ok = fgets(buf, sizeof(buf), f) &&
			     !strncmp(buf, want, strlen(want));
			fclose(f);
		}
		if (ok)
			return 0;
		nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
	}
	return -1;
}

static void test_alive_fill(void)
{
	struct raw_proc p;
	pid_t child;
	int status;

	check(procfs_alive(getpid()), "procfs_alive(getpid())");
	check(!procfs_alive(INT_MAX), "procfs_alive(INT_MAX) false");
	check(!procfs_alive(0), "procfs_alive(0) false");
	check(!procfs_alive(-1), "procfs_alive(-1) false");

	memset(&p, 0, sizeof(p));
	p.tgid = (uint32_t)getpid();
	procfs_fill(&p);
	check(p.alive, "procfs_fill(self): alive");
	check(p.comm[0] && strlen(p.comm) < sizeof(p.comm),
	      "procfs_fill(self): comm \"%s\"", p.comm);
	check(!strncmp(p.comm, "test_procfs", 11) ||
		      !strncmp(p.comm, "a.out", 5),
	      "procfs_fill(self): comm is this program (\"%s\")", p.comm);
	check(strlen(p.cmdline) > 0 && strlen(p.cmdline) < sizeof(p.cmdline),
	      "procfs_fill(self): cmdline \"%s\"", p.cmdline);
	check(p.rss_bytes > 0, "procfs_fill(self): rss %llu > 0",
	      (unsigned long long)p.rss_bytes);

	/* A child with a known command line, then a zombie, then reaped. */
	child = fork();
	if (child < 0) {
		check(0, "fork");
		return;
	}
	if (child == 0) {
		execl("/bin/sleep", "sleep", "30", (char *)NULL);
		_exit(127);
	}
	if (wait_comm(child, "sleep")) {
		check(0, "child did not exec sleep");
		kill(child, SIGKILL);
		waitpid(child, &status, 0);
		return;
	}
	memset(&p, 0, sizeof(p));
	p.tgid = (uint32_t)child;
	procfs_fill(&p);
	check(p.alive, "child: alive");
	check_str(p.comm, "sleep", "child: comm");
	check_str(p.cmdline, "sleep 30", "child: cmdline, NULs as spaces");
	check(p.rss_bytes > 0, "child: rss > 0");

	kill(child, SIGKILL);
	/* Wait for it to become a zombie, without reaping it. */
	for (int i = 0; i < 400; i++) {
		siginfo_t si;

		memset(&si, 0, sizeof(si));
		if (!waitid(P_PID, (id_t)child, &si, WEXITED | WNOWAIT) &&
		    si.si_pid == child)
			break;
		nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
	}
	check(!procfs_alive(child), "zombie child: not alive");
	memset(&p, 0, sizeof(p));
	p.tgid = (uint32_t)child;
	p.rss_bytes = 123;
	procfs_fill(&p);
	check(!p.alive && p.comm[0] == '\0' && p.rss_bytes == 123,
	      "zombie child: procfs_fill says not alive, fills nothing");
	waitpid(child, &status, 0);
	check(!procfs_alive(child), "reaped child: not alive");
}

static void *parked(void *arg)
{
	int *fd = arg;
	char c;

	/* Block until the test closes the pipe's write end. */
	while (read(*fd, &c, 1) > 0)
		;
	return NULL;
}

static void test_resources(void)
{
	static const struct {
		const char *text;
		int want;
	} cases[] = {
		{"Name:\tx\nThreads:\t7\nSigQ:\t0/1\n", 7},
		{"Threads:\t1\n", 1},
		{"Name:\tThreads:\t9\n", -ENOENT}, /* a name, not the field */
		{"Name:\tx\nThreads:\t\n", -ENOENT},
		{"Name:\tx\nThreads:\t-3\n", -ENOENT},
		{"Name:\tx\n", -ENOENT},
		{"", -ENOENT},
	};
	struct raw_proc p0, p1;
	pthread_t th[3];
	int fds[25], pipefd[2], n0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check(resources_parse_threads(cases[i].text) == cases[i].want,
		      "parse_threads case %zu = %d", i,
		      resources_parse_threads(cases[i].text));
	check(resources_parse_threads(NULL) == -ENOENT, "parse_threads(NULL)");
	check(resources_open_fds(999999999) == -ENOENT,
	      "open_fds of a PID that cannot exist: -ENOENT");

	memset(&p0, 0, sizeof(p0));
	p0.tgid = (uint32_t)getpid();
	procfs_fill(&p0);
	check(p0.has_resources && p0.open_fds >= 3 && p0.threads == 1,
	      "self: %u files (>= 3), %u thread", p0.open_fds, p0.threads);
	n0 = resources_open_fds(getpid());
	if (pipe(pipefd)) {
		check(0, "pipe: %s", strerror(errno));
		return;
	}
	for (int i = 0; i < 25; i++)
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, parked, &pipefd[0]);
	memset(&p1, 0, sizeof(p1));
	p1.tgid = (uint32_t)getpid();
	procfs_fill(&p1);
	check(p1.open_fds == p0.open_fds + 27,
	      "25 files and a pipe opened: %u -> %u", p0.open_fds, p1.open_fds);
	check(resources_open_fds(getpid()) == n0 + 27, "open_fds agrees");
	check(p1.threads == p0.threads + 3, "3 threads started: %u -> %u",
	      p0.threads, p1.threads);
	close(pipefd[1]);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	close(pipefd[0]);
	for (int i = 0; i < 25; i++)
		close(fds[i]);
	check(resources_open_fds(getpid()) == n0, "all closed again: %d",
	      resources_open_fds(getpid()));
}

/* Start time and RSS from /proc/PID/stat: a name may hold ") ". */
static void test_stat(void)
{
	const char *line =
		"30440 (a) b (c) R 30437 30437 6168 0 -1 4194304 97 0 0 0 0 0 "
		"0 0 20 0 1 0 60343 3133440 409 18446744073709551615 1 2 3\n";
	uint64_t start = 0, pages = 0, rss = 0;
	struct raw_proc p;
	int err;

	err = procfs_parse_stat(line, &start, &pages);
	check(!err && start == 60343 && pages == 409,
	      "stat: start time 60343 and 409 resident pages (got %llu, "
	      "%llu)",
	      (unsigned long long)start, (unsigned long long)pages);
	check(procfs_parse_stat("30440 (cat) R 1 2 3\n", &start, &pages) ==
		      -EINVAL,
	      "stat: a short line is refused");
	check(procfs_parse_stat("30440 cat R 1 2 3\n", &start, &pages) ==
		      -EINVAL,
	      "stat: a line without the name's ')' is refused");
	memset(&p, 0, sizeof(p));
	p.tgid = (uint32_t)getpid();
	procfs_fill(&p);
	err = procfs_start_rss(getpid(), &start, &rss);
	check(!err && start > 0 && rss > 0 && rss < 4 * p.rss_bytes &&
		      p.rss_bytes < 4 * rss,
	      "stat: this process's start time and RSS (%llu B, statm %llu B)",
	      (unsigned long long)rss, (unsigned long long)p.rss_bytes);
	check(procfs_start_rss(-5, &start, &rss) < 0, "stat: no such pid");
}

int main(void)
{
	test_maps_good();
	test_maps_junk();
	test_alive_fill();
	test_resources();
	test_stat();
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
