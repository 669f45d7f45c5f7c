/*
 * Shared protocol for the ground-truth workloads (header-only; included by
 * every gt_*.c / gt_*.cc, never compiled on its own).
 *
 *   warm-up allocations          (before memtop attaches)
 *   "READY <pid>"                (stdout, write(2))
 *   block until SIGUSR1          (sigwait; signals are blocked, no handler;
 *                                 SIGTERM/SIGINT here exit 0 at once)
 *   tracked allocations          (distinct noinline functions)
 *   "EXPECT <fn> <bytes> <allocs>" lines, optional extras, "DONE"
 *   block until SIGTERM/SIGINT   (then _exit(0) without freeing)
 *
 * With GT_NO_WAIT=1 in the environment the two waits are skipped and the
 * process exits right after DONE (for running under valgrind).
 *
 * Nothing here allocates after READY: output goes through snprintf into a
 * stack buffer and write(2), never stdio, and the bookkeeping table is
 * static.
 */
#ifndef GT_COMMON_H
#define GT_COMMON_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GT_NOINLINE __attribute__((noinline, noclone))
#define GT_MAX_FN   64

struct gt_expect {
	const char *fn;
	long long bytes;
	long long allocs;
	long long cum_allocs; /* allocation calls that succeeded at this site */
	long long cum_frees;  /* frees of blocks from this site */
	int want_cum;
};

static struct gt_expect gt_table[GT_MAX_FN];
static int gt_nfn;
static int gt_no_wait;
static long long gt_warm_bytes,
	gt_warm_blocks; /* pre-READY blocks still held */

static void gt_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void gt_out(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 1)
		n = (int)sizeof(buf) - 1;
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(1, p, (size_t)n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			_exit(3);
		}
		p += w;
		n -= (int)w;
	}
}

static void gt_die(const char *what)
{
	gt_out("GT_ERROR %s\n", what);
	_exit(2);
}

static struct gt_expect *gt_slot(const char *fn)
{
	for (int i = 0; i < gt_nfn; i++)
		if (strcmp(gt_table[i].fn, fn) == 0)
			return &gt_table[i];
	if (gt_nfn == GT_MAX_FN)
		gt_die("too many functions");
	gt_table[gt_nfn].fn = fn;
	return &gt_table[gt_nfn++];
}

/* Declare a function as expected (so it is printed even when it ends at 0). */
static void gt_declare(const char *fn)
{
	(void)gt_slot(fn);
}

/* A block of `bytes` is now outstanding at fn. */
static void gt_add(const char *fn, long long bytes, long long allocs)
{
	struct gt_expect *e = gt_slot(fn);
	e->bytes += bytes;
	e->allocs += allocs;
}

/* Cumulative counts (allocs, frees) for functions where they are unambiguous.
 */
static void gt_cum(const char *fn, long long allocs, long long frees)
{
	struct gt_expect *e = gt_slot(fn);
	e->cum_allocs += allocs;
	e->cum_frees += frees;
	e->want_cum = 1;
}

static void gt_setup(void)
{
	const char *nw = getenv("GT_NO_WAIT");
	gt_no_wait = nw && *nw && strcmp(nw, "0") != 0;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	/* Block before any thread exists so every thread inherits the mask. */
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
		gt_die("sigprocmask");
}

static void gt_ready_and_wait(void)
{
	gt_out("READY %d\n", (int)getpid());
	if (gt_no_wait)
		return;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	int sig;
	while (sigwait(&set, &sig) != 0)
		;
	if (sig != SIGUSR1) /* stopped before the trigger: just go */
		_exit(0);
}

/* Print EXPECT lines, EXPECT_TOTAL, extras, DONE. */
static void gt_report(long long unknown_frees)
{
	long long tb = 0, ta = 0;
	for (int i = 0; i < gt_nfn; i++) {
		gt_out("EXPECT %s %lld %lld\n", gt_table[i].fn,
		       gt_table[i].bytes, gt_table[i].allocs);
		tb += gt_table[i].bytes;
		ta += gt_table[i].allocs;
	}
	for (int i = 0; i < gt_nfn; i++)
		if (gt_table[i].want_cum)
			gt_out("EXPECT_CUM %s %lld %lld\n", gt_table[i].fn,
			       gt_table[i].cum_allocs, gt_table[i].cum_frees);
	gt_out("EXPECT_TOTAL %lld %lld\n", tb, ta);
	if (unknown_frees >= 0)
		gt_out("EXPECT_UNKNOWN_FREES %lld\n", unknown_frees);
	gt_out("EXPECT_INUSE_AT_EXIT %lld %lld\n", tb + gt_warm_bytes,
	       ta + gt_warm_blocks);
}

static void gt_done_and_wait(void)
{
	gt_out("DONE\n");
	if (gt_no_wait)
		_exit(0);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	int sig;
	while (sigwait(&set, &sig) != 0)
		;
	_exit(0);
}

#endif
