/*
 * The unwind tables in the kernel: for each traced process, its executable
 * mappings (map "unwind_procs") and, for each object they map, the
 * object's compiled CFI rows (one array map per object in
 * "unwind_tables"). An object's table is compiled once and shared by every
 * process mapping it (cached by build id, else by device and inode); the
 * tables' memory is bounded (--max-unwind-mb): past it, objects nobody maps
 * any more are dropped first, and an object that still does not fit is
 * walked by its frame pointers.
 */
#ifndef MEMTOP_UNWIND_UNWINDER_H
#define MEMTOP_UNWIND_UNWINDER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct unwinder;

struct unwinder_opts {
	int tables_fd;	    /* "unwind_tables" (array of maps) */
	int procs_fd;	    /* "unwind_procs" */
	uint64_t max_bytes; /* tables' memory limit */
	bool verbose;	    /* one line per object compiled, on stderr */
};

struct unwinder_stats {
	uint64_t bytes; /* kernel memory: tables and process mappings */
	uint64_t max_bytes;
	uint64_t rows;
	int objects;	/* tables loaded */
	int no_cfi;	/* objects without usable CFI (frame pointers there) */
	int over_limit; /* objects left out for the memory limit */
	int procs;	/* processes whose mappings are loaded */
	double compile_ms; /* time spent compiling tables, all told */
};

int unwinder_new(struct unwinder **out, const struct unwinder_opts *opts);
/*
 * Load pid's executable mappings and the tables of the objects mapped,
 * compiling those not seen before; the kernel's copy is rewritten only
 * when the mappings changed. 0 or -errno (-ESRCH: pid is gone).
 */
int unwinder_sync(struct unwinder *u, pid_t pid);
/* Every process synced before, again; those gone are forgotten. */
void unwinder_sync_all(struct unwinder *u);
/* Was pid synced (and not forgotten since)? */
bool unwinder_has(const struct unwinder *u, pid_t pid);
/* pid exited or exec'd: its mappings leave the kernel. */
void unwinder_forget(struct unwinder *u, pid_t pid);
void unwinder_stats(const struct unwinder *u, struct unwinder_stats *out);
void unwinder_free(struct unwinder *u);

#endif
