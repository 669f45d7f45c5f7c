/*
 * A reader of Go's pc-line table, the runtime's own (runtime/symtab.go,
 * debug/gosym/pclntab.go). The section is laid out as:
 *
 *   pcHeader   magic u32, 0, 0, pc quantum u8, pointer size u8, then
 *              pointer-sized words: nfunc, nfiles, [textStart, 1.18+],
 *              and the offsets from the header of funcnametab, cutab,
 *              filetab, pctab and pclntab
 *   funcnametab  NUL-terminated function names
 *   cutab        per compilation unit, u32 offsets into filetab
 *   filetab      NUL-terminated file paths
 *   pctab        pc-value tables
 *   pclntab      functab, nfunc+1 (entry, funcoff) pairs sorted by entry
 *                (u32 entry offsets from textStart since 1.18, absolute
 *                pointer-sized pcs before), the last entry the end of the
 *                text; then the _func records funcoff points at
 *
 * A _func starts with its entry (u32 offset 1.18+, a pointer before) and
 * goes on in u32 fields: nameoff, args, deferreturn, pcsp, pcfile, pcln,
 * npcdata, cuOffset (1.20 adds startLine after it; nothing read here
 * moved). pcfile and pcln are offsets into pctab of tables of (value
 * delta, pc delta) varint pairs, the value delta zig-zag coded, the pc
 * delta in units of the quantum, starting from value -1 at the entry; the
 * value at pc is the one whose range first passes pc. A file number is an
 * index into the function's CU's run of cutab.
 *
 * Everything is read through bounds-checked helpers: a table from a file
 * may be truncated, corrupt or hostile.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "gopclntab.h"

#define MAGIC_116 0xfffffffau
#define MAGIC_118 0xfffffff0u
#define MAGIC_120 0xfffffff1u

/* The _func fields this reads, by number after the entry. */
#define F_NAMEOFF  1
#define F_PCFILE   5
#define F_PCLN	   6
#define F_CUOFFSET 8

struct gopclntab {
	const uint8_t *data;
	size_t len;
	bool go118; /* u32 entry offsets from text_start */
	unsigned quantum, ptrsize;
	uint64_t text_start, nfunc;
	uint64_t funcname_off, cu_off, filetab_off, pctab_off, pcln_off;
	unsigned ftab_sz; /* bytes per functab field */
};

static bool in_range(const struct gopclntab *t, uint64_t off, uint64_t n)
{
	return off <= t->len && n <= t->len - off;
}

static bool rd_u32(const struct gopclntab *t, uint64_t off, uint32_t *v)
{
	const uint8_t *p;

	if (!in_range(t, off, 4))
		return false;
	p = t->data + off;
	*v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	     (uint32_t)p[3] << 24;
	return true;
}

static bool rd_word(const struct gopclntab *t, uint64_t off, unsigned sz,
		    uint64_t *v)
{
	uint32_t lo, hi;

	if (sz == 4) {
		if (!rd_u32(t, off, &lo))
			return false;
		*v = lo;
		return true;
	}
	if (!rd_u32(t, off, &lo) || !rd_u32(t, off + 4, &hi))
		return false;
	*v = (uint64_t)hi << 32 | lo;
	return true;
}

/* A NUL-terminated string at off: its length, or false if unterminated. */
static bool rd_str(const struct gopclntab *t, uint64_t off, const char **s,
		   size_t *n)
{
	const uint8_t *nul;

	if (off >= t->len)
		return false;
	nul = memchr(t->data + off, 0, t->len - off);
	if (!nul)
		return false;
	*s = (const char *)t->data + off;
	*n = (size_t)(nul - (t->data + off));
	return true;
}

/* off = base + rel, or false past the section (or on overflow). */
static bool add_off(const struct gopclntab *t, uint64_t base, uint64_t rel,
		    uint64_t *off)
{
	if (base > t->len || rel > t->len - base)
		return false;
	*off = base + rel;
	return true;
}

int gopclntab_open(const void *data, size_t len, uint64_t text_addr,
		   struct gopclntab **out)
{
	struct gopclntab h = {.data = data, .len = len}, *t;
	uint64_t w[8], need;
	const uint8_t *b = data;
	uint32_t magic;
	unsigned i, nwords, base;

	*out = NULL;
	if (!data || len < 16 || !rd_u32(&h, 0, &magic))
		return -EINVAL;
	if (b[4] || b[5] || (b[6] != 1 && b[6] != 2 && b[6] != 4) ||
	    (b[7] != 4 && b[7] != 8))
		return -EINVAL;
	if (magic == MAGIC_118 || magic == MAGIC_120)
		h.go118 = true;
	else if (magic != MAGIC_116)
		return -EINVAL;
	h.quantum = b[6];
	h.ptrsize = b[7];
	nwords = h.go118 ? 8 : 7;
	for (i = 0; i < nwords; i++)
		if (!rd_word(&h, 8 + (uint64_t)i * h.ptrsize, h.ptrsize, &w[i]))
			return -EINVAL;
	h.nfunc = w[0];
	/* The table's own text start is right where the linker put Go's
	 * text after C code (cgo); zero where a dynamic relocation fills it
	 * in at load (PIE). */
	if (h.go118)
		h.text_start = w[2] ? w[2] : text_addr;
	base = h.go118 ? 3 : 2;
	h.funcname_off = w[base];
	h.cu_off = w[base + 1];
	h.filetab_off = w[base + 2];
	h.pctab_off = w[base + 3];
	h.pcln_off = w[base + 4];
	h.ftab_sz = h.go118 ? 4 : h.ptrsize;
	if (!h.nfunc || h.funcname_off > len || h.cu_off > len ||
	    h.filetab_off > len || h.pctab_off > len || h.pcln_off > len)
		return -EINVAL;
	/* functab: nfunc + 1 pairs, the last one's entry the text's end. */
	if (h.nfunc > (len - h.pcln_off) / h.ftab_sz / 2)
		return -EINVAL;
	need = (2 * h.nfunc + 1) * h.ftab_sz;
	if (!in_range(&h, h.pcln_off, need))
		return -EINVAL;
	t = malloc(sizeof(*t));
	if (!t)
		return -ENOMEM;
	*t = h;
	*out = t;
	return 0;
}

void gopclntab_free(struct gopclntab *t)
{
	free(t);
}

size_t gopclntab_nfunc(const struct gopclntab *t)
{
	return (size_t)t->nfunc;
}

/* Entry i of the functab, i <= nfunc (checked to fit at open). */
uint64_t gopclntab_entry(const struct gopclntab *t, size_t i)
{
	uint64_t v = 0;

	if (i > t->nfunc)
		return 0;
	rd_word(t, t->pcln_off + 2 * (uint64_t)i * t->ftab_sz, t->ftab_sz, &v);
	return t->go118 ? v + t->text_start : v;
}

static bool rd_varint(const struct gopclntab *t, uint64_t *off, uint32_t *v)
{
	uint32_t r = 0;
	unsigned shift;

	for (shift = 0; shift < 35; shift += 7) {
		uint8_t byte;

		if (*off >= t->len)
			return false;
		byte = t->data[(*off)++];
		r |= (uint32_t)(byte & 0x7f) << shift;
		if (!(byte & 0x80)) {
			*v = r;
			return true;
		}
	}
	return false;
}

/*
 * The value of the pc-value table at pctab + rel for target, in a function
 * entered at entry. False when the table ends before target or is cut off.
 * Each step reads at least two bytes, so a table ends within the section.
 */
static bool pcvalue(const struct gopclntab *t, uint32_t rel, uint64_t entry,
		    uint64_t target, int32_t *out)
{
	uint64_t off, pc = entry;
	uint32_t val = (uint32_t)-1;

	if (!rel || !add_off(t, t->pctab_off, rel, &off))
		return false;
	for (;;) {
		uint32_t uv, pcd, vdelta;

		if (!rd_varint(t, &off, &uv))
			return false;
		/* A zero value delta ends the table, except as the first. */
		if (!uv && pc != entry)
			return false;
		vdelta = uv & 1 ? ~(uv >> 1) : uv >> 1;
		if (!rd_varint(t, &off, &pcd))
			return false;
		pc += (uint64_t)pcd * t->quantum;
		val += vdelta; /* unsigned: wraps as Go's int32 does */
		if (target < pc) {
			*out = (int32_t)val;
			return true;
		}
	}
}

int gopclntab_lookup(const struct gopclntab *t, uint64_t pc,
		     struct gopclntab_loc *out)
{
	uint64_t lo = 0, hi, fbase, foff, entry, cuent, noff;
	uint32_t nameoff, pcfile, pcln, cuoff, fnoff, e32;
	unsigned sz0 = t->go118 ? 4 : t->ptrsize;
	int32_t v;

	memset(out, 0, sizeof(*out));
	if (pc < gopclntab_entry(t, 0) || pc >= gopclntab_entry(t, t->nfunc))
		return -ENOENT;
	/* The last function whose entry is at or below pc. */
	hi = t->nfunc;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (gopclntab_entry(t, mid) <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return -ENOENT;
	if (!rd_word(t, t->pcln_off + (2 * (lo - 1) + 1) * t->ftab_sz,
		     t->ftab_sz, &foff) ||
	    !add_off(t, t->pcln_off, foff, &fbase) ||
	    !in_range(t, fbase, sz0 + 4 * F_CUOFFSET))
		return -EINVAL;
	if (t->go118) {
		rd_u32(t, fbase, &e32);
		entry = e32 + t->text_start;
	} else {
		rd_word(t, fbase, sz0, &entry);
	}
	rd_u32(t, fbase + sz0 + 4 * (F_NAMEOFF - 1), &nameoff);
	rd_u32(t, fbase + sz0 + 4 * (F_PCFILE - 1), &pcfile);
	rd_u32(t, fbase + sz0 + 4 * (F_PCLN - 1), &pcln);
	rd_u32(t, fbase + sz0 + 4 * (F_CUOFFSET - 1), &cuoff);
	if (!add_off(t, t->funcname_off, nameoff, &noff) ||
	    !rd_str(t, noff, &out->func, &out->func_len) || !out->func_len)
		return -EINVAL;
	out->entry = entry;
	if (pcvalue(t, pcln, entry, pc, &v) && v > 0)
		out->line = v;
	/* File numbers index the CU's run of cutab; ~0 there: no file. */
	if (pcvalue(t, pcfile, entry, pc, &v) && v >= 0 &&
	    add_off(t, t->cu_off, 4 * ((uint64_t)cuoff + (uint32_t)v),
		    &cuent) &&
	    rd_u32(t, cuent, &fnoff) && fnoff != UINT32_MAX &&
	    add_off(t, t->filetab_off, fnoff, &noff))
		rd_str(t, noff, &out->file, &out->file_len);
	if (out->file && !out->file_len)
		out->file = NULL;
	return 0;
}
