/*
 * Folded stacks of outstanding memory ("main;serve;make 1500" per line,
 * outermost frame first), the input format of flamegraph.pl, inferno and
 * speedscope, so a run can be turned into a flame graph of what is still
 * allocated and by which call path. Lines with the same stack are left
 * separate: those tools add them up.
 */
#define _GNU_SOURCE /* open_memstream, O_CLOEXEC */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/types.h> /* memtop.h, reached through snapshot.h, needs __u32 */
#include "snapshot.h"
#include "views.h"

/*
 * One frame name. ';' separates frames and a newline ends the record, so
 * either inside a name would corrupt the line; spaces are fine, since the
 * tools split the count off at the last space.
 */
static void put_name(FILE *m, const char *s)
{
	if (!s || !*s) {
		fputs("[unknown]", m);
		return;
	}
	for (; *s; s++) {
		char c = *s;

		if (c == ';')
			c = ':';
		else if (c == '\n' || c == '\r')
			c = ' ';
		fputc(c, m);
	}
}

static const struct snap_proc *find_proc(const struct snapshot *s, uint32_t pid)
{
	int i;

	for (i = 0; i < s->nprocs; i++)
		if (s->procs[i].pid == pid)
			return &s->procs[i];
	return NULL;
}

static void folded_line(FILE *m, const struct snapshot *s,
			const struct snap_site *st, const char *modes)
{
	int i;

	/* Estimates and cut stacks say so at the root of the flame graph. */
	if (*modes) {
		fputs("[memtop: ", m);
		put_name(m, modes);
		fputs("];", m);
	}
	/* With several processes, the root frame tells them apart. */
	if (s->nprocs > 1) {
		const struct snap_proc *p = find_proc(s, st->pid);

		put_name(m, p ? p->comm : "?");
		fprintf(m, "-%" PRIu32 ";", st->pid);
	}
	if (st->nframes > 0 && st->frames) {
		for (i = st->nframes - 1; i >= 0; i--) {
			put_name(m, st->frames[i].func);
			if (i)
				fputc(';', m);
		}
	} else {
		/* No stack captured: count the bytes under a placeholder. */
		put_name(m, st->function);
	}
	fprintf(m, " %" PRId64 "\n", st->outstanding_bytes);
}

int folded_write(const char *path, const struct snapshot *s)
{
	char *buf = NULL, modes[160];
	size_t len = 0;
	FILE *m;
	int i, err;

	if (!path || !*path || !s)
		return -EINVAL;
	snapshot_modes(s, modes, sizeof(modes));
	m = open_memstream(&buf, &len);
	if (!m)
		return -errno;
	for (i = 0; i < s->nsites; i++)
		if (s->sites[i].outstanding_bytes > 0)
			folded_line(m, s, &s->sites[i], modes);
	/* A memstream only fails by running out of memory. */
	err = ferror(m);
	if (fclose(m) || err) {
		free(buf);
		return -ENOMEM;
	}
	err = views_write_path(path, buf, len);
	free(buf);
	return err;
}
