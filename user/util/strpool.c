/*
 * The string pool (see strpool.h): an open-addressing set of pointers into
 * chunks of 4 KiB, so interning many short names costs few mallocs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "strpool.h"

#define POOL_CHUNK 4096
#define POOL_MIN   256

struct strpool_chunk {
	struct strpool_chunk *next;
	size_t used, cap;
	char data[];
};

static uint64_t fnv1a(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (len--)
		h = (h ^ (unsigned char)*s++) * 0x100000001b3ull;
	return h;
}

static char *pool_alloc(struct strpool *pool, size_t len)
{
	struct strpool_chunk *c = pool->chunks;

	if (!c || c->cap - c->used < len) {
		size_t cap = len > POOL_CHUNK ? len : POOL_CHUNK;

		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->used = 0;
		c->cap = cap;
		/* A big string must not strand the space left in the head
		 * chunk. */
		if (pool->chunks && cap > POOL_CHUNK) {
			c->next = pool->chunks->next;
			pool->chunks->next = c;
		} else {
			c->next = pool->chunks;
			pool->chunks = c;
		}
	}
	c->used += len;
	return c->data + c->used - len;
}

static int pool_rehash(struct strpool *pool)
{
	size_t cap = pool->cap ? pool->cap * 2 : POOL_MIN;
	const char **set = calloc(cap, sizeof(*set));

	if (!set)
		return -1;
	for (size_t i = 0; i < pool->cap; i++) {
		const char *old = pool->set[i];
		size_t j;

		if (!old)
			continue;
		j = fnv1a(old, strlen(old)) & (cap - 1);
		while (set[j])
			j = (j + 1) & (cap - 1);
		set[j] = old;
	}
	free(pool->set);
	pool->set = set;
	pool->cap = cap;
	return 0;
}

const char *strpool_intern(struct strpool *pool, const char *s, size_t len)
{
	size_t i;
	char *copy;

	if (pool->n * 2 >= pool->cap && pool_rehash(pool))
		return NULL;
	for (i = fnv1a(s, len) & (pool->cap - 1); pool->set[i];
	     i = (i + 1) & (pool->cap - 1))
		if (!strncmp(pool->set[i], s, len) && pool->set[i][len] == '\0')
			return pool->set[i];
	copy = pool_alloc(pool, len + 1);
	if (!copy)
		return NULL;
	memcpy(copy, s, len);
	copy[len] = '\0';
	pool->set[i] = copy;
	pool->n++;
	return copy;
}

void strpool_free(struct strpool *pool)
{
	struct strpool_chunk *c, *next;

	for (c = pool->chunks; c; c = next) {
		next = c->next;
		free(c);
	}
	free(pool->set);
	memset(pool, 0, sizeof(*pool));
}
