/*
 * Prometheus text exposition (format 0.0.4) of a snapshot: per traced
 * process gauges and counters labelled pid and comm, memtop's lost events
 * by reason and its own cost, and, only when asked, the top sites.
 */
#ifndef MEMTOP_OUTPUT_METRICS_H
#define MEMTOP_OUTPUT_METRICS_H

#include <stddef.h>
#include <linux/types.h> /* memtop.h, reached through snapshot.h, needs __u32 */
#include "snapshot.h"

/*
 * The exposition in *out (malloc'd, NUL-terminated, *len bytes without the
 * NUL). sites: series for the N sites with the most outstanding bytes (0:
 * none), which bounds their label cardinality to N. 0 or -ENOMEM.
 */
int metrics_render(const struct snapshot *s, int sites, char **out,
		   size_t *len);

#endif
