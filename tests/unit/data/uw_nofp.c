/*
 * Functions compiled -O2 -fomit-frame-pointer for the unwind table
 * compiler's unit test: prologues that push callee-saved registers and
 * reserve stack (checked against a disassembly), a variable-length array
 * (GCC then keeps a frame pointer even so), and calls through the PLT.
 */
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) long uw_many_regs(long a, long b, long c, long d)
{
	long buf[64];
	long s = 0;

	for (long i = 0; i < 64; i++)
		buf[i] = (a * i) ^ (b + i) ^ (c - i) ^ d;
	for (long i = 0; i < 64; i++)
		s += buf[(i * 7) & 63] * (a + buf[i]);
	return s + (long)strlen((char *)buf);
}

__attribute__((noinline)) long uw_vla(int n)
{
	volatile char v[n];

	memset((char *)v, 1, (size_t)n);
	return v[n / 2] + uw_many_regs(n, n, n, n);
}

__attribute__((noinline)) void *uw_alloc(size_t n)
{
	char *p = malloc(n);

	if (p)
		memset(p, 0, n);
	return p;
}
