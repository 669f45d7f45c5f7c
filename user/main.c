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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <bpf/libbpf.h>
#include "collector.h"
#include "config.h"
#include "launch.h"
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
	bool system_wide; /* no -p, no command: keep running as processes go */
	struct launch child; /* -- COMMAND */
	bool has_child;
	uint32_t *forget; /* exited processes shown once, dropped next refresh */
	int nforget, forget_cap;
	bool csv_failed;
	bool out_failed; /* standard output failed (not EPIPE) */
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
	struct app *a = ctx;
	struct mt_py_stack py;
	int err = tracer_stack(a->tracer, key, out);

	/* Issue 7: Python frames where the evaluation loop's frames are. */
	if (!err && a->cfg.python != PYTHON_OFF &&
	    !tracer_pystack(a->tracer, key, &py))
		python_splice((pid_t)key->tgid, out, &py);
	return err;
}

static int hook_symbolize(void *ctx, uint32_t pid, uint64_t ip,
			  struct sym_info *out)
{
	if (ip & MT_IP_INTERP_TAG) /* a Python frame (issue 7) */
		return python_symbolize((pid_t)pid, ip, out);
	return symbolizer_resolve(((struct app *)ctx)->sym, (pid_t)pid, ip,
				  out);
}

/* -u and --comm */
static bool keep_proc(void *ctx, const struct raw_proc *p)
{
	const struct config *cfg = ctx;

	if (cfg->has_uid && p->uid != cfg->uid)
		return false;
	return !cfg->comm || !strcmp(cfg->comm, p->comm);
}

/*
 * A process that exited is shown in one refresh (dimmed, as htop does) and
 * dropped before the next, from the maps as well, so they never fill with
 * the dead. Named targets stay: memtop ends when they are all gone.
 */
static void forget_dead(struct app *a)
{
	a->nforget = 0;
	if (!a->system_wide && !a->cfg.follow)
		return;
	for (int i = 0; i < a->snap->nprocs; i++) {
		const struct snap_proc *p = &a->snap->procs[i];
		bool named = false;

		for (int k = 0; k < a->cfg.npids; k++)
			named |= (uint32_t)a->cfg.pids[k] == p->pid;
		if (p->alive || named)
			continue;
		if (a->nforget == a->forget_cap) {
			int ncap = a->forget_cap ? a->forget_cap * 2 : 16;
			uint32_t *nf = realloc(a->forget, ncap * sizeof(*nf));

			if (!nf)
				return;
			a->forget = nf;
			a->forget_cap = ncap;
		}
		a->forget[a->nforget++] = p->pid;
	}
	/* Shown exited in the last snapshot: gone from this one on. */
	for (int i = 0; i < a->nforget; i++) {
		tracer_forget(a->tracer, a->forget[i]);
		collector_forget(a->coll, a->forget[i]);
		symbolizer_forget(a->sym, (pid_t)a->forget[i]);
	}
}

/* One refresh: read the maps and /proc, update the model, write the CSV. */
static int app_refresh(void *ctx, const struct snapshot **out)
{
	struct app *a = ctx;
	bool any_alive = false;
	int err;

	if (a->snap)
		forget_dead(a);
	if (a->has_child)
		launch_reap(&a->child);
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
		struct raw_proc *p = &a->raw.procs[i];

		procfs_fill(p);
		any_alive |= p->alive;
		/* A command that ended before /proc was read keeps a name. */
		if (!p->comm[0] && a->has_child && p->tgid == (uint32_t)a->child.pid) {
			const char *b = strrchr(a->cfg.command[0], '/');

			snprintf(p->comm, sizeof(p->comm), "%.15s",
				 b ? b + 1 : a->cfg.command[0]);
		}
	}
	if (a->cfg.has_uid || a->cfg.comm) {
		/* Filtered-out processes never reach the model: drop the dead
		 * ones from the maps here, or they would fill up. */
		for (size_t i = 0; i < a->raw.nprocs; i++) {
			const struct raw_proc *p = &a->raw.procs[i];

			if (!p->alive && !keep_proc(&a->cfg, p)) {
				tracer_forget(a->tracer, p->tgid);
				symbolizer_forget(a->sym, (pid_t)p->tgid);
			}
		}
		err = sample_filter(&a->raw, keep_proc, &a->cfg);
		if (err)
			return err;
	}
	err = collector_update(a->coll, &a->raw, &a->snap);
	if (err)
		return err;
	if (a->csv && !a->csv_failed) {
		err = csv_write(a->csv, a->snap, a->cfg.csv_top);
		if (err == -EPIPE) { /* --csv - | head: the reader is done */
			a->csv_failed = true;
			stop_flag = 1;
		} else if (err) {
			fprintf(stderr, "memtop: cannot write the CSV file %s: %s\n",
				a->cfg.csv_path, strerror(-err));
			a->csv_failed = true;
		}
	}
	a->targets_gone = !a->system_wide && !any_alive;
	*out = a->snap;
	return 0;
}

static double now_s(void)
{
	return (double)mono_ns() / 1e9;
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

	double last = 0;

	for (;;) {
		next += a->cfg.interval_s;
		wait_interval(next);
		/* Signals and exits still get their final sample, unless the
		 * last one is under 5 ms old: samples are told apart by their
		 * millisecond timestamps. */
		if (stop_flag && n && now_s() - last < 0.005)
			break;
		err = app_refresh(a, &a->snap);
		last = now_s();
		if (err)
			break;
		if (a->cfg.batch) {
			errno = 0;
			view_batch_print(stdout, a->snap, a->cfg.top);
			/* memtop -b | head: stop once the reader has gone. */
			if (ferror(stdout) || fflush(stdout) == EOF) {
				if (errno == EPIPE)
					break;
				fprintf(stderr,
					"memtop: cannot write the standard output: %s\n",
					strerror(errno));
				a->out_failed = true;
				break;
			}
		}
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

/* strerror(), but a symlink planted at an output path gets a clear word. */
static const char *output_error(const char *path, int err)
{
	struct stat st;

	if (err == -ELOOP && !lstat(path, &st) && S_ISLNK(st.st_mode))
		return "it is a symbolic link (not followed)";
	return strerror(-err);
}

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

static bool has_cap(const struct __user_cap_data_struct d[2], int cap)
{
	return d[cap / 32].effective & (1u << (cap % 32));
}

/*
 * Say, in one line, what is missing before anything is loaded: the
 * capabilities to load BPF programs and open uprobe perf events (CAP_BPF and
 * CAP_PERFMON, or CAP_SYS_ADMIN on kernels before 5.8), BTF for CO-RE, and
 * the uprobe PMU.
 */
static int check_privileges_and_kernel(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = { 0 };
	bool bpf, perfmon;

	if (syscall(SYS_capget, &h, d) == 0) {
		bpf = has_cap(d, CAP_BPF) || has_cap(d, CAP_SYS_ADMIN);
		perfmon = has_cap(d, CAP_PERFMON) || has_cap(d, CAP_SYS_ADMIN);
	} else {
		bpf = perfmon = geteuid() == 0;
	}
	if (!bpf || !perfmon) {
		if (geteuid() != 0)
			fprintf(stderr,
				"memtop: needs root (or CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE): run it with sudo\n");
		else
			fprintf(stderr,
				"memtop: running as root but without %s%s%s (dropped from this process or container): run it with full root privileges, e.g. sudo, or grant CAP_BPF and CAP_PERFMON\n",
				bpf ? "" : "CAP_BPF",
				!bpf && !perfmon ? " and " : "",
				perfmon ? "" : "CAP_PERFMON");
		return EXIT_PERM;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		fprintf(stderr,
			"memtop: the kernel has no BTF (/sys/kernel/btf/vmlinux: %s): it needs a kernel built with CONFIG_DEBUG_INFO_BTF=y\n",
			strerror(errno));
		return EXIT_PERM;
	}
	if (access("/sys/bus/event_source/devices/uprobe/type", R_OK)) {
		fprintf(stderr,
			"memtop: the kernel has no uprobes (/sys/bus/event_source/devices/uprobe/type: %s): it needs a kernel built with CONFIG_UPROBE_EVENTS=y\n",
			strerror(errno));
		return EXIT_PERM;
	}
	return 0;
}

/* PF_KTHREAD in /proc/PID/stat's flags: no user memory, nothing to probe. */
static bool is_kernel_thread(pid_t pid, char *comm, size_t len)
{
	char path[64], buf[1024], *lp, *rp;
	unsigned long flags;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	lp = strchr(buf, '(');
	rp = strrchr(buf, ')');
	if (!lp || !rp || rp < lp ||
	    sscanf(rp + 1, " %*c %*d %*d %*d %*d %*d %lu", &flags) != 1)
		return false;
	snprintf(comm, len, "%.*s", (int)(rp - lp - 1), lp + 1);
	return flags & 0x00200000; /* PF_KTHREAD */
}

static void app_close(struct app *a)
{
	free(a->forget);
	collector_free(a->coll);
	symbolizer_free(a->sym);
	python_free_all();
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

	/* memtop is run by root; installed setuid it would let anyone trace
	 * anything and write files anywhere. */
	if (getuid() != geteuid() || getgid() != getegid()) {
		fprintf(stderr,
			"memtop: refusing to run setuid or setgid: remove the bit (chmod u-s,g-s) and run it with sudo\n");
		return EXIT_PERM;
	}
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
	err = check_privileges_and_kernel();
	if (err)
		return err;
	for (int i = 0; i < a.cfg.npids; i++) {
		char comm[64] = "";

		if (!procfs_alive(a.cfg.pids[i])) {
			fprintf(stderr, "memtop: no process with PID %d\n",
				a.cfg.pids[i]);
			return EXIT_TARGET;
		}
		if (is_kernel_thread(a.cfg.pids[i], comm, sizeof(comm))) {
			fprintf(stderr,
				"memtop: PID %d (%s) is a kernel thread: it has no user-space heap to trace\n",
				a.cfg.pids[i], comm);
			return EXIT_TARGET;
		}
	}
	if (a.cfg.folded_path) {
		err = check_output_path(a.cfg.folded_path);
		if (err) {
			fprintf(stderr, "memtop: cannot write %s: %s\n",
				a.cfg.folded_path,
				output_error(a.cfg.folded_path, err));
			return EXIT_USAGE;
		}
	}
	if (a.cfg.csv_path) {
		err = csv_open(&a.csv, a.cfg.csv_path);
		if (err) {
			fprintf(stderr, "memtop: cannot write %s: %s\n",
				a.cfg.csv_path, output_error(a.cfg.csv_path, err));
			return EXIT_USAGE;
		}
	}

	if (a.cfg.command) {
		/* Say "not found" before attaching anything. */
		err = launch_check(a.cfg.command[0]);
		if (err) {
			fprintf(stderr, "memtop: cannot run %s: %s\n",
				a.cfg.command[0], strerror(-err));
			ret = err == -ENOENT ? 127 : 126;
			goto cleanup;
		}
		/* Forked before the signal handlers: the child keeps defaults. */
		err = launch_start(&a.child, a.cfg.command);
		if (err) {
			fprintf(stderr, "memtop: cannot start %s: %s\n",
				a.cfg.command[0], strerror(-err));
			ret = EXIT_RUNTIME;
			goto cleanup;
		}
		a.has_child = true;
		a.cfg.pids[0] = a.child.pid;
		a.cfg.npids = 1;
	}
	a.system_wide = !a.cfg.npids;

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
	topts.filter = a.has_child || a.cfg.follow;
	topts.follow = a.cfg.follow;
	topts.min_size = a.cfg.min_size;
	topts.depth = a.cfg.depth;
	topts.sample_every = a.cfg.sample_every;
	topts.reclaim_ns = (uint64_t)(a.cfg.reclaim_s * 1e9);
	topts.python = a.cfg.python;
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
	copts.start_ns = mono_ns();
	copts.sort = a.cfg.sort;
	copts.reverse = a.cfg.reverse;
	copts.function_frame = a.cfg.show_allocator ? 1 : 0;
	copts.scale = a.cfg.sample_every;
	copts.min_size = a.cfg.min_size;
	copts.depth = a.cfg.depth;
	hooks.ctx = &a;
	hooks.stack = hook_stack;
	hooks.symbolize = hook_symbolize;
	err = collector_new(&a.coll, &copts, &hooks);
	if (err) {
		ret = EXIT_RUNTIME;
		goto cleanup;
	}
	fprintf(stderr, "memtop: tracing");
	if (a.system_wide)
		fprintf(stderr, " every process (allocations from now on)");
	else if (a.has_child)
		fprintf(stderr, " %s (pid %d)", a.cfg.command[0], a.child.pid);
	for (int i = 0; i < a.cfg.npids && !a.has_child; i++)
		fprintf(stderr, "%s %d", i ? "," : " pid", a.cfg.pids[i]);
	fprintf(stderr, "%s: %d probes attached\n",
		a.cfg.follow ? " and its children" : "",
		tracer_nprobes(a.tracer));
	if (a.has_child) {
		err = launch_release(&a.child);
		if (err) {
			fprintf(stderr, "memtop: cannot run %s: %s\n",
				a.cfg.command[0], strerror(-err));
			ret = err == -ENOENT ? 127 : 126;
			goto cleanup;
		}
	}

	if (a.cfg.batch) {
		err = run_batch(&a);
	} else {
		struct tui_source src = { .ctx = &a, .refresh = app_refresh };
		struct tui_opts uo = { .interval_s = a.cfg.interval_s,
				       .iterations = a.cfg.iterations,
				       .no_color = a.cfg.no_color,
				       .sort = a.cfg.sort,
				       .reverse = a.cfg.reverse,
				       .system_wide = a.system_wide,
				       .process_list = a.system_wide ||
						       a.cfg.npids > 1 ||
						       a.cfg.follow };

		err = view_tui_run(a.coll, &src, &uo, &stop_flag);
		if (err == -ENOSYS) /* no screen built in: fall back to text */
			err = run_batch(&a);
		else if (!err && a.targets_gone)
			report_exits(&a);
	}
	if (err) {
		fprintf(stderr, "memtop: %s\n", strerror(-err));
		ret = EXIT_RUNTIME;
	} else if (a.out_failed) {
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
	if (a.has_child) {
		/* The command's status is memtop's once it has ended. */
		if (launch_reap(&a.child) && ret == EXIT_OK)
			ret = launch_exit_code(&a.child);
		else if (!a.child.reaped && a.child.go_fd >= 0)
			launch_abort(&a.child); /* never released: never ran */
	}
	if (a.csv && csv_close(a.csv) && ret == EXIT_OK) {
		fprintf(stderr, "memtop: cannot finish %s\n", a.cfg.csv_path);
		ret = EXIT_RUNTIME;
	}
	app_close(&a);
	return ret;
}
