/*
 * Unit tests of the command-line parser: config_parse on argv arrays, good
 * values and bad ones. Every error must be -EINVAL with a non-empty,
 * single-line message. Prints one line per check; exits non-zero if any
 * failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/types.h>
#include "config.h"

#include "check.h"

static struct config cfg;
static char err[512];

/*
 * config_parse on "memtop" followed by the NULL-terminated arguments. The
 * strings are literals: cfg points into them, and glibc's getopt may keep a
 * pointer into the previous argv between calls, so they must stay valid.
 */
static int parse(const char *first, ...)
{
	char *argv[64];
	int argc = 0;
	const char *a;
	va_list ap;

	argv[argc++] = (char *)"memtop";
	va_start(ap, first);
	for (a = first; a && argc < 63; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	memset(err, 'X', sizeof(err) - 1);
	err[sizeof(err) - 1] = '\0';
	return config_parse(&cfg, argc, argv, err, sizeof(err));
}

/* The error message escaped for printing. */
static const char *shown(const char *s)
{
	static char buf[1024];
	size_t n = 0;

	for (; *s && n < sizeof(buf) - 5; s++) {
		if ((unsigned char)*s < 0x20)
			n += snprintf(buf + n, sizeof(buf) - n, "\\x%02x",
				      (unsigned char)*s);
		else
			buf[n++] = *s;
	}
	buf[n] = '\0';
	return buf;
}

static int one_line(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20)
			return 0;
	return 1;
}

/* rc must be -EINVAL and err one non-empty line containing want (if any). */
static void expect_err(int rc, const char *want, const char *what)
{
	int ok = rc == -EINVAL && err[0] && one_line(err) &&
		 (!want || strstr(err, want));

	check(ok, "%s: rc %d, \"%s\"", what, rc, shown(err));
	if (!ok)
		printf("    (want -EINVAL and a one-line message%s%s%s)\n",
		       want ? " containing \"" : "", want ? want : "",
		       want ? "\"" : "");
}

static void test_defaults(void)
{
	int rc = parse("-p", "42", NULL);

	check(rc == CONFIG_RUN, "defaults: -p 42 runs (rc %d, %s)", rc,
	      shown(err));
	check(cfg.npids == 1 && cfg.pids[0] == 42, "defaults: pid 42");
	check(cfg.interval_s == 1.0, "defaults: interval 1 s");
	check(cfg.iterations == 0, "defaults: iterations 0 (until stopped)");
	check(!cfg.batch && !cfg.reverse && !cfg.verbose,
	      "defaults: not batch, not reversed, not verbose");
	check(cfg.csv_path == NULL && cfg.folded_path == NULL,
	      "defaults: no csv, no folded");
	check(cfg.csv_top == 100, "defaults: csv-top 100");
	check(cfg.top == 20, "defaults: top 20");
	check(cfg.sort == SORT_OUTSTANDING, "defaults: sort outstanding");
	check(cfg.max_allocs == 1ul << 20, "defaults: max-allocs 1048576");
	check(cfg.max_stacks == 1ul << 16, "defaults: max-stacks 65536");
	check(cfg.nlibs == 0, "defaults: no libs");
	check(!cfg.no_color, "defaults: colour (NO_COLOR unset)");
}

static void test_pids(void)
{
	int rc;

	rc = parse("-p", "1,2,3", NULL);
	check(rc == CONFIG_RUN && cfg.npids == 3 && cfg.pids[0] == 1 &&
		      cfg.pids[1] == 2 && cfg.pids[2] == 3,
	      "-p 1,2,3");
	rc = parse("--pid", "7", "-p", "8", NULL);
	check(rc == CONFIG_RUN && cfg.npids == 2 && cfg.pids[1] == 8,
	      "--pid 7 -p 8 accumulate");
	rc = parse("-p", "2147483647", NULL);
	check(rc == CONFIG_RUN && cfg.pids[0] == 2147483647, "-p INT_MAX");

	expect_err(parse("-p", "abc", NULL), "abc", "-p abc");
	expect_err(parse("-p", "-5", NULL), "-5", "-p -5");
	expect_err(parse("-p", "0", NULL), "0", "-p 0");
	expect_err(parse("-p", "1,x", NULL), "'x'", "-p 1,x");
	expect_err(parse("-p", "1,,2", NULL), "'1,,2'",
		   "-p 1,,2: an empty PID");
	expect_err(parse("-p", "1,", NULL), "'1,'", "-p 1,: an empty PID");
	expect_err(parse("--csv", "-b", NULL), "not the option '-b'",
		   "--csv -b: an option, not a file");
	expect_err(parse("--growth", "--types", NULL), "not with --growth",
		   "--growth --types");
	expect_err(parse("-p", "99999999999", NULL), "99999999999",
		   "-p 99999999999");
	expect_err(parse("-p", "2147483648", NULL), "2147483648",
		   "-p INT_MAX+1");
	expect_err(parse("-p", "", NULL), NULL, "-p ''");
	expect_err(parse("-p", ",", NULL), NULL, "-p ,");
	expect_err(parse("-p", "12abc", NULL), "12abc", "-p 12abc");
	expect_err(parse("-p", "1.5", NULL), "1.5", "-p 1.5");
	expect_err(parse("-p",
			 "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,"
			 "21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,"
			 "38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,"
			 "55,56,57,58,59,60,61,62,63,64,65",
			 NULL),
		   "too many", "-p with 65 PIDs");
	rc = parse("-p",
		   "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,"
		   "21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,"
		   "38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,"
		   "55,56,57,58,59,60,61,62,63,64",
		   NULL);
	check(rc == CONFIG_RUN && cfg.npids == CONFIG_MAX_PIDS,
	      "-p with %d PIDs", CONFIG_MAX_PIDS);
}

static void test_numbers(void)
{
	int rc;

	rc = parse("-p", "1", "-d", "0.5", NULL);
	check(rc == CONFIG_RUN && cfg.interval_s == 0.5, "-d 0.5");
	rc = parse("-p", "1", "--delay", "3600", NULL);
	check(rc == CONFIG_RUN && cfg.interval_s == 3600, "--delay 3600");
	expect_err(parse("-p", "1", "-d", "0", NULL), "'0'", "-d 0");
	expect_err(parse("-p", "1", "-d", "-1", NULL), "'-1'", "-d -1");
	expect_err(parse("-p", "1", "-d", "abc", NULL), "'abc'", "-d abc");
	expect_err(parse("-p", "1", "-d", "nan", NULL), "'nan'", "-d nan");
	expect_err(parse("-p", "1", "-d", "inf", NULL), "'inf'", "-d inf");
	expect_err(parse("-p", "1", "-d", "1e9", NULL), "'1e9'", "-d 1e9");
	expect_err(parse("-p", "1", "-d", "1s", NULL), "'1s'", "-d 1s");
	expect_err(parse("-p", "1", "-d", "", NULL), NULL, "-d ''");

	expect_err(parse("-p", "1", "-n", "0", NULL), "-n", "-n 0");
	expect_err(parse("-p", "1", "-n", "-3", NULL), "-n", "-n -3");
	expect_err(parse("-p", "1", "-n", "x", NULL), "-n", "-n x");
	rc = parse("-p", "1", "-n", "3", NULL);
	check(rc == CONFIG_RUN && cfg.iterations == 3, "-n 3");

	rc = parse("-p", "1", "--csv", "x", "--csv-top", "0", NULL);
	check(rc == CONFIG_RUN && cfg.csv_path && !strcmp(cfg.csv_path, "x") &&
		      cfg.csv_top == 0,
	      "--csv x --csv-top 0");
	rc = parse("-p", "1", "--csv", "-", NULL);
	check(rc == CONFIG_RUN && cfg.csv_path && !strcmp(cfg.csv_path, "-"),
	      "--csv - (stdout)");
	expect_err(parse("-p", "1", "--csv", "", NULL), "--csv", "--csv ''");
	expect_err(parse("-p", "1", "--csv-top", "-1", NULL), "--csv-top",
		   "--csv-top -1");
	rc = parse("-p", "1", "--top", "0", "--folded", "out.folded", NULL);
	check(rc == CONFIG_RUN && cfg.top == 0 && cfg.folded_path &&
		      !strcmp(cfg.folded_path, "out.folded"),
	      "--top 0 --folded out.folded");
	expect_err(parse("-p", "1", "--top", "many", NULL), "--top",
		   "--top many");

	rc = parse("-p", "1", "--max-allocs", "1", "--max-stacks", "1", NULL);
	check(rc == CONFIG_RUN && cfg.max_allocs == 1 && cfg.max_stacks == 1,
	      "--max-allocs 1 --max-stacks 1");
	rc = parse("-p", "1", "--max-allocs", "268435456", NULL);
	check(rc == CONFIG_RUN && cfg.max_allocs == 1ul << 28,
	      "--max-allocs 2^28");
	expect_err(parse("-p", "1", "--reclaim-after", "0.5", NULL),
		   "--reclaim-after", "--reclaim-after 0.5 (below 1 s)");
	rc = parse("-p", "1", "--reclaim-after", "0", NULL);
	check(rc == CONFIG_RUN && cfg.reclaim_s == 0,
	      "--reclaim-after 0 (never) accepted");
	expect_err(parse("-p", "1", "--max-allocs", "0", NULL), "--max-allocs",
		   "--max-allocs 0");
	expect_err(parse("-p", "1", "--max-allocs", "268435457", NULL),
		   "--max-allocs", "--max-allocs 2^28+1");
	expect_err(parse("-p", "1", "--max-allocs", "99999999999999999999999",
			 NULL),
		   "--max-allocs", "--max-allocs absurd");
	expect_err(parse("-p", "1", "--max-allocs", "-1", NULL), "--max-allocs",
		   "--max-allocs -1");
	expect_err(parse("-p", "1", "--max-stacks", "0", NULL), "--max-stacks",
		   "--max-stacks 0");
	expect_err(parse("-p", "1", "--max-stacks", "16777217", NULL),
		   "--max-stacks", "--max-stacks 2^24+1");
}

static void test_sort_libs_flags(void)
{
	int rc;

	rc = parse("-p", "1", "-o", "growth", NULL);
	check(rc == CONFIG_RUN && cfg.sort == SORT_GROWTH, "-o growth");
	rc = parse("-p", "1", "--sort", "function", "-r", NULL);
	check(rc == CONFIG_RUN && cfg.sort == SORT_FUNCTION && cfg.reverse,
	      "--sort function -r");
	rc = parse("-p", "1", "-o", "count", NULL);
	check(rc == CONFIG_RUN && cfg.sort == SORT_COUNT, "-o count");
	expect_err(parse("-p", "1", "-o", "bogus", NULL), "bogus", "-o bogus");

	rc = parse("-p", "1", "--lib", "/a/libjemalloc.so.2", "--lib",
		   "/b/libtcmalloc.so", NULL);
	check(rc == CONFIG_RUN && cfg.nlibs == 2 &&
		      !strcmp(cfg.libs[0], "/a/libjemalloc.so.2") &&
		      !strcmp(cfg.libs[1], "/b/libtcmalloc.so"),
	      "--lib repeated");
	expect_err(parse("-p", "1", "--lib", "", NULL), "--lib", "--lib ''");
	rc = parse("-p", "1", "--lib", "1", "--lib", "2", "--lib", "3", "--lib",
		   "4", "--lib", "5", "--lib", "6", "--lib", "7", "--lib", "8",
		   "--lib", "9", "--lib", "10", "--lib", "11", "--lib", "12",
		   "--lib", "13", "--lib", "14", "--lib", "15", "--lib", "16",
		   NULL);
	check(rc == CONFIG_RUN && cfg.nlibs == CONFIG_MAX_LIBS, "%d --lib fit",
	      CONFIG_MAX_LIBS);
	expect_err(parse("-p", "1", "--lib", "1", "--lib", "2", "--lib", "3",
			 "--lib", "4", "--lib", "5", "--lib", "6", "--lib", "7",
			 "--lib", "8", "--lib", "9", "--lib", "10", "--lib",
			 "11", "--lib", "12", "--lib", "13", "--lib", "14",
			 "--lib", "15", "--lib", "16", "--lib", "17", NULL),
		   "--lib", "17 --lib rejected");

	rc = parse("-p", "1", "-b", "-C", "-v", NULL);
	check(rc == CONFIG_RUN && cfg.batch && cfg.no_color && cfg.verbose,
	      "-b -C -v");
	rc = parse("-p", "1", "--batch", "--no-color", "--verbose", "--reverse",
		   NULL);
	check(rc == CONFIG_RUN && cfg.batch && cfg.no_color && cfg.verbose &&
		      cfg.reverse,
	      "long flags");
}

static void test_errors(void)
{
	int rc;

	expect_err(parse("-p", "1", "-x", NULL), "-x", "unknown option -x");
	expect_err(parse("-p", "1", "--bogus", NULL), "--bogus",
		   "unknown option --bogus");
	expect_err(parse("-p", "1", "-d", NULL), "-d", "missing argument -d");
	expect_err(parse("-p", NULL), "-p", "missing argument -p");
	expect_err(parse("-p", "1", "-o", NULL), "-o", "missing argument -o");
	/* Long-only options: glibc sets optopt to their value (>= 256). */
	expect_err(parse("-p", "1", "--csv", NULL), "--csv",
		   "missing argument --csv");
	expect_err(parse("-p", "1", "--max-allocs", NULL), "--max-allocs",
		   "missing argument --max-allocs");
	expect_err(parse("-p", "1", "--lib", NULL), "--lib",
		   "missing argument --lib");
	expect_err(parse("-p", "1", "--version=2", NULL), "--version",
		   "--version=2 (takes no argument)");
	expect_err(parse("-p", "1", "stray", NULL), "stray",
		   "unexpected argument");
	/* No -p: the whole system. */
	check(parse(NULL) == CONFIG_RUN && cfg.npids == 0 && !cfg.command,
	      "no -p: system-wide");
	check(parse("-b", "--", "ls", "-l", NULL) == CONFIG_RUN &&
		      cfg.command && !strcmp(cfg.command[0], "ls") &&
		      !strcmp(cfg.command[1], "-l") && !cfg.command[2],
	      "-- COMMAND ARGS: the command's own options stay its own");
	expect_err(parse("-p", "1", "--", "ls", NULL), "-p",
		   "-p and a command together");
	expect_err(parse("-f", NULL), "-f", "-f without -p or a command");
	check(parse("-f", "-p", "7", NULL) == CONFIG_RUN && cfg.follow,
	      "-f -p: follow");
	check(parse("-u", "root", NULL) == CONFIG_RUN && cfg.has_uid &&
		      cfg.uid == 0,
	      "-u root");
	check(parse("-u", "1234", NULL) == CONFIG_RUN && cfg.uid == 1234,
	      "-u numeric uid");
	expect_err(parse("-u", "no-such-user-here", NULL), "no-such-user-here",
		   "-u unknown user");
	check(parse("--comm", "python3", NULL) == CONFIG_RUN &&
		      !strcmp(cfg.comm, "python3"),
	      "--comm");
	expect_err(parse("--comm", "a-name-longer-than-15", NULL), "--comm",
		   "--comm too long");
	check(parse("--min-size", "4096", "--sample", "10", NULL) ==
			      CONFIG_RUN &&
		      cfg.min_size == 4096 && cfg.sample_every == 10,
	      "--min-size and --sample");
	expect_err(parse("--sample", "0", NULL), "--sample", "--sample 0");
	expect_err(parse("--min-size", "-1", NULL), "--min-size",
		   "--min-size negative");
	check(parse("--growth", "-p", "1", NULL) == CONFIG_RUN && cfg.growth,
	      "--growth");
	expect_err(parse("--growth", "--sample", "10", NULL), "--growth",
		   "--growth with --sample");
	/* The exports have a touched_space type and touched-bytes metrics. */
	check(parse("--growth", "--pprof", "x.pb.gz", "--listen", ":0", NULL) ==
			      CONFIG_RUN &&
		      cfg.growth && cfg.pprof_path && cfg.listen,
	      "--growth with --pprof and --listen");
	/* Values are echoed; the message must stay on one line. */
	expect_err(parse("-p", "1", "-o", "bad\nsort", NULL), NULL,
		   "-o with a newline in the value");

	rc = parse("--help", NULL);
	check(rc == CONFIG_HELP, "--help returns CONFIG_HELP (%d)", rc);
	rc = parse("-h", NULL);
	check(rc == CONFIG_HELP, "-h returns CONFIG_HELP");
	rc = parse("-p", "1", "--version", NULL);
	check(rc == CONFIG_VERSION, "--version returns CONFIG_VERSION (%d)",
	      rc);
}

static void test_no_color(void)
{
	int rc;

	setenv("NO_COLOR", "1", 1);
	rc = parse("-p", "1", NULL);
	check(rc == CONFIG_RUN && cfg.no_color, "NO_COLOR=1 sets no_color");
	setenv("NO_COLOR", "", 1);
	rc = parse("-p", "1", NULL);
	check(rc == CONFIG_RUN && !cfg.no_color,
	      "NO_COLOR empty does not set no_color");
	unsetenv("NO_COLOR");
	rc = parse("-p", "1", NULL);
	check(rc == CONFIG_RUN && !cfg.no_color, "NO_COLOR unset");
}

/* Run last: it leaves getopt in whatever state the parser leaves it. */
static void test_reparse(void)
{
	int rc;

	rc = parse("-hv", NULL);
	check(rc == CONFIG_HELP, "-hv returns CONFIG_HELP");
	rc = parse("-p", "5", NULL);
	check(rc == CONFIG_RUN && cfg.npids == 1 && cfg.pids[0] == 5 &&
		      !cfg.verbose,
	      "a parse after one stopped inside \"-hv\" starts afresh "
	      "(rc %d, npids %d, verbose %d, \"%s\")",
	      rc, cfg.npids, cfg.verbose, rc ? shown(err) : "");
}

/* --help says what the GC% column is. */
static void test_usage(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);

	if (!m)
		return;
	config_usage(m);
	fclose(m);
	check(strstr(buf,
		     "GC% (CPython processes): the share of a site's "
		     "frees done by CPython's cyclic\ngarbage collector") &&
		      strstr(buf, "kept alive by reference cycles") &&
		      strstr(buf, "is a leak suspect"),
	      "--help explains GC%%");
	free(buf);
}

int main(void)
{
	unsetenv("NO_COLOR");
	test_defaults();
	test_pids();
	test_numbers();
	test_sort_libs_flags();
	test_errors();
	test_no_color();
	test_reparse();
	test_usage();
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
