/*
 * CFI table compiler. libdw evaluates the CFI: for an address,
 * dwarf_cfi_addrframe() runs the FDE's instructions up to it and says how
 * the CFA and each register of the caller are found, and over which pc
 * range [start, end) that holds. Walking every executable segment from
 * range end to range end visits each row once; between FDEs (padding,
 * code without CFI) the next covered byte is probed for. Each row's rules
 * are reduced to the few shapes the BPF walk evaluates (CFA = rsp or rbp
 * plus a multiple of 8, the PLT stub expression, return address at CFA-8,
 * rbp saved at a CFA offset or kept, a signal trampoline's registers in
 * the signal frame); anything else becomes MT_UW_BAD, so
 * a stack through it ends instead of going on with a wrong frame. Equal
 * adjacent rows are merged.
 */
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "symbol/gopclntab.h"
#include "util/array.h"
#include "unwind/cfi.h"

/* DWARF register numbers of x86-64. */
#define REG_RBP 6
#define REG_RSP 7
#define REG_RIP 16

/* A gap between FDEs is probed byte by byte this far, then per 16 bytes
 * (function alignment) up to the next byte libdw covers. */
#define GAP_BYTES 64

/* .plt, .plt.got, .plt.sec: stubs that jump, never call. */
#define PLT_SECS 4

struct unwind_table {
	struct mt_unwind_row *rows;
	size_t nrows, cap;
	uint64_t base;
	uint64_t covered, code;
	uint64_t fp;   /* bytes where CFA = rbp + 16, rbp saved at CFA - 16 */
	uint64_t stub; /* covered bytes in PLT sections */
	uint64_t plt[PLT_SECS][2]; /* the PLT sections' [start, end) */
	size_t nplt;
	size_t bad;
	uint64_t end; /* where the last rule ended (ELF address) */
	bool have_end;
};

struct rule {
	uint8_t type;
	uint16_t cfa;
	int8_t rbp;
};

static int push_row(struct unwind_table *t, uint64_t vaddr,
		    const struct rule *r)
{
	struct mt_unwind_row *row;

	if (t->nrows) {
		row = &t->rows[t->nrows - 1];
		if (row->type == r->type && row->cfa == r->cfa &&
		    row->rbp == r->rbp)
			return 0;
		if (row->pc == vaddr - t->base) {
			/* An empty row (a rule for zero bytes): replaced. */
			row->type = r->type;
			row->cfa = r->cfa;
			row->rbp = r->rbp;
			return 0;
		}
	}
	if (ARRAY_RESERVE(t->rows, t->cap, t->nrows + 1))
		return -ENOMEM;
	row = &t->rows[t->nrows++];
	row->pc = (uint32_t)(vaddr - t->base);
	row->type = r->type;
	row->cfa = r->cfa;
	row->rbp = r->rbp;
	return 0;
}

/* The rule of [start, end); an uncovered stretch before it ends stacks. */
static int add_range(struct unwind_table *t, uint64_t start, uint64_t end,
		     const struct rule *r)
{
	static const struct rule none = {.type = MT_UW_END};
	int err;

	if (t->have_end && start > t->end) {
		err = push_row(t, t->end, &none);
		if (err)
			return err;
	}
	err = push_row(t, start, r);
	if (err)
		return err;
	if (r->type == MT_UW_BAD)
		t->bad++;
	t->covered += end - start;
	for (size_t i = 0; i < t->nplt; i++) {
		uint64_t lo = start > t->plt[i][0] ? start : t->plt[i][0];
		uint64_t hi = end < t->plt[i][1] ? end : t->plt[i][1];

		if (lo < hi)
			t->stub += hi - lo;
	}
	if (r->type == MT_UW_RBP && r->cfa == 2 && r->rbp == -2)
		t->fp += end - start;
	t->end = end;
	t->have_end = true;
	return 0;
}

/* "Saved at CFA + off": libdw's [call_frame_cfa, plus_uconst off]. */
static bool cfa_offset(const Dwarf_Op *ops, size_t nops, int64_t *off)
{
	if (nops == 1 && ops[0].atom == DW_OP_call_frame_cfa) {
		*off = 0;
		return true;
	}
	if (nops == 2 && ops[0].atom == DW_OP_call_frame_cfa &&
	    ops[1].atom == DW_OP_plus_uconst) {
		*off = (int64_t)ops[1].number;
		return true;
	}
	return false;
}

/*
 * The lazy-binding PLT's CFA (GCC and binutils emit it for .plt):
 * rsp + 8 + ((rip & 15) >= N) << 3, N the offset of the stub's push.
 */
static bool plt_expr(const Dwarf_Op *ops, size_t nops, uint16_t *n)
{
	if (nops != 9 || ops[0].atom != DW_OP_breg7 || ops[0].number != 8 ||
	    ops[1].atom != DW_OP_breg16 || ops[1].number != 0 ||
	    ops[2].atom != DW_OP_lit15 || ops[3].atom != DW_OP_and ||
	    ops[4].atom < DW_OP_lit0 || ops[4].atom > DW_OP_lit31 ||
	    ops[5].atom != DW_OP_ge || ops[6].atom != DW_OP_lit3 ||
	    ops[7].atom != DW_OP_shl || ops[8].atom != DW_OP_plus)
		return false;
	*n = (uint16_t)(ops[4].atom - DW_OP_lit0);
	return true;
}

static void frame_rule(Dwarf_Frame *f, int ra_reg, struct rule *r)
{
	Dwarf_Op mem[3], *ops;
	size_t nops;
	int64_t off;

	r->type = MT_UW_BAD;
	r->cfa = 0;
	r->rbp = MT_UW_RBP_LOST;

	/* The return address: undefined in the outermost frame. */
	if (ra_reg != REG_RIP ||
	    dwarf_frame_register(f, ra_reg, mem, &ops, &nops))
		return;
	if (nops == 0) {
		if (ops) /* undefined */
			r->type = MT_UW_END;
		return;
	}
	if (!cfa_offset(ops, nops, &off) || off != -8)
		return;

	if (dwarf_frame_cfa(f, &ops, &nops) || nops == 0)
		return;
	/* DW_CFA_def_cfa reg, off: libdw gives [bregx reg off]. */
	if (nops == 1 && ops[0].atom == DW_OP_bregx &&
	    (ops[0].number == REG_RSP || ops[0].number == REG_RBP)) {
		off = (int64_t)ops[0].number2;
		if (off <= 0 || off % 8 || off / 8 > UINT16_MAX)
			return;
		r->cfa = (uint16_t)(off / 8);
		r->type = ops[0].number == REG_RSP ? MT_UW_RSP : MT_UW_RBP;
	} else if (plt_expr(ops, nops, &r->cfa)) {
		r->type = MT_UW_PLT;
	} else {
		return;
	}

	if (dwarf_frame_register(f, REG_RBP, mem, &ops, &nops))
		return;
	if (nops == 0 && !ops)
		r->rbp = MT_UW_RBP_SAME;
	else if (cfa_offset(ops, nops, &off) && off < 0 && !(off % 8) &&
		 off / 8 > MT_UW_RBP_LOST)
		r->rbp = (int8_t)(off / 8);
	/* else: undefined, in another register, an expression: LOST */
}

/* "Saved at rsp + off" (DW_CFA_expression [breg7 off]): libdw pushes the
 * CFA first, as DWARF says, so the ops are [call_frame_cfa, breg7 off]. */
static bool rsp_offset(const Dwarf_Op *ops, size_t nops, int64_t *off)
{
	if (nops != 2 || ops[0].atom != DW_OP_call_frame_cfa ||
	    ops[1].atom != DW_OP_breg7)
		return false;
	*off = (int64_t)ops[1].number;
	return true;
}

/*
 * A signal trampoline's frame (glibc's __restore_rt): the kernel's signal
 * frame is at rsp, and the interrupted thread's registers are in its
 * ucontext: CFA = *(rsp + N) (the saved rsp), rip at rsp + N + 8 (the
 * sigcontext keeps rip right after rsp), rbp at rsp + M. Anything else
 * is MT_UW_BAD.
 */
static void signal_rule(Dwarf_Frame *f, int ra_reg, struct rule *r)
{
	Dwarf_Op mem[3], *ops;
	int64_t sp_off, ip_off, bp_off;
	size_t nops;

	r->type = MT_UW_BAD;
	r->cfa = 0;
	r->rbp = MT_UW_RBP_LOST;
	if (ra_reg != REG_RIP || dwarf_frame_cfa(f, &ops, &nops) || nops != 2 ||
	    ops[0].atom != DW_OP_breg7 || ops[1].atom != DW_OP_deref)
		return;
	sp_off = (int64_t)ops[0].number;
	if (dwarf_frame_register(f, REG_RIP, mem, &ops, &nops) ||
	    !rsp_offset(ops, nops, &ip_off) ||
	    dwarf_frame_register(f, REG_RBP, mem, &ops, &nops) ||
	    !rsp_offset(ops, nops, &bp_off))
		return;
	if (sp_off < 0 || sp_off % 8 || sp_off / 8 > UINT16_MAX ||
	    ip_off != sp_off + 8 || bp_off < 0 || bp_off % 8 ||
	    bp_off / 8 > INT8_MAX)
		return;
	r->type = MT_UW_SIGNAL;
	r->cfa = (uint16_t)(sp_off / 8);
	r->rbp = (int8_t)(bp_off / 8);
}

/* The frame of addr from the first CFI that covers it. */
static Dwarf_Frame *frame_at(Dwarf_CFI *const cfis[2], uint64_t addr)
{
	Dwarf_Frame *f;

	for (int i = 0; i < 2; i++)
		if (cfis[i] && !dwarf_cfi_addrframe(cfis[i], addr, &f))
			return f;
	return NULL;
}

/* Rows for the executable range [lo, hi). */
static int compile_range(struct unwind_table *t, Dwarf_CFI *const cfis[2],
			 uint64_t lo, uint64_t hi)
{
	uint64_t addr = lo, gap_start = lo;
	int err = 0;

	while (addr < hi) {
		Dwarf_Addr start, end;
		Dwarf_Frame *f = frame_at(cfis, addr);
		struct rule r;
		bool signal;
		int ra;

		if (!f) {
			if (addr - gap_start < GAP_BYTES)
				addr++;
			else
				addr = (addr | 15) + 1;
			continue;
		}
		ra = dwarf_frame_info(f, &start, &end, &signal);
		if (ra < 0 || end <= addr) {
			free(f);
			addr++;
			continue;
		}
		/* A signal trampoline's caller is an interrupted pc, found in
		 * the signal frame, not in a call frame. */
		if (signal)
			signal_rule(f, ra, &r);
		else
			frame_rule(f, ra, &r);
		free(f);
		if (end > hi)
			end = hi;
		err = add_range(t, addr, end, &r);
		if (err)
			return err;
		addr = end;
		gap_start = end;
	}
	return 0;
}

/*
 * Go's text has no CFI (the cgo C code beside it may), but Go keeps frame
 * pointers in all of it (amd64, since Go 1.7): CFA = rbp + 16, the
 * caller's rbp saved at CFA - 16. Wrong only inside a prologue before the
 * frame is made, or in a frameless leaf (memclr, memmove), where rbp is
 * still the caller's: the walk skips that one caller. The range of Go's
 * functions comes from the binary's own table; none: lo == hi.
 */
static void go_text(Elf *elf, uint64_t *lo, uint64_t *hi)
{
	struct gopclntab *g;

	*lo = *hi = 0;
	if (gopclntab_open_elf(elf, &g))
		return;
	*lo = gopclntab_entry(g, 0);
	*hi = gopclntab_entry(g, gopclntab_nfunc(g));
	if (*hi < *lo)
		*hi = *lo;
	gopclntab_free(g);
}

/* Rows for the segment [s, e), Go's text [glo, ghi) in it by rbp. */
static int compile_seg(struct unwind_table *t, Dwarf_CFI *const cfis[2],
		       uint64_t s, uint64_t e, uint64_t glo, uint64_t ghi)
{
	static const struct rule go_fp = {
		.type = MT_UW_RBP, .cfa = 2, .rbp = -2};
	uint64_t a, b;
	int err = 0;

	if (glo >= ghi || glo >= e || ghi <= s)
		return compile_range(t, cfis, s, e);
	a = glo > s ? glo : s;
	b = ghi < e ? ghi : e;
	if (s < a)
		err = compile_range(t, cfis, s, a);
	if (!err)
		err = add_range(t, a, b, &go_fp);
	if (!err && b < e)
		err = compile_range(t, cfis, b, e);
	return err;
}

/*
 * The PLT sections' ranges: their stubs jump, so no return address lies
 * there, and a frame-pointer build's share of rbp frames is its functions'
 * (a program with many imports has a large PLT).
 */
static void find_plt(Elf *elf, struct unwind_table *t)
{
	Elf_Scn *scn = NULL;
	size_t shstrndx;

	if (elf_getshdrstrndx(elf, &shstrndx))
		return;
	while ((scn = elf_nextscn(elf, scn)) && t->nplt < PLT_SECS) {
		GElf_Shdr sh;
		const char *name;

		if (!gelf_getshdr(scn, &sh) || !(sh.sh_flags & SHF_EXECINSTR) ||
		    !sh.sh_size)
			continue;
		name = elf_strptr(elf, shstrndx, sh.sh_name);
		if (!name ||
		    (strcmp(name, ".plt") && strcmp(name, ".plt.got") &&
		     strcmp(name, ".plt.sec")))
			continue;
		t->plt[t->nplt][0] = sh.sh_addr;
		t->plt[t->nplt][1] = sh.sh_addr + sh.sh_size;
		t->nplt++;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int unwind_compile_elf(Elf *elf, struct unwind_table **out)
{
	static const struct rule none = {.type = MT_UW_END};
	Dwarf_CFI *cfis[2] = {NULL, NULL};
	struct unwind_table *t = NULL;
	uint64_t(*segs)[2] = NULL, lo = UINT64_MAX, hi = 0, glo, ghi;
	size_t nph = 0, nseg = 0;
	Dwarf *dw = NULL;
	int err = 0;

	*out = NULL;
	if (elf_kind(elf) != ELF_K_ELF || elf_getphdrnum(elf, &nph))
		return -ENOENT;
	segs = calloc(nph ? nph : 1, sizeof(*segs));
	t = calloc(1, sizeof(*t));
	if (!segs || !t) {
		err = -ENOMEM;
		goto cleanup;
	}
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD ||
		    !(ph.p_flags & PF_X) || !ph.p_memsz)
			continue;
		segs[nseg][0] = ph.p_vaddr;
		segs[nseg][1] = ph.p_vaddr + ph.p_memsz;
		if (segs[nseg][1] < segs[nseg][0]) {
			err = -ENOENT;
			goto cleanup;
		}
		lo = segs[nseg][0] < lo ? segs[nseg][0] : lo;
		hi = segs[nseg][1] > hi ? segs[nseg][1] : hi;
		t->code += ph.p_memsz;
		nseg++;
	}
	if (!nseg) {
		err = -ENOENT;
		goto cleanup;
	}
	if (hi - lo > UINT32_MAX) {
		err = -E2BIG;
		goto cleanup;
	}
	qsort(segs, nseg, sizeof(*segs), cmp_u64);
	t->base = lo;
	find_plt(elf, t);

	cfis[0] = dwarf_getcfi_elf(elf);
	dw = dwarf_begin_elf(elf, DWARF_C_READ, NULL);
	if (dw)
		cfis[1] = dwarf_getcfi(dw);
	if (!cfis[0] && !cfis[1]) {
		err = -ENOENT;
		goto cleanup;
	}
	go_text(elf, &glo, &ghi);
	for (size_t i = 0; i < nseg && !err; i++) {
		uint64_t s = segs[i][0];

		if (i && s < segs[i - 1][1])
			s = segs[i - 1][1]; /* overlapping segments */
		if (s < segs[i][1])
			err = compile_seg(t, cfis, s, segs[i][1], glo, ghi);
	}
	if (err)
		goto cleanup;
	if (!t->nrows) {
		err = -ENOENT;
		goto cleanup;
	}
	/* Past the last rule: nothing. */
	err = push_row(t, t->end, &none);
	if (err)
		goto cleanup;
	*out = t;
	t = NULL;
cleanup:
	if (cfis[0])
		dwarf_cfi_end(cfis[0]);
	if (dw)
		dwarf_end(dw); /* ends the .debug_frame CFI with it */
	unwind_table_free(t);
	free(segs);
	return err;
}

int unwind_compile_fd(int fd, struct unwind_table **out)
{
	Elf *elf;
	int err;

	*out = NULL;
	elf_version(EV_CURRENT);
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf)
		return -ENOENT;
	err = unwind_compile_elf(elf, out);
	elf_end(elf);
	return err;
}

const struct mt_unwind_row *unwind_table_rows(const struct unwind_table *t,
					      size_t *nrows)
{
	*nrows = t->nrows;
	return t->rows;
}

uint64_t unwind_table_base(const struct unwind_table *t)
{
	return t->base;
}

/* The same search the BPF walk does: the last row with pc <= the key. */
const struct mt_unwind_row *unwind_table_find(const struct unwind_table *t,
					      uint64_t vaddr)
{
	size_t lo = 0, hi = t->nrows;
	uint64_t pc;

	if (vaddr < t->base || vaddr - t->base > UINT32_MAX || !t->nrows)
		return NULL;
	pc = vaddr - t->base;
	if (pc < t->rows[0].pc)
		return NULL;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->rows[mid].pc <= pc)
			lo = mid;
		else
			hi = mid;
	}
	return &t->rows[lo];
}

void unwind_table_stats(const struct unwind_table *t,
			struct unwind_table_stats *out)
{
	out->nrows = t->nrows;
	out->covered = t->covered;
	out->code = t->code;
	out->bad = t->bad;
	out->fp = t->fp;
	out->stub = t->stub;
}

void unwind_table_free(struct unwind_table *t)
{
	if (!t)
		return;
	free(t->rows);
	free(t);
}
