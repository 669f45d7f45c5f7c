/*
 * Batch output, like top -b: one plain-text block per refresh with a summary
 * per traced process, every lost-event counter, and the sites in the
 * snapshot's order, in fixed-width columns so the stream can be read by eye,
 * diffed between runs, or cut apart with awk.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <linux/types.h> /* memtop.h, reached through snapshot.h, needs __u32 */
#include "snapshot.h"
#include "views.h"

#define FUNC_WIDTH 32

/* Byte amounts with an explicit sign, for changes. */
static char *fmt_signed(char *buf, size_t len, double bytes)
{
	/* Below half a byte prints as "0 B", which takes no sign. */
	if (bytes < 0.5 || len < 2)
		return fmt_bytes(buf, len, bytes, 0);
	buf[0] = '+';
	fmt_bytes(buf + 1, len - 1, bytes, 0);
	return buf;
}

/*
 * Fit a function name into the column. Keep its start (namespace and name
 * read left to right) and mark the cut, without splitting a UTF-8 sequence.
 */
static const char *fit_func(char *buf, size_t len, const char *s, int width)
{
	size_t n, cut;

	s = s ? s : "";
	n = strlen(s);
	if (n <= (size_t)width || len < 4)
		return s;
	cut = (size_t)width - 3;
	if (cut > len - 4)
		cut = len - 4;
	while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
		cut--;
	memcpy(buf, s, cut);
	memcpy(buf + cut, "...", 4);
	return buf;
}

static void print_summary(FILE *f, const struct snapshot *s)
{
	char ts[40], a[32], b[32], c[32], m[128];
	int i;

	fmt_iso8601(ts, sizeof(ts), &s->wall);
	fprintf(f,
		"memtop %s  elapsed %.1fs  interval %.1fs  sample %" PRIu64
		"%s",
		ts, s->elapsed_s, s->interval_s, s->seq,
		s->baseline ? "  (growth since baseline)" : "");
	if (*snapshot_modes(s, m, sizeof(m)))
		fprintf(f, "  %s", m);
	fputc('\n', f);
	for (i = 0; i < s->nprocs; i++) {
		const struct snap_proc *p = &s->procs[i];

		fprintf(f,
			"PID %" PRIu32 " %s: outstanding %s in %" PRId64
			" allocs (%s), alloc %.1f/s, free %.1f/s, RSS %s, mmap %s%s\n",
			p->pid, p->comm,
			fmt_bytes(a, sizeof(a), (double)p->outstanding_bytes,
				  0),
			p->outstanding_allocs,
			fmt_signed(b, sizeof(b), (double)p->delta_bytes),
			p->alloc_rate, p->free_rate,
			fmt_bytes(c, sizeof(c), (double)p->rss_bytes, 0),
			fmt_bytes(m, sizeof(m), (double)p->mmap_bytes, 0),
			p->alive ? "" : " [exited]");
	}
	/* Every counter is shown, zero or not, so a silent loss cannot hide. */
	fprintf(f,
		"lost: %" PRIu64 " (live map full %" PRIu64
		", site map full %" PRIu64 ", stack map full %" PRIu64
		", stack failed %" PRIu64 ", inflight %" PRIu64
		", proc map full %" PRIu64 ", depth reset %" PRIu64
		", memptr unreadable %" PRIu64 ", recursion %" PRIu64
		"), unknown frees %" PRIu64 "\n",
		s->lost_total, s->lost[MT_CNT_LIVE_FULL],
		s->lost[MT_CNT_SITE_FULL], s->lost[MT_CNT_STACK_FULL],
		s->lost[MT_CNT_STACK_FAIL], s->lost[MT_CNT_INFLIGHT_FULL],
		s->lost[MT_CNT_PROC_FULL], s->lost[MT_CNT_DEPTH_RESET],
		s->lost[MT_CNT_MEMPTR_FAIL], s->recursion_misses,
		s->lost[MT_CNT_UNKNOWN_FREE]);
}

void view_batch_print(FILE *f, const struct snapshot *s, int top)
{
	char a[32], b[32], c[32], fn[FUNC_WIDTH + 8];
	int i, n;

	if (!f || !s)
		return;
	print_summary(f, s);
	fputc('\n', f);
	fprintf(f, "%7s %11s %8s %11s %9s %9s %10s %-*s %s\n", "PID",
		"OUTSTANDING", "COUNT", "GROWTH/s", "ALLOC/s", "FREE/s", "AVG",
		FUNC_WIDTH, "FUNCTION", "LOCATION");
	n = s->nsites;
	if (top > 0 && top < n)
		n = top;
	for (i = 0; i < n; i++) {
		const struct snap_site *st = &s->sites[i];
		double avg = st->outstanding_allocs > 0
				     ? (double)st->outstanding_bytes /
					       (double)st->outstanding_allocs
				     : 0;

		const char *loc = st->location ? st->location : "";

		fprintf(f,
			"%7" PRIu32 " %11s %8" PRId64
			" %11s %9.1f %9.1f %10s %-*s%s%s\n",
			st->pid,
			fmt_bytes(a, sizeof(a), (double)st->outstanding_bytes,
				  0),
			st->outstanding_allocs,
			fmt_bytes(b, sizeof(b), st->growth_bps, 0),
			st->alloc_rate, st->free_rate,
			fmt_bytes(c, sizeof(c), avg, 0), *loc ? FUNC_WIDTH : 0,
			fit_func(fn, sizeof(fn), st->function, FUNC_WIDTH),
			*loc ? " " : "", loc);
	}
	fputc('\n', f);
	fflush(f);
}
