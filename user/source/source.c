/*
 * The source's one refresh: tracer read -> /proc -> filters -> collector
 * update -> snapshot. It also owns the life of what is traced: processes
 * shown exited in one snapshot are forgotten (maps, model, symbolizer) before
 * the next, and processes -u/--comm filter out are forgotten from the maps
 * as soon as they die, so the maps never fill with the dead.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "array.h"
#include "wrappers.h"
#include "collector.h"
#include "procfs.h"
#include "python.h"
#include "python/objects.h"
#include "source.h"
#include "symbolizer.h"
#include "tracer.h"

/*
 * A process's RSS when memtop attached (when its faults and allocations
 * began to count), and its start time, which tells a reused pid apart.
 */
struct rss_seed {
	uint32_t pid;
	bool used; /* handed to the model once */
	uint64_t start, rss;
};

struct source {
	const struct config *cfg;
	struct tracer *tracer;
	struct symbolizer *sym;
	struct wrappers *skip; /* allocator wrappers, for site names */
	struct collector *coll;
	struct launch *child; /* -- COMMAND, or NULL */
	bool self_cost;
	bool system_wide; /* no -p, no command: keep running as processes go */
	bool targets_gone;
	struct raw_sample raw;
	const struct snapshot *snap;
	uint32_t
		*forget; /* exited processes shown once, dropped next refresh */
	int nforget;
	size_t forget_cap;
	uint32_t *filtered; /* dead processes -u/--comm left out, to forget */
	size_t filtered_cap;
	struct objects
		*objs; /* objects by type: --types, or the live view's key */
	bool types_on;
	struct rss_seed *seeds; /* by pid */
	size_t nseeds, seeds_cap;
};

static int hook_stack(void *ctx, const struct mt_site_key *key,
		      struct mt_stack *out)
{
	struct source *s = ctx;
	struct mt_py_stack py;
	int err = tracer_stack(s->tracer, key, out);

	/* Python frames where the evaluation loop's frames are. */
	if (!err && s->cfg->python != PYTHON_OFF &&
	    !tracer_pystack(s->tracer, key, &py))
		python_splice((pid_t)key->tgid, out, &py);
	return err;
}

static int hook_symbolize(void *ctx, uint32_t pid, uint64_t ip,
			  struct sym_info *out)
{
	if (ip & MT_IP_INTERP_TAG) /* a Python frame */
		return python_symbolize((pid_t)pid, ip, out);
	return symbolizer_resolve(((struct source *)ctx)->sym, (pid_t)pid, ip,
				  out);
}

static int seed_add(struct source *s, uint32_t pid, bool from_zero)
{
	struct rss_seed *e;
	uint64_t start, rss;

	if (procfs_start_rss((pid_t)pid, &start, &rss))
		return 0; /* gone, or not ours to read: first seen instead */
	if (ARRAY_RESERVE(s->seeds, s->seeds_cap, s->nseeds + 1))
		return -ENOMEM;
	e = &s->seeds[s->nseeds++];
	*e = (struct rss_seed){.pid = pid, .start = start};
	/* A command memtop started: everything it maps comes after. */
	e->rss = from_zero ? 0 : rss;
	return 0;
}

static int cmp_seed(const void *a, const void *b)
{
	const struct rss_seed *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

/*
 * RSS "since attach" counts from the moment TOUCHED and the allocation
 * counts do: read now, right after the attach, for the named targets (or
 * every process, system-wide), not at the first sample, which comes an
 * interval later (seconds of growth that TOUCHED has and RSS would not).
 */
static int seeds_read(struct source *s)
{
	const struct config *cfg = s->cfg;
	struct dirent *de;
	int err = 0;
	DIR *d;

	if (cfg->npids) {
		for (int i = 0; i < cfg->npids && !err; i++)
			err = seed_add(s, (uint32_t)cfg->pids[i],
				       s->child &&
					       cfg->pids[i] == s->child->pid);
	} else {
		d = opendir("/proc");
		if (!d)
			return 0;
		while (!err && (de = readdir(d))) {
			char *end;
			unsigned long pid = strtoul(de->d_name, &end, 10);

			if (*end || !pid || pid > UINT32_MAX)
				continue;
			err = seed_add(s, (uint32_t)pid, false);
		}
		closedir(d);
	}
	if (s->nseeds)
		qsort(s->seeds, s->nseeds, sizeof(*s->seeds), cmp_seed);
	return err;
}

/* The attach's RSS for p, once, if p is the process that was there. */
static void seed_apply(struct source *s, struct raw_proc *p)
{
	struct rss_seed key = {.pid = p->tgid}, *e;
	uint64_t start, rss;

	if (!s->nseeds)
		return;
	e = bsearch(&key, s->seeds, s->nseeds, sizeof(*s->seeds), cmp_seed);
	if (!e || e->used)
		return;
	e->used = true;
	if (procfs_start_rss((pid_t)p->tgid, &start, &rss) || start != e->start)
		return;
	p->has_rss_base = true;
	p->rss_base = e->rss;
}

int source_open(struct source **out, const struct config *cfg,
		struct launch *child, bool self_cost, bool *attach_failed)
{
	struct collector_opts copts = {0};
	struct collector_hooks hooks;
	struct tracer_opts topts = {0};
	struct source *s;
	int err;

	*out = NULL;
	*attach_failed = false;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = cfg;
	s->child = child;
	s->self_cost = self_cost;
	s->system_wide = !cfg->npids;
	topts.pids = cfg->pids;
	topts.npids = cfg->npids;
	topts.libs = cfg->libs;
	topts.nlibs = cfg->nlibs;
	topts.max_allocs = cfg->max_allocs;
	topts.max_stacks = cfg->max_stacks;
	topts.max_unwind_bytes = (uint64_t)cfg->max_unwind_mb << 20;
	topts.verbose = cfg->verbose;
	topts.entry_probes = cfg->entry_probes;
	topts.show_allocator = cfg->show_allocator;
	topts.python_native = cfg->python_native;
	topts.empty = cfg->bench_empty;
	/* Growth mode probes nothing per process: -p is a filter too. */
	topts.filter = child || cfg->follow || (cfg->growth && cfg->npids);
	topts.growth = cfg->growth;
	topts.follow = cfg->follow;
	topts.min_size = cfg->min_size;
	topts.depth = cfg->depth;
	topts.sample_every = cfg->sample_every;
	topts.reclaim_ns = (uint64_t)(cfg->reclaim_s * 1e9);
	topts.python = cfg->python;
	err = tracer_open(&s->tracer, &topts);
	if (err) {
		*attach_failed = true;
		goto cleanup;
	}
	err = seeds_read(s);
	if (err)
		goto cleanup;
	err = symbolizer_new(&s->sym);
	if (err) {
		fprintf(stderr, "memtop: cannot start the symbolizer: %s\n",
			strerror(-err));
		goto cleanup;
	}
	copts.start_ns = mono_ns();
	copts.sort = cfg->sort;
	copts.reverse = cfg->reverse;
	copts.function_frame = cfg->show_allocator ? 1 : 0;
	copts.scale = cfg->sample_every;
	copts.min_size = cfg->min_size;
	copts.depth = cfg->depth;
	copts.growth = cfg->growth;
	{
		char msg[256];

		err = wrappers_new(&s->skip, cfg->skip_frames,
				   cfg->nskip_frames, msg, sizeof(msg));
		if (err) {
			fprintf(stderr, "memtop: %s\n", msg);
			goto cleanup;
		}
		copts.skip = s->skip;
	}
	hooks.ctx = s;
	hooks.stack = hook_stack;
	hooks.symbolize = hook_symbolize;
	err = collector_new(&s->coll, &copts, &hooks);
	if (err)
		goto cleanup;
	*out = s;
	return 0;
cleanup:
	source_close(s);
	return err;
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
static void forget_dead(struct source *s)
{
	const struct config *cfg = s->cfg;

	s->nforget = 0;
	if (!s->system_wide && !cfg->follow)
		return;
	for (int i = 0; i < s->snap->nprocs; i++) {
		const struct snap_proc *p = &s->snap->procs[i];
		bool named = false;

		for (int k = 0; k < cfg->npids; k++)
			named |= (uint32_t)cfg->pids[k] == p->pid;
		if (p->alive || named)
			continue;
		if (ARRAY_RESERVE(s->forget, s->forget_cap,
				  (size_t)s->nforget + 1))
			return;
		s->forget[s->nforget++] = p->pid;
	}
	/* Shown exited in the last snapshot: gone from this one on. */
	tracer_forget_many(s->tracer, s->forget, (size_t)s->nforget);
	for (int i = 0; i < s->nforget; i++) {
		collector_forget(s->coll, s->forget[i]);
		symbolizer_forget(s->sym, (pid_t)s->forget[i]);
		if (s->objs)
			objects_forget(s->objs, s->forget[i]);
	}
}

static void live_block(void *ctx, uint32_t tgid, uint64_t addr, uint64_t size,
		       uint64_t stack_id)
{
	objects_block(ctx, tgid, addr, size, stack_id);
}

/* Objects by type: the live blocks, their headers read where new. */
static int read_types(struct source *s)
{
	int err;

	if (!s->objs) {
		err = objects_new(&s->objs, s->cfg->types_max);
		if (err)
			return err;
	}
	objects_begin(s->objs);
	err = tracer_read_live(s->tracer, live_block, s->objs);
	if (err) {
		fprintf(stderr, "memtop: cannot read the live blocks: %s\n",
			strerror(-err));
		return err;
	}
	return objects_end(s->objs, &s->raw);
}

void source_set_types(struct source *s, bool on)
{
	s->types_on = on || s->cfg->types;
}

int source_refresh(struct source *s, const struct snapshot **out)
{
	const struct config *cfg = s->cfg;
	bool any_alive = false;
	int err;

	if (s->snap)
		forget_dead(s);
	if (s->child)
		launch_reap(s->child);
	sample_reset(&s->raw);
	err = tracer_read(s->tracer, &s->raw);
	if (err)
		return err;
	for (int i = 0; i < cfg->npids; i++) {
		struct raw_proc *p = sample_add_proc(&s->raw, cfg->pids[i]);

		if (!p)
			return -ENOMEM;
	}
	for (size_t i = 0; i < s->raw.nprocs; i++) {
		struct raw_proc *p = &s->raw.procs[i];

		procfs_fill(p);
		any_alive |= p->alive;
		if (p->alive)
			seed_apply(s, p);
		/* CPython: how often its cyclic collector ran. */
		if (p->alive &&
		    !python_gc_collections((pid_t)p->tgid, &p->gc_collections))
			p->has_gc = true;
		/* A command that ended before /proc was read keeps a name. */
		if (!p->comm[0] && s->child &&
		    p->tgid == (uint32_t)s->child->pid) {
			const char *b = strrchr(cfg->command[0], '/');

			snprintf(p->comm, sizeof(p->comm), "%.15s",
				 b ? b + 1 : cfg->command[0]);
		}
	}
	if (s->types_on || cfg->types) {
		err = read_types(s);
		if (err)
			return err;
	}
	if (cfg->has_uid || cfg->comm) {
		/* Filtered-out processes never reach the model: drop the dead
		 * ones from the maps here, or they would fill up; all in one
		 * walk of each map (a walk per process, system-wide with the
		 * sites map full, took a refresh minutes). */
		size_t n = 0;

		for (size_t i = 0; i < s->raw.nprocs; i++) {
			const struct raw_proc *p = &s->raw.procs[i];

			if (p->alive || keep_proc((void *)cfg, p))
				continue;
			if (ARRAY_RESERVE(s->filtered, s->filtered_cap, n + 1))
				break;
			s->filtered[n++] = p->tgid;
			symbolizer_forget(s->sym, (pid_t)p->tgid);
		}
		tracer_forget_many(s->tracer, s->filtered, n);
		err = sample_filter(&s->raw, keep_proc, (void *)cfg);
		if (err)
			return err;
	}
	if (s->self_cost)
		procfs_self_cost(&s->raw.self_cpu_s, &s->raw.self_kernel_bytes);
	err = collector_update(s->coll, &s->raw, &s->snap);
	if (err)
		return err;
	s->targets_gone = !s->system_wide && !any_alive;
	*out = s->snap;
	return 0;
}

const struct snapshot *source_snapshot(struct source *s)
{
	s->snap = collector_snapshot(s->coll);
	return s->snap;
}

void source_set_sort(struct source *s, enum sort_field f, bool reverse)
{
	collector_set_sort(s->coll, f, reverse);
}

void source_set_baseline(struct source *s, bool on)
{
	collector_set_baseline(s->coll, on);
}

void source_set_collapse(struct source *s, bool on)
{
	collector_set_collapse(s->coll, on);
}

bool source_has_site(struct source *s, uint32_t pid, uint64_t stack_id)
{
	return collector_has_site(s->coll, pid, stack_id);
}

bool source_growth(const struct source *s)
{
	return s->cfg->growth;
}

int source_set_exact(struct source *s, uint32_t pid, bool on)
{
	if (!s->cfg->growth)
		return -EOPNOTSUPP;
	return tracer_set_exact(s->tracer, pid, on);
}

bool source_targets_gone(const struct source *s)
{
	return s->targets_gone;
}

bool source_system_wide(const struct source *s)
{
	return s->system_wide;
}

int source_nprobes(const struct source *s)
{
	return tracer_nprobes(s->tracer);
}

void source_close(struct source *s)
{
	if (!s)
		return;
	/* The tracer first: its event thread scans exec'd processes with
	 * the Python state and the unwinder until it is joined. */
	tracer_close(s->tracer);
	free(s->forget);
	free(s->filtered);
	free(s->seeds);
	objects_free(s->objs);
	collector_free(s->coll);
	wrappers_free(s->skip);
	symbolizer_free(s->sym);
	python_free_all();
	sample_free(&s->raw);
	free(s);
}
