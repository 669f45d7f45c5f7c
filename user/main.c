/*
 * memtop's entry point. It only wires things together: configuration ->
 * tracer (BPF maps) and /proc as the source -> collector -> snapshot -> one
 * view (the live screen, or batch text), with CSV as a sibling output and
 * folded stacks at exit. Signals set a flag; every path out restores the
 * terminal, writes the last sample, flushes files and detaches.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "collector.h"
#include "config.h"
#include "procfs.h"
#include "symbolizer.h"
#include "tracer.h"
#include "views.h"

enum exit_code {
	EXIT_OK = 0,
	EXIT_RUNTIME = 1, /* failed while tracing */
	EXIT_USAGE = 2, /* bad command line */
	EXIT_TARGET = 3, /* a target cannot be traced */
	EXIT_PERM = 4, /* no privileges, or the kernel lacks BPF features */
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

struct app {
	struct config cfg;
	struct tracer *tracer;
	struct symbolizer *sym;
	struct collector *coll;
	struct csv_writer *csv;
	struct raw_sample raw;
	const struct snapshot *snap;
	bool targets_gone;
	bool csv_failed;
};

static bool verbose_libbpf;

static int libbpf_print(enum libbpf_print_level level, const char *fmt,
			va_list ap)
{
	if (!verbose_libbpf || level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static int hook_stack(void *ctx, const struct mt_site_key *key,
		      struct mt_stack *out)
{
	return tracer_stack(((struct app *)ctx)->tracer, key, out);
}

static int hook_symbolize(void *ctx, uint32_t pid, uint64_t ip,
			  struct sym_info *out)
{
	return symbolizer_resolve(((struct app *)ctx)->sym, (pid_t)pid, ip,
				  out);
}

/* One refresh: read the maps and /proc, update the model, write the CSV. */
static int app_refresh(void *ctx, const struct snapshot **out)
{
	struct app *a = ctx;
	bool any_alive = false;
	int err;

	sample_reset(&a->raw);
	err = tracer_read(a->tracer, &a->raw);
	if (err)
		return err;
	for (int i = 0; i < a->cfg.npids; i++) {
		struct raw_proc *p = sample_add_proc(&a->raw, a->cfg.pids[i]);

		if (!p)
			return -ENOMEM;
	}
	for (size_t i = 0; i < a->raw.nprocs; i++) {
		procfs_fill(&a->raw.procs[i]);
		any_alive |= a->raw.procs[i].alive;
	}
	err = collector_update(a->coll, &a->raw, &a->snap);
	if (err)
		return err;
	if (a->csv && !a->csv_failed) {
		err = csv_write(a->csv, a->snap, a->cfg.csv_top);
		if (err) {
			fprintf(stderr, "memtop: cannot write the CSV file %s: %s\n",
				a->cfg.csv_path, strerror(-err));
			a->csv_failed = true;
		}
	}
	a->targets_gone = !any_alive;
	*out = a->snap;
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Sleep until the next refresh, waking early for signals. */
static void wait_interval(double until)
{
	while (!stop_flag) {
		double left = until - now_s();

		if (left <= 0)
			break;
		poll(NULL, 0, left > 0.1 ? 100 : (int)(left * 1000) + 1);
	}
}

static void report_exits(struct app *a)
{
	for (int i = 0; i < a->snap->nprocs; i++)
		if (!a->snap->procs[i].alive)
			fprintf(stderr, "memtop: process %u (%s) exited\n",
				a->snap->procs[i].pid, a->snap->procs[i].comm);
}

static int run_batch(struct app *a)
{
	double next = now_s();
	long n = 0;
	int err = 0;

	for (;;) {
		next += a->cfg.interval_s;
		wait_interval(next);
		/* Signals and exits still get their final sample. */
		err = app_refresh(a, &a->snap);
		if (err)
			break;
		if (a->cfg.batch)
			view_batch_print(stdout, a->snap, a->cfg.top);
		n++;
		if (a->targets_gone) {
			report_exits(a);
			break;
		}
		if (stop_flag || (a->cfg.iterations && n >= a->cfg.iterations))
			break;
	}
	return err;
}

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

static void app_close(struct app *a)
{
	collector_free(a->coll);
	symbolizer_free(a->sym);
	tracer_close(a->tracer);
	sample_free(&a->raw);
}

int main(int argc, char **argv)
{
	struct collector_opts copts = { 0 };
	struct collector_hooks hooks;
	struct tracer_opts topts = { 0 };
	struct sigaction sa = { 0 };
	struct app a = { 0 };
	char err_msg[256];
	int ret = EXIT_OK, err;

	err = config_parse(&a.cfg, argc, argv, err_msg, sizeof(err_msg));
	if (err < 0) {
		fprintf(stderr, "memtop: %s\n", err_msg);
		return EXIT_USAGE;
	}
	if (err == CONFIG_HELP) {
		config_usage(stdout);
		return EXIT_OK;
	}
	if (err == CONFIG_VERSION) {
		printf("memtop %s\n", MEMTOP_VERSION);
		return EXIT_OK;
	}
	if (geteuid() != 0) {
		fprintf(stderr,
			"memtop: needs root (or CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE): run it with sudo\n");
		return EXIT_PERM;
	}
	for (int i = 0; i < a.cfg.npids; i++) {
		if (!procfs_alive(a.cfg.pids[i])) {
			fprintf(stderr, "memtop: no process with PID %d\n",
				a.cfg.pids[i]);
			return EXIT_TARGET;
		}
	}
	if (a.cfg.folded_path) {
		err = check_output_path(a.cfg.folded_path);
		if (err) {
			fprintf(stderr, "memtop: cannot write %s: %s\n",
				a.cfg.folded_path, strerror(-err));
			return EXIT_USAGE;
		}
	}
	if (a.cfg.csv_path) {
		err = csv_open(&a.csv, a.cfg.csv_path);
		if (err) {
			fprintf(stderr, "memtop: cannot write %s: %s\n",
				a.cfg.csv_path, strerror(-err));
			return EXIT_USAGE;
		}
	}

	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* Symbolization reads local files only: never fetch debug info. */
	unsetenv("DEBUGINFOD_URLS");
	verbose_libbpf = a.cfg.verbose;
	libbpf_set_print(libbpf_print);
	topts.pids = a.cfg.pids;
	topts.npids = a.cfg.npids;
	topts.libs = a.cfg.libs;
	topts.nlibs = a.cfg.nlibs;
	topts.max_allocs = a.cfg.max_allocs;
	topts.max_stacks = a.cfg.max_stacks;
	topts.verbose = a.cfg.verbose;
	topts.entry_probes = a.cfg.entry_probes;
	topts.show_allocator = a.cfg.show_allocator;
	topts.empty = a.cfg.bench_empty;
	err = tracer_open(&a.tracer, &topts);
	if (err) {
		ret = err == -EPERM || err == -EACCES ? EXIT_PERM : EXIT_TARGET;
		goto cleanup;
	}
	err = symbolizer_new(&a.sym);
	if (err) {
		fprintf(stderr, "memtop: cannot start the symbolizer: %s\n",
			strerror(-err));
		ret = EXIT_RUNTIME;
		goto cleanup;
	}
	copts.sort = a.cfg.sort;
	copts.reverse = a.cfg.reverse;
	copts.function_frame = a.cfg.show_allocator ? 1 : 0;
	hooks.ctx = &a;
	hooks.stack = hook_stack;
	hooks.symbolize = hook_symbolize;
	err = collector_new(&a.coll, &copts, &hooks);
	if (err) {
		ret = EXIT_RUNTIME;
		goto cleanup;
	}
	fprintf(stderr, "memtop: tracing");
	for (int i = 0; i < a.cfg.npids; i++)
		fprintf(stderr, "%s %d", i ? "," : " pid", a.cfg.pids[i]);
	fprintf(stderr, ": %d probes attached\n", tracer_nprobes(a.tracer));

	if (a.cfg.batch) {
		err = run_batch(&a);
	} else {
		struct tui_source src = { .ctx = &a, .refresh = app_refresh };
		struct tui_opts uo = { .interval_s = a.cfg.interval_s,
				       .iterations = a.cfg.iterations,
				       .no_color = a.cfg.no_color,
				       .sort = a.cfg.sort,
				       .reverse = a.cfg.reverse };

		err = view_tui_run(a.coll, &src, &uo, &stop_flag);
		if (err == -ENOSYS) /* no screen built in: fall back to text */
			err = run_batch(&a);
		else if (!err && a.targets_gone)
			report_exits(&a);
	}
	if (err) {
		fprintf(stderr, "memtop: %s\n", strerror(-err));
		ret = EXIT_RUNTIME;
	}
	if (a.snap && a.cfg.folded_path) {
		err = folded_write(a.cfg.folded_path, a.snap);
		if (err) {
			fprintf(stderr, "memtop: cannot write %s: %s\n",
				a.cfg.folded_path, strerror(-err));
			ret = EXIT_RUNTIME;
		}
	}
cleanup:
	if (a.csv && csv_close(a.csv) && ret == EXIT_OK) {
		fprintf(stderr, "memtop: cannot finish %s\n", a.cfg.csv_path);
		ret = EXIT_RUNTIME;
	}
	app_close(&a);
	return ret;
}
