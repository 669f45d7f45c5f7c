/*
 * Growable arrays: one way to make room in a realloc'd array, so capacity
 * doubling and its overflow check are written once.
 */
#ifndef MEMTOP_ARRAY_H
#define MEMTOP_ARRAY_H

#include <stddef.h>

/*
 * Make *arr (of elements of elem bytes, *cap of them allocated) hold at
 * least need elements, doubling the capacity. 0 or -ENOMEM; on failure
 * *arr and *cap are left as they were.
 */
int array_reserve(void **arr, size_t *cap, size_t need, size_t elem);

/* array_reserve for an array pointer and its size_t capacity. */
#define ARRAY_RESERVE(arr, cap, need)                                          \
	array_reserve((void **)&(arr), &(cap), (need), sizeof(*(arr)))

#endif
