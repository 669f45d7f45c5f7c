/*
 * CPython support (issue 7): detection, per-version layouts, frame splicing
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
 */
#define _GNU_SOURCE /* process_vm_readv */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "python.h"

struct py_layout {
	unsigned major, minor;
	uint32_t rt_tstate_current; /* _PyRuntime: where the GIL holder's tstate is */
	uint16_t rt_interp_head; /* _PyRuntime.interpreters.head */
	/* 3.12: _PyRuntime._main_interpreter.ceval.gil must hold the address
	 * _PyRuntime + rt_main_gil (its own _gil); 0: no such check. */
	uint32_t rt_main_gil_ptr, rt_main_gil;
	uint16_t ts_interp, ts_thread_id, ts_cframe, cf_frame;
	uint16_t fr_code, fr_previous, fr_prev_instr;
	uint16_t fr_flag; /* the byte the BPF side keeps per frame */
	bool flag_is_owner; /* it is owner (3.12), not is_entry (3.11) */
	uint8_t owner_cstack; /* owner of C-stack shim frames (3.12) */
	uint16_t co_firstlineno, co_filename, co_qualname, co_linetable;
	uint16_t co_firsttraceable, co_code_adaptive;
	uint16_t str_ascii_hdr, str_compact_hdr; /* PyASCIIObject, PyCompactUnicodeObject */
};

static const struct py_layout layouts[] = {
	/* CPython 3.11, x86_64 (Include/internal/pycore_runtime.h,
	 * cpython/pystate.h, internal/pycore_frame.h, cpython/code.h). */
	{ .major = 3, .minor = 11,
	  .rt_tstate_current = 576, .rt_interp_head = 40,
	  .ts_interp = 16, .ts_thread_id = 152, .ts_cframe = 56, .cf_frame = 8,
	  .fr_code = 32, .fr_previous = 48, .fr_prev_instr = 56,
	  .fr_flag = 68 /* is_entry */,
	  .co_firstlineno = 72, .co_filename = 112, .co_qualname = 128,
	  .co_linetable = 136, .co_firsttraceable = 168,
	  .co_code_adaptive = 184,
	  .str_ascii_hdr = 48, .str_compact_hdr = 72 },
	/* CPython 3.12, x86_64 (offsetof() against pyenv 3.12.1's
	 * include/python3.12/internal headers, -DPy_BUILD_CORE). The tstate is
	 * _PyRuntime._main_interpreter (76392) ._gil (1040) .last_holder (8). */
	{ .major = 3, .minor = 12,
	  .rt_tstate_current = 77440, .rt_interp_head = 40,
	  .rt_main_gil_ptr = 76392 + 384 /* .ceval.gil */,
	  .rt_main_gil = 76392 + 1040 /* ._gil */,
	  .ts_interp = 16, .ts_thread_id = 136, .ts_cframe = 56, .cf_frame = 0,
	  .fr_code = 0, .fr_previous = 8, .fr_prev_instr = 56,
	  .fr_flag = 70 /* owner */, .flag_is_owner = true, .owner_cstack = 3,
	  .co_firstlineno = 68, .co_filename = 112, .co_qualname = 128,
	  .co_linetable = 136, .co_firsttraceable = 176,
	  .co_code_adaptive = 192,
	  .str_ascii_hdr = 40, .str_compact_hdr = 56 },
};

#define NLAYOUTS (sizeof(layouts) / sizeof(layouts[0]))

struct py_code {
	uint64_t addr;
	bool ok;
	char *qualname, *file;
	int firstlineno, firsttraceable;
	uint8_t *linetable;
	size_t ltlen;
};

struct py_proc {
	pid_t pid;
	bool frames; /* supported and checked */
	const struct py_layout *lay;
	uint64_t eval_lo, eval_hi; /* _PyEval_EvalFrameDefault, runtime */
	uint64_t code_type; /* &PyCode_Type, runtime */
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
	struct iovec l = { buf, len }, r = { (void *)(uintptr_t)addr, len };

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
	uint64_t first_vaddr;
	bool has_runtime, has_version, has_load;
	uint64_t version;
};

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

			if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD) {
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
		}
	}
	/* Py_Version (3.11+) is a constant: read it from its section. */
	scn = NULL;
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
	elf_end(elf);
	close(fd);
	return 0;
}

int python_detect(pid_t pid, const char *path, uint64_t map_start,
		  struct mt_py_proc *out, char *note, size_t notelen)
{
	const struct py_layout *lay = NULL;
	struct elf_syms es;
	struct py_proc *p;
	uint64_t bias, rt, head = 0, ts = 0;
	unsigned major, minor;
	int ret = -ENOTSUP;

	note[0] = '\0';
	if (elf_scan(path, &es) || !es.has_runtime)
		return 0;
	pthread_mutex_lock(&lock);
	p = proc_add(pid);
	if (!p) {
		pthread_mutex_unlock(&lock);
		return -ENOMEM;
	}
	if (!es.has_version) {
		snprintf(note, notelen,
			 "pid %d: CPython before 3.11 (no Py_Version): Python frames not supported, native stacks only",
			 pid);
		goto out;
	}
	major = (es.version >> 24) & 0xff;
	minor = (es.version >> 16) & 0xff;
	for (size_t i = 0; i < NLAYOUTS; i++)
		if (layouts[i].major == major && layouts[i].minor == minor)
			lay = &layouts[i];
	if (!lay) {
		snprintf(note, notelen,
			 "pid %d: CPython %u.%u: no frame layout for this version (3.11 and 3.12 are supported): native stacks only",
			 pid, major, minor);
		goto out;
	}
	if (!es.has_load || !es.code_type || !es.eval) {
		snprintf(note, notelen,
			 "pid %d: CPython %u.%u without PyCode_Type or _PyEval_EvalFrameDefault symbols: native stacks only",
			 pid, major, minor);
		goto out;
	}
	bias = map_start - (es.first_vaddr & ~0xfffull);
	rt = es.runtime + bias;
	/* The layout check: the GIL holder belongs to the main interpreter.
	 * Nobody may hold the GIL this instant: look a few times. */
	head = rptr(pid, rt + lay->rt_interp_head);
	for (int i = 0; i < 50 && head && !ts; i++) {
		struct timespec d = { 0, 2000000 };

		ts = rptr(pid, rt + lay->rt_tstate_current);
		if (!ts)
			nanosleep(&d, NULL);
	}
	if (!head || (ts && rptr(pid, ts + lay->ts_interp) != head) ||
	    (lay->rt_main_gil_ptr &&
	     rptr(pid, rt + lay->rt_main_gil_ptr) != rt + lay->rt_main_gil)) {
		snprintf(note, notelen,
			 "pid %d: CPython %u.%u does not match memtop's layout for it (interpreter check failed): native stacks only",
			 pid, major, minor);
		goto out;
	}
	p->frames = true;
	p->lay = lay;
	p->eval_lo = es.eval + bias;
	p->eval_hi = es.eval + bias + (es.eval_size ? es.eval_size : 1);
	p->code_type = es.code_type + bias;
	memset(out, 0, sizeof(*out));
	out->tstate_ptr = rt + lay->rt_tstate_current;
	out->ts_thread_id = lay->ts_thread_id;
	out->ts_cframe = lay->ts_cframe;
	out->cf_frame = lay->cf_frame;
	out->fr_code = lay->fr_code;
	out->fr_previous = lay->fr_previous;
	out->fr_prev_instr = lay->fr_prev_instr;
	out->fr_flag = lay->fr_flag;
	snprintf(note, notelen, "pid %d: CPython %u.%u, Python frames on", pid,
		 major, minor);
	ret = 1;
out:
	pthread_mutex_unlock(&lock);
	return ret;
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
	uint64_t h = code * 0x9e3779b97f4a7c15ull ^ instr ^ ((uint64_t)pid << 32);

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
		size_t j = fhash(frames[i].pid, frames[i].code, frames[i].instr) &
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

		if (p->lay->flag_is_owner && flag == p->lay->owner_cstack) {
			/* A shim: the frame below it started an eval loop call. */
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
		entry[k] = p->lay->flag_is_owner ? false : flag != 0;
		npy_kept = ++k;
	}
	npy = npy_kept;
	memcpy(in, st->ips, nin * sizeof(in[0]));
	for (uint32_t i = 0; i < nin && n < MEMTOP_MAX_FRAMES; i++) {
		uint64_t ip = in[i] - 1; /* a return address: the call is before */

		if (g < npy && ip >= p->eval_lo && ip < p->eval_hi) {
			/* This eval loop call runs frames g.. up to an entry frame. */
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
	memcpy(&len, hdr + 16, 8);
	memcpy(&state, hdr + 32, 4);
	kind = (state >> 2) & 7;
	compact = (state >> 5) & 1;
	ascii = (state >> 6) & 1;
	if (!compact || len > 4096 || (kind != 1 && kind != 2 && kind != 4))
		return NULL;
	raw = malloc(len * kind + 1);
	out = malloc(len * 4 + 1);
	if (!raw || !out ||
	    rmem(pid, addr + (ascii ? lay->str_ascii_hdr : lay->str_compact_hdr),
		 raw, len * kind)) {
		free(raw);
		free(out);
		return NULL;
	}
	for (uint64_t i = 0; i < len; i++) {
		uint32_t c = kind == 1 ? raw[i]
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
	const struct py_layout *lay = p->lay;
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
	c->qualname = read_str(p->pid, lay, rptr(p->pid, addr + lay->co_qualname));
	file = read_str(p->pid, lay, rptr(p->pid, addr + lay->co_filename));
	if (file) {
		const char *b = strrchr(file, '/');

		c->file = strdup(b ? b + 1 : file);
		free(file);
	}
	if (!rmem(p->pid, addr + lay->co_firstlineno, &v, 4))
		c->firstlineno = v;
	if (!rmem(p->pid, addr + lay->co_firsttraceable, &v, 4))
		c->firsttraceable = v;
	lt = rptr(p->pid, addr + lay->co_linetable);
	if (lt && !rmem(p->pid, lt + 16, &ltlen, 8) && ltlen < (1u << 20)) {
		c->linetable = malloc(ltlen ? ltlen : 1);
		if (c->linetable && !rmem(p->pid, lt + 32, c->linetable, ltlen))
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
	int line = firstlineno, addr = 0;

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
		if (instr >= addr && instr < addr + n)
			return none ? -1 : line;
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
	if (idx >= nframes || !p || !p->lay || frames[idx].pid != pid) {
		pthread_mutex_unlock(&lock);
		out->func = "[python]";
		return 0;
	}
	f = &frames[idx];
	if (!f->resolved) {
		struct py_code *c = code_get(p, f->code);

		f->resolved = true;
		if (c && c->ok) {
			int64_t off = ((int64_t)f->instr -
				       (int64_t)(f->code + p->lay->co_code_adaptive)) / 2;

			f->func = strdup(c->qualname);
			f->file = c->file ? strdup(c->file) : NULL;
			if (off >= 0 && off < (1 << 24) && c->linetable)
				f->line = python_linetable_line(c->linetable,
								c->ltlen,
								c->firstlineno,
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
