/*
 * Turns the user-space return addresses memtop collects into function,
 * source file and line, module and file offset. ELF executables and shared
 * libraries go through elfutils libdwfl; code that no ELF symbol covers
 * (JIT, interpreters) is looked up in the process's /tmp/perf-PID.map.
 *
 * What an address in a mapped file means depends only on the file and the
 * offset, not on the process, so the work is organised around files:
 *
 *  - per process (struct proc): the parsed /proc/PID/maps, a pid+ip cache
 *    (one hash probe for a hot call site), the perf map, and a Dwfl only
 *    for the [vdso], which exists in memory alone;
 *  - per mapped file (struct obj), identified by the maps line's dev and
 *    inode plus the file's size and mtime (so a rebuilt binary that reuses
 *    a freed inode number is a new file): one Dwfl with that one module,
 *    opened lazily in the context of whichever process first needs it
 *    (its root for containers, map_files for deleted files), holding the
 *    ELF and DWARF handles, the sorted symbol table and the CU index;
 *  - one global cache (obj, file offset) -> function, file, line.
 *
 * A lookup in a new process of an already-seen (file, offset) costs a maps
 * read for that process and a stat per file, never a Dwfl. Only misses
 * open a file's Dwfl; at most DWFL_MAX Dwfls (files' and vdsos') are live,
 * the least recently used is closed first, and a process's state goes with
 * symbolizer_forget. Names stay in the global cache after their file's
 * Dwfl is closed. The pid+ip cache is refreshed lazily when an address
 * falls outside the known mappings rather than by polling /proc.
 */
#define _GNU_SOURCE
#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "clock.h"
#include "gopclntab.h"
#include "procfs.h"
#include "strpool.h"
#include "symbolizer.h"

/* From libstdc++; declared here so this file stays plain C. */
char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status);

/* /proc/PID/maps of a huge process is a few MB; anything past this is junk. */
#define MAPS_MAX   (64u << 20)
#define STATUS_MAX (64u << 10)
/*
 * perf maps are written by the traced process, so everything about them is
 * bounded: a hostile or runaway writer costs us at most this much.
 */
#define PERF_FILE_MAX	 (256u << 20)
#define PERF_ENTRIES_MAX (4u << 20)
/*
 * Re-reading maps on a miss is cheap (unchanged maps are only hashed) but
 * not free: a token bucket lets a burst through right after a dlopen and
 * caps a flood of garbage addresses at one read per REFRESH_REFILL_NS.
 */
#define REFRESH_BURST	  16
#define REFRESH_REFILL_NS (10ull * 1000 * 1000)
#define PERF_RECHECK_NS	  (1000ull * 1000 * 1000)
/*
 * A JIT address not in the pid+ip cache re-reads a changed perf map first,
 * at most once per PERF_NEW_RECHECK_NS: the new addresses of one refresh
 * share a read, which postdates their allocations (and so the code that
 * made them), as long as refreshes are further apart than this.
 */
#define PERF_NEW_RECHECK_NS (10ull * 1000 * 1000)
#define PROC_BUCKETS	    64
#define OBJ_BUCKETS	    256
/* Longer perf-map lines are junk; real ones are a symbol and a source path. */
#define PERF_LINE_MAX 4096
/*
 * Live Dwfls (one per file being resolved, one per process whose vdso is):
 * each holds an ELF, maybe DWARF, and our indexes of them.
 */
#define DWFL_MAX 32
/* A process that could not open a file may retry only after this. */
#define OBJ_RETRY_NS (1000ull * 1000 * 1000)
/* Entries of the (file, offset) cache: 40 bytes each. */
#define GCACHE_MAX (1u << 20)
#define SLOTS_MIN  64

struct obj;

struct mapping {
	uint64_t start, end, pgoff, ino, dev;
	const char *path;   /* interned, as maps shows it; NULL if anonymous */
	const char *module; /* interned basename; NULL for anonymous memory */
	struct obj *obj;    /* the file, once an address in it was resolved */
};

struct mod_sym {
	uint64_t addr, size;
	const char
		*raw; /* points into the module's Elf; dies with the module */
	const char *clean; /* interned demangled name, computed on first use */
	int rank;
};

struct cu_range {
	uint64_t lo, hi; /* DWARF addresses, before the module's bias */
	Dwarf_Off die;
};

/* Our index of one Dwfl_Module; lives and dies with its Dwfl. */
struct mod_index {
	struct mod_sym *syms;
	size_t nsyms;
	bool syms_loaded;
	struct cu_range *cus;
	size_t ncus;
	bool cus_loaded;
	/* Go's own function table, read from the module's Elf (which it
	 * points into): names a stripped Go binary's functions. */
	struct gopclntab *go;
	bool go_loaded;
};

/* Intrusive LRU of everything that holds a live Dwfl. */
struct lru {
	struct lru *prev, *next;
	bool is_obj;
};

struct load_seg {
	uint64_t offset, filesz, vaddr;
};

/* One mapped file, shared by every process that maps it. */
struct obj {
	struct obj *next;
	uint64_t dev, ino;
	/* From stat when it could be had, else 0: part of the identity. */
	uint64_t size;
	int64_t mtime_sec, mtime_nsec;
	bool have_stat;
	uint32_t id;

	Dwfl *dwfl; /* NULL until a miss needs it, and after eviction */
	Dwfl_Module *mod;
	GElf_Addr bias;
	struct load_seg *segs;
	size_t nsegs;
	struct mod_index idx;
	struct lru lru;
	bool bad;	      /* not an ELF file: libdwfl would never help */
	const char *build_id; /* hex, interned; NULL until opened or if none */
	/* Could not be opened from retry_pid: not from it before retry_ns
	 * (another process, e.g. in another container, may succeed). */
	pid_t retry_pid;
	uint64_t retry_ns;
};

/* (file, offset) -> names: what makes a process's first lookup cheap. */
struct gslot {
	uint64_t off;
	uint32_t obj_id; /* 0: empty */
	int line;
	const char *func, *file;
};

struct perf_sym {
	uint64_t start, size;
	uint32_t name_off, name_len, seq;
	/* Parsed on first use: the function's name, and for a V8 function
	 * its source file and line; func_frame: a language frame that names
	 * a site (not a builtin, stub or node's own JavaScript). */
	bool parsed, func_frame;
	int line;
	const char *clean, *file;
};

struct slot {
	uint64_t ip;
	uint32_t gen;
	bool used;
	bool unmapped; /* outside every mapping: worth a re-read of maps */
	struct sym_info info;
};

struct proc {
	struct proc *next;
	pid_t pid;
	pid_t nspid; /* pid inside its own namespace: the perf map's name */
	uid_t ruid, euid;
	bool same_root;

	/* Only for the vdso; dropped when the maps change. */
	Dwfl *dwfl;
	struct mod_index vdso_idx;
	struct lru lru;

	struct mapping *maps;
	size_t nmaps;
	uint64_t maps_hash;
	bool have_maps;
	uint64_t refill_ns;
	unsigned refresh_tokens;
	/* Bumped whenever what we know changes, so negative results are
	 * retried. */
	uint32_t gen;

	struct slot *cache;
	size_t cache_cap, cache_n;
	/* Paths, module names and perf-map names: die with the process. */
	struct strpool strs;

	struct perf_sym *perf;
	size_t nperf, perf_cap;
	char *perf_names;
	size_t perf_names_len, perf_names_cap;
	uint32_t perf_seq; /* file order across reads: the newest wins */
	off_t perf_off;	   /* read up to here (the end of a whole line) */
	size_t perf_total; /* bytes read so far, for PERF_FILE_MAX */
	bool perf_checked, perf_loaded;
	uint64_t perf_check_ns;
	struct stat perf_st;
};

struct symbolizer {
	struct proc *buckets[PROC_BUCKETS];
	struct obj *objs[OBJ_BUCKETS];
	uint32_t next_obj_id;

	struct gslot *gcache;
	size_t gcache_cap, gcache_n;
	/* Function and source file names from ELF/DWARF: live until free. */
	struct strpool strs;

	struct lru lru; /* head: most recently used first */
	int ndwfls;
	uint64_t hits, misses;
};

static uint64_t fnv1a(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ull;

	while (len--) {
		h ^= *p++;
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint64_t hash_u64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static const char *path_basename(const char *path, size_t *len)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	size_t n = strlen(base);
	static const char deleted[] = " (deleted)";

	/* The module is still the same library after a package upgrade. */
	if (n > sizeof(deleted) - 1 &&
	    !strcmp(base + n - (sizeof(deleted) - 1), deleted))
		n -= sizeof(deleted) - 1;
	*len = n;
	return base;
}

/* Strip " [clone .cold]", cv/ref qualifiers, then the parameter list. */
static void strip_cxx_signature(char *s)
{
	static const char *const quals[] = {" const", " volatile", " &&", " &"};
	size_t len = strlen(s), i;
	bool again = true;

	while (again && len) {
		again = false;
		while (len && s[len - 1] == ' ')
			s[--len] = '\0';
		if (len && s[len - 1] == ']') {
			char *clone = NULL, *p = s;

			while ((p = strstr(p, " [clone ")))
				clone = p++;
			if (clone) {
				*clone = '\0';
				len = clone - s;
				again = true;
				continue;
			}
		}
		for (i = 0; i < sizeof(quals) / sizeof(quals[0]); i++) {
			size_t ql = strlen(quals[i]);

			if (len > ql && !strcmp(s + len - ql, quals[i])) {
				len -= ql;
				s[len] = '\0';
				again = true;
				break;
			}
		}
	}
	if (len && s[len - 1] == ')') {
		int depth = 0;

		for (i = len; i-- > 0;) {
			if (s[i] == ')') {
				depth++;
			} else if (s[i] == '(' && --depth == 0) {
				/* "(anonymous namespace)" alone is not a
				 * signature. */
				if (i > 0)
					s[i] = '\0';
				break;
			}
		}
	}
}

/* GCC's local clones ("foo.isra.0", "foo.cold") are still foo to a user. */
static void strip_c_clone_suffix(char *s)
{
	static const char *const suffixes[] = {
		"isra",	    "constprop",  "part", "cold",
		"lto_priv", "localalias", "llvm."};
	char *p = s;
	size_t i;

	while ((p = strchr(p + 1, '.'))) {
		for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
			if (!strncmp(p + 1, suffixes[i], strlen(suffixes[i]))) {
				*p = '\0';
				return;
			}
		}
	}
}

/*
 * An ELF symbol's name (elf: its version cut, GCC's clones folded into
 * their function) or a JIT's, demangled and interned.
 */
static const char *clean_name(struct strpool *pool, const char *raw, size_t len,
			      bool elf)
{
	char *tmp, *dem = NULL, *at;
	const char *out;
	int status = -1;

	tmp = strndup(raw, len);
	if (!tmp)
		return NULL;
	/* glibc's symbol tables name many functions "name@@GLIBC_2.2.5" or
	 * "name@GLIBC_2.2.5": the version is no part of the name (and a
	 * mangled name with it does not demangle). */
	at = elf ? strchr(tmp, '@') : NULL;
	if (at && at > tmp) {
		*at = '\0';
		len = (size_t)(at - tmp);
	}
	if (len > 2 && tmp[0] == '_' && tmp[1] == 'Z')
		dem = __cxa_demangle(tmp, NULL, NULL, &status);
	if (dem && status == 0) {
		strip_cxx_signature(dem);
		out = strpool_intern(pool, dem, strlen(dem));
	} else {
		if (elf)
			strip_c_clone_suffix(tmp);
		out = strpool_intern(pool, tmp, strlen(tmp));
	}
	free(dem);
	free(tmp);
	return out;
}

static int read_all(const char *path, size_t max, char **out, size_t *outlen)
{
	size_t cap = 16384, len = 0;
	char *buf = malloc(cap + 1), *nbuf;
	ssize_t n;
	int fd, err;

	if (!buf)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		free(buf);
		return err;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= max)
				break;
			cap *= 2;
			nbuf = realloc(buf, cap + 1);
			if (!nbuf) {
				err = -ENOMEM;
				goto fail;
			}
			buf = nbuf;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			goto fail;
		}
		if (n == 0)
			break;
		len += n;
	}
	close(fd);
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
fail:
	close(fd);
	free(buf);
	return err;
}

/* The file the kernel actually mapped; needs CAP_SYS_ADMIN. */
static int open_map_file(const struct proc *p, const struct mapping *m,
			 char **file_name)
{
	char buf[128];
	int fd;

	if (!m)
		return -1;
	snprintf(buf, sizeof(buf), "/proc/%d/map_files/%llx-%llx", (int)p->pid,
		 (unsigned long long)m->start, (unsigned long long)m->end);
	fd = open(buf, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd >= 0 && !(*file_name = strdup(buf))) {
		close(fd);
		return -1;
	}
	return fd;
}

static int open_plain(const char *name, char **file_name)
{
	int fd = open(name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd >= 0 && !(*file_name = strdup(name))) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * /proc/PID/maps names a file relative to the process's root when it is
 * not reachable from ours (containers), relative to ours when it is (plain
 * chroot), and relative to the namespace root for a chroot inside a mount
 * namespace. So: the process's root first, then the mapping itself, then
 * our root if the inode proves it is the same file.
 */
static int open_mapped(const struct proc *p, const struct mapping *m,
		       char **file_name)
{
	const char *name = m->path;
	struct stat st;
	int fd;

	*file_name = NULL;
	if (strstr(name, " (deleted)")) {
		/* Replaced on disk: only the mapping still has the old file. */
		fd = open_map_file(p, m, file_name);
	} else if (p->same_root) {
		fd = open_plain(name, file_name);
	} else {
		fd = procfs_open_in_root(p->pid, name,
					 O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
		/* A chroot's maps show our paths, which inside its root may
		 * name another file: only the mapping's inode is it. */
		if (fd >= 0 && (fstat(fd, &st) || st.st_ino != m->ino)) {
			close(fd);
			fd = -1;
		}
		if (fd >= 0 && asprintf(file_name, "/proc/%d/root%s",
					(int)p->pid, name) < 0) {
			close(fd);
			*file_name = NULL;
			return -1;
		}
		if (fd < 0)
			fd = open_map_file(p, m, file_name);
		if (fd < 0) {
			fd = open_plain(name, file_name);
			if (fd >= 0 &&
			    (fstat(fd, &st) || st.st_ino != m->ino)) {
				close(fd);
				free(*file_name);
				*file_name = NULL;
				fd = -1;
			}
		}
	}
	if (fd < 0)
		return -1;
	/* Device mappings would hang or have side effects on read. */
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		free(*file_name);
		*file_name = NULL;
		return -1;
	}
	return fd;
}

/*
 * Size and mtime of the file behind m, as p sees it, to tell a file from a
 * later one that got the same inode number. false when only the maps
 * line's dev and inode are known (no access): then those alone identify it.
 */
static bool mapping_stat(const struct proc *p, const struct mapping *m,
			 struct stat *st)
{
	char buf[128];
	bool ok = false;
	int fd;

	if (!strstr(m->path, " (deleted)")) {
		if (p->same_root) {
			ok = !stat(m->path, st);
		} else {
			fd = procfs_open_in_root(p->pid, m->path, O_PATH, 0);
			ok = fd >= 0 && !fstat(fd, st);
			if (fd >= 0)
				close(fd);
		}
		if (ok && st->st_ino == m->ino && S_ISREG(st->st_mode))
			return true;
	}
	snprintf(buf, sizeof(buf), "/proc/%d/map_files/%llx-%llx", (int)p->pid,
		 (unsigned long long)m->start, (unsigned long long)m->end);
	return !stat(buf, st) && st->st_ino == m->ino && S_ISREG(st->st_mode);
}

static char *debuginfo_path = ":.debug:/usr/lib/debug";

/* A file's Dwfl is handed its fd: nothing is ever looked up by name. */
static int no_find_elf(Dwfl_Module *mod, void **userdata, const char *name,
		       Dwarf_Addr base, char **file_name, Elf **elfp)
{
	(void)mod;
	(void)userdata;
	(void)name;
	(void)base;
	(void)file_name;
	(void)elfp;
	return -1;
}

static const Dwfl_Callbacks file_callbacks = {
	.find_elf = no_find_elf,
	.find_debuginfo = dwfl_standard_find_debuginfo,
	.debuginfo_path = &debuginfo_path,
};

/* "[vdso: PID]" modules are read from the process's memory. */
static const Dwfl_Callbacks vdso_callbacks = {
	.find_elf = dwfl_linux_proc_find_elf,
	.find_debuginfo = dwfl_standard_find_debuginfo,
	.debuginfo_path = &debuginfo_path,
};

static void mod_index_free(struct mod_index *mi)
{
	free(mi->syms);
	free(mi->cus);
	gopclntab_free(mi->go);
	memset(mi, 0, sizeof(*mi));
}

static void lru_unlink(struct lru *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
}

static void lru_touch(struct symbolizer *sym, struct lru *n)
{
	if (n->prev)
		lru_unlink(n);
	n->next = sym->lru.next;
	n->prev = &sym->lru;
	sym->lru.next->prev = n;
	sym->lru.next = n;
}

static void obj_close(struct symbolizer *sym, struct obj *o)
{
	if (!o->dwfl)
		return;
	lru_unlink(&o->lru);
	sym->ndwfls--;
	/* Also closes the fd dwfl_report_elf consumed. */
	dwfl_end(o->dwfl);
	o->dwfl = NULL;
	o->mod = NULL;
	mod_index_free(&o->idx);
	free(o->segs);
	o->segs = NULL;
	o->nsegs = 0;
}

static void proc_close_dwfl(struct symbolizer *sym, struct proc *p)
{
	if (!p->dwfl)
		return;
	lru_unlink(&p->lru);
	sym->ndwfls--;
	dwfl_end(p->dwfl);
	p->dwfl = NULL;
	mod_index_free(&p->vdso_idx);
}

/* Close least recently used Dwfls until there is room for one more. */
static void dwfl_make_room(struct symbolizer *sym)
{
	while (sym->ndwfls >= DWFL_MAX && sym->lru.prev != &sym->lru) {
		struct lru *n = sym->lru.prev;

		if (n->is_obj)
			obj_close(sym,
				  (struct obj *)((char *)n -
						 offsetof(struct obj, lru)));
		else
			proc_close_dwfl(
				sym,
				(struct proc *)((char *)n -
						offsetof(struct proc, lru)));
	}
}

static uint64_t obj_hash(uint64_t dev, uint64_t ino, uint64_t size, int64_t sec,
			 int64_t nsec)
{
	return hash_u64(hash_u64(dev ^ hash_u64(ino)) ^ size ^
			hash_u64((uint64_t)sec ^ ((uint64_t)nsec << 32)));
}

static struct obj *obj_get(struct symbolizer *sym, const struct mapping *m,
			   const struct stat *st)
{
	uint64_t size = st ? (uint64_t)st->st_size : 0;
	int64_t sec = st ? st->st_mtim.tv_sec : 0;
	int64_t nsec = st ? st->st_mtim.tv_nsec : 0;
	struct obj **head, *o;

	head = &sym->objs[obj_hash(m->dev, m->ino, size, sec, nsec) %
			  OBJ_BUCKETS];
	for (o = *head; o; o = o->next)
		if (o->dev == m->dev && o->ino == m->ino && o->size == size &&
		    o->mtime_sec == sec && o->mtime_nsec == nsec &&
		    o->have_stat == !!st)
			return o;
	o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	o->dev = m->dev;
	o->ino = m->ino;
	o->size = size;
	o->mtime_sec = sec;
	o->mtime_nsec = nsec;
	o->have_stat = !!st;
	o->id = ++sym->next_obj_id;
	o->lru.is_obj = true;
	o->next = *head;
	*head = o;
	return o;
}

/* The file behind m, found once per process and file. */
static struct obj *mapping_obj(struct symbolizer *sym, struct proc *p,
			       struct mapping *m)
{
	struct obj *o = NULL;
	struct stat st;
	size_t i;

	if (m->obj)
		return m->obj;
	for (i = 0; i < p->nmaps && !o; i++)
		if (p->maps[i].obj && p->maps[i].dev == m->dev &&
		    p->maps[i].ino == m->ino)
			o = p->maps[i].obj;
	if (!o)
		o = obj_get(sym, m, mapping_stat(p, m, &st) ? &st : NULL);
	if (!o)
		return NULL;
	for (i = 0; i < p->nmaps; i++)
		if (p->maps[i].path && p->maps[i].dev == m->dev &&
		    p->maps[i].ino == m->ino)
			p->maps[i].obj = o;
	return o;
}

/*
 * Give o a Dwfl holding just its file, opened as p sees it. The module is
 * placed at its link-time addresses (bias 0), so a file offset maps to an
 * address through the program headers alone, whatever the process.
 */
static bool obj_open(struct symbolizer *sym, struct obj *o,
		     const struct proc *p, const struct mapping *m)
{
	struct load_seg *segs;
	char *file_name = NULL;
	size_t nphdr, i, n = 0;
	Dwfl_Module *mod;
	struct stat st;
	Dwfl *dwfl;
	Elf *elf;
	int fd;

	if (o->dwfl) {
		lru_touch(sym, &o->lru);
		return true;
	}
	if (o->bad || (o->retry_pid == p->pid && mono_ns() < o->retry_ns))
		return false;
	fd = open_mapped(p, m, &file_name);
	/* Not the file we identified (replaced meanwhile): try later. */
	if (fd >= 0 &&
	    (fstat(fd, &st) || st.st_ino != m->ino ||
	     (o->have_stat && ((uint64_t)st.st_size != o->size ||
			       st.st_mtim.tv_sec != o->mtime_sec ||
			       st.st_mtim.tv_nsec != o->mtime_nsec)))) {
		close(fd);
		fd = -1;
	}
	if (fd < 0)
		goto retry;
	dwfl_make_room(sym);
	dwfl = dwfl_begin(&file_callbacks);
	if (!dwfl) {
		close(fd);
		goto retry;
	}
	dwfl_report_begin(dwfl);
	mod = dwfl_report_elf(dwfl, m->module ? m->module : "?", file_name, fd,
			      0, true);
	dwfl_report_end(dwfl, NULL, NULL);
	free(file_name);
	file_name = NULL;
	if (!mod) {
		close(fd);
		dwfl_end(dwfl);
		o->bad = true;
		return false;
	}
	elf = dwfl_module_getelf(mod, &o->bias);
	segs = NULL;
	if (elf && !elf_getphdrnum(elf, &nphdr) && nphdr &&
	    (segs = calloc(nphdr, sizeof(*segs)))) {
		for (i = 0; i < nphdr; i++) {
			GElf_Phdr ph;

			if (gelf_getphdr(elf, (int)i, &ph) &&
			    ph.p_type == PT_LOAD && ph.p_filesz)
				segs[n++] = (struct load_seg){
					ph.p_offset, ph.p_filesz, ph.p_vaddr};
		}
	}
	if (!n) {
		free(segs);
		dwfl_end(dwfl);
		o->bad = !!elf;
		if (!elf)
			goto retry;
		return false;
	}
	if (!o->build_id) {
		const unsigned char *bits;
		GElf_Addr vaddr;
		int nbits = dwfl_module_build_id(mod, &bits, &vaddr);

		/* pprof readers match profiles to binaries by it. */
		if (nbits > 0 && nbits <= 64) {
			char hex[129];

			for (i = 0; i < (size_t)nbits; i++)
				snprintf(hex + 2 * i, 3, "%02x", bits[i]);
			o->build_id =
				strpool_intern(&sym->strs, hex, 2 * nbits);
		}
	}
	o->dwfl = dwfl;
	o->mod = mod;
	o->segs = segs;
	o->nsegs = n;
	o->retry_pid = 0;
	sym->ndwfls++;
	lru_touch(sym, &o->lru);
	return true;
retry:
	free(file_name);
	o->retry_pid = p->pid;
	o->retry_ns = mono_ns() + OBJ_RETRY_NS;
	return false;
}

static const struct mapping *old_mapping_at(const struct mapping *maps,
					    size_t n, uint64_t start)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (maps[mid].start < start)
			lo = mid + 1;
		else if (maps[mid].start > start)
			hi = mid;
		else
			return &maps[mid];
	}
	return NULL;
}

const char *symbolizer_exe_name(const char *exe_base, const char *comm,
				const char *argv0, char *out, size_t len)
{
	const char *slash = strrchr(argv0, '/');
	const char *base = slash ? slash + 1 : argv0;
	size_t n = strcspn(base, " "), clen = strlen(comm);

	/* comm is the name execve was given (cut to 15 bytes); argv[0] as
	 * the program left it (redis's title "redis-server *:6379" is one
	 * string). They agree unless the program renamed itself: then the
	 * file's own name is the one to trust. */
	if (!n || !clen || n < clen || strncmp(base, comm, clen) ||
	    (n > clen && clen < 15) || n >= len)
		return NULL;
	if (strlen(exe_base) == n && !strncmp(exe_base, base, n))
		return NULL;
	memcpy(out, base, n);
	out[n] = '\0';
	return out;
}

/*
 * What the user ran, when the executable's file has another name (Debian's
 * redis-server is a symlink to redis-check-rdb; python3 to python3.11):
 * the name its frames should carry, in out, and the executable's path as
 * /proc/PID/maps names it, in exe. NULL when the file's name is the one.
 */
static const char *exe_alias(const struct proc *p, char *exe, size_t exelen,
			     char *out, size_t len)
{
	char path[64], comm[32] = "", *argv0 = NULL;
	const char *base, *name = NULL;
	size_t blen, alen;
	ssize_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)p->pid);
	n = readlink(path, exe, exelen - 1);
	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)p->pid);
	f = fopen(path, "re");
	if (!f)
		return NULL;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	comm[strcspn(comm, "\n")] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)p->pid);
	if (read_all(path, 4096, &argv0, &alen))
		return NULL;
	base = path_basename(exe, &blen);
	if (blen < PATH_MAX) {
		char b[PATH_MAX];

		memcpy(b, base, blen);
		b[blen] = '\0';
		name = symbolizer_exe_name(b, comm, argv0, out, len);
	}
	free(argv0);
	return name;
}

static int parse_maps(struct proc *p, char *buf)
{
	struct mapping *maps = NULL;
	const struct mapping *old;
	size_t n = 0, cap = 0;
	struct maps_entry *e;
	char *line, *nl, alias[64], *exe;
	const char *alias_name;

	e = malloc(sizeof(*e));
	exe = malloc(PATH_MAX);
	if (!e || !exe) {
		free(e);
		free(exe);
		return -ENOMEM;
	}
	alias_name = exe_alias(p, exe, PATH_MAX, alias, sizeof(alias));
	for (line = buf; *line; line = nl ? nl + 1 : line + strlen(line)) {
		const char *base;
		size_t len;

		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (procfs_parse_maps_line(line, e))
			continue;
		if (ARRAY_RESERVE(maps, cap, n + 1)) {
			free(maps);
			free(e);
			free(exe);
			return -ENOMEM;
		}
		memset(&maps[n], 0, sizeof(maps[n]));
		maps[n].start = e->start;
		maps[n].end = e->end;
		maps[n].pgoff = e->offset;
		maps[n].ino = e->inode;
		maps[n].dev = makedev(e->dev_major, e->dev_minor);
		if (alias_name && !strcmp(e->path, exe))
			maps[n].module = strpool_intern(&p->strs, alias_name,
							strlen(alias_name));
		else if (e->path[0] == '/' || !strcmp(e->path, "[vdso]")) {
			base = path_basename(e->path, &len);
			maps[n].module = strpool_intern(&p->strs, base, len);
		}
		if (e->path[0] == '/')
			maps[n].path = strpool_intern(&p->strs, e->path,
						      strlen(e->path));
		/* Still the same file: keep what we found out about it. */
		old = old_mapping_at(p->maps, p->nmaps, e->start);
		if (old && old->obj && old->end == e->end &&
		    old->dev == maps[n].dev && old->ino == e->inode &&
		    old->path == maps[n].path)
			maps[n].obj = old->obj;
		n++;
	}
	free(e);
	free(exe);
	free(p->maps);
	p->maps = maps;
	p->nmaps = n;
	return 0;
}

/* Re-read /proc/PID/maps; only re-parse it when it changed. */
static int proc_refresh(struct symbolizer *sym, struct proc *p)
{
	char path[64], *buf;
	size_t len;
	uint64_t h;
	int err;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)p->pid);
	err = read_all(path, MAPS_MAX, &buf, &len);
	if (err)
		return err == -ENOENT ? -ESRCH : err;
	h = fnv1a(buf, len);
	if (p->have_maps && h == p->maps_hash) {
		free(buf);
		return 0;
	}
	err = parse_maps(p, buf);
	free(buf);
	if (err)
		return err;
	p->maps_hash = h;
	p->have_maps = true;
	p->gen++;
	/* An exec may have moved the vdso. */
	proc_close_dwfl(sym, p);
	return 0;
}

static int read_status(struct proc *p)
{
	char path[64], *buf, *line;
	size_t len;
	int err;

	p->nspid = p->pid;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
	err = read_all(path, STATUS_MAX, &buf, &len);
	if (err)
		return err == -ENOENT ? -ESRCH : err;
	line = strstr(buf, "\nUid:");
	if (line) {
		unsigned r, e;

		if (sscanf(line + 5, "%u %u", &r, &e) == 2) {
			p->ruid = r;
			p->euid = e;
		}
	}
	line = strstr(buf, "\nNSpid:");
	if (line) {
		char *end = strchr(line + 1, '\n'), *tok, *save;
		long v;

		if (end)
			*end = '\0';
		/* The last column is the pid in the innermost namespace. */
		for (tok = strtok_r(line + 7, " \t", &save); tok;
		     tok = strtok_r(NULL, " \t", &save)) {
			v = strtol(tok, NULL, 10);
			if (v > 0)
				p->nspid = (pid_t)v;
		}
	}
	free(buf);
	return 0;
}

static void proc_free(struct symbolizer *sym, struct proc *p)
{
	proc_close_dwfl(sym, p);
	free(p->maps);
	free(p->cache);
	free(p->perf);
	free(p->perf_names);
	strpool_free(&p->strs);
	free(p);
}

static int proc_new(struct symbolizer *sym, pid_t pid, struct proc **out)
{
	struct stat a, b;
	char path[64];
	struct proc *p;
	int err;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->pid = pid;
	p->refresh_tokens = REFRESH_BURST;
	err = read_status(p);
	if (err)
		goto fail;
	snprintf(path, sizeof(path), "/proc/%d/root", (int)pid);
	/* Same root: plain paths keep debuglink lookups simple. */
	p->same_root = !stat(path, &a) && !stat("/", &b) &&
		       a.st_dev == b.st_dev && a.st_ino == b.st_ino;
	err = proc_refresh(sym, p);
	if (err)
		goto fail;
	*out = p;
	return 0;
fail:
	proc_free(sym, p);
	return err;
}

static struct mapping *find_mapping(const struct proc *p, uint64_t addr)
{
	size_t lo = 0, hi = p->nmaps;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (addr < p->maps[mid].start)
			hi = mid;
		else if (addr >= p->maps[mid].end)
			lo = mid + 1;
		else
			return &p->maps[mid];
	}
	return NULL;
}

static int sym_rank(const GElf_Sym *sym, const char *name)
{
	int rank = 0;

	if (GELF_ST_BIND(sym->st_info) == STB_GLOBAL)
		rank = 4;
	else if (GELF_ST_BIND(sym->st_info) == STB_WEAK)
		rank = 2;
	/* Among aliases, "malloc" reads better than "__libc_malloc". */
	if (name[0] != '_' || name[1] == 'Z')
		rank++;
	return rank;
}

static int mod_sym_cmp(const void *a, const void *b)
{
	const struct mod_sym *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	if (x->rank != y->rank)
		return y->rank - x->rank;
	if (strlen(x->raw) != strlen(y->raw))
		return strlen(x->raw) < strlen(y->raw) ? -1 : 1;
	return strcmp(x->raw, y->raw);
}

/*
 * dwfl_module_addrinfo scans the whole symbol table per call; a sorted
 * copy of the function symbols makes each lookup a binary search.
 */
static void load_mod_syms(Dwfl_Module *mod, struct mod_index *mi)
{
	struct mod_sym *syms;
	size_t n = 0, i, out;
	int count, ndx;

	mi->syms_loaded = true;
	count = dwfl_module_getsymtab(mod);
	if (count <= 1)
		return;
	syms = calloc(count, sizeof(*syms));
	if (!syms)
		return;
	for (ndx = 1; ndx < count; ndx++) {
		GElf_Sym sym;
		GElf_Addr addr;
		GElf_Word shndx;
		const char *name;
		int type;

		name = dwfl_module_getsym_info(mod, ndx, &sym, &addr, &shndx,
					       NULL, NULL);
		if (!name || !name[0])
			continue;
		type = GELF_ST_TYPE(sym.st_info);
		if ((type != STT_FUNC && type != STT_GNU_IFUNC) ||
		    shndx == SHN_UNDEF || addr == 0)
			continue;
		syms[n].addr = addr;
		syms[n].size = sym.st_size;
		syms[n].raw = name;
		syms[n].rank = sym_rank(&sym, name);
		n++;
	}
	if (n)
		qsort(syms, n, sizeof(*syms), mod_sym_cmp);
	/* Keep the best-ranked alias per address, with the largest size. */
	for (i = 0, out = 0; i < n; i++) {
		if (out && syms[out - 1].addr == syms[i].addr) {
			if (syms[i].size > syms[out - 1].size)
				syms[out - 1].size = syms[i].size;
			continue;
		}
		syms[out++] = syms[i];
	}
	mi->syms = syms;
	mi->nsyms = out;
}

static struct mod_sym *find_mod_sym(struct mod_index *mi, uint64_t addr)
{
	size_t lo = 0, hi = mi->nsyms;
	struct mod_sym *s;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (mi->syms[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return NULL;
	s = &mi->syms[lo - 1];
	/* Sizeless (assembly) symbols extend to the next symbol. */
	if (s->size && addr - s->addr >= s->size)
		return NULL;
	return s;
}

static int cu_range_cmp(const void *a, const void *b)
{
	const struct cu_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/*
 * libdw before 0.191 finds a CU only through .debug_aranges, which clang
 * does not emit by default; index the CUs' own ranges instead.
 */
static void load_cu_ranges(Dwarf *dw, struct mod_index *mi)
{
	struct cu_range *cus = NULL;
	size_t n = 0, cap = 0;
	Dwarf_CU *cu = NULL;
	Dwarf_Die cudie;
	uint8_t unit_type;
	Dwarf_Half version;

	mi->cus_loaded = true;
	while (!dwarf_get_units(dw, cu, &cu, &version, &unit_type, &cudie,
				NULL)) {
		Dwarf_Addr base, lo, hi;
		ptrdiff_t off = 0;

		if (unit_type != DW_UT_compile && unit_type != DW_UT_partial)
			continue;
		while ((off = dwarf_ranges(&cudie, off, &base, &lo, &hi)) > 0) {
			if (lo >= hi)
				continue;
			if (ARRAY_RESERVE(cus, cap, n + 1))
				goto out;
			cus[n++] = (struct cu_range){lo, hi,
						     dwarf_dieoffset(&cudie)};
		}
	}
out:
	if (n)
		qsort(cus, n, sizeof(*cus), cu_range_cmp);
	mi->cus = cus;
	mi->ncus = n;
}

static Dwarf_Line *getsrc_by_cu(Dwfl_Module *mod, struct mod_index *mi,
				uint64_t addr)
{
	size_t lo = 0, hi;
	Dwarf_Addr bias;
	Dwarf_Die cudie;
	Dwarf *dw;

	dw = dwfl_module_getdwarf(mod, &bias);
	if (!dw)
		return NULL;
	if (!mi->cus_loaded)
		load_cu_ranges(dw, mi);
	addr -= bias;
	hi = mi->ncus;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (mi->cus[mid].lo <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo || addr >= mi->cus[lo - 1].hi ||
	    !dwarf_offdie(dw, mi->cus[lo - 1].die, &cudie))
		return NULL;
	return dwarf_getsrc_die(&cudie, addr);
}

/*
 * Name addr from Go's table where the ELF symbols and DWARF did not: a
 * stripped Go binary keeps it (the runtime needs it for its own stack
 * traces). Names are Go's own ("pkg/path.(*T).method"), not demangled.
 */
static void resolve_go(struct symbolizer *sym, Dwfl_Module *mod,
		       struct mod_index *mi, uint64_t addr,
		       struct sym_info *info)
{
	struct gopclntab_loc loc;
	GElf_Addr bias = 0;
	const char *base;
	size_t len;

	if (!mi->go_loaded) {
		mi->go_loaded = true;
		gopclntab_open_elf(dwfl_module_getelf(mod, &bias), &mi->go);
	}
	if (!mi->go || !dwfl_module_getelf(mod, &bias) ||
	    gopclntab_lookup(mi->go, addr - bias, &loc))
		return;
	if (!info->func)
		info->func = strpool_intern(&sym->strs, loc.func, loc.func_len);
	if (!info->file && loc.file) {
		base = memrchr(loc.file, '/', loc.file_len);
		base = base ? base + 1 : loc.file;
		len = loc.file_len - (size_t)(base - loc.file);
		if (len) {
			info->file = strpool_intern(&sym->strs, base, len);
			info->line = loc.line;
		}
	}
}

/* Function and source line of addr (a module address) in mod. */
static void resolve_module(struct symbolizer *sym, Dwfl_Module *mod,
			   struct mod_index *mi, uint64_t addr,
			   struct sym_info *info)
{
	struct mod_sym *s;
	Dwfl_Line *line;
	Dwarf_Line *dline;
	const char *src, *base;
	size_t len;
	int lineno = 0;

	if (!mi->syms_loaded)
		load_mod_syms(mod, mi);
	s = find_mod_sym(mi, addr);
	if (s) {
		if (!s->clean)
			s->clean = clean_name(&sym->strs, s->raw,
					      strlen(s->raw), true);
		info->func = s->clean;
	}
	line = dwfl_module_getsrc(mod, addr);
	if (line) {
		src = dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL);
	} else {
		dline = getsrc_by_cu(mod, mi, addr);
		src = dline ? dwarf_linesrc(dline, NULL, NULL) : NULL;
		if (src && dwarf_lineno(dline, &lineno))
			lineno = 0;
	}
	if (src) {
		base = path_basename(src, &len);
		info->file = strpool_intern(&sym->strs, base, len);
		info->line = lineno;
	}
	if (!info->func || !info->file)
		resolve_go(sym, mod, mi, addr, info);
}

static uint64_t gcache_hash(uint32_t id, uint64_t off)
{
	return hash_u64(off ^ ((uint64_t)id << 47) ^ ((uint64_t)id << 11));
}

/* The entry for (id, off), or the empty slot where it would go. */
static struct gslot *gcache_slot(struct symbolizer *sym, uint32_t id,
				 uint64_t off)
{
	size_t i, mask = sym->gcache_cap - 1;

	if (!sym->gcache_cap)
		return NULL;
	for (i = gcache_hash(id, off) & mask; sym->gcache[i].obj_id;
	     i = (i + 1) & mask)
		if (sym->gcache[i].obj_id == id && sym->gcache[i].off == off)
			break;
	return &sym->gcache[i];
}

static void gcache_insert(struct symbolizer *sym, uint32_t id, uint64_t off,
			  const struct sym_info *info)
{
	struct gslot *s;
	size_t i;

	if ((sym->gcache_n + 1) * 4 >= sym->gcache_cap * 3) {
		size_t cap = sym->gcache_cap ? sym->gcache_cap * 2 : 4096;
		struct gslot *old = sym->gcache, *ns;
		size_t old_cap = sym->gcache_cap;

		/* Full: the pid+ip caches still remember it. */
		if (cap > GCACHE_MAX || !(ns = calloc(cap, sizeof(*ns))))
			return;
		sym->gcache = ns;
		sym->gcache_cap = cap;
		for (i = 0; i < old_cap; i++)
			if (old[i].obj_id)
				*gcache_slot(sym, old[i].obj_id, old[i].off) =
					old[i];
		free(old);
	}
	s = gcache_slot(sym, id, off);
	if (!s->obj_id)
		sym->gcache_n++;
	*s = (struct gslot){.off = off,
			    .obj_id = id,
			    .line = info->line,
			    .func = info->func,
			    .file = info->file};
}

/* off is addr's offset in m's file. */
/* What a frame returning into a signal trampoline is called: the handler
 * was entered by the kernel, and the frame above it is the interrupted
 * code (gdb says "<signal handler called>"). */
#define SIGNAL_FRAME "[signal frame]"

/*
 * Whether the code at file offset off of o is x86-64 Linux's signal
 * trampoline, mov $15 (rt_sigreturn), %rax; syscall: glibc's __restore_rt,
 * a local symbol that a stripped libc does not name (libunwind and gdb
 * know it by these bytes too).
 */
static bool sigreturn_at(const struct obj *o, uint64_t off)
{
	static const unsigned char code[] = {0x48, 0xc7, 0xc0, 0x0f, 0x00,
					     0x00, 0x00, 0x0f, 0x05};
	GElf_Addr bias;
	Elf *elf = o->mod ? dwfl_module_getelf(o->mod, &bias) : NULL;
	Elf_Data *d;

	if (!elf || off > INT64_MAX)
		return false;
	d = elf_getdata_rawchunk(elf, (int64_t)off, sizeof(code), ELF_T_BYTE);
	return d && d->d_size == sizeof(code) &&
	       !memcmp(d->d_buf, code, sizeof(code));
}

static void resolve_file(struct symbolizer *sym, struct proc *p,
			 struct mapping *m, uint64_t off, struct sym_info *info)
{
	struct obj *o = mapping_obj(sym, p, m);
	struct gslot *g;
	size_t i;

	if (!o || o->bad)
		return;
	g = gcache_slot(sym, o->id, off);
	if (g && g->obj_id) {
		sym->hits++;
		info->build_id = o->build_id;
		info->func = g->func;
		info->file = g->file;
		info->line = g->line;
		return;
	}
	sym->misses++;
	if (!obj_open(sym, o, p, m))
		return;
	for (i = 0; i < o->nsegs; i++) {
		const struct load_seg *s = &o->segs[i];

		if (off - s->offset < s->filesz) {
			resolve_module(sym, o->mod, &o->idx,
				       off - s->offset + s->vaddr + o->bias,
				       info);
			break;
		}
	}
	/* off is the byte before the return address: the trampoline starts
	 * at the return address itself. */
	if (!info->func && sigreturn_at(o, off + 1))
		info->func = strpool_intern(&sym->strs, SIGNAL_FRAME,
					    sizeof(SIGNAL_FRAME) - 1);
	info->build_id = o->build_id;
	gcache_insert(sym, o->id, off, info);
}

/* The vdso has no file: a per-process Dwfl reads it from memory. */
static void resolve_vdso(struct symbolizer *sym, struct proc *p,
			 const struct mapping *m, uint64_t addr,
			 struct sym_info *info)
{
	Dwfl_Module *mod;
	char name[64];

	sym->misses++;
	if (!p->dwfl) {
		dwfl_make_room(sym);
		p->dwfl = dwfl_begin(&vdso_callbacks);
		if (!p->dwfl)
			return;
		snprintf(name, sizeof(name), "[vdso: %d]", (int)p->pid);
		dwfl_report_begin(p->dwfl);
		dwfl_report_module(p->dwfl, name, m->start, m->end);
		dwfl_report_end(p->dwfl, NULL, NULL);
		sym->ndwfls++;
	}
	lru_touch(sym, &p->lru);
	mod = dwfl_addrmodule(p->dwfl, addr);
	if (mod)
		resolve_module(sym, mod, &p->vdso_idx, addr, info);
}

static int parse_hex(const char **pp, uint64_t *out)
{
	const char *p = *pp;
	uint64_t v = 0;
	int digits = 0;

	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
		p += 2;
	for (;; p++) {
		unsigned d;

		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F')
			d = *p - 'A' + 10;
		else
			break;
		if (v >> 60)
			return -EINVAL;
		v = v << 4 | d;
		digits++;
	}
	if (!digits)
		return -EINVAL;
	*pp = p;
	*out = v;
	return 0;
}

int symbolizer_parse_perf_map_line(const char *line, uint64_t *start,
				   uint64_t *size, const char **name,
				   size_t *namelen)
{
	const char *p = line, *end;
	size_t len = strnlen(line, PERF_LINE_MAX + 1);

	if (len > PERF_LINE_MAX)
		return -E2BIG;
	end = line + len;
	while (end > p && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	if (parse_hex(&p, start) || (*p != ' ' && *p != '\t'))
		return -EINVAL;
	while (*p == ' ' || *p == '\t')
		p++;
	if (parse_hex(&p, size) || (*p != ' ' && *p != '\t'))
		return -EINVAL;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (p == end || *size == 0 || *start + *size < *start)
		return -EINVAL;
	/* Names end up on a terminal: no escape sequences, no NULs. */
	for (*name = p; p < end; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return -EINVAL;
	*namelen = end - *name;
	return 0;
}

static int perf_sym_cmp(const void *a, const void *b)
{
	const struct perf_sym *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void perf_add_line(struct proc *p, const char *line)
{
	uint64_t start, size;
	const char *name;
	size_t namelen;

	if (symbolizer_parse_perf_map_line(line, &start, &size, &name,
					   &namelen))
		return;
	if (p->nperf >= PERF_ENTRIES_MAX ||
	    p->perf_names_len + namelen > PERF_FILE_MAX)
		return;
	if (ARRAY_RESERVE(p->perf, p->perf_cap, p->nperf + 1) ||
	    ARRAY_RESERVE(p->perf_names, p->perf_names_cap,
			  p->perf_names_len + namelen))
		return;
	memcpy(p->perf_names + p->perf_names_len, name, namelen);
	p->perf[p->nperf] = (struct perf_sym){
		.start = start,
		.size = size,
		.name_off = (uint32_t)p->perf_names_len,
		.name_len = (uint32_t)namelen,
		.seq = p->perf_seq++,
	};
	p->perf_names_len += namelen;
	p->nperf++;
}

static void perf_drop(struct proc *p)
{
	free(p->perf);
	free(p->perf_names);
	p->perf = NULL;
	p->perf_names = NULL;
	p->nperf = p->perf_cap = 0;
	p->perf_names_len = p->perf_names_cap = 0;
	p->perf_off = 0;
	p->perf_total = 0;
}

/*
 * (Re)load /tmp/perf-NSPID.map. The traced process wrote it, so it is only
 * trusted if nobody else could have: a regular file, not a symlink, owned
 * by the process's user or root, and not group/world writable.
 */
static void perf_reload(struct proc *p)
{
	char path[64], buf[16384], line[PERF_LINE_MAX + 1];
	size_t linelen = 0, i, out, old_n;
	bool skipping = false, grown;
	struct stat st;
	off_t pos, line_start;
	ssize_t n;
	int fd;

	p->perf_checked = true;
	p->perf_check_ns = mono_ns();
	snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)p->nspid);
	fd = procfs_open_in_root(p->pid, path,
				 O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY,
				 RESOLVE_NO_SYMLINKS);
	if (fd < 0)
		return;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
	    (st.st_uid != 0 && st.st_uid != p->ruid && st.st_uid != p->euid) ||
	    (st.st_mode & (S_IWGRP | S_IWOTH))) {
		close(fd);
		return;
	}
	if (p->perf_loaded && st.st_ino == p->perf_st.st_ino &&
	    st.st_dev == p->perf_st.st_dev &&
	    st.st_size == p->perf_st.st_size &&
	    st.st_mtim.tv_sec == p->perf_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == p->perf_st.st_mtim.tv_nsec) {
		close(fd);
		return;
	}
	/* JITs append: the same file grown is read from where the last read
	 * stopped (the end of its last whole line); anything else afresh. */
	grown = p->perf_loaded && st.st_ino == p->perf_st.st_ino &&
		st.st_dev == p->perf_st.st_dev &&
		st.st_size >= p->perf_st.st_size && p->perf_off <= st.st_size;
	if (!grown)
		perf_drop(p);
	old_n = p->nperf;
	pos = line_start = p->perf_off;
	while (p->perf_total < PERF_FILE_MAX) {
		n = pread(fd, buf, sizeof(buf), pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		p->perf_total += (size_t)n;
		for (i = 0; i < (size_t)n; i++) {
			if (buf[i] == '\0') {
				/* Would silently truncate the name: junk. */
				skipping = true;
			} else if (buf[i] == '\n') {
				line[linelen] = '\0';
				if (!skipping)
					perf_add_line(p, line);
				skipping = false;
				linelen = 0;
				line_start = pos + (off_t)i + 1;
			} else if (linelen < PERF_LINE_MAX) {
				line[linelen++] = buf[i];
			} else {
				skipping = true;
			}
		}
		pos += n;
	}
	close(fd);
	/* A last line without its newline counts now, and is read again
	 * (whole, if it was still being written) next time. */
	if (linelen && !skipping) {
		line[linelen] = '\0';
		perf_add_line(p, line);
	}
	p->perf_off = line_start;
	if (p->nperf > old_n) {
		qsort(p->perf, p->nperf, sizeof(*p->perf), perf_sym_cmp);
		/* A JIT reuses the space of code it freed: an entry that
		 * overlaps a newer one names code that is gone, though it may
		 * start elsewhere (a hole of several dead objects). Swept in
		 * start order, the entries kept stay disjoint: an older one
		 * overlapping the next goes, a newer one keeps the next out. */
		for (i = 0, out = 0; i < p->nperf; i++) {
			const struct perf_sym *c = &p->perf[i];
			bool keep = true;

			while (out &&
			       p->perf[out - 1].start + p->perf[out - 1].size >
				       c->start) {
				if (p->perf[out - 1].seq > c->seq) {
					keep = false;
					break;
				}
				out--;
			}
			if (keep)
				p->perf[out++] = *c;
		}
		p->nperf = out;
	}
	p->perf_st = st;
	p->perf_loaded = true;
	p->gen++;
}

static struct perf_sym *perf_find(struct proc *p, uint64_t addr)
{
	size_t lo = 0, hi = p->nperf;
	struct perf_sym *s;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (p->perf[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return NULL;
	s = &p->perf[lo - 1];
	return addr - s->start < s->size ? s : NULL;
}

int symbolizer_parse_jit_name(const char *raw, size_t len, struct jit_name *out)
{
	static const char *const fn_tags[] = {"JS", "LazyCompile", "Function",
					      "Script", "Eval"};
	const char *end = raw + len, *q = raw, *name, *path, *c1, *c2, *base;
	const char *nend;
	size_t taglen;
	bool fn_tag = false;
	long line = 0;

	*out = (struct jit_name){.name = raw, .name_len = len};
	if (!raw || !len)
		return -EINVAL;
	while (q < end &&
	       ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z')))
		q++;
	if (q == raw || q >= end || *q != ':' || (q + 1 < end && q[1] == ':')) {
		out->func_frame = true;
		return 0;
	}
	taglen = (size_t)(q - raw);
	for (size_t i = 0; i < sizeof(fn_tags) / sizeof(fn_tags[0]); i++)
		fn_tag |= strlen(fn_tags[i]) == taglen &&
			  !memcmp(fn_tags[i], raw, taglen);
	name = q + 1;
	if (name < end && *name && strchr("~^+*", *name))
		name++;
	/* The source is the last word: "file:line:col". */
	path = end;
	while (path > name && path[-1] != ' ')
		path--;
	c2 = memrchr(path, ':', (size_t)(end - path));
	c1 = c2 ? memrchr(path, ':', (size_t)(c2 - path)) : NULL;
	if (!fn_tag || path == name || !c1 || c1 == path)
		return 0;
	/* The line: digits only, and an int (the input is not a C string). */
	for (q = c1 + 1; q < c2 && *q >= '0' && *q <= '9' && line <= INT_MAX;
	     q++)
		line = line * 10 + (*q - '0');
	base = memrchr(path, '/', (size_t)(c1 - path));
	base = base ? base + 1 : path;
	if (q != c2 || line <= 0 || line > INT_MAX || base == c1)
		return 0;
	out->file = base;
	out->file_len = (size_t)(c1 - base);
	out->line = (int)line;
	out->func_frame = !(end - path > 5 && !memcmp(path, "node:", 5));
	nend = path - 1; /* the space before the path */
	while (nend > name && nend[-1] == ' ')
		nend--;
	out->name = nend > name ? name : NULL;
	out->name_len = nend > name ? (size_t)(nend - name) : 0;
	return 0;
}

static void perf_parse(struct proc *p, struct perf_sym *s)
{
	struct jit_name jn;

	s->parsed = true;
	if (symbolizer_parse_jit_name(p->perf_names + s->name_off, s->name_len,
				      &jn))
		return;
	s->func_frame = jn.func_frame;
	s->clean = jn.name ? clean_name(&p->strs, jn.name, jn.name_len, false)
			   : strpool_intern(&p->strs, "(anonymous)", 11);
	if (jn.file) {
		s->file = strpool_intern(&p->strs, jn.file, jn.file_len);
		s->line = jn.line;
	}
}

static void resolve_perf(struct proc *p, uint64_t addr, struct sym_info *info)
{
	struct perf_sym *s = NULL;

	/* JITs append as they compile, and reuse the addresses of code they
	 * freed: an entry read before may name what used to be there, and a
	 * miss may just be a newer entry. */
	if (!p->perf_checked ||
	    mono_ns() - p->perf_check_ns >= PERF_NEW_RECHECK_NS)
		perf_reload(p);
	s = perf_find(p, addr);
	if (!s)
		return;
	if (!s->parsed)
		perf_parse(p, s);
	info->func = s->clean;
	info->jit = true;
	info->jit_gen = p->gen;
	info->jit_func = s->func_frame;
	if (s->file) {
		info->file = s->file;
		info->line = s->line;
	}
}

static bool may_refresh(struct proc *p)
{
	uint64_t now = mono_ns();

	if (p->refresh_tokens < REFRESH_BURST) {
		uint64_t add = (now - p->refill_ns) / REFRESH_REFILL_NS;

		if (add) {
			p->refresh_tokens =
				add >= REFRESH_BURST - p->refresh_tokens
					? REFRESH_BURST
					: p->refresh_tokens + add;
			p->refill_ns = now;
		}
	}
	return p->refresh_tokens > 0;
}

/* Returns whether addr fell outside every mapping we know of. */
static bool resolve_uncached(struct symbolizer *sym, struct proc *p,
			     uint64_t ip, struct sym_info *info)
{
	/* The call instruction, not the one after it (which may be a new line).
	 */
	uint64_t addr = ip ? ip - 1 : 0;
	struct mapping *m = find_mapping(p, addr);

	/* Outside everything we know: maybe a new dlopen or JIT region. */
	if (!m && may_refresh(p)) {
		if (p->refresh_tokens-- == REFRESH_BURST)
			p->refill_ns = mono_ns();
		if (!proc_refresh(sym, p))
			m = find_mapping(p, addr);
	}
	memset(info, 0, sizeof(*info));
	if (m && m->module) {
		info->module = m->module;
		info->offset = ip - m->start + m->pgoff;
		info->path = m->path;
	}
	if (m && m->path)
		resolve_file(sym, p, m, addr - m->start + m->pgoff, info);
	else if (m && m->module)
		resolve_vdso(sym, p, m, addr, info);
	if (!info->func)
		resolve_perf(p, addr, info);
	return !m;
}

static struct slot *cache_slot(struct proc *p, uint64_t ip)
{
	size_t i;

	if (!p->cache_cap)
		return NULL;
	for (i = hash_u64(ip) & (p->cache_cap - 1); p->cache[i].used;
	     i = (i + 1) & (p->cache_cap - 1))
		if (p->cache[i].ip == ip)
			return &p->cache[i];
	return &p->cache[i];
}

static struct slot *cache_insert(struct proc *p, uint64_t ip)
{
	struct slot *s;
	size_t i;

	if ((p->cache_n + 1) * 4 >= p->cache_cap * 3) {
		size_t cap = p->cache_cap ? p->cache_cap * 2 : SLOTS_MIN;
		struct slot *old = p->cache, *ns;
		size_t old_cap = p->cache_cap;

		ns = calloc(cap, sizeof(*ns));
		if (!ns)
			return NULL;
		p->cache = ns;
		p->cache_cap = cap;
		for (i = 0; i < old_cap; i++)
			if (old[i].used)
				*cache_slot(p, old[i].ip) = old[i];
		free(old);
	}
	s = cache_slot(p, ip);
	if (!s->used) {
		s->used = true;
		s->ip = ip;
		p->cache_n++;
	}
	return s;
}

static struct proc **proc_link(struct symbolizer *sym, pid_t pid)
{
	struct proc **pp =
		&sym->buckets[hash_u64((uint64_t)pid) % PROC_BUCKETS];

	while (*pp && (*pp)->pid != pid)
		pp = &(*pp)->next;
	return pp;
}

int symbolizer_new(struct symbolizer **out)
{
	struct symbolizer *sym = calloc(1, sizeof(*sym));

	if (!sym)
		return -ENOMEM;
	sym->lru.prev = sym->lru.next = &sym->lru;
	*out = sym;
	return 0;
}

int symbolizer_resolve(struct symbolizer *sym, pid_t pid, uint64_t ip,
		       struct sym_info *out)
{
	struct proc **pp, *p;
	struct slot *s;
	struct sym_info info;
	bool unmapped;
	int err;

	if (!sym || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (pid <= 0)
		return -ESRCH;
	pp = proc_link(sym, pid);
	p = *pp;
	if (!p) {
		err = proc_new(sym, pid, &p);
		if (err)
			return err;
		*pp = p;
	}
	s = cache_slot(p, ip);
	/* A JIT's name may be stale: the perf map changed (a reused
	 * address), looked at again at most once per PERF_RECHECK_NS. */
	if (s && s->used && s->info.jit &&
	    mono_ns() - p->perf_check_ns >= PERF_RECHECK_NS)
		perf_reload(p);
	if (s && s->used &&
	    ((s->info.func && !(s->info.jit && s->gen != p->gen)) ||
	     (s->gen == p->gen && !(s->unmapped && may_refresh(p))))) {
		sym->hits++;
		*out = s->info;
		return 0;
	}
	unmapped = resolve_uncached(sym, p, ip, &info);
	s = cache_insert(p, ip);
	if (s) {
		s->info = info;
		s->gen = p->gen;
		s->unmapped = unmapped;
	}
	*out = info;
	return 0;
}

void symbolizer_forget(struct symbolizer *sym, pid_t pid)
{
	struct proc **pp, *p;

	if (!sym)
		return;
	pp = proc_link(sym, pid);
	p = *pp;
	if (!p)
		return;
	*pp = p->next;
	proc_free(sym, p);
}

void symbolizer_stats(const struct symbolizer *sym,
		      struct symbolizer_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!sym)
		return;
	out->hits = sym->hits;
	out->misses = sym->misses;
	out->dwfls = sym->ndwfls;
}

void symbolizer_free(struct symbolizer *sym)
{
	struct proc *p, *pnext;
	struct obj *o, *onext;
	size_t i;

	if (!sym)
		return;
	for (i = 0; i < PROC_BUCKETS; i++) {
		for (p = sym->buckets[i]; p; p = pnext) {
			pnext = p->next;
			proc_free(sym, p);
		}
	}
	for (i = 0; i < OBJ_BUCKETS; i++) {
		for (o = sym->objs[i]; o; o = onext) {
			onext = o->next;
			obj_close(sym, o);
			free(o);
		}
	}
	free(sym->gcache);
	strpool_free(&sym->strs);
	free(sym);
}
