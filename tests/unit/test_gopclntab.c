/*
 * Unit test of the .gopclntab reader on a real Go binary: data/gotiny.go,
 * built by `go build` stripped (no .symtab, no DWARF) and internally linked
 * (so Go's text starts at .text, as `go tool addr2line` of this Go assumes).
 * Function, file and line at a spread of pcs are compared with what Go's
 * own `go tool addr2line` says of them; the program's own functions are
 * checked by name and line; the table is read cut short everywhere and
 * with its magic changed; and a hand-built Go 1.16 table (pointer-sized
 * functab) is read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "symbol/gopclntab.h"

static char dir[PATH_MAX];

struct gobin {
	int fd;
	Elf *elf;
	const uint8_t *tab;
	size_t len;
	uint64_t text;
};

static int gobin_open(struct gobin *b, const char *path)
{
	size_t shstr;
	Elf_Scn *s = NULL;

	memset(b, 0, sizeof(*b));
	b->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (b->fd < 0)
		return -errno;
	elf_version(EV_CURRENT);
	b->elf = elf_begin(b->fd, ELF_C_READ, NULL);
	if (!b->elf || elf_getshdrstrndx(b->elf, &shstr))
		return -EINVAL;
	while ((s = elf_nextscn(b->elf, s))) {
		GElf_Shdr sh;
		const char *name;

		if (!gelf_getshdr(s, &sh))
			continue;
		name = elf_strptr(b->elf, shstr, sh.sh_name);
		if (name && !strcmp(name, ".text"))
			b->text = sh.sh_addr;
		if (name && !strcmp(name, ".gopclntab")) {
			Elf_Data *d = elf_getdata(s, NULL);

			if (d) {
				b->tab = d->d_buf;
				b->len = d->d_size;
			}
		}
	}
	return b->tab ? 0 : -ENOENT;
}

static void gobin_close(struct gobin *b)
{
	if (b->elf)
		elf_end(b->elf);
	if (b->fd >= 0)
		close(b->fd);
}

#define NPCS 400

struct want {
	uint64_t pc;
	char func[512], fileline[1024];
};

/* What `go tool addr2line` says of each pc: "func\nfile:line\n" per pc. */
static int addr2line(const char *bin, struct want *w, size_t n)
{
	char in[] = "/tmp/memtop-gopclntab-XXXXXX", cmd[PATH_MAX + 128];
	FILE *f, *p;
	size_t i, got = 0;
	int fd = mkstemp(in);

	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(in);
		return -errno;
	}
	for (i = 0; i < n; i++)
		fprintf(f, "%#llx\n", (unsigned long long)w[i].pc);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "go tool addr2line '%s' < '%s'", bin, in);
	p = popen(cmd, "r");
	if (p) {
		while (got < n && fgets(w[got].func, sizeof(w[got].func), p) &&
		       fgets(w[got].fileline, sizeof(w[got].fileline), p)) {
			w[got].func[strcspn(w[got].func, "\n")] = 0;
			w[got].fileline[strcspn(w[got].fileline, "\n")] = 0;
			got++;
		}
		pclose(p);
	}
	unlink(in);
	return got == n ? 0 : -EIO;
}

static void test_against_go(const struct gobin *b, const char *bin)
{
	static struct want w[NPCS];
	struct gopclntab *t;
	size_t nfunc, i, n = 0, same = 0;
	int err = gopclntab_open(b->tab, b->len, b->text, &t);

	check(!err, "opened %s's .gopclntab (err %d)", bin, err);
	if (err)
		return;
	nfunc = gopclntab_nfunc(t);
	check(nfunc > 500, "%zu functions (a Go runtime's worth)", nfunc);
	/* Entries and mid-function pcs across the whole text. */
	for (i = 0; i < nfunc && n + 2 <= NPCS; i += nfunc / (NPCS / 2) + 1) {
		uint64_t e = gopclntab_entry(t, i),
			 next = gopclntab_entry(t, i + 1);

		w[n++].pc = e;
		w[n++].pc = e + (next - e) / 2;
	}
	err = addr2line(bin, w, n);
	check(!err, "go tool addr2line answered for %zu pcs (err %d)", n, err);
	for (i = 0; !err && i < n; i++) {
		struct gopclntab_loc l;
		char fl[1200];

		if (gopclntab_lookup(t, w[i].pc, &l)) {
			check(0, "%#llx: not found; go says %s %s",
			      (unsigned long long)w[i].pc, w[i].func,
			      w[i].fileline);
			continue;
		}
		/* Go says ":-1" for no file and line (some entry pcs of
		 * assembly functions). */
		snprintf(fl, sizeof(fl), "%.*s:%d", (int)l.file_len,
			 l.file ? l.file : "", l.line ? l.line : -1);
		if ((size_t)snprintf(NULL, 0, "%.*s", (int)l.func_len,
				     l.func) == strlen(w[i].func) &&
		    !memcmp(l.func, w[i].func, l.func_len) &&
		    !strcmp(fl, w[i].fileline))
			same++;
		else
			check(0, "%#llx: %.*s %s; go says %s %s",
			      (unsigned long long)w[i].pc, (int)l.func_len,
			      l.func, fl, w[i].func, w[i].fileline);
	}
	check(n && same == n, "%zu of %zu pcs read as go tool addr2line does",
	      same, n);
	gopclntab_free(t);
}

/* The program's own functions, by name: entry line and file. */
static void test_own_functions(const struct gobin *b)
{
	static const struct {
		const char *name;
		int line;
	} want[] = {{"main.leaf", 11},
		    {"main.(*store).grow", 14},
		    {"main.main", 18}};
	struct gopclntab *t;
	size_t i, j, nfunc;

	if (gopclntab_open(b->tab, b->len, b->text, &t))
		return;
	nfunc = gopclntab_nfunc(t);
	for (j = 0; j < sizeof(want) / sizeof(want[0]); j++) {
		bool found = false;

		for (i = 0; i < nfunc && !found; i++) {
			struct gopclntab_loc l;
			uint64_t e = gopclntab_entry(t, i);

			if (gopclntab_lookup(t, e, &l) ||
			    l.func_len != strlen(want[j].name) ||
			    memcmp(l.func, want[j].name, l.func_len))
				continue;
			found = true;
			check(l.entry == e && l.line == want[j].line &&
				      l.file_len >= 9 &&
				      !memcmp(l.file + l.file_len - 9,
					      "gotiny.go", 9),
			      "%s at %#llx: %.*s:%d", want[j].name,
			      (unsigned long long)e, (int)l.file_len,
			      l.file ? l.file : "?", l.line);
		}
		check(found, "%s is in the table", want[j].name);
	}
	check(gopclntab_lookup(t, gopclntab_entry(t, 0) - 1,
			       &(struct gopclntab_loc){0}) == -ENOENT,
	      "nothing below the first function");
	check(gopclntab_lookup(t, gopclntab_entry(t, nfunc),
			       &(struct gopclntab_loc){0}) == -ENOENT,
	      "nothing at the text's end");
	gopclntab_free(t);
}

/*
 * Cut short anywhere, the table is refused or read within what is left
 * (ASan builds see any read past the copy), and what is found then is what
 * the whole table says.
 */
static void test_truncated(const struct gobin *b)
{
	struct gopclntab *full, *t;
	size_t cut, agree = 0, opened = 0, nfunc;

	if (gopclntab_open(b->tab, b->len, b->text, &full))
		return;
	nfunc = gopclntab_nfunc(full);
	for (cut = 0; cut < b->len; cut += cut < 256 ? 1 : 4093) {
		uint8_t *copy = malloc(cut ? cut : 1);
		size_t i;
		bool ok = true;

		if (!copy)
			break;
		memcpy(copy, b->tab, cut);
		if (!gopclntab_open(copy, cut, b->text, &t)) {
			opened++;
			for (i = 0; i < nfunc; i += 97) {
				struct gopclntab_loc a, c;
				uint64_t pc = gopclntab_entry(full, i) + 1;

				if (gopclntab_lookup(t, pc, &c))
					continue;
				gopclntab_lookup(full, pc, &a);
				/* A table cut off reads as none. */
				if (c.func - (const char *)copy !=
					    a.func - (const char *)b->tab ||
				    c.func_len != a.func_len ||
				    c.entry != a.entry ||
				    (c.line && c.line != a.line) ||
				    (c.file &&
				     c.file - (const char *)copy !=
					     a.file - (const char *)b->tab))
					ok = false;
			}
			gopclntab_free(t);
		}
		agree += ok;
		free(copy);
	}
	check(agree && opened, "cut short: %zu opened, every one agreeing",
	      opened);
	gopclntab_free(full);
}

/* 1.20's magic reads the same (nothing this reads moved); 1.2's does not. */
static void test_magic(const struct gobin *b)
{
	uint8_t *copy = malloc(b->len);
	struct gopclntab *t, *full;
	struct gopclntab_loc a, c;
	uint64_t pc;

	if (!copy || gopclntab_open(b->tab, b->len, b->text, &full)) {
		free(copy);
		return;
	}
	memcpy(copy, b->tab, b->len);
	copy[0] = 0xf1;
	pc = gopclntab_entry(full, gopclntab_nfunc(full) / 2) + 3;
	check(!gopclntab_open(copy, b->len, b->text, &t) &&
		      !gopclntab_lookup(t, pc, &c) &&
		      !gopclntab_lookup(full, pc, &a) &&
		      a.func - (const char *)b->tab ==
			      c.func - (const char *)copy &&
		      a.line == c.line,
	      "Go 1.20's magic: the same function and line");
	gopclntab_free(t);
	copy[0] = 0xfb;
	check(gopclntab_open(copy, b->len, b->text, &t) == -EINVAL,
	      "Go 1.2's magic: refused");
	copy[0] = 0xf0;
	copy[7] = 5;
	check(gopclntab_open(copy, b->len, b->text, &t) == -EINVAL,
	      "a pointer size of 5: refused");
	free(copy);
	gopclntab_free(full);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * A Go 1.16 table by hand: two functions at 0x1000 (lines 10 then 11 from
 * 0x1010, in a.go) and 0x1040 (b.go, line 20), text ending at 0x1080.
 */
static void test_go116(void)
{
	uint8_t t[512] = {0};
	const uint32_t names = 64, cutab = 80, files = 96, pctab = 112,
		       pcln = 160;
	struct gopclntab *g;
	struct gopclntab_loc l;
	int err;

	put32(t, 0xfffffffa);
	t[6] = 1;
	t[7] = 8;
	put64(t + 8, 2);
	put64(t + 16, 2);
	put64(t + 24, names);
	put64(t + 32, cutab);
	put64(t + 40, files);
	put64(t + 48, pctab);
	put64(t + 56, pcln);
	memcpy(t + names, "main.f\0main.g", 14);
	put32(t + cutab, 0);
	put32(t + cutab + 4, 5);
	memcpy(t + files, "a.go\0b.go", 10);
	/* pctab+1: line 10 for 0x10, 11 for 0x30; +6: file 0 for 0x40;
	 * +9: line 20 for 0x40; +12: file 1 (this CU's second) for 0x40. */
	memcpy(t + pctab + 1,
	       (uint8_t[]){22, 0x10, 2, 0x30, 0, 2, 0x40, 0, 42, 0x40, 0, 4,
			   0x40, 0},
	       14);
	/* functab: (entry, funcoff) x 2, then the end. */
	put64(t + pcln, 0x1000);
	put64(t + pcln + 8, 40);
	put64(t + pcln + 16, 0x1040);
	put64(t + pcln + 24, 80);
	put64(t + pcln + 32, 0x1080);
	/* _func: entry, nameoff, args, deferreturn, pcsp, pcfile, pcln,
	 * npcdata, cuOffset. */
	put64(t + pcln + 40, 0x1000);
	put32(t + pcln + 48, 0);
	put32(t + pcln + 64, 6);
	put32(t + pcln + 68, 1);
	put64(t + pcln + 80, 0x1040);
	put32(t + pcln + 88, 7);
	put32(t + pcln + 104, 12);
	put32(t + pcln + 108, 9);
	err = gopclntab_open(t, pcln + 120, 0, &g);
	check(!err, "a Go 1.16 table opens (err %d)", err);
	if (err)
		return;
	err = gopclntab_lookup(g, 0x1008, &l);
	check(!err && l.func_len == 6 && !memcmp(l.func, "main.f", 6) &&
		      l.line == 10 && l.file_len == 4 &&
		      !memcmp(l.file, "a.go", 4),
	      "1.16: 0x1008 is main.f a.go:10 (line %d)", l.line);
	err = gopclntab_lookup(g, 0x1020, &l);
	check(!err && l.line == 11, "1.16: 0x1020 is line 11 (%d)", l.line);
	err = gopclntab_lookup(g, 0x107f, &l);
	check(!err && l.func_len == 6 && !memcmp(l.func, "main.g", 6) &&
		      l.line == 20 && l.file_len == 4 &&
		      !memcmp(l.file, "b.go", 4),
	      "1.16: 0x107f is main.g b.go:20 (line %d)", l.line);
	check(gopclntab_lookup(g, 0x1080, &l) == -ENOENT &&
		      gopclntab_lookup(g, 0xfff, &l) == -ENOENT,
	      "1.16: nothing outside the text");
	gopclntab_free(g);
	/* A file number past the CU's files and the section: no file. */
	put32(t + pcln + 116, 1u << 30);
	if (!gopclntab_open(t, pcln + 120, 0, &g)) {
		check(!gopclntab_lookup(g, 0x1050, &l) && !l.file &&
			      l.line == 20,
		      "1.16: a CU offset off the table: no file, the line");
		gopclntab_free(g);
	}
}

int main(int argc, char **argv)
{
	char path[PATH_MAX + 16];
	struct gobin b;
	ssize_t n;
	int err;

	(void)argc;
	(void)argv;
	n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
	if (n <= 0) {
		perror("readlink /proc/self/exe");
		return 1;
	}
	dir[n] = 0;
	*strrchr(dir, '/') = 0;
	snprintf(path, sizeof(path), "%s/gotiny", dir);
	err = gobin_open(&b, path);
	check(!err, "%s has a .gopclntab (err %d)", path, err);
	if (!err) {
		test_against_go(&b, path);
		test_own_functions(&b);
		test_truncated(&b);
		test_magic(&b);
	}
	gobin_close(&b);
	test_go116();
	printf("%d checks, %d failures\n", checks, failures);
	return failures != 0;
}
