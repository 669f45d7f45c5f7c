/*
 * gt_plt: blocks allocated by a shared library this test builds
 * (libgt_plt.so), through PLT stubs at both ends: the executable calls the
 * library through its PLT, the library calls malloc through its own; one
 * function is found with dlsym and called through a pointer, one calls
 * another of the library's functions through the library's PLT. Every
 * stack must go from the library's function through the executable's to
 * main.
 */
#include <dlfcn.h>
#include "gt_common.h"

#define DIRECT_BYTES   1111
#define INDIRECT_BYTES 2222
#define NESTED_BYTES   3333
#define ROUNDS	       50

void *gt_lib_direct(size_t n);
void *gt_lib_nested(size_t n);

static void *held[3 * ROUNDS];
static int nheld;

static void keep(void *p, const char *fn, long long n)
{
	if (!p)
		gt_die("malloc in libgt_plt");
	held[nheld++] = p;
	gt_add(fn, n, 1);
}

GT_NOINLINE static void call_direct(void)
{
	keep(gt_lib_direct(DIRECT_BYTES), "gt_lib_direct", DIRECT_BYTES);
}

GT_NOINLINE static void call_indirect(void *(*fn)(size_t))
{
	keep(fn(INDIRECT_BYTES), "gt_lib_indirect", INDIRECT_BYTES);
}

GT_NOINLINE static void call_nested(void)
{
	keep(gt_lib_nested(NESTED_BYTES), "gt_lib_fill", NESTED_BYTES);
}

int main(void)
{
	void *(*indirect)(size_t);
	void *lib;

	gt_setup();
	/* The library is loaded already (DT_NEEDED); dlopen finds it. */
	lib = dlopen("libgt_plt.so", RTLD_NOW | RTLD_NOLOAD);
	if (!lib)
		lib = dlopen("libgt_plt_nofp.so", RTLD_NOW | RTLD_NOLOAD);
	if (!lib)
		gt_die("dlopen libgt_plt");
	indirect = (void *(*)(size_t))dlsym(lib, "gt_lib_indirect");
	if (!indirect)
		gt_die("dlsym gt_lib_indirect");
	gt_declare("gt_lib_direct");
	gt_declare("gt_lib_indirect");
	gt_declare("gt_lib_fill");
	gt_ready_and_wait();

	for (int i = 0; i < ROUNDS; i++) {
		call_direct();
		call_indirect(indirect);
		call_nested();
	}

	gt_report(0);
	gt_done_and_wait();
	return 0;
}
