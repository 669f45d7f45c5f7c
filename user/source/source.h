/*
 * The source: where snapshots come from. It owns the tracer (BPF maps), the
 * symbolizer and the collector, and one refresh: read the maps, fill each
 * process from /proc, apply -u/--comm, update the model and hand back its
 * snapshot, forgetting the processes the previous snapshot showed as exited.
 * Views change how the snapshot is ordered and folded through it, never
 * through the collector.
 */
#ifndef MEMTOP_SOURCE_H
#define MEMTOP_SOURCE_H

#include <stdbool.h>
#include <stdint.h>
#include "config.h"
#include "launch.h"
#include "snapshot.h"

struct source;

/*
 * Load and attach for cfg's targets. child: the -- COMMAND being traced
 * (reaped at each refresh), or NULL. self_cost: fill memtop's own CPU and
 * kernel memory in each sample (the metrics endpoint reports them).
 * Returns 0 or -errno, with *attach_failed set when loading or attaching
 * failed (the tracer has said what failed).
 */
int source_open(struct source **out, const struct config *cfg,
		struct launch *child, bool self_cost, bool *attach_failed);
/* One refresh; the snapshot is valid until the next refresh. */
int source_refresh(struct source *s, const struct snapshot **out);
/* The latest snapshot again, re-sorted (no new reading). */
const struct snapshot *source_snapshot(struct source *s);
void source_set_sort(struct source *s, enum sort_field f, bool reverse);
/* Set the baseline at the latest snapshot; clear it when on is false. */
void source_set_baseline(struct source *s, bool on);
/* Collapse sites by function. */
void source_set_collapse(struct source *s, bool on);
/* Does the latest snapshot's site still exist (its names still valid)? */
bool source_has_site(struct source *s, uint32_t pid, uint64_t stack_id);
/* --growth: page faults, no allocator probes. */
bool source_growth(const struct source *s);
/* Growth mode only: trace pid exactly (on) or in growth mode again. */
int source_set_exact(struct source *s, uint32_t pid, bool on);
/* Objects by type (the live view's key): read from the next refresh on, or
 * stop (--types keeps them on). */
void source_set_types(struct source *s, bool on);
/* No process left to trace: every named target or the command has gone. */
bool source_targets_gone(const struct source *s);
bool source_system_wide(const struct source *s);
int source_nprobes(const struct source *s);
void source_close(struct source *s);

#endif
