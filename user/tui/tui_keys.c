/*
 * The live screen's keys: one key table mapping each key of the table screen
 * to an action (the help screen is generated from it), the prompt (search,
 * filter, refresh interval) and the pager keys of the stack and help screens.
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

/* ---- Key actions ---------------------------------------------------- */

static void set_sort(struct tui *t, enum sort_field f, bool reverse)
{
	int n;
	struct snap_site *r;

	tui_remember_sel(t);
	t->sort = f;
	t->reverse = reverse;
	source_set_sort(t->source, f, reverse);
	t->snap = source_snapshot(t->source);
	if (t->paused) {
		r = tui_rows(t, &n);
		snapshot_sort_sites(r, n, f, reverse);
	}
	tui_rebuild(t);
}

/* From a process's call sites back to the process list, on that process. */
static void back_to_list(struct tui *t)
{
	t->drill = 0;
	t->key.valid = true;
	t->key.pid = t->list_pid;
	t->key.site_id[0] = t->key.function[0] = '\0';
	t->top = 0;
	tui_rebuild(t);
}

static void act_quit(struct tui *t, int key)
{
	if (key == 'q' && t->drill) {
		back_to_list(t);
		return;
	}
	t->quit = true;
}

/* M, N, G, A, T: the sort field is the key table entry's arg. */
static void act_sort_key(struct tui *t, int key);

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
	tui_remember_sel(t);
	if (!t->paused && tui_freeze(t)) {
		tui_set_msg(t, "cannot pause: out of memory");
		return;
	}
	t->paused = !t->paused;
	tui_rebuild(t);
}

static void act_refresh(struct tui *t, int key)
{
	(void)key;
	loop_refresh_now(t->loop);
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
	start_prompt(t, PROMPT_FILTER, tui_cur_filter(t));
}

/* Esc clears the filter; without one it goes back to the process list. */
static void act_escape(struct tui *t, int key)
{
	char *f = tui_cur_filter(t);

	(void)key;
	if (!f[0]) {
		if (t->drill)
			back_to_list(t);
		return;
	}
	tui_remember_sel(t);
	f[0] = '\0';
	tui_rebuild(t);
}

/* Select the next row, after the selection and wrapping, that matches. */
static void search_next(struct tui *t)
{
	if (!t->search[0])
		return;
	for (int k = 1; k <= t->nidx; k++) {
		int i = (t->sel + k) % t->nidx;

		if (tui_idx_matches(t, i, t->search)) {
			t->sel = i;
			tui_remember_sel(t);
			return;
		}
	}
	tui_set_msg(t, "no %s matches \"%s\"",
		    tui_list_mode(t) ? "process" : "function", t->search);
}

static void act_search_next(struct tui *t, int key)
{
	(void)key;
	search_next(t);
}

/*
 * The movement keys of every list and pager: a line, a page, either end
 * (last). False for any other key. The caller clamps.
 */
bool tui_move_key(int key, int *pos, int page, int last)
{
	switch (key) {
	case KEY_UP:
		--*pos;
		return true;
	case KEY_DOWN:
		++*pos;
		return true;
	case KEY_PPAGE:
		*pos -= page;
		return true;
	case KEY_NPAGE:
		*pos += page;
		return true;
	case KEY_HOME:
		*pos = 0;
		return true;
	case KEY_END:
		*pos = last;
		return true;
	default:
		return false;
	}
}

static void act_move(struct tui *t, int key)
{
	tui_move_key(key, &t->sel, t->page > 1 ? t->page : 1, t->nidx - 1);
	tui_clamp_sel(&t->sel, t->nidx);
	tui_remember_sel(t);
}

static void act_stack(struct tui *t, int key)
{
	const struct snap_site *s = tui_sel_row(t);
	const struct snap_proc *p = tui_sel_proc(t);

	(void)key;
	if (p) { /* the process list: into its call sites */
		t->list_pid = p->pid;
		t->drill = p->pid;
		t->key.valid = false;
		t->sel = t->top = 0;
		tui_rebuild(t);
		return;
	}
	if (!s) {
		tui_set_msg(t, "no site selected");
		return;
	}
	t->stack_site = *s;
	t->scroll = 0;
	t->mode = MODE_STACK;
}

static void act_types(struct tui *t, int key)
{
	(void)key;
	t->mode = MODE_TYPES;
	t->tsel = t->ttop = 0;
	t->tname[0] = '\0';
	source_set_types(t->source, true);
	loop_refresh_now(t->loop);
}

void tui_act_baseline(struct tui *t, int key)
{
	(void)key;
	t->baseline = !t->baseline;
	source_set_baseline(t->source, t->baseline);
	if (t->baseline && t->snap) {
		t->base_bytes = t->snap->outstanding_bytes;
		t->base_allocs = t->snap->outstanding_allocs;
		t->base_elapsed = t->snap->elapsed_s;
	}
	tui_set_msg(t, t->baseline
			       ? "baseline set: GROWTH is now since this point"
			       : "baseline cleared");
}

static void act_collapse(struct tui *t, int key)
{
	(void)key;
	t->collapse = !t->collapse;
	source_set_collapse(t->source, t->collapse);
	/* The collector groups rows when it builds a snapshot. */
	if (t->paused)
		tui_set_msg(t, "collapse %s: shown when the table is resumed",
			    t->collapse ? "on" : "off");
	else
		loop_refresh_now(t->loop);
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

/* Growth mode: the selected process to exact tracing and back. */
static void act_exact(struct tui *t, int key)
{
	const struct snap_proc *p =
		tui_list_mode(t) ? tui_sel_proc(t) : tui_shown_proc(t);
	uint32_t pid;
	bool on;
	int err;

	(void)key;
	if (!source_growth(t->source) || !t->snap || !t->snap->growth) {
		tui_set_msg(
			t,
			"x switches processes in growth mode (--growth) only");
		return;
	}
	if (!p) {
		tui_set_msg(t, "no process selected");
		return;
	}
	pid = p->pid;
	on = !p->exact;
	tui_set_msg(t, "PID %" PRIu32 ": %s...", pid,
		    on ? "attaching allocator probes" : "detaching");
	err = source_set_exact(t->source, pid, on);
	if (err) {
		tui_set_msg(t,
			    "PID %" PRIu32 ": cannot switch to %s tracing: %s",
			    pid, on ? "exact" : "growth", strerror(-err));
		return;
	}
	tui_set_msg(t,
		    on ? "PID %" PRIu32 ": exact tracing (allocator probes), "
			 "outstanding bytes from now on"
		       : "PID %" PRIu32 ": back to growth mode (page faults)",
		    pid);
	t->key.valid = false;
	loop_refresh_now(t->loop);
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
static const struct key_binding keytab[] = {
	{'h', act_help, "h ? F1", "show this help", 0},
	{'?', act_help, NULL, NULL, 0},
	{KEY_F(1), act_help, NULL, NULL, 0},
	{'q', act_quit, "q F10", "quit (q: back to the process list)", 0},
	{KEY_F(10), act_quit, NULL, NULL, 0},
	{'M', act_sort_key, "M", "sort by outstanding bytes", SORT_OUTSTANDING},
	{'N', act_sort_key, "N", "sort by outstanding allocation count",
	 SORT_COUNT},
	{'G', act_sort_key, "G", "sort by growth (bytes per second)",
	 SORT_GROWTH},
	{'A', act_sort_key, "A", "sort by allocation rate", SORT_ALLOC_RATE},
	{'T', act_sort_key, "T", "sort by age of the site", SORT_AGE},
	{'<', act_sort_move, "< >", "move the sort column left / right", 0},
	{'>', act_sort_move, NULL, NULL, 0},
	{'R', act_reverse, "R I", "reverse the sort order", 0},
	{'I', act_reverse, NULL, NULL, 0},
	{KEY_UP, act_move, "Up Down PgUp PgDn Home End", "move the selection",
	 0},
	{KEY_DOWN, act_move, NULL, NULL, 0},
	{KEY_PPAGE, act_move, NULL, NULL, 0},
	{KEY_NPAGE, act_move, NULL, NULL, 0},
	{KEY_HOME, act_move, NULL, NULL, 0},
	{KEY_END, act_move, NULL, NULL, 0},
	{'\n', act_stack, "Enter",
	 "full stack of the selected site; in the process list, its sites", 0},
	{'\r', act_stack, NULL, NULL, 0},
	{KEY_ENTER, act_stack, NULL, NULL, 0},
	{'/', act_search, "/ n F3", "search a function (n: next match)", 0},
	{'n', act_search_next, NULL, NULL, 0},
	{KEY_F(3), act_search, NULL, NULL, 0},
	{'\\', act_filter, "\\ F4",
	 "filter rows by function (process list: command) substring", 0},
	{KEY_F(4), act_filter, NULL, NULL, 0},
	{KEY_ESC, act_escape, "Esc",
	 "clear the filter, else back to the process list", 0},
	{'B', tui_act_baseline, "B",
	 "set / clear the baseline (growth since it)", 0},
	{'o', act_types, "o",
	 "objects by type (CPython): live objects allocated since attach", 0},
	{'c', act_collapse, "c", "collapse sites by function", 0},
	{'x', act_exact, "x",
	 "growth mode: trace the selected process exactly (its allocator "
	 "probed) / back to growth mode",
	 0},
	{'Z', act_pause, "Z", "pause the table (the summary keeps updating)",
	 0},
	{' ', act_refresh, "Space", "refresh now", 0},
	{'d', act_delay, "d s", "change the refresh interval", 0},
	{'s', act_delay, NULL, NULL, 0},
	{'e', act_units, "e", "cycle byte units (auto, B, KiB, MiB, GiB)", 0},
	{KEY_CTRL_L, act_redraw, "Ctrl-L", "redraw the screen", 0},
	{KEY_RESIZE, act_none, NULL, NULL, 0},
};

#define NKEYS ((int)(sizeof(keytab) / sizeof(keytab[0])))

static void act_sort_key(struct tui *t, int key)
{
	for (int i = 0; i < NKEYS; i++)
		if (keytab[i].key == key && keytab[i].fn == act_sort_key)
			set_sort(t, (enum sort_field)keytab[i].arg, false);
}

const struct key_binding *tui_keys(int *n)
{
	*n = NKEYS;
	return keytab;
}

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
		tui_remember_sel(t);
		snprintf(tui_cur_filter(t), PROMPT_MAX, "%s", t->pbuf);
		tui_rebuild(t);
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
			tui_set_msg(
				t,
				"invalid interval \"%s\": 0.1 to 86400 seconds",
				t->pbuf);
		} else {
			loop_set_interval(t->loop, v);
			tui_set_msg(t, "refreshing every %.1fs", v);
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
		tui_remember_sel(t);
		snprintf(tui_cur_filter(t), PROMPT_MAX, "%s", t->pbuf);
		tui_rebuild(t);
	}
}

/* Keys of the stack and help screens: scroll, or go back. */
static void pager_key(struct tui *t, int ch)
{
	/* The end is clamped when drawn. */
	if (tui_move_key(ch, &t->scroll, t->page, 1 << 20))
		return;
	switch (ch) {
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

void tui_handle_key(struct tui *t, int ch)
{
	if (t->prompt != PROMPT_NONE) {
		prompt_key(t, ch);
		return;
	}
	if (t->mode == MODE_TYPES || t->mode == MODE_TYPE_SITES) {
		tui_types_key(t, ch);
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
