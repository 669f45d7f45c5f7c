/*
 * Unit test of the split-function finder (python/eval_parts.h) on
 * tests/unit/data/eval_split.S, built as libeval_split.so: the part of
 * ev_fn split off into .text.unlikely is found with its FDE's exact range,
 * the functions ev_fn jumps to are not taken for parts, and a function
 * without a split part has none.
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "python/eval_parts.h"

/* A symbol of .symtab: its address and size. */
static int sym(Elf *elf, const char *name, uint64_t *addr, uint64_t *size)
{
	Elf_Scn *scn = NULL;

	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *d;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_SYMTAB ||
		    !sh.sh_entsize || !(d = elf_getdata(scn, NULL)))
			continue;
		for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym s;
			const char *n;

			if (!gelf_getsym(d, (int)i, &s))
				continue;
			n = elf_strptr(elf, sh.sh_link, s.st_name);
			if (n && !strcmp(n, name)) {
				*addr = s.st_value;
				*size = s.st_size;
				return 0;
			}
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	char exe[PATH_MAX], path[PATH_MAX + 32];
	uint64_t fn = 0, fsz = 0, cold = 0, csz = 0, tail = 0, tsz = 0;
	uint64_t lo = 0, hi = 0;
	Elf *elf = NULL;
	int fd, rc;

	(void)argc;
	snprintf(exe, sizeof(exe), "%s", argv[0]);
	snprintf(path, sizeof(path), "%s/libeval_split.so", dirname(exe));
	elf_version(EV_CURRENT);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	check(fd >= 0, "open %s", path);
	if (fd < 0)
		return 1;
	elf = elf_begin(fd, ELF_C_READ, NULL);
	check(elf != NULL, "elf_begin");
	if (!elf)
		goto cleanup;
	check(!sym(elf, "ev_fn", &fn, &fsz) &&
		      !sym(elf, "ev_fn_cold", &cold, &csz) &&
		      !sym(elf, "ev_tail", &tail, &tsz),
	      "the fixture's symbols");
	rc = fde_range(elf, cold + 1, &lo, &hi);
	check(!rc && lo == cold && hi == cold + csz,
	      "fde_range inside ev_fn_cold: %d [%#lx, %#lx), want [%#lx, %#lx)",
	      rc, (unsigned long)lo, (unsigned long)hi, (unsigned long)cold,
	      (unsigned long)(cold + csz));
	rc = fde_range(elf, fn, &lo, &hi);
	check(!rc && lo == fn && hi == fn + fsz, "fde_range at ev_fn: %d", rc);
	lo = hi = 0;
	rc = eval_split_part(elf, fn, fsz, &lo, &hi);
	check(!rc && lo == cold && hi == cold + csz,
	      "ev_fn's split part: %d [%#lx, %#lx), want [%#lx, %#lx)", rc,
	      (unsigned long)lo, (unsigned long)hi, (unsigned long)cold,
	      (unsigned long)(cold + csz));
	rc = eval_split_part(elf, tail, tsz, &lo, &hi);
	check(rc == -ENOENT, "ev_tail has no split part: %d", rc);
cleanup:
	if (elf)
		elf_end(elf);
	close(fd);
	printf("%d/%d checks passed\n", checks - failures, checks);
	return failures != 0;
}
