/*
 * memtop's configuration: the command line parsed into one struct, with
 * every value checked, so the rest of memtop never sees bad input.
 */
#ifndef MEMTOP_CONFIG_H
#define MEMTOP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include "python.h"
#include "snapshot.h"

#define CONFIG_MAX_PIDS 64
#define CONFIG_MAX_LIBS 16

struct config {
	pid_t pids[CONFIG_MAX_PIDS];
	int npids;
	char *libs[CONFIG_MAX_LIBS]; /* point into argv */
	int nlibs;
	char *skip_frames[CONFIG_MAX_LIBS]; /* --skip-frames REGEX, into argv */
	int nskip_frames;
	double interval_s;	 /* -d */
	long iterations;	 /* -n; 0 = until stopped */
	bool batch;		 /* -b */
	const char *csv_path;	 /* --csv; "-" = stdout */
	const char *folded_path; /* --folded */
	const char *pprof_path;	 /* --pprof */
	const char *listen;	 /* --listen [ADDR]:PORT */
	int metrics_sites;  /* --metrics-sites: per-site series in /metrics */
	int csv_top;	    /* --csv-top; 0 = all */
	bool types;	    /* --types: objects by type (CPython) */
	unsigned types_max; /* --types-max: headers read per refresh; 0 default
			     */
	int top;	    /* --top: rows in batch mode; 0 = all */
	enum sort_field sort; /* -o */
	bool reverse;
	unsigned long max_allocs;    /* --max-allocs */
	unsigned long max_stacks;    /* --max-stacks */
	unsigned long max_unwind_mb; /* --max-unwind-mb */
	bool no_color;		     /* -C, or NO_COLOR set */
	bool verbose;		     /* -v */
	bool follow;	      /* -f: trace the children traced processes fork */
	char *const *command; /* -- COMMAND [ARGS]: argv, NULL-terminated */
	const char *user;     /* -u: only this user's processes */
	uid_t uid;
	bool has_uid;
	const char *comm;	     /* --comm: only processes of this name */
	unsigned long long min_size; /* --min-size */
	unsigned depth;	       /* --depth: frames kept per stack; 0 = all */
	unsigned sample_every; /* --sample N */
	double reclaim_s; /* --reclaim-after: idle empty stacks are dropped */
	bool show_allocator; /* --show-allocator */
	bool python_native;  /* --python-native */
	bool entry_probes;   /* --entry-probes: probe at function entry only */
	bool bench_empty;    /* --bench-empty-probes: benchmarks' floor */
	enum python_mode python; /* --python auto|on|off */
	bool growth; /* --growth: page faults, no allocator probes */
};

enum config_action {
	CONFIG_RUN = 0,
	CONFIG_HELP,
	CONFIG_VERSION,
};

/*
 * Parse argv into cfg. Returns a config_action (>= 0), or -EINVAL with a
 * one-line message naming the problem in err.
 */
int config_parse(struct config *cfg, int argc, char **argv, char *err,
		 size_t errlen);
void config_usage(FILE *f);

#endif
