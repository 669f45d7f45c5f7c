/*
 * Heap profiles in pprof's format (gzip-compressed protobuf), laid out as
 * Go's heap profiles are, so go tool pprof, Parca, Pyroscope and every other
 * pprof reader show memtop's outstanding memory unchanged: one sample per
 * site with its frames leaf first, sample types alloc_objects, alloc_space,
 * inuse_objects, inuse_space (the default), period_type space/bytes.
 */
#ifndef MEMTOP_OUTPUT_PPROF_H
#define MEMTOP_OUTPUT_PPROF_H

#include <stddef.h>
#include <stdint.h>
#include <linux/types.h> /* memtop.h, reached through snapshot.h, needs __u32 */
#include "snapshot.h"

/*
 * The snapshot as a gzip-compressed profile in *out (malloc'd, *len bytes;
 * the caller frees it). 0 or -errno (-ENOMEM).
 */
int pprof_encode(const struct snapshot *s, uint8_t **out, size_t *len);
/* pprof_encode() into path (O_NOFOLLOW, replaced whole); 0 or -errno. */
int pprof_write(const char *path, const struct snapshot *s);

#endif
