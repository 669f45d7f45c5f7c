/*
 * A string pool: each distinct string stored once, in chunks, so a pooled
 * pointer identifies its string and stays valid until the pool is freed.
 * The collector pools the names it shows; the symbolizer the names it hands
 * out. A zeroed struct is an empty pool; its fields are the pool's own.
 */
#ifndef MEMTOP_STRPOOL_H
#define MEMTOP_STRPOOL_H

#include <stddef.h>

struct strpool_chunk;

struct strpool {
	const char **set; /* open addressing, power-of-two size */
	size_t cap, n;
	struct strpool_chunk *chunks;
};

/* The pooled copy of s[0..len) (which need not be NUL-terminated), NULL
 * without memory. */
const char *strpool_intern(struct strpool *pool, const char *s, size_t len);
/* Free every string of the pool and leave it empty. */
void strpool_free(struct strpool *pool);

#endif
