/*
 * The outputs behind the one output interface: batch text on standard
 * output, CSV samples, the HTTP endpoint, and folded stacks and the pprof
 * profile written once at the end. Each adapts its module's own calls and
 * says on stderr, in one line, what failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "http.h"
#include "output.h"
#include "pprof.h"
#include "views.h"

static int check_output_path(const char *path)
{
	int fd;

	if (!strcmp(path, "-"))
		return 0;
	fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

/* strerror(), but a symlink planted at an output path gets a clear word. */
static const char *output_error(const char *path, int err)
{
	struct stat st;

	if (err == -ELOOP && !lstat(path, &st) && S_ISLNK(st.st_mode))
		return "it is a symbolic link (not followed)";
	return strerror(-err);
}

/* ---- Files written once at the end: folded stacks, pprof ------------- */

struct at_exit {
	const char *path;
	int (*write)(const char *path, const struct snapshot *s);
};

static int at_exit_open(void **ctx, const char *path,
			int (*write)(const char *, const struct snapshot *))
{
	struct at_exit *e;
	int err = check_output_path(path);

	if (err) {
		fprintf(stderr, "memtop: cannot write %s: %s\n", path,
			output_error(path, err));
		return err;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->path = path;
	e->write = write;
	*ctx = e;
	return 0;
}

static int at_exit_close(void *ctx, const struct snapshot *last)
{
	struct at_exit *e = ctx;
	int err = 0;

	if (last) {
		err = e->write(e->path, last);
		if (err)
			fprintf(stderr, "memtop: cannot write %s: %s\n",
				e->path, strerror(-err));
	}
	free(e);
	return err;
}

static bool folded_wanted(const struct config *cfg)
{
	return cfg->folded_path;
}

static int folded_open(void **ctx, const struct config *cfg)
{
	return at_exit_open(ctx, cfg->folded_path, folded_write);
}

const struct output_ops output_folded = {
	.name = "folded",
	.wanted = folded_wanted,
	.open = folded_open,
	.close = at_exit_close,
};

static bool pprof_wanted(const struct config *cfg)
{
	return cfg->pprof_path;
}

static int pprof_open(void **ctx, const struct config *cfg)
{
	return at_exit_open(ctx, cfg->pprof_path, pprof_write);
}

const struct output_ops output_pprof = {
	.name = "pprof",
	.wanted = pprof_wanted,
	.open = pprof_open,
	.close = at_exit_close,
};

/* ---- The HTTP endpoint (--listen) ------------------------------------ */

struct http_out {
	struct http_server *h;
	bool failed;
};

bool output_http_wanted(const struct config *cfg)
{
	return cfg->listen;
}

static int http_out_open(void **ctx, const struct config *cfg)
{
	struct http_opts ho = {.metrics_sites = cfg->metrics_sites};
	struct http_out *o;
	char msg[256];
	int err;

	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	err = http_open(&o->h, cfg->listen, &ho, msg, sizeof(msg));
	if (err) {
		fprintf(stderr, "memtop: %s\n", msg);
		free(o);
		return err;
	}
	if (!http_is_loopback(o->h))
		fprintf(stderr,
			"memtop: warning: http://%s/ is reachable from other "
			"machines and has no authentication: anyone who can "
			"connect sees process names and call stacks\n",
			http_address(o->h));
	fprintf(stderr,
		"memtop: serving http://%s/ (/metrics, /debug/pprof/heap)\n",
		http_address(o->h));
	*ctx = o;
	return 0;
}

static int http_out_write(void *ctx, const struct snapshot *s)
{
	struct http_out *o = ctx;
	int err = http_publish(o->h, s);

	/* The pages served stay the last ones; tracing goes on. */
	if (err && !o->failed)
		fprintf(stderr, "memtop: cannot update the HTTP pages: %s\n",
			strerror(-err));
	o->failed = err != 0;
	return 0;
}

static int http_out_close(void *ctx, const struct snapshot *last)
{
	struct http_out *o = ctx;

	(void)last;
	http_close(o->h);
	free(o);
	return 0;
}

const struct output_ops output_http = {
	.name = "http",
	.wanted = output_http_wanted,
	.open = http_out_open,
	.write = http_out_write,
	.close = http_out_close,
};

/* ---- CSV samples (--csv) --------------------------------------------- */

struct csv_out {
	struct csv_writer *w;
	const char *path;
	int top;
	bool failed;
};

static bool csv_wanted(const struct config *cfg)
{
	return cfg->csv_path;
}

static int csv_out_open(void **ctx, const struct config *cfg)
{
	struct csv_out *o = calloc(1, sizeof(*o));
	int err;

	if (!o)
		return -ENOMEM;
	err = csv_open(&o->w, cfg->csv_path);
	if (err) {
		fprintf(stderr, "memtop: cannot write %s: %s\n", cfg->csv_path,
			output_error(cfg->csv_path, err));
		free(o);
		return err;
	}
	o->path = cfg->csv_path;
	o->top = cfg->csv_top;
	*ctx = o;
	return 0;
}

static int csv_out_write(void *ctx, const struct snapshot *s)
{
	struct csv_out *o = ctx;
	int err;

	if (o->failed)
		return 0;
	err = csv_write(o->w, s, o->top);
	if (err == -EPIPE) { /* --csv - | head: the reader is done */
		o->failed = true;
		return OUTPUT_STOP;
	}
	if (err) {
		fprintf(stderr, "memtop: cannot write the CSV file %s: %s\n",
			o->path, strerror(-err));
		o->failed = true;
	}
	return 0;
}

static int csv_out_close(void *ctx, const struct snapshot *last)
{
	struct csv_out *o = ctx;
	int err = csv_close(o->w);

	(void)last;
	if (err)
		fprintf(stderr, "memtop: cannot finish %s\n", o->path);
	free(o);
	return err;
}

const struct output_ops output_csv = {
	.name = "csv",
	.wanted = csv_wanted,
	.open = csv_out_open,
	.write = csv_out_write,
	.close = csv_out_close,
};

/* ---- Batch text on standard output (-b) ------------------------------ */

static bool batch_wanted(const struct config *cfg)
{
	return cfg->batch;
}

static int batch_open(void **ctx, const struct config *cfg)
{
	*ctx = (void *)cfg;
	return 0;
}

static int batch_write(void *ctx, const struct snapshot *s)
{
	const struct config *cfg = ctx;
	int err;

	errno = 0;
	view_batch_print(stdout, s, cfg->top);
	/* memtop -b | head: stop once the reader has gone. */
	if (ferror(stdout) || fflush(stdout) == EOF) {
		if (errno == EPIPE)
			return OUTPUT_STOP;
		err = errno;
		fprintf(stderr,
			"memtop: cannot write the standard output: %s\n",
			strerror(err));
		return err ? -err : -EIO;
	}
	return 0;
}

static int batch_close(void *ctx, const struct snapshot *last)
{
	(void)ctx;
	(void)last;
	return 0;
}

const struct output_ops output_batch = {
	.name = "batch",
	.wanted = batch_wanted,
	.open = batch_open,
	.write = batch_write,
	.close = batch_close,
};
