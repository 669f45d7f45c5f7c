/*
 * gt_badfp: code that uses rbp as a general register while it calls
 * malloc, as code built without frame pointers may: rbp points at a
 * buffer on the stack holding ASCII digits (a key name, as in redis),
 * not at a frame. Where the program keeps frame pointers memtop follows
 * rbp at return addresses, reads the digits as a "return address", and
 * must end the stack there (they are no code address), never store them
 * as a frame (each key name would be a new site). Built without frame
 * pointers, the CFI says where rbp was saved, and the stack is whole.
 */
#include "gt_common.h"

#define BYTES 4321
#define KEYS  8

void *gt_badfp_call(size_t n, const char *digits);

/* rbp = digits across the call (saved and restored as CFI says). */
__asm__(".text\n"
	".globl gt_badfp_call\n"
	".type gt_badfp_call, @function\n"
	"gt_badfp_call:\n"
	".cfi_startproc\n"
	"push %rbp\n"
	".cfi_def_cfa_offset 16\n"
	".cfi_offset %rbp, -16\n"
	"mov %rsi, %rbp\n"
	"call malloc@PLT\n"
	"pop %rbp\n"
	".cfi_def_cfa_offset 8\n"
	".cfi_restore %rbp\n"
	"ret\n"
	".cfi_endproc\n"
	".size gt_badfp_call, .-gt_badfp_call\n");

static void *held[KEYS];

GT_NOINLINE static void store_key(int i)
{
	/* Key names: a different "return address" each. */
	char key[64];

	snprintf(key, sizeof(key), "%08d%08d%047d", 4242, 31337 + i, i);
	held[i] = gt_badfp_call(BYTES, key);
	if (!held[i])
		gt_die("malloc");
	gt_add("gt_badfp_call", BYTES, 1);
}

int main(void)
{
	gt_setup();
	gt_declare("gt_badfp_call");
	gt_ready_and_wait();
	for (int i = 0; i < KEYS; i++)
		store_key(i);
	gt_report(0);
	gt_done_and_wait();
	return 0;
}
