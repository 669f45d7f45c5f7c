/*
 * Unit tests of user/util: the growable array keeps its elements across
 * growth and refuses sizes that overflow; the string pool hands out one
 * pointer per distinct string, including strings longer than a chunk and
 * strings given by length out of a longer buffer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "array.h"
#include "strpool.h"

static void test_array(void)
{
	uint32_t *a = NULL;
	size_t cap = 0, n = 0;
	int bad = 0;

	for (uint32_t i = 0; i < 100000; i++) {
		if (ARRAY_RESERVE(a, cap, n + 1))
			break;
		a[n++] = i * 7;
	}
	check(n == 100000 && cap >= n, "array: 100000 appends (cap %zu)", cap);
	for (size_t i = 0; i < n; i++)
		bad += a[i] != (uint32_t)i * 7;
	check(!bad, "array: every element kept across growth");
	check(!ARRAY_RESERVE(a, cap, 10) && cap >= 100000,
	      "array: a smaller need leaves it alone");
	check(array_reserve((void **)&a, &cap, SIZE_MAX / 2, sizeof(*a)) ==
			      -ENOMEM &&
		      cap >= 100000 && a[99999] == 99999 * 7,
	      "array: an overflowing size is refused, the array kept");
	free(a);
}

static void test_strpool(void)
{
	struct strpool pool = {0};
	char name[32], *big;
	const char *first[5000];
	int same = 1, distinct = 1;
	const char *x, *y;

	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "fn_%d", i);
		first[i] = strpool_intern(&pool, name, strlen(name));
	}
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "fn_%d", i);
		same &= strpool_intern(&pool, name, strlen(name)) == first[i];
		same &= first[i] && !strcmp(first[i], name);
	}
	for (int i = 1; i < 5000; i++)
		distinct &= first[i] != first[i - 1];
	check(same, "strpool: 5000 names, each interned to one pointer");
	check(distinct, "strpool: distinct names, distinct pointers");

	x = strpool_intern(&pool, "fn_12345", 4); /* "fn_1" */
	check(x == first[1], "strpool: a prefix by length is its own string");
	y = strpool_intern(&pool, "", 0);
	check(y && !*y && y == strpool_intern(&pool, "x", 0),
	      "strpool: the empty string");

	big = malloc(20000);
	if (big) {
		memset(big, 'a', 19999);
		big[19999] = '\0';
		x = strpool_intern(&pool, big, 19999);
		big[19998] = 'b';
		y = strpool_intern(&pool, big, 19999);
		check(x && y && x != y && strlen(x) == 19999 &&
			      x[19998] == 'a' && y[19998] == 'b',
		      "strpool: strings longer than a chunk, whole");
		check(strpool_intern(&pool, "fn_42", 5) == first[42],
		      "strpool: a big string leaves earlier ones in place");
		free(big);
	}
	strpool_free(&pool);
	check(!pool.n && !pool.set, "strpool: freed pool is empty");
	check(strpool_intern(&pool, "again", 5) != NULL,
	      "strpool: usable after free");
	strpool_free(&pool);
}

int main(void)
{
	test_array();
	test_strpool();
	printf("%d/%d checks failed\n", failures, checks);
	return failures != 0;
}
