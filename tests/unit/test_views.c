/*
 * Unit tests of the views and formatting helpers, without root or BPF: a
 * snapshot built by hand (two processes, sites with frames, a function name
 * with a comma and a quote) is rendered as CSV, folded stacks and batch
 * text, and the output is read back and checked. Prints one line per check;
 * exits non-zero if any failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <linux/types.h> /* memtop.h, reached through snapshot.h, needs __u32 */
#include "snapshot.h"
#include "views.h"

static int failures, checks;

static void check(int ok, const char *fmt, ...)
{
	va_list ap;

	checks++;
	if (!ok)
		failures++;
	printf("%s - ", ok ? "ok  " : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void check_str(const char *got, const char *want, const char *what)
{
	int ok = got && want && strcmp(got, want) == 0;

	if (ok)
		check(1, "%s: \"%s\"", what, want);
	else
		check(0, "%s: got \"%s\", want \"%s\"", what,
		      got ? got : "(null)", want);
}

/* ---- the synthetic snapshot ---- */

#define QFUNC	 "parse_\"quoted\",x"
#define LONGFUNC "zlib_alloc_with_a_very_long_function_name_that_goes_on"

#define FR(ip_, func_, loc_, mod_)                                             \
	{                                                                      \
		.ip = ip_, .func = func_, .location = loc_, .module = mod_     \
	}

static const struct snap_frame fr_a1[] = {
	FR(0x1001, QFUNC, "parse.c:10", "server"),
	FR(0x1002, "handle_request", "server.c:20", "server"),
	FR(0x1003, "main", "server.c:5", "server"),
};
static const struct snap_frame fr_b2[] = {
	FR(0x2001, "make_buffer", "buf.c:7", "server"),
	FR(0x2002, "serve", "server.c:30", "server"),
	FR(0x2003, "main", "server.c:5", "server"),
};
static const struct snap_frame fr_c3[] = {
	FR(0x3001, LONGFUNC, "[libz.so.1+0x1a2b]", "libz.so.1"),
	FR(0x3002, "main", "server.c:5", "server"),
};
static const struct snap_frame fr_d4[] = {
	FR(0x4001, "freed_all", "f.c:1", "server"),
	FR(0x4002, "main", "server.c:5", "server"),
};
static const struct snap_frame fr_e5[] = {
	FR(0x5001, "worker_loop", "worker.c:50", "worker"),
	FR(0x5002, "thread_start", "worker.c:2", "worker"),
};

static struct snap_site base_sites[6];
static struct snap_proc base_procs[2];
static struct snapshot snap;

static void site_init(struct snap_site *s, uint32_t pid, const char *id,
		      int64_t bytes, int64_t count, double growth, double arate,
		      double age, const char *func, const struct snap_frame *fr,
		      int nfr)
{
	memset(s, 0, sizeof(*s));
	s->pid = pid;
	s->stack_id = strtoull(id, NULL, 16);
	snprintf(s->site_id, sizeof(s->site_id), "%s", id);
	s->outstanding_bytes = bytes;
	s->outstanding_allocs = count;
	s->allocs = (uint64_t)count + 7;
	s->frees = 7;
	s->alloc_bytes = (uint64_t)bytes + 700;
	s->free_bytes = 700;
	s->growth_bps = growth;
	s->alloc_rate = arate;
	s->free_rate = 0;
	s->age_s = age;
	s->function = func;
	s->location = nfr ? fr[0].location : "";
	s->frames = fr;
	s->nframes = nfr;
}

static void build_snapshot(void)
{
	struct snap_proc *p;

	site_init(&base_sites[0], 100, "00000000000000a1", 6000, 3, 5.0, 1, 10,
		  QFUNC, fr_a1, 3);
	base_sites[0].gc_frees = 3; /* of its 7 frees */
	site_init(&base_sites[1], 100, "00000000000000b2", 3000, 10, -1.0, 2,
		  20, "make_buffer", fr_b2, 3);
	base_sites[1].via = "via serve"; /* as if another make_buffer row */
	site_init(&base_sites[2], 100, "00000000000000c3", 1000, 10, 100.0, 3,
		  30, LONGFUNC, fr_c3, 2);
	site_init(&base_sites[3], 100, "00000000000000d4", 0, 0, 0.0, 4, 40,
		  "freed_all", fr_d4, 2);
	site_init(&base_sites[4], 200, "00000000000000e5", 2048, 2, NAN, 5, 50,
		  "worker_loop", fr_e5, 2);
	site_init(&base_sites[5], 200, "00000000000000f6", 512, 1, 2.0, 6, 60,
		  "[unknown]", NULL, 0);

	memset(base_procs, 0, sizeof(base_procs));
	p = &base_procs[0];
	p->pid = 100;
	p->alive = true;
	snprintf(p->comm, sizeof(p->comm), "server");
	p->outstanding_bytes = 10000;
	p->outstanding_allocs = 23;
	p->allocs = 51;
	p->frees = 28;
	p->alloc_bytes = 12800;
	p->free_bytes = 2800;
	p->delta_bytes = 1536;
	p->growth_bps = 153.6;
	p->alloc_rate = 10;
	p->free_rate = 9.5;
	p->rss_bytes = 4 << 20;
	p->peak_bytes = 286000000;
	p->interval_peak_bytes = 250000000;
	p->has_resources = true;
	p->open_fds = 17;
	p->threads = 3;
	p->fds_growth = 9;
	p->has_gc = true;
	p->gc_collections = 12;
	snprintf(p->not_seen, sizeof(p->not_seen), "%s",
		 "Python frames (CPython 3.16, \"new\"); inlined calls");
	p->gc_frees = 5;
	p->nsites = 4;
	p = &base_procs[1];
	p->pid = 200;
	p->alive = false;
	snprintf(p->comm, sizeof(p->comm), "worker");
	p->outstanding_bytes = 2560;
	p->outstanding_allocs = 3;
	p->delta_bytes = -512;
	p->rss_bytes = 0;
	p->nsites = 2;

	memset(&snap, 0, sizeof(snap));
	snap.wall.tv_sec = 1795268701; /* 2026-11-21T13:45:01Z */
	snap.wall.tv_nsec = 250000000;
	snap.elapsed_s = 12.5;
	snap.interval_s = 1.0;
	snap.seq = 13;
	for (int i = 0; i < MT_CNT_NR; i++)
		snap.lost[i] = (uint64_t)(i + 1) * 11;
	snap.recursion_misses = 3;
	snap.lost_total = 42;
	snap.nprocs = 2;
	snap.procs = base_procs;
	snap.nsites = 6;
	snap.sites = base_sites;
	snap.outstanding_bytes = 12560;
	/* Not sorted by size, to show CSV picks its top sites on its own. */
	snapshot_sort_sites(snap.sites, snap.nsites, SORT_FUNCTION, false);
}

/* ---- helpers ---- */

static char *slurp(const char *path, size_t *lenp)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f)
		return NULL;
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap + 1);
			if (!buf)
				abort();
		}
		n = fread(buf + len, 1, cap - len, f);
		if (!n)
			break;
		len += n;
	}
	fclose(f);
	buf[len] = '\0';
	if (lenp)
		*lenp = len;
	return buf;
}

#define MAXREC 64
#define MAXFLD 40

struct csv_doc {
	int nrec;
	int nfld[MAXREC];
	char *fld[MAXREC][MAXFLD];
};

/* A strict RFC 4180 reader (with "\n" line ends); -1 on malformed input. */
static int csv_parse(const char *t, struct csv_doc *d)
{
	char *cur;
	size_t cap = strlen(t) + 1, n = 0;
	int quoted = 0, after_quote = 0;

	memset(d, 0, sizeof(*d));
	cur = malloc(cap);
	if (!cur)
		abort();
	while (*t) {
		char c = *t++;

		if (quoted) {
			if (c == '"') {
				if (*t == '"') {
					cur[n++] = '"';
					t++;
				} else {
					quoted = 0;
					after_quote = 1;
				}
			} else {
				cur[n++] = c;
			}
			continue;
		}
		if (c == '"' && n == 0 && !after_quote) {
			quoted = 1;
			continue;
		}
		if (c == ',' || c == '\n') {
			if (d->nrec >= MAXREC || d->nfld[d->nrec] >= MAXFLD)
				return -1;
			cur[n] = '\0';
			d->fld[d->nrec][d->nfld[d->nrec]++] = strdup(cur);
			n = 0;
			after_quote = 0;
			if (c == '\n')
				d->nrec++;
			continue;
		}
		/* Text after a closing quote, a stray quote, or a CR. */
		if (after_quote || c == '"' || c == '\r')
			return -1;
		cur[n++] = c;
	}
	free(cur);
	/* The last record must be complete. */
	return quoted || n ? -1 : 0;
}

static void csv_doc_free(struct csv_doc *d)
{
	for (int r = 0; r < d->nrec; r++)
		for (int i = 0; i < d->nfld[r]; i++)
			free(d->fld[r][i]);
}

enum {
	C_TS,
	C_ELAPSED,
	C_PID,
	C_COMM,
	C_SCOPE,
	C_SITE,
	C_FUNC,
	C_LOC,
	C_STACK,
	C_OUT,
	C_OUTN,
	C_ALLOCS,
	C_FREES,
	C_ABYTES,
	C_RSS,
	C_FBYTES,
	C_GROWTH,
	C_ARATE,
	C_FRATE,
	C_LOST,
	C_UNKNOWN,
	C_SCALE,
	C_MMAP,
	C_MIN_SIZE,
	C_DEPTH,
	C_FDS,
	C_THREADS,
	C_GC_FREES,
	C_GC_COLLECTIONS,
	C_TOUCHED,
	C_NOT_SEEN,
	C_PEAK,
	C_INTERVAL_PEAK,
	C_NR
};

static const char *header =
	"timestamp,elapsed_s,pid,comm,scope,site_id,function,location,stack,"
	"outstanding_bytes,outstanding_allocs,allocs,frees,alloc_bytes,"
	"rss_bytes,free_bytes,growth_bps,alloc_rate,free_rate,lost_events,"
	"unknown_frees,scale,mmap_bytes,min_size,depth,open_fds,threads,"
	"gc_frees,gc_collections,touched_bytes,not_seen,peak_bytes,"
	"interval_peak_bytes";

static char tmpdir[] = "/tmp/memtop-test-views-XXXXXX";

static char *tpath(const char *name)
{
	static char buf[4][256];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
	return buf[k];
}

/* ---- the tests ---- */

static void test_csv_field(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"plain", "plain"},
		{"", ""},
		{"a,b", "\"a,b\""},
		{"say \"hi\"", "\"say \"\"hi\"\"\""},
		{"\"", "\"\"\"\""},
		{"line\nbreak", "\"line\nbreak\""},
		{"cr\rhere", "\"cr\rhere\""},
		{"semi;colon and space", "semi;colon and space"},
		{QFUNC, "\"parse_\"\"quoted\"\",x\""},
	};
	char *buf;
	size_t len;
	FILE *m;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		m = open_memstream(&buf, &len);
		csv_field(m, cases[i].in);
		fclose(m);
		check_str(buf, cases[i].out, "csv_field");
		free(buf);
	}
	m = open_memstream(&buf, &len);
	csv_field(m, NULL);
	fclose(m);
	check_str(buf, "", "csv_field(NULL) writes nothing");
	free(buf);
}

static int count_scope(struct csv_doc *d, int from, int to, const char *scope)
{
	int n = 0;

	for (int r = from; r < to; r++)
		n += strcmp(d->fld[r][C_SCOPE], scope) == 0;
	return n;
}

static void test_csv(void)
{
	struct csv_writer *w;
	struct csv_doc d;
	const char *path = tpath("out.csv");
	char *text, *nl;
	size_t len;
	int err, r, all_ok;

	err = csv_open(&w, path);
	check(err == 0, "csv_open(%s) = %d", path, err);
	if (err)
		return;
	err = csv_write(w, &snap, 0);
	check(err == 0, "csv_write top=0 = %d", err);
	err = csv_write(w, &snap, 2);
	check(err == 0, "csv_write top=2 = %d", err);
	err = csv_close(w);
	check(err == 0, "csv_close = %d", err);

	text = slurp(path, &len);
	check(text != NULL, "read back %s", path);
	if (!text)
		return;
	nl = strchr(text, '\n');
	check(nl && (size_t)(nl - text) == strlen(header) &&
		      strncmp(text, header, strlen(header)) == 0,
	      "header is exact");
	check(strstr(text, header + 1) == text + 1 && !strstr(text + 1, header),
	      "header written once");
	check(!strchr(text, '\r'), "lines end in \\n, no \\r");
	check(len > 0 && text[len - 1] == '\n', "file ends with a newline");
	check(strstr(text, "\"main;handle_request;parse_\"\"quoted\"\",x\"") !=
		      NULL,
	      "stack field quoted with doubled quotes");

	err = csv_parse(text, &d);
	check(err == 0, "file parses as RFC 4180");
	if (err) {
		free(text);
		return;
	}
	check(d.nrec == 1 + (2 + 6) + (2 + 2 + 2),
	      "record count %d = header + 8 (top=0) + 6 (top=2)", d.nrec);
	all_ok = 1;
	for (r = 0; r < d.nrec; r++)
		all_ok &= d.nfld[r] == C_NR;
	check(all_ok, "every record has %d fields", C_NR);
	all_ok = 1;
	for (r = 1; r < d.nrec; r++) {
		all_ok &= !strcmp(d.fld[r][C_TS], "2026-11-21T13:45:01.250Z");
		all_ok &= !strcmp(d.fld[r][C_ELAPSED], "12.500");
		all_ok &= !strcmp(d.fld[r][C_LOST], "42");
		all_ok &= !strcmp(d.fld[r][C_UNKNOWN], "66");
	}
	check(all_ok,
	      "timestamp, elapsed, lost_events, unknown_frees on every row");
	check(count_scope(&d, 1, 9, "process") == 2 &&
		      count_scope(&d, 1, 9, "site") == 6,
	      "sample 1: 2 process rows, 6 site rows");
	check(count_scope(&d, 9, d.nrec, "process") == 2 &&
		      count_scope(&d, 9, d.nrec, "site") == 4,
	      "sample 2 (top=2): 2 process rows, 4 site rows");

	/* Sample 1: process 100 first, then its sites by outstanding bytes. */
	check(!strcmp(d.fld[1][C_SCOPE], "process") &&
		      !strcmp(d.fld[1][C_PID], "100") &&
		      !strcmp(d.fld[1][C_COMM], "server") &&
		      !strcmp(d.fld[1][C_RSS], "4194304") &&
		      !strcmp(d.fld[1][C_OUT], "10000") &&
		      !d.fld[1][C_SITE][0] && !d.fld[1][C_STACK][0] &&
		      !d.fld[1][C_FUNC][0] && !d.fld[1][C_LOC][0],
	      "process row: pid, comm, rss, empty site columns");
	check(!strcmp(d.fld[1][C_GROWTH], "153.600") &&
		      !strcmp(d.fld[1][C_FRATE], "9.500"),
	      "rates with 3 decimals");
	check(!strcmp(d.fld[2][C_SITE], "00000000000000a1") &&
		      !strcmp(d.fld[3][C_SITE], "00000000000000b2") &&
		      !strcmp(d.fld[4][C_SITE], "00000000000000c3") &&
		      !strcmp(d.fld[5][C_SITE], "00000000000000d4"),
	      "site rows of pid 100 by outstanding bytes");
	check_str(d.fld[2][C_FUNC], QFUNC, "function with comma and quote");
	check_str(d.fld[2][C_STACK], "main;handle_request;" QFUNC,
		  "stack outermost first");
	check_str(d.fld[2][C_LOC], "parse.c:10", "location");
	check(!d.fld[2][C_RSS][0], "site row has empty rss_bytes");
	check(!strcmp(d.fld[1][C_FDS], "17") &&
		      !strcmp(d.fld[1][C_THREADS], "3"),
	      "process row: open_fds, threads");
	check(!d.fld[2][C_FDS][0] && !d.fld[2][C_THREADS][0],
	      "site row: empty open_fds, threads");
	check(!strcmp(d.fld[1][C_GC_FREES], "5") &&
		      !strcmp(d.fld[1][C_GC_COLLECTIONS], "12"),
	      "process row: gc_frees, gc_collections");
	check(!strcmp(d.fld[2][C_GC_FREES], "3") &&
		      !d.fld[2][C_GC_COLLECTIONS][0],
	      "site row: gc_frees, empty gc_collections");
	check(!strcmp(d.fld[6][C_GC_FREES], "0") &&
		      !d.fld[6][C_GC_COLLECTIONS][0],
	      "process without a collector: gc_frees 0, empty collections");
	check(!d.fld[6][C_FDS][0] && !d.fld[6][C_THREADS][0],
	      "process without resources read: empty open_fds, threads");
	check_str(d.fld[1][C_NOT_SEEN],
		  "Python frames (CPython 3.16, \"new\"); inlined calls",
		  "process row: not_seen, quoted");
	check(!d.fld[2][C_NOT_SEEN][0] && !d.fld[6][C_NOT_SEEN][0],
	      "site row and a fully seen process: empty not_seen");
	check(!strcmp(d.fld[1][C_PEAK], "286000000") &&
		      !strcmp(d.fld[1][C_INTERVAL_PEAK], "250000000"),
	      "process row: peak_bytes, interval_peak_bytes (last columns)");
	check(!d.fld[2][C_PEAK][0] && !d.fld[2][C_INTERVAL_PEAK][0],
	      "site row: empty peaks");
	check_str(d.fld[2][C_OUT], "6000", "site outstanding_bytes");
	check_str(d.fld[2][C_ABYTES], "6700", "site alloc_bytes");
	check_str(d.fld[2][C_FBYTES], "700", "site free_bytes");
	check(!strcmp(d.fld[6][C_SCOPE], "process") &&
		      !strcmp(d.fld[6][C_PID], "200"),
	      "process 200 follows the sites of 100");
	check_str(d.fld[7][C_SITE], "00000000000000e5", "pid 200 largest site");
	check(!d.fld[7][C_GROWTH][0], "NaN growth written as an empty field");
	check(!strcmp(d.fld[8][C_SITE], "00000000000000f6") &&
		      !d.fld[8][C_STACK][0],
	      "site without frames has an empty stack");

	/* Sample 2: top=2 per process keeps the largest two. */
	check(!strcmp(d.fld[10][C_SITE], "00000000000000a1") &&
		      !strcmp(d.fld[11][C_SITE], "00000000000000b2") &&
		      !strcmp(d.fld[12][C_SCOPE], "process"),
	      "top=2 keeps a1, b2 for pid 100");
	csv_doc_free(&d);
	free(text);
}

static void test_csv_errors(void)
{
	struct csv_writer *w = NULL;
	const char *link = tpath("link.csv");
	struct rlimit old, lim;
	struct stat st;
	off_t good;
	char *text;
	int err;

	check(symlink(tpath("target.csv"), link) == 0, "make a symlink");
	err = csv_open(&w, link);
	check(err == -ELOOP, "csv_open refuses a symlink: %d", err);
	check(access(tpath("target.csv"), F_OK) != 0,
	      "symlink target not created");
	err = csv_open(&w, tpath("no/such/dir.csv"));
	check(err == -ENOENT, "csv_open in a missing directory: %d", err);
	err = folded_write(link, &snap);
	check(err == -ELOOP, "folded_write refuses a symlink: %d", err);

	if (access("/dev/full", W_OK) == 0) {
		err = csv_open(&w, "/dev/full");
		check(err == -ENOSPC, "csv_open(/dev/full) = %d", err);
		err = folded_write("/dev/full", &snap);
		check(err == -ENOSPC, "folded_write(/dev/full) = %d", err);
	}

	/* A file-size limit makes the second sample fail half-way. */
	err = csv_open(&w, tpath("limit.csv"));
	check(err == 0, "csv_open(limit.csv) = %d", err);
	if (err)
		return;
	err = csv_write(w, &snap, 0);
	check(err == 0, "first sample = %d", err);
	stat(tpath("limit.csv"), &st);
	good = st.st_size;
	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	lim.rlim_cur = (rlim_t)good + 100;
	setrlimit(RLIMIT_FSIZE, &lim);
	err = csv_write(w, &snap, 0);
	setrlimit(RLIMIT_FSIZE, &old);
	check(err == -EFBIG, "write past the size limit = %d", err);
	stat(tpath("limit.csv"), &st);
	check(st.st_size == good,
	      "partial sample cut off (size %lld, last good %lld)",
	      (long long)st.st_size, (long long)good);
	err = csv_write(w, &snap, 1);
	check(err == 0, "writing resumes after the error = %d", err);
	err = csv_close(w);
	check(err == 0, "csv_close = %d", err);
	text = slurp(tpath("limit.csv"), NULL);
	if (text) {
		struct csv_doc d;

		err = csv_parse(text, &d);
		check(err == 0 && d.nrec == 1 + 8 + 4,
		      "file still valid CSV with %d records", d.nrec);
		csv_doc_free(&d);
		free(text);
	}
	stat(tpath("out.csv"), &st);
	check((st.st_mode & 0777) == (0644 & ~(mode_t)022) ||
		      (st.st_mode & 0777) == 0644,
	      "csv file mode %o", st.st_mode & 0777);
}

static void test_folded(void)
{
	const char *path = tpath("out.folded");
	int64_t sum100 = 0, sum200 = 0, v;
	char *text, *line, *save, *sp;
	int err, n = 0, bad = 0, saw_q = 0, saw_unknown = 0;

	err = folded_write(path, &snap);
	check(err == 0, "folded_write = %d", err);
	text = slurp(path, NULL);
	check(text != NULL, "read back folded");
	if (!text)
		return;
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		n++;
		sp = strrchr(line, ' ');
		if (!sp) {
			bad++;
			continue;
		}
		v = strtoll(sp + 1, NULL, 10);
		if (!strncmp(line, "server-100;", 11))
			sum100 += v;
		else if (!strncmp(line, "worker-200;", 11))
			sum200 += v;
		else
			bad++;
		if (!strcmp(line,
			    "server-100;main;handle_request;" QFUNC " 6000"))
			saw_q = 1;
		if (!strcmp(line, "worker-200;[unknown] 512"))
			saw_unknown = 1;
		if (strstr(line, "freed_all") || strstr(line, ".c:"))
			bad++;
	}
	check(n == 5, "5 folded lines (zero sites left out): %d", n);
	check(!bad, "every line is comm-pid;frames <bytes>, bare names");
	check(saw_q, "stack outermost first, same frames as CSV");
	check(saw_unknown, "site without frames under its placeholder");
	check(sum100 == base_procs[0].outstanding_bytes,
	      "pid 100 lines sum to %lld", (long long)sum100);
	check(sum200 == base_procs[1].outstanding_bytes,
	      "pid 200 lines sum to %lld", (long long)sum200);
	free(text);

	/* One process: no comm-pid prefix. */
	{
		struct snapshot one = snap;
		struct snap_site sites[6];
		int k = 0;

		for (int i = 0; i < snap.nsites; i++)
			if (snap.sites[i].pid == 100)
				sites[k++] = snap.sites[i];
		one.nprocs = 1;
		one.procs = &base_procs[0];
		one.sites = sites;
		one.nsites = k;
		snapshot_sort_sites(sites, k, SORT_OUTSTANDING, false);
		err = folded_write(path, &one);
		text = slurp(path, NULL);
		check(err == 0 && text &&
			      !strncmp(text,
				       "main;handle_request;" QFUNC " 6000\n"
				       "main;serve;make_buffer 3000\n"
				       "main;" LONGFUNC " 1000\n",
				       strlen(text) + 1),
		      "single process: no prefix, exact lines");
		free(text);
	}
}

static void test_fmt_bytes(void)
{
	static const struct {
		double v;
		int unit;
		const char *want;
	} cases[] = {
		{0, 0, "0 B"},
		{512, 0, "512 B"},
		{1023, 0, "1023 B"},
		{1024, 0, "1.0 KiB"},
		{1536, 0, "1.5 KiB"},
		{12.0 * 1024 * 1024, 0, "12.0 MiB"},
		{3.5 * 1024 * 1024 * 1024, 0, "3.5 GiB"},
		{5120.0 * 1024 * 1024 * 1024, 0, "5120.0 GiB"},
		{1048575, 0, "1.0 MiB"},
		{-1536, 0, "-1.5 KiB"},
		{-512, 0, "-512 B"},
		{-0.2, 0, "0 B"},
		{12.4, 0, "12 B"},
		{1536, 1, "1536 B"},
		{512, 2, "0.5 KiB"},
		{3 * 1024 * 1024, 2, "3072.0 KiB"},
		{1024 * 1024, 3, "1.0 MiB"},
		{1024 * 1024, 4, "0.0 GiB"},
		{2048, 9, "2.0 KiB"},
	};
	char buf[32], small[4];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fmt_bytes(buf, sizeof(buf), cases[i].v, cases[i].unit);
		check_str(buf, cases[i].want, "fmt_bytes");
	}
	memset(small, 'x', sizeof(small));
	fmt_bytes(small, sizeof(small), 1536, 0);
	check(small[3] == '\0', "fmt_bytes truncates to the buffer");
}

static void test_fmt_iso8601(void)
{
	struct timespec ts = {1795268701, 250000000};
	char buf[40], small[11];

	check_str(fmt_iso8601(buf, sizeof(buf), &ts),
		  "2026-11-21T13:45:01.250Z", "fmt_iso8601");
	ts = (struct timespec){0, 999999999};
	check_str(fmt_iso8601(buf, sizeof(buf), &ts),
		  "1970-01-01T00:00:00.999Z", "fmt_iso8601 truncates to ms");
	ts = (struct timespec){1795268701, 1500000000};
	check_str(fmt_iso8601(buf, sizeof(buf), &ts),
		  "2026-11-21T13:45:02.500Z", "fmt_iso8601 normalises tv_nsec");
	ts = (struct timespec){1795268701, 250000000};
	fmt_iso8601(small, sizeof(small), &ts);
	check(strlen(small) < sizeof(small), "fmt_iso8601 small buffer: \"%s\"",
	      small);
}

static void test_sort_parse(void)
{
	static const struct {
		const char *name;
		int want;
	} cases[] = {
		{"outstanding", SORT_OUTSTANDING},
		{"bytes", SORT_OUTSTANDING},
		{"MEM", SORT_OUTSTANDING},
		{"count", SORT_COUNT},
		{"Growth", SORT_GROWTH},
		{"alloc", SORT_ALLOC_RATE},
		{"alloc-rate", SORT_ALLOC_RATE},
		{"free", SORT_FREE_RATE},
		{"FREE-RATE", SORT_FREE_RATE},
		{"avg", SORT_AVG},
		{"age", SORT_AGE},
		{"function", SORT_FUNCTION},
		{"bogus", -EINVAL},
		{"", -EINVAL},
		{"outstanding ", -EINVAL},
		{"alloc_rate", -EINVAL},
	};
	enum sort_field f;
	int err, ok = 1;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		f = SORT_NR;
		err = sort_field_parse(cases[i].name, &f);
		if (cases[i].want < 0)
			check(err == -EINVAL,
			      "sort_field_parse(\"%s\") = -EINVAL",
			      cases[i].name);
		else
			check(err == 0 && (int)f == cases[i].want,
			      "sort_field_parse(\"%s\") = %s", cases[i].name,
			      sort_field_name(f));
	}
	check(sort_field_parse(NULL, &f) == -EINVAL, "sort_field_parse(NULL)");
	for (int i = 0; i < SORT_NR; i++) {
		ok &= sort_field_parse(sort_field_name(i), &f) == 0 &&
		      (int)f == i;
	}
	check(ok, "sort_field_name round-trips through sort_field_parse");
	check_str(sort_field_name(SORT_ALLOC_RATE), "alloc", "canonical name");
}

static void order_of(const struct snap_site *s, int n, char *buf)
{
	buf[0] = '\0';
	for (int i = 0; i < n; i++) {
		strcat(buf, s[i].site_id + 14);
		if (i < n - 1)
			strcat(buf, " ");
	}
}

static void test_sort_sites(void)
{
	static const struct {
		enum sort_field f;
		bool reverse;
		const char *want;
	} cases[] = {
		{SORT_OUTSTANDING, false, "a1 b2 e5 c3 f6 d4"},
		{SORT_OUTSTANDING, true, "d4 f6 c3 e5 b2 a1"},
		{SORT_COUNT, false, "b2 c3 a1 e5 f6 d4"},
		{SORT_GROWTH, false, "c3 a1 f6 d4 b2 e5"},
		{SORT_ALLOC_RATE, false, "f6 e5 d4 c3 b2 a1"},
		{SORT_FREE_RATE, false, "a1 b2 e5 c3 f6 d4"},
		{SORT_AVG, false, "a1 e5 f6 b2 c3 d4"},
		{SORT_AGE, false, "f6 e5 d4 c3 b2 a1"},
		{SORT_FUNCTION, false, "f6 d4 b2 a1 e5 c3"},
		{SORT_FUNCTION, true, "c3 e5 a1 b2 d4 f6"},
	};
	struct snap_site s[6], t[3];
	char got[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(s, base_sites, sizeof(s));
		snapshot_sort_sites(s, 6, cases[i].f, cases[i].reverse);
		order_of(s, 6, got);
		check(!strcmp(got, cases[i].want), "sort %s%s: %s (want %s)",
		      sort_field_name(cases[i].f),
		      cases[i].reverse ? " reversed" : "", got, cases[i].want);
	}
	check(s[5].frames == fr_a1 || s[0].frames == fr_c3,
	      "frames move with their site");

	/* Full ties fall back to site_id, in any starting order. */
	memset(t, 0, sizeof(t));
	snprintf(t[0].site_id, sizeof(t[0].site_id), "00000000000000z3");
	snprintf(t[1].site_id, sizeof(t[1].site_id), "00000000000000z1");
	snprintf(t[2].site_id, sizeof(t[2].site_id), "00000000000000z2");
	for (int i = 0; i < 3; i++)
		t[i].function = "same";
	snapshot_sort_sites(t, 3, SORT_COUNT, false);
	order_of(t, 3, got);
	check_str(got, "z1 z2 z3", "ties broken by site_id");
}

static int count_rows(const char *text)
{
	const char *p = strstr(text, "\n    PID OUTSTANDING");
	int n = 0;

	if (!p)
		return -1;
	p = strchr(p + 1, '\n') + 1;
	while (*p && *p != '\n') {
		n++;
		p = strchr(p, '\n') + 1;
	}
	return n;
}

static void test_batch(void)
{
	static const char *labels[] = {
		"live map full 11", "site map full 22",	    "stack map full 33",
		"stack failed 44",  "inflight 55",	    "proc map full 77",
		"depth reset 88",   "memptr unreadable 99", "recursion 3",
		"unknown frees 66", "lost: 42 (",
	};
	char *buf, *hdr, *row, *p, modes[160];
	size_t len;
	FILE *m;
	int ok = 1;

	m = open_memstream(&buf, &len);
	view_batch_print(m, &snap, 3);
	fclose(m);
	fputs(buf, stdout);
	check(strstr(buf, "2026-11-21T13:45:01.250Z") != NULL, "batch: time");
	check(strstr(buf, "PID 100 server: outstanding 9.8 KiB in 23 allocs "
			  "(+1.5 KiB), alloc 10.0/s, free 9.5/s, RSS 4.0 MiB, "
			  "mmap 0 B, peak 272.8 MiB (interval 238.4 MiB), "
			  "files 17 (+9), threads 3 (+0), gc 12 "
			  "collections (+0), freed 0 B\n") != NULL,
	      "batch: process line");
	check(strstr(buf,
		     "\n  not seen: Python frames (CPython 3.16, \"new\"); "
		     "inlined calls\n") != NULL,
	      "batch: what memtop cannot see, under its process");
	check(strstr(buf, "PID 200 worker: outstanding 2.5 KiB in 3 allocs "
			  "(-512 B)") != NULL &&
		      strstr(buf, "[exited]\n") != NULL,
	      "batch: exited process marked");
	for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
		ok &= strstr(buf, labels[i]) != NULL;
	check(ok, "batch: every lost counter shown");
	check(count_rows(buf) == 3, "batch: top=3 prints 3 rows");

	check(len > 2 && buf[len - 1] == '\n' && buf[len - 2] == '\n',
	      "batch: ends with a blank line");

	free(buf);

	m = open_memstream(&buf, &len);
	view_batch_print(m, &snap, 0);
	fclose(m);
	check(count_rows(buf) == 6, "batch: top=0 prints every row");
	check(strstr(buf, " AVG  GC% FUNCTION") != NULL &&
		      strstr(buf, "   43 parse_") != NULL,
	      "batch: GC%% column, 3 of 7 frees by the collector = 43");
	check(strstr(buf, " " LONGFUNC " ") != NULL,
	      "batch into a pipe or file: a long function printed whole");
	check(!strstr(buf, " \n"), "batch: no trailing blanks");
	check(strstr(buf, " make_buffer") &&
		      strstr(buf, " buf.c:7 via serve\n") != NULL,
	      "batch: what tells a row apart follows its location");
	/* LOCATION starts in the same column on every row whose function
	 * fits the column. */
	hdr = strstr(buf, "    PID OUTSTANDING");
	p = strstr(hdr, "LOCATION");
	row = strchr(hdr, '\n') + 1;
	ok = 1;
	for (int i = 0; i < snap.nsites; i++) {
		const char *loc = snap.sites[i].location;
		char *at = strstr(row, loc);

		if (*loc && strlen(snap.sites[i].function) <= 32)
			ok &= at && at - row == p - hdr;
		row = strchr(row, '\n') + 1;
	}
	check(ok, "batch: columns aligned");
	free(buf);

	/* The cheaper modes label the sample. */
	check(!*snapshot_modes(&snap, modes, sizeof(modes)),
	      "modes: none by default");
	snap.scale = 10;
	snap.min_size = 1024;
	snap.depth = 4;
	m = open_memstream(&buf, &len);
	view_batch_print(m, &snap, 1);
	fclose(m);
	check(strstr(buf,
		     "  estimated (1 in 10 sampled), blocks >= 1024 B only, "
		     "stacks cut at 4 frames\n") != NULL,
	      "batch: --sample, --min-size and --depth labelled");
	free(buf);
	snap.scale = 1;
	snap.min_size = 0;
	snap.depth = 0;
}

static void cleanup(void)
{
	static const char *names[] = {"out.csv", "limit.csv", "link.csv",
				      "out.folded", "growth.csv"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(tpath(names[i]));
	rmdir(tmpdir);
}

/*
 * Growth mode's CSV and batch: allocation columns empty, touched_bytes on
 * process and site rows, growth_bps as TOUCHED/s; the label on batch
 * samples; exact mode leaves touched_bytes empty (the first test).
 */
static void test_growth_outputs(void)
{
	struct snapshot g = snap;
	struct snap_proc gp = base_procs[0];
	struct snap_site gs = base_sites[0];
	struct csv_writer *w;
	struct csv_doc d;
	const char *path = tpath("growth.csv");
	char *text, buf[8192];
	FILE *f;
	int err;

	gp.growth = true;
	gp.touched_bytes = 40960;
	gp.returned_bytes = 8192;
	gp.growth_bps = 4096;
	gp.rss_change = 36864;
	for (int i = 0; i < snap.nsites; i++)
		if (!strcmp(snap.sites[i].site_id, "00000000000000a1"))
			gs = snap.sites[i];
	gs.touched = true;
	gs.touched_bytes = 40960;
	gs.outstanding_bytes = 40960;
	gs.growth_bps = 4096;
	gs.via = "via handle_request"; /* as if another row shared its names */
	g.growth = true;
	g.procs = &gp;
	g.nprocs = 1;
	g.sites = &gs;
	g.nsites = 1;
	err = csv_open(&w, path);
	check(!err, "csv_open growth");
	if (err)
		return;
	check(!csv_write(w, &g, 0), "csv_write growth");
	csv_close(w);
	text = slurp(path, NULL);
	check(text && !csv_parse(text, &d), "growth CSV parses");
	if (!text)
		return;
	check(d.nrec == 3 && d.nfld[1] == C_NR && d.nfld[2] == C_NR,
	      "growth: header, process row, site row of %d fields", C_NR);
	if (d.nrec == 3) {
		check_str(d.fld[1][C_TOUCHED], "40960",
			  "process touched_bytes");
		check_str(d.fld[2][C_TOUCHED], "40960", "site touched_bytes");
		check_str(d.fld[1][C_RSS], "4194304", "process rss_bytes kept");
		check_str(d.fld[2][C_GROWTH], "4096.000",
			  "site growth_bps = TOUCHED/s");
		check(!d.fld[1][C_OUT][0] && !d.fld[1][C_ALLOCS][0] &&
			      !d.fld[2][C_OUT][0] && !d.fld[2][C_ABYTES][0] &&
			      !d.fld[2][C_ARATE][0],
		      "growth rows leave the allocation columns empty");
		check_str(d.fld[2][C_STACK], "main;handle_request;" QFUNC,
			  "growth site stack");
	}
	csv_doc_free(&d);
	free(text);
	f = fmemopen(buf, sizeof(buf), "w");
	if (!f)
		return;
	view_batch_print(f, &g, 0);
	fclose(f);
	check(strstr(buf, SNAP_GROWTH_LABEL) != NULL, "batch: growth label");
	check(strstr(buf, "touched 40.0 KiB") &&
		      strstr(buf, "returned 8.0 KiB"),
	      "batch: process line says touched and returned");
	check(strstr(buf, "TOUCHED/s FUNCTION") && !strstr(buf, "OUTSTANDING"),
	      "batch: TOUCHED table, no OUTSTANDING table");
	check(strstr(buf, " via handle_request\n") != NULL,
	      "batch: what tells a growth row apart follows its location");
}

/* Objects by type: CSV rows of scope "type" and the batch section. */
static void test_types(void)
{
	static const struct snap_type_site ts[] = {
		{0xa1, 300, 14400, "Server.serve_client", "py_server.py:55"},
	};
	struct snap_type ty[] = {
		{.pid = 100,
		 .name = "Connection",
		 .objects = 300,
		 .bytes = 14400,
		 .growth_objs = 29.5,
		 .growth_bps = 1416,
		 .delta_objects = 300,
		 .nsites = 1,
		 .sites = ts},
		{.pid = 100, .name = "dict", .objects = 2, .bytes = 400},
	};
	struct snapshot s = snap;
	struct snap_proc pr[2];
	struct csv_writer *w;
	struct csv_doc d;
	char *buf, *text;
	size_t len;
	FILE *m;
	int nt = 0, r;

	memcpy(pr, snap.procs, sizeof(pr));
	pr[0].has_types = true;
	pr[0].obj_typed = 302;
	pr[0].obj_untyped = 7;
	pr[0].obj_unread = 1;
	pr[0].bad_types = 2;
	s.procs = pr;
	s.types_on = true;
	s.types = ty;
	s.ntypes = 2;
	check(csv_open(&w, tpath("types.csv")) == 0 &&
		      csv_write(w, &s, 0) == 0 && csv_close(w) == 0,
	      "types: csv written");
	text = slurp(tpath("types.csv"), NULL);
	if (text && !csv_parse(text, &d)) {
		for (r = 1; r < d.nrec; r++) {
			if (strcmp(d.fld[r][C_SCOPE], "type"))
				continue;
			if (!nt++)
				check(!strcmp(d.fld[r][C_PID], "100") &&
					      !strcmp(d.fld[r][C_FUNC],
						      "Connection") &&
					      !strcmp(d.fld[r][C_OUT],
						      "14400") &&
					      !strcmp(d.fld[r][C_OUTN],
						      "300") &&
					      !strcmp(d.fld[r][C_GROWTH],
						      "1416.000") &&
					      d.nfld[r] == C_NR,
				      "type row: function = type, outstanding "
				      "= objects and bytes, growth");
		}
		check(nt == 2, "two type rows (%d)", nt);
		csv_doc_free(&d);
	} else {
		check(0, "types csv parses");
	}
	free(text);
	m = open_memstream(&buf, &len);
	view_batch_print(m, &s, 0);
	fclose(m);
	check(strstr(buf, "TYPES PID 100: 302 objects named, 7 untyped, 1 not "
			  "read yet, 2 type pointers refused") != NULL,
	      "batch: types counters");
	check(strstr(buf, "    100        300    14.1 KiB       29.5       "
			  "+300 Connection") != NULL &&
		      strstr(buf, "Server.serve_client py_server.py:55\n") !=
			      NULL,
	      "batch: type row with its top site");
	free(buf);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	build_snapshot();
	test_fmt_bytes();
	test_fmt_iso8601();
	test_sort_parse();
	test_sort_sites();
	test_csv_field();
	test_csv();
	test_growth_outputs();
	test_csv_errors();
	test_folded();
	test_batch();
	test_types();
	cleanup();
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
