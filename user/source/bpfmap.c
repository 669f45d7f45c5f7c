/*
 * BPF map reads and pruning (see bpfmap.h). Batch lookups cost a fraction
 * of get_next_key walks; the walk remains as a fallback for kernels without
 * them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include "array.h"
#include "bpfmap.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524 /* the kernel's, seen by bpf(2) callers */
#endif

struct bpfmap_walk bpfmap_walk(int fd, size_t ksz)
{
	return (struct bpfmap_walk){.fd = fd, .ksz = ksz, .first = true};
}

bool bpfmap_next(struct bpfmap_walk *w, void *key, void *val)
{
	unsigned char next[BPFMAP_KEY_MAX];

	if (w->ksz > sizeof(next))
		return false;
	while (!bpf_map_get_next_key(w->fd, w->first ? NULL : key, next)) {
		w->first = false;
		memcpy(key, next, w->ksz);
		if (!bpf_map_lookup_elem(w->fd, key, val))
			return true;
	}
	return false;
}

/* Room for n keys and values of these sizes: the buffers serve maps of
 * any sizes, one read after another. */
static int buf_reserve(struct bpfmap_buf *b, size_t n, size_t ksz, size_t vsz)
{
	/* Batch lookups want room for 16-byte keys whatever the map's. */
	size_t kb = n * (ksz > 16 ? ksz : 16), vb = n * vsz;

	if (array_reserve(&b->keys, &b->kbytes, kb, 1) ||
	    array_reserve(&b->vals, &b->vbytes, vb, 1))
		return -ENOMEM;
	return 0;
}

int bpfmap_read_all(struct bpfmap_buf *b, int fd, size_t ksz, size_t vsz,
		    int (*emit)(void *ctx, const void *k, const void *v),
		    void *ctx)
{
	const size_t chunk = 4096;
	__u64 in = 0, outb = 0;
	void *inp = NULL;
	size_t total = 0;
	int err;
	char key[16], next[16];

	if (ksz > sizeof(key))
		return -EINVAL;
	err = buf_reserve(b, chunk, ksz, vsz);
	if (err)
		return err;
	for (;;) {
		__u32 count = chunk;

		err = bpf_map_lookup_batch(fd, inp, &outb, b->keys, b->vals,
					   &count, NULL);
		if (err && errno != ENOENT)
			break;
		for (__u32 i = 0; i < count; i++) {
			int e = emit(ctx, (char *)b->keys + i * ksz,
				     (char *)b->vals + i * vsz);
			if (e)
				return e;
		}
		total += count;
		if (err)
			return 0; /* ENOENT: done */
		in = outb;
		inp = &in;
	}
	/* Fall back to a key walk only for kernels without batch lookups: after
	 * a partial batch the walk would emit those entries a second time. */
	if (total || (errno != EINVAL && errno != EPERM && errno != ENOTSUPP &&
		      errno != EOPNOTSUPP))
		return -errno;
	err = bpf_map_get_next_key(fd, NULL, key);
	while (!err) {
		if (!bpf_map_lookup_elem(fd, key, b->vals)) {
			int e = emit(ctx, key, b->vals);

			if (e)
				return e;
		}
		err = bpf_map_get_next_key(fd, key, next);
		memcpy(key, next, ksz);
	}
	return 0;
}

void bpfmap_buf_free(struct bpfmap_buf *b)
{
	free(b->keys);
	free(b->vals);
	memset(b, 0, sizeof(*b));
}

void bpfmap_delete_if(int fd, size_t ksz,
		      bool (*match)(void *ctx, const void *key),
		      void (*deleted)(void *ctx, const void *key), void *ctx)
{
	unsigned char key[BPFMAP_KEY_MAX] = {0}, next[BPFMAP_KEY_MAX];
	bool first = true;

	if (ksz > sizeof(key))
		return;
	while (!bpf_map_get_next_key(fd, first ? NULL : key, next)) {
		if (!first && match(ctx, key)) {
			bpf_map_delete_elem(fd, key);
			if (deleted)
				deleted(ctx, key);
		}
		memcpy(key, next, ksz);
		first = false;
	}
	if (!first && match(ctx, key)) {
		bpf_map_delete_elem(fd, key);
		if (deleted)
			deleted(ctx, key);
	}
}

bool bpfmap_key_has_tgid(void *ctx, const void *key)
{
	__u32 tgid;

	memcpy(&tgid, key, sizeof(tgid));
	return tgid == *(const __u32 *)ctx;
}
