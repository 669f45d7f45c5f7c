/*
 * The outputs that render a snapshot: batch text (like top -b), CSV samples,
 * folded stacks, and the formatting they share with the live screen
 * (user/tui/). They read snapshots and never compute the model.
 */
#ifndef MEMTOP_VIEWS_H
#define MEMTOP_VIEWS_H

#include <stdbool.h>
#include <stdio.h>
#include "snapshot.h"

/* Batch text. top: rows printed per sample (0 = all). */
void view_batch_print(FILE *f, const struct snapshot *s, int top);

/* CSV samples, RFC 4180; the header once, flushed after every sample. */
struct csv_writer;
int csv_open(struct csv_writer **out, const char *path); /* "-" = stdout */
/* top: site rows per process (0 = all); 0 or -errno (e.g. -ENOSPC). */
int csv_write(struct csv_writer *w, const struct snapshot *s, int top);
int csv_close(struct csv_writer *w);
/* Write one CSV field with RFC 4180 quoting (exposed for tests). */
void csv_field(FILE *f, const char *s);

/* Folded stacks ("main;serve;make 1500" per stack, outermost first). */
int folded_write(const char *path, const struct snapshot *s);

/* write(2) all of buf, retrying short writes; 0 or -errno. */
int views_write_all(int fd, const char *buf, size_t len);
/* Replace the file at path ("-": the standard output) with buf; 0 or
 * -errno. */
int views_write_path(const char *path, const char *buf, size_t len);

/* Human byte units: "1.5 MiB". unit: 0 auto, 1 B, 2 KiB, 3 MiB, 4 GiB. */
char *fmt_bytes(char *buf, size_t len, double bytes, int unit);
/* ISO 8601 UTC with milliseconds: 2026-11-21T13:45:01.250Z */
char *fmt_iso8601(char *buf, size_t len, const struct timespec *ts);

#endif
