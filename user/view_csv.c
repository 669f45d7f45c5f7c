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

#define CSV_HEADER                                                             \
	"timestamp,elapsed_s,pid,comm,scope,site_id,function,location,stack,"  \
	"outstanding_bytes,outstanding_allocs,allocs,frees,alloc_bytes,"       \
	"rss_bytes,free_bytes,growth_bps,alloc_rate,free_rate,lost_events,"    \
	"unknown_frees,scale,mmap_bytes,min_size,depth\n"

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
	err = csv_emit(w, CSV_HEADER, strlen(CSV_HEADER));
	if (err) {
		if (w->own)
			close(w->fd);
		free(w);
		return err;
	}
	*out = w;
	return 0;
}

/* Columns timestamp..comm, shared by the process and site rows. */
static void row_start(FILE *m, const char *ts, const struct snapshot *s,
		      const struct snap_proc *p)
{
	fprintf(m, "%s,%.3f,%" PRIu32 ",", ts, s->elapsed_s, p->pid);
	csv_field(m, p->comm);
}

static void row_end(FILE *m, const struct snapshot *s, double growth,
		    double alloc_rate, double free_rate)
{
	fputc(',', m);
	csv_rate(m, growth);
	fputc(',', m);
	csv_rate(m, alloc_rate);
	fputc(',', m);
	csv_rate(m, free_rate);
	/* scale: 1 exact; N under --sample N, the counts being estimates. */
	fprintf(m, ",%" PRIu64 ",%" PRIu64 ",%u", s->lost_total,
		s->lost[MT_CNT_UNKNOWN_FREE], s->scale > 1 ? s->scale : 1);
}

static void proc_row(FILE *m, const char *ts, const struct snapshot *s,
		     const struct snap_proc *p)
{
	row_start(m, ts, s, p);
	fprintf(m,
		",process,,,,,%" PRId64 ",%" PRId64 ",%" PRIu64 ",%" PRIu64
		",%" PRIu64 ",%" PRIu64 ",%" PRIu64,
		p->outstanding_bytes, p->outstanding_allocs, p->allocs,
		p->frees, p->alloc_bytes, p->rss_bytes, p->free_bytes);
	row_end(m, s, p->growth_bps, p->alloc_rate, p->free_rate);
	/* min_size, depth: the cheaper modes (0 = off) label every row. */
	fprintf(m, ",%" PRId64 ",%" PRIu64 ",%u\n", p->mmap_bytes,
		(uint64_t)s->min_size, s->depth); /* issue 7 */
}

static void site_row(FILE *m, const char *ts, const struct snapshot *s,
		     const struct snap_proc *p, const struct snap_site *st)
{
	row_start(m, ts, s, p);
	fputs(",site,", m);
	csv_field(m, st->site_id);
	fputc(',', m);
	csv_field(m, st->function ? st->function : "");
	fputc(',', m);
	csv_field(m, st->location ? st->location : "");
	fputc(',', m);
	csv_stack(m, st);
	fprintf(m,
		",%" PRId64 ",%" PRId64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
		",,%" PRIu64,
		st->outstanding_bytes, st->outstanding_allocs, st->allocs,
		st->frees, st->alloc_bytes, st->free_bytes);
	row_end(m, s, st->growth_bps, st->alloc_rate, st->free_rate);
	/* mmap_bytes: per process only */
	fprintf(m, ",,%" PRIu64 ",%u\n", (uint64_t)s->min_size, s->depth);
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

		proc_row(m, ts, s, p);
		n = 0;
		for (j = 0; j < s->nsites; j++)
			if (s->sites[j].pid == p->pid)
				sel[n++] = &s->sites[j];
		if (n > 1)
			qsort(sel, (size_t)n, sizeof(*sel), cmp_outstanding);
		if (top > 0 && top < n)
			n = top;
		for (j = 0; j < n; j++)
			site_row(m, ts, s, p, sel[j]);
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
