/*
 * Allocator table references in CPython's allocator API functions (see
 * alloc_table.h): a short straight-line walk with capstone, following which
 * registers hold a value loaded from a rip-relative address.
 */
#include <capstone/capstone.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "python/alloc_table.h"
#include "util/x86.h"

#define MAX_INSNS 24

/* A general register's family (rax, eax, ax, al, ah are one), 0 for the
 * rest (rip, flags, vector registers). */
static int family(csh h, unsigned reg)
{
	static const char *const fam[] = {"ax", "bx", "cx", "dx",
					  "si", "di", "bp", "sp"};
	const char *n = cs_reg_name(h, reg);
	size_t l;

	if (!n)
		return 0;
	if (n[0] == 'r' && isdigit((unsigned char)n[1]))
		return 100 + atoi(n + 1);
	if (n[0] == 'r' || n[0] == 'e')
		n++;
	l = strlen(n);
	for (size_t i = 0; i < sizeof(fam) / sizeof(fam[0]); i++) {
		if (!strncmp(n, fam[i], 2) &&
		    (l == 2 || (l == 3 && n[2] == 'l')))
			return (int)i + 1;
		if (l == 2 && n[1] == (i < 4 ? 'l' : 0) && n[0] == fam[i][0])
			return (int)i + 1; /* al, bl, cl, dl */
		if (l == 2 && i < 4 && n[1] == 'h' && n[0] == fam[i][0])
			return (int)i + 1; /* ah .. dh */
	}
	return 0;
}

/* Per register family: loaded from which rip-relative address, 0 for
 * nothing known. */
struct regs {
	csh h;
	uint64_t from[120];
};

static uint64_t reg_from(const struct regs *r, unsigned reg)
{
	int f = family(r->h, reg);

	return f > 0 && f < 120 ? r->from[f] : 0;
}

static void reg_set(struct regs *r, unsigned reg, uint64_t from)
{
	int f = family(r->h, reg);

	if (f > 0 && f < 120)
		r->from[f] = from;
}

int pytable_find(const uint8_t *code, size_t len, uint64_t pc,
		 struct pytable_ref *out)
{
	const uint8_t *p = code;
	uint64_t addr = pc;
	struct regs regs;
	int ret = -ENOENT;
	cs_insn *insn;
	csh h;

	memset(out, 0, sizeof(*out));
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK)
		return -EINVAL;
	cs_option(h, CS_OPT_DETAIL, CS_OPT_ON);
	memset(&regs, 0, sizeof(regs));
	regs.h = h;
	insn = cs_malloc(h);
	if (!insn) {
		cs_close(&h);
		return -ENOMEM;
	}
	for (int k = 0; k < MAX_INSNS && ret == -ENOENT &&
			cs_disasm_iter(h, &p, &len, &addr, insn);
	     k++) {
		const cs_x86 *x = &insn->detail->x86;
		const cs_x86_op *o0 = x->op_count > 0 ? &x->operands[0] : NULL;
		const cs_x86_op *o1 = x->op_count > 1 ? &x->operands[1] : NULL;
		uint64_t next = insn->address + insn->size;

		switch (insn->id) {
		case X86_INS_MOV:
			if (o0 && o1 && o0->type == X86_OP_REG &&
			    o0->size == 8 && o1->type == X86_OP_MEM &&
			    o1->mem.base == X86_REG_RIP &&
			    o1->mem.index == X86_REG_INVALID) {
				reg_set(&regs, o0->reg, next + o1->mem.disp);
				continue;
			}
			break;
		case X86_INS_JMP:
		case X86_INS_CALL:
			if (!o0)
				break;
			if (o0->type == X86_OP_MEM &&
			    o0->mem.base == X86_REG_RIP &&
			    o0->mem.index == X86_REG_INVALID) {
				out->addr = next + o0->mem.disp;
				ret = 0;
			} else if (o0->type == X86_OP_MEM &&
				   o0->mem.index == X86_REG_INVALID &&
				   reg_from(&regs, o0->mem.base)) {
				out->indirect = true;
				out->addr = reg_from(&regs, o0->mem.base);
				out->disp = o0->mem.disp;
				ret = 0;
			} else if (o0->type == X86_OP_REG &&
				   reg_from(&regs, o0->reg)) {
				out->addr = reg_from(&regs, o0->reg);
				ret = 0;
			} else {
				ret = -ENOENT;
				goto done; /* somewhere else: stop */
			}
			continue;
		case X86_INS_CMP:
			/* The slot's value against a function's address. */
			if (o0 && o1 && o0->type == X86_OP_REG &&
			    o1->type == X86_OP_IMM &&
			    reg_from(&regs, o0->reg)) {
				out->addr = reg_from(&regs, o0->reg);
				out->speculated = (uint64_t)o1->imm;
				ret = 0;
				continue;
			}
			break;
		case X86_INS_RET:
			goto done;
		default:
			if (x86_is_jcc(insn->id))
				continue; /* straight on: the common path */
			break;
		}
		/* Anything else may overwrite what a register held. */
		{
			cs_regs rd, wr;
			uint8_t nr, nw;

			if (!cs_regs_access(h, insn, rd, &nr, wr, &nw))
				for (int i = 0; i < nw; i++)
					reg_set(&regs, wr[i], 0);
			else
				memset(regs.from, 0, sizeof(regs.from));
		}
	}
done:
	cs_free(insn, 1);
	cs_close(&h);
	return ret;
}
