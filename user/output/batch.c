/*
 * Batch output, like top -b: one plain-text block per refresh with a summary
 * per traced process, every lost-event counter, and the sites in the
 * snapshot's order, in fixed-width columns so the stream can be read by eye,
 * diffed between runs, or cut apart with awk.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
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

/* On a terminal, names are cut to the column; into a pipe or a file they
 * are printed whole (a log is read by grep, not by eye). */
static int func_width(FILE *f)
{
	int fd = fileno(f);

	return fd >= 0 && isatty(fd) ? FUNC_WIDTH : 1 << 20;
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
	if (s->growth)
		fprintf(f, "  %s", SNAP_GROWTH_LABEL);
	fputc('\n', f);
	for (i = 0; i < s->nprocs; i++) {
		const struct snap_proc *p = &s->procs[i];

		if (p->growth) {
			char d[32];

			fprintf(f,
				"PID %" PRIu32
				" %s: touched %s (%s), RSS %s (%s since "
				"attach), returned %s in %" PRIu64 " calls%s\n",
				p->pid, p->comm,
				fmt_bytes(a, sizeof(a),
					  (double)p->touched_bytes, 0),
				fmt_signed(b, sizeof(b),
					   (double)p->delta_bytes),
				fmt_bytes(c, sizeof(c), (double)p->rss_bytes,
					  0),
				fmt_signed(d, sizeof(d), (double)p->rss_change),
				fmt_bytes(m, sizeof(m),
					  (double)p->returned_bytes, 0),
				p->returned_calls, p->alive ? "" : " [exited]");
			continue;
		}

		fprintf(f,
			"PID %" PRIu32 " %s: outstanding %s in %" PRId64
			" allocs (%s), alloc %.1f/s, free %.1f/s, RSS %s, mmap "
			"%s",
			p->pid, p->comm,
			fmt_bytes(a, sizeof(a), (double)p->outstanding_bytes,
				  0),
			p->outstanding_allocs,
			fmt_signed(b, sizeof(b), (double)p->delta_bytes),
			p->alloc_rate, p->free_rate,
			fmt_bytes(c, sizeof(c), (double)p->rss_bytes, 0),
			fmt_bytes(m, sizeof(m), (double)p->mmap_bytes, 0));
		/* The highs: what was allocated and freed between two samples
		 * shows in the interval's. */
		fprintf(f, ", peak %s (interval %s",
			fmt_bytes(a, sizeof(a), (double)p->peak_bytes, 0),
			fmt_bytes(b, sizeof(b), (double)p->interval_peak_bytes,
				  0));
		if (p->peak_ago_s >= 0.5)
			fprintf(f, ", reached %.0fs ago", p->peak_ago_s);
		fputc(')', f);
		/* Resources beside memory, and their change since the first
		 * sample (or the baseline): a leak of files or threads. */
		if (p->has_resources)
			fprintf(f,
				", files %" PRIu32 " (%+" PRId32
				"), threads %" PRIu32 " (%+" PRId32 ")",
				p->open_fds, p->fds_growth, p->threads,
				p->threads_growth);
		/* CPython's cyclic collector: collections and the bytes it
		 * freed in the interval. */
		if (p->has_gc)
			fprintf(f,
				", gc %" PRIu64 " collections (+%" PRIu64
				"), freed %s",
				p->gc_collections, p->gc_delta_collections,
				fmt_bytes(m, sizeof(m),
					  (double)p->gc_delta_bytes, 0));
		fprintf(f, "%s\n", p->alive ? "" : " [exited]");
		/* What the figures above do not include: said, never silent. */
		if (p->not_seen[0])
			fprintf(f, "  not seen: %s\n", p->not_seen);
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
	if (s->growth)
		fprintf(f, "faults lost: %" PRIu64 "\n",
			s->lost[MT_CNT_FAULT_LOST]);
}

/*
 * Objects by type, like objgraph.show_growth(): live objects of each type
 * allocated since attach, their bytes, growth per second and the change
 * since the baseline (or since first seen), and the site with most of them.
 */
static void print_types(FILE *f, const struct snapshot *s, int top)
{
	char a[32], b[32], fn[FUNC_WIDTH + 8];
	int n = s->ntypes;

	fputc('\n', f);
	for (int i = 0; i < s->nprocs; i++) {
		const struct snap_proc *p = &s->procs[i];

		if (p->has_types)
			fprintf(f,
				"TYPES PID %" PRIu32 ": %" PRIu64
				" objects named, %" PRIu64 " untyped, %" PRIu64
				" not read yet, %" PRIu64
				" type pointers refused\n",
				p->pid, p->obj_typed, p->obj_untyped,
				p->obj_unread, p->bad_types);
	}
	fprintf(f, "%7s %10s %11s %10s %10s %-*s %s\n", "PID", "OBJECTS",
		"BYTES", "OBJECTS/s", s->baseline ? "SINCE-B" : "SINCE",
		FUNC_WIDTH, "TYPE", "TOP SITE");
	if (top > 0 && top < n)
		n = top;
	for (int i = 0; i < n; i++) {
		const struct snap_type *t = &s->types[i];

		snprintf(b, sizeof(b), "%+" PRId64, t->delta_objects);
		fprintf(f,
			"%7" PRIu32 " %10" PRId64
			" %11s %10.1f %10s %-*s%s%s%s%s\n",
			t->pid, t->objects,
			fmt_bytes(a, sizeof(a), (double)t->bytes, 0),
			t->growth_objs, b, t->nsites ? FUNC_WIDTH : 0,
			fit_func(fn, sizeof(fn), t->name, func_width(f)),
			t->nsites ? " " : "",
			t->nsites ? t->sites[0].function : "",
			t->nsites && *t->sites[0].location ? " " : "",
			t->nsites ? t->sites[0].location : "");
	}
}

void view_batch_print(FILE *f, const struct snapshot *s, int top)
{
	char a[32], b[32], c[32], fn[FUNC_WIDTH + 8];
	bool gc;
	int i, n;

	if (!f || !s)
		return;
	print_summary(f, s);
	fputc('\n', f);
	if (s->growth) {
		/* Growth mode: TOUCHED, TOUCHED/s, FUNCTION, LOCATION; the
		 * rows of a process switched to exact tracing follow. */
		fprintf(f, "%7s %11s %11s %-*s %s\n", "PID", "TOUCHED",
			"TOUCHED/s", FUNC_WIDTH, "FUNCTION", "LOCATION");
		n = 0;
		for (i = 0; i < s->nsites && (top <= 0 || n < top); i++) {
			const struct snap_site *st = &s->sites[i];
			const char *loc = st->location ? st->location : "";

			if (!st->touched)
				continue;
			n++;
			/* Rows sharing FUNCTION and LOCATION say what tells
			 * them apart, as in the allocation table. */
			fprintf(f, "%7" PRIu32 " %11s %11s %-*s%s%s%s%s\n",
				st->pid,
				fmt_bytes(a, sizeof(a),
					  (double)st->touched_bytes, 0),
				fmt_bytes(b, sizeof(b), st->growth_bps, 0),
				*loc ? FUNC_WIDTH : 0,
				fit_func(fn, sizeof(fn), st->function,
					 func_width(f)),
				*loc ? " " : "", loc, st->via ? " " : "",
				st->via ? st->via : "");
		}
		fputc('\n', f);
		for (i = 0; i < s->nsites && s->sites[i].touched; i++)
			;
		if (i == s->nsites) {
			fflush(f);
			return;
		}
	}
	gc = snapshot_has_gc(s);
	fprintf(f, "%7s %11s %8s %11s %9s %9s %10s %s%-*s %s\n", "PID",
		"OUTSTANDING", "COUNT", "GROWTH/s", "ALLOC/s", "FREE/s", "AVG",
		gc ? " GC% " : "", FUNC_WIDTH, "FUNCTION", "LOCATION");
	for (i = 0, n = 0; i < s->nsites && (top <= 0 || n < top); i++) {
		const struct snap_site *st = &s->sites[i];
		double avg = snapshot_avg(st->outstanding_bytes,
					  st->outstanding_allocs);

		const char *loc = st->location ? st->location : "";
		char gcp[16] = "";

		/* The share of the site's frees made by the cyclic collector.
		 */
		if (gc && st->frees)
			snprintf(gcp, sizeof(gcp), "%4.0f ",
				 100.0 * (double)st->gc_frees /
					 (double)st->frees);
		else if (gc)
			snprintf(gcp, sizeof(gcp), "%4s ", "-");

		if (st->touched)
			continue;
		n++;
		fprintf(f,
			"%7" PRIu32 " %11s %8" PRId64
			" %11s %9.1f %9.1f %10s %s%-*s%s%s%s%s\n",
			st->pid,
			fmt_bytes(a, sizeof(a), (double)st->outstanding_bytes,
				  0),
			st->outstanding_allocs,
			fmt_bytes(b, sizeof(b), st->growth_bps, 0),
			st->alloc_rate, st->free_rate,
			fmt_bytes(c, sizeof(c), avg, 0), gcp,
			*loc ? FUNC_WIDTH : 0,
			fit_func(fn, sizeof(fn), st->function, func_width(f)),
			*loc ? " " : "", loc, st->via ? " " : "",
			st->via ? st->via : "");
	}
	if (s->types_on)
		print_types(f, s, top);
	fputc('\n', f);
	fflush(f);
}
