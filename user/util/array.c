/*
 * Growable arrays (see array.h): capacity doubles from a small start, so n
 * appends cost O(n) copies in all.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include "array.h"

#define ARRAY_MIN 16

int array_reserve(void **arr, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *p;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap : ARRAY_MIN;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return -ENOMEM;
		ncap *= 2;
	}
	if (elem && ncap > SIZE_MAX / elem)
		return -ENOMEM;
	p = realloc(*arr, ncap * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}
