/*
 * Unit tests of the Prometheus exposition, without root or BPF: a snapshot
 * built by hand (two processes, one with a comm that needs escaping, three
 * sites) is rendered, its samples are read back line by line, and the text
 * is handed to promtool check metrics, the Prometheus project's own linter,
 * when it is installed (install-deps installs it; missing, it is a failure
 * under CI=true).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include "check.h"
#include "output/metrics.h"

static struct snap_site sites[3];
static struct snap_proc procs[2];
static struct snapshot snap;

static void build(void)
{
	sites[0] = (struct snap_site){.pid = 100,
				      .site_id = "00000000000000aa",
				      .outstanding_bytes = 3000,
				      .outstanding_allocs = 3,
				      .function = "make_buffer",
				      .location = "buf.c:7"};
	sites[1] = (struct snap_site){.pid = 200,
				      .site_id = "00000000000000bb",
				      .outstanding_bytes = 9000,
				      .outstanding_allocs = 9,
				      .function = "Widget<\"x\">::make",
				      .location = "w.cc:3"};
	sites[2] = (struct snap_site){.pid = 100,
				      .site_id = "00000000000000cc",
				      .outstanding_bytes = 10,
				      .outstanding_allocs = 1,
				      .function = "tiny",
				      .location = "t.c:1"};
	procs[0] = (struct snap_proc){.pid = 100,
				      .comm = "server",
				      .outstanding_bytes = 3010,
				      .outstanding_allocs = 4,
				      .allocs = 10,
				      .frees = 6,
				      .alloc_bytes = 5000,
				      .free_bytes = 1990,
				      .peak_bytes = 286000000,
				      .rss_bytes = 1 << 20};
	procs[1] = (struct snap_proc){.pid = 200,
				      .comm = "we\"ird\\x",
				      .outstanding_bytes = 9000,
				      .outstanding_allocs = 9,
				      .allocs = 9,
				      .alloc_bytes = 9000};
	snap = (struct snapshot){.wall = {1700000000, 250000000},
				 .scale = 1,
				 .nprocs = 2,
				 .procs = procs,
				 .nsites = 3,
				 .sites = sites,
				 .self_cpu_s = 1.25,
				 .self_kernel_bytes = 4096};
	snap.lost[MT_CNT_LIVE_FULL] = 7;
	snap.lost[MT_CNT_UNKNOWN_FREE] = 5;
	snap.recursion_misses = 2;
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p += n)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

static void want(const char *text, const char *line)
{
	check(has_line(text, line), "line: %s", line);
}

static int count(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static void promtool(const char *text, size_t len)
{
	FILE *p;
	int st;

	if (system("command -v promtool >/dev/null 2>&1")) {
		const char *ci = getenv("CI");

		check(!(ci && !strcmp(ci, "true")),
		      "SKIP promtool check metrics: promtool not installed");
		return;
	}
	p = popen("promtool check metrics > /tmp/memtop-promtool.out 2>&1",
		  "w");
	if (!p) {
		check(0, "popen promtool: %s", strerror(errno));
		return;
	}
	fwrite(text, 1, len, p);
	st = pclose(p);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "promtool check metrics passes (see /tmp/memtop-promtool.out)");
	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
		system("cat /tmp/memtop-promtool.out");
}

int main(void)
{
	char *text = NULL;
	size_t len = 0;

	build();
	check(!metrics_render(&snap, 0, &text, &len), "render");
	if (!text)
		return 1;
	check(strlen(text) == len, "length matches");
	want(text, "# TYPE memtop_outstanding_bytes gauge");
	want(text,
	     "memtop_outstanding_bytes{pid=\"100\",comm=\"server\"} 3010");
	want(text, "memtop_outstanding_bytes{pid=\"200\",comm="
		   "\"we\\\"ird\\\\x\"} 9000");
	want(text,
	     "memtop_outstanding_allocations{pid=\"100\",comm=\"server\"} 4");
	want(text, "# TYPE memtop_allocations_total counter");
	want(text, "memtop_allocations_total{pid=\"100\",comm=\"server\"} 10");
	want(text, "memtop_frees_total{pid=\"100\",comm=\"server\"} 6");
	want(text,
	     "memtop_allocated_bytes_total{pid=\"100\",comm=\"server\"} 5000");
	want(text, "memtop_rss_bytes{pid=\"100\",comm=\"server\"} 1048576");
	want(text, "# TYPE memtop_peak_bytes gauge");
	want(text, "memtop_peak_bytes{pid=\"100\",comm=\"server\"} 286000000");
	want(text, "memtop_lost_events_total{reason=\"live_map_full\"} 7");
	want(text, "memtop_lost_events_total{reason=\"recursion\"} 2");
	want(text, "memtop_unknown_frees_total 5");
	want(text, "memtop_cpu_seconds_total 1.25");
	want(text, "memtop_kernel_memory_bytes 4096");
	want(text, "memtop_last_refresh_timestamp_seconds 1700000000.250");
	check(!strstr(text, "unknown_free\""),
	      "unknown frees are not a lost-event reason");
	check(!strstr(text, "memtop_site_"), "no site series unless asked");
	check(count(text, "# TYPE ") == count(text, "# HELP "),
	      "every family has HELP and TYPE");
	promtool(text, len);
	free(text);

	check(!metrics_render(&snap, 2, &text, &len), "render with 2 sites");
	want(text,
	     "memtop_site_outstanding_bytes{pid=\"200\",comm="
	     "\"we\\\"ird\\\\x\","
	     "site=\"00000000000000bb\",function=\"Widget<\\\"x\\\">::make\","
	     "location=\"w.cc:3\"} 9000");
	want(text, "memtop_site_outstanding_bytes{pid=\"100\",comm=\"server\","
		   "site=\"00000000000000aa\",function=\"make_buffer\","
		   "location=\"buf.c:7\"} 3000");
	check(!strstr(text, "tiny"), "only the top 2 sites");
	check(count(text, "memtop_site_outstanding_allocations{") == 2,
	      "2 allocation series");
	promtool(text, len);
	free(text);

	/* Growth mode: the second process's figures are touched pages. */
	snap.growth = true;
	procs[1].growth = true;
	procs[1].touched_bytes = 8 << 20;
	procs[1].returned_bytes = 4096;
	sites[1].touched = true;
	sites[1].touched_bytes = 8 << 20;
	check(!metrics_render(&snap, 2, &text, &len), "render in growth mode");
	want(text, "memtop_touched_bytes_total{pid=\"200\",comm="
		   "\"we\\\"ird\\\\x\"} 8388608");
	want(text, "memtop_returned_bytes_total{pid=\"200\",comm="
		   "\"we\\\"ird\\\\x\"} 4096");
	check(!strstr(text, "memtop_outstanding_bytes{pid=\"200\""),
	      "no allocation series for a growth process");
	check(!strstr(text, "memtop_touched_bytes_total{pid=\"100\""),
	      "no touched series for an allocation-traced process");
	want(text,
	     "memtop_site_touched_bytes{pid=\"200\",comm=\"we\\\"ird\\\\x\","
	     "site=\"00000000000000bb\",function=\"Widget<\\\"x\\\">::make\","
	     "location=\"w.cc:3\"} 8388608");
	check(!strstr(text, "memtop_site_outstanding_bytes{pid=\"200\""),
	      "a growth site is not an outstanding-bytes series");
	promtool(text, len);
	free(text);

	snap.nprocs = 0;
	snap.nsites = 0;
	check(!metrics_render(&snap, 5, &text, &len), "render with no process");
	promtool(text, len);
	free(text);
	check(metrics_render(NULL, 0, &text, &len) == -EINVAL, "NULL snapshot");
	printf("%d checks, %d failed\n", checks, failures);
	return failures != 0;
}
