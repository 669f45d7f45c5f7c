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
/*
 * The snapshot as Go's legacy text heap profile, what net/http/pprof serves
 * for /debug/pprof/heap?debug=1: a "heap profile:" total, then per site
 * "inuse_objects: inuse_bytes [alloc_objects: alloc_bytes] @ addresses"
 * (leaf first, the allocator's frames dropped) and a "#" line per frame
 * with its function and location; most bytes first. *out is malloc'd,
 * NUL-terminated, *len bytes. 0 or -errno.
 */
int pprof_text(const struct snapshot *s, char **out, size_t *len);
/*
 * A baseline for a delta profile (what net/http/pprof serves for
 * /debug/pprof/heap?seconds=N): every site's figures at one snapshot,
 * copied, so the snapshot itself need not be kept.
 */
struct pprof_base;
/* The snapshot's figures as a baseline in *out; 0 or -ENOMEM. */
int pprof_base_take(const struct snapshot *s, struct pprof_base **out);
void pprof_base_free(struct pprof_base *b);
/*
 * The profile of s minus the baseline, as Go's delta profiles are: every
 * value the difference (inuse may be negative), sites whose figures did not
 * change left out, time_nanos s's and duration_nanos the time between the
 * two. A site the baseline has and s no longer has (its process forgotten)
 * is left out. 0 or -errno.
 */
int pprof_encode_delta(const struct snapshot *s, const struct pprof_base *b,
		       uint8_t **out, size_t *len);
/* pprof_encode() into path (O_NOFOLLOW, replaced whole); 0 or -errno. */
int pprof_write(const char *path, const struct snapshot *s);

#endif
