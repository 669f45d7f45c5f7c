/*
 * Growth mode's part of the source (memtop --growth): attaching the page
 * fault and syscall programs of bpf/growth.bpf.h, reading what they count
 * per process, and the per-process switch to exact tracing on the BPF side.
 * The tracer owns the skeleton and calls these.
 */
#ifndef MEMTOP_GROWTH_H
#define MEMTOP_GROWTH_H

#include <stdbool.h>
#include <stdint.h>
#include "sample.h"

struct memtop_bpf;
struct growth;

/* Load the growth programs only when they run (before load). */
void growth_autoload(struct memtop_bpf *skel, bool on);
/* The fault tracepoint, a page-fault perf event per CPU, the syscall
 * tracepoints; 0 or -errno (said on stderr). */
int growth_attach(struct memtop_bpf *skel, int ncpus, struct growth **out);
void growth_detach(struct growth *g);
/* Returned memory per process into raw (add: processes not yet in raw). */
void growth_read(struct memtop_bpf *skel, struct raw_sample *raw, bool add);
/* Stop (on) or resume charging tgid's faults; 0 or -errno. */
int growth_set_exact(struct memtop_bpf *skel, uint32_t tgid, bool on);
/* Delete tgid's live blocks (exact tracing starts afresh). */
void growth_purge_live(struct memtop_bpf *skel, uint32_t tgid);
/* A process gone: its growth-mode state. */
void growth_forget(struct memtop_bpf *skel, uint32_t tgid);

#endif
