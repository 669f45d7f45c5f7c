/*
 * libFuzzer target: an ELF file through the symbolizer's libdw path. The
 * input is written to a temporary file, reported to libdwfl as an offline
 * module, and addresses across it are resolved with the symbolizer's own
 * code (symbol table index, CU ranges, line info, name cleaning and C++
 * demangling): symbolizer.c is included so its static functions are
 * reachable. Debug info is looked for only in the file itself.
 */
#include "../../user/symbol/symbolizer.c"

static int no_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname,
			Dwarf_Addr base, const char *file_name,
			const char *debuglink_file, GElf_Word debuglink_crc,
			char **debuginfo_file_name)
{
	(void)mod, (void)userdata, (void)modname, (void)base, (void)file_name;
	(void)debuglink_file, (void)debuglink_crc, (void)debuginfo_file_name;
	return -1;
}

static const Dwfl_Callbacks offline_callbacks = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = no_debuginfo,
	.section_address = dwfl_offline_section_address,
};

static char path[64];
static int fd = -1;

static struct symbolizer *sym;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mod_index mi = {0};
	Dwfl_Module *mod;
	Dwarf_Addr lo, hi;
	Dwfl *dwfl;

	if (!sym && symbolizer_new(&sym))
		abort();
	if (fd < 0) {
		snprintf(path, sizeof(path), "/tmp/memtop-fuzz-elf-%d",
			 (int)getpid());
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			abort();
		unlink(path); /* reopened through /proc/self/fd below */
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	dwfl = dwfl_begin(&offline_callbacks);
	if (!dwfl)
		return 0;
	mod = dwfl_report_offline(dwfl, "fuzz", path, -1);
	dwfl_report_end(dwfl, NULL, NULL);
	if (mod) {
		dwfl_module_info(mod, NULL, &lo, &hi, NULL, NULL, NULL, NULL);
		load_mod_syms(mod, &mi);
		/* Every symbol's start and middle, then a sweep. */
		for (size_t i = 0; i < mi.nsyms && i < 256; i++) {
			struct sym_info info = {0};

			resolve_module(sym, mod, &mi, mi.syms[i].addr, &info);
			memset(&info, 0, sizeof(info));
			resolve_module(sym, mod, &mi,
				       mi.syms[i].addr + mi.syms[i].size / 2,
				       &info);
		}
		for (int k = 0; k < 64 && hi > lo; k++) {
			struct sym_info info = {0};

			resolve_module(sym, mod, &mi, lo + (hi - lo) / 64 * k,
				       &info);
		}
	}
	dwfl_end(dwfl);
	mod_index_free(&mi);
	return 0;
}
