/*
 * memtop's entry point: preflight (the command line, privileges, targets,
 * every output opened) -> open (the source attached, the command released)
 * -> run (refreshes into the outputs, under the live screen or in batch) ->
 * finish (the last snapshot to the outputs, the command's status). Signals
 * set a flag; every path out restores the terminal, writes the last sample,
 * flushes files and detaches.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "config.h"
#include "launch.h"
#include "loop.h"
#include "output.h"
#include "procfs.h"
#include "source.h"
#include "tui.h"

enum exit_code {
	EXIT_OK = 0,
	EXIT_RUNTIME = 1, /* failed while tracing */
	EXIT_USAGE = 2,	  /* bad command line */
	EXIT_TARGET = 3,  /* a target cannot be traced */
	EXIT_PERM = 4,	  /* no privileges, or the kernel lacks BPF features */
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* Every output, in the order they are opened, written and closed. */
static const struct output_ops *const outputs[] = {
	&output_folded, &output_pprof, &output_http, &output_csv, &output_batch,
};
#define NOUTPUTS ((int)(sizeof(outputs) / sizeof(outputs[0])))

struct app {
	struct config cfg;
	struct source *src;
	void *out_ctx[NOUTPUTS]; /* NULL: not asked for, or not opened */
	bool out_open[NOUTPUTS];
	const struct snapshot *snap;
	struct launch child; /* -- COMMAND */
	bool has_child;
	bool out_failed; /* an output failed (not a closed pipe) */
};

static bool verbose_libbpf;

static int libbpf_print(enum libbpf_print_level level, const char *fmt,
			va_list ap)
{
	if (!verbose_libbpf || level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* One refresh: a snapshot from the source, written to every output. */
static int app_refresh(void *ctx, const struct snapshot **out)
{
	struct app *a = ctx;
	int err = source_refresh(a->src, &a->snap);

	if (err)
		return err;
	for (int i = 0; i < NOUTPUTS; i++) {
		if (!a->out_open[i] || !outputs[i]->write)
			continue;
		err = outputs[i]->write(a->out_ctx[i], a->snap);
		if (err == OUTPUT_STOP) {
			stop_flag = 1;
		} else if (err) {
			a->out_failed = true;
			stop_flag = 1;
		}
	}
	*out = a->snap;
	return a->out_failed ? LOOP_FAILED : 0;
}

static void report_exits(struct app *a)
{
	for (int i = 0; i < a->snap->nprocs; i++)
		if (!a->snap->procs[i].alive)
			fprintf(stderr, "memtop: process %u (%s) exited\n",
				a->snap->procs[i].pid, a->snap->procs[i].comm);
}

static bool app_gone(void *ctx)
{
	const struct app *a = ctx;

	return source_targets_gone(a->src);
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
 * The oldest kernel memtop runs on, and the BPF features its programs need
 * that came last before it: a kernel without one gets a line naming it
 * instead of a verifier log. A kernel older than 6.1 with all of them
 * (distribution backports) is refused too: its verifier has never been
 * shown memtop's programs.
 */
#define KERNEL_MIN_MAJOR 6
#define KERNEL_MIN_MINOR 1

static const struct {
	enum bpf_func_id id;
	const char *name, *since;
} needed_helpers[] = {
	{BPF_FUNC_ringbuf_reserve, "the BPF ring buffer", "5.8"},
	{BPF_FUNC_loop, "bpf_loop", "5.17"},
	{BPF_FUNC_map_lookup_percpu_elem, "bpf_map_lookup_percpu_elem", "5.19"},
};

static int check_kernel_version(void)
{
	struct utsname u;
	unsigned int major = 0, minor = 0;

	for (size_t i = 0;
	     i < sizeof(needed_helpers) / sizeof(needed_helpers[0]); i++) {
		if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_KPROBE,
					    needed_helpers[i].id, NULL) == 0) {
			fprintf(stderr,
				"memtop: the kernel lacks %s (Linux %s): "
				"memtop "
				"needs Linux %d.%d or newer\n",
				needed_helpers[i].name, needed_helpers[i].since,
				KERNEL_MIN_MAJOR, KERNEL_MIN_MINOR);
			return EXIT_PERM;
		}
	}
	if (uname(&u) || sscanf(u.release, "%u.%u", &major, &minor) != 2)
		return 0; /* the features are there: let it try */
	if (major < KERNEL_MIN_MAJOR ||
	    (major == KERNEL_MIN_MAJOR && minor < KERNEL_MIN_MINOR)) {
		fprintf(stderr,
			"memtop: Linux %s is older than %d.%d, the oldest "
			"kernel memtop runs on\n",
			u.release, KERNEL_MIN_MAJOR, KERNEL_MIN_MINOR);
		return EXIT_PERM;
	}
	return 0;
}

/*
 * Say, in one line, what is missing before anything is loaded: the
 * capabilities to load BPF programs and open uprobe perf events (CAP_BPF and
 * CAP_PERFMON, or CAP_SYS_ADMIN on kernels before 5.8), BTF for CO-RE, the
 * uprobe PMU, and the kernel's age.
 */
static int check_privileges_and_kernel(void)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2] = {0};
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
				"memtop: needs root (or CAP_BPF, CAP_PERFMON "
				"and CAP_SYS_PTRACE): run it with sudo\n");
		else
			fprintf(stderr,
				"memtop: running as root but without %s%s%s "
				"(dropped from this process or container): run "
				"it with full root privileges, e.g. sudo, or "
				"grant CAP_BPF and CAP_PERFMON\n",
				bpf ? "" : "CAP_BPF",
				!bpf && !perfmon ? " and " : "",
				perfmon ? "" : "CAP_PERFMON");
		return EXIT_PERM;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		fprintf(stderr,
			"memtop: the kernel has no BTF "
			"(/sys/kernel/btf/vmlinux: %s): it needs a kernel "
			"built with CONFIG_DEBUG_INFO_BTF=y\n",
			strerror(errno));
		return EXIT_PERM;
	}
	if (access("/sys/bus/event_source/devices/uprobe/type", R_OK)) {
		fprintf(stderr,
			"memtop: the kernel has no uprobes "
			"(/sys/bus/event_source/devices/uprobe/type: %s): it "
			"needs a kernel built with CONFIG_UPROBE_EVENTS=y\n",
			strerror(errno));
		return EXIT_PERM;
	}
	return check_kernel_version();
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

/* Keep going: no exit code yet. */
#define CONTINUE (-1)

/*
 * Everything that can be refused is refused here, before anything is
 * attached or started: the command line, privileges, the targets, every
 * output (a bad path or a port in use), a command that cannot be found.
 */
static int preflight(struct app *a, int argc, char **argv)
{
	char err_msg[256];
	int err;

	/* memtop is run by root; installed setuid it would let anyone trace
	 * anything and write files anywhere. */
	if (getuid() != geteuid() || getgid() != getegid()) {
		fprintf(stderr,
			"memtop: refusing to run setuid or setgid: remove the "
			"bit (chmod u-s,g-s) and run it with sudo\n");
		return EXIT_PERM;
	}
	err = config_parse(&a->cfg, argc, argv, err_msg, sizeof(err_msg));
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
	for (int i = 0; i < a->cfg.npids; i++) {
		char comm[64] = "";

		if (!procfs_alive(a->cfg.pids[i])) {
			fprintf(stderr, "memtop: no process with PID %d\n",
				a->cfg.pids[i]);
			return EXIT_TARGET;
		}
		if (is_kernel_thread(a->cfg.pids[i], comm, sizeof(comm))) {
			fprintf(stderr,
				"memtop: PID %d (%s) is a kernel thread: it "
				"has no user-space heap to trace\n",
				a->cfg.pids[i], comm);
			return EXIT_TARGET;
		}
	}
	for (int i = 0; i < NOUTPUTS; i++) {
		if (!outputs[i]->wanted(&a->cfg))
			continue;
		if (outputs[i]->open(&a->out_ctx[i], &a->cfg))
			return EXIT_USAGE;
		a->out_open[i] = true;
	}
	if (a->cfg.command) {
		/* Say "not found" before attaching anything. */
		err = launch_check(a->cfg.command[0]);
		if (err) {
			fprintf(stderr, "memtop: cannot run %s: %s\n",
				a->cfg.command[0], strerror(-err));
			return err == -ENOENT ? 127 : 126;
		}
		/* Forked before the signal handlers: the child keeps defaults.
		 */
		err = launch_start(&a->child, a->cfg.command);
		if (err) {
			fprintf(stderr, "memtop: cannot start %s: %s\n",
				a->cfg.command[0], strerror(-err));
			return EXIT_RUNTIME;
		}
		a->has_child = true;
		a->cfg.pids[0] = a->child.pid;
		a->cfg.npids = 1;
	}
	return CONTINUE;
}

/* Signals, the source attached, the command released. */
static int open_source(struct app *a)
{
	struct sigaction sa = {0};
	bool attach_failed;
	int err;

	sa.sa_handler = on_signal;
	/* A SIGINT arriving inside a write to stdout or the CSV must not fail
	 * that write (EINTR): the loops notice stop_flag at their next poll,
	 * which a signal interrupts whatever the flags. */
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* Symbolization reads local files only: never fetch debug info. */
	unsetenv("DEBUGINFOD_URLS");
	verbose_libbpf = a->cfg.verbose;
	libbpf_set_print(libbpf_print);
	err = source_open(&a->src, &a->cfg, a->has_child ? &a->child : NULL,
			  output_http_wanted(&a->cfg), &attach_failed);
	if (err) {
		if (!attach_failed)
			return EXIT_RUNTIME;
		return err == -EPERM || err == -EACCES ? EXIT_PERM
						       : EXIT_TARGET;
	}
	fprintf(stderr, "memtop: tracing");
	if (source_system_wide(a->src))
		fprintf(stderr,
			a->cfg.growth
				? " every process"
				: " every process (allocations from now on)");
	else if (a->has_child)
		fprintf(stderr, " %s (pid %d)", a->cfg.command[0],
			a->child.pid);
	for (int i = 0; i < a->cfg.npids && !a->has_child; i++)
		fprintf(stderr, "%s %d", i ? "," : " pid", a->cfg.pids[i]);
	if (a->cfg.growth)
		fprintf(stderr, "%s: %s\n",
			a->cfg.follow ? " and its children" : "",
			SNAP_GROWTH_LABEL);
	else
		fprintf(stderr, "%s: %d probes attached\n",
			a->cfg.follow ? " and its children" : "",
			source_nprobes(a->src));
	if (a->has_child) {
		err = launch_release(&a->child);
		if (err) {
			fprintf(stderr, "memtop: cannot run %s: %s\n",
				a->cfg.command[0], strerror(-err));
			return err == -ENOENT ? 127 : 126;
		}
	}
	return CONTINUE;
}

/* Refreshes until a signal, -n, or the targets are gone. */
static int run(struct app *a)
{
	struct loop_opts lo = {.interval_s = a->cfg.interval_s,
			       .iterations = a->cfg.iterations,
			       .refresh = app_refresh,
			       .gone = app_gone,
			       .ctx = a};
	struct loop l;
	int err = 0;

	/* A daemon serving --listen without a terminal needs no screen. */
	lo.batch = a->cfg.batch ||
		   (output_http_wanted(&a->cfg) && !isatty(STDOUT_FILENO));
	if (!lo.batch) {
		bool system_wide = source_system_wide(a->src);
		struct tui_opts uo = {.no_color = a->cfg.no_color,
				      .sort = a->cfg.sort,
				      .reverse = a->cfg.reverse,
				      .system_wide = system_wide,
				      .process_list = system_wide ||
						      a->cfg.npids > 1 ||
						      a->cfg.follow};

		err = view_tui_run(a->src, &lo, &uo, &stop_flag);
		if (err == -ENOSYS) /* no screen built in: fall back to text */
			lo.batch = true;
	}
	if (lo.batch) {
		loop_init(&l, &lo);
		err = loop_run(&l, NULL, &stop_flag);
	}
	/* Batch stops at once when an output fails, before looking. */
	if (!err && !(lo.batch && a->out_failed) && source_targets_gone(a->src))
		report_exits(a);
	if (err) {
		fprintf(stderr, "memtop: %s\n", strerror(-err));
		return EXIT_RUNTIME;
	}
	return a->out_failed ? EXIT_RUNTIME : EXIT_OK;
}

/* The last snapshot to the outputs, the command's status, detach. */
static int finish(struct app *a, int ret)
{
	if (a->has_child) {
		/* The command's status is memtop's once it has ended. */
		if (launch_reap(&a->child) && ret == EXIT_OK)
			ret = launch_exit_code(&a->child);
		else if (!a->child.reaped && a->child.go_fd >= 0)
			launch_abort(&a->child); /* never released: never ran */
	}
	for (int i = 0; i < NOUTPUTS; i++)
		if (a->out_open[i] && outputs[i]->close(a->out_ctx[i], a->snap))
			ret = EXIT_RUNTIME;
	source_close(a->src);
	return ret;
}

int main(int argc, char **argv)
{
	struct app a = {0};
	int ret;

	ret = preflight(&a, argc, argv);
	if (ret == CONTINUE)
		ret = open_source(&a);
	if (ret == CONTINUE)
		ret = run(&a);
	return finish(&a, ret);
}
