/*
 * gt_growth: growth mode's ground truth (see gt_common.h for the protocol).
 * After the trigger, grow_heap() grows the heap by exactly GT_MIB MiB
 * (default 32) of touched memory, 1 MiB blocks that it writes page by page
 * and keeps, while churn() allocates, touches and frees the same 256 KiB
 * block again and again (only its first round touches new pages), and
 * map_grow() touches 8 MiB of an anonymous mmap of its own. It prints
 *   TOUCH <function> <bytes of new pages it first touched>
 *   RSS <bytes>                    (its VmRSS then)
 * and DONE. With GT_RETURN=1 it then waits for a second SIGUSR1, hands the
 * memory back (frees every block, malloc_trim(0), munmap), prints
 * "RETURNED <bytes>" and "RSS <bytes>", and waits for SIGTERM. With
 * GT_FOREVER=1 it goes on after DONE instead, every 50 ms freeing its
 * oldest block and growing a new one (the live view's tests: allocations
 * keep coming, whichever way it is traced), until SIGTERM.
 *
 * With GT_SMALL=1 the trigger runs grow_small() instead: GT_MIB MiB in 4 KiB
 * blocks, each cleared by memset and kept (GT_PACE_US=N: N microseconds
 * apart on average, 16 blocks at a time, so that growth lasts). Almost every
 * fresh page is then first written inside the C library (the next chunk's
 * header by _int_malloc, or memset), code without frame pointers: only a CFI
 * walk reaches grow_small. Every page from the one after the first block's
 * header to the one holding the last block's successor header is first
 * touched in grow_small's calls, the rest of the heap was touched before
 * or never is: it prints "TOUCH grow_small <those pages' bytes>".
 *
 * With GT_THP=1 the trigger runs thp_grow() instead: it asks for transparent
 * huge pages (madvise MADV_HUGEPAGE) on GT_MIB MiB (rounded up to 2 MiB) of
 * a 2 MiB-aligned anonymous mapping and writes every 4 KiB page of it: one
 * fault per huge page the kernel maps, one per page where it falls back.
 * The region is touched whole either way ("TOUCH thp_grow <bytes>"), and
 * "THP <bytes>" says how much of it huge pages map (smaps AnonHugePages).
 * The other modes turn THP off for the process (prctl), so that a machine
 * with THP "always" maps their 4 KiB pages as the figures assume.
 *
 * glibc is told not to trim or mmap on its own (mallopt), so that what is
 * touched and kept is exactly known; the 1 MiB blocks come from the heap. A
 * block's allocation writes the next chunk's header on the page after it
 * (inside _int_malloc): that page is the allocator's, one per block.
 */
#include <fcntl.h>
#include <time.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include "gt_common.h"

#define MIB	   (1024 * 1024)
#define PAGE	   4096
#define CHURN_SIZE (256 * 1024)
#define MAP_MIB	   8

static void *blocks[1024];
static int nblocks;
static void *volatile pin;
static char *map;

static long long rss_bytes(void)
{
	char buf[4096], *p;
	int fd = open("/proc/self/status", O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, "VmRSS:");
	return p ? atoll(p + 6) * 1024 : -1;
}

/* Every page written once, by this function's own stores. */
GT_NOINLINE static void touch(char *p, size_t len)
{
	for (size_t i = 0; i < len; i += PAGE)
		p[i] = 1;
}

GT_NOINLINE static void grow_heap(void)
{
	char *p = malloc(MIB);

	if (!p)
		gt_die("malloc");
	for (size_t i = 0; i < MIB; i += PAGE)
		p[i] = 1;
	blocks[nblocks++] = p;
}

#define SMALL	   4096
#define SMALL_HEAD 16 /* glibc's chunk header before a block */

static char *small_first, *small_last;

GT_NOINLINE static void grow_small(void)
{
	char *p = malloc(SMALL);

	if (!p)
		gt_die("malloc");
	memset(p, 1, SMALL);
	if (!small_first)
		small_first = p;
	if (small_last && p != small_last + SMALL + SMALL_HEAD)
		gt_die("4 KiB blocks not contiguous in the heap");
	small_last = p;
}

/* The pages grow_small touched first: see the top of the file. */
static long long small_touched(void)
{
	uintptr_t first = (uintptr_t)small_first - 8; /* its size field */
	/* The successor (top) chunk's size field, written by _int_malloc. */
	uintptr_t end = (uintptr_t)small_last + SMALL + 8;

	return (long long)(end / PAGE - first / PAGE) * PAGE;
}

#define HUGE (2 * MIB)

static char *thp;
static size_t thp_len;

GT_NOINLINE static void thp_grow(void)
{
	for (size_t i = 0; i < thp_len; i += PAGE)
		thp[i] = 1;
}

/* A 2 MiB-aligned region that asks for huge pages. */
static void thp_map(int mib)
{
	char *m;

	thp_len = ((size_t)mib * MIB + HUGE - 1) / HUGE * HUGE;
	m = mmap(NULL, thp_len + HUGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		gt_die("mmap");
	thp = (char *)(((uintptr_t)m + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
	if (madvise(thp, thp_len, MADV_HUGEPAGE))
		gt_die("madvise(MADV_HUGEPAGE)");
}

/* AnonHugePages of the mapping holding thp, from /proc/self/smaps. */
static long long thp_mapped(void)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool in = false;
	long long kib = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = lo <= (uintptr_t)thp && (uintptr_t)thp < hi;
			continue;
		}
		if (in && sscanf(line, "AnonHugePages: %lld kB", &kib) == 1)
			break;
	}
	fclose(f);
	return kib < 0 ? -1 : kib * 1024;
}

GT_NOINLINE static void churn(void)
{
	char *p = malloc(CHURN_SIZE);

	if (!p)
		gt_die("malloc");
	touch(p, CHURN_SIZE);
	/* The first block is kept from the top chunk by a small block after
	 * it, so that its free goes to a bin and the next round reuses it. */
	if (!pin)
		pin = malloc(64);
	free(p);
}

GT_NOINLINE static void map_grow(void)
{
	map = mmap(NULL, MAP_MIB * MIB, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		gt_die("mmap");
	for (size_t i = 0; i < (size_t)MAP_MIB * MIB; i += PAGE)
		map[i] = 1;
}

int main(void)
{
	const char *e = getenv("GT_MIB"), *r = getenv("GT_RETURN");
	const char *fe = getenv("GT_FOREVER"), *sm = getenv("GT_SMALL");
	const char *th = getenv("GT_THP");
	bool huge = th && *th == '1';
	int mib = e ? atoi(e) : 32;

	if (mib < 1 || mib > 1024)
		gt_die("GT_MIB must be 1..1024");
	gt_setup();
	if (!huge && prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0))
		gt_die("prctl(PR_SET_THP_DISABLE)");
	if (huge)
		thp_map(mib);
	mallopt(M_MMAP_THRESHOLD, 512 * MIB);
	mallopt(M_TRIM_THRESHOLD, 1024 * MIB);
	mallopt(M_TOP_PAD, 0);
	free(malloc(100)); /* the heap exists */
	gt_ready_and_wait();
	if (huge) {
		thp_grow();
		gt_out("TOUCH thp_grow %lld\n", (long long)thp_len);
		gt_out("THP %lld\n", thp_mapped());
		gt_out("RSS %lld\n", rss_bytes());
		gt_done_and_wait();
		return 0;
	}
	if (sm && *sm == '1') {
		const char *pe = getenv("GT_PACE_US");
		long pace = pe ? atol(pe) : 0;

		for (int i = 0; i < mib * (MIB / SMALL); i++) {
			grow_small();
			if (pace > 0 && i % 16 == 15) {
				struct timespec ts = {0, pace * 16 * 1000};

				nanosleep(&ts, NULL);
			}
		}
		gt_out("TOUCH grow_small %lld\n", small_touched());
		gt_out("RSS %lld\n", rss_bytes());
		gt_done_and_wait();
		return 0;
	}
	for (int i = 0; i < mib; i++) {
		grow_heap();
		for (int k = 0; k < 4; k++)
			churn();
	}
	map_grow();
	gt_out("TOUCH grow_heap %lld\n", (long long)mib * MIB);
	gt_out("TOUCH churn %d\n", CHURN_SIZE);
	gt_out("TOUCH map_grow %lld\n", (long long)MAP_MIB * MIB);
	gt_out("BLOCKS %d\n", mib);
	gt_out("RSS %lld\n", rss_bytes());
	if (fe && *fe == '1') {
		gt_out("DONE\n");
		for (int i = 0;; i++) {
			struct timespec ts = {0, 50 * 1000 * 1000};
			sigset_t set;

			free(blocks[i % mib]);
			nblocks = i % mib; /* grow_heap() refills that slot */
			grow_heap();
			nblocks = mib;
			churn();
			sigemptyset(&set);
			sigaddset(&set, SIGTERM);
			sigaddset(&set, SIGINT);
			if (sigtimedwait(&set, NULL, &ts) > 0)
				_exit(0);
		}
	}
	if (!(r && *r == '1'))
		gt_done_and_wait();
	gt_out("DONE\n");
	gt_ready_and_wait(); /* a second READY, then SIGUSR1: give it back */
	for (int i = 0; i < nblocks; i++)
		free(blocks[i]);
	malloc_trim(0);
	munmap(map, MAP_MIB * MIB);
	gt_out("RETURNED %lld\n", (long long)(mib + MAP_MIB) * MIB);
	gt_out("RSS %lld\n", rss_bytes());
	gt_done_and_wait();
	return 0;
}
