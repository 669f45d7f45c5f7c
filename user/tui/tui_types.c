/*
 * The live screen's objects-by-type view ('o'): live CPython objects per type,
 * their growth, and Enter on a type for the sites that allocated them.
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

/* ---- Objects by type ------------------------------------------------ */

/* The selected type's row again, by pid and name; NULL when gone. */
static const struct snap_type *sel_type(struct tui *t)
{
	const struct snapshot *s = t->snap;

	if (!s || !s->ntypes)
		return NULL;
	if (t->tname[0]) {
		for (int i = 0; i < s->ntypes; i++)
			if (s->types[i].pid == t->tpid &&
			    !strcmp(s->types[i].name, t->tname)) {
				t->tsel = i;
				return &s->types[i];
			}
	}
	tui_clamp_sel(&t->tsel, s->ntypes);
	return &s->types[t->tsel];
}

void tui_draw_types(struct tui *t)
{
	static const char *const bar[] = {
		"Enter", "Sites ", "B", "Base ", "Esc", "Back ", "F10", "Quit ",
	};
	static const char *const sbar[] = {"Esc", "Back ", "F10", "Quit "};
	const struct snapshot *s = t->snap;
	const struct snap_type *sel;
	attr_t h = tui_cattr(t, CP_HEADER, A_REVERSE);
	int y0 = SUMMARY_LINES + 1, nrows = LINES - 1 - y0, n;
	char a[48], b[48], c[48], line[512];

	tui_draw_summary(t);
	tui_fill_line(SUMMARY_LINES, h);
	sel = sel_type(t);
	if (t->mode == MODE_TYPE_SITES && sel) {
		snprintf(line, sizeof(line),
			 " %11s %11s  SITES THAT ALLOCATED %s (pid %" PRIu32
			 ")",
			 "OBJECTS", "BYTES", sel->name, sel->pid);
		tui_put(t, SUMMARY_LINES, 0, h, line);
		t->page = nrows > 0 ? nrows : 1;
		for (int r = 0; r < nrows && r < sel->nsites; r++) {
			const struct snap_type_site *q = &sel->sites[r];

			snprintf(line, sizeof(line),
				 " %11" PRId64 " %11s  %s  %s", q->objects,
				 tui_fmt_fit(a, sizeof(a), (double)q->bytes,
					     t->unit, 11, false),
				 q->function, q->location);
			tui_put(t, y0 + r, 0, A_NORMAL, line);
		}
		tui_draw_bar(t, sbar, (int)(sizeof(sbar) / sizeof(sbar[0])));
		return;
	}
	t->mode = MODE_TYPES;
	snprintf(line, sizeof(line), " %7s %11s %11s %10s %9s  %s", "PID",
		 "OBJECTS", "BYTES", "OBJECTS/s",
		 s && s->baseline ? "SINCE-B" : "SINCE", "TYPE");
	tui_put(t, SUMMARY_LINES, 0, h, line);
	n = s ? s->ntypes : 0;
	t->page = nrows > 0 ? nrows : 1;
	if (t->tsel < t->ttop)
		t->ttop = t->tsel;
	if (nrows > 0 && t->tsel >= t->ttop + nrows)
		t->ttop = t->tsel - nrows + 1;
	for (int r = 0; r < nrows && t->ttop + r < n; r++) {
		const struct snap_type *q = &s->types[t->ttop + r];
		bool selected = t->ttop + r == t->tsel;
		attr_t at = selected ? tui_cattr(t, CP_SELECTED, A_REVERSE)
			    : q->growth_objs > 0.05
				    ? tui_cattr(t, CP_GROWING, A_BOLD)
				    : A_NORMAL;

		tui_fill_line(y0 + r, at);
		snprintf(b, sizeof(b), "%+" PRId64, q->delta_objects);
		snprintf(line, sizeof(line),
			 " %7" PRIu32 " %11" PRId64 " %11s %10s %9s  %s",
			 q->pid, q->objects,
			 tui_fmt_fit(a, sizeof(a), (double)q->bytes, t->unit,
				     11, false),
			 tui_fmt_count(c, sizeof(c), q->growth_objs, true), b,
			 q->name);
		tui_put(t, y0 + r, 0, at, line);
	}
	if (!n && nrows > 0) {
		const char *why = "reading the objects' headers...";

		for (int i = 0; s && i < s->nprocs; i++)
			if (s->procs[i].has_types)
				why = "no typed objects allocated since attach "
				      "yet";
		if (s && !s->types_on && s->seq > 1)
			why = "no CPython 3.11+ process traced: objects by "
			      "type need one";
		tui_put(t, y0, 2, A_DIM, why);
	}
	if (sel) {
		t->tpid = sel->pid;
		snprintf(t->tname, sizeof(t->tname), "%s", sel->name);
	}
	tui_draw_bar(t, bar, (int)(sizeof(bar) / sizeof(bar[0])));
}

void tui_types_key(struct tui *t, int ch)
{
	int n = t->snap ? t->snap->ntypes : 0;

	if (tui_move_key(ch, &t->tsel, t->page, n - 1)) {
		tui_clamp_sel(&t->tsel, n);
		if (n) {
			snprintf(t->tname, sizeof(t->tname), "%s",
				 t->snap->types[t->tsel].name);
			t->tpid = t->snap->types[t->tsel].pid;
		}
		return;
	}
	switch (ch) {
	case '\n':
	case '\r':
	case KEY_ENTER:
		if (t->mode == MODE_TYPES && n)
			t->mode = MODE_TYPE_SITES;
		return;
	case 'B':
		tui_act_baseline(t, ch);
		return;
	case ' ':
		loop_refresh_now(t->loop);
		return;
	case KEY_CTRL_L:
		t->redraw_all = true;
		return;
	case KEY_F(10):
		t->quit = true;
		return;
	case KEY_ESC:
	case 'q':
	case 'o':
		if (t->mode == MODE_TYPE_SITES) {
			t->mode = MODE_TYPES;
			return;
		}
		t->mode = MODE_TABLE;
		source_set_types(t->source, false);
		return;
	default:
		return;
	}
}
