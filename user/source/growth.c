/*
 * Growth mode's userspace side of the source. bpf/growth.bpf.h charges first
 * touches of private pages to stacks from two programs per fault: a classic
 * tracepoint that classifies the fault by its error code and a software
 * perf event (page faults, one per CPU, sample period 1) that has the user
 * registers for the stack walk. This file attaches them and the syscall
 * tracepoints that count memory handed back, reads those counts per process,
 * and flips a process between growth and exact tracing in the BPF maps.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/perf_event.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "array.h"
#include "bpfmap.h"
#include "memtop.skel.h"
#include "growth.h"

struct growth {
	struct bpf_link **links;
	int nlinks;
	size_t cap;
};

static struct bpf_program *const *tp_progs(struct memtop_bpf *skel, int *n)
{
	static struct bpf_program *p[5];

	p[0] = skel->progs.growth_classify;
	p[1] = skel->progs.growth_munmap;
	p[2] = skel->progs.growth_madvise;
	p[3] = skel->progs.growth_mremap;
	p[4] = skel->progs.growth_brk;
	*n = 5;
	return p;
}

void growth_autoload(struct memtop_bpf *skel, bool on)
{
	struct bpf_program *const *p;
	int n;

	p = tp_progs(skel, &n);
	for (int i = 0; i < n; i++)
		bpf_program__set_autoload(p[i], on);
	bpf_program__set_autoload(skel->progs.growth_charge, on);
	bpf_program__set_autoload(skel->progs.growth_thp, on);
}

/* Does one "enabled" file of transparent huge pages say always or madvise?
 * (A size's "inherit" follows the top-level file, read too.) */
static bool thp_file_on(const char *path)
{
	char buf[128] = "";
	FILE *f = fopen(path, "re");
	bool on;

	if (!f)
		return false;
	on = fgets(buf, sizeof(buf), f) &&
	     (strstr(buf, "[always]") || strstr(buf, "[madvise]"));
	fclose(f);
	return on;
}

/*
 * Can a fault map a huge page here: THP (or one multi-size THP) enabled?
 * The page-allocation tracepoint runs for every page the machine
 * allocates: attached only then.
 */
static bool thp_possible(void)
{
	const char *dir = "/sys/kernel/mm/transparent_hugepage";
	char path[PATH_MAX];
	struct dirent *de;
	bool on;
	DIR *d;

	snprintf(path, sizeof(path), "%s/enabled", dir);
	if (thp_file_on(path))
		return true;
	d = opendir(dir);
	if (!d)
		return false;
	on = false;
	while (!on && (de = readdir(d))) {
		if (strncmp(de->d_name, "hugepages-", 10))
			continue;
		snprintf(path, sizeof(path), "%s/%s/enabled", dir, de->d_name);
		on = thp_file_on(path);
	}
	closedir(d);
	return on;
}

static int add(struct growth *g, struct bpf_link *l)
{
	if (ARRAY_RESERVE(g->links, g->cap, (size_t)g->nlinks + 1))
		return -ENOMEM;
	g->links[g->nlinks++] = l;
	return 0;
}

/* The page-fault software event of one CPU, counting user-mode faults. */
static int fault_event(int cpu)
{
	struct perf_event_attr a;
	int fd;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.type = PERF_TYPE_SOFTWARE;
	a.config = PERF_COUNT_SW_PAGE_FAULTS;
	a.sample_period = 1;
	a.exclude_kernel = 1; /* faults of user code only, as the tracepoint */
	a.exclude_hv = 1;
	fd = (int)syscall(__NR_perf_event_open, &a, -1, cpu, -1,
			  PERF_FLAG_FD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int growth_attach(struct memtop_bpf *skel, int ncpus, struct growth **out)
{
	struct growth *g = calloc(1, sizeof(*g));
	struct bpf_program *const *p;
	int n, err = 0, nev = 0;

	*out = NULL;
	if (!g)
		return -ENOMEM;
	p = tp_progs(skel, &n);
	for (int i = 0; i < n; i++) {
		struct bpf_link *l = bpf_program__attach(p[i]);

		err = l ? add(g, l) : -errno;
		if (err) {
			fprintf(stderr,
				"memtop: cannot attach %s to its tracepoint: "
				"%s\n",
				bpf_program__name(p[i]), strerror(-err));
			goto cleanup;
		}
	}
	if (thp_possible()) {
		struct bpf_link *l =
			bpf_program__attach(skel->progs.growth_thp);

		/* Without it huge pages are charged 4 KiB: said, not fatal. */
		if (!l)
			fprintf(stderr,
				"memtop: cannot attach to kmem:mm_page_alloc "
				"(huge pages charged 4 KiB): %s\n",
				strerror(errno));
		else if ((err = add(g, l))) {
			bpf_link__destroy(l);
			goto cleanup;
		}
	}
	for (int cpu = 0; cpu < ncpus; cpu++) {
		struct bpf_link *l;
		int fd = fault_event(cpu);

		if (fd == -ENODEV || fd == -EINVAL)
			continue; /* a possible CPU that is not online */
		if (fd < 0) {
			err = fd;
			fprintf(stderr,
				"memtop: cannot open the page-fault event of "
				"CPU %d: %s\n",
				cpu, strerror(-err));
			goto cleanup;
		}
		l = bpf_program__attach_perf_event(skel->progs.growth_charge,
						   fd);
		if (!l) {
			err = -errno;
			close(fd);
			fprintf(stderr,
				"memtop: cannot attach to the page-fault event "
				"of CPU %d: %s\n",
				cpu, strerror(-err));
			goto cleanup;
		}
		err = add(g, l); /* the link closes the event */
		if (err) {
			bpf_link__destroy(l);
			goto cleanup;
		}
		nev++;
	}
	if (!nev) {
		err = -ENODEV;
		fprintf(stderr, "memtop: no CPU has a page-fault event\n");
		goto cleanup;
	}
	*out = g;
	return 0;
cleanup:
	growth_detach(g);
	return err;
}

void growth_detach(struct growth *g)
{
	if (!g)
		return;
	for (int i = 0; i < g->nlinks; i++)
		bpf_link__destroy(g->links[i]);
	free(g->links);
	free(g);
}

void growth_read(struct memtop_bpf *skel, struct raw_sample *raw, bool add_new)
{
	struct bpfmap_walk w =
		bpfmap_walk(bpf_map__fd(skel->maps.gprocs), sizeof(__u32));
	struct mt_gproc v;
	__u32 key;

	while (bpfmap_next(&w, &key, &v)) {
		struct raw_proc *p = sample_find_proc(raw, key);

		if (!p && add_new)
			p = sample_add_proc(raw, key);
		if (!p)
			continue;
		p->returned_bytes = v.returned_bytes;
		p->returned_calls = v.returned_calls;
	}
}

int growth_set_exact(struct memtop_bpf *skel, uint32_t tgid, bool on)
{
	int fd = bpf_map__fd(skel->maps.exact_pids);
	__u8 one = 1;

	if (on)
		return bpf_map_update_elem(fd, &tgid, &one, BPF_ANY) ? -errno
								     : 0;
	if (bpf_map_delete_elem(fd, &tgid) && errno != ENOENT)
		return -errno;
	return 0;
}

void growth_purge_live(struct memtop_bpf *skel, uint32_t tgid)
{
	bpfmap_delete_if(bpf_map__fd(skel->maps.live),
			 sizeof(struct mt_live_key), bpfmap_key_has_tgid, NULL,
			 &tgid);
}

void growth_forget(struct memtop_bpf *skel, uint32_t tgid)
{
	bpf_map_delete_elem(bpf_map__fd(skel->maps.gprocs), &tgid);
	bpf_map_delete_elem(bpf_map__fd(skel->maps.exact_pids), &tgid);
}
