/*
 * Unit test for user/symbolizer.c: symbolizes addresses in this very
 * process (our own PIE code with DWARF, libc, unmapped and anonymous
 * memory, a perf map with mangled C++ names), checks error returns, the
 * perf-map line parser against good and hostile input, and that 50k
 * distinct addresses resolve quickly. Needs no root.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

	/* Group-writable perf maps are not trusted. */
	symbolizer_forget(sym, getpid());
	chmod(path, 0666);
	err = symbolizer_resolve(sym, getpid(), base + 0x11, &info);
	CHECK(err == 0 && !info.func, "group/world-writable perf map ignored");
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
	unsigned named = 0, i, n = 50000;
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
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECK(i == n && secs < 2.0,
	      "%u distinct libc addresses in %.3f s (%u with a function)", i,
	      secs, named);
}

int main(void)
{
	struct symbolizer *sym;

	if (symbolizer_new(&sym)) {
		printf("FAIL symbolizer_new\n");
		return 1;
	}
	test_own_function(sym);
	test_libc(sym);
	test_dlopen(sym);
	test_unknown(sym);
	test_parse_line();
	test_perf_map(sym);
	test_many(sym);
	symbolizer_free(sym);
	printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
	return failures ? 1 : 0;
}
