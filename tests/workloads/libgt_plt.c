/*
 * libgt_plt.so, gt_plt's shared library: its calls to malloc and memset
 * go through its PLT (lazily bound: the first call of each goes through
 * the dynamic linker's resolver), and its own exported functions call
 * each other through the PLT too.
 */
#include <stdlib.h>
#include <string.h>

#define GT_LIB_API __attribute__((visibility("default"), noinline))

void *gt_lib_fill(size_t n);
void *gt_lib_direct(size_t n);
void *gt_lib_indirect(size_t n);
void *gt_lib_nested(size_t n);

/* malloc through the PLT, then more work, so that the call is not a tail
 * call at -O2 (a tail call leaves no frame of this function). */
GT_LIB_API void *gt_lib_fill(size_t n)
{
	void *p = malloc(n);

	if (p)
		memset(p, 0x5a, n);
	return p;
}

GT_LIB_API void *gt_lib_direct(size_t n)
{
	char *p = malloc(n);

	if (p)
		memset(p, 1, n);
	return p;
}

GT_LIB_API void *gt_lib_indirect(size_t n)
{
	char *p = malloc(n);

	if (p)
		memset(p, 2, n);
	return p;
}

/* Through the library's own PLT (an exported function, interposable). */
GT_LIB_API void *gt_lib_nested(size_t n)
{
	char *p = gt_lib_fill(n);

	if (p)
		p[0] = 3;
	return p;
}
