/*
 * Command-line parsing for memtop. Every value is range-checked here and a
 * bad one is reported as one line naming the option and the value, so that
 * main can print it and exit non-zero before anything is attached.
 */
#include <regex.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config.h"

enum {
	OPT_CSV = 256,
	OPT_FOLDED,
	OPT_CSV_TOP,
	OPT_LIB,
	OPT_MAX_ALLOCS,
	OPT_MAX_STACKS,
	OPT_MAX_UNWIND_MB,
	OPT_SKIP_FRAMES,
	OPT_TOP,
	OPT_VERSION,
	OPT_ENTRY_PROBES,
	OPT_COMM,
	OPT_RECLAIM,
	OPT_MIN_SIZE,
	OPT_DEPTH,
	OPT_SAMPLE,
	OPT_SHOW_ALLOCATOR,
	OPT_BENCH_EMPTY,
	OPT_PYTHON,
	OPT_PYTHON_NATIVE,
	OPT_PPROF,
	OPT_LISTEN,
	OPT_METRICS_SITES,
	OPT_GROWTH,
	OPT_TYPES,
	OPT_TYPES_MAX,
};

static const struct option long_opts[] = {
	{"pid", required_argument, NULL, 'p'},
	{"batch", no_argument, NULL, 'b'},
	{"delay", required_argument, NULL, 'd'},
	{"iterations", required_argument, NULL, 'n'},
	{"sort", required_argument, NULL, 'o'},
	{"reverse", no_argument, NULL, 'r'},
	{"no-color", no_argument, NULL, 'C'},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{"csv", required_argument, NULL, OPT_CSV},
	{"folded", required_argument, NULL, OPT_FOLDED},
	{"csv-top", required_argument, NULL, OPT_CSV_TOP},
	{"top", required_argument, NULL, OPT_TOP},
	{"lib", required_argument, NULL, OPT_LIB},
	{"max-allocs", required_argument, NULL, OPT_MAX_ALLOCS},
	{"max-stacks", required_argument, NULL, OPT_MAX_STACKS},
	{"max-unwind-mb", required_argument, NULL, OPT_MAX_UNWIND_MB},
	{"skip-frames", required_argument, NULL, OPT_SKIP_FRAMES},
	{"version", no_argument, NULL, OPT_VERSION},
	{"entry-probes", no_argument, NULL, OPT_ENTRY_PROBES},
	{"follow", no_argument, NULL, 'f'},
	{"user", required_argument, NULL, 'u'},
	{"comm", required_argument, NULL, OPT_COMM},
	{"reclaim-after", required_argument, NULL, OPT_RECLAIM},
	{"min-size", required_argument, NULL, OPT_MIN_SIZE},
	{"depth", required_argument, NULL, OPT_DEPTH},
	{"sample", required_argument, NULL, OPT_SAMPLE},
	{"show-allocator", no_argument, NULL, OPT_SHOW_ALLOCATOR},
	{"bench-empty-probes", no_argument, NULL, OPT_BENCH_EMPTY},
	{"python", required_argument, NULL, OPT_PYTHON},
	{"python-native", no_argument, NULL, OPT_PYTHON_NATIVE},
	{"pprof", required_argument, NULL, OPT_PPROF},
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"metrics-sites", required_argument, NULL, OPT_METRICS_SITES},
	{"growth", no_argument, NULL, OPT_GROWTH},
	{"types", no_argument, NULL, OPT_TYPES},
	{"types-max", required_argument, NULL, OPT_TYPES_MAX},
	{NULL, 0, NULL, 0},
};

void config_usage(FILE *f)
{
	fprintf(f,
		"Usage: memtop [OPTIONS] [-p PID[,PID...]]\n"
		"       memtop [OPTIONS] -- COMMAND [ARGS...]\n"
		"Trace the heap allocations of running processes with eBPF and "
		"show\n"
		"which call stacks hold outstanding memory and whether it "
		"grows.\n"
		"Each traced allocator call costs the process a kernel trap "
		"(microseconds:\n"
		"an allocation-heavy server can run tens of times slower); on "
		"a production\n"
		"process start with --growth (page faults, no allocator "
		"probes, about 1%% of\n"
		"a core), then trace exactly the process that grows ('x' in "
		"the live view).\n"
		"\n"
		"  -p, --pid PID[,PID...]  processes to trace (default: every "
		"process)\n"
		"  -f, --follow            also trace the children they fork\n"
		"  -u, --user USER         only processes of USER (name or "
		"uid)\n"
		"      --growth            growth mode: which stacks make RSS "
		"grow, from page\n"
		"                          faults, with no allocator probes "
		"(cheap; TOUCHED is\n"
		"                          the bytes of new pages a stack "
		"first touched)\n"
		"      --comm NAME         only processes whose command name "
		"is NAME\n"
		"      --min-size BYTES    record only allocations of at least "
		"BYTES\n"
		"      --sample N          record one allocation in N, figures "
		"scaled (estimates)\n"
		"      --depth N           keep only the N innermost frames of "
		"each stack\n"
		"  -b, --batch             print text samples instead of the "
		"live screen\n"
		"  -d, --delay SECS        refresh interval (default 1, "
		"fractions allowed)\n"
		"  -n, --iterations N      stop after N samples\n"
		"  -o, --sort FIELD        outstanding, count, growth, alloc, "
		"free, avg,\n"
		"                          age or function (default "
		"outstanding)\n"
		"  -r, --reverse           reverse the sort order\n"
		"      --top N             call sites per sample in batch mode "
		"(default 20, 0 all)\n"
		"      --csv FILE          write a CSV sample every interval "
		"('-' stdout)\n"
		"      --csv-top N         site rows per process per sample "
		"(default 100, 0 all)\n"
		"      --folded FILE       at exit, write outstanding bytes as "
		"folded stacks\n"
		"      --pprof FILE        at exit, write a heap profile "
		"(pprof, gzip)\n"
		"      --listen [ADDR]:PORT  serve /metrics (Prometheus) and "
		"/debug/pprof/heap\n"
		"                          over HTTP (ADDR default 127.0.0.1; "
		"no authentication)\n"
		"      --metrics-sites N   /metrics also has the top N call "
		"sites (default 0)\n"
		"      --lib PATH          also probe the allocator functions "
		"in PATH\n"
		"                          (jemalloc, tcmalloc, a static "
		"executable); repeatable\n"
		"      --max-allocs N      live allocations tracked (default "
		"1048576)\n"
		"      --max-stacks N      call stacks tracked (default "
		"65536)\n"
		"      --max-unwind-mb N   kernel memory for unwind tables, "
		"MiB (default\n"
		"                          64; 0: frame pointers only)\n"
		"      --skip-frames REGEX  name sites after the first frame "
		"whose\n"
		"                          function does not match REGEX (your "
		"own\n"
		"                          allocator wrappers; repeatable)\n"
		"      --reclaim-after SECS  forget stacks that hold nothing "
		"and have not\n"
		"                          allocated for SECS (default 30, 0 "
		"never;\n"
		"                          1 while the maps are full)\n"
		"      --show-allocator    keep the allocator's own frame in "
		"stacks\n"
		"      --entry-probes      probe functions at their first "
		"instruction (slower;\n"
		"                          the default moves a probe past "
		"instructions the\n"
		"                          kernel would single-step)\n"
		"      --bench-empty-probes  benchmarks: same probes, programs "
		"that do nothing\n"
		"      --python MODE       auto (default): in CPython "
		"processes also probe\n"
		"                          PyObject_*/PyMem_* and show Python "
		"frames;\n"
		"                          on: a -p target must be CPython; "
		"off: native only\n"
		"      --python-native     CPython: also the C frames between "
		"the allocator's\n"
		"                          caller and the Python frames "
		"(slower)\n"
		"      --types             CPython: name the live objects "
		"allocated since attach\n"
		"                          by type (objects, bytes, growth; "
		"CSV scope 'type',\n"
		"                          a batch section; the live view's "
		"'o' key does it too)\n"
		"      --types-max N       object headers read per refresh "
		"(default 100000)\n"
		"  -C, --no-color          no colours (also when NO_COLOR is "
		"set)\n"
		"  -v, --verbose           say what is probed, show libbpf "
		"messages\n"
		"  -h, --help              this help\n"
		"      --version           print the version\n"
		"\n"
		"GC%% (CPython processes): the share of a site's frees done "
		"by CPython's cyclic\n"
		"garbage collector. Near 100%%: its objects are kept alive by "
		"reference cycles\n"
		"until a collection frees them. A site whose objects sit in "
		"cycles and never\n"
		"get freed (outstanding grows, GC%% low or '-') is a leak "
		"suspect.\n"
		"\n"
		"Examples:\n"
		"  sudo memtop                              every process on "
		"the system\n"
		"  sudo memtop -p 1234                      live view of one "
		"process\n"
		"  sudo memtop -b -- ./server --port 8080   run a command, "
		"trace it from its start\n"
		"  sudo memtop -p 1234 -b -d 5 -n 12        a minute of text "
		"samples\n"
		"  sudo memtop -p 1234 -b --csv out.csv --folded out.folded\n"
		"  sudo memtop --listen :9464               every process, for "
		"Prometheus and pprof\n"
		"  sudo memtop --growth                     which processes "
		"and stacks grow RSS\n");
}

static int fail(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	/* Values are echoed back: keep the message on one line. */
	for (char *p = err; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return -EINVAL;
}

static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

#define FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)

/*
 * The integer options: the range, what the error message expects (NULL:
 * "MIN to MAX" and unit), and the config field the value goes to.
 */
static const struct int_opt {
	int opt;
	const char *name;
	long min, max;
	const char *expect, *unit;
	size_t off, size;
} int_opts[] = {
	{'n', "-n", 1, LONG_MAX, "a positive number of samples", NULL,
	 FIELD(iterations)},
	{OPT_MIN_SIZE, "--min-size", 1, LONG_MAX, "a number of bytes > 0", NULL,
	 FIELD(min_size)},
	{OPT_DEPTH, "--depth", 1, MEMTOP_MAX_FRAMES, NULL, " frames",
	 FIELD(depth)},
	{OPT_SAMPLE, "--sample", 1, 1000000, NULL, "", FIELD(sample_every)},
	{OPT_TYPES_MAX, "--types-max", 1, 100000000,
	 "a number from 1 to 100000000", NULL, FIELD(types_max)},
	{OPT_CSV_TOP, "--csv-top", 0, INT_MAX, "a number >= 0", NULL,
	 FIELD(csv_top)},
	{OPT_TOP, "--top", 0, INT_MAX, "a number >= 0", NULL, FIELD(top)},
	{OPT_METRICS_SITES, "--metrics-sites", 0, 10000, NULL, "",
	 FIELD(metrics_sites)},
	{OPT_MAX_ALLOCS, "--max-allocs", 1, 1l << 28, NULL, "",
	 FIELD(max_allocs)},
	{OPT_MAX_STACKS, "--max-stacks", 1, 1l << 24, NULL, "",
	 FIELD(max_stacks)},
	{OPT_MAX_UNWIND_MB, "--max-unwind-mb", 0, 4096, NULL, "",
	 FIELD(max_unwind_mb)},
};

/* An integer option's value into its field: 1 when opt is not one. */
static int set_int(struct config *cfg, int opt, const char *arg, char *err,
		   size_t len)
{
	for (size_t i = 0; i < sizeof(int_opts) / sizeof(int_opts[0]); i++) {
		const struct int_opt *o = &int_opts[i];
		char *field = (char *)cfg + o->off;
		long v;

		if (o->opt != opt)
			continue;
		if (parse_long(arg, o->min, o->max, &v)) {
			if (o->expect)
				return fail(err, len,
					    "invalid %s '%s': expected %s",
					    o->name, arg, o->expect);
			return fail(err, len,
				    "invalid %s '%s': expected %ld to %ld%s",
				    o->name, arg, o->min, o->max, o->unit);
		}
		/* The ranges fit the fields: int and unsigned are 4 bytes,
		 * long and long long 8. */
		if (o->size == sizeof(int32_t)) {
			int32_t x = (int32_t)v;

			memcpy(field, &x, sizeof(x));
		} else {
			int64_t x = v;

			memcpy(field, &x, sizeof(x));
		}
		return 0;
	}
	return 1;
}

/*
 * A FILE argument: not empty, and not an option swallowed as one ("--csv -b"
 * would write a file named -b); "-" (stdout) and "./-b" are files.
 */
static int file_arg(const char *arg, const char *opt, char *err, size_t len)
{
	if (!*arg)
		return fail(err, len, "%s needs a file name", opt);
	if (arg[0] == '-' && arg[1])
		return fail(err, len,
			    "%s needs a file name, not the option '%s' (a "
			    "file of that name: ./%s)",
			    opt, arg, arg);
	return 0;
}

static int parse_pids(struct config *cfg, const char *arg, char *err,
		      size_t len)
{
	char buf[1024], *tok, *save = NULL;
	long v;

	if (strlen(arg) >= sizeof(buf) || !*arg || arg[0] == ',' ||
	    arg[strlen(arg) - 1] == ',' || strstr(arg, ",,"))
		return fail(err, len, "invalid PID list '%s'", arg);
	strcpy(buf, arg);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (parse_long(tok, 1, INT_MAX, &v))
			return fail(
				err, len,
				"invalid PID '%s': expected a positive number",
				tok);
		if (cfg->npids == CONFIG_MAX_PIDS)
			return fail(err, len, "too many PIDs (at most %d)",
				    CONFIG_MAX_PIDS);
		cfg->pids[cfg->npids++] = (pid_t)v;
	}
	if (!cfg->npids)
		return fail(err, len, "invalid PID list '%s'", arg);
	return 0;
}

int config_parse(struct config *cfg, int argc, char **argv, char *err,
		 size_t errlen)
{
	const char *nc = getenv("NO_COLOR");
	char *end;
	long v;
	int c;

	memset(cfg, 0, sizeof(*cfg));
	cfg->interval_s = 1.0;
	cfg->csv_top = 100;
	cfg->top = 20;
	cfg->sort = SORT_OUTSTANDING;
	cfg->max_allocs = 1ul << 20;
	cfg->max_stacks = 1ul << 16;
	cfg->max_unwind_mb = 64;
	cfg->reclaim_s = 30;
	cfg->no_color = nc && *nc;
	err[0] = '\0';
	optind = 0; /* glibc: a full reset, forgetting any previous argv */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:p:bd:n:o:rCvhfu:", long_opts,
				NULL)) != -1) {
		int e = set_int(cfg, c, optarg, err, errlen);

		if (e < 0)
			return e;
		if (!e)
			continue;
		switch (c) {
		case 'p':
			if (parse_pids(cfg, optarg, err, errlen))
				return -EINVAL;
			break;
		case 'b':
			cfg->batch = true;
			break;
		case 'd':
			errno = 0;
			cfg->interval_s = strtod(optarg, &end);
			if (errno || end == optarg || *end ||
			    !isfinite(cfg->interval_s) ||
			    cfg->interval_s < 0.01 || cfg->interval_s > 3600)
				return fail(
					err, errlen,
					"invalid interval -d '%s': expected "
					"seconds between 0.01 and 3600",
					optarg);
			break;
		case 'o':
			if (sort_field_parse(optarg, &cfg->sort))
				return fail(err, errlen,
					    "invalid sort field '%s': expected "
					    "outstanding, count, growth, "
					    "alloc, free, avg, age or function",
					    optarg);
			break;
		case 'r':
			cfg->reverse = true;
			break;
		case 'C':
			cfg->no_color = true;
			break;
		case 'v':
			cfg->verbose = true;
			break;
		case 'h':
			return CONFIG_HELP;
		case OPT_VERSION:
			return CONFIG_VERSION;
		case OPT_ENTRY_PROBES:
			cfg->entry_probes = true;
			break;
		case 'f':
			cfg->follow = true;
			break;
		case 'u': {
			struct passwd *pw = getpwnam(optarg);

			if (pw) {
				cfg->uid = pw->pw_uid;
			} else if (!parse_long(optarg, 0, INT_MAX, &v)) {
				cfg->uid = (uid_t)v;
			} else {
				return fail(err, errlen, "unknown user '%s'",
					    optarg);
			}
			cfg->user = optarg;
			cfg->has_uid = true;
			break;
		}
		case OPT_RECLAIM:
			errno = 0;
			cfg->reclaim_s = strtod(optarg, &end);
			/* At least 1 s: BPF trusts a cached stack for a second.
			 */
			if (errno || end == optarg || *end ||
			    !isfinite(cfg->reclaim_s) || cfg->reclaim_s < 0 ||
			    (cfg->reclaim_s > 0 && cfg->reclaim_s < 1) ||
			    cfg->reclaim_s > 86400)
				return fail(err, errlen,
					    "invalid --reclaim-after '%s': "
					    "expected 0 (never) or seconds "
					    "from 1 to 86400",
					    optarg);
			break;
		case OPT_COMM:
			if (!*optarg || strlen(optarg) > 15)
				return fail(
					err, errlen,
					"invalid --comm '%s': expected a "
					"command name of 1 to 15 characters",
					optarg);
			cfg->comm = optarg;
			break;
		case OPT_SHOW_ALLOCATOR:
			cfg->show_allocator = true;
			break;
		case OPT_PYTHON:
			if (python_mode_parse(optarg, &cfg->python))
				return fail(err, errlen,
					    "invalid --python '%s': expected "
					    "auto, on or off",
					    optarg);
			break;
		case OPT_PYTHON_NATIVE:
			cfg->python_native = true;
			break;
		case OPT_GROWTH:
			cfg->growth = true;
			break;
		case OPT_BENCH_EMPTY:
			cfg->bench_empty = true;
			break;
		case OPT_CSV:
			if (file_arg(optarg, "--csv", err, errlen))
				return -EINVAL;
			cfg->csv_path = optarg;
			break;
		case OPT_FOLDED:
			if (file_arg(optarg, "--folded", err, errlen))
				return -EINVAL;
			cfg->folded_path = optarg;
			break;
		case OPT_TYPES:
			cfg->types = true;
			break;
		case OPT_PPROF:
			if (file_arg(optarg, "--pprof", err, errlen))
				return -EINVAL;
			cfg->pprof_path = optarg;
			break;
		case OPT_LISTEN:
			if (!*optarg)
				return fail(err, errlen,
					    "--listen needs [ADDR]:PORT, e.g. "
					    ":9464");
			cfg->listen = optarg;
			break;
		case OPT_SKIP_FRAMES: {
			regex_t re;

			if (cfg->nskip_frames == CONFIG_MAX_LIBS)
				return fail(
					err, errlen,
					"too many --skip-frames (at most %d)",
					CONFIG_MAX_LIBS);
			if (!*optarg ||
			    regcomp(&re, optarg, REG_EXTENDED | REG_NOSUB))
				return fail(err, errlen,
					    "invalid --skip-frames '%s': not "
					    "an extended regular expression",
					    optarg);
			regfree(&re);
			cfg->skip_frames[cfg->nskip_frames++] = optarg;
			break;
		}
		case OPT_LIB:
			if (cfg->nlibs == CONFIG_MAX_LIBS)
				return fail(err, errlen,
					    "too many --lib (at most %d)",
					    CONFIG_MAX_LIBS);
			if (!*optarg)
				return fail(err, errlen, "--lib needs a path");
			cfg->libs[cfg->nlibs++] = optarg;
			break;
		case ':':
			if (optopt > 0 && optopt < 256)
				return fail(err, errlen,
					    "option -%c needs an argument",
					    optopt);
			return fail(err, errlen, "option %s needs an argument",
				    argv[optind - 1]);
		default:
			if (optopt > 0 && optopt < 256)
				return fail(err, errlen, "unknown option -%c",
					    optopt);
			return fail(err, errlen, "unknown option %s",
				    argv[optind - 1]);
		}
	}
	if (optind < argc) {
		/* getopt stops at "--" or the first operand ("+"). */
		if (strcmp(argv[optind - 1], "--"))
			return fail(err, errlen,
				    "unexpected argument '%s' (a command to "
				    "run goes after --)",
				    argv[optind]);
		cfg->command = &argv[optind];
	}
	if (cfg->command && cfg->npids)
		return fail(err, errlen,
			    "-p and a command cannot be combined: trace one or "
			    "the other");
	if (cfg->metrics_sites && !cfg->listen)
		return fail(
			err, errlen,
			"--metrics-sites is for /metrics: give --listen too");
	if (cfg->growth &&
	    (cfg->min_size || cfg->sample_every > 1 || cfg->nlibs ||
	     cfg->bench_empty || cfg->show_allocator))
		return fail(err, errlen,
			    "--growth probes no allocator: --min-size, "
			    "--sample, --lib, --show-allocator and "
			    "--bench-empty-probes do not apply");
	if (cfg->growth && cfg->types)
		return fail(err, errlen,
			    "--types names the blocks allocator probes saw: "
			    "not with --growth");

	if (cfg->follow && !cfg->npids && !cfg->command)
		return fail(err, errlen,
			    "-f follows the children of -p PID or of a "
			    "command: give one");
	return CONFIG_RUN;
}
