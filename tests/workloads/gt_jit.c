/*
 * gt_jit: a tiny "JIT": x86-64 code copied into an anonymous executable
 * mapping calls malloc, so the function that called the allocator is only
 * known from /tmp/perf-PID.map. Prints "JIT <hex start> <hex size>" before
 * READY; the test writes the perf map (with hostile junk around the real
 * entry), then triggers the allocations. The frame is named "jit_alloc" by
 * the map and recorded as such below.
 */
#include <stdint.h>
#include <sys/mman.h>
#include "gt_common.h"

static void *volatile sink;

typedef void *(*jit_fn)(void);

GT_NOINLINE static void call_jit(jit_fn f)
{
	for (int i = 0; i < 3; i++)
		if (!(sink = f()))
			gt_die("jit malloc");
	gt_add("jit_alloc", 3 * 1234, 3);
}

GT_NOINLINE static void plain_alloc(void)
{
	for (int i = 0; i < 2; i++)
		if (!(sink = malloc(4321)))
			gt_die("malloc");
	gt_add("plain_alloc", 2 * 4321, 2);
}

int main(void)
{
#if defined(__x86_64__)
	/* push rbp; mov rbp,rsp; mov edi,1234; movabs rax,malloc; call rax;
	 * pop rbp; ret */
	unsigned char code[] = {0x55, 0x48, 0x89, 0xe5, 0xbf, 0xd2, 0x04, 0x00,
				0x00, 0x48, 0xb8, 0,	0,    0,    0,	  0,
				0,    0,    0,	  0xff, 0xd0, 0x5d, 0xc3};
	void *(*m)(size_t) = malloc;
	uintptr_t addr = (uintptr_t)m;
	unsigned char *jit;

	gt_setup();
	memcpy(code + 11, &addr, 8);
	jit = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (jit == MAP_FAILED)
		gt_die("mmap");
	memcpy(jit, code, sizeof(code));
	free(malloc(10));
	gt_out("JIT %lx %lx\n", (unsigned long)(uintptr_t)jit,
	       (unsigned long)sizeof(code));
	gt_ready_and_wait();

	call_jit((jit_fn)(void *)jit);
	plain_alloc();

	gt_report(-1);
	gt_done_and_wait();
#else
	gt_die("x86-64 only");
#endif
	return 0;
}
