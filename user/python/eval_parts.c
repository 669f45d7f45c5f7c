/*
 * A split function's other part (see eval_parts.h): .eh_frame_hdr's sorted
 * table finds the FDE of an address, the FDE's CIE says how its pc range is
 * encoded, and capstone lists the direct jumps of the function's code and
 * of the candidate part.
 */
#include <capstone/capstone.h>
#include <errno.h>
#include <string.h>
#include "python/eval_parts.h"

/* DW_EH_PE_* pointer encodings (LSB standard, .eh_frame). */
#define PE_OMIT	   0xff
#define PE_FORMAT  0x0f
#define PE_APP	   0x70
#define PE_PCREL   0x10
#define PE_DATAREL 0x30

struct sec {
	const uint8_t *p;
	uint64_t addr;
	size_t size;
};

/* The section called name, or the executable one holding vaddr. */
static int sec_get(Elf *elf, const char *name, uint64_t vaddr, struct sec *out)
{
	Elf_Scn *scn = NULL;
	size_t shstrndx;

	if (elf_getshdrstrndx(elf, &shstrndx))
		return -ENOENT;
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;
		const char *n;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS)
			continue;
		if (name) {
			n = elf_strptr(elf, shstrndx, sh.sh_name);
			if (!n || strcmp(n, name))
				continue;
		} else if (!(sh.sh_flags & SHF_EXECINSTR) ||
			   vaddr < sh.sh_addr ||
			   vaddr >= sh.sh_addr + sh.sh_size) {
			continue;
		}
		data = elf_getdata(scn, NULL);
		if (!data || !data->d_buf || data->d_size < sh.sh_size)
			return -ENOENT;
		out->p = data->d_buf;
		out->addr = sh.sh_addr;
		out->size = sh.sh_size;
		return 0;
	}
	return -ENOENT;
}

static int uleb(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	unsigned shift = 0;

	*v = 0;
	while (*p < end && shift < 64) {
		uint8_t b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80))
			return 0;
	}
	return -EINVAL;
}

/*
 * A pointer encoded as enc at *p (the vaddr of *p is at, the section's base
 * for datarel is datarel); app_ok: the application bits may be applied (a
 * pc range is a plain length).
 */
static int eh_ptr(const uint8_t **p, const uint8_t *end, uint8_t enc,
		  uint64_t at, uint64_t datarel, int app_ok, uint64_t *out)
{
	const uint8_t *q = *p;
	uint64_t v = 0;
	size_t n;

	switch (enc & PE_FORMAT) {
	case 0x00: /* absptr */
	case 0x04: /* udata8 */
	case 0x0c: /* sdata8 */
		n = 8;
		break;
	case 0x03: /* udata4 */
	case 0x0b: /* sdata4 */
		n = 4;
		break;
	case 0x02: /* udata2 */
	case 0x0a: /* sdata2 */
		n = 2;
		break;
	default:
		return -ENOTSUP;
	}
	if (q > end || (size_t)(end - q) < n)
		return -EINVAL;
	memcpy(&v, q, n);
	if ((enc & PE_FORMAT) == 0x0b)
		v = (uint64_t)(int64_t)(int32_t)v;
	else if ((enc & PE_FORMAT) == 0x0a)
		v = (uint64_t)(int64_t)(int16_t)v;
	*p = q + n;
	if (app_ok) {
		if ((enc & PE_APP) == PE_PCREL)
			v += at;
		else if ((enc & PE_APP) == PE_DATAREL)
			v += datarel;
		else if (enc & PE_APP)
			return -ENOTSUP;
	}
	if (enc & 0x80) /* indirect */
		return -ENOTSUP;
	*out = v;
	return 0;
}

/* The FDE pointer encoding of the CIE at cie (its 'R' augmentation). */
static int cie_fde_enc(const uint8_t *cie, const uint8_t *end, uint8_t *enc)
{
	const uint8_t *p = cie, *aug;
	uint32_t len;
	uint64_t v;
	uint8_t version;

	*enc = 0; /* absptr unless 'R' says otherwise */
	if (end - p < 9)
		return -EINVAL;
	memcpy(&len, p, 4);
	if (len == 0xffffffffu || len > (size_t)(end - p) - 4)
		return -ENOTSUP;
	end = p + 4 + len;
	p += 8; /* length, CIE id */
	version = *p++;
	aug = p;
	while (p < end && *p)
		p++;
	if (p >= end)
		return -EINVAL;
	p++;
	if (aug[0] != 'z')
		return 0;
	if (uleb(&p, end, &v) || uleb(&p, end, &v)) /* code, data align */
		return -EINVAL;
	if (version == 1)
		p++;
	else if (uleb(&p, end, &v))
		return -EINVAL;
	if (uleb(&p, end, &v)) /* augmentation data length */
		return -EINVAL;
	for (const uint8_t *a = aug + 1; *a && p < end; a++) {
		switch (*a) {
		case 'R':
			*enc = *p;
			return 0;
		case 'L':
			p++;
			break;
		case 'P': {
			uint8_t penc = *p++;

			if (penc != PE_OMIT &&
			    eh_ptr(&p, end, penc & 0x7f, 0, 0, 0, &v))
				return -ENOTSUP;
			break;
		}
		case 'S':
		case 'B':
			break;
		default:
			return -ENOTSUP;
		}
	}
	return 0;
}

int fde_range(Elf *elf, uint64_t vaddr, uint64_t *lo, uint64_t *hi)
{
	struct sec hdr, eh;
	const uint8_t *p, *end, *tab, *fde, *cie;
	uint64_t ehp, count, fde_addr = 0, start, range;
	size_t l = 0, r;
	uint32_t len, cie_off;
	uint8_t enc;
	int err;

	if (sec_get(elf, ".eh_frame_hdr", 0, &hdr) ||
	    sec_get(elf, ".eh_frame", 0, &eh))
		return -ENOENT;
	p = hdr.p;
	end = hdr.p + hdr.size;
	/* version 1; the table as GNU ld and lld write it: datarel sdata4
	 * pairs (initial location, FDE address), sorted. */
	if (hdr.size < 4 || p[0] != 1 || p[3] != 0x3b)
		return -ENOTSUP;
	p += 4;
	err = eh_ptr(&p, end, hdr.p[1], hdr.addr + 4, hdr.addr, 1, &ehp);
	if (!err)
		err = eh_ptr(&p, end, hdr.p[2],
			     hdr.addr + (uint64_t)(p - hdr.p), hdr.addr, 1,
			     &count);
	if (err)
		return err;
	tab = p;
	if (count > (size_t)(end - tab) / 8)
		return -EINVAL;
	/* The last entry whose initial location is not above vaddr. */
	r = count;
	while (l < r) {
		size_t m = l + (r - l) / 2;
		int32_t loc;

		memcpy(&loc, tab + m * 8, 4);
		if (hdr.addr + (uint64_t)(int64_t)loc <= vaddr)
			l = m + 1;
		else
			r = m;
	}
	if (!l)
		return -ENOENT;
	{
		int32_t fa;

		memcpy(&fa, tab + (l - 1) * 8 + 4, 4);
		fde_addr = hdr.addr + (uint64_t)(int64_t)fa;
	}
	if (fde_addr < eh.addr || fde_addr + 8 > eh.addr + eh.size)
		return -ENOENT;
	fde = eh.p + (fde_addr - eh.addr);
	end = eh.p + eh.size;
	memcpy(&len, fde, 4);
	memcpy(&cie_off, fde + 4, 4);
	if (len == 0xffffffffu || len > (size_t)(end - fde) - 4 || !cie_off ||
	    cie_off > (size_t)(fde + 4 - eh.p))
		return -ENOTSUP;
	end = fde + 4 + len;
	cie = fde + 4 - cie_off;
	err = cie_fde_enc(cie, eh.p + eh.size, &enc);
	if (err)
		return err;
	p = fde + 8;
	err = eh_ptr(&p, end, enc, fde_addr + 8, eh.addr, 1, &start);
	if (!err)
		err = eh_ptr(&p, end, enc & PE_FORMAT, 0, 0, 0, &range);
	if (err)
		return err;
	if (vaddr < start || vaddr - start >= range)
		return -ENOENT;
	*lo = start;
	*hi = start + range;
	return 0;
}

#define MAX_TARGETS 64

/*
 * The direct jump targets of the code at [lo, hi) outside it (out: up to
 * MAX_TARGETS of them); into: stop at, and return 1 for, the first one into
 * [in_lo, in_hi) instead.
 */
static int jump_targets(Elf *elf, uint64_t lo, uint64_t hi, uint64_t in_lo,
			uint64_t in_hi, uint64_t *out, size_t *nout)
{
	const uint8_t *code;
	uint64_t addr = lo;
	struct sec text;
	size_t len, n = 0;
	cs_insn *insn;
	int ret = 0;
	csh h;

	if (sec_get(elf, NULL, lo, &text) || hi > text.addr + text.size ||
	    hi <= lo)
		return -ENOENT;
	code = text.p + (lo - text.addr);
	len = hi - lo;
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK)
		return -EINVAL;
	cs_option(h, CS_OPT_DETAIL, CS_OPT_ON);
	/* Data or padding between instructions: go on after it. */
	cs_option(h, CS_OPT_SKIPDATA, CS_OPT_ON);
	insn = cs_malloc(h);
	if (!insn) {
		cs_close(&h);
		return -ENOMEM;
	}
	while (ret == 0 && cs_disasm_iter(h, &code, &len, &addr, insn)) {
		const cs_x86 *x;
		uint64_t t;

		if (!insn->detail || !cs_insn_group(h, insn, CS_GRP_JUMP))
			continue;
		x = &insn->detail->x86;
		if (x->op_count != 1 || x->operands[0].type != X86_OP_IMM)
			continue;
		t = (uint64_t)x->operands[0].imm;
		if (t >= lo && t < hi)
			continue;
		if (in_hi && t >= in_lo && t < in_hi) {
			ret = 1;
			break;
		}
		if (out && n < MAX_TARGETS) {
			size_t i;

			for (i = 0; i < n && out[i] != t; i++)
				;
			if (i == n)
				out[n++] = t;
		}
	}
	cs_free(insn, 1);
	cs_close(&h);
	if (nout)
		*nout = n;
	return ret;
}

int eval_split_part(Elf *elf, uint64_t fn, uint64_t size, uint64_t *lo,
		    uint64_t *hi)
{
	uint64_t t[MAX_TARGETS], best_lo = 0, best_hi = 0;
	size_t n = 0;

	if (!size || jump_targets(elf, fn, fn + size, 0, 0, t, &n) < 0)
		return -ENOENT;
	for (size_t i = 0; i < n; i++) {
		uint64_t l, h;

		if (fde_range(elf, t[i], &l, &h) || (fn >= l && fn < h) ||
		    (l == best_lo && h == best_hi))
			continue;
		/* Its own code comes back into the function: a part of it. */
		if (jump_targets(elf, l, h, fn, fn + size, NULL, NULL) != 1)
			continue;
		if (h - l > best_hi - best_lo) {
			best_lo = l;
			best_hi = h;
		}
	}
	if (!best_hi)
		return -ENOENT;
	*lo = best_lo;
	*hi = best_hi;
	return 0;
}
