/*
 * CSV samples: one row per traced process and one per top site of that
 * process at every refresh, for spreadsheets and scripts that plot memory
 * over a run. Fields are quoted per RFC 4180, but lines end in "\n", not
 * "\r\n": every common consumer (Python's csv, pandas, R, spreadsheets)
 * accepts it, and line-oriented tools like grep and tail work on the file.
 * A sample is built in memory and written with write(2) in one piece, so
 * the file is valid CSV up to the last complete sample even when the disk
 * fills up.
 */
#define _GNU_SOURCE /* open_memstream, O_CLOEXEC */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <linux/types.h> /* memtop.h, reached through snapshot.h, needs __u32 */
#include "snapshot.h"
#include "views.h"

struct csv_writer {
	int fd;
	bool own; /* opened here (not stdout): close it, and may truncate it */
	off_t good; /* end of the last complete sample, when own */
};

static bool needs_quotes(const char *s)
{
	return strpbrk(s, ",\"\r\n") != NULL;
}

static void put_escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
}

void csv_field(FILE *f, const char *s)
{
	if (!f || !s)
		return;
	if (!needs_quotes(s)) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	put_escaped(f, s);
	fputc('"', f);
}

static const char *frame_func(const struct snap_frame *fr)
{
	return fr->func ? fr->func : "";
}

/* The stack as one field: frames outermost first, joined by ';'. */
static void csv_stack(FILE *f, const struct snap_site *st)
{
	bool quote = false;
	int i;

	if (!st->frames)
		return;
	for (i = 0; i < st->nframes; i++)
		quote |= needs_quotes(frame_func(&st->frames[i]));
	if (quote)
		fputc('"', f);
	for (i = st->nframes - 1; i >= 0; i--) {
		put_escaped(f, frame_func(&st->frames[i]));
		if (i)
			fputc(';', f);
	}
	if (quote)
		fputc('"', f);
}

/* A rate; empty rather than "nan" or "inf", which break numeric columns. */
static void csv_rate(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.3f", v);
}

/*
 * Write one complete chunk. When a write fails half-way, cut our own file
 * back to the last complete sample so no reader ever sees a partial row,
 * and rewind so that a later sample (after space is freed) follows it.
 */
static int csv_emit(struct csv_writer *w, const char *buf, size_t len)
{
	int err = views_write_all(w->fd, buf, len);

	if (!w->own)
		return err;
	if (err) {
		if (ftruncate(w->fd, w->good) == 0)
			lseek(w->fd, w->good, SEEK_SET);
		return err;
	}
	w->good += (off_t)len;
	return 0;
}

/*
 * One CSV row: a process, one of its sites, or one of its types (--types:
 * function = the type's name, outstanding = its live objects and their
 * bytes). growth: a growth-mode row, which has no allocator figures (empty)
 * but touched bytes, and growth_bps in TOUCHED bytes per second.
 */
enum row_kind { ROW_PROC, ROW_SITE, ROW_TYPE };

struct row {
	enum row_kind kind;
	bool growth;
	const char *ts;
	const struct snapshot *s;
	const struct snap_proc *p;
	const struct snap_site *st; /* ROW_SITE */
	const struct snap_type *t;  /* ROW_TYPE */
};

/* A figure that processes and sites both have, under the same name. */
#define FIG(r, f)    ((r)->kind == ROW_PROC ? (r)->p->f : (r)->st->f)
#define ALLOC_ROW(r) ((r)->kind != ROW_TYPE && !(r)->growth)

static void c_timestamp(FILE *m, const struct row *r)
{
	fputs(r->ts, m);
}

static void c_elapsed(FILE *m, const struct row *r)
{
	fprintf(m, "%.3f", r->s->elapsed_s);
}

static void c_pid(FILE *m, const struct row *r)
{
	fprintf(m, "%" PRIu32, r->p->pid);
}

static void c_comm(FILE *m, const struct row *r)
{
	csv_field(m, r->p->comm);
}

static void c_scope(FILE *m, const struct row *r)
{
	static const char *const names[] = {"process", "site", "type"};

	fputs(names[r->kind], m);
}

static void c_site_id(FILE *m, const struct row *r)
{
	if (r->kind == ROW_SITE)
		csv_field(m, r->st->site_id);
}

static void c_function(FILE *m, const struct row *r)
{
	if (r->kind == ROW_SITE)
		csv_field(m, r->st->function ? r->st->function : "");
	else if (r->kind == ROW_TYPE)
		csv_field(m, r->t->name);
}

static void c_location(FILE *m, const struct row *r)
{
	if (r->kind == ROW_SITE)
		csv_field(m, r->st->location ? r->st->location : "");
}

static void c_stack(FILE *m, const struct row *r)
{
	if (r->kind == ROW_SITE)
		csv_stack(m, r->st);
}

static void c_outstanding_bytes(FILE *m, const struct row *r)
{
	if (r->kind == ROW_TYPE)
		fprintf(m, "%" PRId64, r->t->bytes);
	else if (ALLOC_ROW(r))
		fprintf(m, "%" PRId64, FIG(r, outstanding_bytes));
}

static void c_outstanding_allocs(FILE *m, const struct row *r)
{
	if (r->kind == ROW_TYPE)
		fprintf(m, "%" PRId64, r->t->objects);
	else if (ALLOC_ROW(r))
		fprintf(m, "%" PRId64, FIG(r, outstanding_allocs));
}

/* Cumulative allocator counts of processes and sites. */
#define ALLOC_COUNT(name)                                                      \
	static void c_##name(FILE *m, const struct row *r)                     \
	{                                                                      \
		if (ALLOC_ROW(r))                                              \
			fprintf(m, "%" PRIu64, FIG(r, name));                  \
	}
ALLOC_COUNT(allocs)
ALLOC_COUNT(frees)
ALLOC_COUNT(alloc_bytes)
ALLOC_COUNT(free_bytes)

static void c_rss(FILE *m, const struct row *r)
{
	if (r->kind == ROW_PROC)
		fprintf(m, "%" PRIu64, r->p->rss_bytes);
}

static void c_growth(FILE *m, const struct row *r)
{
	csv_rate(m,
		 r->kind == ROW_TYPE ? r->t->growth_bps : FIG(r, growth_bps));
}

static void c_alloc_rate(FILE *m, const struct row *r)
{
	if (ALLOC_ROW(r))
		csv_rate(m, FIG(r, alloc_rate));
}

static void c_free_rate(FILE *m, const struct row *r)
{
	if (ALLOC_ROW(r))
		csv_rate(m, FIG(r, free_rate));
}

static void c_lost(FILE *m, const struct row *r)
{
	fprintf(m, "%" PRIu64, r->s->lost_total);
}

static void c_unknown_frees(FILE *m, const struct row *r)
{
	fprintf(m, "%" PRIu64, r->s->lost[MT_CNT_UNKNOWN_FREE]);
}

/* scale: 1 exact; N under --sample N, the counts being estimates (growth
 * mode's touched pages are never sampled). */
static void c_scale(FILE *m, const struct row *r)
{
	fprintf(m, "%u", !r->growth && r->s->scale > 1 ? r->s->scale : 1);
}

static void c_mmap(FILE *m, const struct row *r)
{
	if (r->kind == ROW_PROC && !r->growth)
		fprintf(m, "%" PRId64, r->p->mmap_bytes);
}

/* min_size, depth: the cheaper modes (0 = off) label every row. */
static void c_min_size(FILE *m, const struct row *r)
{
	fprintf(m, "%" PRIu64, (uint64_t)r->s->min_size);
}

static void c_depth(FILE *m, const struct row *r)
{
	fprintf(m, "%u", r->s->depth);
}

/* open_fds, threads: empty when /proc could not be read (it has exited). */
static void c_open_fds(FILE *m, const struct row *r)
{
	if (r->kind == ROW_PROC && r->p->has_resources)
		fprintf(m, "%" PRIu32, r->p->open_fds);
}

static void c_threads(FILE *m, const struct row *r)
{
	if (r->kind == ROW_PROC && r->p->has_resources)
		fprintf(m, "%" PRIu32, r->p->threads);
}

/* gc_frees: the cyclic collector's (a process's summed over its sites). */
static void c_gc_frees(FILE *m, const struct row *r)
{
	if (ALLOC_ROW(r))
		fprintf(m, "%" PRIu64, FIG(r, gc_frees));
}

/* gc_collections: empty where memtop cannot read the collector. */
static void c_gc_collections(FILE *m, const struct row *r)
{
	if (r->kind == ROW_PROC && !r->growth && r->p->has_gc)
		fprintf(m, "%" PRIu64, r->p->gc_collections);
}

/* touched_bytes: growth mode only; a process's, and its touched sites'. */
static void c_touched(FILE *m, const struct row *r)
{
	if (!r->s->growth)
		return;
	if (r->kind == ROW_PROC)
		fprintf(m, "%" PRIu64, r->p->touched_bytes);
	else if (r->kind == ROW_SITE && r->growth)
		fprintf(m, "%" PRIu64, r->st->touched_bytes);
}

/* not_seen: what memtop cannot see in the process, never silence. */
static void c_not_seen(FILE *m, const struct row *r)
{
	if (r->kind == ROW_PROC)
		csv_field(m, r->p->not_seen);
}

/* peak_bytes, interval_peak_bytes: a process's highs (allocator figures). */
static void c_peak(FILE *m, const struct row *r)
{
	if (r->kind == ROW_PROC && !r->growth)
		fprintf(m, "%" PRId64, r->p->peak_bytes);
}

static void c_interval_peak(FILE *m, const struct row *r)
{
	if (r->kind == ROW_PROC && !r->growth)
		fprintf(m, "%" PRId64, r->p->interval_peak_bytes);
}

/* The columns, in file order: adding a column is one row here, at the end
 * (readers rely on the order). */
static const struct csv_column {
	const char *name;
	void (*cell)(FILE *m, const struct row *r);
} columns[] = {
	{"timestamp", c_timestamp},
	{"elapsed_s", c_elapsed},
	{"pid", c_pid},
	{"comm", c_comm},
	{"scope", c_scope},
	{"site_id", c_site_id},
	{"function", c_function},
	{"location", c_location},
	{"stack", c_stack},
	{"outstanding_bytes", c_outstanding_bytes},
	{"outstanding_allocs", c_outstanding_allocs},
	{"allocs", c_allocs},
	{"frees", c_frees},
	{"alloc_bytes", c_alloc_bytes},
	{"rss_bytes", c_rss},
	{"free_bytes", c_free_bytes},
	{"growth_bps", c_growth},
	{"alloc_rate", c_alloc_rate},
	{"free_rate", c_free_rate},
	{"lost_events", c_lost},
	{"unknown_frees", c_unknown_frees},
	{"scale", c_scale},
	{"mmap_bytes", c_mmap},
	{"min_size", c_min_size},
	{"depth", c_depth},
	{"open_fds", c_open_fds},
	{"threads", c_threads},
	{"gc_frees", c_gc_frees},
	{"gc_collections", c_gc_collections},
	{"touched_bytes", c_touched},
	{"not_seen", c_not_seen},
	{"peak_bytes", c_peak},
	{"interval_peak_bytes", c_interval_peak},
};

#define NCOLUMNS (sizeof(columns) / sizeof(columns[0]))

static void put_row(FILE *m, const struct row *r)
{
	for (size_t i = 0; i < NCOLUMNS; i++) {
		if (i)
			fputc(',', m);
		columns[i].cell(m, r);
	}
	fputc('\n', m);
}

/* The header line, from the table. */
static int put_header(struct csv_writer *w)
{
	char buf[1024];
	size_t len = 0;

	for (size_t i = 0; i < NCOLUMNS; i++) {
		int n = snprintf(buf + len, sizeof(buf) - len, "%s%s",
				 i ? "," : "", columns[i].name);

		if (n < 0 || (size_t)n >= sizeof(buf) - len)
			return -ENAMETOOLONG;
		len += (size_t)n;
	}
	if (len + 1 >= sizeof(buf))
		return -ENAMETOOLONG;
	buf[len++] = '\n';
	return csv_emit(w, buf, len);
}

int csv_open(struct csv_writer **out, const char *path)
{
	struct csv_writer *w;
	int err;

	if (!out || !path || !*path)
		return -EINVAL;
	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	if (strcmp(path, "-") == 0) {
		/* Whatever stdio holds for stdout must come out before us. */
		fflush(stdout);
		w->fd = STDOUT_FILENO;
	} else {
		w->fd = open(path,
			     O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
				     O_CLOEXEC,
			     0644);
		if (w->fd < 0) {
			err = -errno;
			free(w);
			return err;
		}
		w->own = true;
	}
	err = put_header(w);
	if (err) {
		if (w->own)
			close(w->fd);
		free(w);
		return err;
	}
	*out = w;
	return 0;
}

/* Largest first, whatever order the screen is sorted in. */
static int cmp_outstanding(const void *pa, const void *pb)
{
	const struct snap_site *a = *(const struct snap_site *const *)pa;
	const struct snap_site *b = *(const struct snap_site *const *)pb;

	if (a->outstanding_bytes != b->outstanding_bytes)
		return a->outstanding_bytes > b->outstanding_bytes ? -1 : 1;
	return strcmp(a->site_id, b->site_id);
}

int csv_write(struct csv_writer *w, const struct snapshot *s, int top)
{
	const struct snap_site **sel = NULL;
	char ts[40], *buf = NULL;
	size_t len = 0;
	FILE *m;
	int i, j, n, err;

	if (!w || !s)
		return -EINVAL;
	if (s->nsites > 0) {
		sel = malloc((size_t)s->nsites * sizeof(*sel));
		if (!sel)
			return -ENOMEM;
	}
	m = open_memstream(&buf, &len);
	if (!m) {
		err = -errno;
		free(sel);
		return err;
	}
	fmt_iso8601(ts, sizeof(ts), &s->wall);
	for (i = 0; i < s->nprocs; i++) {
		const struct snap_proc *p = &s->procs[i];

		struct row r = {.kind = ROW_PROC,
				.growth = p->growth,
				.ts = ts,
				.s = s,
				.p = p};

		put_row(m, &r);
		n = 0;
		for (j = 0; j < s->nsites; j++)
			if (s->sites[j].pid == p->pid)
				sel[n++] = &s->sites[j];
		if (n > 1)
			qsort(sel, (size_t)n, sizeof(*sel), cmp_outstanding);
		if (top > 0 && top < n)
			n = top;
		r.kind = ROW_SITE;
		for (j = 0; j < n; j++) {
			r.st = sel[j];
			r.growth = sel[j]->touched;
			put_row(m, &r);
		}
		/* Types are sorted by live objects already. */
		r.kind = ROW_TYPE;
		r.growth = false;
		for (j = 0, n = 0; j < s->ntypes; j++) {
			if (s->types[j].pid != p->pid ||
			    (top > 0 && n++ >= top))
				continue;
			r.t = &s->types[j];
			put_row(m, &r);
		}
	}
	free(sel);
	/* A memstream only fails by running out of memory. */
	if (ferror(m)) {
		fclose(m);
		free(buf);
		return -ENOMEM;
	}
	if (fclose(m)) {
		free(buf);
		return -ENOMEM;
	}
	if (w->fd == STDOUT_FILENO && !w->own)
		fflush(stdout);
	err = csv_emit(w, buf, len);
	free(buf);
	return err;
}

int csv_close(struct csv_writer *w)
{
	int err = 0;

	if (!w)
		return 0;
	/* close() is where NFS and some FUSE file systems report lost data. */
	if (w->own && close(w->fd) < 0)
		err = -errno;
	free(w);
	return err;
}
