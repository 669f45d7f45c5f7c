/*
 * Unit test for user/symbol/symbolizer.c: symbolizes addresses in this very
 * process (our own PIE code with DWARF, libc, unmapped and anonymous
 * memory, a perf map with mangled C++ names), checks error returns, the
 * perf-map line parser against good and hostile input, that 50k
 * distinct addresses resolve quickly, that processes mapping the same file
 * share its results (forked children: cache hits, no new Dwfl), that a
 * file rewritten in place is not mistaken for its old self, the vdso, and
 * that no file descriptor outlives the symbolizer. Needs no root.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "symbolizer.h"

static int failures;

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (cond) {                                                    \
			printf("ok   ");                                       \
		} else {                                                       \
			printf("FAIL ");                                       \
			failures++;                                            \
		}                                                              \
		printf(__VA_ARGS__);                                           \
		printf("\n");                                                  \
	} while (0)

static const char *str(const char *s)
{
	return s ? s : "(null)";
}

static int streq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

uint64_t callee_for_test(void);
uint64_t caller_for_test(void);

static volatile uint64_t sink;
static int call_line;

__attribute__((noinline)) uint64_t callee_for_test(void)
{
	uint64_t ra = (uint64_t)(uintptr_t)__builtin_return_address(0);

	__asm__ volatile("" ::: "memory");
	return ra;
}

/* The call must stay on call_line's line and must not become a tail call. */
__attribute__((noinline)) uint64_t caller_for_test(void)
{
	uint64_t ra = (call_line = __LINE__, callee_for_test());

	sink = ra;
	return ra + sink - ra;
}

static void test_own_function(struct symbolizer *sym)
{
	uint64_t ip = caller_for_test();
	struct sym_info a, b;
	char exe[4096];
	const char *base;
	Dl_info dli;
	ssize_t n;
	int err;

	err = symbolizer_resolve(sym, getpid(), ip, &a);
	printf("own: ip=%#" PRIx64 " -> %s %s:%d %s+%#" PRIx64 "\n", ip,
	       str(a.func), str(a.file), a.line, str(a.module), a.offset);
	CHECK(err == 0, "resolve own ip returns 0 (got %d)", err);
	CHECK(streq(a.func, "caller_for_test"), "func is caller_for_test");
	CHECK(streq(a.file, "test_symbolizer.c"), "file is test_symbolizer.c");
	CHECK(a.line == call_line, "line is %d (got %d)", call_line, a.line);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = '\0';
	base = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
	CHECK(streq(a.module, base), "module is %s", base);
	/* Our text segment's file offset equals its vaddr in any normal link.
	 */
	if (dladdr((void *)(uintptr_t)ip, &dli) && dli.dli_fbase)
		CHECK(a.offset == ip - (uint64_t)(uintptr_t)dli.dli_fbase,
		      "offset is ip - load base (%#" PRIx64 ")",
		      ip - (uint64_t)(uintptr_t)dli.dli_fbase);

	err = symbolizer_resolve(sym, getpid(), ip, &b);
	CHECK(err == 0 && a.func == b.func && a.file == b.file,
	      "second lookup hits the cache (same string pointers)");
}

static void test_libc(struct symbolizer *sym)
{
	uint64_t ip = (uint64_t)(uintptr_t)&malloc + 1;
	const char *expect = "libc.so.6";
	char real[4096];
	struct sym_info info;
	Dl_info dli;
	int err;

	/*
	 * Under ASan malloc lives in libasan: expect whatever dladdr says,
	 * resolved like the kernel does for /proc/PID/maps.
	 */
	if (dladdr((void *)(uintptr_t)&malloc, &dli) && dli.dli_fname &&
	    realpath(dli.dli_fname, real) && strrchr(real, '/'))
		expect = strrchr(real, '/') + 1;
	err = symbolizer_resolve(sym, getpid(), ip, &info);
	printf("libc: ip=%#" PRIx64 " -> %s %s:%d %s+%#" PRIx64 "\n", ip,
	       str(info.func), str(info.file), info.line, str(info.module),
	       info.offset);
	CHECK(err == 0, "resolve malloc+1 returns 0");
	CHECK(streq(info.module, expect), "module is %s", expect);
	CHECK(streq(info.func, "malloc") || streq(info.func, "__libc_malloc") ||
		      streq(info.func, "__interceptor_malloc") ||
		      streq(info.func, "___interceptor_malloc"),
	      "func is malloc or an alias");
}

/* A library loaded after the maps were cached must still resolve. */
static void test_dlopen(struct symbolizer *sym)
{
	struct sym_info info;
	void *h, *fn;
	int err;

	h = dlopen("libresolv.so.2", RTLD_NOW | RTLD_LOCAL);
	fn = h ? dlsym(h, "__b64_ntop") : NULL;
	if (!fn) {
		printf("skip dlopen test: %s\n", dlerror());
		return;
	}
	err = symbolizer_resolve(sym, getpid(), (uint64_t)(uintptr_t)fn + 1,
				 &info);
	printf("dlopen: -> %s %s+%#" PRIx64 "\n", str(info.func),
	       str(info.module), info.offset);
	CHECK(err == 0 && streq(info.module, "libresolv.so.2") && info.func &&
		      strstr(info.func, "b64_ntop"),
	      "newly dlopen'd library resolves without forget");
	dlclose(h);
}

static void on_usr2(int sig)
{
	(void)sig;
}

/* A return address into the signal trampoline (a handler's): named as a
 * signal frame, from its code, in a stripped libc too. */
static void test_signal_frame(struct symbolizer *sym)
{
	struct sigaction sa, old;
	struct sym_info info;
	int err;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr2;
	if (sigaction(SIGUSR2, &sa, NULL) || sigaction(SIGUSR2, NULL, &old) ||
	    !old.sa_restorer) {
		printf("skip signal frame test: no sa_restorer\n");
		return;
	}
	err = symbolizer_resolve(sym, getpid(),
				 (uint64_t)(uintptr_t)old.sa_restorer, &info);
	printf("signal trampoline: -> %s %s+%#" PRIx64 "\n", str(info.func),
	       str(info.module), info.offset);
	CHECK(err == 0 && info.func &&
		      (streq(info.func, "[signal frame]") ||
		       streq(info.func, "__restore_rt")),
	      "a return into the signal trampoline is a signal frame");
	/* The byte after it is no trampoline. */
	err = symbolizer_resolve(
		sym, getpid(), (uint64_t)(uintptr_t)old.sa_restorer + 1, &info);
	CHECK(err == 0 && !streq(info.func, "[signal frame]"),
	      "an address past the trampoline is not a signal frame");
	signal(SIGUSR2, SIG_DFL);
}

static void test_unknown(struct symbolizer *sym)
{
	struct sym_info info;
	void *anon;
	int status, err;
	pid_t child;

	err = symbolizer_resolve(sym, getpid(), 0x10, &info);
	CHECK(err == 0 && !info.func && !info.module,
	      "unmapped 0x10: 0, func NULL, module NULL (err %d)", err);
	err = symbolizer_resolve(sym, getpid(), 0, &info);
	CHECK(err == 0 && !info.func, "ip 0: 0, func NULL");

	anon = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon != MAP_FAILED) {
		err = symbolizer_resolve(sym, getpid(),
					 (uint64_t)(uintptr_t)anon + 16, &info);
		CHECK(err == 0 && !info.func && !info.module,
		      "anonymous memory: func NULL, module NULL");
		munmap(anon, 4096);
	}

	/* A reaped child's pid is gone (reuse within the test is unlikely). */
	child = fork();
	if (child == 0)
		_exit(0);
	waitpid(child, &status, 0);
	err = symbolizer_resolve(sym, child, 0x1000, &info);
	CHECK(err == -ESRCH, "dead pid %d returns -ESRCH (got %d)", (int)child,
	      err);
	err = symbolizer_resolve(sym, -5, 0x1000, &info);
	CHECK(err == -ESRCH, "negative pid returns -ESRCH");
}

static void test_parse_line(void)
{
	static const char *const bad[] = {
		"",
		"\n",
		"zz 10 foo",
		"10 zz foo",
		"10 20",
		"10 20 \n",
		"1000 0 zero_size",
		"ffffffffffffffff 10 wraps",
		"10000000000000000 10 seventeen_digits",
		"10 20 esc\x1b[31mape",
		"10 20 del\x7f",
		"0x 20 no_digits",
		"10\x01 20 junk",
		" 10 20 leading_space",
	};
	uint64_t start = 0, size = 0;
	const char *name = NULL;
	size_t namelen = 0, i;
	char *big;
	int err;

	err = symbolizer_parse_perf_map_line(
		"7f0000001000 40 _ZN6Widget4makeEi\n", &start, &size, &name,
		&namelen);
	CHECK(err == 0 && start == 0x7f0000001000ull && size == 0x40 &&
		      namelen == 17 && !strncmp(name, "_ZN6Widget4makeEi", 17),
	      "good line parses");
	err = symbolizer_parse_perf_map_line(
		"0x7F00 0x20 LazyCompile:*foo /app/x.js:12 \r\n", &start, &size,
		&name, &namelen);
	CHECK(err == 0 && start == 0x7f00 && size == 0x20 &&
		      namelen == strlen("LazyCompile:*foo /app/x.js:12") &&
		      !strncmp(name, "LazyCompile:*foo /app/x.js:12", namelen),
	      "0x prefixes, spaces in name, CRLF");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = symbolizer_parse_perf_map_line(bad[i], &start, &size,
						     &name, &namelen);
		CHECK(err == -EINVAL, "rejects malformed line #%zu", i);
	}
	big = malloc(100000);
	if (big) {
		memset(big, 'a', 99999);
		memcpy(big, "1000 10 ", 8);
		big[99999] = '\0';
		err = symbolizer_parse_perf_map_line(big, &start, &size, &name,
						     &namelen);
		CHECK(err == -E2BIG, "rejects a 100 kB line (got %d)", err);
		free(big);
	}
}

/* V8's names as the parser reads them, without a perf map. */
static void test_jit_name(void)
{
	static const struct {
		const char *raw, *name, *file;
		int line;
		bool func;
	} cases[] = {
		{"JS:~keepBuffers /srv/app/app.js:3:21", "keepBuffers",
		 "app.js", 3, true},
		{"LazyCompile:*main app.js:10:1", "main", "app.js", 10, true},
		{"JS:* /srv/anon.js:7:1", NULL, "anon.js", 7, true},
		{"JS:^alloc node:buffer:389:9", "alloc", "node:buffer", 389,
		 false},
		{"Builtin:ArrayPrototypePush", "Builtin:ArrayPrototypePush",
		 NULL, 0, false},
		{"std::vector<int>::size", "std::vector<int>::size", NULL, 0,
		 true},
		/* Not a source: a line that is not a number, or 0, or too
		 * big; a path that ends in a directory. */
		{"JS:~f /a/b.js:x:1", "JS:~f /a/b.js:x:1", NULL, 0, false},
		{"JS:~f b.js:0:1", "JS:~f b.js:0:1", NULL, 0, false},
		{"JS:~f b.js:99999999999:1", "JS:~f b.js:99999999999:1", NULL,
		 0, false},
		{"JS:~f /srv/:3:1", "JS:~f /srv/:3:1", NULL, 0, false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct jit_name jn;
		const char *raw = cases[i].raw;
		bool name_ok, file_ok;

		CHECK(symbolizer_parse_jit_name(raw, strlen(raw), &jn) == 0,
		      "parse %s", raw);
		name_ok = cases[i].name
				  ? jn.name &&
					    jn.name_len ==
						    strlen(cases[i].name) &&
					    !memcmp(jn.name, cases[i].name,
						    jn.name_len)
				  : !jn.name;
		file_ok = cases[i].file
				  ? jn.file &&
					    jn.file_len ==
						    strlen(cases[i].file) &&
					    !memcmp(jn.file, cases[i].file,
						    jn.file_len) &&
					    jn.line == cases[i].line
				  : !jn.file && !jn.line;
		CHECK(name_ok && file_ok && jn.func_frame == cases[i].func,
		      "%s: name %.*s file %.*s:%d function %d", raw,
		      jn.name ? (int)jn.name_len : 6,
		      jn.name ? jn.name : "(anon)", (int)jn.file_len,
		      jn.file ? jn.file : "", jn.line, jn.func_frame);
	}
	CHECK(symbolizer_parse_jit_name("", 0, &(struct jit_name){0}) ==
		      -EINVAL,
	      "an empty name refused");
}

static void test_perf_map(struct symbolizer *sym)
{
	char path[64];
	struct sym_info info;
	uint64_t base;
	size_t i;
	char *jit;
	FILE *f;
	int fd, err;

	jit = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (jit == MAP_FAILED) {
		CHECK(0, "mmap for perf map test");
		return;
	}
	base = (uint64_t)(uintptr_t)jit;
	snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)getpid());
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644);
	if (fd < 0 || fchmod(fd, 0644) || !(f = fdopen(fd, "w"))) {
		CHECK(0, "create %s", path);
		munmap(jit, 3 * 4096);
		return;
	}
	/* Real entries interleaved with what a hostile writer could add. */
	fprintf(f, "%" PRIx64 " 100 _ZN6Widget4makeEi\n", base);
	fprintf(f, "garbage line\n\x01\x02\x03\xff\xfe\n");
	for (i = 0; i < 20000; i++)
		fputc('x', f);
	fprintf(f, "\n%" PRIx64 " 100 _ZNKSt6vectorIiSaIiEE4sizeEv\n",
		base + 0x1000);
	fprintf(f, "%" PRIx64 " 100 _ZN3FooclEi\n", base + 0x2000);
	fprintf(f, "%" PRIx64 " 10 interpreted::frame", base + 0x2800);
	fclose(f);

	/* The maps we cached predate the mmap: forget to see them. */
	symbolizer_forget(sym, getpid());
	err = symbolizer_resolve(sym, getpid(), base + 0x11, &info);
	CHECK(err == 0 && streq(info.func, "Widget::make"),
	      "perf map + demangle: %s", str(info.func));
	err = symbolizer_resolve(sym, getpid(), base + 0x1001, &info);
	CHECK(err == 0 && streq(info.func,
				"std::vector<int, std::allocator<int> >::size"),
	      "const method: %s", str(info.func));
	err = symbolizer_resolve(sym, getpid(), base + 0x2001, &info);
	CHECK(err == 0 && streq(info.func, "Foo::operator()"), "operator(): %s",
	      str(info.func));
	err = symbolizer_resolve(sym, getpid(), base + 0x2801, &info);
	CHECK(err == 0 && streq(info.func, "interpreted::frame"),
	      "unterminated last line, not mangled: %s", str(info.func));
	err = symbolizer_resolve(sym, getpid(), base + 0x101, &info);
	CHECK(err == 0 && !info.func, "past an entry's size: func NULL");

	/* node --perf-basic-prof: V8's names, and an address reused. */
	f = fopen(path, "a");
	CHECK(f != NULL, "append to %s", path);
	if (!f)
		goto out;
	fprintf(f, "\n%" PRIx64 " 40 JS:~keepBuffers /srv/app/app.js:3:21\n",
		base + 0x2900);
	fprintf(f, "%" PRIx64 " 40 Builtin:ArrayPrototypePush\n",
		base + 0x2940);
	fprintf(f, "%" PRIx64 " 40 JS:^alloc node:buffer:389:9\n",
		base + 0x2980);
	fprintf(f, "%" PRIx64 " 40 JS:* /srv/app/anon.js:7:1\n", base + 0x29c0);
	fclose(f);
	/* A miss reads the map again (at most once a second). */
	sleep(1);
	err = symbolizer_resolve(sym, getpid(), base + 0x2901, &info);
	CHECK(err == 0 && streq(info.func, "keepBuffers") &&
		      streq(info.file, "app.js") && info.line == 3 &&
		      info.jit && info.jit_func,
	      "V8 function: %s %s:%d jit_func %d", str(info.func),
	      str(info.file), info.line, info.jit_func);
	err = symbolizer_resolve(sym, getpid(), base + 0x2941, &info);
	CHECK(err == 0 && streq(info.func, "Builtin:ArrayPrototypePush") &&
		      info.jit && !info.jit_func,
	      "V8 builtin: runtime, not a function frame (%s)", str(info.func));
	err = symbolizer_resolve(sym, getpid(), base + 0x2981, &info);
	CHECK(err == 0 && streq(info.func, "alloc") && !info.jit_func,
	      "node's own JavaScript: runtime (%s)", str(info.func));
	err = symbolizer_resolve(sym, getpid(), base + 0x29c1, &info);
	CHECK(err == 0 && streq(info.func, "(anonymous)") && info.jit_func &&
		      info.line == 7,
	      "anonymous V8 function: %s", str(info.func));
	/* V8 reuses keepBuffers' address for another function: the newest
	 * entry wins, though the old name was cached. */
	f = fopen(path, "a");
	CHECK(f != NULL, "append to %s", path);
	if (!f)
		goto out;
	fprintf(f, "%" PRIx64 " 40 JS:*keepObjects /srv/app/app.js:9:5\n",
		base + 0x2900);
	fclose(f);
	sleep(1);
	err = symbolizer_resolve(sym, getpid(), base + 0x2901, &info);
	CHECK(err == 0 && streq(info.func, "keepObjects") && info.line == 9,
	      "reused address: the newest entry names it (%s)", str(info.func));
	err = symbolizer_resolve(sym, getpid(), base + 0x1001, &info);
	CHECK(err == 0 && streq(info.func,
				"std::vector<int, std::allocator<int> >::size"),
	      "entries read before the append kept: %s", str(info.func));
	/* New code in a hole of several dead objects: it starts before one
	 * older entry and overlaps two; both name code that is gone. */
	f = fopen(path, "a");
	CHECK(f != NULL, "append to %s", path);
	if (!f)
		goto out;
	fprintf(f, "%" PRIx64 " 60 JS:*overlapper /srv/app/app.js:11:1\n",
		base + 0x28f8);
	fclose(f);
	sleep(1);
	err = symbolizer_resolve(sym, getpid(), base + 0x2901, &info);
	CHECK(err == 0 && streq(info.func, "overlapper") && info.line == 11,
	      "an older entry starting inside a newer one: the newer names it "
	      "(%s)",
	      str(info.func));
	err = symbolizer_resolve(sym, getpid(), base + 0x2945, &info);
	CHECK(err == 0 && streq(info.func, "overlapper"),
	      "an older entry overlapping a newer one's end: the newer (%s)",
	      str(info.func));
	err = symbolizer_resolve(sym, getpid(), base + 0x2981, &info);
	CHECK(err == 0 && streq(info.func, "alloc"),
	      "the entry past the newer one kept (%s)", str(info.func));
	err = symbolizer_resolve(sym, getpid(), base + 0x28f9, &info);
	CHECK(err == 0 && streq(info.func, "overlapper"),
	      "the newer entry's start (%s)", str(info.func));

	/* Group-writable perf maps are not trusted. */
	symbolizer_forget(sym, getpid());
	chmod(path, 0666);
	err = symbolizer_resolve(sym, getpid(), base + 0x11, &info);
	CHECK(err == 0 && !info.func, "group/world-writable perf map ignored");
out:
	symbolizer_forget(sym, getpid());
	unlink(path);
	munmap(jit, 3 * 4096);
}

static void test_many(struct symbolizer *sym)
{
	uint64_t lo = 0, hi = 0, a, b, step, ip;
	struct timespec t0, t1;
	struct sym_info info;
	char line[512];
	unsigned named = 0, versioned = 0, i, n = 50000;
	const char *vname = NULL;
	double secs;
	FILE *f;

	/* The biggest executable mapping of libc (or libasan under ASan). */
	f = fopen("/proc/self/maps", "r");
	while (f && fgets(line, sizeof(line), f)) {
		char perms[5];

		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s", &a, &b,
			   perms) == 3 &&
		    perms[2] == 'x' && strstr(line, "libc.so") &&
		    b - a > hi - lo) {
			lo = a;
			hi = b;
		}
	}
	if (f)
		fclose(f);
	if (hi - lo < n) {
		CHECK(0, "found libc text mapping");
		return;
	}
	step = (hi - lo) / n;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n; i++) {
		ip = lo + 1 + (uint64_t)i * step;
		if (symbolizer_resolve(sym, getpid(), ip, &info))
			break;
		named += info.func != NULL;
		/* Symbol versions ("pthread_kill@GLIBC_2.2.5", as glibc's
		 * debug symbols name many functions) are no part of a name. */
		if (info.func && strchr(info.func, '@')) {
			versioned++;
			vname = info.func;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	/* The time is reported, not asserted: a loaded machine (the suites of
	 * several helpers at once) took 2.4 s where 0.3 s is usual. */
	CHECK(!versioned, "no function name carries a symbol version (%u: %s)",
	      versioned, vname ? vname : "-");
	CHECK(i == n && named > n / 2,
	      "%u distinct libc addresses in %.3f s (%u with a function)", i,
	      secs, named);
}

static pid_t sleeping_child(void)
{
	pid_t child = fork();

	if (child == 0) {
		pause();
		_exit(0);
	}
	return child;
}

static void reap(pid_t child)
{
	int status;

	kill(child, SIGKILL);
	waitpid(child, &status, 0);
}

/* Two processes of the same binary: the second lookup is a cache hit. */
static void test_shared(struct symbolizer *sym)
{
	uint64_t own = caller_for_test(),
		 libc = (uint64_t)(uintptr_t)&malloc + 1;
	struct symbolizer_stats s0, s1, s2;
	struct sym_info a, b, c, d;
	pid_t child = sleeping_child(), kids[8];
	int err, i, n = 0;

	if (child < 0) {
		CHECK(0, "fork");
		return;
	}
	err = symbolizer_resolve(sym, getpid(), own, &a);
	err |= symbolizer_resolve(sym, getpid(), libc, &c);
	symbolizer_stats(sym, &s0);
	/* Our maps as of the fork: the child's addresses are ours. */
	err |= symbolizer_resolve(sym, child, own, &b);
	symbolizer_stats(sym, &s1);
	err |= symbolizer_resolve(sym, child, libc, &d);
	symbolizer_stats(sym, &s2);
	printf("shared: child %d -> %s %s:%d %s+%#" PRIx64 "; hits %" PRIu64
	       " -> %" PRIu64 ", misses %" PRIu64 " -> %" PRIu64 ", dwfls %d\n",
	       (int)child, str(b.func), str(b.file), b.line, str(b.module),
	       b.offset, s0.hits, s2.hits, s0.misses, s2.misses, s2.dwfls);
	CHECK(err == 0 && streq(b.func, "caller_for_test") &&
		      a.func == b.func && a.file == b.file &&
		      a.line == b.line && streq(a.module, b.module) &&
		      a.offset == b.offset,
	      "same binary in another process: same names");
	CHECK(s1.hits == s0.hits + 1 && s1.misses == s0.misses,
	      "the other process's lookup is a cache hit, not a miss");
	CHECK(c.func && c.func == d.func && s2.hits == s1.hits + 1 &&
		      s2.misses == s1.misses,
	      "libc in the other process: cache hit (%s)", str(d.func));
	CHECK(s2.dwfls == s0.dwfls, "no Dwfl created for the other process");

	/* More processes: no more misses and no more Dwfls. */
	for (i = 0; i < 8; i++) {
		kids[i] = sleeping_child();
		if (kids[i] > 0 && !symbolizer_resolve(sym, kids[i], own, &b) &&
		    !symbolizer_resolve(sym, kids[i], libc, &d) &&
		    b.func == a.func && d.func == c.func)
			n++;
	}
	symbolizer_stats(sym, &s1);
	CHECK(n == 8 && s1.misses == s2.misses && s1.dwfls == s2.dwfls,
	      "8 more processes: %d resolved, misses +%" PRIu64
	      ", dwfls %d -> %d",
	      n, s1.misses - s2.misses, s2.dwfls, s1.dwfls);
	for (i = 0; i < 8; i++) {
		if (kids[i] > 0) {
			symbolizer_forget(sym, kids[i]);
			reap(kids[i]);
		}
	}
	symbolizer_forget(sym, child);
	reap(child);
	/* Forgetting processes keeps what was learnt about their files. */
	child = sleeping_child();
	symbolizer_stats(sym, &s1);
	err = symbolizer_resolve(sym, child, own, &b);
	symbolizer_stats(sym, &s2);
	CHECK(err == 0 && b.func == a.func && s2.misses == s1.misses,
	      "after forget, a new process still hits");
	symbolizer_forget(sym, child);
	reap(child);
}

static int copy_file(const char *from, const char *to, int flags)
{
	char buf[65536];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | flags, 0755);
	ssize_t n;
	int ok = in >= 0 && out >= 0;

	while (ok && (n = read(in, buf, sizeof(buf))) > 0)
		ok = write(out, buf, n) == n;
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return ok ? 0 : -1;
}

static void *map_file(const char *path, size_t *len)
{
	struct stat st;
	void *p;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st)) {
		if (fd >= 0)
			close(fd);
		return MAP_FAILED;
	}
	*len = st.st_size;
	p = mmap(NULL, *len, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	close(fd);
	return p;
}

/*
 * Results are keyed by file, and the inode number alone does not make a
 * file: one rewritten in place (as a freed inode reused by a rebuild would
 * be) must be looked at again.
 */
static void test_rewritten_file(struct symbolizer *sym)
{
	char path[64], exe[4096], libc[4096];
	uint64_t ip = caller_for_test(), off;
	struct sym_info a, b;
	struct stat st1, st2;
	Dl_info dli;
	size_t len;
	char *map;
	ssize_t n;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = '\0';
	if (!dladdr((void *)(uintptr_t)&malloc, &dli) || !dli.dli_fname ||
	    !realpath(dli.dli_fname, libc) ||
	    !dladdr((void *)(uintptr_t)ip, &dli) || !dli.dli_fbase) {
		printf("skip rewritten-file test\n");
		return;
	}
	/* As test_own_function checks, file offset == address - base. */
	off = ip - (uint64_t)(uintptr_t)dli.dli_fbase;
	snprintf(path, sizeof(path), "/tmp/memtop-symtest-%d", (int)getpid());
	unlink(path);
	if (copy_file(exe, path, O_CREAT | O_EXCL) ||
	    (map = map_file(path, &len)) == MAP_FAILED) {
		CHECK(0, "copy and map %s", path);
		unlink(path);
		return;
	}
	stat(path, &st1);
	symbolizer_forget(sym, getpid());
	symbolizer_resolve(sym, getpid(), (uint64_t)(uintptr_t)map + off, &a);
	CHECK(streq(a.func, "caller_for_test"),
	      "a copy of our binary mapped by hand: %s", str(a.func));
	munmap(map, len);

	/* Same inode, other contents: libc's code at that offset. */
	usleep(20000);
	if (copy_file(libc, path, O_TRUNC) ||
	    (map = map_file(path, &len)) == MAP_FAILED || len <= off) {
		CHECK(0, "rewrite and map %s", path);
		unlink(path);
		return;
	}
	stat(path, &st2);
	symbolizer_forget(sym, getpid());
	symbolizer_resolve(sym, getpid(), (uint64_t)(uintptr_t)map + off, &b);
	printf("rewritten: inode %lu -> %lu: %s -> %s\n",
	       (unsigned long)st1.st_ino, (unsigned long)st2.st_ino,
	       str(a.func), str(b.func));
	CHECK(st1.st_ino == st2.st_ino && !streq(b.func, "caller_for_test"),
	      "the same inode rewritten is a new file (got %s)", str(b.func));
	munmap(map, len);
	unlink(path);
	symbolizer_forget(sym, getpid());
}

static void test_vdso(struct symbolizer *sym)
{
	uint64_t base = getauxval(AT_SYSINFO_EHDR), ip;
	struct sym_info info;
	const char *found = NULL;

	if (!base) {
		printf("skip vdso test: no vdso\n");
		return;
	}
	for (ip = base + 1; ip < base + 8192 && !found; ip += 8)
		if (!symbolizer_resolve(sym, getpid(), ip, &info) &&
		    info.func && streq(info.module, "[vdso]"))
			found = info.func;
	printf("vdso: %s\n", str(found));
	CHECK(found && (strstr(found, "time") || strstr(found, "getcpu")),
	      "an address in the vdso has a function: %s", str(found));
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

static void test_exe_name(void)
{
	static const struct {
		const char *exe, *comm, *argv0, *want;
	} cases[] = {
		/* Debian's redis-server, a symlink, with its process title */
		{"redis-check-rdb", "redis-server",
		 "/usr/bin/redis-server *:6379", "redis-server"},
		{"python3.11", "python3", "python3", "python3"},
		{"server", "server", "./server", NULL}, /* the same name */
		/* comm cut to 15 bytes: argv[0] completes it */
		{"target", "a-very-long-lin", "/x/a-very-long-link-name",
		 "a-very-long-link-name"},
		{"a-very-long-program", "a-very-long-pro",
		 "/x/a-very-long-program", NULL},
		/* renamed itself (prctl, or another argv[0]): the file's */
		{"server", "worker-3", "./server", NULL},
		{"bash", "bash", "-bash", NULL},
		{"prog", "pro", "/x/prog-x", NULL},
		{"prog", "alias", "", NULL},
		{"prog", "", "/x/alias", NULL},
		{"prog", "alias", "/x/", NULL},
	};
	char out[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got =
			symbolizer_exe_name(cases[i].exe, cases[i].comm,
					    cases[i].argv0, out, sizeof(out));

		CHECK(cases[i].want ? streq(got, cases[i].want) : !got,
		      "exe %s, comm %s, argv[0] %s: named %s (got %s)",
		      cases[i].exe, cases[i].comm, cases[i].argv0,
		      str(cases[i].want), str(got));
	}
	CHECK(!symbolizer_exe_name("target", "a-very-long-lin",
				   "/x/a-very-long-link-name", out, 8),
	      "a name longer than the buffer is not cut");
}

/* A program run through a symlink of another name: its frames carry the
 * name it was run by (what the user typed, and sees in ps). */
static void test_exe_alias(struct symbolizer *sym)
{
	char dir[] = "/tmp/memtop-test-alias-XXXXXX", link[64], real[4096];
	char line[4608], path[4096], exe[64];
	uint64_t lo = 0;
	struct sym_info info;
	pid_t child;
	FILE *f;
	int err;

	if (!realpath("/bin/sleep", real) || !mkdtemp(dir)) {
		CHECK(0, "a symlink to sleep for the alias test");
		return;
	}
	snprintf(link, sizeof(link), "%s/my-sleep", dir);
	if (symlink(real, link)) {
		CHECK(0, "symlink %s: %s", link, strerror(errno));
		rmdir(dir);
		return;
	}
	child = fork();
	if (child == 0) {
		execl(link, link, "30", (char *)NULL);
		_exit(127);
	}
	/* /proc/PID/exe names the new file before exec has mapped its
	 * segments, so wait for the text mapping itself. */
	snprintf(exe, sizeof(exe), "/proc/%d/maps", (int)child);
	for (int i = 0; i < 500 && !lo; i++) {
		f = fopen(exe, "r");
		while (f && !lo && fgets(line, sizeof(line), f)) {
			uint64_t a, b;
			char perms[5];

			path[0] = '\0';
			if (sscanf(line,
				   "%" SCNx64 "-%" SCNx64
				   " %4s %*s %*s %*s %4095s",
				   &a, &b, perms, path) == 4 &&
			    perms[2] == 'x' && streq(path, real))
				lo = a;
		}
		if (f)
			fclose(f);
		if (!lo)
			usleep(10000);
	}
	CHECK(lo != 0, "the child's text mapping of %s", real);
	if (lo) {
		err = symbolizer_resolve(sym, child, lo + 0x11, &info);
		printf("alias: %s+%#" PRIx64 " (%s)\n", str(info.module),
		       info.offset, str(info.path));
		CHECK(!err && streq(info.module, "my-sleep"),
		      "frames of %s run as my-sleep are named my-sleep", real);
		CHECK(streq(info.path, real), "the real path is kept (-v)");
	}
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	symbolizer_forget(sym, child);
	unlink(link);
	rmdir(dir);
}

int main(void)
{
	struct symbolizer_stats st;
	struct symbolizer *sym;
	int fds = count_fds();

	if (symbolizer_new(&sym)) {
		printf("FAIL symbolizer_new\n");
		return 1;
	}
	test_own_function(sym);
	test_libc(sym);
	test_dlopen(sym);
	test_signal_frame(sym);
	test_unknown(sym);
	test_parse_line();
	test_jit_name();
	test_perf_map(sym);
	test_many(sym);
	test_shared(sym);
	test_rewritten_file(sym);
	test_vdso(sym);
	test_exe_name();
	test_exe_alias(sym);
	symbolizer_stats(sym, &st);
	printf("stats: %" PRIu64 " hits, %" PRIu64 " misses, %d Dwfls\n",
	       st.hits, st.misses, st.dwfls);
	CHECK(st.dwfls > 0 && st.dwfls <= 64, "live Dwfls are bounded");
	symbolizer_free(sym);
	CHECK(count_fds() == fds, "no file descriptor left open (%d -> %d)",
	      fds, count_fds());
	printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
	return failures ? 1 : 0;
}
