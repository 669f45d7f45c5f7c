/*
 * Unit test of probe placement on the first bytes of real allocator
 * functions (glibc 2.36 on Debian 12) and on prologues where the probe must
 * stay at the entry.
 */
#include <stdio.h>
#include <string.h>
#include "placement.h"

static int failures;

static void check(const char *what, const char *hex, int null_skips,
		  unsigned expect)
{
	uint8_t code[64];
	size_t n = strlen(hex) / 2;
	uint64_t off = 99;
	int err;

	for (size_t i = 0; i < n; i++)
		sscanf(hex + 2 * i, "%2hhx", &code[i]);
	err = placement_choose(code, n, null_skips, &off);
	if (err || off != expect) {
		printf("FAIL - %s: offset %llu (err %d), expected %u\n", what,
		       (unsigned long long)off, err, expect);
		failures++;
	} else {
		printf("ok - %s: +%u\n", what, expect);
	}
}

int main(void)
{
	/* test %rdi,%rdi; je ...; push %rbp: past the NULL check */
	check("glibc free", "4885ff0f84bf00000055488d77f05348", 1, 9);
	/* without the NULL rule: the je after the flags-only test */
	check("free pattern without null_skips",
	      "4885ff0f84bf00000055488d77f05348", 0, 3);
	/* push %r12 first: already emulated */
	check("glibc malloc", "415455534889fb4883ec10803d461b14", 0, 0);
	/* cmpb $0,x(%rip); je: probe the je */
	check("glibc memalign", "803d710e1400007407e932f6ffff6690", 0, 7);
	/* cmpb; push %r12 */
	check("glibc posix_memalign", "803d010214000041544989d4554889fd", 0, 7);
	/* endbr64; push %rbp */
	check("endbr64 then push", "f30f1efa554889e5", 0, 4);
	/* sub $0x18,%rsp first: moves the stack pointer, stay at entry */
	check("sub rsp first", "4883ec18488b05000000004889c7", 0, 0);
	/* mov %rsi,%rdi first: clobbers an argument, stay at entry */
	check("argument clobbered", "4889f755", 0, 0);
	/* mov %rdi,%rax (not an argument register); push %rbx */
	check("scratch register write", "4889f853", 0, 3);
	/* movq $0,(%rsp): a memory write could be the return address */
	check("memory write", "48c7042400000000", 0, 0);
	/* jmp rel32 at entry (a PLT-like tail call): emulated */
	check("jmp first", "e912345678", 0, 0);
	/* garbage */
	check("undecodable", "ffff", 0, 0);
	printf("%d failure(s)\n", failures);
	return failures != 0;
}
