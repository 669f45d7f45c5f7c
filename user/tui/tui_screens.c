/*
 * The live screen's screens: the summary lines, the call-site table, the
 * process list, a site's full stack and the help screen, and draw(), which
 * picks the one the mode shows and sends the frame in one doupdate().
 */
#define _GNU_SOURCE /* strcasestr, memfd_create */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <langinfo.h>
#include <locale.h>
#include <math.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>
#include <curses.h>
#include <linux/types.h> /* memtop.h, reached through snapshot.h, needs __u32 */
#include "sample.h"	 /* mono_ns */
#include "source.h"
#include "tui.h"
#include "tui_int.h"
#include "views.h"

/* ---- Screens ----------------------------------------------------------- */

/*
 * Growth mode's lines 1 and 2: the label, then TOUCHED, RSS and what was
 * handed back, for the process shown (p) or all of them.
 */
static void draw_growth_summary(struct tui *t, const struct snap_proc *p)
{
	const struct snapshot *s = t->snap;
	char a[48], b[48], c[48], d[48];
	uint64_t touched = 0, rss = 0, ret = 0;
	int64_t dbytes = 0, rssch = 0;
	double rate = 0;
	int x;

	for (int i = 0; i < s->nprocs; i++) {
		const struct snap_proc *q = &s->procs[i];

		if (p && q->pid != p->pid)
			continue;
		touched += q->touched_bytes;
		rss += q->rss_bytes;
		ret += q->returned_bytes;
		rssch += q->rss_change;
		if (q->growth) {
			dbytes += q->delta_bytes;
			rate += q->growth_bps;
		}
	}
	tui_put(t, 1, 0, tui_cattr(t, CP_SUSPECT, A_BOLD) | A_BOLD,
		SNAP_GROWTH_LABEL);
	x = tui_put(t, 2, 0, A_BOLD, "Touched:");
	x = tui_putf(
		t, 2, x + 1, A_NORMAL, "%s (%s, %s/s)",
		tui_fmt_fit(a, sizeof(a), (double)touched, t->unit, 99, false),
		tui_fmt_fit(b, sizeof(b), (double)dbytes, t->unit, 99, true),
		tui_fmt_fit(c, sizeof(c), rate, 0, 99, true));
	x = tui_put(t, 2, x + 2, A_BOLD, "RSS:");
	x = tui_putf(
		t, 2, x + 1, A_NORMAL, "%s (%s since attach)",
		tui_fmt_fit(a, sizeof(a), (double)rss, t->unit, 99, false),
		tui_fmt_fit(d, sizeof(d), (double)rssch, t->unit, 99, true));
	x = tui_put(t, 2, x + 2, A_BOLD, "Returned:");
	tui_putf(t, 2, x + 1, A_NORMAL, "%s",
		 tui_fmt_fit(a, sizeof(a), (double)ret, t->unit, 99, false));
}

/*
 * What the figures do not include (allocations a PGO build inlines past
 * the probes, frames memtop cannot read), as batch output says under each
 * process: the shown process's, else the first process's with its pid and
 * how many more have one.
 */
static void draw_not_seen(struct tui *t, const struct snap_proc *dp, int x)
{
	const struct snapshot *s = t->snap;
	const struct snap_proc *first = NULL;
	int n = 0;

	if (!dp && s->nprocs == 1)
		dp = &s->procs[0];
	for (int i = 0; i < s->nprocs; i++) {
		const struct snap_proc *q = &s->procs[i];

		if ((dp && q->pid != dp->pid) || !q->not_seen[0])
			continue;
		if (!first)
			first = q;
		n++;
	}
	if (!first)
		return;
	x = tui_put(t, 4, x + 2 * !!x,
		    tui_cattr(t, CP_SUSPECT, A_BOLD) | A_BOLD, "Not seen:");
	if (!dp)
		x = tui_putf(t, 4, x + 1, A_NORMAL, "PID %" PRIu32 ":",
			     first->pid);
	x = tui_put(t, 4, x + 1, A_NORMAL, first->not_seen);
	if (n > 1)
		tui_putf(t, 4, x, A_NORMAL, " (+%d more processes)", n - 1);
}

void tui_draw_summary(struct tui *t)
{
	const struct snapshot *s = t->snap;
	const struct snap_proc *dp = NULL; /* the process drilled into */
	char a[48], b[48], c[48], modes[128];
	int64_t dbytes = 0, dallocs = 0, obytes, oallocs;
	double arate, frate;
	uint64_t rss;
	int nsusp = 0, nres = 0, ngc = 0, x;
	uint64_t nfds = 0, nthr = 0, gcoll = 0, gdcoll = 0, gdbytes = 0;
	int64_t dfds = 0, dthr = 0;
	attr_t bold = A_BOLD, sa;
	double dt;

	if (!s)
		return;
	if (t->drill)
		dp = tui_find_proc(s->procs, s->nprocs, t->drill);
	for (int i = 0; i < s->nprocs; i++) {
		if (dp && s->procs[i].pid != dp->pid)
			continue;
		dbytes += s->procs[i].delta_bytes;
		dallocs += s->procs[i].delta_allocs;
		nsusp += s->procs[i].nsuspects;
		if (s->procs[i].has_gc) {
			ngc++;
			gcoll += s->procs[i].gc_collections;
			gdcoll += s->procs[i].gc_delta_collections;
			gdbytes += s->procs[i].gc_delta_bytes;
		}
		if (s->procs[i].has_resources) {
			nres++;
			nfds += s->procs[i].open_fds;
			nthr += s->procs[i].threads;
			dfds += s->procs[i].fds_growth;
			dthr += s->procs[i].threads_growth;
		}
	}
	/* Drilled into a process: its own figures; else the whole snapshot. */
	obytes = dp ? dp->outstanding_bytes : s->outstanding_bytes;
	oallocs = dp ? dp->outstanding_allocs : s->outstanding_allocs;
	arate = dp ? dp->alloc_rate : s->alloc_rate;
	frate = dp ? dp->free_rate : s->free_rate;
	rss = dp ? dp->rss_bytes : s->rss_bytes;
	dt = s->interval_s > 0 ? s->interval_s : 0;

	/* Line 0: who, and for how long. */
	x = tui_put(t, 0, 0, tui_cattr(t, CP_TITLE, A_BOLD), "memtop");
	if (dp || (s->nprocs == 1 && !t->o->system_wide)) {
		const struct snap_proc *p = dp ? dp : &s->procs[0];

		x = tui_putf(t, 0, x + 2, bold, "PID %" PRIu32, p->pid);
		x = tui_putf(t, 0, x + 1, A_NORMAL, "%s", p->comm);
		x = tui_put(t, 0, x + 2, A_DIM, p->cmdline);
	} else if (t->o->system_wide) {
		x = tui_put(t, 0, x + 2, bold,
			    s->growth
				    ? "system-wide: page faults since attach"
				    : "system-wide: allocations since attach");
		x = tui_putf(t, 0, x + 2, A_NORMAL, "%d process%s", s->nprocs,
			     s->nprocs == 1 ? "" : "es");
	} else {
		char pids[128];
		size_t o = 0;

		pids[0] = '\0';
		for (int i = 0; i < s->nprocs && o < sizeof(pids) - 12; i++)
			o += (size_t)snprintf(pids + o, sizeof(pids) - o,
					      "%s%" PRIu32, i ? "," : "",
					      s->procs[i].pid);
		x = tui_putf(t, 0, x + 2, bold, "PIDs %s", pids);
		if (s->nprocs && !t->plist)
			x = tui_putf(t, 0, x + 2, A_DIM, "%s",
				     s->procs[0].cmdline);
	}
	tui_fmt_clock(a, sizeof(a), s->elapsed_s);
	if (COLS - (int)strlen(a) - 9 > x)
		tui_putf(t, 0, COLS - (int)strlen(a) - 9, A_NORMAL,
			 "elapsed %s", a);

	if (tui_growth_view(t) || (tui_list_mode(t) && s->growth)) {
		draw_growth_summary(t, dp ? dp : tui_shown_proc(t));
		goto line3;
	}
	/* Line 1: outstanding memory and how it moved since the last refresh.
	 */
	x = tui_put(t, 1, 0, bold, "Outstanding:");
	x = tui_putf(
		t, 1, x + 1, A_NORMAL, "%s in %" PRId64 " allocs",
		tui_fmt_fit(a, sizeof(a), (double)obytes, t->unit, 99, false),
		oallocs);
	if (*snapshot_modes(s, modes, sizeof(modes)))
		x = tui_putf(t, 1, x + 1,
			     tui_cattr(t, CP_SUSPECT, A_BOLD) | A_BOLD, "%s",
			     modes);
	x = tui_putf(
		t, 1, x + 2, A_NORMAL,
		"change %s (%s/s), %+" PRId64 " allocs (%+.1f/s)",
		tui_fmt_fit(b, sizeof(b), (double)dbytes, t->unit, 99, true),
		tui_fmt_fit(c, sizeof(c), dt ? (double)dbytes / dt : 0, 0, 99,
			    true),
		dallocs, dt ? (double)dallocs / dt : 0.0);
	/* One process's highs: since attach, and within the interval (a
	 * burst allocated and freed between two refreshes shows only here).
	 * A sum over processes would be no process's peak. */
	if (dp || s->nprocs == 1) {
		const struct snap_proc *p = dp ? dp : &s->procs[0];

		x = tui_put(t, 1, x + 2, bold, "Peak:");
		tui_putf(t, 1, x + 1, A_NORMAL, "%s (interval %s)",
			 tui_fmt_fit(a, sizeof(a), (double)p->peak_bytes,
				     t->unit, 99, false),
			 tui_fmt_fit(b, sizeof(b),
				     (double)p->interval_peak_bytes, t->unit,
				     99, false));
	}

	/* Line 2: rates, RSS and how much of it the probes see. */
	x = tui_put(t, 2, 0, bold, "Rates:");
	x = tui_putf(t, 2, x + 1, A_NORMAL, "alloc %s/s free %s/s",
		     tui_fmt_count(a, sizeof(a), arate, true),
		     tui_fmt_count(b, sizeof(b), frate, true));
	x = tui_put(t, 2, x + 2, bold, "RSS:");
	if (rss)
		x = tui_putf(t, 2, x + 1, A_NORMAL, "%s (traced %.1f%%)",
			     tui_fmt_fit(c, sizeof(c), (double)rss, t->unit, 99,
					 false),
			     100.0 * (double)obytes / (double)rss);
	else
		x = tui_put(t, 2, x + 1, A_NORMAL, "-");
	x = tui_put(t, 2, x + 2, bold, "Suspects:");
	x = tui_putf(t, 2, x + 1,
		     nsusp ? tui_cattr(t, CP_SUSPECT, A_BOLD) | A_BOLD
			   : A_NORMAL,
		     "%d", nsusp);
	if (nres) {
		/* Files and threads beside memory, and their change since
		 * attach (or the baseline): a leak of descriptors or of
		 * threads never joined shows here. */
		x = tui_put(t, 2, x + 2, bold, "Files:");
		x = tui_putf(t, 2, x + 1,
			     dfds > 0 ? tui_cattr(t, CP_GROWING, A_BOLD)
				      : A_NORMAL,
			     "%" PRIu64 " (%+" PRId64 ")", nfds, dfds);
		x = tui_put(t, 2, x + 2, bold, "Threads:");
		tui_putf(t, 2, x + 1,
			 dthr > 0 ? tui_cattr(t, CP_GROWING, A_BOLD) : A_NORMAL,
			 "%" PRIu64 " (%+" PRId64 ")", nthr, dthr);
	}

	/* Line 3: trust (lost events) and the view's settings. */
line3:
	x = tui_put(t, 3, 0, bold, "Lost:");
	x = tui_putf(t, 3, x + 1,
		     s->lost_total ? tui_cattr(t, CP_SUSPECT, A_BOLD)
				   : A_NORMAL,
		     "%" PRIu64 " events", s->lost_total);
	x = tui_putf(t, 3, x, A_NORMAL, ", %" PRIu64 " unknown frees",
		     s->lost[MT_CNT_UNKNOWN_FREE]);
	x = tui_put(t, 3, x + 2, bold, "Interval:");
	x = tui_putf(t, 3, x + 1, A_NORMAL, "%.1fs", loop_interval(t->loop));
	x = tui_put(t, 3, x + 2, bold, "Sort:");
	x = tui_putf(t, 3, x + 1, A_NORMAL, "%s%s",
		     tui_growth_view(t) && t->sort == SORT_OUTSTANDING
			     ? "touched"
		     : tui_growth_view(t) && t->sort == SORT_GROWTH
			     ? "touched/s"
			     : sort_field_name(t->sort),
		     t->reverse ? " (reversed)" : "");
	if (tui_list_mode(t)) {
		int n;

		tui_procs(t, &n);
		x = tui_put(t, 3, x + 2, bold, "Processes:");
		x = tui_putf(t, 3, x + 1, A_NORMAL, "%d/%d", t->nidx, n);
	} else {
		int n, m = 0;
		const struct snap_site *r = tui_rows(t, &n);

		for (int i = 0; i < n; i++)
			m += !t->drill || r[i].pid == t->drill;
		x = tui_put(t, 3, x + 2, bold, "Sites:");
		x = tui_putf(t, 3, x + 1, A_NORMAL, "%d/%d", t->nidx, m);
	}
	if (ngc) {
		x = tui_put(t, 3, x + 2, bold, "GC:");
		x = tui_putf(t, 3, x + 1, A_NORMAL,
			     "%" PRIu64 " collections (+%" PRIu64 "), freed %s",
			     gcoll, gdcoll,
			     tui_fmt_fit(a, sizeof(a), (double)gdbytes, t->unit,
					 99, false));
	}
	if (t->unit) {
		static const char *const un[] = {"", "B", "KiB", "MiB", "GiB"};

		x = tui_put(t, 3, x + 2, bold, "Units:");
		tui_put(t, 3, x + 1, A_NORMAL, un[t->unit]);
	}

	/* Line 4: states (each a badge and a space), then the message. */
	x = 0;
	sa = tui_cattr(t, CP_STATE, A_REVERSE) | A_BOLD;
	if (t->exited || (dp && !dp->alive))
		x = tui_put(t, 4, x, sa, " PROCESS EXITED ");
	if (t->paused)
		x = tui_put(t, 4, x + !!x, sa, " PAUSED ");
	if (s->growth && dp && dp->exact)
		x = tui_put(t, 4, x + !!x, sa,
			    " EXACT TRACING (x: back to growth) ");
	else if (s->growth && !dp && s->nprocs == 1 && s->procs[0].exact)
		x = tui_put(t, 4, x + !!x, sa,
			    " EXACT TRACING (x: back to growth) ");
	if (t->baseline) {
		tui_fmt_clock(b, sizeof(b), s->elapsed_s - t->base_elapsed);
		tui_fmt_fit(a, sizeof(a),
			    (double)(s->outstanding_bytes - t->base_bytes),
			    t->unit, 99, true);
		x = tui_putf(t, 4, x + !!x, A_REVERSE | A_BOLD,
			     " BASELINE %s ago: %s, %+" PRId64 " allocs ", b, a,
			     s->outstanding_allocs - t->base_allocs);
	}
	if (tui_cur_filter(t)[0])
		x = tui_putf(t, 4, x + !!x, A_REVERSE | A_BOLD,
			     " FILTER \"%s\" ", tui_cur_filter(t));
	if (t->collapse && !tui_list_mode(t))
		x = tui_put(t, 4, x + !!x, A_REVERSE | A_BOLD, " COLLAPSED ");
	if (t->err_fd >= 0) {
		struct stat stb;

		if (!fstat(t->err_fd, &stb) && stb.st_size > 0)
			x = tui_put(t, 4, x + !!x, A_DIM,
				    "[messages held until exit]");
	}
	if (t->msg[0] && tui_mono_now() < t->msg_until)
		x = tui_put(t, 4, x + 2 * !!x, A_BOLD, t->msg);
	draw_not_seen(t, dp, x);
}

/*
 * The memory columns both tables show, in this order (COL_OUT.., PC_OUT..),
 * formatted alike from the figures sites and processes name alike.
 */
enum mem_col { MEM_OUT, MEM_COUNT, MEM_GROWTH, MEM_ALLOC, MEM_FREE, MEM_NR };

struct mem_figs {
	double out_bytes, out_allocs, growth_bps, alloc_rate, free_rate;
};

#define MEM_FIGS(r)                                                            \
	((struct mem_figs){(double)(r)->outstanding_bytes,                     \
			   (double)(r)->outstanding_allocs, (r)->growth_bps,   \
			   (r)->alloc_rate, (r)->free_rate})

static void mem_cell(struct tui *t, int c, struct mem_figs f, char *buf,
		     size_t len, int w)
{
	switch (c) {
	case MEM_OUT:
		tui_fmt_fit(buf, len, f.out_bytes, t->unit, w, false);
		break;
	case MEM_COUNT:
		tui_fmt_count(buf, len, f.out_allocs, false);
		break;
	case MEM_GROWTH:
		tui_fmt_fit(buf, len, f.growth_bps, t->unit, w, true);
		break;
	case MEM_ALLOC:
		tui_fmt_count(buf, len, f.alloc_rate, true);
		break;
	case MEM_FREE:
		tui_fmt_count(buf, len, f.free_rate, true);
		break;
	}
}

enum col_id {
	COL_PID,
	COL_OUT,
	COL_COUNT,
	COL_GROWTH,
	COL_ALLOC,
	COL_FREE,
	COL_GC,
	COL_AVG,
	COL_AGE,
	COL_TREND,
	COL_NR
};
_Static_assert(COL_COUNT - COL_OUT == MEM_COUNT &&
		       COL_GROWTH - COL_OUT == MEM_GROWTH &&
		       COL_ALLOC - COL_OUT == MEM_ALLOC &&
		       COL_FREE - COL_OUT == MEM_FREE,
	       "COL_OUT..COL_FREE in mem_col's order");

static const struct column columns[COL_NR] = {
	[COL_PID] = {"PID", 7, -1, 4, false},
	[COL_OUT] = {"OUTSTANDING", 11, SORT_OUTSTANDING, 0, false},
	[COL_COUNT] = {"COUNT", 7, SORT_COUNT, 0, false},
	[COL_GROWTH] = {"GROWTH/s", 11, SORT_GROWTH, 0, false},
	[COL_ALLOC] = {"ALLOC/s", 7, SORT_ALLOC_RATE, 2, false},
	[COL_FREE] = {"FREE/s", 7, SORT_FREE_RATE, 7, false},
	[COL_GC] = {"GC%", 4, -1, 3, false},
	[COL_AVG] = {"AVG", 9, SORT_AVG, 5, false},
	[COL_AGE] = {"AGE", 6, SORT_AGE, 6, false},
	[COL_TREND] = {"TREND", 8, -1, 1, true},
};

/* The site table: its columns, then FUNCTION and LOCATION. */
static void site_layout(const struct tui *t, struct table *tb, int func_need,
			int *func_w)
{
	tui_table_init(tb, columns, COL_NR);
	tb->on[COL_PID] = t->snap && t->snap->nprocs > 1 && !t->drill;
	tb->on[COL_GC] = t->snap && snapshot_has_gc(t->snap);
	if (tui_growth_view(t)) {
		/* TOUCHED, TOUCHED/s, TREND: no allocation figures. */
		tb->on[COL_COUNT] = tb->on[COL_ALLOC] = tb->on[COL_FREE] =
			false;
		tb->on[COL_AVG] = tb->on[COL_AGE] = false;
	}
	tui_table_layout(tb, FUNC_MIN + 1 + LOC_MIN);
	/*
	 * FUNCTION gets what its visible names need, up to 60% of what is
	 * left; LOCATION the rest. Which columns are shown depends on the
	 * width alone, so they do not come and go while scrolling.
	 */
	*func_w = (COLS - tb->end - 1) * 60 / 100;
	if (func_need + 1 < *func_w)
		*func_w = func_need + 1;
	if (*func_w < FUNC_MIN)
		*func_w = FUNC_MIN;
}

static void site_cell(struct tui *t, int i, const void *row, char *buf,
		      size_t len, int w)
{
	const struct snap_site *s = row;

	switch (i) {
	case COL_PID:
		snprintf(buf, len, "%" PRIu32, s->pid);
		break;
	case COL_OUT:
	case COL_COUNT:
	case COL_GROWTH:
	case COL_ALLOC:
	case COL_FREE:
		mem_cell(t, i - COL_OUT, MEM_FIGS(s), buf, len, w);
		break;
	case COL_GC:
		if (s->frees)
			snprintf(buf, len, "%.0f",
				 100.0 * (double)s->gc_frees /
					 (double)s->frees);
		else
			snprintf(buf, len, "-");
		break;
	case COL_AVG:
		tui_fmt_fit(buf, len,
			    snapshot_avg(s->outstanding_bytes,
					 s->outstanding_allocs),
			    t->unit, w, false);
		break;
	case COL_AGE:
		tui_fmt_age(buf, len, s->age_s);
		break;
	case COL_TREND:
		tui_sparkline(t, buf, len, s->trend, s->ntrend, w);
		break;
	}
}

static void site_row(struct tui *t, const struct table *tb, int func_w, int y,
		     const struct snap_site *s, bool selected)
{
	int loc_x = tb->end + func_w + 1;
	attr_t a = A_NORMAL;

	if (s->suspect)
		a = tui_cattr(t, CP_SUSPECT, A_BOLD) | A_BOLD;
	else if (s->growth_bps > 0.5)
		a = tui_cattr(t, CP_GROWING, A_BOLD);
	if (selected)
		a = tui_cattr(t, CP_SELECTED, A_REVERSE) | (a & A_BOLD);
	tui_table_row(t, tb, y, a, s->suspect, site_cell, s);
	tui_cell(t, y, tb->end, func_w, true, a, s->function, false);
	if (s->via) {
		/*
		 * Rows sharing function and location: what tells them apart
		 * follows the location. When both do not fit, the location
		 * keeps two thirds (its end, file:line) and the rest shows the
		 * start of the difference, never the difference alone.
		 */
		int avail = COLS - loc_x, llen = (int)strlen(s->location);
		int vlen = (int)strlen(s->via), lw = llen;

		if (llen + 1 + vlen > avail) {
			lw = avail - vlen - 1;
			if (lw < avail * 2 / 3)
				lw = avail * 2 / 3;
			if (lw > llen)
				lw = llen;
		}
		tui_cell(t, y, loc_x, lw, true, a, s->location, true);
		if (avail - lw - 1 > 0)
			tui_cell(t, y, loc_x + lw + 1, avail - lw - 1, true, a,
				 s->via, false);
	} else {
		tui_cell(t, y, loc_x, COLS - loc_x, true, a, s->location, true);
	}
}

/* ---- The process list ---------------------------------------------- */

enum pcol_id {
	PC_PID,
	PC_USER,
	PC_COMM,
	PC_OUT,
	PC_COUNT,
	PC_GROWTH,
	PC_ALLOC,
	PC_FREE,
	PC_RSS,
	PC_RSSCHG, /* growth mode: RSS change, TOUCHED, TOUCHED/s */
	PC_TOUCHED,
	PC_TOUCHRATE,
	PC_FILES,
	PC_THREADS,
	PC_TREND,
	PC_NR
};
_Static_assert(PC_COUNT - PC_OUT == MEM_COUNT &&
		       PC_GROWTH - PC_OUT == MEM_GROWTH &&
		       PC_ALLOC - PC_OUT == MEM_ALLOC &&
		       PC_FREE - PC_OUT == MEM_FREE,
	       "PC_OUT..PC_FREE in mem_col's order");

static const struct column pcolumns[PC_NR] = {
	[PC_PID] = {"PID", 7, -1, 0, false},
	[PC_USER] = {"USER", 8, -1, 3, true},
	[PC_COMM] = {"COMM", 15, SORT_FUNCTION, 0, true},
	[PC_OUT] = {"OUTSTANDING", 11, SORT_OUTSTANDING, 0, false},
	[PC_COUNT] = {"COUNT", 7, SORT_COUNT, 0, false},
	[PC_GROWTH] = {"GROWTH/s", 11, SORT_GROWTH, 0, false},
	[PC_ALLOC] = {"ALLOC/s", 7, SORT_ALLOC_RATE, 4, false},
	[PC_FREE] = {"FREE/s", 7, SORT_FREE_RATE, 6, false},
	[PC_RSS] = {"RSS", 9, -1, 2, false},
	[PC_FILES] = {"FILES", 9, -1, 4, false},
	[PC_THREADS] = {"THREADS", 8, -1, 4, false},
	[PC_RSSCHG] = {"RSS CHANGE", 10, -1, 3, false},
	[PC_TOUCHED] = {"TOUCHED", 11, SORT_OUTSTANDING, 0, false},
	[PC_TOUCHRATE] = {"TOUCHED/s", 11, SORT_GROWTH, 4, false},
	[PC_TREND] = {"TREND", 8, -1, 5, true},
};

#define CMD_MIN 12 /* COMMAND, the command line, gets the rest */

/* A user name for a uid, looked up once (getpwuid can be slow: NSS). */
static const char *user_name(struct tui *t, uint32_t uid)
{
	const int cap = (int)(sizeof(t->users) / sizeof(t->users[0]));
	struct passwd *pw;
	int i;

	for (i = 0; i < t->nusers; i++)
		if (t->users[i].uid == uid)
			return t->users[i].name;
	if (t->nusers < cap) {
		i = t->nusers++;
	} else {
		i = t->users_next;
		t->users_next = (t->users_next + 1) % cap;
	}
	t->users[i].uid = uid;
	pw = getpwuid(uid);
	if (pw && pw->pw_name)
		snprintf(t->users[i].name, sizeof(t->users[i].name), "%s",
			 pw->pw_name);
	else
		snprintf(t->users[i].name, sizeof(t->users[i].name), "%" PRIu32,
			 uid);
	return t->users[i].name;
}

/* Open files or threads, and their change since attach (or the baseline):
 * "120 +97". */
static void resource_cell(char *buf, size_t len, const struct snap_proc *q,
			  bool files)
{
	uint32_t v = files ? q->open_fds : q->threads;
	int32_t d = files ? q->fds_growth : q->threads_growth;

	if (!q->has_resources)
		snprintf(buf, len, "-");
	else if (d)
		snprintf(buf, len, "%" PRIu32 " %+" PRId32, v, d);
	else
		snprintf(buf, len, "%" PRIu32, v);
}

static void proc_cell(struct tui *t, int i, const void *row, char *buf,
		      size_t len, int w)
{
	const struct snap_proc *q = row;

	switch (i) {
	case PC_PID:
		snprintf(buf, len, "%" PRIu32, q->pid);
		break;
	case PC_USER:
		snprintf(buf, len, "%s", user_name(t, q->uid));
		break;
	case PC_COMM:
		snprintf(buf, len, "%s", q->comm);
		break;
	case PC_OUT:
	case PC_COUNT:
	case PC_GROWTH:
	case PC_ALLOC:
	case PC_FREE:
		mem_cell(t, i - PC_OUT, MEM_FIGS(q), buf, len, w);
		break;
	case PC_RSS:
		if (q->alive)
			tui_fmt_fit(buf, len, (double)q->rss_bytes, t->unit, w,
				    false);
		else
			snprintf(buf, len, "-");
		break;
	case PC_FILES:
	case PC_THREADS:
		resource_cell(buf, len, q, i == PC_FILES);
		break;
	case PC_RSSCHG:
		if (q->alive)
			tui_fmt_fit(buf, len, (double)q->rss_change, t->unit, w,
				    true);
		else
			snprintf(buf, len, "-");
		break;
	case PC_TOUCHED:
		tui_fmt_fit(buf, len, (double)q->touched_bytes, t->unit, w,
			    false);
		break;
	case PC_TOUCHRATE:
		if (q->growth)
			tui_fmt_fit(buf, len, q->growth_bps, t->unit, w, true);
		else
			snprintf(buf, len, "exact");
		break;
	case PC_TREND:
		tui_sparkline(t, buf, len, q->trend, q->ntrend, w);
		break;
	}
}

static void draw_procs(struct tui *t)
{
	static const char *const bar[] = {
		"F1", "Help  ",	 "Enter", "Sites ", "/",   "Search ",
		"\\", "Filter ", "<>",	  "Sort ",  "B",   "Base ",
		"Z",  "Pause ",	 "e",	  "Units ", "F10", "Quit ",
	};
	static const char *const gbar[] = {
		"F1", "Help  ",	 "Enter", "Sites ",  "x",   "Exact ",
		"/",  "Search ", "\\",	  "Filter ", "<>",  "Sort ",
		"Z",  "Pause ",	 "e",	  "Units ",  "F10", "Quit ",
	};
	struct table tb;
	int n, y0 = SUMMARY_LINES + 1, nrows;
	const struct snap_proc *p = tui_procs(t, &n);
	attr_t h = tui_cattr(t, CP_HEADER, A_REVERSE);

	tui_draw_summary(t);
	tui_table_init(&tb, pcolumns, PC_NR);
	if (t->snap && t->snap->growth) {
		tb.on[PC_OUT] = tb.on[PC_COUNT] = tb.on[PC_GROWTH] = false;
		tb.on[PC_ALLOC] = tb.on[PC_FREE] = false;
	} else {
		tb.on[PC_RSSCHG] = tb.on[PC_TOUCHED] = false;
		tb.on[PC_TOUCHRATE] = false;
	}
	/* Drop the least useful columns until COMMAND gets some room. */
	tui_table_layout(&tb, CMD_MIN);
	tui_table_heading(t, &tb, SUMMARY_LINES, NULL);
	if (tb.end < COLS)
		tui_cell(t, SUMMARY_LINES, tb.end, COLS - tb.end, true, h,
			 "COMMAND", false);

	nrows = tui_scroll_to_sel(t, y0);
	for (int r = 0; r < nrows && t->top + r < t->nidx; r++) {
		const struct snap_proc *q = &p[t->idx[t->top + r]];
		bool selected = t->top + r == t->sel;
		int y = y0 + r;
		attr_t a = A_NORMAL;
		char buf[288];

		if (!q->alive)
			a = A_DIM; /* exited: shown this once, as htop does */
		else if (q->nsuspects)
			a = tui_cattr(t, CP_SUSPECT, A_BOLD) | A_BOLD;
		else if (q->growth_bps > 0.5)
			a = tui_cattr(t, CP_GROWING, A_BOLD);
		if (selected)
			a = tui_cattr(t, CP_SELECTED, A_REVERSE) |
			    (a & A_BOLD) | (q->alive ? 0 : A_DIM);
		tui_table_row(t, &tb, y, a, q->nsuspects, proc_cell, q);
		if (tb.end < COLS) {
			snprintf(buf, sizeof(buf), "%s%s%s",
				 q->alive ? "" : "<exited> ",
				 q->exact ? "[exact] " : "",
				 q->cmdline[0] ? q->cmdline : q->comm);
			tui_cell(t, y, tb.end, COLS - tb.end, true, a, buf,
				 false);
		}
	}
	if (!t->nidx && nrows > 0)
		tui_put(t, y0, 2, A_DIM,
			t->pfilter[0] ? "no process matches the filter"
			: t->snap && t->snap->growth
				? "no page faults charged yet"
				: "no allocations seen yet");
	if (t->prompt != PROMPT_NONE)
		tui_draw_prompt(t);
	else if (t->snap && t->snap->growth)
		tui_draw_bar(t, gbar, (int)(sizeof(gbar) / sizeof(gbar[0])));
	else
		tui_draw_bar(t, bar, (int)(sizeof(bar) / sizeof(bar[0])));
}

static void draw_table(struct tui *t)
{
	static const char *const bar[] = {
		"F1",	   "Help  ", "Enter",	"Stack ",    "/",
		"Search ", "\\",     "Filter ", "<>",	     "Sort ",
		"B",	   "Base ",  "c",	"Collapse ", "Z",
		"Pause ",  "e",	     "Units ",	"F10",	     "Quit ",
	};
	static const char *const dbar[] = {
		"F1",	     "Help  ", "Enter",	  "Stack ", "Esc",
		"Back ",     "/",      "Search ", "\\",	    "Filter ",
		"<>",	     "Sort ",  "B",	  "Base ",  "c",
		"Collapse ", "Z",      "Pause ",  "F10",    "Quit ",
	};
	static const char *const gbar[] = {
		"F1",	  "Help  ", "Enter",   "Stack ",    "x",
		"Exact ", "/",	    "Search ", "\\",	    "Filter ",
		"<>",	  "Sort ",  "c",       "Collapse ", "Z",
		"Pause ", "Esc",    "Back ",   "F10",	    "Quit ",
	};
	static const char *const touched[COL_NR] = {
		[COL_OUT] = "TOUCHED",
		[COL_GROWTH] = "TOUCHED/s",
	};
	attr_t h = tui_cattr(t, CP_HEADER, A_REVERSE);
	attr_t hs = tui_cattr(t, CP_SORTED, A_REVERSE | A_UNDERLINE) | A_BOLD;
	struct table tb;
	int n, y0 = SUMMARY_LINES + 1, nrows, func_need, func_w, loc_x;
	struct snap_site *r = tui_rows(t, &n);

	if (tui_list_mode(t)) {
		draw_procs(t);
		return;
	}
	tui_draw_summary(t);
	nrows = tui_scroll_to_sel(t, y0);
	func_need = 0;
	for (int i = 0; i < nrows && t->top + i < t->nidx; i++) {
		const char *f = r[t->idx[t->top + i]].function;
		int w = f ? (int)strlen(f) : 0;

		func_need = w > func_need ? w : func_need;
	}
	site_layout(t, &tb, func_need, &func_w);
	loc_x = tb.end + func_w + 1;
	tui_table_heading(t, &tb, SUMMARY_LINES,
			  tui_growth_view(t) ? touched : NULL);
	tui_cell(t, SUMMARY_LINES, tb.end, func_w, true,
		 t->sort == SORT_FUNCTION ? hs : h, "FUNCTION", false);
	tui_cell(t, SUMMARY_LINES, loc_x, COLS - loc_x, true, h, "LOCATION",
		 false);
	/* Only the visible rows are formatted: 10k sites cost nothing here. */
	for (int i = 0; i < nrows && t->top + i < t->nidx; i++)
		site_row(t, &tb, func_w, y0 + i, &r[t->idx[t->top + i]],
			 t->top + i == t->sel);
	if (!t->nidx && nrows > 0)
		tui_put(t, y0, 2, A_DIM,
			t->filter[0]	     ? "no function matches the filter"
			: tui_growth_view(t) ? "no page faults charged yet"
					     : "no allocations seen yet");
	if (t->prompt != PROMPT_NONE)
		tui_draw_prompt(t);
	else if (t->snap && t->snap->growth)
		tui_draw_bar(t, gbar, (int)(sizeof(gbar) / sizeof(gbar[0])));
	else if (t->drill)
		tui_draw_bar(t, dbar, (int)(sizeof(dbar) / sizeof(dbar[0])));
	else
		tui_draw_bar(t, bar, (int)(sizeof(bar) / sizeof(bar[0])));
}

static void draw_stack(struct tui *t)
{
	static const char *const bar[] = {
		"Esc",	     "Back  ", "Up/Dn", "Scroll  ",
		"PgUp/PgDn", "Page  ", "F10",	"Quit ",
	};
	const struct snap_site *s = &t->stack_site;
	char a[48], b[48];
	int y0 = 4, h, fw, lw, mx, x;
	int n;
	struct snap_site *r = tui_rows(t, &n);

	/* Show the latest numbers of the same site when it is still there. */
	for (int i = 0; i < n; i++) {
		if (r[i].pid == s->pid && !strcmp(r[i].site_id, s->site_id)) {
			t->stack_site = r[i];
			break;
		}
	}
	x = tui_put(t, 0, 0, tui_cattr(t, CP_TITLE, A_BOLD), "Stack of");
	tui_put(t, 0, x + 1, A_BOLD, s->function);
	tui_putf(t, 1, 0, A_NORMAL,
		 "PID %" PRIu32 "  site %s  outstanding %s in %" PRId64
		 " allocs  growth %s/s  %d frames%s",
		 s->pid, s->site_id,
		 tui_fmt_fit(a, sizeof(a), (double)s->outstanding_bytes,
			     t->unit, 99, false),
		 s->outstanding_allocs,
		 tui_fmt_fit(b, sizeof(b), s->growth_bps, t->unit, 99, true),
		 s->nframes,
		 t->collapse ? " (largest stack of the group)" : "");
	if (s->suspect)
		tui_put(t, 2, 0, tui_cattr(t, CP_SUSPECT, A_BOLD) | A_BOLD,
			"! leak suspect: outstanding bytes rose in most recent "
			"refreshes");
	fw = (COLS - 6) * 4 / 10;
	lw = (COLS - 6) * 4 / 10;
	mx = 5 + fw + 1 + lw + 1;
	tui_fill_line(3, tui_cattr(t, CP_HEADER, A_REVERSE));
	tui_cell(t, 3, 0, 4, false, tui_cattr(t, CP_HEADER, A_REVERSE), "#",
		 false);
	tui_cell(t, 3, 5, fw, true, tui_cattr(t, CP_HEADER, A_REVERSE),
		 "FUNCTION", false);
	tui_cell(t, 3, 5 + fw + 1, lw, true, tui_cattr(t, CP_HEADER, A_REVERSE),
		 "LOCATION", false);
	tui_cell(t, 3, mx, COLS - mx, true, tui_cattr(t, CP_HEADER, A_REVERSE),
		 "MODULE", false);
	h = tui_clamp_scroll(t, s->nframes, y0);
	t->page = h > 0 ? h : 1;
	if (!s->nframes)
		tui_put(t, y0, 2, A_DIM, "(the stack was not captured)");
	for (int i = 0; i < h && t->scroll + i < s->nframes; i++) {
		const struct snap_frame *f = &s->frames[t->scroll + i];
		char num[16];

		snprintf(num, sizeof(num), "#%d", t->scroll + i);
		tui_cell(t, y0 + i, 0, 4, false, A_DIM, num, false);
		tui_cell(t, y0 + i, 5, fw, true, A_BOLD, f->func, false);
		tui_cell(t, y0 + i, 5 + fw + 1, lw, true, A_NORMAL, f->location,
			 true);
		tui_cell(t, y0 + i, mx, COLS - mx, true, A_DIM, f->module,
			 true);
	}
	tui_draw_bar(t, bar, (int)(sizeof(bar) / sizeof(bar[0])));
}

static void draw_help(struct tui *t)
{
	static const char *const legend[] = {
		"",
		"Columns: OUTSTANDING bytes allocated and not freed; COUNT of",
		"those blocks; GROWTH/s of outstanding bytes over the last",
		"refreshes (since the baseline when one is set); ALLOC/s and",
		"FREE/s calls; AVG block size; AGE of the site; TREND of its",
		"outstanding bytes over the last refreshes.",
		"A '!' marks a leak suspect: its outstanding bytes rose in "
		"most",
		"of the recent refreshes. Growing rows are highlighted.",
		"Files and Threads (summary; FILES, THREADS in the process",
		"list): descriptors (files, sockets, pipes) held open and",
		"threads running, with their change since attach (or the",
		"baseline): growth there is a leak beside memory.",
		"GC% (CPython): the share of a site's frees done by CPython's",
		"cyclic garbage collector. Near 100%: its objects are kept",
		"alive by reference cycles until a collection frees them.",
		"A site whose objects sit in cycles and never get freed",
		"(COUNT only grows, GC% low or '-') is a leak suspect: its",
		"cycles stay reachable from something that lives on. The",
		"summary's GC: collections, and the bytes the collector freed",
		"in the interval.",
		"A block counts at the site that malloc'd it: CPython's free",
		"lists (lists, tuples, dicts) pass objects on to other sites,",
		"which a collection may then free.",
		"",
		"Growth mode (--growth): TOUCHED is the bytes of new pages a",
		"stack first touched since attach (the RSS growth it caused),",
		"4 KiB a page fault; memory reused after a free is not counted",
		"again, and RSS may fall while TOUCHED does not. TOUCHED/s is",
		"its rate, TREND its history; x switches a process to exact",
		"tracing (its allocator probed) and back.",
	};
	static const char *const bar[] = {"Esc", "Back  ", "Up/Dn", "Scroll "};
	int total = 0, y = 0, h, i, nkeys;
	const struct key_binding *keytab = tui_keys(&nkeys);

	tui_put(t, 0, 0, tui_cattr(t, CP_TITLE, A_BOLD), "memtop keys");
	for (i = 0; i < nkeys; i++)
		total += keytab[i].help != NULL;
	total += (int)(sizeof(legend) / sizeof(legend[0]));
	h = tui_clamp_scroll(t, total, 2);
	for (i = 0; i < nkeys; i++) {
		if (!keytab[i].help)
			continue;
		if (y >= t->scroll && y - t->scroll < h) {
			tui_cell(t, 2 + y - t->scroll, 1, 26, true, A_BOLD,
				 keytab[i].keys, false);
			tui_put(t, 2 + y - t->scroll, 28, A_NORMAL,
				keytab[i].help);
		}
		y++;
	}
	for (i = 0; i < (int)(sizeof(legend) / sizeof(legend[0])); i++, y++)
		if (y >= t->scroll && y - t->scroll < h)
			tui_put(t, 2 + y - t->scroll, 1, A_NORMAL, legend[i]);
	tui_draw_bar(t, bar, (int)(sizeof(bar) / sizeof(bar[0])));
}

void tui_draw(struct tui *t)
{
	if (t->redraw_all) {
		clearok(curscr, TRUE);
		t->redraw_all = false;
	}
	erase();
	if (LINES < 3 || COLS < 20) {
		tui_put(t, 0, 0, A_BOLD, "memtop: terminal too small");
	} else {
		switch (t->mode) {
		case MODE_TABLE:
			draw_table(t);
			break;
		case MODE_STACK:
			draw_stack(t);
			break;
		case MODE_HELP:
			draw_help(t);
			break;
		case MODE_TYPES:
		case MODE_TYPE_SITES:
			tui_draw_types(t);
			break;
		}
	}
	curs_set(t->prompt != PROMPT_NONE ? 1 : 0);
	wnoutrefresh(stdscr);
	doupdate();
}
