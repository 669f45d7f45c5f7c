/*
 * Symbolization of user addresses: elfutils libdwfl for ELF executables and
 * shared libraries (PIE or not, separate debug files, C++ demangling), and
 * /tmp/perf-PID.map for JIT and interpreter frames. Results are cached per
 * (file, offset), so every process mapping the same file shares them, and
 * per pid+ip; files' ELF/DWARF handles are shared too, a bounded number at
 * a time.
 */
#ifndef MEMTOP_SYMBOLIZER_H
#define MEMTOP_SYMBOLIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct symbolizer;

struct sym_info {
	const char *func;   /* bare demangled name ("Widget::make"), or NULL */
	const char *file;   /* source file basename, or NULL */
	int line;	    /* 0 when unknown */
	const char *module; /* basename of the mapped file, or NULL */
	uint64_t offset;    /* ip's offset in the module's file */
	const char
		*path; /* the mapped file as /proc/PID/maps names it, or NULL */
	const char *build_id; /* its GNU build id in hex, or NULL */
	/* Named by the process's perf map (JIT code); jit_func: a program's
	 * function there (a JavaScript function, not a V8 builtin or stub,
	 * nor node's own code), which names a site as a Python frame does. */
	bool jit, jit_func;
	/* Bumped when the names of the process's JIT code change. */
	uint32_t jit_gen;
};

int symbolizer_new(struct symbolizer **out);
/*
 * Resolve ip, a return address, in process pid (the call site ip-1 is what
 * is looked up). Strings stay valid until symbolizer_forget(pid) or
 * symbolizer_free() (func and file until symbolizer_free()). Returns 0,
 * or -errno when pid cannot be inspected; an unknown ip is not an error
 * (func NULL).
 */
int symbolizer_resolve(struct symbolizer *sym, pid_t pid, uint64_t ip,
		       struct sym_info *out);
/* Drop pid's cache, e.g. after it exec'd or exited. */
void symbolizer_forget(struct symbolizer *sym, pid_t pid);

/*
 * The name a process's main executable goes by in frames ("[NAME+0x...]"):
 * what the user ran, when the file has another name. exe_base is the
 * file's basename, comm the kernel's name for the process, argv0 its
 * argv[0]. Returns out (at most len bytes with the NUL), or NULL: the
 * file's name stands (the same, or comm and argv[0] disagree).
 */
const char *symbolizer_exe_name(const char *exe_base, const char *comm,
				const char *argv0, char *out, size_t len);

struct symbolizer_stats {
	/* Lookups answered from a cache (the pid's or the per-file one). */
	uint64_t hits;
	/* Lookups that needed a Dwfl (a file's, or a process's vdso). */
	uint64_t misses;
	int dwfls; /* Dwfl objects live now (bounded) */
};

void symbolizer_stats(const struct symbolizer *sym,
		      struct symbolizer_stats *out);
void symbolizer_free(struct symbolizer *sym);

/*
 * Parse one /tmp/perf-PID.map line, "START SIZE name" (hex, optional 0x).
 * *name points into line, *namelen excludes the line end. Returns 0,
 * -EINVAL for a malformed line or -E2BIG for one over 4096 bytes.
 */
int symbolizer_parse_perf_map_line(const char *line, uint64_t *start,
				   uint64_t *size, const char **name,
				   size_t *namelen);

/*
 * What a perf map's name says. V8's (node --perf-basic-prof) read
 * "TAG:[marker]name file:line:col", the marker ~ ^ + * telling the tier:
 * JS, LazyCompile, Function, Script and Eval are the program's functions,
 * named (name NULL: anonymous) with the file's basename and line; other
 * tags (Builtin, BytecodeHandler, Stub, RegExp...) and node's own
 * JavaScript ("node:...") are runtime, named by the whole text. A name
 * without a tag is another JIT's function. Pointers are into raw, which
 * need not be NUL-terminated.
 */
struct jit_name {
	const char *name; /* the function's name, or NULL: anonymous */
	size_t name_len;
	const char *file; /* the source file's basename, or NULL */
	size_t file_len;  /* > 0 with file */
	int line;	  /* > 0 with file */
	bool func_frame;  /* a program's function: it names a site */
};

/* 0, or -EINVAL for an empty name. */
int symbolizer_parse_jit_name(const char *raw, size_t len,
			      struct jit_name *out);

#endif
