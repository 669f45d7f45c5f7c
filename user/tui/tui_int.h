/*
 * What the files of the live screen share: its state (struct tui), the
 * table layout, and the functions one file of user/tui/ calls in another.
 * Only user/tui/ includes it.
 */
#ifndef MEMTOP_TUI_INT_H
#define MEMTOP_TUI_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <curses.h>
#include "snapshot.h"
#include "tui.h"

#define SUMMARY_LINES 5 /* rows above the table heading */
#define PROMPT_MAX    64
#define MSG_SECONDS   3.0
#define KEY_ESC	      27
#define KEY_CTRL_L    12

enum mode { MODE_TABLE, MODE_STACK, MODE_HELP, MODE_TYPES, MODE_TYPE_SITES };
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
	struct source *source;
	struct loop *loop; /* paces the refreshes */
	const struct tui_opts *o;

	/* Terminal. */
	SCREEN *scr;
	FILE *in, *out; /* opened here when not the terminal */
	bool keys;	/* stdin is a terminal: keys can be read */
	bool color, utf8;
	int err_fd, saved_err; /* fd 2 redirected while the screen is up */

	/* Data. */
	const struct snapshot *snap;
	struct snap_site *frozen; /* the table while paused */
	int nfrozen;
	size_t frozen_cap;
	int64_t *frozen_trends; /* their trends: the snapshot's are reused */
	size_t frozen_trends_cap;
	int *idx; /* rows shown after the filter, into rows() */
	int nidx;
	size_t idx_cap;
	bool exited;
	int64_t base_bytes, base_allocs; /* totals when B was pressed */
	double base_elapsed;

	/* Settings driven by keys. */
	enum sort_field sort;
	bool reverse, paused, baseline, collapse;
	int unit; /* fmt_bytes unit: 0 auto .. 4 GiB */
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
	int npfrozen;
	size_t pfrozen_cap;
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
	bool quit, redraw_all;
	/* Objects by type ('o'): selection, first row, the type selected
	 * (found again by pid and name after a refresh). */
	int tsel, ttop;
	uint32_t tpid;
	char tname[128];
};

/*
 * A table's columns: the site table and the process table are both drawn
 * from one of these by table_layout, table_heading and table_row.
 */
struct column {
	const char *name;
	int width;
	int sort;  /* the sort_field this column shows, or -1 */
	int drop;  /* dropped first when narrow: higher first; 0 never */
	bool left; /* left-aligned (text), else right (numbers) */
};

#define FUNC_MIN  22
#define LOC_MIN	  14
#define TABLE_MAX 16 /* columns of the widest table */

/* Where a table's columns go on this screen; text columns follow `end`. */
struct table {
	const struct column *cols;
	int ncols;
	bool on[TABLE_MAX];
	int x[TABLE_MAX];
	int end;
};

/* One row's cells: fmt writes column i of row into buf. */
typedef void (*cell_fmt)(struct tui *t, int i, const void *row, char *buf,
			 size_t len, int width);

struct key_binding {
	int key;
	void (*fn)(struct tui *t, int key);
	const char *keys;
	const char *help;
	int arg; /* what the action needs besides the key: a sort field */
};

/* tui.c: state, rows, selection */
void tui_clamp_sel(int *sel, int n);
char *tui_cur_filter(struct tui *t);
const struct snap_proc *tui_find_proc(const struct snap_proc *p, int n,
				      uint32_t pid);
int tui_freeze(struct tui *t);
bool tui_growth_view(const struct tui *t);
bool tui_idx_matches(const struct tui *t, int i, const char *needle);
bool tui_list_mode(const struct tui *t);
double tui_mono_now(void);
struct snap_proc *tui_procs(const struct tui *t, int *n);
int tui_rebuild(struct tui *t);
void tui_remember_sel(struct tui *t);
struct snap_site *tui_rows(const struct tui *t, int *n);
const struct snap_proc *tui_sel_proc(const struct tui *t);
struct snap_site *tui_sel_row(const struct tui *t);
void tui_set_msg(struct tui *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
const struct snap_proc *tui_shown_proc(const struct tui *t);

/* tui_draw.c: drawing */
attr_t tui_cattr(const struct tui *t, enum color_pair cp, attr_t mono);
void tui_cell(const struct tui *t, int y, int x, int width, bool left, attr_t a,
	      const char *s, bool keep_end);
int tui_clamp_scroll(struct tui *t, int total, int y0);
void tui_draw_bar(const struct tui *t, const char *const *items, int n);
void tui_draw_prompt(const struct tui *t);
void tui_fill_line(int y, attr_t a);
char *tui_fmt_age(char *buf, size_t len, double s);
char *tui_fmt_clock(char *buf, size_t len, double s);
char *tui_fmt_count(char *buf, size_t len, double v, bool frac);
char *tui_fmt_fit(char *buf, size_t len, double bytes, int unit, int width,
		  bool sign);
int tui_put(const struct tui *t, int y, int x, attr_t a, const char *s);
int tui_putf(const struct tui *t, int y, int x, attr_t a, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
int tui_scroll_to_sel(struct tui *t, int y0);
void tui_sparkline(const struct tui *t, char *buf, size_t len, const int64_t *v,
		   int n, int width);
void tui_table_heading(const struct tui *t, const struct table *tb, int y,
		       const char *const *names);
void tui_table_init(struct table *tb, const struct column *cols, int n);
void tui_table_layout(struct table *tb, int reserve);
void tui_table_row(struct tui *t, const struct table *tb, int y, attr_t a,
		   bool mark, cell_fmt fmt, const void *row);

/* tui_keys.c: keys */
const struct key_binding *tui_keys(int *n);
void tui_act_baseline(struct tui *t, int key);
void tui_handle_key(struct tui *t, int ch);
bool tui_move_key(int key, int *pos, int page, int last);

/* tui_screens.c: screens */
void tui_draw(struct tui *t);
void tui_draw_summary(struct tui *t);

/* tui_types.c: objects by type */
void tui_draw_types(struct tui *t);
void tui_types_key(struct tui *t, int ch);

#endif
