/*
 * Unit tests of the collector (raw samples -> snapshots), without root or
 * BPF: fake stack and symbolize hooks stand in for the tracer and the
 * symbolizer, and hand-made raw samples, one second apart, are folded in.
 * Checks rows, rates, growth, trends, suspects, process totals, sorting,
 * the baseline, collapsing, placeholders for missing stacks and names, and
 * a 10k-site sample. Prints one line per check; exits non-zero on failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/types.h>
#include "collector.h"
#include "sample.h"
#include "snapshot.h"

#include "check.h"

static void check_i64(int64_t got, int64_t want, const char *what)
{
	if (got == want)
		check(1, "%s: %" PRId64, what, want);
	else
		check(0, "%s: got %" PRId64 ", want %" PRId64, what, got, want);
}

static void check_dbl(double got, double want, const char *what)
{
	if (fabs(got - want) <= 1e-6 * (fabs(want) + 1))
		check(1, "%s: %g", what, want);
	else
		check(0, "%s: got %g, want %g", what, got, want);
}

/* ---- fake hooks ---- */

#define ID_STACK_FAIL 0x999  /* the stack hook fails */
#define IP_NO_FUNC    0x77   /* symbolize: no function, module libx.so+0x10 */
#define IP_SYM_FAIL   0x66   /* symbolize fails */
#define ID_HUGE	      0x88   /* the stack hook claims more frames than fit */
#define IP_LIBC	      0x7000 /* symbolize: a function in libc.so.6 */
#define IP_GORT	      0x7100 /* symbolize: Go's runtime, in the app */

struct fake_stack {
	uint64_t id;
	int nr;
	uint64_t ips[4];
};

static const struct fake_stack stacks[] = {
	{0x10, 3, {0x100, 0x101, 0x102}}, /* G: growing */
	{0x20, 2, {0x300, 0x301}},	  /* F: flat */
	{0x30, 1, {0x200}},		  /* H: shrinking */
	{0x40, 2, {0x400, 0x401}},	  /* N: new after the baseline */
	{0x50, 2, {0x500, 0x501}},	  /* collapse: fn_500 */
	{0x51, 2, {0x500, 0x502}},	  /* collapse: fn_500 too */
	{0x52, 1, {0x600}},		  /* collapse: fn_600 */
	/* told apart: fn_500 again, called from fn_503 twice */
	{0x53, 3, {0x500, 0x503, 0x700}},
	{0x54, 3, {0x500, 0x503, 0x701}},
	{0x55, 2, {0x500, 0x503}}, /* and from fn_503 alone: nothing parts it */
	{0x77, 1, {IP_NO_FUNC}},
	{0x66, 2, {IP_SYM_FAIL, 0x101}},
	/* growth: a fault in libc's memset called from libc, from the app */
	{0x70, 3, {IP_LIBC, IP_LIBC + 1, 0x702}},
	/* growth in Go: memclr from mallocgc from the program, from the
	 * runtime (runtime.main); and a stack that is all runtime */
	{0x71, 4, {IP_GORT, IP_GORT + 1, 0x703, IP_GORT + 2}},
	{0x72, 3, {IP_GORT + 3, IP_GORT + 4, IP_GORT + 5}},
};

struct fake_ctx {
	long stack_calls, sym_calls;
	char func[64], file[16], module[16]; /* reused: the collector copies */
};

static int fake_stack_hook(void *ctx, const struct mt_site_key *key,
			   struct mt_stack *out)
{
	struct fake_ctx *f = ctx;

	f->stack_calls++;
	if (key->stack_id == 0)
		return -EINVAL; /* never asked: 0 means not captured */
	if (key->stack_id == ID_STACK_FAIL)
		return -ENOENT;
	memset(out, 0, sizeof(*out));
	if (key->stack_id == ID_HUGE) {
		out->nr = 1000;
		for (int i = 0; i < MEMTOP_MAX_FRAMES; i++)
			out->ips[i] = 0x1000 + i;
		return 0;
	}
	for (size_t i = 0; i < sizeof(stacks) / sizeof(stacks[0]); i++) {
		if (stacks[i].id != key->stack_id)
			continue;
		out->nr = stacks[i].nr;
		memcpy(out->ips, stacks[i].ips,
		       sizeof(stacks[i].ips[0]) * stacks[i].nr);
		return 0;
	}
	/* Any other id (the 10k sites): two frames derived from it. */
	out->nr = 2;
	out->ips[0] = key->stack_id * 16;
	out->ips[1] = key->stack_id * 16 + 1;
	return 0;
}

static int fake_sym_hook(void *ctx, uint32_t pid, uint64_t ip,
			 struct sym_info *out)
{
	struct fake_ctx *f = ctx;

	(void)pid;
	f->sym_calls++;
	memset(out, 0, sizeof(*out));
	if (ip == IP_SYM_FAIL)
		return -ESRCH;
	snprintf(f->module, sizeof(f->module), "%s",
		 ip == IP_NO_FUNC			? "libx.so"
		 : ip >= IP_LIBC && ip < IP_LIBC + 0x10 ? "libc.so.6"
							: "app");
	out->module = f->module;
	if (ip == IP_NO_FUNC) {
		out->offset = 0x10;
		return 0;
	}
	snprintf(f->func, sizeof(f->func),
		 ip >= IP_GORT && ip < IP_GORT + 0x10 ? "runtime.fn_%" PRIx64
						      : "fn_%" PRIx64,
		 ip);
	snprintf(f->file, sizeof(f->file), "f.c");
	out->func = f->func;
	out->file = f->file;
	out->line = (int)ip;
	out->offset = ip;
	return 0;
}

static struct fake_ctx fctx;

static struct collector *new_collector(int growth_window, int suspect_window)
{
	struct collector_opts o = {
		.sort = SORT_OUTSTANDING,
		.growth_window = growth_window,
		.suspect_window = suspect_window,
	};
	struct collector_hooks h = {
		.ctx = &fctx,
		.stack = fake_stack_hook,
		.symbolize = fake_sym_hook,
	};
	struct collector *c = NULL;
	int err = collector_new(&c, &o, &h);

	check(!err && c, "collector_new");
	if (!c) {
		printf("cannot continue\n");
		exit(1);
	}
	return c;
}

/* ---- raw sample helpers ---- */

#define T0  1000000000000ull /* mono_ns of the first sample */
#define SEC 1000000000ull

static void add_site(struct raw_sample *r, uint32_t pid, uint64_t id,
		     int64_t bytes, int64_t count, uint64_t allocs,
		     uint64_t frees)
{
	struct raw_site s;

	memset(&s, 0, sizeof(s));
	s.key.tgid = pid;
	s.key.stack_id = id;
	s.st.outstanding_bytes = bytes;
	s.st.outstanding_allocs = count;
	s.st.allocs = allocs;
	s.st.frees = frees;
	s.st.alloc_bytes = (uint64_t)bytes + frees * 10;
	s.st.free_bytes = frees * 10;
	s.st.first_ns = T0;
	s.st.last_ns = r->mono_ns;
	if (sample_add_site(r, &s)) {
		printf("out of memory\n");
		exit(1);
	}
}

static struct raw_proc *add_proc(struct raw_sample *r, uint32_t pid,
				 const char *comm, bool alive, bool has_stats)
{
	struct raw_proc *p = sample_add_proc(r, pid);

	if (!p) {
		printf("out of memory\n");
		exit(1);
	}
	p->alive = alive;
	p->has_stats = has_stats;
	snprintf(p->comm, sizeof(p->comm), "%s", comm);
	if (*comm)
		snprintf(p->cmdline, sizeof(p->cmdline), "./%s --run", comm);
	p->rss_bytes = alive ? 4u << 20 : 0;
	return p;
}

/* The process stats as the BPF side would sum them over its sites. */
static void proc_sum_sites(struct raw_sample *r, struct raw_proc *p)
{
	memset(&p->st, 0, sizeof(p->st));
	for (size_t i = 0; i < r->nsites; i++) {
		const struct mt_stats *s = &r->sites[i].st;

		if (r->sites[i].key.tgid != p->tgid)
			continue;
		p->st.outstanding_bytes += s->outstanding_bytes;
		p->st.outstanding_allocs += s->outstanding_allocs;
		p->st.allocs += s->allocs;
		p->st.frees += s->frees;
		p->st.alloc_bytes += s->alloc_bytes;
		p->st.free_bytes += s->free_bytes;
		p->st.first_ns = T0;
		p->st.last_ns = r->mono_ns;
	}
}

static const struct snap_site *find_site(const struct snapshot *s, uint32_t pid,
					 uint64_t id)
{
	for (int i = 0; i < s->nsites; i++)
		if (s->sites[i].pid == pid && s->sites[i].stack_id == id)
			return &s->sites[i];
	return NULL;
}

static const struct snap_site *find_func(const struct snapshot *s, uint32_t pid,
					 const char *func)
{
	for (int i = 0; i < s->nsites; i++)
		if (s->sites[i].pid == pid &&
		    !strcmp(s->sites[i].function, func))
			return &s->sites[i];
	return NULL;
}

static const struct snap_proc *find_proc(const struct snapshot *s, uint32_t pid)
{
	for (int i = 0; i < s->nprocs; i++)
		if (s->procs[i].pid == pid)
			return &s->procs[i];
	return NULL;
}

/* The sites' stack ids in snapshot order, e.g. "30,10,20". */
static const char *order(const struct snapshot *s)
{
	static char buf[256];
	size_t n = 0;

	buf[0] = '\0';
	for (int i = 0; i < s->nsites && n < sizeof(buf) - 20; i++)
		n += snprintf(buf + n, sizeof(buf) - n, "%s%" PRIx64,
			      i ? "," : "", s->sites[i].stack_id);
	return buf;
}

/* ---- main scenario: G grows, F is flat, H shrinks, one process ---- */

#define PID 100

static void main_sample(struct raw_sample *r, int t, bool with_n)
{
	struct raw_proc *p;

	sample_reset(r);
	r->mono_ns = T0 + (uint64_t)t * SEC;
	r->wall.tv_sec = 1700000000 + t;
	/* G: +1000 B and +10 allocs a second, nothing freed. */
	add_site(r, PID, 0x10, 1000 * (t + 1), 10 * (t + 1), 10 * (t + 1), 0);
	/* F: 100 allocs and 100 frees a second, 5000 B in one block. */
	add_site(r, PID, 0x20, 5000, 1, 100 * (t + 1), 100 * (t + 1) - 1);
	/* H: falls by 2000 B a second. */
	add_site(r, PID, 0x30, 20000 - 2000 * t, 2, 2, 0);
	if (with_n)
		add_site(r, PID, 0x40, 3000, 3, 3, 0);
	p = add_proc(r, PID, "app", true, true);
	proc_sum_sites(r, p);
}

static void test_main_scenario(void)
{
	struct raw_sample raw;
	const struct snapshot *s = NULL;
	const struct snap_site *g, *f, *h, *n;
	const struct snap_proc *p;
	struct collector *c = new_collector(3, 4);
	long calls;
	int err, t;

	printf("# main scenario\n");
	memset(&raw, 0, sizeof(raw));
	memset(&fctx, 0, sizeof(fctx));

	main_sample(&raw, 0, false);
	err = collector_update(c, &raw, &s);
	check(!err && s, "first update");
	if (!s)
		exit(1);
	check_i64((int64_t)s->seq, 1, "first seq");
	check_i64(s->nsites, 3, "first nsites");
	check_dbl(s->interval_s, 0, "first interval");
	check_dbl(s->elapsed_s, 0, "first elapsed");
	g = find_site(s, PID, 0x10);
	check(g && g->alloc_rate == 0 && g->growth_bps == 0,
	      "first sample: no rate, no growth (no interval yet)");
	check_str(order(s), "30,20,10", "first sample sorted by outstanding");
	calls = fctx.stack_calls;
	check_i64(calls, 3, "stack hook called once per site");

	for (t = 1; t <= 5; t++) {
		main_sample(&raw, t, false);
		err = collector_update(c, &raw, &s);
		if (err)
			break;
		if (t == 2) {
			g = find_site(s, PID, 0x10);
			check(g && !g->suspect,
			      "t=2: G not yet suspect (too few refreshes)");
		}
	}
	check(!err, "updates 1..5");
	check_i64(fctx.stack_calls, calls, "stacks not fetched again");
	check_i64((int64_t)s->seq, 6, "seq after 6 updates");
	check_dbl(s->interval_s, 1, "interval 1 s");
	check_dbl(s->elapsed_s, 5, "elapsed 5 s");
	check_i64(s->wall.tv_sec, 1700000005, "wall time copied");
	check_i64(s->nsites, 3, "nsites");

	g = find_site(s, PID, 0x10);
	f = find_site(s, PID, 0x20);
	h = find_site(s, PID, 0x30);
	check(g && f && h, "all three sites present");
	if (!g || !f || !h)
		exit(1);

	/* Rows: identity and frames. */
	check_str(g->site_id, "0000000000000010", "G site_id");
	check_str(g->function, "fn_100", "G function from frame 0");
	check_str(g->location, "f.c:256", "G location from frame 0");
	check_i64(g->nframes, 3, "G nframes");
	check(g->frames && g->frames[0].ip == 0x100 && g->frames[2].ip == 0x102,
	      "G frame ips innermost first");
	if (g->frames) {
		check_str(g->frames[1].func, "fn_101", "G frame 1 func");
		check_str(g->frames[2].location, "f.c:258",
			  "G frame 2 location");
		check_str(g->frames[0].module, "app", "G frame 0 module");
	}
	check_i64(f->nframes, 2, "F nframes");
	check_str(f->function, "fn_300", "F function");
	check_i64(h->nframes, 1, "H nframes");

	/* Cumulative values, rates, age. */
	check_i64(g->outstanding_bytes, 6000, "G outstanding");
	check_i64(g->outstanding_allocs, 60, "G count");
	check_i64((int64_t)g->allocs, 60, "G allocs");
	check_dbl(g->alloc_rate, 10, "G alloc rate (delta / dt)");
	check_dbl(g->free_rate, 0, "G free rate");
	check_dbl(f->alloc_rate, 100, "F alloc rate");
	check_dbl(f->free_rate, 100, "F free rate");
	check_dbl(h->alloc_rate, 0, "H alloc rate (no new calls)");
	check_dbl(g->age_s, 5, "G age");

	/* Growth over the 3-refresh window. */
	check_dbl(g->growth_bps, 1000, "G growth");
	check_dbl(f->growth_bps, 0, "F growth");
	check_dbl(h->growth_bps, -2000, "H growth");

	/* Trend, oldest first. */
	check_i64(g->ntrend, 6, "G ntrend");
	check(g->trend[0] == 1000 && g->trend[3] == 4000 && g->trend[5] == 6000,
	      "G trend 1000..6000 oldest first");
	check(f->ntrend == 6 && f->trend[0] == 5000 && f->trend[5] == 5000,
	      "F trend flat");

	/* Suspects. */
	check(g->suspect, "growing G is a suspect");
	check(!f->suspect, "flat F is not a suspect");
	check(!h->suspect, "shrinking H is not a suspect");

	/* Process and totals. */
	p = find_proc(s, PID);
	check(p != NULL, "process row");
	if (p) {
		check_str(p->comm, "app", "proc comm");
		check_str(p->cmdline, "./app --run", "proc cmdline");
		check(p->alive, "proc alive");
		check_i64(p->outstanding_bytes, 21000, "proc outstanding");
		check_i64(p->delta_bytes, -1000, "proc delta_bytes");
		check_i64(p->delta_allocs, 10, "proc delta_allocs");
		check_dbl(p->alloc_rate, 110, "proc alloc rate");
		check_dbl(p->free_rate, 100, "proc free rate");
		check_dbl(p->growth_bps, -1000, "proc growth");
		check_i64(p->ntrend, 6, "proc ntrend");
		check(p->trend[0] == 26000 && p->trend[5] == 21000,
		      "proc trend 26000..21000");
		check_i64(p->nsites, 3, "proc nsites");
		check_i64(p->nsuspects, 1, "proc nsuspects");
		check_i64((int64_t)p->rss_bytes, 4 << 20, "proc rss");
	}
	check_i64(s->nprocs, 1, "snapshot nprocs");
	check_i64(s->outstanding_bytes, 21000, "total outstanding");
	check_i64(s->outstanding_allocs, 63, "total count");
	check_i64((int64_t)s->allocs, 60 + 600 + 2, "total allocs");
	check_dbl(s->alloc_rate, 110, "total alloc rate");

	/* Sorting. At t=5: G 6000 B/60/+1000/fn_100, F 5000/1/0/fn_300,
	 * H 10000/2/-2000/fn_200. */
	check_str(order(s), "30,10,20", "sorted by outstanding");
	collector_set_sort(c, SORT_OUTSTANDING, true);
	check_str(order(s), "20,10,30", "outstanding reversed");
	collector_set_sort(c, SORT_COUNT, false);
	check_str(order(s), "10,30,20", "sorted by count");
	collector_set_sort(c, SORT_COUNT, true);
	check_str(order(s), "20,30,10", "count reversed");
	collector_set_sort(c, SORT_GROWTH, false);
	check_str(order(s), "10,20,30", "sorted by growth");
	collector_set_sort(c, SORT_GROWTH, true);
	check_str(order(s), "30,20,10", "growth reversed");
	collector_set_sort(c, SORT_FUNCTION, false);
	check_str(order(s), "10,30,20", "sorted by function (A-Z)");
	collector_set_sort(c, SORT_FUNCTION, true);
	check_str(order(s), "20,30,10", "function reversed");
	collector_set_sort(c, SORT_ALLOC_RATE, false);
	check_str(order(s), "20,10,30", "sorted by alloc rate");
	s = collector_snapshot(c);
	check_str(order(s), "20,10,30", "collector_snapshot keeps the sort");
	collector_set_sort(c, SORT_OUTSTANDING, false);

	/* Baseline at t=5; N appears at t=6. */
	collector_set_baseline(c, true);
	check(s->baseline, "baseline flag set at once");
	main_sample(&raw, 6, true);
	err = collector_update(c, &raw, &s);
	check(!err && s->baseline, "update with baseline");
	g = find_site(s, PID, 0x10);
	h = find_site(s, PID, 0x30);
	n = find_site(s, PID, 0x40);
	check(g && h && n, "baseline t=6: sites present (N new)");
	if (g && h && n) {
		check_dbl(g->growth_bps, 1000, "baseline t=6: G growth");
		check_dbl(h->growth_bps, -2000, "baseline t=6: H growth");
		check_dbl(
			n->growth_bps, 3000,
			"baseline t=6: new N grows from 0 since the baseline");
		check_str(n->function, "fn_400", "N function");
	}
	p = find_proc(s, PID);
	if (p)
		check_dbl(p->growth_bps, 2000, "baseline t=6: proc growth");
	main_sample(&raw, 7, true);
	err = collector_update(c, &raw, &s);
	g = find_site(s, PID, 0x10);
	f = find_site(s, PID, 0x20);
	n = find_site(s, PID, 0x40);
	check(!err && g && f && n, "baseline t=7");
	if (g && f && n) {
		check_dbl(g->growth_bps, 1000,
			  "baseline t=7: G (8000-6000)/2 s");
		check_dbl(f->growth_bps, 0, "baseline t=7: F");
		check_dbl(n->growth_bps, 1500, "baseline t=7: N 3000/2 s");
	}
	p = find_proc(s, PID);
	if (p)
		check_dbl(p->growth_bps, (22000 - 21000) / 2.0,
			  "baseline t=7: proc growth since baseline");

	/* Baseline off: back to the window. */
	collector_set_baseline(c, false);
	main_sample(&raw, 8, true);
	err = collector_update(c, &raw, &s);
	n = find_site(s, PID, 0x40);
	check(!err && !s->baseline && n, "baseline off");
	if (n)
		check_dbl(n->growth_bps, 0,
			  "baseline off: N growth is windowed");

	collector_free(c);
	sample_free(&raw);
}

/* ---- placeholders, hook failures, processes ---- */

static void test_placeholders(void)
{
	struct raw_sample raw;
	const struct snapshot *s = NULL;
	const struct snap_site *x;
	const struct snap_proc *p;
	struct raw_proc *rp;
	struct collector *c = new_collector(5, 8);
	int err;

	printf("# placeholders and processes\n");
	memset(&raw, 0, sizeof(raw));
	memset(&fctx, 0, sizeof(fctx));

	raw.mono_ns = T0;
	add_site(&raw, 200, ID_STACK_FAIL, 100, 1, 1, 0);
	add_site(&raw, 200, 0, 200, 2, 2, 0);
	add_site(&raw, 200, 0x77, 300, 3, 3, 0);
	add_site(&raw, 200, 0x66, 400, 4, 4, 0);
	add_site(&raw, 200, ID_HUGE, 500, 5, 5, 0);
	add_site(&raw, 200, 0x10, 600, 6, 6, 0);
	add_site(&raw, 201, 0x10, 700, 7, 7, 0); /* same stack id, other pid */
	rp = add_proc(&raw, 200, "worker", true, true);
	proc_sum_sites(&raw, rp);
	add_proc(&raw, 300, "idle", true, false); /* no BPF stats yet */
	rp = add_proc(&raw, 201, "other", true, true);
	proc_sum_sites(&raw, rp);
	raw.counters[MT_CNT_LIVE_FULL] = 3;
	raw.counters[MT_CNT_STACK_FAIL] = 2;
	raw.counters[MT_CNT_UNKNOWN_FREE] = 100;
	raw.counters[MT_CNT_DEPTH_RESET] = 7;
	raw.recursion_misses = 1;
	err = collector_update(c, &raw, &s);
	check(!err && s, "update");
	if (!s)
		exit(1);
	check_i64(s->nsites, 7, "nsites");

	x = find_site(s, 200, ID_STACK_FAIL);
	check(x != NULL, "site whose stack hook fails is kept");
	if (x) {
		check_str(x->function, "[stack unavailable]",
			  "stack hook failed: function");
		check_str(x->location, "[unknown]",
			  "stack hook failed: location");
		check_i64(x->nframes, 0, "stack hook failed: no frames");
		check_i64(x->outstanding_bytes, 100,
			  "stack hook failed: bytes");
	}
	x = find_site(s, 200, 0);
	check(x != NULL, "stack_id 0 site is kept");
	if (x) {
		check_str(x->function, "[stack not captured]",
			  "stack_id 0: function");
		check_str(x->site_id, "0000000000000000",
			  "stack_id 0: site_id");
		check_i64(x->nframes, 0, "stack_id 0: no frames");
	}
	x = find_site(s, 200, 0x77);
	check(x != NULL, "unknown-symbol site");
	if (x) {
		check_str(x->function, "[libx.so+0x10]",
			  "unknown symbol: function");
		check_str(x->location, "[libx.so+0x10]",
			  "unknown symbol: location");
		check_i64(x->nframes, 1, "unknown symbol: nframes");
		if (x->nframes == 1)
			check_str(x->frames[0].module, "libx.so",
				  "unknown symbol: module");
	}
	x = find_site(s, 200, 0x66);
	check(x != NULL, "symbolize-failure site");
	if (x) {
		check_str(x->function, "[unknown 0x66]",
			  "symbolize failed: function");
		check_str(x->location, "[unknown]",
			  "symbolize failed: location");
		if (x->nframes == 2) {
			check_str(x->frames[0].module, "",
				  "symbolize failed: module empty");
			check_str(x->frames[1].func, "fn_101",
				  "symbolize failed: next frame still named");
		} else {
			check(0, "symbolize failed: nframes %d, want 2",
			      x->nframes);
		}
	}
	x = find_site(s, 200, ID_HUGE);
	check(x && x->nframes == MEMTOP_MAX_FRAMES,
	      "stack nr over MEMTOP_MAX_FRAMES clamped to %d",
	      MEMTOP_MAX_FRAMES);
	check(find_site(s, 200, 0x10) && find_site(s, 201, 0x10) &&
		      find_site(s, 200, 0x10)->outstanding_bytes == 600 &&
		      find_site(s, 201, 0x10)->outstanding_bytes == 700,
	      "same stack id in two processes: two sites");
	check_i64((int64_t)s->lost_total, 6,
		  "lost_total excludes unknown frees and depth resets");
	check_i64((int64_t)s->lost[MT_CNT_UNKNOWN_FREE], 100,
		  "lost counters copied");

	p = find_proc(s, 300);
	check(p != NULL, "process without stats appears");
	if (p) {
		check_str(p->comm, "idle", "no-stats proc comm");
		check(p->outstanding_bytes == 0 && p->allocs == 0 &&
			      p->nsites == 0,
		      "no-stats proc has zero stats and no sites");
	}
	p = find_proc(s, 200);
	check(p && p->nsites == 6 && p->outstanding_bytes == 2100,
	      "proc 200: 6 sites, 2100 B");
	check_i64(s->nprocs, 3, "nprocs");
	check_i64(s->outstanding_bytes, 2800, "total outstanding");

	/* t=1: pid 200 exited (procfs_fill leaves comm/cmdline empty), the
	 * 0x77 site is gone from the maps, pid 300 now has stats. */
	sample_reset(&raw);
	raw.mono_ns = T0 + SEC;
	add_site(&raw, 200, ID_STACK_FAIL, 100, 1, 1, 0);
	add_site(&raw, 200, 0x10, 600, 6, 6, 0);
	add_site(&raw, 300, 0x10, 50, 1, 1, 0);
	rp = add_proc(&raw, 200, "", false, true);
	proc_sum_sites(&raw, rp);
	rp = add_proc(&raw, 300, "idle", true, true);
	proc_sum_sites(&raw, rp);
	add_proc(&raw, 201, "other", true, true)->st = (struct mt_stats){
		.outstanding_bytes = 700, .outstanding_allocs = 7, .allocs = 7};
	err = collector_update(c, &raw, &s);
	check(!err, "update 2");
	p = find_proc(s, 200);
	check(p != NULL, "dead process still listed");
	if (p) {
		check(!p->alive, "dead process not alive");
		check_str(p->comm, "worker", "dead process keeps its comm");
		check_str(p->cmdline, "./worker --run",
			  "dead process keeps its cmdline");
		check_i64(p->outstanding_bytes, 700, "dead process stats");
		check_i64(p->delta_bytes, -1400, "dead process delta_bytes");
		printf("# note: dead process rss_bytes = %" PRIu64
		       " (last value kept)\n",
		       p->rss_bytes);
	}
	p = find_proc(s, 300);
	check(p && p->outstanding_bytes == 50 && p->delta_bytes == 50 &&
		      p->nsites == 1,
	      "proc 300 gets stats later: delta from 0");
	check(find_site(s, 200, 0x77) == NULL,
	      "site absent from the sample is not shown");
	check_i64(s->nsites, 3, "nsites after sites vanished");
	x = find_site(s, 200, ID_STACK_FAIL);
	check(x && !strcmp(x->function, "[stack unavailable]"),
	      "failed stack keeps its placeholder");

	collector_free(c);
	sample_free(&raw);
}

/* ---- collapse by function ---- */

static void collapse_sample(struct raw_sample *r, int t)
{
	struct raw_proc *p;

	sample_reset(r);
	r->mono_ns = T0 + (uint64_t)t * SEC;
	add_site(r, 400, 0x50, 1000 * (t + 1), 1, 10 * (t + 1), 0);
	add_site(r, 400, 0x51, 3000, 3, 30, 0);
	add_site(r, 400, 0x52, 50, 5, 5, 0);
	add_site(r, 401, 0x50, 7, 7, 7, 0);
	p = add_proc(r, 400, "col", true, true);
	proc_sum_sites(r, p);
	p = add_proc(r, 401, "col2", true, true);
	proc_sum_sites(r, p);
}

static void test_collapse(void)
{
	struct raw_sample raw;
	const struct snapshot *s = NULL;
	const struct snap_site *x;
	const struct snap_proc *p;
	struct collector *c = new_collector(5, 8);
	int err;

	printf("# collapse\n");
	memset(&raw, 0, sizeof(raw));
	collector_set_collapse(c, true);
	collapse_sample(&raw, 0);
	err = collector_update(c, &raw, &s);
	collapse_sample(&raw, 1);
	err = err ? err : collector_update(c, &raw, &s);
	check(!err, "updates");
	check_i64(s->nsites, 3, "collapsed rows (2 stacks of fn_500 merged)");
	x = find_func(s, 400, "fn_500");
	check(x != NULL, "merged row present");
	if (x) {
		check_i64(x->outstanding_bytes, 2000 + 3000,
			  "merged: bytes summed");
		check_i64(x->outstanding_allocs, 4, "merged: count summed");
		check_i64((int64_t)x->allocs, 20 + 30, "merged: allocs summed");
		check_dbl(x->alloc_rate, 10, "merged: rates summed");
		check_dbl(x->growth_bps, 1000, "merged: growth summed");
		check((int64_t)x->stack_id == 0x51,
		      "merged: the biggest stack stands for the group");
		check(x->ntrend == 2 && x->trend[0] == 4000 &&
			      x->trend[1] == 5000,
		      "merged: trends summed");
	}
	x = find_func(s, 400, "fn_600");
	check(x && x->outstanding_bytes == 50, "other function untouched");
	x = find_func(s, 401, "fn_500");
	check(x && x->outstanding_bytes == 7,
	      "same function in another process not merged");
	p = find_proc(s, 400);
	check(p && p->nsites == 2, "proc nsites counts collapsed rows");
	check_i64(s->outstanding_bytes, 5057, "totals unchanged by collapse");
	check_str(order(s), "51,52,50", "collapsed rows sorted");

	collector_set_collapse(c, false);
	collapse_sample(&raw, 2);
	err = collector_update(c, &raw, &s);
	check(!err && s->nsites == 4, "collapse off: 4 rows again");
	x = find_site(s, 400, 0x50);
	check(x && x->via && !strcmp(x->via, "via fn_501"),
	      "rows sharing function and location: told apart by the caller "
	      "(%s)",
	      x && x->via ? x->via : "NULL");
	x = find_site(s, 400, 0x51);
	check(x && x->via && !strcmp(x->via, "via fn_502"),
	      "the other row: its caller");
	x = find_site(s, 400, 0x52);
	check(x && !x->via, "a row of its own: nothing added");
	x = find_site(s, 401, 0x50);
	check(x && !x->via, "the same stack in another process: nothing added");

	/* Three of five rows share their caller too: told apart further up
	 * where they part, the one that does not by its site id; each keeps
	 * the shared caller's name. */
	sample_reset(&raw);
	raw.mono_ns = T0 + 3 * SEC;
	add_site(&raw, 400, 0x50, 10, 1, 1, 0);
	add_site(&raw, 400, 0x51, 20, 1, 1, 0);
	add_site(&raw, 400, 0x53, 30, 1, 1, 0);
	add_site(&raw, 400, 0x54, 40, 1, 1, 0);
	add_site(&raw, 400, 0x55, 50, 1, 1, 0);
	proc_sum_sites(&raw, add_proc(&raw, 400, "col", true, true));
	err = collector_update(c, &raw, &s);
	check(!err, "update");
	x = find_site(s, 400, 0x53);
	check(x && x->via && !strcmp(x->via, "via fn_503 via fn_700"),
	      "a shared caller: where those part further up (%s)",
	      x && x->via ? x->via : "NULL");
	x = find_site(s, 400, 0x54);
	check(x && x->via && !strcmp(x->via, "via fn_503 via fn_701"),
	      "and the other's");
	x = find_site(s, 400, 0x55);
	check(x && x->via && !strcmp(x->via, "via fn_503 #0000000000000055"),
	      "nothing further: the shared caller and the site id (%s)",
	      x && x->via ? x->via : "NULL");
	x = find_site(s, 400, 0x51);
	check(x && x->via && !strcmp(x->via, "via fn_502"),
	      "a unique caller still names it");

	/* The same rows again: the same answers (kept from the last time). */
	raw.mono_ns = T0 + 4 * SEC;
	err = collector_update(c, &raw, &s);
	x = find_site(s, 400, 0x55);
	check(!err && x && x->via &&
		      !strcmp(x->via, "via fn_503 #0000000000000055"),
	      "unchanged rows: the site id again (%s)",
	      x && x->via ? x->via : "NULL");
	x = find_site(s, 400, 0x51);
	check(x && x->via && !strcmp(x->via, "via fn_502"),
	      "unchanged rows: the caller again");

	/* One row fewer: its partner's caller is unique now. */
	sample_reset(&raw);
	raw.mono_ns = T0 + 5 * SEC;
	add_site(&raw, 400, 0x50, 10, 1, 1, 0);
	add_site(&raw, 400, 0x51, 20, 1, 1, 0);
	add_site(&raw, 400, 0x53, 30, 1, 1, 0);
	proc_sum_sites(&raw, add_proc(&raw, 400, "col", true, true));
	err = collector_update(c, &raw, &s);
	x = find_site(s, 400, 0x53);
	check(!err && x && x->via && !strcmp(x->via, "via fn_503"),
	      "a row gone: worked out again (%s)",
	      x && x->via ? x->via : "NULL");
	collector_free(c);
	sample_free(&raw);
}

/* ---- many sites ---- */

#define NBIG 10000

static void test_many_sites(void)
{
	struct raw_sample raw;
	const struct snapshot *s = NULL;
	struct collector *c = new_collector(5, 8);
	struct raw_proc *p;
	int err, sorted = 1, found = 0;

	printf("# %d sites\n", NBIG);
	memset(&raw, 0, sizeof(raw));
	memset(&fctx, 0, sizeof(fctx));
	/* The sort starts from the last refresh's order: a new order (t = 2
	 * shuffles the sizes) must come out sorted all the same. */
	for (int t = 0; t < 3; t++) {
		int ok = 1;

		sample_reset(&raw);
		raw.mono_ns = T0 + (uint64_t)t * SEC;
		for (int i = 0; i < NBIG; i++)
			add_site(&raw, 500, 0x100000 + (uint64_t)i,
				 t < 2 ? (int64_t)(i % 997) * 8 + t
				       : (int64_t)((i * 7919) % 1009) * 8,
				 1, 1 + t, 0);
		p = add_proc(&raw, 500, "big", true, true);
		proc_sum_sites(&raw, p);
		err = collector_update(c, &raw, &s);
		check(!err && s->nsites == NBIG, "update %d: %d sites", t,
		      NBIG);
		for (int i = 1; !err && i < s->nsites; i++)
			if (s->sites[i - 1].outstanding_bytes <
				    s->sites[i].outstanding_bytes ||
			    (s->sites[i - 1].outstanding_bytes ==
				     s->sites[i].outstanding_bytes &&
			     s->sites[i - 1].stack_id > s->sites[i].stack_id))
				ok = 0;
		check(ok, "update %d: sorted (bytes, then site id)", t);
	}
	check_i64(fctx.stack_calls, NBIG, "each stack fetched once");
	for (int i = 1; i < s->nsites; i++)
		if (s->sites[i - 1].outstanding_bytes <
		    s->sites[i].outstanding_bytes)
			sorted = 0;
	check(sorted, "10k rows sorted by outstanding");
	for (int i = 0; i < s->nsites; i++)
		if (s->sites[i].stack_id == 0x100000 + 1234 &&
		    s->sites[i].alloc_rate == 1 &&
		    !strcmp(s->sites[i].function, "fn_1004d20"))
			found = 1;
	check(found, "a site among 10k has its function and rate");
	p = sample_find_proc(&raw, 500);
	check(find_proc(s, 500) && find_proc(s, 500)->nsites == NBIG && p &&
		      find_proc(s, 500)->outstanding_bytes ==
			      p->st.outstanding_bytes,
	      "proc row: %d sites, bytes", NBIG);
	collector_free(c);
	sample_free(&raw);
}

/* More refreshes than SNAP_TREND: the trend keeps the newest, oldest first,
 * growth and suspects read the right end; two processes count their own. */
static void test_long_history(void)
{
	struct raw_sample raw;
	const struct snapshot *s = NULL;
	const struct snap_site *g;
	const struct snap_proc *pa, *pb;
	struct collector *c = new_collector(3, 4);
	struct raw_proc *p;
	int err = 0, t, ok = 1;
	const int T = SNAP_TREND + 7;

	printf("# %d refreshes, two processes\n", T);
	memset(&raw, 0, sizeof(raw));
	memset(&fctx, 0, sizeof(fctx));
	for (t = 0; t < T && !err; t++) {
		sample_reset(&raw);
		raw.mono_ns = T0 + (uint64_t)t * SEC;
		add_site(&raw, 600, 0x10, 100 * (t + 1), t + 1, t + 1, 0);
		add_site(&raw, 600, 0x20, 7, 1, 1, 0);
		p = add_proc(&raw, 600, "a", true, true);
		proc_sum_sites(&raw, p);
		add_site(&raw, 601, 0x30, 5, 1, 1, 0);
		p = add_proc(&raw, 601, "b", true, true);
		proc_sum_sites(&raw, p);
		err = collector_update(c, &raw, &s);
	}
	check(!err && s, "%d updates", T);
	if (!s)
		exit(1);
	g = find_site(s, 600, 0x10);
	check(g && g->ntrend == SNAP_TREND, "trend holds SNAP_TREND values");
	for (int i = 0; g && i < g->ntrend; i++)
		if (g->trend[i] != 100 * (T - SNAP_TREND + i + 1))
			ok = 0;
	check(ok, "trend is the newest values, oldest first");
	check(g && g->growth_bps == 100, "growth after the ring wrapped");
	check(g && g->suspect, "steady riser is a suspect after the wrap");
	pa = find_proc(s, 600);
	pb = find_proc(s, 601);
	check(pa && pa->nsites == 2 && pa->nsuspects == 1,
	      "process a: 2 sites, 1 suspect");
	check(pb && pb->nsites == 1 && pb->nsuspects == 0, "process b: 1 site");
	check(pa && pa->ntrend == SNAP_TREND &&
		      pa->trend[SNAP_TREND - 1] == 100 * T + 7,
	      "process trend newest last");
	collector_free(c);
	sample_free(&raw);
}

/*
 * Growth mode: a site of kind MT_SITE_TOUCHED counts page faults. Its row
 * says so, its FUNCTION is the first frame outside the C library, and the
 * process's trend, growth and change follow TOUCHED, with its RSS change.
 */
static void test_growth(void)
{
	struct collector_opts o = {.sort = SORT_OUTSTANDING, .growth = true};
	struct collector_hooks h = {.ctx = &fctx,
				    .stack = fake_stack_hook,
				    .symbolize = fake_sym_hook};
	const struct snapshot *snap = NULL;
	struct raw_sample r = {0};
	struct collector *c = NULL;
	struct raw_proc *p;
	struct raw_site site;

	printf("# growth mode\n");
	check(!collector_new(&c, &o, &h) && c, "collector_new (growth)");
	if (!c)
		return;
	for (int k = 0; k < 2; k++) {
		uint64_t touched = (uint64_t)(k + 2) * 4096;

		sample_reset(&r);
		r.mono_ns = T0 + (uint64_t)k * SEC;
		memset(&site, 0, sizeof(site));
		site.key.tgid = 7;
		site.key.kind = MT_SITE_TOUCHED;
		site.key.stack_id = 0x70;
		site.st.allocs = (uint64_t)k + 2;
		site.st.alloc_bytes = touched;
		site.st.outstanding_bytes = (int64_t)touched;
		site.st.outstanding_allocs = k + 2;
		site.st.first_ns = site.st.last_ns = T0;
		/* The same stack's allocation site: a kind of its own. */
		check(!sample_add_site(&r, &site), "add touched site");
		add_site(&r, 7, 0x70, 100, 1, 1, 0);
		p = add_proc(&r, 7, "grower", true, true);
		p->touched_bytes = touched;
		p->touched_faults = (uint64_t)k + 2;
		p->returned_bytes = 4096;
		p->rss_bytes = (4u << 20) + (uint64_t)k * 8192;
		p->st.outstanding_bytes = 100;
		/* The source read this one's RSS at attach: 1 MiB. */
		p = add_proc(&r, 8, "seeded", true, true);
		p->rss_bytes = (3u << 20) + (uint64_t)k * 8192;
		p->has_rss_base = k == 0;
		p->rss_base = k == 0 ? 1u << 20 : 0;
		check(!collector_update(c, &r, &snap), "update %d", k);
	}
	check(snap && snap->growth, "snapshot is growth mode");
	for (int i = 0; snap && i < snap->nprocs; i++)
		if (snap->procs[i].pid == 8)
			check_i64(snap->procs[i].rss_change, (2 << 20) + 8192,
				  "RSS change since the attach's RSS");
	check(snap && snap->nsites == 2, "two sites: touched and allocation");
	for (int i = 0; snap && i < snap->nsites; i++) {
		const struct snap_site *st = &snap->sites[i];

		if (!st->touched) {
			check_i64(st->outstanding_bytes, 100,
				  "allocation site of the same stack apart");
			continue;
		}
		check_i64((int64_t)st->touched_bytes, 3 * 4096,
			  "touched bytes");
		check(!strcmp(st->function, "fn_702"),
		      "FUNCTION skips libc frames: %s", st->function);
		check(!strcmp(st->frames[0].func, "fn_7001"),
		      "frame 0 (the faulting ip) looked up as is: %s",
		      st->frames[0].func);
		check_dbl(st->growth_bps, 4096, "TOUCHED/s");
	}
	check(snap && snap->nprocs == 2 && snap->procs[0].growth,
	      "process in growth mode");
	if (snap && snap->nprocs == 2) {
		const struct snap_proc *q = &snap->procs[0];

		check_i64((int64_t)q->touched_bytes, 3 * 4096,
			  "process touched");
		check_i64(q->delta_bytes, 4096,
			  "process change follows TOUCHED");
		check_i64(q->rss_change, 8192, "RSS change since first seen");
		check_i64((int64_t)q->returned_bytes, 4096, "returned bytes");
		check_i64(q->trend[q->ntrend - 1], 3 * 4096,
			  "process trend follows TOUCHED");
		check_i64(q->outstanding_bytes, 100, "outstanding kept apart");
	}
	sample_free(&r);
	collector_free(c);
}

/*
 * Growth in a Go program: its pages are first written by Go's runtime
 * (memclr from mallocgc), in the program's own file; FUNCTION is the
 * runtime's caller, or, for a stack that is all runtime, its innermost
 * frame (never the goroutine's outermost, runtime.goexit).
 */
static void test_growth_go(void)
{
	struct collector_opts o = {.sort = SORT_OUTSTANDING, .growth = true};
	struct collector_hooks h = {.ctx = &fctx,
				    .stack = fake_stack_hook,
				    .symbolize = fake_sym_hook};
	const struct snapshot *snap = NULL;
	struct raw_sample r = {0};
	struct collector *c = NULL;
	struct raw_site site;

	printf("# growth mode, Go\n");
	check(!collector_new(&c, &o, &h) && c, "collector_new (growth, Go)");
	if (!c)
		return;
	sample_reset(&r);
	r.mono_ns = T0;
	for (uint64_t id = 0x71; id <= 0x72; id++) {
		memset(&site, 0, sizeof(site));
		site.key.tgid = 9;
		site.key.kind = MT_SITE_TOUCHED;
		site.key.stack_id = id;
		site.st.allocs = 1;
		site.st.alloc_bytes = 4096 * id;
		site.st.outstanding_bytes = (int64_t)(4096 * id);
		site.st.outstanding_allocs = 1;
		site.st.first_ns = site.st.last_ns = T0;
		check(!sample_add_site(&r, &site), "add touched site %#llx",
		      (unsigned long long)id);
	}
	add_proc(&r, 9, "gopher", true, true)->touched_bytes = 4096 * 0xe3;
	check(!collector_update(c, &r, &snap) && snap, "update");
	check(snap && snap->nsites == 2, "two Go sites");
	for (int i = 0; snap && i < snap->nsites; i++) {
		const struct snap_site *st = &snap->sites[i];

		if (st->touched_bytes == 4096 * 0x71)
			check_str(st->function, "fn_703",
				  "FUNCTION: the Go runtime's caller");
		else /* frame 0, the faulting ip, is looked up as ip + 1 */
			check_str(st->function, "runtime.fn_7104",
				  "FUNCTION: all runtime, its innermost frame");
	}
	sample_free(&r);
	collector_free(c);
}

/* ---- GROWTH/s: the last interval's change per second ---- */

static void growth_step(struct collector *c, struct raw_sample *raw, int t,
			int64_t bytes, const struct snapshot **s)
{
	sample_reset(raw);
	raw->mono_ns = T0 + (uint64_t)t * SEC;
	add_site(raw, 500, 0x10, bytes, 1, 1, 0);
	proc_sum_sites(raw, add_proc(raw, 500, "g", true, true));
	check(!collector_update(c, raw, s) && *s, "update t=%d", t);
}

static void test_growth_rate(void)
{
	struct collector_opts o = {.sort = SORT_OUTSTANDING, .start_ns = T0};
	struct collector_hooks h = {
		.ctx = &fctx,
		.stack = fake_stack_hook,
		.symbolize = fake_sym_hook,
	};
	const struct snapshot *s = NULL;
	const struct snap_site *x;
	const struct snap_proc *p;
	struct raw_sample raw;
	struct collector *c = NULL;

	printf("# GROWTH/s\n");
	memset(&raw, 0, sizeof(raw));
	check(!collector_new(&c, &o, &h) && c, "collector_new");
	if (!c)
		return;
	/* Attached at T0; the first sample 2 s later holds 4000 B. */
	growth_step(c, &raw, 2, 4000, &s);
	x = find_site(s, 500, 0x10);
	p = find_proc(s, 500);
	check(x && p, "site and process");
	if (!x || !p)
		goto out;
	check_dbl(x->growth_bps, 2000,
		  "first sample: site growth since attach");
	check_dbl(p->growth_bps, 2000, "first sample: process growth");
	check_dbl((double)p->delta_bytes / s->interval_s, p->growth_bps,
		  "first sample: the header's change per second");
	growth_step(c, &raw, 3, 5000, &s);
	x = find_site(s, 500, 0x10);
	check(x && x->growth_bps == 1000, "then the last interval's: 1000");
	growth_step(c, &raw, 4, 5000, &s);
	x = find_site(s, 500, 0x10);
	p = find_proc(s, 500);
	check(x && x->growth_bps == 0 && p && p->growth_bps == 0,
	      "growth stopped: 0 at once");
out:
	collector_free(c);
	sample_free(&raw);
}

int main(void)
{
	test_main_scenario();
	test_placeholders();
	test_collapse();
	test_many_sites();
	test_long_history();
	test_growth();
	test_growth_go();
	test_growth_rate();
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
