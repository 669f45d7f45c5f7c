/*
 * The live screen, top/htop style, and the only file in memtop that includes
 * curses. It owns the refresh loop: every interval (or on demand) it asks its
 * source for a new snapshot, renders a summary, a call-site table and a
 * function-key bar, and maps keys to actions through one key table (the help
 * screen is generated from it). The collector stays the model: sort order,
 * baseline and collapsing are set there and the view only filters, selects
 * and freezes rows. Frames are drawn with erase() and a single doupdate() so
 * curses sends only the cells that changed. While the screen is up, fd 2 is
 * redirected to a memory file so messages from libbpf and memtop cannot
 * garble it; they are replayed after endwin(), which every exit path calls.
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
#include "collector.h"
#include "views.h"

#define SUMMARY_LINES 5 /* rows above the table heading */
#define PROMPT_MAX    64
#define MSG_SECONDS   3.0
#define TICK_MS	      100 /* longest wait for a key, so *stop is seen quickly */
#define KEY_ESC	      27
#define KEY_CTRL_L    12

enum mode { MODE_TABLE, MODE_STACK, MODE_HELP };
enum prompt_kind { PROMPT_NONE, PROMPT_SEARCH, PROMPT_FILTER, PROMPT_DELAY };

enum color_pair {
	CP_HEADER = 1,
	CP_SORTED,
	CP_SELECTED,
	CP_GROWING,
	CP_SUSPECT,
	CP_BAR_LABEL,
	CP_STATE,
	CP_TITLE,
};

/* The selected row is remembered by identity, so it survives re-sorting. */
struct sel_key {
	bool valid;
	uint32_t pid;
	char site_id[17];
	char function[128];
};

struct tui {
	struct collector *coll;
	const struct tui_source *src;
	const struct tui_opts *o;
	volatile sig_atomic_t *stop;

	/* Terminal. */
	SCREEN *scr;
	FILE *in, *out; /* opened here when not the terminal */
	bool keys;	/* stdin is a terminal: keys can be read */
	bool color, utf8;
	int err_fd, saved_err; /* fd 2 redirected while the screen is up */

	/* Data. */
	const struct snapshot *snap;
	struct snap_site *frozen; /* the table while paused */
	int nfrozen, frozen_cap;
	int64_t *frozen_trends; /* their trends: the snapshot's are reused */
	int frozen_trends_cap;
	int *idx; /* rows shown after the filter, into rows() */
	int nidx, idx_cap;
	long nrefresh;
	double next_refresh, last_refresh;
	bool exited;
	int64_t base_bytes, base_allocs; /* totals when B was pressed */
	double base_elapsed;

	/* Settings driven by keys. */
	enum sort_field sort;
	bool reverse, paused, baseline, collapse;
	int unit; /* fmt_bytes unit: 0 auto .. 4 GiB */
	double interval;
	char filter[PROMPT_MAX];
	char search[PROMPT_MAX];

	/*
	 * Process list (system-wide, several processes): the top level lists
	 * processes and Enter drills into one's call sites (drill = its pid).
	 * The list has its own filter (command names) and remembers its
	 * selection while drilled in.
	 */
	bool plist;
	uint32_t drill;
	uint32_t list_pid;
	char pfilter[PROMPT_MAX];
	struct snap_proc *pfrozen; /* the process list while paused */
	int npfrozen, pfrozen_cap;
	struct {
		uint32_t uid;
		char name[16];
	} users[64]; /* getpwuid cache, filled round-robin */
	int nusers, users_next;

	/* Screen state. */
	enum mode mode;
	int sel, top, page; /* selection and first row, as indexes into idx */
	int scroll;	    /* first line of the stack or help screen */
	struct sel_key key; /* selected site, looked up again after refresh */
	struct snap_site stack_site; /* the site the stack screen shows */
	enum prompt_kind prompt;
	char pbuf[PROMPT_MAX];
	int plen;
	char msg[160];
	double msg_until;
	bool quit, want_refresh, redraw_all;
};

static double mono_now(void)
{
	return (double)mono_ns() / 1e9;
}

static void set_msg(struct tui *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_msg(struct tui *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->msg, sizeof(t->msg), fmt, ap);
	va_end(ap);
	t->msg_until = mono_now() + MSG_SECONDS;
}

/* ---- Formatting ---------------------------------------------------- */

/* A byte amount that fits width: a forced unit falls back to auto. */
static char *fmt_fit(char *buf, size_t len, double bytes, int unit, int width,
		     bool sign)
{
	size_t off = 0;

	if (sign && bytes >= 0.5 && len > 1) {
		buf[0] = '+';
		off = 1;
	}
	fmt_bytes(buf + off, len - off, bytes, unit);
	if (unit && (int)strlen(buf) > width)
		fmt_bytes(buf + off, len - off, bytes, 0);
	return buf;
}

/* Counts and rates in at most 7 characters: 1234567, 12.3M. */
static char *fmt_count(char *buf, size_t len, double v, bool frac)
{
	double a = fabs(v);

	if (a < 1e4 && frac)
		snprintf(buf, len, "%.1f", v);
	else if (a < 1e6)
		snprintf(buf, len, "%.0f", v);
	else if (a < 1e9)
		snprintf(buf, len, "%.1fM", v / 1e6);
	else
		snprintf(buf, len, "%.1fG", v / 1e9);
	return buf;
}

static char *fmt_age(char *buf, size_t len, double s)
{
	long v = s > 0 ? (long)s : 0;

	if (v < 60)
		snprintf(buf, len, "%lds", v);
	else if (v < 3600)
		snprintf(buf, len, "%ldm%02ld", v / 60, v % 60);
	else if (v < 86400)
		snprintf(buf, len, "%ldh%02ld", v / 3600, v % 3600 / 60);
	else
		snprintf(buf, len, "%ldd%02ld", v / 86400, v % 86400 / 3600);
	return buf;
}

static char *fmt_clock(char *buf, size_t len, double s)
{
	long v = s > 0 ? (long)s : 0;

	snprintf(buf, len, "%ld:%02ld:%02ld", v / 3600, v % 3600 / 60, v % 60);
	return buf;
}

/*
 * One character at p: its length in bytes (1 for an invalid sequence, which
 * resets *st), its columns in *w, and in *bad whether it must show as '?'.
 */
static size_t next_char(const char *p, mbstate_t *st, bool utf8, int *w,
			bool *bad)
{
	wchar_t wc;
	size_t n = utf8 ? mbrtowc(&wc, p, MB_CUR_MAX, st) : 1;

	*w = 1;
	if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
		memset(st, 0, sizeof(*st));
		*bad = true;
		return 1;
	}
	if (utf8) {
		*w = wcwidth(wc);
		*bad = *w < 0;
		*w = *w < 0 ? 1 : *w;
	} else {
		*bad = !isprint((unsigned char)*p);
	}
	return n;
}

/*
 * Copy at most `width` columns of s into buf, never splitting a character;
 * control bytes and invalid sequences become '?' so names read from /proc
 * or debug info cannot move the cursor. keep_end cuts from the left, for
 * locations whose end (file:line) matters most. Returns the columns used.
 */
static int fit_text(char *buf, size_t len, const char *s, int width,
		    bool keep_end, bool utf8)
{
	const char *ell = utf8 ? "\u2026" : "~";
	size_t ell_len = strlen(ell);
	int cols = 0, total = 0;
	size_t o = 0;
	mbstate_t st;
	const char *p;

	if (!len)
		return 0;
	buf[0] = '\0';
	if (width <= 0)
		return 0;
	s = s ? s : "";
	/* Total width first, to know whether (and where) to cut. */
	memset(&st, 0, sizeof(st));
	for (p = s; *p;) {
		bool bad;
		int w;

		p += next_char(p, &st, utf8, &w, &bad);
		total += w;
	}
	if (total > width && keep_end) {
		int skip = total - (width - 1);

		/* Drop characters from the left until the rest fits. */
		memset(&st, 0, sizeof(st));
		for (p = s; *p && skip > 0;) {
			bool bad;
			int w;

			p += next_char(p, &st, utf8, &w, &bad);
			skip -= w;
		}
		if (o + ell_len < len) {
			memcpy(buf, ell, ell_len);
			o = ell_len;
			cols = 1;
		}
		s = p;
	}
	memset(&st, 0, sizeof(st));
	for (p = s; *p;) {
		bool bad;
		int w;
		size_t n = next_char(p, &st, utf8, &w, &bad);

		if (bad)
			n = 1;
		/* Leave room for the ellipsis when this cannot be the end. */
		if (cols + w > width ||
		    (total > width && !keep_end && cols + w > width - 1))
			break;
		if (o + n >= len)
			break;
		if (bad)
			buf[o] = '?';
		else
			memcpy(buf + o, p, n);
		o += n;
		cols += w;
		p += n;
	}
	if (*p && !keep_end && o + ell_len < len && cols < width) {
		memcpy(buf + o, ell, ell_len);
		o += ell_len;
		cols++;
	}
	buf[o] = '\0';
	return cols;
}

/* ---- Drawing helpers ----------------------------------------------- */

static attr_t cattr(const struct tui *t, enum color_pair cp, attr_t mono)
{
	return t->color ? COLOR_PAIR(cp) : mono;
}

/* Draw text at (y, x), clipped to the screen; returns the next column. */
static int put(const struct tui *t, int y, int x, attr_t a, const char *s)
{
	char buf[1024];
	int w;

	if (x >= COLS || y >= LINES)
		return x;
	w = fit_text(buf, sizeof(buf), s, COLS - x, false, t->utf8);
	attrset(a);
	mvaddstr(y, x, buf);
	attrset(A_NORMAL);
	return x + w;
}

static int putf(const struct tui *t, int y, int x, attr_t a, const char *fmt,
		...) __attribute__((format(printf, 5, 6)));
static int putf(const struct tui *t, int y, int x, attr_t a, const char *fmt,
		...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return put(t, y, x, a, buf);
}

/* A cell of exactly width columns, right- or left-aligned. */
static void cell(const struct tui *t, int y, int x, int width, bool left,
		 attr_t a, const char *s, bool keep_end)
{
	char buf[1024];
	int w;

	if (x >= COLS || width <= 0)
		return;
	if (x + width > COLS)
		width = COLS - x;
	w = fit_text(buf, sizeof(buf), s, width, keep_end, t->utf8);
	attrset(a);
	if (left) {
		mvaddstr(y, x, buf);
		if (w < width)
			mvhline(y, x + w, ' ', width - w);
	} else {
		if (w < width)
			mvhline(y, x, ' ', width - w);
		mvaddstr(y, x + width - w, buf);
	}
	attrset(A_NORMAL);
}

static void fill_line(int y, attr_t a)
{
	attrset(a);
	mvhline(y, 0, ' ', COLS);
	attrset(A_NORMAL);
}

/* Outstanding bytes over the last refreshes, scaled to the column. */
static void sparkline(const struct tui *t, char *buf, size_t len,
		      const int64_t *v, int n, int width)
{
	static const char *const blocks[] = {
		"\u2581", "\u2582", "\u2583", "\u2584",
		"\u2585", "\u2586", "\u2587", "\u2588",
	};
	static const char ascii[] = "_.-=^";
	int levels = t->utf8 ? 8 : 5;
	int64_t lo, hi;
	size_t o = 0;
	int first;

	buf[0] = '\0';
	if (n > width)
		v += n - width, n = width;
	if (n <= 0)
		return;
	lo = hi = v[0];
	for (int i = 1; i < n; i++) {
		lo = v[i] < lo ? v[i] : lo;
		hi = v[i] > hi ? v[i] : hi;
	}
	/* Right-aligned, so the newest point is always in the same place. */
	for (first = 0; first < width - n && o + 1 < len; first++)
		buf[o++] = ' ';
	for (int i = 0; i < n; i++) {
		int lv;

		if (hi == lo)
			lv = v[i] ? levels / 2 - 1 : 0;
		else
			lv = (int)lround((double)(v[i] - lo) * (levels - 1) /
					 (double)(hi - lo));
		if (t->utf8) {
			if (o + 4 >= len)
				break;
			memcpy(buf + o, blocks[lv], 3);
			o += 3;
		} else {
			if (o + 2 >= len)
				break;
			buf[o++] = ascii[lv];
		}
	}
	buf[o] = '\0';
}

/* ---- Rows, filter and selection ------------------------------------ */

static struct snap_site *rows(const struct tui *t, int *n)
{
	if (t->paused) {
		*n = t->nfrozen;
		return t->frozen;
	}
	*n = t->snap ? t->snap->nsites : 0;
	return t->snap ? t->snap->sites : NULL;
}

static struct snap_proc *procs(const struct tui *t, int *n)
{
	if (t->paused) {
		*n = t->npfrozen;
		return t->pfrozen;
	}
	*n = t->snap ? t->snap->nprocs : 0;
	return t->snap ? t->snap->procs : NULL;
}

/* The table lists processes (rather than one process's call sites). */
static bool list_mode(const struct tui *t)
{
	return t->plist && !t->drill;
}

/* The filter of the table on screen. */
static char *cur_filter(struct tui *t)
{
	return list_mode(t) ? t->pfilter : t->filter;
}

static const struct snap_proc *find_proc(const struct snap_proc *p, int n,
					 uint32_t pid)
{
	for (int i = 0; i < n; i++)
		if (p[i].pid == pid)
			return &p[i];
	return NULL;
}

static struct snap_site *sel_row(const struct tui *t)
{
	int n;
	struct snap_site *r = rows(t, &n);

	if (list_mode(t) || t->sel < 0 || t->sel >= t->nidx)
		return NULL;
	return &r[t->idx[t->sel]];
}

static const struct snap_proc *sel_proc(const struct tui *t)
{
	int n;
	const struct snap_proc *p = procs(t, &n);

	if (!list_mode(t) || t->sel < 0 || t->sel >= t->nidx)
		return NULL;
	return &p[t->idx[t->sel]];
}

static void remember_sel(struct tui *t)
{
	const struct snap_site *s = sel_row(t);

	if (list_mode(t)) {
		const struct snap_proc *p = sel_proc(t);

		t->key.valid = p != NULL;
		if (p) {
			t->key.pid = p->pid;
			t->key.site_id[0] = t->key.function[0] = '\0';
		}
		return;
	}
	t->key.valid = s != NULL;
	if (!s)
		return;
	t->key.pid = s->pid;
	memcpy(t->key.site_id, s->site_id, sizeof(t->key.site_id));
	snprintf(t->key.function, sizeof(t->key.function), "%s",
		 s->function ? s->function : "");
}

static bool row_matches(const struct snap_site *s, const char *needle)
{
	return !*needle || (s->function && strcasestr(s->function, needle));
}

static bool proc_matches(const struct snap_proc *p, const char *needle)
{
	return !*needle || strcasestr(p->comm, needle) ||
	       strcasestr(p->cmdline, needle);
}

/* Row i of the table on screen (an index into idx) matches needle. */
static bool idx_matches(const struct tui *t, int i, const char *needle)
{
	int n;

	if (list_mode(t))
		return proc_matches(&procs(t, &n)[t->idx[i]], needle);
	return row_matches(&rows(t, &n)[t->idx[i]], needle);
}

static int cmp_dbl(double a, double b)
{
	return (a > b) - (a < b);
}

/* Processes, sorted by the sort field where it means something for them
 * (AGE has no process figure: outstanding bytes; FUNCTION: the name). */
static int cmp_procs(const void *pa, const void *pb, void *arg)
{
	const struct tui *t = arg;
	int n;
	const struct snap_proc *v = procs(t, &n);
	const struct snap_proc *a = &v[*(const int *)pa];
	const struct snap_proc *b = &v[*(const int *)pb];
	int r = 0;

	switch (t->sort) {
	case SORT_COUNT:
		r = cmp_dbl((double)a->outstanding_allocs,
			    (double)b->outstanding_allocs);
		break;
	case SORT_GROWTH:
		r = cmp_dbl(a->growth_bps, b->growth_bps);
		break;
	case SORT_ALLOC_RATE:
		r = cmp_dbl(a->alloc_rate, b->alloc_rate);
		break;
	case SORT_FREE_RATE:
		r = cmp_dbl(a->free_rate, b->free_rate);
		break;
	case SORT_AVG:
		r = cmp_dbl(a->outstanding_allocs > 0
				    ? (double)a->outstanding_bytes /
					      (double)a->outstanding_allocs
				    : 0,
			    b->outstanding_allocs > 0
				    ? (double)b->outstanding_bytes /
					      (double)b->outstanding_allocs
				    : 0);
		break;
	case SORT_FUNCTION:
		r = -strcmp(a->comm, b->comm); /* negated back below: A first */
		break;
	default:
		break;
	}
	r = -r; /* largest first */
	if (!r)
		r = -cmp_dbl((double)a->outstanding_bytes,
			     (double)b->outstanding_bytes);
	if (!r)
		r = (a->pid > b->pid) - (a->pid < b->pid);
	return t->reverse ? -r : r;
}

static int ensure_idx(struct tui *t, int n)
{
	if (n > t->idx_cap) {
		int cap = n + n / 2 + 16;
		int *p = realloc(t->idx, (size_t)cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		t->idx = p;
		t->idx_cap = cap;
	}
	return 0;
}

/* Put the selection on row found (or keep it), inside the rows, and
 * remember what it points at for the next rebuild. */
static void settle_sel(struct tui *t, int found)
{
	if (found >= 0)
		t->sel = found;
	if (t->sel >= t->nidx)
		t->sel = t->nidx - 1;
	if (t->sel < 0)
		t->sel = 0;
	remember_sel(t);
}

static int rebuild_procs(struct tui *t)
{
	int n, found = -1;
	const struct snap_proc *p = procs(t, &n);

	if (ensure_idx(t, n))
		return -ENOMEM;
	t->nidx = 0;
	for (int i = 0; i < n; i++)
		if (proc_matches(&p[i], t->pfilter))
			t->idx[t->nidx++] = i;
	if (t->nidx > 1)
		qsort_r(t->idx, (size_t)t->nidx, sizeof(*t->idx), cmp_procs, t);
	for (int i = 0; i < t->nidx && t->key.valid; i++)
		if (p[t->idx[i]].pid == t->key.pid)
			found = i;
	settle_sel(t, found);
	return 0;
}

/*
 * Recompute the filtered index and put the selection back on the same site
 * (same process and stack; failing that, same function, as collapsing
 * changes which stack stands for a group).
 */
static int rebuild(struct tui *t)
{
	int n, found = -1, by_func = -1;
	struct snap_site *r = rows(t, &n);

	if (list_mode(t))
		return rebuild_procs(t);
	if (ensure_idx(t, n))
		return -ENOMEM;
	t->nidx = 0;
	for (int i = 0; i < n; i++) {
		if (t->drill && r[i].pid != t->drill)
			continue;
		if (!row_matches(&r[i], t->filter))
			continue;
		if (t->key.valid && r[i].pid == t->key.pid) {
			if (found < 0 && !strcmp(r[i].site_id, t->key.site_id))
				found = t->nidx;
			if (by_func < 0 && r[i].function &&
			    !strcmp(r[i].function, t->key.function))
				by_func = t->nidx;
		}
		t->idx[t->nidx++] = i;
	}
	if (found < 0)
		found = by_func;
	settle_sel(t, found);
	return 0;
}

/* Copy n elements of src into *buf, growing it (and *cap) as needed. */
static int copy_into(void **buf, int *cap, const void *src, int n, size_t elem)
{
	if (n > *cap) {
		void *p = realloc(*buf, (size_t)n * elem);

		if (!p)
			return -ENOMEM;
		*buf = p;
		*cap = n;
	}
	if (n)
		memcpy(*buf, src, (size_t)n * elem);
	return 0;
}

static int freeze(struct tui *t)
{
	int ns = t->snap ? t->snap->nsites : 0;
	int np = t->snap ? t->snap->nprocs : 0;

	/* Names and frames point into the collector's sites: a shallow copy
	 * stays valid while they do (drop_gone removes the rows that don't). */
	if (copy_into((void **)&t->frozen, &t->frozen_cap,
		      ns ? t->snap->sites : NULL, ns, sizeof(*t->frozen)) ||
	    copy_into((void **)&t->pfrozen, &t->pfrozen_cap,
		      np ? t->snap->procs : NULL, np, sizeof(*t->pfrozen)))
		return -ENOMEM;
	if (ns > t->frozen_trends_cap) {
		int64_t *p = realloc(t->frozen_trends,
				     (size_t)ns * SNAP_TREND * sizeof(*p));

		if (!p)
			return -ENOMEM;
		t->frozen_trends = p;
		t->frozen_trends_cap = ns;
	}
	for (int i = 0; i < ns; i++) {
		int64_t *dst = t->frozen_trends + (size_t)i * SNAP_TREND;

		if (t->frozen[i].ntrend)
			memcpy(dst, t->frozen[i].trend,
			       sizeof(*dst) * t->frozen[i].ntrend);
		t->frozen[i].trend = dst;
	}
	t->nfrozen = ns;
	t->npfrozen = np;
	return 0;
}

/*
 * The collector frees a site when it forgets its process (one that exited
 * and has been shown) or when the tracer reclaimed it (empty and idle):
 * frozen rows and the stack screen point into sites, so the rows of sites it
 * no longer holds go, and a drill-down into a process that went returns to
 * the list.
 */
static void drop_gone(struct tui *t, const struct snapshot *s)
{
	int o = 0;

	for (int i = 0; i < t->nfrozen; i++)
		if (collector_has_site(t->coll, t->frozen[i].pid,
				       t->frozen[i].stack_id))
			t->frozen[o++] = t->frozen[i];
	t->nfrozen = o;
	if (t->mode == MODE_STACK &&
	    !collector_has_site(t->coll, t->stack_site.pid,
				t->stack_site.stack_id))
		t->mode = MODE_TABLE;
	if (t->drill && !find_proc(s->procs, s->nprocs, t->drill)) {
		set_msg(t, "process %" PRIu32 " has gone", t->drill);
		t->drill = 0;
		t->key.valid = false;
		t->sel = t->top = 0;
	}
}

static bool all_exited(const struct snapshot *s)
{
	if (!s || s->nprocs == 0)
		return false;
	for (int i = 0; i < s->nprocs; i++)
		if (s->procs[i].alive)
			return false;
	return true;
}

static int do_refresh(struct tui *t)
{
	const struct snapshot *s = NULL;
	int err;

	/* Parenthesised: curses defines a refresh() macro. */
	err = (t->src->refresh)(t->src->ctx, &s);
	if (err)
		return err;
	t->snap = s;
	t->nrefresh++;
	t->last_refresh = mono_now();
	if (!t->plist && (t->o->process_list || s->nprocs > 1)) {
		t->plist = true;
		t->sel = t->top = 0;
		t->key.valid = false;
	}
	drop_gone(t, s);
	/* System-wide, processes come and go: memtop goes on. */
	if (!t->o->system_wide && all_exited(s))
		t->exited = true;
	/* The collector sorts with its own settings; ours are the same. */
	return rebuild(t);
}

/* ---- Key actions ---------------------------------------------------- */

static void set_sort(struct tui *t, enum sort_field f, bool reverse)
{
	int n;
	struct snap_site *r;

	remember_sel(t);
	t->sort = f;
	t->reverse = reverse;
	collector_set_sort(t->coll, f, reverse);
	t->snap = collector_snapshot(t->coll);
	if (t->paused) {
		r = rows(t, &n);
		snapshot_sort_sites(r, n, f, reverse);
	}
	rebuild(t);
}

/* From a process's call sites back to the process list, on that process. */
static void back_to_list(struct tui *t)
{
	t->drill = 0;
	t->key.valid = true;
	t->key.pid = t->list_pid;
	t->key.site_id[0] = t->key.function[0] = '\0';
	t->top = 0;
	rebuild(t);
}

static void act_quit(struct tui *t, int key)
{
	if (key == 'q' && t->drill) {
		back_to_list(t);
		return;
	}
	t->quit = true;
}

static void act_sort_key(struct tui *t, int key)
{
	static const struct {
		int key;
		enum sort_field f;
	} map[] = {
		{'M', SORT_OUTSTANDING}, {'N', SORT_COUNT}, {'G', SORT_GROWTH},
		{'A', SORT_ALLOC_RATE},	 {'T', SORT_AGE},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (map[i].key == key)
			set_sort(t, map[i].f, false);
}

static void act_sort_move(struct tui *t, int key)
{
	int f = (int)t->sort + (key == '<' ? -1 : 1);

	if (f < 0 || f >= SORT_NR)
		return;
	set_sort(t, (enum sort_field)f, t->reverse);
}

static void act_reverse(struct tui *t, int key)
{
	(void)key;
	set_sort(t, t->sort, !t->reverse);
}

static void act_pause(struct tui *t, int key)
{
	(void)key;
	remember_sel(t);
	if (!t->paused && freeze(t)) {
		set_msg(t, "cannot pause: out of memory");
		return;
	}
	t->paused = !t->paused;
	rebuild(t);
}

static void act_refresh(struct tui *t, int key)
{
	(void)key;
	t->want_refresh = true;
}

static void start_prompt(struct tui *t, enum prompt_kind k, const char *init)
{
	t->prompt = k;
	snprintf(t->pbuf, sizeof(t->pbuf), "%s", init ? init : "");
	t->plen = (int)strlen(t->pbuf);
}

static void act_delay(struct tui *t, int key)
{
	(void)key;
	start_prompt(t, PROMPT_DELAY, NULL);
}

static void act_search(struct tui *t, int key)
{
	(void)key;
	start_prompt(t, PROMPT_SEARCH, NULL);
}

static void act_filter(struct tui *t, int key)
{
	(void)key;
	start_prompt(t, PROMPT_FILTER, cur_filter(t));
}

/* Esc clears the filter; without one it goes back to the process list. */
static void act_escape(struct tui *t, int key)
{
	char *f = cur_filter(t);

	(void)key;
	if (!f[0]) {
		if (t->drill)
			back_to_list(t);
		return;
	}
	remember_sel(t);
	f[0] = '\0';
	rebuild(t);
}

/* Select the next row, after the selection and wrapping, that matches. */
static void search_next(struct tui *t)
{
	if (!t->search[0])
		return;
	for (int k = 1; k <= t->nidx; k++) {
		int i = (t->sel + k) % t->nidx;

		if (idx_matches(t, i, t->search)) {
			t->sel = i;
			remember_sel(t);
			return;
		}
	}
	set_msg(t, "no %s matches \"%s\"",
		list_mode(t) ? "process" : "function", t->search);
}

static void act_search_next(struct tui *t, int key)
{
	(void)key;
	search_next(t);
}

static void act_move(struct tui *t, int key)
{
	int page = t->page > 1 ? t->page : 1;

	switch (key) {
	case KEY_UP:
		t->sel--;
		break;
	case KEY_DOWN:
		t->sel++;
		break;
	case KEY_PPAGE:
		t->sel -= page;
		break;
	case KEY_NPAGE:
		t->sel += page;
		break;
	case KEY_HOME:
		t->sel = 0;
		break;
	case KEY_END:
		t->sel = t->nidx - 1;
		break;
	}
	if (t->sel >= t->nidx)
		t->sel = t->nidx - 1;
	if (t->sel < 0)
		t->sel = 0;
	remember_sel(t);
}

static void act_stack(struct tui *t, int key)
{
	const struct snap_site *s = sel_row(t);
	const struct snap_proc *p = sel_proc(t);

	(void)key;
	if (p) { /* the process list: into its call sites */
		t->list_pid = p->pid;
		t->drill = p->pid;
		t->key.valid = false;
		t->sel = t->top = 0;
		rebuild(t);
		return;
	}
	if (!s) {
		set_msg(t, "no site selected");
		return;
	}
	t->stack_site = *s;
	t->scroll = 0;
	t->mode = MODE_STACK;
}

static void act_baseline(struct tui *t, int key)
{
	(void)key;
	t->baseline = !t->baseline;
	collector_set_baseline(t->coll, t->baseline);
	if (t->baseline && t->snap) {
		t->base_bytes = t->snap->outstanding_bytes;
		t->base_allocs = t->snap->outstanding_allocs;
		t->base_elapsed = t->snap->elapsed_s;
	}
	set_msg(t, t->baseline ? "baseline set: GROWTH is now since this point"
			       : "baseline cleared");
}

static void act_collapse(struct tui *t, int key)
{
	(void)key;
	t->collapse = !t->collapse;
	collector_set_collapse(t->coll, t->collapse);
	/* The collector groups rows when it builds a snapshot. */
	if (t->paused)
		set_msg(t, "collapse %s: shown when the table is resumed",
			t->collapse ? "on" : "off");
	else
		t->want_refresh = true;
}

static void act_units(struct tui *t, int key)
{
	(void)key;
	t->unit = (t->unit + 1) % 5;
}

static void act_redraw(struct tui *t, int key)
{
	(void)key;
	t->redraw_all = true;
}

static void act_help(struct tui *t, int key)
{
	(void)key;
	t->scroll = 0;
	t->mode = MODE_HELP;
}

static void act_none(struct tui *t, int key)
{
	(void)t;
	(void)key;
}

/*
 * Every key of the table screen. An entry with help text starts a group in
 * the help screen; the entries after it without text are its other keys.
 */
static const struct key_binding {
	int key;
	void (*fn)(struct tui *t, int key);
	const char *keys;
	const char *help;
} keytab[] = {
	{'h', act_help, "h ? F1", "show this help"},
	{'?', act_help, NULL, NULL},
	{KEY_F(1), act_help, NULL, NULL},
	{'q', act_quit, "q F10", "quit (q: back to the process list)"},
	{KEY_F(10), act_quit, NULL, NULL},
	{'M', act_sort_key, "M", "sort by outstanding bytes"},
	{'N', act_sort_key, "N", "sort by outstanding allocation count"},
	{'G', act_sort_key, "G", "sort by growth (bytes per second)"},
	{'A', act_sort_key, "A", "sort by allocation rate"},
	{'T', act_sort_key, "T", "sort by age of the site"},
	{'<', act_sort_move, "< >", "move the sort column left / right"},
	{'>', act_sort_move, NULL, NULL},
	{'R', act_reverse, "R I", "reverse the sort order"},
	{'I', act_reverse, NULL, NULL},
	{KEY_UP, act_move, "Up Down PgUp PgDn Home End", "move the selection"},
	{KEY_DOWN, act_move, NULL, NULL},
	{KEY_PPAGE, act_move, NULL, NULL},
	{KEY_NPAGE, act_move, NULL, NULL},
	{KEY_HOME, act_move, NULL, NULL},
	{KEY_END, act_move, NULL, NULL},
	{'\n', act_stack, "Enter",
	 "full stack of the selected site; in the process list, its sites"},
	{'\r', act_stack, NULL, NULL},
	{KEY_ENTER, act_stack, NULL, NULL},
	{'/', act_search, "/ n F3", "search a function (n: next match)"},
	{'n', act_search_next, NULL, NULL},
	{KEY_F(3), act_search, NULL, NULL},
	{'\\', act_filter, "\\ F4",
	 "filter rows by function (process list: command) substring"},
	{KEY_F(4), act_filter, NULL, NULL},
	{KEY_ESC, act_escape, "Esc",
	 "clear the filter, else back to the process list"},
	{'B', act_baseline, "B", "set / clear the baseline (growth since it)"},
	{'c', act_collapse, "c", "collapse sites by function"},
	{'Z', act_pause, "Z", "pause the table (the summary keeps updating)"},
	{' ', act_refresh, "Space", "refresh now"},
	{'d', act_delay, "d s", "change the refresh interval"},
	{'s', act_delay, NULL, NULL},
	{'e', act_units, "e", "cycle byte units (auto, B, KiB, MiB, GiB)"},
	{KEY_CTRL_L, act_redraw, "Ctrl-L", "redraw the screen"},
	{KEY_RESIZE, act_none, NULL, NULL},
};

#define NKEYS ((int)(sizeof(keytab) / sizeof(keytab[0])))

/* ---- Prompt ---------------------------------------------------------- */

static void prompt_done(struct tui *t)
{
	char *end;
	double v;

	switch (t->prompt) {
	case PROMPT_SEARCH:
		/* An empty search repeats the last one, as in less. */
		if (t->plen)
			snprintf(t->search, sizeof(t->search), "%s", t->pbuf);
		search_next(t);
		break;
	case PROMPT_FILTER:
		remember_sel(t);
		snprintf(cur_filter(t), PROMPT_MAX, "%s", t->pbuf);
		rebuild(t);
		break;
	case PROMPT_DELAY:
		errno = 0;
		v = strtod(t->pbuf, &end);
		while (end && isspace((unsigned char)*end))
			end++;
		if (!t->plen) {
			break;
		} else if (errno || end == t->pbuf || *end || !(v >= 0.1) ||
			   v > 86400) {
			set_msg(t,
				"invalid interval \"%s\": 0.1 to 86400 seconds",
				t->pbuf);
		} else {
			t->interval = v;
			t->next_refresh = t->last_refresh + v;
			set_msg(t, "refreshing every %.1fs", v);
		}
		break;
	case PROMPT_NONE:
		break;
	}
	t->prompt = PROMPT_NONE;
}

static void prompt_key(struct tui *t, int ch)
{
	switch (ch) {
	case KEY_ESC:
		/* Esc in the filter prompt clears the filter. */
		if (t->prompt == PROMPT_FILTER) {
			t->plen = 0;
			t->pbuf[0] = '\0';
			prompt_done(t);
		}
		t->prompt = PROMPT_NONE;
		return;
	case '\n':
	case '\r':
	case KEY_ENTER:
		prompt_done(t);
		return;
	case KEY_BACKSPACE:
	case 127:
	case 8:
		if (t->plen > 0) {
			/* Back over a whole UTF-8 character. */
			do
				t->plen--;
			while (t->plen > 0 && ((unsigned char)t->pbuf[t->plen] &
					       0xc0) == 0x80);
			t->pbuf[t->plen] = '\0';
		}
		break;
	case 21: /* Ctrl-U */
		t->plen = 0;
		t->pbuf[0] = '\0';
		break;
	default:
		if (ch >= 32 && ch < 256 && ch != 127 &&
		    t->plen + 1 < (int)sizeof(t->pbuf)) {
			t->pbuf[t->plen++] = (char)ch;
			t->pbuf[t->plen] = '\0';
		}
		break;
	}
	/* The filter applies as it is typed, like htop's. */
	if (t->prompt == PROMPT_FILTER) {
		remember_sel(t);
		snprintf(cur_filter(t), PROMPT_MAX, "%s", t->pbuf);
		rebuild(t);
	}
}

/* ---- Screens ----------------------------------------------------------- */

static void draw_summary(struct tui *t)
{
	const struct snapshot *s = t->snap;
	const struct snap_proc *dp = NULL; /* the process drilled into */
	char a[48], b[48], c[48], modes[128];
	int64_t dbytes = 0, dallocs = 0, obytes, oallocs;
	double arate, frate;
	uint64_t rss;
	int nsusp = 0, x;
	attr_t bold = A_BOLD, sa;
	double dt;

	if (!s)
		return;
	if (t->drill)
		dp = find_proc(s->procs, s->nprocs, t->drill);
	for (int i = 0; i < s->nprocs; i++) {
		if (dp && s->procs[i].pid != dp->pid)
			continue;
		dbytes += s->procs[i].delta_bytes;
		dallocs += s->procs[i].delta_allocs;
		nsusp += s->procs[i].nsuspects;
	}
	/* Drilled into a process: its own figures; else the whole snapshot. */
	obytes = dp ? dp->outstanding_bytes : s->outstanding_bytes;
	oallocs = dp ? dp->outstanding_allocs : s->outstanding_allocs;
	arate = dp ? dp->alloc_rate : s->alloc_rate;
	frate = dp ? dp->free_rate : s->free_rate;
	rss = dp ? dp->rss_bytes : s->rss_bytes;
	dt = s->interval_s > 0 ? s->interval_s : 0;

	/* Line 0: who, and for how long. */
	x = put(t, 0, 0, cattr(t, CP_TITLE, A_BOLD), "memtop");
	if (dp || (s->nprocs == 1 && !t->o->system_wide)) {
		const struct snap_proc *p = dp ? dp : &s->procs[0];

		x = putf(t, 0, x + 2, bold, "PID %" PRIu32, p->pid);
		x = putf(t, 0, x + 1, A_NORMAL, "%s", p->comm);
		x = put(t, 0, x + 2, A_DIM, p->cmdline);
	} else if (t->o->system_wide) {
		x = put(t, 0, x + 2, bold,
			"system-wide: allocations since attach");
		x = putf(t, 0, x + 2, A_NORMAL, "%d process%s", s->nprocs,
			 s->nprocs == 1 ? "" : "es");
	} else {
		char pids[128];
		size_t o = 0;

		pids[0] = '\0';
		for (int i = 0; i < s->nprocs && o < sizeof(pids) - 12; i++)
			o += (size_t)snprintf(pids + o, sizeof(pids) - o,
					      "%s%" PRIu32, i ? "," : "",
					      s->procs[i].pid);
		x = putf(t, 0, x + 2, bold, "PIDs %s", pids);
		if (s->nprocs && !t->plist)
			x = putf(t, 0, x + 2, A_DIM, "%s", s->procs[0].cmdline);
	}
	fmt_clock(a, sizeof(a), s->elapsed_s);
	if (COLS - (int)strlen(a) - 9 > x)
		putf(t, 0, COLS - (int)strlen(a) - 9, A_NORMAL, "elapsed %s",
		     a);

	/* Line 1: outstanding memory and how it moved since the last refresh.
	 */
	x = put(t, 1, 0, bold, "Outstanding:");
	x = putf(t, 1, x + 1, A_NORMAL, "%s in %" PRId64 " allocs",
		 fmt_fit(a, sizeof(a), (double)obytes, t->unit, 99, false),
		 oallocs);
	if (*snapshot_modes(s, modes, sizeof(modes)))
		x = putf(t, 1, x + 1, cattr(t, CP_SUSPECT, A_BOLD) | A_BOLD,
			 "%s", modes);
	x = putf(t, 1, x + 2, A_NORMAL,
		 "change %s (%s/s), %+" PRId64 " allocs (%+.1f/s)",
		 fmt_fit(b, sizeof(b), (double)dbytes, t->unit, 99, true),
		 fmt_fit(c, sizeof(c), dt ? (double)dbytes / dt : 0, 0, 99,
			 true),
		 dallocs, dt ? (double)dallocs / dt : 0.0);

	/* Line 2: rates, RSS and how much of it the probes see. */
	x = put(t, 2, 0, bold, "Rates:");
	x = putf(t, 2, x + 1, A_NORMAL, "alloc %s/s free %s/s",
		 fmt_count(a, sizeof(a), arate, true),
		 fmt_count(b, sizeof(b), frate, true));
	x = put(t, 2, x + 2, bold, "RSS:");
	if (rss)
		x = putf(t, 2, x + 1, A_NORMAL, "%s (traced %.1f%%)",
			 fmt_fit(c, sizeof(c), (double)rss, t->unit, 99,
				 false),
			 100.0 * (double)obytes / (double)rss);
	else
		x = put(t, 2, x + 1, A_NORMAL, "-");
	x = put(t, 2, x + 2, bold, "Suspects:");
	putf(t, 2, x + 1,
	     nsusp ? cattr(t, CP_SUSPECT, A_BOLD) | A_BOLD : A_NORMAL, "%d",
	     nsusp);

	/* Line 3: trust (lost events) and the view's settings. */
	x = put(t, 3, 0, bold, "Lost:");
	x = putf(t, 3, x + 1,
		 s->lost_total ? cattr(t, CP_SUSPECT, A_BOLD) : A_NORMAL,
		 "%" PRIu64 " events", s->lost_total);
	x = putf(t, 3, x, A_NORMAL, ", %" PRIu64 " unknown frees",
		 s->lost[MT_CNT_UNKNOWN_FREE]);
	x = put(t, 3, x + 2, bold, "Interval:");
	x = putf(t, 3, x + 1, A_NORMAL, "%.1fs", t->interval);
	x = put(t, 3, x + 2, bold, "Sort:");
	x = putf(t, 3, x + 1, A_NORMAL, "%s%s", sort_field_name(t->sort),
		 t->reverse ? " (reversed)" : "");
	if (list_mode(t)) {
		int n;

		procs(t, &n);
		x = put(t, 3, x + 2, bold, "Processes:");
		x = putf(t, 3, x + 1, A_NORMAL, "%d/%d", t->nidx, n);
	} else {
		int n, m = 0;
		const struct snap_site *r = rows(t, &n);

		for (int i = 0; i < n; i++)
			m += !t->drill || r[i].pid == t->drill;
		x = put(t, 3, x + 2, bold, "Sites:");
		x = putf(t, 3, x + 1, A_NORMAL, "%d/%d", t->nidx, m);
	}
	if (t->unit) {
		static const char *const un[] = {"", "B", "KiB", "MiB", "GiB"};

		x = put(t, 3, x + 2, bold, "Units:");
		put(t, 3, x + 1, A_NORMAL, un[t->unit]);
	}

	/* Line 4: states (each a badge and a space), then the message. */
	x = 0;
	sa = cattr(t, CP_STATE, A_REVERSE) | A_BOLD;
	if (t->exited || (dp && !dp->alive))
		x = put(t, 4, x, sa, " PROCESS EXITED ");
	if (t->paused)
		x = put(t, 4, x + !!x, sa, " PAUSED ");
	if (t->baseline) {
		fmt_clock(b, sizeof(b), s->elapsed_s - t->base_elapsed);
		fmt_fit(a, sizeof(a),
			(double)(s->outstanding_bytes - t->base_bytes), t->unit,
			99, true);
		x = putf(t, 4, x + !!x, A_REVERSE | A_BOLD,
			 " BASELINE %s ago: %s, %+" PRId64 " allocs ", b, a,
			 s->outstanding_allocs - t->base_allocs);
	}
	if (cur_filter(t)[0])
		x = putf(t, 4, x + !!x, A_REVERSE | A_BOLD, " FILTER \"%s\" ",
			 cur_filter(t));
	if (t->collapse && !list_mode(t))
		x = put(t, 4, x + !!x, A_REVERSE | A_BOLD, " COLLAPSED ");
	if (t->err_fd >= 0) {
		struct stat stb;

		if (!fstat(t->err_fd, &stb) && stb.st_size > 0)
			x = put(t, 4, x + !!x, A_DIM,
				"[messages held until exit]");
	}
	if (t->msg[0] && mono_now() < t->msg_until)
		put(t, 4, x + 2 * !!x, A_BOLD, t->msg);
}

enum col_id {
	COL_PID,
	COL_OUT,
	COL_COUNT,
	COL_GROWTH,
	COL_ALLOC,
	COL_FREE,
	COL_AVG,
	COL_AGE,
	COL_TREND,
	COL_NR
};

static const struct column {
	const char *name;
	int width;
	int sort; /* the sort_field this column shows, or -1 */
	int drop; /* dropped first when narrow: higher first; 0 never */
} columns[COL_NR] = {
	[COL_PID] = {"PID", 7, -1, 4},
	[COL_OUT] = {"OUTSTANDING", 11, SORT_OUTSTANDING, 0},
	[COL_COUNT] = {"COUNT", 7, SORT_COUNT, 0},
	[COL_GROWTH] = {"GROWTH/s", 11, SORT_GROWTH, 0},
	[COL_ALLOC] = {"ALLOC/s", 7, SORT_ALLOC_RATE, 2},
	[COL_FREE] = {"FREE/s", 7, SORT_FREE_RATE, 7},
	[COL_AVG] = {"AVG", 9, SORT_AVG, 5},
	[COL_AGE] = {"AGE", 6, SORT_AGE, 6},
	[COL_TREND] = {"TREND", 8, -1, 1},
};

#define FUNC_MIN 22
#define LOC_MIN	 14

struct layout {
	bool on[COL_NR];
	int x[COL_NR];
	int func_x, func_w, loc_x, loc_w;
};

/* Drop the least useful columns until FUNCTION and LOCATION get room. */
static void make_layout(const struct tui *t, struct layout *l, int func_need)
{
	int used;

	for (int i = 0; i < COL_NR; i++)
		l->on[i] = true;
	l->on[COL_PID] = t->snap && t->snap->nprocs > 1 && !t->drill;
	for (;;) {
		int worst = -1;

		used = 1;
		for (int i = 0; i < COL_NR; i++)
			if (l->on[i])
				used += columns[i].width + 1;
		if (used + FUNC_MIN + 1 + LOC_MIN <= COLS)
			break;
		for (int i = 0; i < COL_NR; i++)
			if (l->on[i] && columns[i].drop &&
			    (worst < 0 ||
			     columns[i].drop > columns[worst].drop))
				worst = i;
		if (worst < 0)
			break;
		l->on[worst] = false;
	}
	used = 1;
	for (int i = 0; i < COL_NR; i++) {
		l->x[i] = used;
		if (l->on[i])
			used += columns[i].width + 1;
	}
	l->func_x = used;
	/*
	 * FUNCTION gets what its visible names need, up to 60% of what is
	 * left; LOCATION the rest. Which columns are shown depends on the
	 * width alone, so they do not come and go while scrolling.
	 */
	l->func_w = (COLS - used - 1) * 60 / 100;
	if (func_need + 1 < l->func_w)
		l->func_w = func_need + 1;
	if (l->func_w < FUNC_MIN)
		l->func_w = FUNC_MIN;
	l->loc_x = l->func_x + l->func_w + 1;
	l->loc_w = COLS - l->loc_x;
}

static void draw_heading(const struct tui *t, const struct layout *l, int y)
{
	attr_t h = cattr(t, CP_HEADER, A_REVERSE);
	attr_t hs = cattr(t, CP_SORTED, A_REVERSE | A_UNDERLINE) | A_BOLD;

	fill_line(y, h);
	for (int i = 0; i < COL_NR; i++) {
		if (!l->on[i])
			continue;
		cell(t, y, l->x[i], columns[i].width, i == COL_TREND,
		     columns[i].sort == (int)t->sort ? hs : h, columns[i].name,
		     false);
	}
	cell(t, y, l->func_x, l->func_w, true,
	     t->sort == SORT_FUNCTION ? hs : h, "FUNCTION", false);
	cell(t, y, l->loc_x, l->loc_w, true, h, "LOCATION", false);
}

static void draw_row(const struct tui *t, const struct layout *l, int y,
		     const struct snap_site *s, bool selected)
{
	char buf[128];
	attr_t a = A_NORMAL;
	double avg = s->outstanding_allocs > 0
			     ? (double)s->outstanding_bytes /
				       (double)s->outstanding_allocs
			     : 0;

	if (s->suspect)
		a = cattr(t, CP_SUSPECT, A_BOLD) | A_BOLD;
	else if (s->growth_bps > 0.5)
		a = cattr(t, CP_GROWING, A_BOLD);
	if (selected)
		a = cattr(t, CP_SELECTED, A_REVERSE) | (a & A_BOLD);
	fill_line(y, a);
	cell(t, y, 0, 1, true, a, s->suspect ? "!" : " ", false);
	for (int i = 0; i < COL_NR; i++) {
		int w = columns[i].width;

		if (!l->on[i])
			continue;
		switch (i) {
		case COL_PID:
			snprintf(buf, sizeof(buf), "%" PRIu32, s->pid);
			break;
		case COL_OUT:
			fmt_fit(buf, sizeof(buf), (double)s->outstanding_bytes,
				t->unit, w, false);
			break;
		case COL_COUNT:
			fmt_count(buf, sizeof(buf),
				  (double)s->outstanding_allocs, false);
			break;
		case COL_GROWTH:
			fmt_fit(buf, sizeof(buf), s->growth_bps, t->unit, w,
				true);
			break;
		case COL_ALLOC:
			fmt_count(buf, sizeof(buf), s->alloc_rate, true);
			break;
		case COL_FREE:
			fmt_count(buf, sizeof(buf), s->free_rate, true);
			break;
		case COL_AVG:
			fmt_fit(buf, sizeof(buf), avg, t->unit, w, false);
			break;
		case COL_AGE:
			fmt_age(buf, sizeof(buf), s->age_s);
			break;
		case COL_TREND:
			sparkline(t, buf, sizeof(buf), s->trend, s->ntrend, w);
			break;
		}
		cell(t, y, l->x[i], w, i == COL_TREND, a, buf, false);
	}
	cell(t, y, l->func_x, l->func_w, true, a, s->function, false);
	cell(t, y, l->loc_x, l->loc_w, true, a, s->location, true);
}

/* htop's function bar: key names plain, labels on a coloured ground. */
static void draw_bar(const struct tui *t, const char *const *items, int n)
{
	attr_t lab = cattr(t, CP_BAR_LABEL, A_REVERSE);
	int y = LINES - 1, x = 0;

	fill_line(y, lab);
	for (int i = 0; i + 1 < n; i += 2) {
		int need = (int)strlen(items[i]) + (int)strlen(items[i + 1]);

		if (x + need > COLS)
			break;
		x = put(t, y, x, A_NORMAL | A_BOLD, items[i]);
		x = put(t, y, x, lab, items[i + 1]);
	}
}

static void draw_prompt(const struct tui *t)
{
	static const char *const label[] = {
		[PROMPT_SEARCH] = "Search: ",
		[PROMPT_FILTER] = "Filter: ",
		[PROMPT_DELAY] = "Refresh interval in seconds: ",
	};
	int y = LINES - 1, x;

	fill_line(y, A_NORMAL);
	x = put(t, y, 0, A_BOLD, label[t->prompt]);
	x = put(t, y, x, A_NORMAL, t->pbuf);
	if (t->prompt == PROMPT_FILTER)
		put(t, y, x + 2, A_DIM, "(Enter keeps it, Esc clears)");
	move(y, x < COLS ? x : COLS - 1);
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
	PC_TREND,
	PC_NR
};

static const struct column pcolumns[PC_NR] = {
	[PC_PID] = {"PID", 7, -1, 0},
	[PC_USER] = {"USER", 8, -1, 3},
	[PC_COMM] = {"COMM", 15, SORT_FUNCTION, 0},
	[PC_OUT] = {"OUTSTANDING", 11, SORT_OUTSTANDING, 0},
	[PC_COUNT] = {"COUNT", 7, SORT_COUNT, 0},
	[PC_GROWTH] = {"GROWTH/s", 11, SORT_GROWTH, 0},
	[PC_ALLOC] = {"ALLOC/s", 7, SORT_ALLOC_RATE, 4},
	[PC_FREE] = {"FREE/s", 7, SORT_FREE_RATE, 6},
	[PC_RSS] = {"RSS", 9, -1, 2},
	[PC_TREND] = {"TREND", 8, -1, 5},
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
		snprintf(t->users[i].name, sizeof(t->users[i].name),
			 "%" PRIu32, uid);
	return t->users[i].name;
}

static void draw_procs(struct tui *t)
{
	static const char *const bar[] = {
		"F1",	   "Help  ",   "Enter", "Sites ", "/",	 "Search ",
		"\\",	   "Filter ", "<>",	  "Sort ",  "B",	 "Base ",
		"Z",	   "Pause ",   "e",	  "Units ", "F10", "Quit ",
	};
	bool on[PC_NR];
	int x[PC_NR], used, cmd_x, n, y0 = SUMMARY_LINES + 1, nrows;
	const struct snap_proc *p = procs(t, &n);
	attr_t h = cattr(t, CP_HEADER, A_REVERSE);
	attr_t hs = cattr(t, CP_SORTED, A_REVERSE | A_UNDERLINE) | A_BOLD;

	draw_summary(t);
	/* Drop the least useful columns until COMMAND gets some room. */
	for (int i = 0; i < PC_NR; i++)
		on[i] = true;
	for (;;) {
		int worst = -1;

		used = 1;
		for (int i = 0; i < PC_NR; i++)
			if (on[i])
				used += pcolumns[i].width + 1;
		if (used + CMD_MIN <= COLS)
			break;
		for (int i = 0; i < PC_NR; i++)
			if (on[i] && pcolumns[i].drop &&
			    (worst < 0 ||
			     pcolumns[i].drop > pcolumns[worst].drop))
				worst = i;
		if (worst < 0)
			break;
		on[worst] = false;
	}
	used = 1;
	for (int i = 0; i < PC_NR; i++) {
		x[i] = used;
		if (on[i])
			used += pcolumns[i].width + 1;
	}
	cmd_x = used;

	fill_line(SUMMARY_LINES, h);
	for (int i = 0; i < PC_NR; i++) {
		bool left = i == PC_USER || i == PC_COMM || i == PC_TREND;

		if (on[i])
			cell(t, SUMMARY_LINES, x[i], pcolumns[i].width, left,
			     pcolumns[i].sort == (int)t->sort ? hs : h,
			     pcolumns[i].name, false);
	}
	if (cmd_x < COLS)
		cell(t, SUMMARY_LINES, cmd_x, COLS - cmd_x, true, h, "COMMAND",
		     false);

	nrows = LINES - 1 - y0;
	t->page = nrows > 0 ? nrows : 1;
	if (t->sel < t->top)
		t->top = t->sel;
	if (nrows > 0 && t->sel >= t->top + nrows)
		t->top = t->sel - nrows + 1;
	if (t->top > t->nidx - nrows)
		t->top = t->nidx - nrows;
	if (t->top < 0)
		t->top = 0;
	for (int r = 0; r < nrows && t->top + r < t->nidx; r++) {
		const struct snap_proc *q = &p[t->idx[t->top + r]];
		bool selected = t->top + r == t->sel;
		int y = y0 + r;
		attr_t a = A_NORMAL;
		char buf[288];

		if (!q->alive)
			a = A_DIM; /* exited: shown this once, as htop does */
		else if (q->nsuspects)
			a = cattr(t, CP_SUSPECT, A_BOLD) | A_BOLD;
		else if (q->growth_bps > 0.5)
			a = cattr(t, CP_GROWING, A_BOLD);
		if (selected)
			a = cattr(t, CP_SELECTED, A_REVERSE) | (a & A_BOLD) |
			    (q->alive ? 0 : A_DIM);
		fill_line(y, a);
		cell(t, y, 0, 1, true, a, q->nsuspects ? "!" : " ", false);
		for (int i = 0; i < PC_NR; i++) {
			int w = pcolumns[i].width;
			bool left = false;

			if (!on[i])
				continue;
			switch (i) {
			case PC_PID:
				snprintf(buf, sizeof(buf), "%" PRIu32, q->pid);
				break;
			case PC_USER:
				snprintf(buf, sizeof(buf), "%s",
					 user_name(t, q->uid));
				left = true;
				break;
			case PC_COMM:
				snprintf(buf, sizeof(buf), "%s", q->comm);
				left = true;
				break;
			case PC_OUT:
				fmt_fit(buf, sizeof(buf),
					(double)q->outstanding_bytes, t->unit,
					w, false);
				break;
			case PC_COUNT:
				fmt_count(buf, sizeof(buf),
					  (double)q->outstanding_allocs, false);
				break;
			case PC_GROWTH:
				fmt_fit(buf, sizeof(buf), q->growth_bps,
					t->unit, w, true);
				break;
			case PC_ALLOC:
				fmt_count(buf, sizeof(buf), q->alloc_rate,
					  true);
				break;
			case PC_FREE:
				fmt_count(buf, sizeof(buf), q->free_rate, true);
				break;
			case PC_RSS:
				if (q->alive)
					fmt_fit(buf, sizeof(buf),
						(double)q->rss_bytes, t->unit,
						w, false);
				else
					snprintf(buf, sizeof(buf), "-");
				break;
			case PC_TREND:
				sparkline(t, buf, sizeof(buf), q->trend,
					  q->ntrend, w);
				left = true;
				break;
			}
			cell(t, y, x[i], w, left, a, buf, false);
		}
		if (cmd_x < COLS) {
			snprintf(buf, sizeof(buf), "%s%s",
				 q->alive ? "" : "<exited> ",
				 q->cmdline[0] ? q->cmdline : q->comm);
			cell(t, y, cmd_x, COLS - cmd_x, true, a, buf, false);
		}
	}
	if (!t->nidx && nrows > 0)
		put(t, y0, 2, A_DIM,
		    t->pfilter[0] ? "no process matches the filter"
				  : "no allocations seen yet");
	if (t->prompt != PROMPT_NONE)
		draw_prompt(t);
	else
		draw_bar(t, bar, (int)(sizeof(bar) / sizeof(bar[0])));
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
		"F1",	   "Help  ", "Enter",	"Stack ",    "Esc",
		"Back ",   "/",	     "Search ", "\\",	     "Filter ",
		"<>",	   "Sort ",  "B",	"Base ",     "c",
		"Collapse ", "Z",    "Pause ",	"F10",	     "Quit ",
	};
	struct layout l;
	int n, y0 = SUMMARY_LINES + 1, nrows, func_need;
	struct snap_site *r = rows(t, &n);

	if (list_mode(t)) {
		draw_procs(t);
		return;
	}
	draw_summary(t);
	nrows = LINES - 1 - y0;
	t->page = nrows > 0 ? nrows : 1;
	if (t->sel < t->top)
		t->top = t->sel;
	if (nrows > 0 && t->sel >= t->top + nrows)
		t->top = t->sel - nrows + 1;
	if (t->top > t->nidx - nrows)
		t->top = t->nidx - nrows;
	if (t->top < 0)
		t->top = 0;
	func_need = 0;
	for (int i = 0; i < nrows && t->top + i < t->nidx; i++) {
		const char *f = r[t->idx[t->top + i]].function;
		int w = f ? (int)strlen(f) : 0;

		func_need = w > func_need ? w : func_need;
	}
	make_layout(t, &l, func_need);
	draw_heading(t, &l, SUMMARY_LINES);
	/* Only the visible rows are formatted: 10k sites cost nothing here. */
	for (int i = 0; i < nrows && t->top + i < t->nidx; i++)
		draw_row(t, &l, y0 + i, &r[t->idx[t->top + i]],
			 t->top + i == t->sel);
	if (!t->nidx && nrows > 0)
		put(t, y0, 2, A_DIM,
		    t->filter[0] ? "no function matches the filter"
				 : "no allocations seen yet");
	if (t->prompt != PROMPT_NONE)
		draw_prompt(t);
	else if (t->drill)
		draw_bar(t, dbar, (int)(sizeof(dbar) / sizeof(dbar[0])));
	else
		draw_bar(t, bar, (int)(sizeof(bar) / sizeof(bar[0])));
}

/* Clamp a scroll position for a screen of `total` lines below `y0`. */
static int clamp_scroll(struct tui *t, int total, int y0)
{
	int h = LINES - 1 - y0;

	if (t->scroll > total - h)
		t->scroll = total - h;
	if (t->scroll < 0)
		t->scroll = 0;
	return h;
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
	struct snap_site *r = rows(t, &n);

	/* Show the latest numbers of the same site when it is still there. */
	for (int i = 0; i < n; i++) {
		if (r[i].pid == s->pid && !strcmp(r[i].site_id, s->site_id)) {
			t->stack_site = r[i];
			break;
		}
	}
	x = put(t, 0, 0, cattr(t, CP_TITLE, A_BOLD), "Stack of");
	put(t, 0, x + 1, A_BOLD, s->function);
	putf(t, 1, 0, A_NORMAL,
	     "PID %" PRIu32 "  site %s  outstanding %s in %" PRId64
	     " allocs  growth %s/s  %d frames%s",
	     s->pid, s->site_id,
	     fmt_fit(a, sizeof(a), (double)s->outstanding_bytes, t->unit, 99,
		     false),
	     s->outstanding_allocs,
	     fmt_fit(b, sizeof(b), s->growth_bps, t->unit, 99, true),
	     s->nframes, t->collapse ? " (largest stack of the group)" : "");
	if (s->suspect)
		put(t, 2, 0, cattr(t, CP_SUSPECT, A_BOLD) | A_BOLD,
		    "! leak suspect: outstanding bytes rose in most recent "
		    "refreshes");
	fw = (COLS - 6) * 4 / 10;
	lw = (COLS - 6) * 4 / 10;
	mx = 5 + fw + 1 + lw + 1;
	fill_line(3, cattr(t, CP_HEADER, A_REVERSE));
	cell(t, 3, 0, 4, false, cattr(t, CP_HEADER, A_REVERSE), "#", false);
	cell(t, 3, 5, fw, true, cattr(t, CP_HEADER, A_REVERSE), "FUNCTION",
	     false);
	cell(t, 3, 5 + fw + 1, lw, true, cattr(t, CP_HEADER, A_REVERSE),
	     "LOCATION", false);
	cell(t, 3, mx, COLS - mx, true, cattr(t, CP_HEADER, A_REVERSE),
	     "MODULE", false);
	h = clamp_scroll(t, s->nframes, y0);
	t->page = h > 0 ? h : 1;
	if (!s->nframes)
		put(t, y0, 2, A_DIM, "(the stack was not captured)");
	for (int i = 0; i < h && t->scroll + i < s->nframes; i++) {
		const struct snap_frame *f = &s->frames[t->scroll + i];
		char num[16];

		snprintf(num, sizeof(num), "#%d", t->scroll + i);
		cell(t, y0 + i, 0, 4, false, A_DIM, num, false);
		cell(t, y0 + i, 5, fw, true, A_BOLD, f->func, false);
		cell(t, y0 + i, 5 + fw + 1, lw, true, A_NORMAL, f->location,
		     true);
		cell(t, y0 + i, mx, COLS - mx, true, A_DIM, f->module, true);
	}
	draw_bar(t, bar, (int)(sizeof(bar) / sizeof(bar[0])));
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
	};
	static const char *const bar[] = {"Esc", "Back  ", "Up/Dn", "Scroll "};
	int total = 0, y = 0, h, i;

	put(t, 0, 0, cattr(t, CP_TITLE, A_BOLD), "memtop keys");
	for (i = 0; i < NKEYS; i++)
		total += keytab[i].help != NULL;
	total += (int)(sizeof(legend) / sizeof(legend[0]));
	h = clamp_scroll(t, total, 2);
	for (i = 0; i < NKEYS; i++) {
		if (!keytab[i].help)
			continue;
		if (y >= t->scroll && y - t->scroll < h) {
			cell(t, 2 + y - t->scroll, 1, 26, true, A_BOLD,
			     keytab[i].keys, false);
			put(t, 2 + y - t->scroll, 28, A_NORMAL, keytab[i].help);
		}
		y++;
	}
	for (i = 0; i < (int)(sizeof(legend) / sizeof(legend[0])); i++, y++)
		if (y >= t->scroll && y - t->scroll < h)
			put(t, 2 + y - t->scroll, 1, A_NORMAL, legend[i]);
	draw_bar(t, bar, (int)(sizeof(bar) / sizeof(bar[0])));
}

static void draw(struct tui *t)
{
	if (t->redraw_all) {
		clearok(curscr, TRUE);
		t->redraw_all = false;
	}
	erase();
	if (LINES < 3 || COLS < 20) {
		put(t, 0, 0, A_BOLD, "memtop: terminal too small");
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
		}
	}
	curs_set(t->prompt != PROMPT_NONE ? 1 : 0);
	wnoutrefresh(stdscr);
	doupdate();
}

/* Keys of the stack and help screens: scroll, or go back. */
static void pager_key(struct tui *t, int ch)
{
	switch (ch) {
	case KEY_UP:
		t->scroll--;
		break;
	case KEY_DOWN:
		t->scroll++;
		break;
	case KEY_PPAGE:
		t->scroll -= t->page;
		break;
	case KEY_NPAGE:
		t->scroll += t->page;
		break;
	case KEY_HOME:
		t->scroll = 0;
		break;
	case KEY_END:
		t->scroll = 1 << 20; /* clamped when drawn */
		break;
	case KEY_RESIZE:
		break;
	case KEY_CTRL_L:
		t->redraw_all = true;
		break;
	case KEY_F(10):
		t->quit = true;
		break;
	default:
		/* In help any other key returns; the stack wants Esc or q. */
		if (t->mode == MODE_HELP || ch == KEY_ESC || ch == 'q')
			t->mode = MODE_TABLE;
		break;
	}
}

static void handle_key(struct tui *t, int ch)
{
	if (t->prompt != PROMPT_NONE) {
		prompt_key(t, ch);
		return;
	}
	if (t->mode != MODE_TABLE) {
		pager_key(t, ch);
		return;
	}
	for (int i = 0; i < NKEYS; i++) {
		if (keytab[i].key == ch) {
			keytab[i].fn(t, ch);
			return;
		}
	}
}

/* ---- Terminal setup and teardown ----------------------------------- */

static void capture_stderr(struct tui *t)
{
	int fd;

	t->err_fd = t->saved_err = -1;
	fflush(stderr);
	fd = memfd_create("memtop-stderr", MFD_CLOEXEC);
	if (fd < 0) {
		FILE *f = tmpfile();

		if (!f)
			return;
		fd = fcntl(fileno(f), F_DUPFD_CLOEXEC, 3);
		fclose(f);
		if (fd < 0)
			return;
	}
	t->saved_err = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	if (t->saved_err < 0 || dup2(fd, STDERR_FILENO) < 0) {
		if (t->saved_err >= 0)
			close(t->saved_err);
		t->saved_err = -1;
		close(fd);
		return;
	}
	t->err_fd = fd;
}

/* Put fd 2 back and replay what was written to it meanwhile. */
static void release_stderr(struct tui *t)
{
	char buf[4096];
	ssize_t n;

	if (t->err_fd < 0)
		return;
	fflush(stderr);
	dup2(t->saved_err, STDERR_FILENO);
	close(t->saved_err);
	if (lseek(t->err_fd, 0, SEEK_SET) == 0) {
		while ((n = read(t->err_fd, buf, sizeof(buf))) > 0)
			if (write(STDERR_FILENO, buf, (size_t)n) != n)
				break;
	}
	close(t->err_fd);
	t->err_fd = t->saved_err = -1;
}

static void init_colors(struct tui *t)
{
	const char *nc = getenv("NO_COLOR");

	t->color = !t->o->no_color && !(nc && *nc) && has_colors();
	if (!t->color)
		return;
	start_color();
	use_default_colors();
	init_pair(CP_HEADER, COLOR_BLACK, COLOR_GREEN);
	init_pair(CP_SORTED, COLOR_BLACK, COLOR_CYAN);
	init_pair(CP_SELECTED, COLOR_BLACK, COLOR_CYAN);
	init_pair(CP_GROWING, COLOR_YELLOW, -1);
	init_pair(CP_SUSPECT, COLOR_RED, -1);
	init_pair(CP_BAR_LABEL, COLOR_BLACK, COLOR_CYAN);
	init_pair(CP_STATE, COLOR_WHITE, COLOR_RED);
	init_pair(CP_TITLE, COLOR_CYAN, -1);
}

static int screen_open(struct tui *t)
{
	const char *term = getenv("TERM");
	bool tty_out = isatty(STDOUT_FILENO);
	const char *cs;

	/*
	 * Only the character type: a comma as decimal point would change the
	 * CSV that is written while the screen is up.
	 */
	setlocale(LC_ALL, "");
	setlocale(LC_NUMERIC, "C");
	cs = nl_langinfo(CODESET);
	t->utf8 = cs && !strcasecmp(cs, "UTF-8");

	t->keys = isatty(STDIN_FILENO) && tty_out;
	t->in = t->keys ? stdin : fopen("/dev/null", "r");
	t->out = tty_out ? stdout : fopen("/dev/null", "w");
	if (!t->in || !t->out)
		return -errno;
	/*
	 * Without a terminal (-n under a test harness) the loop still runs
	 * and renders, into /dev/null, with a terminal type that surely exists.
	 */
	if (!tty_out && (!term || !*term || !strcmp(term, "dumb")))
		term = "xterm";
	t->scr = newterm(term, t->out, t->in);
	if (!t->scr && !tty_out)
		t->scr = newterm("xterm", t->out, t->in);
	if (!t->scr) {
		fprintf(stderr,
			"memtop: cannot use the terminal (TERM=%s); try -b for "
			"text output\n",
			term ? term : "");
		return -ENOTTY;
	}
	set_term(t->scr);
	capture_stderr(t);
	cbreak(); /* Ctrl-C stays a signal: main's handler sets *stop */
	noecho();
	nonl();
	keypad(stdscr, TRUE);
	set_escdelay(25);
	curs_set(0);
	init_colors(t);
	return 0;
}

static void screen_close(struct tui *t)
{
	if (t->scr) {
		curs_set(1);
		endwin();
		delscreen(t->scr);
		t->scr = NULL;
	}
	release_stderr(t);
	if (t->in && t->in != stdin)
		fclose(t->in);
	if (t->out && t->out != stdout)
		fclose(t->out);
	t->in = t->out = NULL;
}

static int run(struct tui *t)
{
	int err;

	t->next_refresh = mono_now();
	while (!t->quit && !*t->stop) {
		double now = mono_now();
		int ms, ch;

		/* Once every process is gone the data cannot change: stop. */
		if (t->want_refresh || (!t->exited && now >= t->next_refresh)) {
			t->want_refresh = false;
			err = do_refresh(t);
			if (err)
				return err;
			t->next_refresh += t->interval;
			if (t->next_refresh < now)
				t->next_refresh = now + t->interval;
			draw(t);
			if (t->o->iterations > 0 &&
			    (t->nrefresh >= t->o->iterations || t->exited))
				break;
			continue;
		}
		ms = TICK_MS;
		if (!t->exited && (t->next_refresh - now) * 1000 < ms)
			ms = (int)((t->next_refresh - now) * 1000) + 1;
		if (t->msg[0] && now >= t->msg_until) {
			t->msg[0] = '\0';
			draw(t);
		}
		if (!t->keys) {
			poll(NULL, 0, ms);
			continue;
		}
		timeout(ms);
		ch = getch();
		if (ch == ERR)
			continue;
		handle_key(t, ch);
		draw(t);
	}
	return 0;
}

int view_tui_run(struct collector *c, const struct tui_source *src,
		 const struct tui_opts *o, volatile sig_atomic_t *stop)
{
	struct tui t = {
		.coll = c,
		.src = src,
		.o = o,
		.stop = stop,
		.err_fd = -1,
		.saved_err = -1,
		.interval = o->interval_s > 0 ? o->interval_s : 1.0,
	};
	int err;

	/* Start from the collector's settings (-o, -r). */
	t.sort = o->sort;
	t.reverse = o->reverse;
	err = screen_open(&t);
	if (!err)
		err = run(&t);
	screen_close(&t);
	free(t.frozen);
	free(t.pfrozen);
	free(t.frozen_trends);
	free(t.idx);
	return err;
}
