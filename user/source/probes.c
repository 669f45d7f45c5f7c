/*
 * The allocator entry points memtop probes, each with its family (libc,
 * C++, CPython's API), where a file defines them (its ELF symbol tables),
 * and the kernel side of attaching them: uprobe_multi and uprobe session
 * links through bpf(2) (libbpf 1.1 predates them), with the feature checks,
 * and the uprobe PMU that perf-event uprobes fall back to.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "memtop.h"
#include "probes.h"

const struct probe_sym probe_syms[] = {
	{"malloc", MT_K_MALLOC, true, PF_LIBC},
	{"calloc", MT_K_CALLOC, true, PF_LIBC},
	{"realloc", MT_K_REALLOC, true, PF_LIBC},
	{"reallocarray", MT_K_REALLOCARRAY, true, PF_LIBC},
	{"free", MT_K_FREE, false, PF_LIBC},
	{"posix_memalign", MT_K_POSIX_MEMALIGN, true, PF_LIBC},
	{"aligned_alloc", MT_K_MEMALIGN, true, PF_LIBC},
	{"memalign", MT_K_MEMALIGN, true, PF_LIBC},
	{"valloc", MT_K_MALLOC, true, PF_LIBC},
	{"pvalloc", MT_K_MALLOC, true, PF_LIBC},
	/* C++: every operator new takes the size first. */
	{"_Znwm", MT_K_MALLOC, true, PF_CXX},
	{"_Znam", MT_K_MALLOC, true, PF_CXX},
	{"_ZnwmRKSt9nothrow_t", MT_K_MALLOC, true, PF_CXX},
	{"_ZnamRKSt9nothrow_t", MT_K_MALLOC, true, PF_CXX},
	{"_ZnwmSt11align_val_t", MT_K_MALLOC, true, PF_CXX},
	{"_ZnamSt11align_val_t", MT_K_MALLOC, true, PF_CXX},
	{"_ZnwmSt11align_val_tRKSt9nothrow_t", MT_K_MALLOC, true, PF_CXX},
	{"_ZnamSt11align_val_tRKSt9nothrow_t", MT_K_MALLOC, true, PF_CXX},
	/* ... and every operator delete the pointer first. */
	{"_ZdlPv", MT_K_DELETE, false, PF_CXX},
	{"_ZdaPv", MT_K_DELETE, false, PF_CXX},
	{"_ZdlPvm", MT_K_DELETE, false, PF_CXX},
	{"_ZdaPvm", MT_K_DELETE, false, PF_CXX},
	{"_ZdlPvRKSt9nothrow_t", MT_K_DELETE, false, PF_CXX},
	{"_ZdaPvRKSt9nothrow_t", MT_K_DELETE, false, PF_CXX},
	{"_ZdlPvSt11align_val_t", MT_K_DELETE, false, PF_CXX},
	{"_ZdaPvSt11align_val_t", MT_K_DELETE, false, PF_CXX},
	{"_ZdlPvmSt11align_val_t", MT_K_DELETE, false, PF_CXX},
	{"_ZdaPvmSt11align_val_t", MT_K_DELETE, false, PF_CXX},
	{"_ZdlPvSt11align_val_tRKSt9nothrow_t", MT_K_DELETE, false, PF_CXX},
	{"_ZdaPvSt11align_val_tRKSt9nothrow_t", MT_K_DELETE, false, PF_CXX},
	/* CPython: pymalloc serves small objects from arenas, so its
	 * API is probed; the outermost call counts once. Its frees pass the
	 * block on (PyObject_Free -> PyMem_RawFree -> free): MT_K_DELETE. */
	{"PyObject_Malloc", MT_K_MALLOC, true, PF_PYTHON},
	{"PyObject_Calloc", MT_K_CALLOC, true, PF_PYTHON},
	{"PyObject_Realloc", MT_K_REALLOC, true, PF_PYTHON},
	{"PyObject_Free", MT_K_DELETE, false, PF_PYTHON},
	{"PyMem_Malloc", MT_K_MALLOC, true, PF_PYTHON},
	{"PyMem_Calloc", MT_K_CALLOC, true, PF_PYTHON},
	{"PyMem_Realloc", MT_K_REALLOC, true, PF_PYTHON},
	{"PyMem_Free", MT_K_DELETE, false, PF_PYTHON},
	{"PyMem_RawMalloc", MT_K_MALLOC, true, PF_PYTHON},
	{"PyMem_RawCalloc", MT_K_CALLOC, true, PF_PYTHON},
	{"PyMem_RawRealloc", MT_K_REALLOC, true, PF_PYTHON},
	{"PyMem_RawFree", MT_K_DELETE, false, PF_PYTHON},
};

_Static_assert(sizeof(probe_syms) / sizeof(probe_syms[0]) == PROBE_NSYMS,
	       "PROBE_NSYMS counts the table");

/*
 * A function's first bytes, read from the file (the page cache), not from
 * libelf's mapping of it: while a uprobe without a process filter is
 * registered on the file (a system-wide memtop, or any other tracer), every
 * executable-capable mapping of it, this one included, holds its int3.
 */
static void sym_read_code(Elf *elf, int fd, GElf_Sym *s, struct sym_loc *loc)
{
	Elf_Scn *scn = elf_getscn(elf, s->st_shndx);
	GElf_Shdr sh;
	uint64_t in, n;
	ssize_t got;

	if (!scn || !gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS ||
	    s->st_value < sh.sh_addr || s->st_value >= sh.sh_addr + sh.sh_size)
		return;
	in = s->st_value - sh.sh_addr;
	loc->file_off = sh.sh_offset + in;
	n = sh.sh_size - in < sizeof(loc->code) ? sh.sh_size - in
						: sizeof(loc->code);
	got = pread(fd, loc->code, n, (off_t)loc->file_off);
	loc->ncode = got > 0 ? (size_t)got : 0;
}

int probes_find_syms(const char *path, struct sym_loc locs[PROBE_NSYMS])
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	Elf *elf;
	int fd, found = 0;

	memset(locs, 0, sizeof(*locs) * PROBE_NSYMS);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		found = -ENOEXEC;
		goto cleanup;
	}
	while ((scn = elf_nextscn(elf, scn))) {
		Elf_Data *data;
		size_t n;

		if (!gelf_getshdr(scn, &sh) ||
		    (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB) ||
		    !sh.sh_entsize)
			continue;
		data = elf_getdata(scn, NULL);
		if (!data)
			continue;
		n = sh.sh_size / sh.sh_entsize;
		for (size_t i = 0; i < n; i++) {
			GElf_Sym s;
			const char *name;

			if (!gelf_getsym(data, i, &s) ||
			    GELF_ST_TYPE(s.st_info) != STT_FUNC ||
			    s.st_shndx == SHN_UNDEF || !s.st_value ||
			    (GELF_ST_BIND(s.st_info) != STB_GLOBAL &&
			     GELF_ST_BIND(s.st_info) != STB_WEAK))
				continue;
			name = elf_strptr(elf, sh.sh_link, s.st_name);
			if (!name)
				continue;
			for (size_t k = 0; k < PROBE_NSYMS; k++) {
				if (locs[k].addr ||
				    strcmp(name, probe_syms[k].name))
					continue;
				locs[k].addr = s.st_value;
				sym_read_code(elf, fd, &s, &locs[k]);
				if (locs[k].file_off)
					found++;
				else
					locs[k].addr = 0;
			}
		}
	}
cleanup:
	if (elf)
		elf_end(elf);
	close(fd);
	return found;
}

int probes_is_go(const char *path)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	size_t shstr;
	int fd, found = 0;
	Elf *elf;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF ||
	    elf_getshdrstrndx(elf, &shstr)) {
		found = -ENOEXEC;
		goto cleanup;
	}
	while (!found && (scn = elf_nextscn(elf, scn))) {
		const char *name;

		if (!gelf_getshdr(scn, &sh))
			continue;
		name = elf_strptr(elf, shstr, sh.sh_name);
		found = name && !strcmp(name, ".go.buildinfo");
	}
cleanup:
	if (elf)
		elf_end(elf);
	close(fd);
	return found;
}

/*
 * bpf(BPF_LINK_CREATE) for a uprobe_multi link, which libbpf 1.1 predates;
 * the layout is the kernel's union bpf_attr link_create (6.6+).
 */
struct uprobe_multi_attr {
	__u32 prog_fd;
	__u32 target_fd;
	__u32 attach_type;
	__u32 flags;
	__u64 path;
	__u64 offsets;
	__u64 ref_ctr_offsets;
	__u64 cookies;
	__u32 cnt;
	__u32 um_flags;
	__u32 pid;
	__u32 pad;
};

#define MT_BPF_F_UPROBE_MULTI_RETURN 1

/* The feature probes' program: return 0. */
static const struct bpf_insn ret0[] = {
	{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0},
	{.code = BPF_JMP | BPF_EXIT},
};

/*
 * Whether the kernel has uprobe_multi links (6.6+), asked as libbpf's later
 * versions do: a link on "/" fails with EBADF where the link type exists.
 */
static bool kernel_has_link(__u32 attach_type)
{
	LIBBPF_OPTS(bpf_prog_load_opts, lo,
		    .expected_attach_type = attach_type);
	struct uprobe_multi_attr a;
	uint64_t off = 1;
	int prog, fd, err;

	prog = bpf_prog_load(BPF_PROG_TYPE_KPROBE, "mt_probe", "GPL", ret0, 2,
			     &lo);
	if (prog < 0)
		return false;
	memset(&a, 0, sizeof(a));
	a.prog_fd = prog;
	a.attach_type = attach_type;
	a.path = (uintptr_t) "/";
	a.offsets = (uintptr_t)&off;
	a.cnt = 1;
	fd = syscall(__NR_bpf, BPF_LINK_CREATE, &a, sizeof(a));
	err = fd < 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	close(prog);
	return err == EBADF;
}

bool probes_have_uprobe_multi(void)
{
	return kernel_has_link(MT_BPF_TRACE_UPROBE_MULTI);
}

bool probes_have_uprobe_session(void)
{
	return kernel_has_link(MT_BPF_TRACE_UPROBE_SESSION);
}

/*
 * Whether the kernel loads a BPF map iterator (a tracing program): a
 * two-instruction one, in milliseconds, where a refusal of the whole object
 * costs a second of verification before memtop loads it again without.
 */
bool probes_have_map_iter(void)
{
	struct btf *vmlinux = btf__load_vmlinux_btf();
	int id, prog;

	if (libbpf_get_error(vmlinux))
		return false;
	id = btf__find_by_name_kind(vmlinux, "bpf_iter_bpf_map_elem",
				    BTF_KIND_FUNC);
	btf__free(vmlinux);
	if (id <= 0)
		return false;
	{
		LIBBPF_OPTS(bpf_prog_load_opts, lo,
			    .expected_attach_type = BPF_TRACE_ITER,
			    .attach_btf_id = (__u32)id);

		prog = bpf_prog_load(BPF_PROG_TYPE_TRACING, "mt_iter", "GPL",
				     ret0, 2, &lo);
	}
	if (prog < 0)
		return false;
	close(prog);
	return true;
}

bool probes_have_fexit(const char *func)
{
	struct btf *vmlinux = btf__load_vmlinux_btf();
	int id, prog, link;

	if (libbpf_get_error(vmlinux))
		return false;
	id = btf__find_by_name_kind(vmlinux, func, BTF_KIND_FUNC);
	btf__free(vmlinux);
	if (id <= 0)
		return false;
	{
		LIBBPF_OPTS(bpf_prog_load_opts, lo,
			    .expected_attach_type = BPF_TRACE_FEXIT,
			    .attach_btf_id = (__u32)id);

		prog = bpf_prog_load(BPF_PROG_TYPE_TRACING, "mt_fexit", "GPL",
				     ret0, 2, &lo);
	}
	if (prog < 0)
		return false;
	/* Loading is not all: the attach needs ftrace's direct calls. */
	link = bpf_link_create(prog, 0, BPF_TRACE_FEXIT, NULL);
	close(prog);
	if (link < 0)
		return false;
	close(link);
	return true;
}

int probes_pmu_read(const char *name)
{
	char path[128], buf[64];
	const char *p;
	FILE *f;
	int v = -1;

	snprintf(path, sizeof(path), "/sys/bus/event_source/devices/uprobe/%s",
		 name);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	if (fgets(buf, sizeof(buf), f)) {
		p = strchr(buf, ':');
		v = atoi(p ? p + 1 : buf);
	}
	fclose(f);
	return v;
}

int probes_link_create(int prog_fd, int pid, const char *path,
		       const uint64_t *offs, const uint64_t *cookies, int n,
		       bool ret, bool session)
{
	struct uprobe_multi_attr a;
	int fd;

	memset(&a, 0, sizeof(a));
	a.prog_fd = (__u32)prog_fd;
	a.attach_type = session ? MT_BPF_TRACE_UPROBE_SESSION
				: MT_BPF_TRACE_UPROBE_MULTI;
	a.path = (uintptr_t)path;
	a.offsets = (uintptr_t)offs;
	a.cookies = (uintptr_t)cookies;
	a.cnt = (__u32)n;
	a.um_flags = ret ? MT_BPF_F_UPROBE_MULTI_RETURN : 0;
	a.pid = pid > 0 ? (__u32)pid : 0;
	fd = syscall(__NR_bpf, BPF_LINK_CREATE, &a, sizeof(a));
	return fd < 0 ? -errno : fd;
}
