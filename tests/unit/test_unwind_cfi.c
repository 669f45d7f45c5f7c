/*
 * Unit test of the unwind table compiler on real objects, no root needed:
 * hand-written CFI with known rules (data/uw_cfi.S), GCC -O2
 * -fomit-frame-pointer code (data/uw_nofp.c) and the C library this test
 * runs on. Rows are checked against the instructions themselves: every
 * function's prologue is disassembled (capstone) and the stack pointer's
 * distance from the CFA followed through its pushes and stack reservations
 * up to the first branch; the table must say the same at each instruction.
 */
#define _GNU_SOURCE
#include <capstone/capstone.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libgen.h>
#include <limits.h>
#include <link.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "symbol/gopclntab.h"
#include "unwind/cfi.h"

static char dir[PATH_MAX];

struct obj {
	int fd;
	Elf *elf;
	struct unwind_table *t;
};

static int obj_open(struct obj *o, const char *path)
{
	int err;

	memset(o, 0, sizeof(*o));
	o->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (o->fd < 0)
		return -1;
	elf_version(EV_CURRENT);
	o->elf = elf_begin(o->fd, ELF_C_READ, NULL);
	err = unwind_compile_fd(o->fd, &o->t);
	check(!err && o->t, "%s: compiled (err %d)", path, err);
	return err ? -1 : 0;
}

static void obj_close(struct obj *o)
{
	unwind_table_free(o->t);
	if (o->elf)
		elf_end(o->elf);
	if (o->fd >= 0)
		close(o->fd);
}

/* Calls fn for each defined function symbol (.symtab, else .dynsym). */
static int for_each_func(struct obj *o,
			 void (*fn)(struct obj *, const char *, GElf_Sym *,
				    void *),
			 void *ctx)
{
	Elf_Scn *scn = NULL, *use = NULL;
	GElf_Shdr sh;
	int n = 0;

	while ((scn = elf_nextscn(o->elf, scn))) {
		if (!gelf_getshdr(scn, &sh))
			continue;
		if (sh.sh_type == SHT_SYMTAB)
			use = scn;
		else if (sh.sh_type == SHT_DYNSYM && !use)
			use = scn;
	}
	if (!use || !gelf_getshdr(use, &sh))
		return 0;
	Elf_Data *d = elf_getdata(use, NULL);
	for (size_t i = 0; d && i < sh.sh_size / sh.sh_entsize; i++) {
		GElf_Sym s;
		const char *name;

		if (!gelf_getsym(d, (int)i, &s) ||
		    GELF_ST_TYPE(s.st_info) != STT_FUNC ||
		    s.st_shndx == SHN_UNDEF || !s.st_value)
			continue;
		name = elf_strptr(o->elf, sh.sh_link, s.st_name);
		fn(o, name ? name : "?", &s, ctx);
		n++;
	}
	return n;
}

static bool sym_addr(struct obj *o, const char *want, uint64_t *addr)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;

	while ((scn = elf_nextscn(o->elf, scn))) {
		if (!gelf_getshdr(scn, &sh) ||
		    (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM))
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		for (size_t i = 0; d && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym s;
			const char *name;

			if (!gelf_getsym(d, (int)i, &s))
				continue;
			name = elf_strptr(o->elf, sh.sh_link, s.st_name);
			if (name && !strcmp(name, want) && s.st_value) {
				*addr = s.st_value;
				return true;
			}
		}
	}
	return false;
}

/* The file bytes at ELF address addr (in an executable section). */
static const uint8_t *code_at(struct obj *o, uint64_t addr, size_t *len)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;

	while ((scn = elf_nextscn(o->elf, scn))) {
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS ||
		    !(sh.sh_flags & SHF_EXECINSTR) || addr < sh.sh_addr ||
		    addr >= sh.sh_addr + sh.sh_size)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		if (!d || !d->d_buf)
			return NULL;
		*len = sh.sh_addr + sh.sh_size - addr;
		return (const uint8_t *)d->d_buf + (addr - sh.sh_addr);
	}
	return NULL;
}

struct expect {
	const char *label;
	uint8_t type;
	int cfa; /* bytes */
	int rbp; /* bytes from the CFA, or MT_UW_RBP_SAME / LOST */
};

static void check_label(struct obj *o, const struct expect *e)
{
	const struct mt_unwind_row *r;
	uint64_t a;

	if (!sym_addr(o, e->label, &a)) {
		check(0, "%s: label found", e->label);
		return;
	}
	r = unwind_table_find(o->t, a);
	if (!r) {
		check(0, "%s: a row covers it", e->label);
		return;
	}
	if (e->type == MT_UW_END || e->type == MT_UW_BAD) {
		check(r->type == e->type, "%s: type %d (want %d)", e->label,
		      r->type, e->type);
		return;
	}
	check(r->type == e->type && r->cfa * 8 == e->cfa &&
		      (r->rbp == MT_UW_RBP_SAME || r->rbp == MT_UW_RBP_LOST
			       ? r->rbp
			       : r->rbp * 8) == e->rbp,
	      "%s: type %d cfa %d rbp %d (want %d %d %d)", e->label, r->type,
	      r->cfa * 8, r->rbp, e->type, e->cfa, e->rbp);
}

static void test_handwritten(void)
{
	static const struct expect want[] = {
		{"uw_push", MT_UW_RSP, 8, MT_UW_RBP_SAME},
		{"uw_push_1", MT_UW_RSP, 16, MT_UW_RBP_SAME},
		{"uw_push_2", MT_UW_RSP, 16 + 0x1000, MT_UW_RBP_SAME},
		{"uw_push_3", MT_UW_RSP, 16, MT_UW_RBP_SAME},
		{"uw_push_4", MT_UW_RSP, 8, MT_UW_RBP_SAME},
		{"uw_fp", MT_UW_RSP, 8, MT_UW_RBP_SAME},
		{"uw_fp_1", MT_UW_RSP, 16, -16},
		{"uw_fp_2", MT_UW_RBP, 16, -16},
		{"uw_fp_3", MT_UW_RBP, 16, -16},
		{"uw_fp_4", MT_UW_RSP, 8, -16},
		{"uw_nocfi", MT_UW_END, 0, 0},
		{"uw_outer", MT_UW_END, 0, 0},
		{"uw_odd", MT_UW_RSP, 8, MT_UW_RBP_SAME},
		{"uw_odd_1", MT_UW_BAD, 0, 0},
		{"uw_expr", MT_UW_RSP, 8, MT_UW_RBP_SAME},
		{"uw_expr_1", MT_UW_BAD, 0, 0},
		{"uw_reg", MT_UW_RSP, 8, MT_UW_RBP_SAME},
		{"uw_reg_1", MT_UW_RSP, 8, MT_UW_RBP_LOST},
		{"uw_ra", MT_UW_RSP, 8, MT_UW_RBP_SAME},
		{"uw_ra_1", MT_UW_BAD, 0, 0},
		{"uw_sig", MT_UW_SIGNAL, 160, 120},
		{"uw_sig_bad", MT_UW_BAD, 0, 0},
	};
	char path[PATH_MAX + 32];
	struct obj o;
	size_t n;
	const struct mt_unwind_row *rows;
	bool sorted = true, merged = true;

	snprintf(path, sizeof(path), "%s/libuw_cfi.so", dir);
	if (obj_open(&o, path))
		goto cleanup;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		check_label(&o, &want[i]);
	rows = unwind_table_rows(o.t, &n);
	for (size_t i = 1; i < n; i++) {
		if (rows[i].pc <= rows[i - 1].pc)
			sorted = false;
		if (rows[i].type == rows[i - 1].type &&
		    rows[i].cfa == rows[i - 1].cfa &&
		    rows[i].rbp == rows[i - 1].rbp)
			merged = false;
	}
	check(sorted, "rows strictly sorted by pc");
	check(merged, "no two adjacent rows alike");
	check(n && rows[n - 1].type == MT_UW_END, "the table ends with END");
	check(unwind_table_find(o.t, unwind_table_base(o.t) - 1) == NULL,
	      "no row below the table");
cleanup:
	obj_close(&o);
}

/*
 * Follow the stack pointer through a prologue and compare each
 * instruction's row; counts what was compared in *ctx.
 */
struct prologue_stats {
	long insns, bad, funcs, nocfi;
	char first_bad[512];
};

static long imm_of(const char *s)
{
	return strtol(s, NULL, 0);
}

static void check_prologue(struct obj *o, const char *name, GElf_Sym *s,
			   void *ctx)
{
	struct prologue_stats *ps = ctx;
	const struct mt_unwind_row *r;
	size_t len = 0, count;
	const uint8_t *code = code_at(o, s->st_value, &len);
	long off = 8, fp_off = 0, rbp_saved = 0;
	cs_insn *insn = NULL;
	csh h;

	if (!code)
		return;
	r = unwind_table_find(o->t, s->st_value);
	if (!r || r->type == MT_UW_END) {
		ps->nocfi++; /* no FDE: nothing to compare */
		return;
	}
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK)
		return;
	if (len > 256)
		len = 256;
	count = cs_disasm(h, code, len, s->st_value, 40, &insn);
	ps->funcs++;
	for (size_t i = 0; i < count; i++) {
		const char *m = insn[i].mnemonic, *op = insn[i].op_str;
		bool ok;

		r = unwind_table_find(o->t, insn[i].address);
		if (fp_off)
			ok = r && r->type == MT_UW_RBP && r->cfa * 8 == fp_off;
		else
			ok = r && r->type == MT_UW_RSP && r->cfa * 8 == off;
		if (ok && rbp_saved)
			ok = r->rbp * 8 == -rbp_saved;
		ps->insns++;
		if (!ok) {
			if (!ps->bad++)
				snprintf(ps->first_bad, sizeof(ps->first_bad),
					 "%.100s+%#lx %.16s %.100s: type %d "
					 "cfa %d rbp %d, want cfa %ld",
					 name,
					 (long)(insn[i].address - s->st_value),
					 m, op, r ? r->type : -1,
					 r ? r->cfa * 8 : -1, r ? r->rbp : 0,
					 fp_off ? fp_off : off);
			break;
		}
		if (!strcmp(m, "push")) {
			off += 8;
			if (!strcmp(op, "rbp") && !rbp_saved)
				rbp_saved = off;
		} else if (!strcmp(m, "sub") && !strncmp(op, "rsp, ", 5) &&
			   op[5] >= '0' && op[5] <= '9') {
			off += imm_of(op + 5);
		} else if (!strcmp(m, "mov") && !strcmp(op, "rbp, rsp")) {
			fp_off = off;
		} else if (!strcmp(m, "endbr64") || !strncmp(m, "nop", 3) ||
			   (!strstr(op, "rsp") && !strstr(op, "rbp") &&
			    m[0] != 'j' && strcmp(m, "call") &&
			    strcmp(m, "ret") && strcmp(m, "pop") &&
			    strcmp(m, "leave") && strncmp(m, "cmov", 4) &&
			    strncmp(m, "rep", 3) && strcmp(m, "hlt") &&
			    strcmp(m, "ud2") && strcmp(m, "syscall"))) {
			/* leaves rsp alone */
		} else {
			break; /* a branch, or rsp/rbp moved otherwise */
		}
	}
	cs_free(insn, count);
	cs_close(&h);
}

static void test_prologues(const char *path, long min_funcs)
{
	struct prologue_stats ps = {0};
	struct obj o;

	if (obj_open(&o, path))
		goto cleanup;
	for_each_func(&o, check_prologue, &ps);
	check(ps.funcs >= min_funcs && ps.bad == 0,
	      "%s: %ld prologue instructions of %ld functions match the "
	      "disassembly (%ld mismatch%s%s; %ld without CFI)",
	      path, ps.insns, ps.funcs, ps.bad, ps.bad ? ": " : "",
	      ps.first_bad, ps.nocfi);
cleanup:
	obj_close(&o);
}

static void test_nofp(void)
{
	char path[PATH_MAX + 32];
	struct obj o;
	uint64_t a;
	const struct mt_unwind_row *r;
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	size_t shstr;
	bool plt = false;

	snprintf(path, sizeof(path), "%s/libuw_nofp.so", dir);
	test_prologues(path, 3);
	if (obj_open(&o, path))
		goto cleanup;
	/* The variable-length array's function keeps rbp as its CFA. */
	if (sym_addr(&o, "uw_vla", &a)) {
		bool fp = false;

		for (uint64_t x = a; x < a + 64; x++) {
			r = unwind_table_find(o.t, x);
			if (r && r->type == MT_UW_RBP && r->rbp == -2)
				fp = true;
		}
		check(fp, "uw_vla: CFA from rbp, rbp saved at CFA-16");
	}
	/* The lazy PLT's stubs: the PLT expression. */
	elf_getshdrstrndx(o.elf, &shstr);
	while ((scn = elf_nextscn(o.elf, scn))) {
		const char *n;

		if (!gelf_getshdr(scn, &sh))
			continue;
		n = elf_strptr(o.elf, shstr, sh.sh_name);
		if (n && !strcmp(n, ".plt")) {
			r = unwind_table_find(o.t, sh.sh_addr + 16);
			plt = r && r->type == MT_UW_PLT && r->cfa == 11;
		}
	}
	check(plt, ".plt stubs: CFA by the PLT expression (threshold 11)");
cleanup:
	obj_close(&o);
}

static int find_libc(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	if (strstr(info->dlpi_name, "/libc.so")) {
		snprintf(data, PATH_MAX, "%s", info->dlpi_name);
		return 1;
	}
	return 0;
}

static void test_libc(void)
{
	char path[PATH_MAX] = "";
	struct unwind_table_stats st;
	struct obj o;
	uint64_t a;
	const struct mt_unwind_row *r, *rows;
	size_t n, nsig = 0;

	dl_iterate_phdr(find_libc, path);
	check(path[0] != 0, "libc found: %s", path);
	if (!path[0])
		return;
	test_prologues(path, 1000);
	if (obj_open(&o, path))
		goto cleanup;
	unwind_table_stats(o.t, &st);
	check(st.covered * 100 >= st.code * 90,
	      "libc: CFI covers %llu of %llu code bytes",
	      (unsigned long long)st.covered, (unsigned long long)st.code);
	check(st.nrows > 1000 && st.bad * 100 < st.nrows,
	      "libc: %zu rows, %zu unsupported", st.nrows, st.bad);
	/* glibc's signal trampoline (__restore_rt, a local symbol that a
	 * stripped libc does not name): the kernel's sigcontext layout. */
	rows = unwind_table_rows(o.t, &n);
	for (size_t i = 0; i < n; i++)
		nsig += rows[i].type == MT_UW_SIGNAL && rows[i].cfa == 20 &&
			rows[i].rbp == 15;
	check(nsig == 1,
	      "libc: one signal trampoline, rsp at +160, rbp at "
	      "+120 (%zu)",
	      nsig);
	if (sym_addr(&o, "malloc", &a)) {
		r = unwind_table_find(o.t, a);
		check(r && r->type == MT_UW_RSP && r->cfa == 1 &&
			      r->rbp == MT_UW_RBP_SAME,
		      "malloc's entry: CFA = rsp + 8, rbp kept");
	}
cleanup:
	obj_close(&o);
}

/*
 * Debian's prometheus (Go, cgo, stripped): Go's text has no CFI but keeps
 * frame pointers, and is compiled as the frame-pointer rule from the
 * binary's .gopclntab; cgo's C code beside it keeps its own CFI.
 */
static void test_go(void)
{
	const char *path = "/usr/bin/prometheus";
	const struct mt_unwind_row *r;
	struct unwind_table_stats st;
	struct gopclntab *g = NULL;
	size_t nfunc, i, fp = 0;
	struct obj o;
	uint64_t a;

	if (access(path, R_OK)) {
		printf("SKIP - %s not installed\n", path);
		return;
	}
	if (obj_open(&o, path))
		goto cleanup;
	check(!gopclntab_open_elf(o.elf, &g), "prometheus has a Go table");
	if (!g)
		goto cleanup;
	nfunc = gopclntab_nfunc(g);
	for (i = 0; i < nfunc; i += nfunc / 100 + 1) {
		r = unwind_table_find(o.t, gopclntab_entry(g, i) + 1);
		fp += r && r->type == MT_UW_RBP && r->cfa == 2 && r->rbp == -2;
	}
	check(fp == (nfunc - 1) / (nfunc / 100 + 1) + 1,
	      "Go functions: CFA = rbp + 16, rbp at CFA - 16 (%zu)", fp);
	r = unwind_table_find(o.t, gopclntab_entry(g, nfunc));
	check(!r || r->type != MT_UW_RBP || r->cfa != 2,
	      "past Go's text: not Go's rule");
	if (sym_addr(&o, "x_cgo_init", &a)) {
		r = unwind_table_find(o.t, a);
		check(r && r->type == MT_UW_RSP && r->cfa == 1,
		      "cgo's x_cgo_init (C): its own CFI, CFA = rsp + 8");
	}
	unwind_table_stats(o.t, &st);
	check(st.fp * 100 >= st.covered * 90,
	      "prometheus: %llu of %llu covered bytes by frame pointers",
	      (unsigned long long)st.fp, (unsigned long long)st.covered);
cleanup:
	gopclntab_free(g);
	obj_close(&o);
}

static void test_not_elf(void)
{
	char path[] = "/tmp/memtop-uwtest-XXXXXX";
	struct unwind_table *t = (void *)1;
	int fd = mkstemp(path), err;

	if (fd < 0)
		return;
	unlink(path);
	if (write(fd, "not an ELF file\n", 16) != 16)
		return;
	err = unwind_compile_fd(fd, &t);
	check(err == -ENOENT && t == NULL, "not an ELF file: -ENOENT (%d)",
	      err);
	close(fd);
}

int main(void)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return 1;
	exe[n] = 0;
	snprintf(dir, sizeof(dir), "%s", dirname(exe));
	test_handwritten();
	test_nofp();
	test_libc();
	test_go();
	test_not_elf();
	printf("%d/%d checks failed\n", failures, checks);
	return failures != 0;
}
