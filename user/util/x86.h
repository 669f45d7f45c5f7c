/*
 * x86 instruction classes by capstone id, for the code walks that need
 * them: probe placement (what the kernel emulates) and the search for
 * CPython's allocator-table references (what a straight walk steps over).
 */
#ifndef MEMTOP_X86_H
#define MEMTOP_X86_H

#include <stdbool.h>
#include <capstone/capstone.h>

/* A conditional jump on the flags (not jcxz or loop, which test rcx). */
static inline bool x86_is_jcc(unsigned id)
{
	switch (id) {
	case X86_INS_JAE:
	case X86_INS_JA:
	case X86_INS_JBE:
	case X86_INS_JB:
	case X86_INS_JE:
	case X86_INS_JGE:
	case X86_INS_JG:
	case X86_INS_JLE:
	case X86_INS_JL:
	case X86_INS_JNE:
	case X86_INS_JNO:
	case X86_INS_JNP:
	case X86_INS_JNS:
	case X86_INS_JO:
	case X86_INS_JP:
	case X86_INS_JS:
		return true;
	default:
		return false;
	}
}

#endif
