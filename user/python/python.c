/*
 * CPython support: detection, per-version layouts, frame splicing
 * and code-object decoding. See python.h.
 *
 * Layouts are a table per (major, minor), x86_64, taken from CPython's
 * headers and checked against the interpreters on the build machine
 * (Debian's 3.11.2 /usr/bin/python3.11 and a pyenv 3.11.7 libpython3.11.so):
 * a table row is used only when the binary says it is that version
 * (Py_Version) and the live process passes a layout check
 * (tstate_current->interp == _PyRuntime.interpreters.head); every code
 * object read must have PyCode_Type as its type. Otherwise the frames are
 * refused with a note and the stacks stay native: never wrong names.
 * 3.12 (checked against a pyenv 3.12.1 libpython3.12.so, offsets from
 * offsetof() on its internal headers): the current tstate moved to a
 * thread-local (_Py_tss_tstate), which BPF cannot find from the ELF alone, so
 * the row points the BPF side at the main interpreter's GIL instead:
 * _PyRuntime._main_interpreter._gil.last_holder is the GIL holder's tstate
 * while it holds it (the BPF side's thread_id check drops anything else).
 * The live check for that row adds: the main interpreter's ceval.gil is that
 * embedded _gil. cframe still exists there; frames begin with f_code and the
 * per-frame flag byte is owner: C-stack shim frames (owner 3) are dropped and
 * mark the end of an eval loop call's group.
 *
 * 3.13 and later describe themselves: _Py_DebugOffsets at the start of
 * _PyRuntime (python/debug_offsets.c) is read from the binary, must be the
 * same bytes in the live process, and gives every offset but what it does
 * not say (hand knowledge, see layout_from_debug()): the GIL holder is still
 * how BPF finds the current thread state (the main interpreter's
 * _gil.last_holder, the interpreter found through interpreters.head), a
 * frame's owner >= 3 is a shim that ends an eval loop call's group (3.13
 * FRAME_OWNED_BY_CSTACK = 3; 3.14 renumbered: INTERPRETER = 3, CSTACK = 4;
 * 3.15 dropped CSTACK), f_executable is a tagged _PyStackRef from 3.14 (the
 * low bits are tag: masked everywhere, object pointers are 8-aligned), and
 * instr_ptr points at the instruction being executed (3.11 and 3.12's
 * prev_instr at the last one started: for a frame inside a call, the same
 * code unit).
 */
#define _GNU_SOURCE /* process_vm_readv */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "python.h"
#include "python/alloc_table.h"
#include "python/debug_offsets.h"
#include "python/eval_parts.h"

struct py_layout {
	unsigned major, minor;
	uint32_t rt_tstate_current; /* _PyRuntime: where the GIL holder's tstate
				       is */
	uint16_t rt_interp_head;    /* _PyRuntime.interpreters.head */
	/* 3.12: _PyRuntime._main_interpreter.ceval.gil must hold the address
	 * _PyRuntime + rt_main_gil (its own _gil); 0: no such check. */
	uint32_t rt_main_gil_ptr, rt_main_gil;
	uint16_t ts_interp, ts_native_tid, ts_cframe, cf_frame;
	uint16_t fr_code, fr_previous, fr_prev_instr;
	uint16_t fr_flag;   /* the byte the BPF side keeps per frame */
	bool flag_is_owner; /* it is owner (3.12+), not is_entry (3.11) */
	uint8_t owner_shim; /* owner values from this up are shim frames */
	uint16_t co_firstlineno, co_filename, co_qualname, co_linetable;
	uint16_t co_code_adaptive;
	uint16_t str_length, str_state;
	uint16_t str_ascii_hdr,
		str_compact_hdr; /* PyASCIIObject, PyCompactUnicodeObject */
	uint16_t bytes_size, bytes_sval; /* PyBytesObject ob_size, ob_sval */
	/* 3.13+: the interpreter's own offsets (not the table) */
	bool from_debug;
	uint64_t is_size, is_ceval_gil, is_gil, is_holder, rt_size;
	uint64_t is_gc; /* from _Py_DebugOffsets; 0: not given */
	uint64_t gc_size, gc_collecting; /* 3.14+, likewise */
};

/*
 * The cyclic collector's state, per minor version (x86_64, offsetof() on
 * pyenv 3.11.7, 3.12.1, 3.13.0's internal headers; the debug offsets of
 * 3.13 do not describe it): _PyRuntime.interpreters.main, checked to be
 * _PyRuntime + rt_main_interp (the embedded main interpreter), its gc state
 * and in that the "collecting" flag and generation_stats[3]
 * ({collections, collected, uncollectable}, 8 bytes each).
 */
static const struct py_gc_layout {
	unsigned minor;
	uint16_t rt_interp_main;
	uint32_t rt_main_interp;
	uint16_t interp_gc, gc_collecting, gc_generation_stats;
	/* Rows placed by the debug offsets, 3.14+: sizeof(_gc_runtime_state)
	 * (0: not checked). */
	uint16_t gc_size;
	/* generation_stats points at a struct gc_stats (3.15's ring buffers,
	 * see gc_ring_collections()), not the array above. */
	bool stats_ring;
} gc_layouts[] = {
	{11, 48, 58936, 648, 200, 128, 0, false},
	{12, 48, 76392, 112, 200, 128, 0, false},
	{13, 640, 88352, 7400, 200, 128, 0, false},
};

/*
 * Where _Py_DebugOffsets place the main interpreter's collector state
 * (3.13: PyInterpreterState.gc; 3.14+: also its size and "collecting"), the
 * rest of _gc_runtime_state from each version's internal headers
 * (offsetof() with Debian's libpython3.14-dev 3.14.10 and 3.15-dev 3.15.2,
 * -DPy_BUILD_CORE; the collection counts checked against gc.get_stats() in
 * the live interpreters). A row is used only when the debug offsets' own
 * figures for "collecting" (and, 3.14+, the structure's size) are the
 * row's: a build laid out otherwise keeps no collection count. 3.14.10 is
 * 3.13's structure without generation0 (the incremental collector was
 * reverted, its fields kept as dummies); 3.15 keeps the statistics apart.
 */
static const struct py_gc_layout gc_debug_layouts[] = {
	{13, 0, 0, 0, 200, 128, 0, false},
	{14, 0, 0, 0, 192, 120, 264, false},
	{15, 0, 0, 0, 112, 104, 176, true},
};

static const struct py_layout layouts[] = {
	/* CPython 3.11, x86_64 (Include/internal/pycore_runtime.h,
	 * cpython/pystate.h, internal/pycore_frame.h, cpython/code.h). */
	{.major = 3,
	 .minor = 11,
	 .rt_tstate_current = 576,
	 .rt_interp_head = 40,
	 .ts_interp = 16,
	 .ts_native_tid = 160,
	 .ts_cframe = 56,
	 .cf_frame = 8,
	 .fr_code = 32,
	 .fr_previous = 48,
	 .fr_prev_instr = 56,
	 .fr_flag = 68 /* is_entry */,
	 .co_firstlineno = 72,
	 .co_filename = 112,
	 .co_qualname = 128,
	 .co_linetable = 136,
	 .co_code_adaptive = 184,
	 .str_length = 16,
	 .str_state = 32,
	 .str_ascii_hdr = 48,
	 .str_compact_hdr = 72,
	 .bytes_size = 16,
	 .bytes_sval = 32},
	/* CPython 3.12, x86_64 (offsetof() against pyenv 3.12.1's
	 * include/python3.12/internal headers, -DPy_BUILD_CORE). The tstate is
	 * _PyRuntime._main_interpreter (76392) ._gil (1040) .last_holder (8).
	 */
	{.major = 3,
	 .minor = 12,
	 .rt_tstate_current = 77440,
	 .rt_interp_head = 40,
	 .rt_main_gil_ptr = 76392 + 384 /* .ceval.gil */,
	 .rt_main_gil = 76392 + 1040 /* ._gil */,
	 .ts_interp = 16,
	 .ts_native_tid = 144,
	 .ts_cframe = 56,
	 .cf_frame = 0,
	 .fr_code = 0,
	 .fr_previous = 8,
	 .fr_prev_instr = 56,
	 .fr_flag = 70 /* owner */,
	 .flag_is_owner = true,
	 .owner_shim = 3,
	 .co_firstlineno = 68,
	 .co_filename = 112,
	 .co_qualname = 128,
	 .co_linetable = 136,
	 .co_code_adaptive = 192,
	 .str_length = 16,
	 .str_state = 32,
	 .str_ascii_hdr = 40,
	 .str_compact_hdr = 56,
	 .bytes_size = 16,
	 .bytes_sval = 32},
};

#define NLAYOUTS (sizeof(layouts) / sizeof(layouts[0]))

struct py_code {
	uint64_t addr;
	bool ok;
	char *qualname, *file;
	int firstlineno;
	uint8_t *linetable;
	size_t ltlen;
};

struct py_proc {
	pid_t pid;
	bool frames; /* supported and checked */
	bool has_lay;
	struct py_layout lay;
	uint64_t eval_lo, eval_hi;   /* _PyEval_EvalFrameDefault, runtime */
	uint64_t eval2_lo, eval2_hi; /* its split-off part (0, 0: none) */
	uint64_t code_type;	     /* &PyCode_Type, runtime */
	uint64_t gc_state; /* the main interpreter's gc state; 0: unknown */
	const struct py_gc_layout *gc;
	/* The PyMemAllocatorEx tables of the object and mem domains, runtime
	 * addresses (0: not found). */
	uint64_t tab[2];
	/* Per domain, malloc and free: the function a PGO build inlines
	 * while the table holds it (runtime address; 0: none). */
	uint64_t spec[2][2];
	char frames_note[160]; /* why its frames cannot be read, or "" */
	struct py_code *codes;
	size_t ncodes, codes_cap;
};

struct py_frame {
	pid_t pid;
	uint64_t code, instr;
	bool resolved;
	char *func, *file;
	int line;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct py_proc *procs;
static size_t nprocs, procs_cap;
static struct py_frame *frames;
static size_t nframes, frames_cap;
static uint32_t *ftab; /* open addressing: frame index + 1 */
static size_t ftab_cap;

int python_mode_parse(const char *s, enum python_mode *out)
{
	if (!strcmp(s, "auto"))
		*out = PYTHON_AUTO;
	else if (!strcmp(s, "on"))
		*out = PYTHON_ON;
	else if (!strcmp(s, "off"))
		*out = PYTHON_OFF;
	else
		return -EINVAL;
	return 0;
}

bool python_candidate(const char *path)
{
	const char *b = strrchr(path, '/');

	b = b ? b + 1 : path;
	return !strncmp(b, "python", 6) || !strncmp(b, "libpython", 9);
}

static struct py_proc *proc_find(pid_t pid)
{
	for (size_t i = 0; i < nprocs; i++)
		if (procs[i].pid == pid)
			return &procs[i];
	return NULL;
}

static struct py_proc *proc_add(pid_t pid)
{
	struct py_proc *p = proc_find(pid);

	if (p) {
		for (size_t i = 0; i < p->ncodes; i++) {
			free(p->codes[i].qualname);
			free(p->codes[i].file);
			free(p->codes[i].linetable);
		}
		free(p->codes);
		memset(p, 0, sizeof(*p));
		p->pid = pid;
		return p;
	}
	if (nprocs == procs_cap) {
		size_t ncap = procs_cap ? procs_cap * 2 : 8;
		struct py_proc *np = realloc(procs, ncap * sizeof(*np));

		if (!np)
			return NULL;
		procs = np;
		procs_cap = ncap;
	}
	p = &procs[nprocs++];
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	return p;
}

static int rmem(pid_t pid, uint64_t addr, void *buf, size_t len)
{
	struct iovec l = {buf, len}, r = {(void *)(uintptr_t)addr, len};

	return process_vm_readv(pid, &l, 1, &r, 1, 0) == (ssize_t)len ? 0
								      : -EFAULT;
}

static uint64_t rptr(pid_t pid, uint64_t addr)
{
	uint64_t v = 0;

	return rmem(pid, addr, &v, sizeof(v)) ? 0 : v;
}

struct elf_syms {
	uint64_t runtime, version_addr, code_type, eval, eval_size;
	uint64_t eval2_lo, eval2_hi; /* the eval loop's split-off part */
	uint64_t first_vaddr;
	bool has_runtime, has_version, has_load;
	uint64_t version;
	/* PyObject_Malloc, PyObject_Free, PyMem_Malloc, PyMem_Free: where
	 * they are and their first bytes (the allocator tables). */
	uint64_t api[4];
	uint8_t api_code[4][PYTABLE_CODE_BYTES];
	size_t api_len[4];
	/* The start of the .PyRuntime section (3.13+: _Py_DebugOffsets). */
	uint64_t pyrt_addr;
	size_t pyrt_len;
	uint8_t pyrt[PYDBG_MAX_BYTES];
};

static const char *const api_names[4] = {"PyObject_Malloc", "PyObject_Free",
					 "PyMem_Malloc", "PyMem_Free"};

static int elf_scan(const char *path, struct elf_syms *es)
{
	Elf_Scn *scn = NULL;
	size_t nph;
	Elf *elf;
	int fd;

	memset(es, 0, sizeof(*es));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		if (elf)
			elf_end(elf);
		close(fd);
		return -ENOEXEC;
	}
	if (!elf_getphdrnum(elf, &nph)) {
		for (size_t i = 0; i < nph; i++) {
			GElf_Phdr ph;

			if (gelf_getphdr(elf, (int)i, &ph) &&
			    ph.p_type == PT_LOAD) {
				es->first_vaddr = ph.p_vaddr - ph.p_offset;
				es->has_load = true;
				break;
			}
		}
	}
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM ||
		    !sh.sh_entsize)
			continue;
		data = elf_getdata(scn, NULL);
		if (!data)
			continue;
		for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym s;
			const char *name;

			if (!gelf_getsym(data, (int)i, &s) ||
			    s.st_shndx == SHN_UNDEF || !s.st_value)
				continue;
			name = elf_strptr(elf, sh.sh_link, s.st_name);
			if (!name || name[0] == '\0')
				continue;
			if (!strcmp(name, "_PyRuntime")) {
				es->runtime = s.st_value;
				es->has_runtime = true;
			} else if (!strcmp(name, "Py_Version")) {
				es->version_addr = s.st_value;
			} else if (!strcmp(name, "PyCode_Type")) {
				es->code_type = s.st_value;
			} else if (!strcmp(name, "_PyEval_EvalFrameDefault")) {
				es->eval = s.st_value;
				es->eval_size = s.st_size;
			}
			for (int k = 0; k < 4; k++)
				if (!strcmp(name, api_names[k]))
					es->api[k] = s.st_value;
		}
	}
	/* The API functions' first bytes, from the sections holding them. */
	for (int k = 0; k < 4; k++) {
		scn = NULL;
		while (es->api[k] && (scn = elf_nextscn(elf, scn))) {
			GElf_Shdr sh;
			uint64_t off;
			ssize_t got;

			if (!gelf_getshdr(scn, &sh) ||
			    sh.sh_type != SHT_PROGBITS ||
			    !(sh.sh_flags & SHF_EXECINSTR) ||
			    es->api[k] < sh.sh_addr ||
			    es->api[k] >= sh.sh_addr + sh.sh_size)
				continue;
			/* From the file, not libelf's mapping of it: that
			 * holds the int3 of any uprobe registered on the file
			 * without a process filter (a system-wide tracer). */
			off = es->api[k] - sh.sh_addr;
			got = pread(fd, es->api_code[k],
				    sh.sh_size - off < PYTABLE_CODE_BYTES
					    ? sh.sh_size - off
					    : PYTABLE_CODE_BYTES,
				    (off_t)(sh.sh_offset + off));
			es->api_len[k] = got > 0 ? (size_t)got : 0;
			break;
		}
	}
	/* Py_Version (3.11+) is a constant: read it from its section. */
	scn = NULL;
	{
		size_t shstrndx;
		Elf_Scn *ps = NULL;

		while (!elf_getshdrstrndx(elf, &shstrndx) &&
		       (ps = elf_nextscn(elf, ps))) {
			GElf_Shdr sh;
			Elf_Data *data;
			const char *name;

			if (!gelf_getshdr(ps, &sh) ||
			    sh.sh_type != SHT_PROGBITS)
				continue;
			name = elf_strptr(elf, shstrndx, sh.sh_name);
			if (!name || strcmp(name, ".PyRuntime"))
				continue;
			data = elf_getdata(ps, NULL);
			if (data && data->d_buf) {
				es->pyrt_len = data->d_size < sizeof(es->pyrt)
						       ? data->d_size
						       : sizeof(es->pyrt);
				memcpy(es->pyrt, data->d_buf, es->pyrt_len);
				es->pyrt_addr = sh.sh_addr;
			}
			break;
		}
	}
	while (es->version_addr && (scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;
		uint64_t off;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS ||
		    es->version_addr < sh.sh_addr ||
		    es->version_addr + 4 > sh.sh_addr + sh.sh_size)
			continue;
		data = elf_getdata(scn, NULL);
		off = es->version_addr - sh.sh_addr;
		if (data && data->d_buf && off + 4 <= data->d_size) {
			uint32_t v;

			memcpy(&v, (const char *)data->d_buf + off, 4);
			es->version = v;
			es->has_version = true;
		}
		break;
	}
	/* A PGO build's eval loop may run in a part split off the symbol. */
	if (es->eval && eval_split_part(elf, es->eval, es->eval_size,
					&es->eval2_lo, &es->eval2_hi))
		es->eval2_lo = es->eval2_hi = 0;
	elf_end(elf);
	close(fd);
	return 0;
}

/*
 * 3.13+: the layout from the interpreter's _Py_DebugOffsets, plus what they
 * do not say (see the top of this file). 0, or -ENOTSUP with note.
 */
static int layout_from_debug(const struct pydbg_offsets *d,
			     struct py_layout *lay)
{
	memset(lay, 0, sizeof(*lay));
	lay->major = d->major;
	lay->minor = d->minor;
	lay->from_debug = true;
	lay->rt_interp_head = (uint16_t)d->rt_interpreters_head;
	lay->rt_size = d->rt_size;
	lay->is_size = d->is_size;
	lay->is_ceval_gil = d->is_ceval_gil;
	lay->is_gil = d->is_gil;
	lay->is_holder = d->is_gil_last_holder;
	lay->is_gc = d->is_gc;
	lay->gc_size = d->gc_size;
	lay->gc_collecting = d->gc_collecting;
	lay->ts_interp = (uint16_t)d->ts_interp;
	lay->ts_native_tid = (uint16_t)d->ts_native_thread_id;
	lay->ts_cframe = (uint16_t)d->ts_current_frame;
	lay->cf_frame = MT_PY_NONE; /* no _PyCFrame since 3.13 */
	lay->fr_code = (uint16_t)d->fr_executable;
	lay->fr_previous = (uint16_t)d->fr_previous;
	lay->fr_prev_instr = (uint16_t)d->fr_instr_ptr;
	lay->fr_flag = (uint16_t)d->fr_owner;
	lay->flag_is_owner = true;
	lay->owner_shim = 3;
	lay->co_firstlineno = (uint16_t)d->co_firstlineno;
	lay->co_filename = (uint16_t)d->co_filename;
	lay->co_qualname = (uint16_t)d->co_qualname;
	lay->co_linetable = (uint16_t)d->co_linetable;
	lay->co_code_adaptive = (uint16_t)d->co_code_adaptive;
	lay->str_length = (uint16_t)d->str_length;
	lay->str_state = (uint16_t)d->str_state;
	lay->str_ascii_hdr = (uint16_t)d->str_ascii_size;
	lay->str_compact_hdr = (uint16_t)d->str_compact_size;
	lay->bytes_size = (uint16_t)d->bytes_ob_size;
	lay->bytes_sval = (uint16_t)d->bytes_ob_sval;
	/* read_str() reads a compact header into 80 bytes; the interpreter
	 * _PyRuntime's head points into must be small enough to address. */
	if (lay->str_compact_hdr > 80 || d->rt_interpreters_head > 0xffff)
		return -ENOTSUP;
	return 0;
}

/*
 * The object and mem domains' allocator tables, from the slots the API
 * functions jump through: PyObject_Malloc's is the table's second pointer,
 * PyObject_Free's its fifth (both must agree), likewise for PyMem_*.
 */
static void find_tables(pid_t pid, const struct elf_syms *es, uint64_t bias,
			uint64_t tab[2], uint64_t spec[2][2])
{
	for (int d = 0; d < 2; d++) {
		uint64_t slot[2] = {0, 0};

		for (int j = 0; j < 2; j++) {
			struct pytable_ref r;
			int k = d * 2 + j;

			if (!es->api[k] || !es->api_len[k] ||
			    pytable_find(es->api_code[k], es->api_len[k],
					 es->api[k], &r))
				continue;
			spec[d][j] = r.speculated ? r.speculated + bias : 0;
			if (r.indirect) {
				uint64_t b = rptr(pid, r.addr + bias);

				slot[j] = b ? b + (uint64_t)r.disp : 0;
			} else {
				slot[j] = r.addr + bias;
			}
		}
		tab[d] = slot[0] && slot[1] == slot[0] + 24 ? slot[0] - 8 : 0;
	}
}

int python_alloc_fns(pid_t pid, struct python_alloc_fn *out, int max,
		     bool *inlined)
{
	static const uint32_t kinds[5] = {0, MT_K_MALLOC, MT_K_CALLOC,
					  MT_K_REALLOC, MT_K_DELETE};
	struct py_proc *p;
	int n = 0, ret = -ENOENT;

	*inlined = false;
	pthread_mutex_lock(&lock);
	p = proc_find(pid);
	for (int d = 0; p && d < 2; d++) {
		uint64_t t[5];

		if (!p->tab[d] || rmem(pid, p->tab[d], t, sizeof(t)))
			continue;
		ret = 0;
		*inlined |= (p->spec[d][0] && t[1] == p->spec[d][0]) ||
			    (p->spec[d][1] && t[4] == p->spec[d][1]);
		for (int k = 1; k < 5; k++) {
			bool dup = false;

			for (int i = 0; i < n; i++)
				if (out[i].addr == t[k] &&
				    out[i].kind == (kinds[k] | MT_K_CTX_ARG)) {
					dup = true;
					out[i].plain &= !t[0];
				}
			if (dup || !t[k])
				continue;
			if (n == max) {
				ret = -E2BIG;
				break;
			}
			out[n].addr = t[k];
			out[n].plain = !t[0];
			out[n++].kind = kinds[k] | MT_K_CTX_ARG;
		}
	}
	pthread_mutex_unlock(&lock);
	return ret ? ret : n;
}

/* Is tid (as pid's own PID namespace numbers it) one of pid's threads? */
static bool ns_thread_of(pid_t pid, uint64_t tid)
{
	char path[64], line[256];
	struct dirent *de;
	bool found = false;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	d = opendir(path);
	if (!d)
		return false;
	while (!found && (de = readdir(d))) {
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/status", pid,
			 de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			char *last;

			if (strncmp(line, "NSpid:", 6))
				continue;
			last = strrchr(line, '\t');
			last = last ? last : line + 6;
			found = strtoull(last, NULL, 10) == tid;
			break;
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

/*
 * The collector state of a 3.13+ process from its debug offsets: the flag
 * BPF reads wherever they put it; the collection counts only from the
 * gc_debug_layouts row that matches them.
 */
static void gc_from_debug(struct py_proc *p, const struct py_layout *lay,
			  uint64_t head, struct mt_py_proc *out)
{
	uint64_t collecting = lay->gc_collecting;

	for (size_t i = 0;
	     i < sizeof(gc_debug_layouts) / sizeof(gc_debug_layouts[0]); i++) {
		const struct py_gc_layout *g = &gc_debug_layouts[i];

		if (g->minor != lay->minor)
			continue;
		if (lay->minor == 13)
			collecting = g->gc_collecting;
		if (g->gc_collecting == collecting &&
		    g->gc_size == lay->gc_size)
			p->gc = g;
	}
	if (!collecting)
		return;
	p->gc_state = head + lay->is_gc;
	out->gc_collecting = p->gc_state + collecting;
}

int python_detect(pid_t pid, const char *path, uint64_t map_start,
		  struct mt_py_proc *out, char *note, size_t notelen)
{
	const struct py_layout *lay = NULL;
	struct py_layout dlay;
	struct pydbg_offsets dbg;
	uint8_t live[PYDBG_MAX_BYTES];
	struct elf_syms *es;
	struct py_proc *p;
	uint64_t bias, rt, head = 0, ts = 0, tsp;
	bool holder_ok = false;
	unsigned major, minor;
	char nsp[64], why[200];
	struct stat nst;
	int ret = -ENOTSUP;

	note[0] = '\0';
	es = malloc(sizeof(*es));
	if (!es)
		return -ENOMEM;
	if (elf_scan(path, es) || !es->has_runtime) {
		free(es);
		return 0;
	}
	pthread_mutex_lock(&lock);
	p = proc_add(pid);
	if (!p) {
		ret = -ENOMEM;
		goto out;
	}
	bias = map_start - (es->first_vaddr & ~0xfffull);
	if (es->has_load)
		find_tables(pid, es, bias, p->tab, p->spec);
	if (!es->has_version) {
		snprintf(note, notelen,
			 "pid %d: CPython before 3.11 (no Py_Version): Python "
			 "frames not supported, native stacks only",
			 pid);
		goto out;
	}
	major = (es->version >> 24) & 0xff;
	minor = (es->version >> 16) & 0xff;
	if (!es->has_load || !es->code_type || !es->eval) {
		snprintf(note, notelen,
			 "pid %d: CPython %u.%u without PyCode_Type or "
			 "_PyEval_EvalFrameDefault symbols: native stacks only",
			 pid, major, minor);
		goto out;
	}
	rt = es->runtime + bias;
	if (major == 3 && minor >= 13) {
		/* The interpreter's own description, from the file, and the
		 * very same bytes in the process. */
		int rc = es->pyrt_len && es->pyrt_addr == es->runtime
				 ? pydbg_decode(es->pyrt, es->pyrt_len, &dbg,
						why, sizeof(why))
				 : -ENOENT;

		if (rc == -ENOENT)
			snprintf(note, notelen,
				 "pid %d: CPython %u.%u without "
				 "_Py_DebugOffsets at the start of _PyRuntime: "
				 "native stacks only",
				 pid, major, minor);
		else if (rc)
			snprintf(note, notelen,
				 "pid %d: %s: native stacks only", pid, why);
		else if (dbg.major != major || dbg.minor != minor)
			snprintf(note, notelen,
				 "pid %d: CPython %u.%u whose _Py_DebugOffsets "
				 "say %u.%u: native stacks only",
				 pid, major, minor, dbg.major, dbg.minor);
		else if (rmem(pid, rt, live, dbg.struct_size) ||
			 memcmp(live, es->pyrt, dbg.struct_size))
			snprintf(note, notelen,
				 "pid %d: CPython %u.%u: _Py_DebugOffsets in "
				 "the process differ from its binary's: native "
				 "stacks only",
				 pid, major, minor);
		else if (layout_from_debug(&dbg, &dlay))
			snprintf(note, notelen,
				 "pid %d: CPython %u.%u: _Py_DebugOffsets out "
				 "of the range memtop can use: native stacks "
				 "only",
				 pid, major, minor);
		else
			lay = &dlay;
		if (!lay)
			goto out;
	} else {
		for (size_t i = 0; i < NLAYOUTS; i++)
			if (layouts[i].major == major &&
			    layouts[i].minor == minor)
				lay = &layouts[i];
	}
	if (!lay) {
		snprintf(note, notelen,
			 "pid %d: CPython %u.%u: no frame layout for this "
			 "version (3.11 to 3.15 are supported): native stacks "
			 "only",
			 pid, major, minor);
		goto out;
	}
	/* The layout check: the GIL holder belongs to the main interpreter,
	 * which uses its own GIL, and is one of the process's threads.
	 * Nobody may hold the GIL this instant: look a few times. A server
	 * that starts a thread per request hands the GIL to threads that end
	 * while they are looked at (their state freed, their task gone): the
	 * check is made again on the next holder, and a layout that does not
	 * match fails every time. */
	head = rptr(pid, rt + lay->rt_interp_head);
	if (lay->from_debug)
		tsp = head + lay->is_holder;
	else
		tsp = rt + lay->rt_tstate_current;
	for (int tries = 0; tries < 5 && !holder_ok; tries++) {
		struct timespec gap = {0, 20000000}; /* another holder */

		if (tries)
			nanosleep(&gap, NULL);
		ts = 0;
		for (int i = 0; i < 50 && head && !ts; i++) {
			struct timespec d = {0, 2000000};

			ts = rptr(pid, tsp);
			if (!ts)
				nanosleep(&d, NULL);
		}
		holder_ok =
			head &&
			(!ts || rptr(pid, ts + lay->ts_interp) == head) &&
			(!ts ||
			 ns_thread_of(pid, rptr(pid, ts + lay->ts_native_tid)));
	}
	if (!holder_ok ||
	    (lay->rt_main_gil_ptr &&
	     rptr(pid, rt + lay->rt_main_gil_ptr) != rt + lay->rt_main_gil) ||
	    (lay->from_debug &&
	     (head < rt || head - rt >= lay->rt_size ||
	      rptr(pid, head + lay->is_ceval_gil) != head + lay->is_gil))) {
		snprintf(
			note, notelen,
			"pid %d: CPython %u.%u does not match memtop's layout "
			"for it (interpreter check failed): native stacks only",
			pid, major, minor);
		goto out;
	}
	snprintf(nsp, sizeof(nsp), "/proc/%d/ns/pid", pid);
	if (stat(nsp, &nst)) {
		snprintf(note, notelen,
			 "pid %d: cannot read its PID namespace: %s: native "
			 "stacks only",
			 pid, strerror(errno));
		goto out;
	}
	p->frames = true;
	p->lay = *lay;
	p->has_lay = true;
	p->eval_lo = es->eval + bias;
	p->eval_hi = es->eval + bias + (es->eval_size ? es->eval_size : 1);
	p->eval2_lo = es->eval2_hi ? es->eval2_lo + bias : 0;
	p->eval2_hi = es->eval2_hi ? es->eval2_hi + bias : 0;
	p->code_type = es->code_type + bias;
	memset(out, 0, sizeof(*out));
	out->ns_dev = nst.st_dev;
	out->ns_ino = nst.st_ino;
	out->tstate_ptr = tsp;
	out->ts_native_tid = lay->ts_native_tid;
	out->ts_cframe = lay->ts_cframe;
	out->cf_frame = lay->cf_frame;
	out->fr_code = lay->fr_code;
	out->fr_previous = lay->fr_previous;
	out->fr_prev_instr = lay->fr_prev_instr;
	out->fr_flag = lay->fr_flag;
	out->fr_span = 8 + (lay->fr_code > lay->fr_previous ? lay->fr_code
							    : lay->fr_previous);
	if (lay->fr_prev_instr + 8 > out->fr_span)
		out->fr_span = lay->fr_prev_instr + 8;
	if (lay->fr_flag + 8 > out->fr_span)
		out->fr_span = lay->fr_flag + 8;
	out->eval_lo = p->eval_lo;
	out->eval_hi = p->eval_hi;
	out->eval2_lo = p->eval2_lo;
	out->eval2_hi = p->eval2_hi;
	/* The collector's state, where the main interpreter is where this
	 * layout says it is. */
	for (size_t i = 0; i < sizeof(gc_layouts) / sizeof(gc_layouts[0]);
	     i++) {
		const struct py_gc_layout *g = &gc_layouts[i];

		if (major != 3 || g->minor != minor ||
		    rptr(pid, rt + g->rt_interp_main) != rt + g->rt_main_interp)
			continue;
		p->gc = g;
		p->gc_state = rt + g->rt_main_interp + g->interp_gc;
		out->gc_collecting = p->gc_state + g->gc_collecting;
	}
	/* A build whose _PyRuntime differs from the table's (Debian's 3.13)
	 * or a version the table lacks: the debug offsets say where the main
	 * interpreter's collector state is (head was checked to be inside
	 * _PyRuntime, the embedded main interpreter), 3.14+ also where its
	 * "collecting" flag is. */
	if (!p->gc && lay->from_debug && lay->is_gc && head)
		gc_from_debug(p, lay, head, out);
	snprintf(note, notelen, "pid %d: CPython %u.%u%s, Python frames on",
		 pid, major, minor,
		 lay->from_debug ? " (layout from its _Py_DebugOffsets)" : "");
	ret = 1;
out:
	if (p && ret == -ENOTSUP) {
		/* "pid N: WHY: native stacks only" -> "WHY" */
		const char *w = strstr(note, ": ");
		size_t l;

		snprintf(p->frames_note, sizeof(p->frames_note), "%s",
			 w ? w + 2 : note);
		l = strlen(p->frames_note);
		if (l > 20 &&
		    !strcmp(p->frames_note + l - 20, ": native stacks only"))
			p->frames_note[l - 20] = '\0';
	}
	pthread_mutex_unlock(&lock);
	free(es);
	return ret;
}

int python_frames_note(pid_t pid, char *buf, size_t len)
{
	struct py_proc *p;
	int n = 0;

	buf[0] = '\0';
	pthread_mutex_lock(&lock);
	p = proc_find(pid);
	if (p && p->frames_note[0])
		n = snprintf(buf, len, "Python frames (%s)", p->frames_note);
	pthread_mutex_unlock(&lock);
	return n;
}

int python_version(pid_t pid, unsigned *major, unsigned *minor)
{
	struct py_proc *p;
	int err = -ENOENT;

	pthread_mutex_lock(&lock);
	p = proc_find(pid);
	if (p && p->frames && p->has_lay) {
		*major = p->lay.major;
		*minor = p->lay.minor;
		err = 0;
	}
	pthread_mutex_unlock(&lock);
	return err;
}

/*
 * 3.15's struct gc_stats (Include/internal/pycore_interp_structs.h): ring
 * buffers of struct gc_generation_stats (64 bytes, collections at 16), 11
 * for the young generation then two of 3 for the old ones (each followed by
 * its int8 index, padded to 8), each entry holding the running totals as of
 * one collection. The newest entry of a ring is its largest count: taken
 * as the maximum, not through the index, which the interpreter moves while
 * writing (a torn read then gives the count before, never a wrong one).
 */
enum { GC_RING_ENTRY = 64, GC_RING_COLL = 16, GC_RING_BYTES = 1112 };

static int gc_ring_collections(pid_t pid, uint64_t at, uint64_t *out)
{
	static const struct {
		uint16_t start, n;
	} rings[] = {{0, 11}, {712, 3}, {912, 3}};
	uint8_t buf[GC_RING_BYTES];
	uint64_t stats = rptr(pid, at), sum = 0;

	if (!stats || rmem(pid, stats, buf, sizeof(buf)))
		return -EFAULT;
	for (size_t r = 0; r < sizeof(rings) / sizeof(rings[0]); r++) {
		int64_t best = 0, v;

		for (unsigned i = 0; i < rings[r].n; i++) {
			memcpy(&v,
			       buf + rings[r].start + i * GC_RING_ENTRY +
				       GC_RING_COLL,
			       sizeof(v));
			if (v > best)
				best = v;
		}
		sum += (uint64_t)best;
	}
	*out = sum;
	return 0;
}

int python_gc_collections(pid_t pid, uint64_t *out)
{
	const struct py_gc_layout *lay = NULL;
	uint64_t st[9], gc = 0;
	struct py_proc *p;

	pthread_mutex_lock(&lock);
	p = proc_find(pid);
	if (p && p->frames) {
		gc = p->gc_state;
		lay = p->gc;
	}
	pthread_mutex_unlock(&lock);
	if (!gc || !lay)
		return -ENOENT;
	if (lay->stats_ring)
		return gc_ring_collections(pid, gc + lay->gc_generation_stats,
					   out);
	if (rmem(pid, gc + lay->gc_generation_stats, st, sizeof(st)))
		return -EFAULT;
	*out = st[0] + st[3] + st[6];
	return 0;
}

bool python_known(pid_t pid)
{
	bool k;

	pthread_mutex_lock(&lock);
	k = proc_find(pid) != NULL;
	pthread_mutex_unlock(&lock);
	return k;
}

/* ---- frames table: tagged ip = MT_IP_INTERP_TAG | index ---- */

static uint64_t fhash(pid_t pid, uint64_t code, uint64_t instr)
{
	uint64_t h =
		code * 0x9e3779b97f4a7c15ull ^ instr ^ ((uint64_t)pid << 32);

	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 29;
	return h;
}

static int ftab_grow(void)
{
	size_t ncap = ftab_cap ? ftab_cap * 2 : 1024;
	uint32_t *nt = calloc(ncap, sizeof(*nt));

	if (!nt)
		return -ENOMEM;
	for (size_t i = 0; i < nframes; i++) {
		size_t j =
			fhash(frames[i].pid, frames[i].code, frames[i].instr) &
			(ncap - 1);

		while (nt[j])
			j = (j + 1) & (ncap - 1);
		nt[j] = (uint32_t)i + 1;
	}
	free(ftab);
	ftab = nt;
	ftab_cap = ncap;
	return 0;
}

static long frame_index(pid_t pid, uint64_t code, uint64_t instr)
{
	size_t j;

	if ((nframes + 1) * 2 > ftab_cap && ftab_grow())
		return -1;
	for (j = fhash(pid, code, instr) & (ftab_cap - 1); ftab[j];
	     j = (j + 1) & (ftab_cap - 1)) {
		struct py_frame *f = &frames[ftab[j] - 1];

		if (f->pid == pid && f->code == code && f->instr == instr)
			return ftab[j] - 1;
	}
	if (nframes == frames_cap) {
		size_t ncap = frames_cap ? frames_cap * 2 : 256;
		struct py_frame *nf = realloc(frames, ncap * sizeof(*nf));

		if (!nf)
			return -1;
		frames = nf;
		frames_cap = ncap;
	}
	memset(&frames[nframes], 0, sizeof(frames[0]));
	frames[nframes].pid = pid;
	frames[nframes].code = code;
	frames[nframes].instr = instr;
	ftab[j] = (uint32_t)nframes + 1;
	return (long)nframes++;
}

void python_splice(pid_t pid, struct mt_stack *st, const struct mt_py_stack *py)
{
	uint64_t in[MEMTOP_MAX_FRAMES], pyips[MT_PY_MAX_FRAMES];
	bool entry[MT_PY_MAX_FRAMES];
	uint32_t nin = st->nr > MEMTOP_MAX_FRAMES ? MEMTOP_MAX_FRAMES : st->nr;
	uint32_t npy = py->nr > MT_PY_MAX_FRAMES ? MT_PY_MAX_FRAMES : py->nr;
	uint32_t n = 0, g = 0, npy_kept = 0;
	struct py_proc *p;

	pthread_mutex_lock(&lock);
	p = proc_find(pid);
	if (!p || !p->frames || !npy) {
		pthread_mutex_unlock(&lock);
		return;
	}
	for (uint32_t i = 0, k = 0; i < npy; i++) {
		uint64_t instr = py->f[i].instr & ((1ull << 56) - 1);
		unsigned flag = py->f[i].instr >> 56;
		long idx;

		if (p->lay.flag_is_owner && flag >= p->lay.owner_shim) {
			/* A shim: the frame below it started an eval loop call.
			 */
			if (k)
				entry[k - 1] = true;
			npy_kept = k;
			continue;
		}
		idx = frame_index(pid, py->f[i].code, instr);
		if (idx < 0) {
			pthread_mutex_unlock(&lock);
			return;
		}
		pyips[k] = MT_IP_INTERP_TAG | (uint64_t)idx;
		entry[k] = p->lay.flag_is_owner ? false : flag != 0;
		npy_kept = ++k;
	}
	npy = npy_kept;
	memcpy(in, st->ips, nin * sizeof(in[0]));
	for (uint32_t i = 0; i < nin && n < MEMTOP_MAX_FRAMES; i++) {
		uint64_t ip =
			in[i] - 1; /* a return address: the call is before */

		if (g < npy && ((ip >= p->eval_lo && ip < p->eval_hi) ||
				(ip >= p->eval2_lo && ip < p->eval2_hi))) {
			/* This eval loop call runs frames g.. up to an entry
			 * frame. */
			while (g < npy && n < MEMTOP_MAX_FRAMES) {
				st->ips[n++] = pyips[g];
				if (entry[g++])
					break;
			}
			continue;
		}
		st->ips[n++] = in[i];
	}
	/* Eval frames the native walk did not reach (no frame pointers). */
	while (g < npy && n < MEMTOP_MAX_FRAMES)
		/* cppcheck-suppress uninitvar ; pyips[0..npy) is set above */
		st->ips[n++] = pyips[g++];
	st->nr = n;
	pthread_mutex_unlock(&lock);
}

/* ---- code objects ---- */

static char *read_str(pid_t pid, const struct py_layout *lay, uint64_t addr)
{
	uint8_t hdr[80], *raw;
	uint64_t len;
	uint32_t state;
	unsigned kind;
	bool compact, ascii;
	char *out;
	size_t o = 0;

	if (!addr || rmem(pid, addr, hdr, lay->str_compact_hdr))
		return NULL;
	memcpy(&len, hdr + lay->str_length, 8);
	memcpy(&state, hdr + lay->str_state, 4);
	kind = (state >> 2) & 7;
	compact = (state >> 5) & 1;
	ascii = (state >> 6) & 1;
	if (!compact || len > 4096 || (kind != 1 && kind != 2 && kind != 4))
		return NULL;
	raw = malloc(len * kind + 1);
	out = malloc(len * 4 + 1);
	if (!raw || !out ||
	    rmem(pid,
		 addr + (ascii ? lay->str_ascii_hdr : lay->str_compact_hdr),
		 raw, len * kind)) {
		free(raw);
		free(out);
		return NULL;
	}
	for (uint64_t i = 0; i < len; i++) {
		uint32_t c = kind == 1	 ? raw[i]
			     : kind == 2 ? ((uint16_t *)raw)[i]
					 : ((uint32_t *)raw)[i];

		if (c < 0x80) {
			out[o++] = (char)c;
		} else if (c < 0x800) {
			out[o++] = (char)(0xc0 | c >> 6);
			out[o++] = (char)(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			out[o++] = (char)(0xe0 | c >> 12);
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (c & 0x3f));
		} else {
			out[o++] = (char)(0xf0 | c >> 18);
			out[o++] = (char)(0x80 | ((c >> 12) & 0x3f));
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (c & 0x3f));
		}
	}
	out[o] = '\0';
	free(raw);
	return out;
}

static struct py_code *code_get(struct py_proc *p, uint64_t addr)
{
	const struct py_layout *lay = &p->lay;
	struct py_code *c;
	uint64_t lt, ltlen = 0;
	int32_t v;
	char *file;

	for (size_t i = 0; i < p->ncodes; i++)
		if (p->codes[i].addr == addr)
			return &p->codes[i];
	if (p->ncodes == p->codes_cap) {
		size_t ncap = p->codes_cap ? p->codes_cap * 2 : 64;
		struct py_code *nc = realloc(p->codes, ncap * sizeof(*nc));

		if (!nc)
			return NULL;
		p->codes = nc;
		p->codes_cap = ncap;
	}
	c = &p->codes[p->ncodes++];
	memset(c, 0, sizeof(*c));
	c->addr = addr;
	/* A code object, or nothing: never a name read from something else. */
	if (rptr(p->pid, addr + 8) != p->code_type)
		return c;
	c->qualname =
		read_str(p->pid, lay, rptr(p->pid, addr + lay->co_qualname));
	file = read_str(p->pid, lay, rptr(p->pid, addr + lay->co_filename));
	if (file) {
		const char *b = strrchr(file, '/');

		c->file = strdup(b ? b + 1 : file);
		free(file);
	}
	if (!rmem(p->pid, addr + lay->co_firstlineno, &v, 4))
		c->firstlineno = v;
	lt = rptr(p->pid, addr + lay->co_linetable);
	if (lt && !rmem(p->pid, lt + lay->bytes_size, &ltlen, 8) &&
	    ltlen < (1u << 20)) {
		c->linetable = malloc(ltlen ? ltlen : 1);
		if (c->linetable &&
		    !rmem(p->pid, lt + lay->bytes_sval, c->linetable, ltlen))
			c->ltlen = ltlen;
	}
	c->ok = c->qualname != NULL;
	return c;
}

static int read_varint(const uint8_t *t, size_t len, size_t *i, unsigned *out)
{
	unsigned v = 0, shift = 0;

	while (*i < len && shift < 32) {
		uint8_t b = t[(*i)++];

		v |= (unsigned)(b & 63) << shift;
		shift += 6;
		if (!(b & 64)) {
			*out = v;
			return 0;
		}
	}
	return -1;
}

static int read_svarint(const uint8_t *t, size_t len, size_t *i, int *out)
{
	unsigned u;

	if (read_varint(t, len, i, &u))
		return -1;
	*out = (u & 1) ? -(int)(u >> 1) : (int)(u >> 1);
	return 0;
}

int python_linetable_line(const uint8_t *tab, size_t len, int firstlineno,
			  int instr)
{
	size_t i = 0;
	/* Wide: a hostile table's deltas must not overflow an int. */
	int64_t line = firstlineno, addr = 0;

	while (i < len) {
		uint8_t b = tab[i++];
		int code = (b >> 3) & 15, n = (b & 7) + 1, d;
		unsigned u;
		bool none = false;

		if (!(b & 0x80))
			return -1; /* not the start of an entry */
		switch (code) {
		case 15: /* no location */
			none = true;
			break;
		case 14: /* long form: line delta, end line, columns */
			if (read_svarint(tab, len, &i, &d) ||
			    read_varint(tab, len, &i, &u) ||
			    read_varint(tab, len, &i, &u) ||
			    read_varint(tab, len, &i, &u))
				return -1;
			line += d;
			break;
		case 13: /* no columns */
			if (read_svarint(tab, len, &i, &d))
				return -1;
			line += d;
			break;
		case 10:
		case 11:
		case 12: /* one line form */
			line += code - 10;
			i += 2;
			break;
		default: /* short form, same line */
			i += 1;
			break;
		}
		if (line < INT32_MIN || line > INT32_MAX)
			return -1;
		if (instr >= addr && instr < addr + n)
			return none ? -1 : (int)line;
		addr += n;
	}
	return -1;
}

int python_symbolize(pid_t pid, uint64_t ip, struct sym_info *out)
{
	uint64_t idx = ip & ~MT_IP_INTERP_TAG;
	struct py_frame *f;
	struct py_proc *p;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&lock);
	p = proc_find(pid);
	if (idx >= nframes || !p || !p->has_lay || frames[idx].pid != pid) {
		pthread_mutex_unlock(&lock);
		out->func = "[python]";
		return 0;
	}
	f = &frames[idx];
	if (!f->resolved) {
		struct py_code *c = code_get(p, f->code);

		f->resolved = true;
		if (c && c->ok) {
			int64_t off =
				((int64_t)f->instr -
				 (int64_t)(f->code + p->lay.co_code_adaptive)) /
				2;

			f->func = strdup(c->qualname);
			f->file = c->file ? strdup(c->file) : NULL;
			if (off >= 0 && off < (1 << 24) && c->linetable)
				f->line = python_linetable_line(
					c->linetable, c->ltlen, c->firstlineno,
					(int)off);
			if (f->line < 0)
				f->line = 0;
		}
	}
	out->func = f->func ? f->func : "[python]";
	out->file = f->file;
	out->line = f->line;
	pthread_mutex_unlock(&lock);
	return 0;
}

void python_forget(pid_t pid)
{
	struct py_proc *p;

	pthread_mutex_lock(&lock);
	p = proc_find(pid);
	if (p) {
		proc_add(pid); /* frees its code cache */
		*p = procs[--nprocs];
	}
	/* Its frames can no longer be matched (a new process may get pid). */
	for (size_t i = 0; i < nframes; i++)
		if (frames[i].pid == pid)
			frames[i].pid = -1;
	pthread_mutex_unlock(&lock);
}

void python_free_all(void)
{
	pthread_mutex_lock(&lock);
	while (nprocs) {
		proc_add(procs[0].pid);
		procs[0] = procs[--nprocs];
	}
	free(procs);
	procs = NULL;
	procs_cap = 0;
	for (size_t i = 0; i < nframes; i++) {
		free(frames[i].func);
		free(frames[i].file);
	}
	free(frames);
	frames = NULL;
	nframes = frames_cap = 0;
	free(ftab);
	ftab = NULL;
	ftab_cap = 0;
	pthread_mutex_unlock(&lock);
}
