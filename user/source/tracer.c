/*
 * The tracer owns the BPF skeleton; its files share tracer_int.h, which
 * says which job each does. This one is the skeleton's lifecycle: open the
 * object, size its maps and set its read-only options, load it (again
 * without what the kernel refuses), attach the process tracepoints and the
 * sites iterator, start discovery for the targets or the whole system, run
 * the event thread (exec and fork events run discovery again, exit events
 * name the dead), and on close detach everything, the links' grace periods
 * overlapped.
 */
#include <errno.h>
#include <libelf.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "array.h"
#include "growth.h"
#include "memtop.skel.h"
#include "probes.h"
#include "tracer_int.h"

static int add_link(struct tracer *t, struct bpf_link *l)
{
	if (ARRAY_RESERVE(t->links, t->links_cap, (size_t)t->nlinks + 1))
		return -ENOMEM;
	t->links[t->nlinks++] = l;
	return 0;
}

/* Exec'd and forked processes may map allocators not probed yet. */
static int on_event(void *ctx, void *data, size_t len)
{
	struct tracer *t = ctx;
	const struct mt_event *e = data;

	if (len < sizeof(*e))
		return 0;
	if (e->type == MT_EV_EXIT) {
		struct comm_entry *c = &t->comms[e->tgid % NCOMMS];

		pthread_mutex_lock(&t->lock);
		c->tgid = e->tgid;
		memcpy(c->comm, e->comm, sizeof(c->comm));
		c->comm[sizeof(c->comm) - 1] = '\0';
		pthread_mutex_unlock(&t->lock);
	}
	if (e->type == MT_EV_EXEC || e->type == MT_EV_FORK) {
		pthread_mutex_lock(&t->lock);
		if (t->global || discover_has_set(t, e->tgid)) {
			if (!t->global || t->opts.filter)
				discover_unwind(t, e->tgid);
			discover_pid(t, e->tgid);
		}
		pthread_mutex_unlock(&t->lock);
	}
	return 0;
}

static void *event_thread(void *arg)
{
	struct tracer *t = arg;

	while (!t->stop_thread) {
		int err;

		/* The BPF side's clock (see clock_ns in memtop.bpf.c). */
		t->skel->bss->clock_ns = mono_ns();
		err = ring_buffer__poll(t->rb, 100);

		if (err < 0 && err != -EINTR)
			break;
		forget_sweep(t, false);
	}
	return NULL;
}

#define TRACEFS "/sys/kernel/tracing"

/*
 * The process and syscall programs are classic tracepoints, which libbpf
 * finds through tracefs: mount it where nobody has.
 */
static int tracefs_ready(void)
{
	int err;

	if (access(TRACEFS "/events", F_OK) == 0)
		return 0;
	if (mount("tracefs", TRACEFS, "tracefs", 0, NULL) == 0)
		return 0;
	err = -errno;
	fprintf(stderr, "memtop: cannot mount tracefs on %s: %s\n", TRACEFS,
		strerror(-err));
	return err;
}

/* Does sched_process_exit carry group_dead, at the offset on_exit reads? */
static bool exit_has_group_dead(void)
{
	FILE *f = fopen(TRACEFS "/events/sched/sched_process_exit/format", "r");
	char line[256];
	bool yes = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "bool group_dead;") &&
		    strstr(line, "offset:32;"))
			yes = true;
	fclose(f);
	return yes;
}

/* Does the raw tracepoint sched_process_exit pass group_dead, as its
 * second argument (its BTF prototype: void *, task, bool)? */
static bool exit_btf_has_group_dead(void)
{
	struct btf *btf = btf__load_vmlinux_btf();
	const struct btf_type *t;
	bool yes = false;
	int id;

	if (!btf)
		return false;
	id = btf__find_by_name_kind(btf, "btf_trace_sched_process_exit",
				    BTF_KIND_TYPEDEF);
	t = id > 0 ? btf__type_by_id(btf, id) : NULL;
	if (t)
		t = btf__type_by_id(btf, t->type); /* the pointer */
	if (t && btf_is_ptr(t))
		t = btf__type_by_id(btf, t->type);
	if (t && btf_is_func_proto(t) && btf_vlen(t) == 3) {
		const struct btf_type *a =
			btf__type_by_id(btf, btf_params(t)[2].type);

		yes = a && btf_is_int(a) && a->size == 1;
	}
	btf__free(btf);
	return yes;
}

/*
 * The process events and the anonymous mmap syscalls: with the kernel's BTF,
 * tp_btf programs and (where the kernel attaches them: fexit) programs on
 * the syscalls' functions, which the kernel skips only while the same
 * program runs on the CPU; else classic tracepoints, which it skips while
 * anything holds the CPU's bpf_prog_active (memtop's own map reads do).
 * Growth mode counts anonymous mmaps as faults like any memory: the mmap,
 * munmap and mremap programs stay out (a process switched to exact tracing
 * lacks that category).
 */
static void event_autoload(struct memtop_bpf *skel, bool btf, bool fexit,
			   bool growth)
{
	struct bpf_program *procs[] = {skel->progs.on_exec, skel->progs.on_exit,
				       skel->progs.on_fork};
	struct bpf_program *procs_btf[] = {skel->progs.on_exec_btf,
					   skel->progs.on_exit_btf,
					   skel->progs.on_fork_btf};
	struct bpf_program *anon[] = {
		skel->progs.anon_enter_mmap,   skel->progs.anon_exit_mmap,
		skel->progs.anon_enter_munmap, skel->progs.anon_exit_munmap,
		skel->progs.anon_enter_mremap, skel->progs.anon_exit_mremap};
	struct bpf_program *anon_fexit[] = {skel->progs.anon_mmap,
					    skel->progs.anon_munmap,
					    skel->progs.anon_mremap};

	fexit = btf && fexit;
	for (size_t i = 0; i < 3; i++) {
		bpf_program__set_autoload(procs[i], !btf);
		bpf_program__set_autoload(procs_btf[i], btf);
		bpf_program__set_autoload(anon_fexit[i], fexit && !growth);
	}
	for (size_t i = 0; i < sizeof(anon) / sizeof(anon[0]); i++)
		bpf_program__set_autoload(anon[i], !fexit && !growth);
}

/*
 * MEMTOP_VERIFIER_STATS=1: after the load, one stderr line per program with
 * what the verifier spent on it (instructions processed of its 1M limit,
 * states). How far each program is from the limit differs between kernels
 * (the same object took 505k instructions on one 6.18 build and over 1M on
 * another), so the tests check the headroom on the kernel they run on.
 */
#define VSTATS_LOG (1u << 20)

static char **vstats_arm(struct bpf_object *obj)
{
	struct bpf_program *prog;
	char **bufs;
	size_t n = 0, k = 0;

	if (!getenv("MEMTOP_VERIFIER_STATS"))
		return NULL;
	bpf_object__for_each_program(prog, obj) n++;
	bufs = calloc(n + 1, sizeof(*bufs));
	if (!bufs)
		return NULL;
	bpf_object__for_each_program(prog, obj)
	{
		bufs[k] = calloc(1, VSTATS_LOG);
		if (bufs[k] && bpf_program__autoload(prog)) {
			bpf_program__set_log_level(prog, 4);
			bpf_program__set_log_buf(prog, bufs[k], VSTATS_LOG);
		}
		k++;
	}
	return bufs;
}

static void vstats_print(struct bpf_object *obj, char **bufs)
{
	struct bpf_program *prog;
	size_t k = 0;

	if (!bufs)
		return;
	bpf_object__for_each_program(prog, obj)
	{
		const char *st = bufs[k] ? strstr(bufs[k], "processed ") : NULL;
		unsigned long insns, states;

		if (st && sscanf(st,
				 "processed %lu insns (limit %*u) "
				 "max_states_per_insn %*u total_states %lu",
				 &insns, &states) == 2)
			fprintf(stderr,
				"memtop: verifier: %s %lu insns %lu states\n",
				bpf_program__name(prog), insns, states);
		bpf_program__set_log_buf(prog, NULL, 0);
		free(bufs[k++]);
	}
	free(bufs);
}

/*
 * Open, configure and load the BPF object. The sites iterator is a tracing
 * program, which kernels without BTF (and sandboxes that deny tracing
 * programs) refuse, and the whole object with it: then load_bpf is tried
 * again without the iterator.
 */
static int load_bpf(struct tracer *t, const struct tracer_opts *o,
		    bool with_iter, bool task_storage, bool typed_events)
{
	char **vstats;
	int err;

	t->skel = memtop_bpf__open();
	if (!t->skel) {
		err = -errno;
		fprintf(stderr, "memtop: cannot open the BPF object: %s\n",
			strerror(-err));
		return err;
	}
	t->skel->rodata->self_tgid = getpid();
	t->skel->rodata->empty_programs = o->empty;
	t->skel->rodata->show_allocator = o->show_allocator;
	t->skel->rodata->python_native = o->python_native;
	t->skel->rodata->nr_cpus = (__u32)(t->ncpus > 0 ? t->ncpus : 1);
	{
		/* 1024 hint buckets a CPU (bpf/pending.bpf.h: pend_hints): a
		 * free of a block in no slot finds its bucket empty but for
		 * one in 1024. */
		__u32 nb = 4096;

		while (nb < (1u << 20) && nb < 1024u * t->skel->rodata->nr_cpus)
			nb <<= 1;
		bpf_map__set_max_entries(t->skel->maps.pend_hints, nb);
		t->skel->rodata->pend_hint_mask = nb - 1;
	}
	t->skel->rodata->filter_targets = o->filter;
	t->skel->rodata->system_wide = o->npids == 0;
	t->skel->rodata->follow_forks = o->follow;
	t->skel->rodata->min_size = o->min_size;
	if (o->depth)
		t->skel->rodata->max_depth = o->depth;
	t->skel->rodata->sample_every = o->sample_every;
	t->skel->rodata->python_frames = o->python != PYTHON_OFF;
	t->skel->rodata->growth_mode = o->growth;
	growth_autoload(t->skel, o->growth);
	event_autoload(t->skel, typed_events, t->fexit, o->growth);
	t->skel->rodata->exit_has_group_dead =
		typed_events ? exit_btf_has_group_dead()
			     : exit_has_group_dead();
	bpf_program__set_autoload(t->skel->progs.dump_sites, with_iter);
	t->skel->rodata->task_storage = task_storage;
	/* The hash needs no room where task storage serves. */
	if (task_storage)
		bpf_map__set_max_entries(t->skel->maps.inflight, 1);
	if (o->max_allocs)
		bpf_map__set_max_entries(t->skel->maps.live, o->max_allocs);
	if (o->max_stacks) {
		bpf_map__set_max_entries(t->skel->maps.sites, o->max_stacks);
		bpf_map__set_max_entries(t->skel->maps.stacks, o->max_stacks);
		bpf_map__set_max_entries(t->skel->maps.stacks_short,
					 o->max_stacks);
		bpf_map__set_max_entries(t->skel->maps.py_stacks,
					 o->max_stacks);
		bpf_map__set_max_entries(t->skel->maps.gc_sites, o->max_stacks);
	}
	if (t->uprobe_multi) {
		bpf_program__set_expected_attach_type(
			t->skel->progs.alloc_enter, MT_BPF_TRACE_UPROBE_MULTI);
		bpf_program__set_expected_attach_type(
			t->skel->progs.alloc_exit, MT_BPF_TRACE_UPROBE_MULTI);
	}
	{
		struct bpf_program *sp[] = {t->skel->progs.py_alloc_session,
					    t->skel->progs.py_realloc_session};

		for (size_t i = 0; i < sizeof(sp) / sizeof(sp[0]); i++)
			if (t->session)
				bpf_program__set_expected_attach_type(
					sp[i], MT_BPF_TRACE_UPROBE_SESSION);
			else
				bpf_program__set_autoload(sp[i], false);
	}
	vstats = vstats_arm(t->skel->obj);
	err = memtop_bpf__load(t->skel);
	vstats_print(t->skel->obj, vstats);
	return err;
}

int tracer_open(struct tracer **out, const struct tracer_opts *o)
{
	struct tracer *t;
	int err;

	*out = NULL;
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -EINVAL;
	err = discover_precheck(o);
	if (err)
		return err;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	pthread_mutex_init(&t->sweep_lock, NULL);
	t->opts = *o;
	t->global = o->npids == 0 || o->filter;
	if (t->global) {
		t->sets = calloc(1, sizeof(*t->sets));
		if (!t->sets) {
			err = -ENOMEM;
			goto cleanup;
		}
		t->sets[0].pid = -1;
		t->nsets = 1;
	}
	t->ncpus = libbpf_num_possible_cpus();
	if (t->ncpus <= 0) {
		err = t->ncpus ? t->ncpus : -EINVAL;
		goto cleanup;
	}
	t->percpu = calloc(t->ncpus, sizeof(uint64_t));
	if (!t->percpu) {
		err = -ENOMEM;
		goto cleanup;
	}
	err = tracefs_ready();
	if (err)
		goto cleanup;
	t->uprobe_multi = probes_have_uprobe_multi();
	t->session = t->uprobe_multi && o->python != PYTHON_OFF &&
		     probes_have_uprobe_session();
	if (t->session) {
		pid_t py = 0;

		/* Their verifier runs are most of the load (~6 s of 12 here):
		 * not for targets that cannot run CPython. One that execs it
		 * later gets pymalloc probed without sessions (same figures,
		 * more traps). */
		t->session = discover_python_possible(o, &py);
		if (o->verbose && t->session && py)
			fprintf(stderr,
				"memtop: pid %d maps a CPython runtime: "
				"loading the uprobe session programs\n",
				py);
		else if (o->verbose && !t->session)
			fprintf(stderr,
				"memtop: not loading the uprobe session "
				"programs (py_alloc_session, "
				"py_realloc_session): no target maps a CPython "
				"runtime\n");
	}
	if (!t->uprobe_multi && o->verbose)
		fprintf(stderr, "memtop: no uprobe_multi links (Linux 6.6 has "
				"them): a perf-event uprobe per function\n");
	{
		/* What the kernel may refuse, most wanted first: the sites
		 * iterator (a tracing program), then the typed process and
		 * mmap events (tracing programs too), then task storage (it
		 * needs the kernel's BTF). */
		static const bool tries[][3] = {{true, true, true},
						{false, true, true},
						{false, true, false},
						{false, false, false}};
		bool btf = access("/sys/kernel/btf/vmlinux", R_OK) == 0;
		bool iter = btf && probes_have_map_iter();

		/* Not in a try of its own: a failed load costs seconds. */
		t->fexit = btf && !o->growth &&
			   probes_have_fexit("__x64_sys_mmap");

		err = -EINVAL;
		for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
			if (!btf && (tries[i][0] || tries[i][1] || tries[i][2]))
				continue;
			if (!iter && tries[i][0])
				continue;
			memtop_bpf__destroy(t->skel);
			t->skel = NULL;
			err = load_bpf(t, o, tries[i][0], tries[i][1],
				       tries[i][2]);
			if (!err) {
				if (o->verbose)
					fprintf(stderr,
						"memtop: sites iterator %s, "
						"per-thread state in %s, "
						"process and mmap events from "
						"%s\n",
						tries[i][0]
							? "on"
							: "off (batch lookup)",
						tries[i][1] ? "task storage"
							    : "a hash",
						!tries[i][2]
							? "classic tracepoints"
						: t->fexit
							? "tp_btf and fexit"
							: "tp_btf and classic "
							  "syscall "
							  "tracepoints");
				break;
			}
			/* The session program last: without it pymalloc's
			 * returns are probed as every other allocator's. */
			if (t->session &&
			    i + 1 == sizeof(tries) / sizeof(tries[0])) {
				t->session = false;
				i = (size_t)-1;
				if (o->verbose)
					fprintf(stderr,
						"memtop: loading again without "
						"the uprobe session program\n");
			}
		}
	}
	if (err) {
		fprintf(stderr, "memtop: cannot load the BPF programs: %s\n",
			strerror(-err));
		goto cleanup;
	}
	t->skel->bss->clock_ns = mono_ns();
	/* Process events first, so nothing exec'd meanwhile is missed. */
	{
		struct bpf_program *tps[] = {t->skel->progs.on_exec,
					     t->skel->progs.on_exit,
					     t->skel->progs.on_fork,
					     t->skel->progs.anon_enter_mmap,
					     t->skel->progs.anon_exit_mmap,
					     t->skel->progs.anon_enter_munmap,
					     t->skel->progs.anon_exit_munmap,
					     t->skel->progs.anon_enter_mremap,
					     t->skel->progs.anon_exit_mremap,
					     t->skel->progs.on_exec_btf,
					     t->skel->progs.on_exit_btf,
					     t->skel->progs.on_fork_btf,
					     t->skel->progs.anon_mmap,
					     t->skel->progs.anon_munmap,
					     t->skel->progs.anon_mremap};

		for (size_t i = 0; i < sizeof(tps) / sizeof(tps[0]); i++) {
			struct bpf_link *l;

			if (!bpf_program__autoload(tps[i]))
				continue; /* not for this mode */
			l = bpf_program__attach(tps[i]);
			err = l ? add_link(t, l) : -errno;
			if (err) {
				fprintf(stderr,
					"memtop: cannot attach %s to its "
					"tracepoint: %s\n",
					bpf_program__name(tps[i]),
					strerror(-err));
				goto cleanup;
			}
		}
	}
	{
		union bpf_iter_link_info li = {
			.map.map_fd = (__u32)bpf_map__fd(t->skel->maps.sites)};
		LIBBPF_OPTS(bpf_iter_attach_opts, io, .link_info = &li,
			    .link_info_len = sizeof(li));

		/* Without it the batch lookup serves, only slower. */
		t->sites_iter =
			bpf_program__autoload(t->skel->progs.dump_sites)
				? bpf_program__attach_iter(
					  t->skel->progs.dump_sites, &io)
				: NULL;
		t->iter_buf = t->sites_iter ? malloc(ITER_BUF) : NULL;
	}
	t->rb = ring_buffer__new(bpf_map__fd(t->skel->maps.events), on_event, t,
				 NULL);
	if (!t->rb) {
		err = -errno;
		fprintf(stderr,
			"memtop: cannot open the event ring buffer: %s\n",
			strerror(-err));
		goto cleanup;
	}
	if (o->max_unwind_bytes) {
		struct unwinder_opts uo = {
			.tables_fd = bpf_map__fd(t->skel->maps.unwind_tables),
			.procs_fd = bpf_map__fd(t->skel->maps.unwind_procs),
			.max_bytes = o->max_unwind_bytes,
			.verbose = o->verbose,
		};

		err = unwinder_new(&t->uw, &uo);
		if (err)
			goto cleanup;
	}
	for (int i = 0; i < o->npids; i++) {
		__u8 one = 1;

		/* Also for -p alone: its execs and exits are watched. */
		if (bpf_map_update_elem(bpf_map__fd(t->skel->maps.targets),
					&o->pids[i], &one, BPF_ANY)) {
			err = -errno;
			goto cleanup;
		}
		err = o->growth ? 0 : discover_target(t, o->pids[i]);
		if (o->growth) {
			/* Faults inside code without frame pointers (the C
			 * library, the allocator) reach their callers. */
			discover_unwind(t, o->pids[i]);
			discover_pid(t, o->pids[i]); /* CPython frames only */
		}
		if (err)
			goto cleanup;
	}
	if (o->growth) {
		/* No allocator probes: the fault programs, and for the system
		 * the CPython processes found (and later exec'd). */
		err = growth_attach(t->skel, t->ncpus, &t->growth);
		if (err)
			goto cleanup;
		if (o->npids == 0 && o->python != PYTHON_OFF)
			discover_system(t);
	} else if (o->npids == 0) {
		err = discover_system(t);
		if (!err)
			err = discover_libs(t, -1);
		if (err < 0) {
			fprintf(stderr, "memtop: cannot probe the system: %s\n",
				strerror(-err));
			goto cleanup;
		}
		err = 0;
	} else if (o->filter) {
		/* A command started by memtop is a copy of memtop until it
		 * execs: probe memtop's own allocator for it too. */
		err = discover_pid(t, getpid());
		if (err < 0)
			goto cleanup;
		err = 0;
	}
	err = pthread_create(&t->thread, NULL, event_thread, t);
	if (err) {
		err = -err;
		goto cleanup;
	}
	t->thread_running = true;
	*out = t;
	return 0;
cleanup:
	tracer_close(t);
	return err;
}

int tracer_nprobes(const struct tracer *t)
{
	return t->nprobes;
}

struct destroy_job {
	struct bpf_link **links;
	int n;
};

static void *destroy_thread(void *arg)
{
	struct destroy_job *j = arg;

	for (int i = 0; i < j->n; i++)
		bpf_link__destroy(j->links[i]);
	return NULL;
}

/*
 * Detaching a uprobe waits for an RCU-tasks grace period (~0.1 s here), one
 * link after another: 50 probes took 6 s. Closing them from parallel threads
 * lets the waits overlap, so memtop exits promptly.
 */
static void destroy_links(struct bpf_link **links, int n)
{
	enum { NTHREADS = 32 };
	struct destroy_job jobs[NTHREADS];
	pthread_t tids[NTHREADS];
	bool started[NTHREADS] = {false};
	int per = (n + NTHREADS - 1) / NTHREADS, k = 0;

	for (int i = 0; i < n; i += per, k++) {
		jobs[k].links = links + i;
		jobs[k].n = i + per <= n ? per : n - i;
		started[k] = !pthread_create(&tids[k], NULL, destroy_thread,
					     &jobs[k]);
		if (!started[k])
			destroy_thread(&jobs[k]);
	}
	for (int i = 0; i < k; i++)
		if (started[i])
			pthread_join(tids[i], NULL);
}

/* Each uprobe_multi link waits for one grace period on close: overlap them. */
static void *close_thread(void *arg)
{
	close((int)(intptr_t)arg);
	return NULL;
}

void tracer_close_fds(int *fds, int n)
{
	pthread_t tids[64];
	bool started[64];
	int k = 0;

	while (k < n) {
		int m = n - k < 64 ? n - k : 64;

		for (int i = 0; i < m; i++)
			started[i] =
				!pthread_create(&tids[i], NULL, close_thread,
						(void *)(intptr_t)fds[k + i]);
		for (int i = 0; i < m; i++) {
			if (started[i])
				pthread_join(tids[i], NULL);
			else
				close(fds[k + i]);
		}
		k += m;
	}
}

/* The samples count the kernel's recursion misses as lost events, all
 * programs together; which program missed says what ran in its way (a
 * tracepoint program's misses come from another BPF program, or a bpf()
 * map operation, holding the CPU's bpf_prog_active). One line each, at
 * the end, when the counts are final. */
static void report_misses(struct tracer *t)
{
	struct bpf_program *prog;

	if (!t->skel || !t->skel->obj)
		return;
	bpf_object__for_each_program(prog, t->skel->obj)
	{
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		int fd = bpf_program__fd(prog);

		if (fd < 0 || prog == t->skel->progs.growth_thp ||
		    bpf_obj_get_info_by_fd(fd, &info, &len) ||
		    !info.recursion_misses)
			continue;
		fprintf(stderr,
			"memtop: %s missed %llu runs (recursion: another "
			"BPF program was running on its CPU)\n",
			bpf_program__name(prog),
			(unsigned long long)info.recursion_misses);
	}
}

void tracer_close(struct tracer *t)
{
	if (!t)
		return;
	if (t->thread_running) {
		t->stop_thread = true;
		pthread_join(t->thread, NULL);
	}
	ring_buffer__free(t->rb);
	growth_detach(t->growth);
	for (int i = 0; i < t->nsets; i++)
		free(t->sets[i].ids);
	free(t->sets);
	pyprobes_close(t);
	tracer_close_fds(t->fds, t->nfds);
	free(t->fds);
	free(t->fd_pids);
	free(t->retired);
	destroy_links(t->links, t->nlinks);
	free(t->links);
	bpf_link__destroy(t->sites_iter);
	report_misses(t);
	unwinder_free(t->uw);
	free(t->uw_prev);
	free(t->py_pids);
	free(t->go_pids);
	memtop_bpf__destroy(t->skel);
	free(t->percpu);
	bpfmap_buf_free(&t->batch);
	bpfmap_buf_free(&t->sweep_batch);
	pthread_mutex_destroy(&t->sweep_lock);
	free(t->iter_buf);
	free(t);
}
