/*
 * The live screen's drawing primitives: numbers and text fitted to a cell
 * (UTF-8 aware), clipped writes, sparklines, and the one table layout (which
 * columns fit, heading, rows, scrolling) that the site, process and type
 * tables are all drawn with, and the function-key bar.
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

/* ---- Formatting ---------------------------------------------------- */

/* A byte amount that fits width: a forced unit falls back to auto. */
char *tui_fmt_fit(char *buf, size_t len, double bytes, int unit, int width,
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
char *tui_fmt_count(char *buf, size_t len, double v, bool frac)
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

char *tui_fmt_age(char *buf, size_t len, double s)
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

char *tui_fmt_clock(char *buf, size_t len, double s)
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

attr_t tui_cattr(const struct tui *t, enum color_pair cp, attr_t mono)
{
	return t->color ? COLOR_PAIR(cp) : mono;
}

/* Draw text at (y, x), clipped to the screen; returns the next column. */
int tui_put(const struct tui *t, int y, int x, attr_t a, const char *s)
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

int tui_putf(const struct tui *t, int y, int x, attr_t a, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return tui_put(t, y, x, a, buf);
}

/* A cell of exactly width columns, right- or left-aligned. */
void tui_cell(const struct tui *t, int y, int x, int width, bool left, attr_t a,
	      const char *s, bool keep_end)
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

void tui_fill_line(int y, attr_t a)
{
	attrset(a);
	mvhline(y, 0, ' ', COLS);
	attrset(A_NORMAL);
}

/* Outstanding bytes over the last refreshes, scaled to the column. */
void tui_sparkline(const struct tui *t, char *buf, size_t len, const int64_t *v,
		   int n, int width)
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

/* Start a table with every column shown; the caller hides what its mode
 * has no figures for. */
void tui_table_init(struct table *tb, const struct column *cols, int n)
{
	tb->cols = cols;
	tb->ncols = n;
	for (int i = 0; i < n; i++)
		tb->on[i] = true;
}

/* Drop the least useful columns until `reserve` cells are left for the
 * text columns after them; place the others. */
void tui_table_layout(struct table *tb, int reserve)
{
	const struct column *c = tb->cols;
	int used;

	for (;;) {
		int worst = -1;

		used = 1;
		for (int i = 0; i < tb->ncols; i++)
			if (tb->on[i])
				used += c[i].width + 1;
		if (used + reserve <= COLS)
			break;
		for (int i = 0; i < tb->ncols; i++)
			if (tb->on[i] && c[i].drop &&
			    (worst < 0 || c[i].drop > c[worst].drop))
				worst = i;
		if (worst < 0)
			break;
		tb->on[worst] = false;
	}
	used = 1;
	for (int i = 0; i < tb->ncols; i++) {
		tb->x[i] = used;
		if (tb->on[i])
			used += c[i].width + 1;
	}
	tb->end = used;
}

/* The heading line; names[i], when given and set, renames column i. */
void tui_table_heading(const struct tui *t, const struct table *tb, int y,
		       const char *const *names)
{
	attr_t h = tui_cattr(t, CP_HEADER, A_REVERSE);
	attr_t hs = tui_cattr(t, CP_SORTED, A_REVERSE | A_UNDERLINE) | A_BOLD;

	tui_fill_line(y, h);
	for (int i = 0; i < tb->ncols; i++) {
		const struct column *c = &tb->cols[i];

		if (tb->on[i])
			tui_cell(t, y, tb->x[i], c->width, c->left,
				 c->sort == (int)t->sort ? hs : h,
				 names && names[i] ? names[i] : c->name, false);
	}
}

void tui_table_row(struct tui *t, const struct table *tb, int y, attr_t a,
		   bool mark, cell_fmt fmt, const void *row)
{
	char buf[288];

	tui_fill_line(y, a);
	tui_cell(t, y, 0, 1, true, a, mark ? "!" : " ", false);
	for (int i = 0; i < tb->ncols; i++) {
		const struct column *c = &tb->cols[i];

		if (!tb->on[i])
			continue;
		fmt(t, i, row, buf, sizeof(buf), c->width);
		tui_cell(t, y, tb->x[i], c->width, c->left, a, buf, false);
	}
}

/* Keep the selection on a screen of rows from y0 to the bar; the number
 * of rows there. */
int tui_scroll_to_sel(struct tui *t, int y0)
{
	int nrows = LINES - 1 - y0;

	t->page = nrows > 0 ? nrows : 1;
	if (t->sel < t->top)
		t->top = t->sel;
	if (nrows > 0 && t->sel >= t->top + nrows)
		t->top = t->sel - nrows + 1;
	if (t->top > t->nidx - nrows)
		t->top = t->nidx - nrows;
	if (t->top < 0)
		t->top = 0;
	return nrows;
}

/* htop's function bar: key names plain, labels on a coloured ground. */
void tui_draw_bar(const struct tui *t, const char *const *items, int n)
{
	attr_t lab = tui_cattr(t, CP_BAR_LABEL, A_REVERSE);
	int y = LINES - 1, x = 0;

	tui_fill_line(y, lab);
	for (int i = 0; i + 1 < n; i += 2) {
		int need = (int)strlen(items[i]) + (int)strlen(items[i + 1]);

		if (x + need > COLS)
			break;
		x = tui_put(t, y, x, A_NORMAL | A_BOLD, items[i]);
		x = tui_put(t, y, x, lab, items[i + 1]);
	}
}

void tui_draw_prompt(const struct tui *t)
{
	static const char *const label[] = {
		[PROMPT_SEARCH] = "Search: ",
		[PROMPT_FILTER] = "Filter: ",
		[PROMPT_DELAY] = "Refresh interval in seconds: ",
	};
	int y = LINES - 1, x;

	tui_fill_line(y, A_NORMAL);
	x = tui_put(t, y, 0, A_BOLD, label[t->prompt]);
	x = tui_put(t, y, x, A_NORMAL, t->pbuf);
	if (t->prompt == PROMPT_FILTER)
		tui_put(t, y, x + 2, A_DIM, "(Enter keeps it, Esc clears)");
	move(y, x < COLS ? x : COLS - 1);
}

/* Clamp a scroll position for a screen of `total` lines below `y0`. */
int tui_clamp_scroll(struct tui *t, int total, int y0)
{
	int h = LINES - 1 - y0;

	if (t->scroll > total - h)
		t->scroll = total - h;
	if (t->scroll < 0)
		t->scroll = 0;
	return h;
}
