/*
 * Reading and pruning the tracer's BPF hash maps: one walk over a map's
 * entries, one whole-map read (batched where the kernel has batch lookups),
 * and one delete-while-walking, for the tracer and growth mode alike.
 */
#ifndef MEMTOP_BPFMAP_H
#define MEMTOP_BPFMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BPFMAP_KEY_MAX 64

/* A walk over a map's entries: bpfmap_walk, then bpfmap_next until false. */
struct bpfmap_walk {
	int fd;
	size_t ksz;
	bool first;
};

struct bpfmap_walk bpfmap_walk(int fd, size_t ksz);
/*
 * The next entry: its key into key (which holds the previous one) and its
 * value into val; false at the end. An entry deleted meanwhile is skipped.
 */
bool bpfmap_next(struct bpfmap_walk *w, void *key, void *val);

/* Buffers for whole-map reads, reused from one refresh to the next. */
struct bpfmap_buf {
	void *keys, *vals;
	size_t kbytes, vbytes; /* their sizes */
};

/*
 * Every entry of a hash map to emit(ctx, key, value); stops at emit's first
 * non-zero answer and returns it. 0 or -errno.
 */
int bpfmap_read_all(struct bpfmap_buf *b, int fd, size_t ksz, size_t vsz,
		    int (*emit)(void *ctx, const void *k, const void *v),
		    void *ctx);
void bpfmap_buf_free(struct bpfmap_buf *b);

/*
 * Delete the entries whose key match() accepts, telling deleted() (if set)
 * of each. The walk steps past a key before deleting it: deleting the
 * current key would restart it.
 */
void bpfmap_delete_if(int fd, size_t ksz,
		      bool (*match)(void *ctx, const void *key),
		      void (*deleted)(void *ctx, const void *key), void *ctx);
/* match for keys that start with a __u32 tgid: ctx points to the tgid. */
bool bpfmap_key_has_tgid(void *ctx, const void *key);

#endif
