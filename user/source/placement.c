/*
 * Probe placement: where in an allocator function to put its uprobe. A
 * uprobe on an instruction the kernel can emulate (push, jmp, jcc, call,
 * nop) costs a trap; on any other it also costs a single-step, about 17x
 * more on this kind of VM. glibc's free starts with `test %rdi,%rdi` and
 * memalign/valloc/posix_memalign with a `cmpb` on a global, so their probes
 * are moved forward past instructions that leave the arguments, the stack
 * pointer and the return address untouched, to the first emulated one. The
 * probe then sees the same registers and stack as at the entry.
 */
#include <capstone/capstone.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include "placement.h"
#include "x86.h"

#define MAX_INSNS 8

/* Registers an allocator entry point reads its arguments from, and rsp. */
static bool is_protected_reg(csh h, uint16_t reg)
{
	static const char *const names[] = {
		"rsp", "esp", "sp",  "spl", "rdi", "edi", "di", "dil",
		"rsi", "esi", "si",  "sil", "rdx", "edx", "dx", "dl",
		"dh",  "rcx", "ecx", "cx",  "cl",  "ch",  "r8", "r8d",
		"r8w", "r8b", "r9",  "r9d", "r9w", "r9b", "rip"};
	const char *n = cs_reg_name(h, reg);

	if (!n)
		return true;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(n, names[i]))
			return true;
	return false;
}

/* What the x86 uprobe code emulates instead of single-stepping. */
static bool is_emulated(const cs_insn *insn)
{
	const cs_x86 *x = &insn->detail->x86;

	switch (insn->id) {
	case X86_INS_NOP:
		return true;
	case X86_INS_PUSH:
		return x->op_count == 1 && x->operands[0].type == X86_OP_REG;
	case X86_INS_CALL:
	case X86_INS_JMP:
		break;
	default:
		if (!x86_is_jcc(insn->id))
			return false;
	}
	/* Relative targets only; indirect jumps are single-stepped. */
	return x->op_count == 1 && x->operands[0].type == X86_OP_IMM;
}

static bool is_branch(const cs_insn *insn)
{
	for (int i = 0; i < insn->detail->groups_count; i++) {
		uint8_t g = insn->detail->groups[i];

		if (g == CS_GRP_JUMP || g == CS_GRP_CALL || g == CS_GRP_RET ||
		    g == CS_GRP_INT || g == CS_GRP_IRET)
			return true;
	}
	return false;
}

/* Runs without side effects a probe placed after it could miss. */
static bool is_skippable(csh h, const cs_insn *insn)
{
	cs_regs rd, wr;
	uint8_t nrd, nwr;

	if (is_branch(insn))
		return false;
	if (insn->id == X86_INS_ENDBR64)
		return true;
	if (cs_regs_access(h, insn, rd, &nrd, wr, &nwr))
		return false;
	for (int i = 0; i < nwr; i++)
		if (is_protected_reg(h, wr[i]))
			return false;
	/* A memory write could touch the return address at (%rsp). */
	for (int i = 0; i < insn->detail->x86.op_count; i++) {
		const cs_x86_op *op = &insn->detail->x86.operands[i];

		if (op->type == X86_OP_MEM && (op->access & CS_AC_WRITE))
			return false;
	}
	return true;
}

/* `test %rdi,%rdi; je/jz` at the start of a free: free(NULL) does nothing. */
static bool is_null_check(const cs_insn *test, const cs_insn *jump)
{
	const cs_x86 *x = &test->detail->x86;

	return test->id == X86_INS_TEST && x->op_count == 2 &&
	       x->operands[0].type == X86_OP_REG &&
	       x->operands[1].type == X86_OP_REG &&
	       x->operands[0].reg == X86_REG_RDI &&
	       x->operands[1].reg == X86_REG_RDI && jump->id == X86_INS_JE;
}

int placement_choose(const uint8_t *code, size_t len, bool null_skips,
		     uint64_t *offset)
{
	cs_insn *insn = NULL;
	size_t n;
	csh h;
	int ret = 0;

	*offset = 0;
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK)
		return -EINVAL;
	cs_option(h, CS_OPT_DETAIL, CS_OPT_ON);
	n = cs_disasm(h, code, len, 0, MAX_INSNS, &insn);
	for (size_t i = 0; i < n; i++) {
		if (is_emulated(&insn[i])) {
			*offset = insn[i].address;
			goto cleanup;
		}
		if (null_skips && i + 1 < n &&
		    is_null_check(&insn[i], &insn[i + 1])) {
			i++;
			continue;
		}
		if (!is_skippable(h, &insn[i]))
			break;
	}
	/* Nothing better: the entry, single-stepped if it must be. */
	*offset = 0;
	ret = 0;
cleanup:
	if (insn)
		cs_free(insn, n);
	cs_close(&h);
	return ret;
}
