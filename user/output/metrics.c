/*
 * The Prometheus text exposition of a snapshot. Every family comes from a
 * table (name, type, help, how to read it), written with its HELP and TYPE
 * lines once and its samples together, as the format requires; label values
 * are escaped (a comm can hold any byte but NUL). Per-site series are off
 * unless asked for, and then only the N sites with the most outstanding
 * bytes, so a process with 50k call sites cannot flood a time-series
 * database: the label cardinality is at most N sites plus one series per
 * process and family.
 */
#define _GNU_SOURCE /* open_memstream */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "metrics.h"

/* Which processes a family has a series for. */
enum proc_kind {
	PK_ALL,
	PK_ALLOC,  /* traced through the allocator (not growth mode) */
	PK_GROWTH, /* growth mode: page faults, no allocator figures */
};

struct proc_family {
	const char *name, *type, *help;
	double (*get)(const struct snap_proc *p);
	enum proc_kind kind;
};

static double p_out_bytes(const struct snap_proc *p)
{
	return (double)p->outstanding_bytes;
}

static double p_out_allocs(const struct snap_proc *p)
{
	return (double)p->outstanding_allocs;
}

static double p_allocs(const struct snap_proc *p)
{
	return (double)p->allocs;
}

static double p_frees(const struct snap_proc *p)
{
	return (double)p->frees;
}

static double p_alloc_bytes(const struct snap_proc *p)
{
	return (double)p->alloc_bytes;
}

static double p_free_bytes(const struct snap_proc *p)
{
	return (double)p->free_bytes;
}

static double p_rss(const struct snap_proc *p)
{
	return (double)p->rss_bytes;
}

static double p_mmap(const struct snap_proc *p)
{
	return (double)p->mmap_bytes;
}

static double p_peak(const struct snap_proc *p)
{
	return (double)p->peak_bytes;
}

static double p_touched(const struct snap_proc *p)
{
	return (double)p->touched_bytes;
}

static double p_returned(const struct snap_proc *p)
{
	return (double)p->returned_bytes;
}

static const struct proc_family proc_families[] = {
	{"memtop_outstanding_bytes", "gauge",
	 "Bytes the process allocated and has not freed.", p_out_bytes,
	 PK_ALLOC},
	{"memtop_outstanding_allocations", "gauge",
	 "Blocks the process allocated and has not freed.", p_out_allocs,
	 PK_ALLOC},
	{"memtop_allocations_total", "counter",
	 "Allocator calls that returned a block, since memtop attached.",
	 p_allocs, PK_ALLOC},
	{"memtop_frees_total", "counter",
	 "Frees of blocks memtop saw allocated, since memtop attached.",
	 p_frees, PK_ALLOC},
	{"memtop_allocated_bytes_total", "counter",
	 "Bytes allocated, since memtop attached.", p_alloc_bytes, PK_ALLOC},
	{"memtop_freed_bytes_total", "counter",
	 "Bytes freed, since memtop attached.", p_free_bytes, PK_ALLOC},
	{"memtop_peak_bytes", "gauge",
	 "Highest outstanding bytes of the process since memtop attached, "
	 "blocks allocated and freed between two samples included.",
	 p_peak, PK_ALLOC},
	{"memtop_rss_bytes", "gauge",
	 "Resident set size of the process (from /proc).", p_rss, PK_ALL},
	{"memtop_anonymous_mmap_bytes", "gauge",
	 "Anonymous memory the process mapped outside its allocator.", p_mmap,
	 PK_ALLOC},
	{"memtop_touched_bytes_total", "counter",
	 "Growth mode: bytes of new pages the process first touched, since "
	 "memtop attached.",
	 p_touched, PK_GROWTH},
	{"memtop_returned_bytes_total", "counter",
	 "Growth mode: bytes the process handed back (munmap, madvise, brk), "
	 "since memtop attached.",
	 p_returned, PK_GROWTH},
};
#define NPROC_FAMILIES (sizeof(proc_families) / sizeof(proc_families[0]))

/* The reason label of each lost-event counter; NULL: not a loss. */
static const char *const lost_reasons[MT_CNT_NR] = {
	[MT_CNT_LIVE_FULL] = "live_map_full",
	[MT_CNT_SITE_FULL] = "site_map_full",
	[MT_CNT_STACK_FULL] = "stack_map_full",
	[MT_CNT_STACK_FAIL] = "stack_capture_failed",
	[MT_CNT_INFLIGHT_FULL] = "inflight_map_full",
	[MT_CNT_PROC_FULL] = "process_map_full",
	[MT_CNT_MEMPTR_FAIL] = "memptr_unreadable",
	[MT_CNT_EVENTS_LOST] = "event_ring_full",
	[MT_CNT_TARGETS_FULL] = "targets_map_full",
	[MT_CNT_ANON_FULL] = "anon_map_full",
};

/* A label value: backslash, double quote and line feed escaped. */
static void put_label(FILE *m, const char *s)
{
	fputc('"', m);
	for (; s && *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', m);
		if (*s == '\n')
			fputs("\\n", m);
		else
			fputc(*s, m);
	}
	fputc('"', m);
}

static void put_value(FILE *m, double v)
{
	/* Integers exactly (counters go past 2^53 only after years). */
	if (v == (double)(int64_t)v)
		fprintf(m, " %" PRId64 "\n", (int64_t)v);
	else
		fprintf(m, " %.9g\n", v);
}

static void family(FILE *m, const char *name, const char *type,
		   const char *help)
{
	fprintf(m, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void proc_labels(FILE *m, const char *name, const struct snap_proc *p)
{
	fprintf(m, "%s{pid=\"%" PRIu32 "\",comm=", name, p->pid);
	put_label(m, p->comm);
	fputc('}', m);
}

static const char *proc_comm(const struct snapshot *s, uint32_t pid)
{
	for (int i = 0; i < s->nprocs; i++)
		if (s->procs[i].pid == pid)
			return s->procs[i].comm;
	return "";
}

static int cmp_site_bytes(const void *a, const void *b)
{
	const struct snap_site *x = *(const struct snap_site *const *)a;
	const struct snap_site *y = *(const struct snap_site *const *)b;

	if (x->outstanding_bytes != y->outstanding_bytes)
		return x->outstanding_bytes > y->outstanding_bytes ? -1 : 1;
	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return strcmp(x->site_id, y->site_id);
}

static int cmp_site_touched(const void *a, const void *b)
{
	const struct snap_site *x = *(const struct snap_site *const *)a;
	const struct snap_site *y = *(const struct snap_site *const *)b;

	if (x->touched_bytes != y->touched_bytes)
		return x->touched_bytes > y->touched_bytes ? -1 : 1;
	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return strcmp(x->site_id, y->site_id);
}

static void site_labels(FILE *m, const char *name, const struct snapshot *s,
			const struct snap_site *st)
{
	fprintf(m, "%s{pid=\"%" PRIu32 "\",comm=", name, st->pid);
	put_label(m, proc_comm(s, st->pid));
	fprintf(m, ",site=\"%s\",function=", st->site_id);
	put_label(m, st->function);
	fputs(",location=", m);
	put_label(m, st->location);
	fputc('}', m);
}

static int put_sites(FILE *m, const struct snapshot *s, int n)
{
	const struct snap_site **top;
	int k = 0;

	if (n <= 0 || s->nsites <= 0)
		return 0;
	top = malloc((size_t)s->nsites * sizeof(*top));
	if (!top)
		return -ENOMEM;
	/* A growth site's bytes are touched pages: a family of their own. */
	for (int i = 0; i < s->nsites; i++)
		if (s->sites[i].outstanding_bytes > 0 && !s->sites[i].touched)
			top[k++] = &s->sites[i];
	qsort(top, k, sizeof(*top), cmp_site_bytes);
	if (k > n)
		k = n;
	family(m, "memtop_site_outstanding_bytes", "gauge",
	       "Outstanding bytes of one call site (the top sites only).");
	for (int i = 0; i < k; i++) {
		site_labels(m, "memtop_site_outstanding_bytes", s, top[i]);
		put_value(m, (double)top[i]->outstanding_bytes);
	}
	family(m, "memtop_site_outstanding_allocations", "gauge",
	       "Outstanding blocks of one call site (the top sites only).");
	for (int i = 0; i < k; i++) {
		site_labels(m, "memtop_site_outstanding_allocations", s,
			    top[i]);
		put_value(m, (double)top[i]->outstanding_allocs);
	}
	if (s->growth) {
		k = 0;
		for (int i = 0; i < s->nsites; i++)
			if (s->sites[i].touched && s->sites[i].touched_bytes)
				top[k++] = &s->sites[i];
		qsort(top, k, sizeof(*top), cmp_site_touched);
		if (k > n)
			k = n;
		family(m, "memtop_site_touched_bytes", "gauge",
		       "Growth mode: bytes of new pages one call site first "
		       "touched (the top sites only).");
		for (int i = 0; i < k; i++) {
			site_labels(m, "memtop_site_touched_bytes", s, top[i]);
			put_value(m, (double)top[i]->touched_bytes);
		}
	}
	free(top);
	return 0;
}

int metrics_render(const struct snapshot *s, int sites, char **out, size_t *len)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *m;
	int err;

	if (!s || !out || !len)
		return -EINVAL;
	m = open_memstream(&buf, &n);
	if (!m)
		return -ENOMEM;
	for (size_t f = 0; f < NPROC_FAMILIES; f++) {
		const struct proc_family *pf = &proc_families[f];

		family(m, pf->name, pf->type, pf->help);
		for (int i = 0; i < s->nprocs; i++) {
			const struct snap_proc *p = &s->procs[i];

			if ((pf->kind == PK_ALLOC && p->growth) ||
			    (pf->kind == PK_GROWTH && !p->growth))
				continue;
			proc_labels(m, pf->name, p);
			put_value(m, pf->get(p));
		}
	}
	family(m, "memtop_lost_events_total", "counter",
	       "Events memtop could not record, by reason (figures are low by "
	       "what they would have added).");
	for (int i = 0; i < MT_CNT_NR; i++)
		if (lost_reasons[i]) {
			fprintf(m, "memtop_lost_events_total{reason=\"%s\"}",
				lost_reasons[i]);
			put_value(m, (double)s->lost[i]);
		}
	fputs("memtop_lost_events_total{reason=\"recursion\"}", m);
	put_value(m, (double)s->recursion_misses);
	family(m, "memtop_unknown_frees_total", "counter",
	       "Frees of blocks memtop never saw allocated (allocated before "
	       "it "
	       "attached, or lost).");
	fputs("memtop_unknown_frees_total", m);
	put_value(m, (double)s->lost[MT_CNT_UNKNOWN_FREE]);
	family(m, "memtop_cpu_seconds_total", "counter",
	       "CPU time memtop itself used, user and system.");
	fputs("memtop_cpu_seconds_total", m);
	put_value(m, s->self_cpu_s);
	family(m, "memtop_kernel_memory_bytes", "gauge",
	       "Kernel memory held by memtop's BPF maps and programs.");
	fputs("memtop_kernel_memory_bytes", m);
	put_value(m, (double)s->self_kernel_bytes);
	family(m, "memtop_sample_ratio", "gauge",
	       "1 in this many allocations is recorded (--sample); figures are "
	       "scaled up by it.");
	fputs("memtop_sample_ratio", m);
	put_value(m, s->scale > 1 ? s->scale : 1);
	family(m, "memtop_traced_processes", "gauge",
	       "Processes in the latest snapshot.");
	fputs("memtop_traced_processes", m);
	put_value(m, s->nprocs);
	family(m, "memtop_last_refresh_timestamp_seconds", "gauge",
	       "When memtop last read its maps, seconds since the epoch.");
	fputs("memtop_last_refresh_timestamp_seconds", m);
	fprintf(m, " %lld.%03ld\n", (long long)s->wall.tv_sec,
		s->wall.tv_nsec / 1000000);
	err = put_sites(m, s, sites);
	if (ferror(m))
		err = -ENOMEM;
	if (fclose(m) || err) {
		free(buf);
		return err ? err : -ENOMEM;
	}
	*out = buf;
	*len = n;
	return 0;
}
