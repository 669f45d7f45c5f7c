/*
 * The live screen, top/htop style; user/tui/ is the only place in memtop
 * that includes curses. It owns the refresh loop: every interval (or on demand)
 * it asks its source for a new snapshot, renders a summary, a call-site table
 * and a function-key bar, and maps keys to actions through one key table (the
 * help screen is generated from it). The model stays behind the source: sort
 * order, baseline and collapsing are set through it and the view only
 * filters, selects and freezes rows. Frames are drawn with erase() and a single
 * doupdate() so curses sends only the cells that changed. While the screen is
 * up, fd 2 is redirected to a memory file so messages from libbpf and memtop
 * cannot garble it; they are replayed after endwin(), which every exit path
 * calls.
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
#include "array.h"
#include "sample.h" /* mono_ns */
#include "source.h"
#include "tui.h"
#include "tui_int.h"
#include "views.h"

double tui_mono_now(void)
{
	return (double)mono_ns() / 1e9;
}

void tui_set_msg(struct tui *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->msg, sizeof(t->msg), fmt, ap);
	va_end(ap);
	t->msg_until = tui_mono_now() + MSG_SECONDS;
}

/* ---- Rows, filter and selection ------------------------------------ */

struct snap_site *tui_rows(const struct tui *t, int *n)
{
	if (t->paused) {
		*n = t->nfrozen;
		return t->frozen;
	}
	*n = t->snap ? t->snap->nsites : 0;
	return t->snap ? t->snap->sites : NULL;
}

struct snap_proc *tui_procs(const struct tui *t, int *n)
{
	if (t->paused) {
		*n = t->npfrozen;
		return t->pfrozen;
	}
	*n = t->snap ? t->snap->nprocs : 0;
	return t->snap ? t->snap->procs : NULL;
}

/* The table lists processes (rather than one process's call sites). */
bool tui_list_mode(const struct tui *t)
{
	return t->plist && !t->drill;
}

/* The filter of the table on screen. */
char *tui_cur_filter(struct tui *t)
{
	return tui_list_mode(t) ? t->pfilter : t->filter;
}

const struct snap_proc *tui_find_proc(const struct snap_proc *p, int n,
				      uint32_t pid)
{
	for (int i = 0; i < n; i++)
		if (p[i].pid == pid)
			return &p[i];
	return NULL;
}

/*
 * Growth mode: the process whose call sites are on screen, and whether they
 * are its growth sites (TOUCHED) or, switched to exact tracing, its
 * allocation sites.
 */
const struct snap_proc *tui_shown_proc(const struct tui *t)
{
	const struct snapshot *s = t->snap;

	if (!s)
		return NULL;
	if (t->drill)
		return tui_find_proc(s->procs, s->nprocs, t->drill);
	return s->nprocs == 1 ? &s->procs[0] : NULL;
}

bool tui_growth_view(const struct tui *t)
{
	const struct snap_proc *p = tui_shown_proc(t);

	return t->snap && t->snap->growth && (!p || p->growth);
}

struct snap_site *tui_sel_row(const struct tui *t)
{
	int n;
	struct snap_site *r = tui_rows(t, &n);

	if (tui_list_mode(t) || t->sel < 0 || t->sel >= t->nidx)
		return NULL;
	return &r[t->idx[t->sel]];
}

const struct snap_proc *tui_sel_proc(const struct tui *t)
{
	int n;
	const struct snap_proc *p = tui_procs(t, &n);

	if (!tui_list_mode(t) || t->sel < 0 || t->sel >= t->nidx)
		return NULL;
	return &p[t->idx[t->sel]];
}

void tui_remember_sel(struct tui *t)
{
	const struct snap_site *s = tui_sel_row(t);

	if (tui_list_mode(t)) {
		const struct snap_proc *p = tui_sel_proc(t);

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
bool tui_idx_matches(const struct tui *t, int i, const char *needle)
{
	int n;

	if (tui_list_mode(t))
		return proc_matches(&tui_procs(t, &n)[t->idx[i]], needle);
	return row_matches(&tui_rows(t, &n)[t->idx[i]], needle);
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
	const struct snap_proc *v = tui_procs(t, &n);
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
		r = cmp_dbl(snapshot_avg(a->outstanding_bytes,
					 a->outstanding_allocs),
			    snapshot_avg(b->outstanding_bytes,
					 b->outstanding_allocs));
		break;
	case SORT_FUNCTION:
		r = -strcmp(a->comm, b->comm); /* negated back below: A first */
		break;
	default:
		break;
	}
	r = -r; /* largest first */
	if (!r && t->snap && t->snap->growth)
		r = -cmp_dbl((double)a->touched_bytes,
			     (double)b->touched_bytes);
	if (!r)
		r = -cmp_dbl((double)a->outstanding_bytes,
			     (double)b->outstanding_bytes);
	if (!r)
		r = (a->pid > b->pid) - (a->pid < b->pid);
	return t->reverse ? -r : r;
}

static int ensure_idx(struct tui *t, int n)
{
	return ARRAY_RESERVE(t->idx, t->idx_cap, (size_t)n);
}

/* A selection in 0..n-1 (0 when there is nothing). */
void tui_clamp_sel(int *sel, int n)
{
	if (*sel >= n)
		*sel = n - 1;
	if (*sel < 0)
		*sel = 0;
}

/* Put the selection on row found (or keep it), inside the rows, and
 * remember what it points at for the next rebuild. A selection on the first
 * row stays there, as top's does: the site it held at the start (one of the
 * first, small ones) kept the view scrolled down to it once the big sites
 * sorted above. */
static void settle_sel(struct tui *t, int found)
{
	if (found >= 0 && t->sel != 0)
		t->sel = found;
	tui_clamp_sel(&t->sel, t->nidx);
	tui_remember_sel(t);
}

static int rebuild_procs(struct tui *t)
{
	int n, found = -1;
	const struct snap_proc *p = tui_procs(t, &n);

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
int tui_rebuild(struct tui *t)
{
	int n, found = -1, by_func = -1;
	struct snap_site *r = tui_rows(t, &n);

	if (tui_list_mode(t))
		return rebuild_procs(t);
	if (ensure_idx(t, n))
		return -ENOMEM;
	t->nidx = 0;
	for (int i = 0; i < n; i++) {
		if (t->drill && r[i].pid != t->drill)
			continue;
		if (!row_matches(&r[i], t->filter))
			continue;
		if (t->snap && t->snap->growth &&
		    r[i].touched != tui_growth_view(t))
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
static int copy_into(void **buf, size_t *cap, const void *src, int n,
		     size_t elem)
{
	if (array_reserve(buf, cap, (size_t)n, elem))
		return -ENOMEM;
	if (n)
		memcpy(*buf, src, (size_t)n * elem);
	return 0;
}

int tui_freeze(struct tui *t)
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
	if (array_reserve((void **)&t->frozen_trends, &t->frozen_trends_cap,
			  (size_t)ns, SNAP_TREND * sizeof(*t->frozen_trends)))
		return -ENOMEM;
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
		if (source_has_site(t->source, t->frozen[i].pid,
				    t->frozen[i].stack_id))
			t->frozen[o++] = t->frozen[i];
	t->nfrozen = o;
	if (t->mode == MODE_STACK &&
	    !source_has_site(t->source, t->stack_site.pid,
			     t->stack_site.stack_id))
		t->mode = MODE_TABLE;
	if (t->drill && !tui_find_proc(s->procs, s->nprocs, t->drill)) {
		tui_set_msg(t, "process %" PRIu32 " has gone", t->drill);
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

/* The loop's new snapshot: the view's state follows it, and it is drawn. */
static int tui_show(void *ctx, const struct snapshot *s)
{
	struct tui *t = ctx;
	int err;

	t->snap = s;
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
	err = tui_rebuild(t);
	if (err)
		return err;
	tui_draw(t);
	/* Once every process is gone the data cannot change: stop. */
	return t->exited ? LOOP_GONE : 0;
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

/* The loop's wait: keys, and the message line's expiry. */
static bool tui_wait(void *ctx, int ms)
{
	struct tui *t = ctx;
	int ch;

	if (t->msg[0] && tui_mono_now() >= t->msg_until) {
		t->msg[0] = '\0';
		tui_draw(t);
	}
	if (!t->keys) {
		poll(NULL, 0, ms);
		return t->quit;
	}
	timeout(ms);
	ch = getch();
	if (ch == ERR)
		return t->quit;
	tui_handle_key(t, ch);
	tui_draw(t);
	return t->quit;
}

int view_tui_run(struct source *src, const struct loop_opts *lo,
		 const struct tui_opts *o, volatile sig_atomic_t *stop)
{
	struct loop l;
	struct tui t = {
		.source = src,
		.loop = &l,
		.o = o,
		.err_fd = -1,
		.saved_err = -1,
	};
	struct loop_view v = {.ctx = &t, .show = tui_show, .wait = tui_wait};
	int err;

	/* Start from the collector's settings (-o, -r). */
	t.sort = o->sort;
	t.reverse = o->reverse;
	loop_init(&l, lo);
	err = screen_open(&t);
	if (!err)
		err = loop_run(&l, &v, stop);
	screen_close(&t);
	free(t.frozen);
	free(t.pfrozen);
	free(t.frozen_trends);
	free(t.idx);
	return err;
}
