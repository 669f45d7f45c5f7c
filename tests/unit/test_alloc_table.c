/*
 * Unit test of the allocator table finder on the first bytes of real
 * CPython allocator API functions (tests/data/pytable: pyenv's 3.11.7 and
 * 3.13.0 libpython, Debian unstable's PGO-built python3.14), the expected
 * slots read off objdump's disassembly of the same functions; then on code
 * that reaches no table.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "check.h"
#include "python/alloc_table.h"

#ifndef DATA_DIR
#define DATA_DIR "tests/data/pytable/"
#endif

struct want {
	const char *file;
	uint64_t pc;
	bool indirect;
	uint64_t addr;
	int64_t disp;
	uint64_t speculated;
};

static const struct want wants[] = {
	/* mov %rdi,%rsi; mov _PyObject(%rip),%rdi; jmp *_PyObject+8(%rip) */
	{"pyenv-3.11.7-PyObject_Malloc", 0x1af1e0, false, 0x45c268, 0, 0},
	/* mov GOT(%rip),%rax; mov 0x310(%rax),%rdi; jmp *0x318(%rax) */
	{"pyenv-3.13.0-PyObject_Malloc", 0x16a580, true, 0x4eacb0, 0x318, 0},
	/* mov _PyRuntime+0x3e8(%rip),%rax; cmp $_PyObject_Malloc,%rax; jne */
	{"debian-3.14.10-PyObject_Malloc", 0x544d60, false, 0xba0b88, 0,
	 0x544e90},
	{"debian-3.14.10-PyObject_Free", 0x552920, false, 0xba0ba0, 0,
	 0x549bb0},
};

int main(void)
{
	struct pytable_ref r;
	uint8_t code[PYTABLE_CODE_BYTES];

	for (size_t i = 0; i < sizeof(wants) / sizeof(wants[0]); i++) {
		const struct want *w = &wants[i];
		char path[256];
		size_t n = 0;
		FILE *f;
		int rc;

		snprintf(path, sizeof(path), DATA_DIR "%s", w->file);
		f = fopen(path, "rb");
		if (f) {
			n = fread(code, 1, sizeof(code), f);
			fclose(f);
		}
		check(n == sizeof(code), "%s: %zu bytes", w->file, n);
		rc = pytable_find(code, n, w->pc, &r);
		check(rc == 0 && r.indirect == w->indirect &&
			      r.addr == w->addr && r.disp == w->disp &&
			      r.speculated == w->speculated,
		      "%s: rc %d indirect %d slot %#llx%+lld speculated %#llx",
		      w->file, rc, r.indirect, (unsigned long long)r.addr,
		      (long long)r.disp, (unsigned long long)r.speculated);
		/* Cut before the load: no table. */
		rc = pytable_find(code, 4, w->pc, &r);
		check(rc == -ENOENT, "%s cut to 4 bytes: no table (%d)",
		      w->file, rc);
	}
	/* push %rbp; mov %rsp,%rbp; call rel32; ret: nothing loaded. */
	{
		static const uint8_t c[] = {0x55, 0x48, 0x89, 0xe5, 0xe8,
					    0,	  0,	0,    0,    0xc3};

		check(pytable_find(c, sizeof(c), 0x1000, &r) == -ENOENT,
		      "a plain function: no table");
	}
	/* A register loaded rip-relative, then overwritten, then jumped
	 * through: not a table. mov 0x10(%rip),%rax; xor %eax,%eax;
	 * jmp *0x8(%rax) */
	{
		static const uint8_t c[] = {0x48, 0x8b, 0x05, 0x10, 0,	  0,
					    0,	  0x31, 0xc0, 0xff, 0x60, 0x08};

		check(pytable_find(c, sizeof(c), 0x1000, &r) == -ENOENT,
		      "overwritten register: no table");
	}
	check(pytable_find(NULL, 0, 0, &r) == -ENOENT, "no bytes: no table");
	printf("%d/%d checks failed\n", failures, checks);
	return failures != 0;
}
