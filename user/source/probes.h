/*
 * The probe table and attaching probes (probes.c): which allocator
 * functions memtop probes, where a file defines them, and the uprobe_multi
 * link that libbpf 1.1 cannot make.
 */
#ifndef MEMTOP_PROBES_H
#define MEMTOP_PROBES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/types.h>

/* Which allocator a probe belongs to: a family is switched as one. */
enum probe_family {
	PF_LIBC,   /* malloc and friends, whichever library exports them */
	PF_CXX,	   /* operator new and delete */
	PF_PYTHON, /* CPython's API, where its allocator tables are not read */
};

struct probe_sym {
	const char *name;
	__u32 kind; /* enum memtop_kind: the probe's attach cookie */
	bool ret;   /* needs the uretprobe */
	enum probe_family family;
};

#define PROBE_NSYMS 42
extern const struct probe_sym probe_syms[]; /* PROBE_NSYMS of them */

struct sym_loc {
	uint64_t addr;	   /* st_value; 0 = not defined here */
	uint64_t file_off; /* where its code is in the file */
	uint8_t code[32];  /* its first bytes, for probe placement */
	size_t ncode;
};

/*
 * Which probe_syms a file defines, where, and their first bytes: how many,
 * or -errno (-ENOEXEC: not ELF). Symbols at the same address (aliases such
 * as memalign/aligned_alloc) are probed once, as two probes on one
 * instruction would look like a nested call.
 */
int probes_find_syms(const char *path, struct sym_loc locs[PROBE_NSYMS]);

/* Is path a Go program (a .go.buildinfo section)? Its heap is the Go
 * runtime's, made without malloc: 1 yes, 0 no, or -errno. */
int probes_is_go(const char *path);

#define MT_BPF_TRACE_UPROBE_MULTI   48
#define MT_BPF_TRACE_UPROBE_SESSION 57

/* uprobe_multi links (6.6+); uprobe sessions (6.13+): one program at
 * entry and return, whose entry may skip the return. */
bool probes_have_uprobe_multi(void);
bool probes_have_uprobe_session(void);
/* The kernel loads BPF map iterators (tracing programs; some refuse them). */
bool probes_have_map_iter(void);
/* The kernel loads and attaches an fexit program on func (a kernel
 * function; some kernels and sandboxes refuse trampolines). */
bool probes_have_fexit(const char *func);
/* A number from a sysfs file of the uprobe PMU ("config:0" gives 0), or
 * -errno. */
int probes_pmu_read(const char *name);
/* A uprobe_multi (or session) link of n functions of path in pid (0 or
 * less: every process): its fd, or -errno. */
int probes_link_create(int prog_fd, int pid, const char *path,
		       const uint64_t *offs, const uint64_t *cookies, int n,
		       bool ret, bool session);

#endif
