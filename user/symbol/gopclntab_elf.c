/*
 * The .gopclntab of an ELF file, for the symbolizer and the unwind table
 * compiler; gopclntab.c itself decodes bytes only.
 */
#include <errno.h>
#include <gelf.h>
#include <string.h>

#include "gopclntab.h"

/*
 * Go's text starts at .text in an internally linked binary; the table's
 * header says where when C code comes first (cgo).
 */
int gopclntab_open_elf(Elf *elf, struct gopclntab **out)
{
	Elf_Data *data = NULL;
	Elf_Scn *scn = NULL;
	uint64_t text = 0;
	size_t shstrndx;

	*out = NULL;
	if (!elf || elf_getshdrstrndx(elf, &shstrndx))
		return -ENOENT;
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		const char *name;

		if (!gelf_getshdr(scn, &sh))
			continue;
		name = elf_strptr(elf, shstrndx, sh.sh_name);
		if (!name)
			continue;
		if (!strcmp(name, ".text"))
			text = sh.sh_addr;
		else if (!strcmp(name, ".gopclntab") &&
			 sh.sh_type == SHT_PROGBITS)
			data = elf_getdata(scn, NULL);
	}
	if (!data || !data->d_buf)
		return -ENOENT;
	return gopclntab_open(data->d_buf, data->d_size, text, out);
}
