/*
 * allocbench: a malloc-heavy workload for measuring allocation tracers.
 *
 *   allocbench [-t threads] [-n iterations] [-d depth] [-k keep_pct]
 *              [-r ring] [-s seconds]
 *
 * Each thread recurses through a few noinline frames to depth -d (default 12,
 * so a tracer's stack capture walks a realistic number of frame-pointer
 * frames), then runs -n iterations (per thread). One iteration is one
 * malloc(size) and one free: size is drawn from a fixed xorshift sequence
 * in 16..4096 (log-uniform-ish: small sizes common, large ones rare). In
 * (100 - keep_pct)% of iterations the block is freed at once (a short-lived
 * pair); in keep_pct% (default 10) it is stored in a per-thread ring of -r
 * slots (default 1024) and the block that occupied the slot is freed instead
 * (an outstanding block, freed ~ring*100/keep_pct iterations later). Either
 * way every iteration is exactly one malloc and one free of a real pointer:
 * the ring is filled before the start signal and its remaining blocks are
 * freed after the clock stops.
 *
 * Start protocol (lets a tracer attach first): prints "READY <pid>" on
 * stdout, then waits for SIGUSR1 (threads are created and parked at depth
 * before the clock starts). Then it runs, prints
 *
 *   ns_per_pair <float>    wall-clock ns (CLOCK_MONOTONIC, from SIGUSR1
 *                          to the last thread done) * threads / total pairs,
 *                          i.e. the time of one malloc+free pair on one
 *                          thread (per-thread time; equals wall/pairs for
 *                          -t 1)
 *   wall_s <float>         elapsed wall-clock seconds
 *   pairs <n>              total malloc+free pairs across threads
 *   calls_per_s <float>    allocator calls (malloc+free) per second, overall
 *
 * and exits. With -s SECONDS instead of a fixed count each thread runs until
 * the time is up (used to hold a steady allocation rate while a tracer's own
 * CPU is measured).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct cfg {
	int threads;
	long iters;
	int depth;
	int keep_pct;
	int ring;
	double seconds;
};

static struct cfg cfg = {
	.threads = 1, .iters = 1000000, .depth = 12, .keep_pct = 10,
	.ring = 1024, .seconds = 0,
};

static pthread_barrier_t start_barrier;
static int parked; /* threads that filled their ring and wait to start */
static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t go_flag;

struct thr {
	pthread_t tid;
	int idx;
	long pairs;
	uintptr_t sink;
};

static inline uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* 16..4096, small sizes most common: pick a power-of-two class 16..2048
 * with decreasing weight, then a uniform size inside the class. */
static inline size_t pick_size(uint64_t r)
{
	static const unsigned char cls[16] = {
		4, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 8, 9, 10, 11,
	};
	unsigned c = cls[r & 15];
	size_t lo = (size_t)1 << c;
	return lo + ((r >> 8) % (lo + 1)); /* lo .. 2*lo, max 4096 */
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The allocation loop, called at the bottom of the recursion. noinline so it
 * is a real frame with a real return address. */
static __attribute__((noinline, noclone)) long work_loop(struct thr *t)
{
	uint64_t seed = 0x9E3779B97F4A7C15ull ^ ((uint64_t)(t->idx + 1) << 32);
	void **ring = calloc((size_t)cfg.ring, sizeof(void *));
	long n = 0;
	unsigned pos = 0;
	double deadline = 0;

	if (!ring) {
		perror("calloc");
		exit(1);
	}
	/* Fill the ring before the start signal, so every timed free gets a
	 * real pointer (these blocks predate the tracer: "unknown frees"). */
	for (int i = 0; i < cfg.ring; i++) {
		ring[i] = malloc(pick_size(xorshift(&seed)));
		if (!ring[i]) {
			perror("malloc");
			exit(1);
		}
	}
	/* Park here, at full depth, until the start signal. */
	__atomic_add_fetch(&parked, 1, __ATOMIC_SEQ_CST);
	pthread_barrier_wait(&start_barrier);
	if (cfg.seconds > 0)
		deadline = now_s() + cfg.seconds;
	for (;;) {
		if (cfg.seconds > 0) {
			if ((n & 1023) == 0 && now_s() >= deadline)
				break;
		} else if (n >= cfg.iters) {
			break;
		}
		uint64_t r = xorshift(&seed);
		size_t sz = pick_size(r);
		char *p = malloc(sz);
		if (!p) {
			perror("malloc");
			exit(1);
		}
		p[0] = (char)n; /* touch it so nothing is optimized away */
		t->sink += (uintptr_t)p[0];
		if ((unsigned)((r >> 40) % 100) < (unsigned)cfg.keep_pct) {
			void *old = ring[pos];
			ring[pos] = p;
			pos = (pos + 1) % (unsigned)cfg.ring;
			free(old);
		} else {
			free(p);
		}
		n++;
	}
	/* Free what is outstanding after the clock stops (not counted). */
	for (int i = 0; i < cfg.ring; i++)
		free(ring[i]);
	free(ring);
	return n;
}

/* Three distinct noinline frames that recurse into each other, so the stack
 * looks like a service's (different return addresses, not one function). */
static __attribute__((noinline, noclone)) long frame_a(struct thr *t, int d);
static __attribute__((noinline, noclone)) long frame_b(struct thr *t, int d);
static __attribute__((noinline, noclone)) long frame_c(struct thr *t, int d);

/* Each frame has its own body (a different pad and salt) so the compiler
 * cannot fold them into one function (-fipa-icf): a captured stack shows
 * three distinct return addresses cycling, depth frames deep. */
#define FRAME(name, next, padsz, salt)                                     \
	static __attribute__((noinline, noclone)) long name(struct thr *t,  \
							    int d)         \
	{                                                                  \
		volatile char pad[padsz];                                  \
		pad[0] = (char)(d ^ salt);                                 \
		long r = d <= 1 ? work_loop(t) : next(t, d - 1);            \
		return r + pad[0] - (char)(d ^ salt);                      \
	}
FRAME(frame_a, frame_b, 16, 0x11)
FRAME(frame_b, frame_c, 24, 0x22)
FRAME(frame_c, frame_a, 40, 0x33)

static void *thread_main(void *arg)
{
	struct thr *t = arg;
	t->pairs = frame_a(t, cfg.depth);
	return NULL;
}

static void on_usr1(int sig)
{
	(void)sig;
	go_flag = 1;
}

static void on_term(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [-t threads] [-n iterations per thread] [-d depth]\n"
		"          [-k keep_pct] [-r ring] [-s seconds]\n", argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "t:n:d:k:r:s:h")) != -1) {
		switch (opt) {
		case 't': cfg.threads = atoi(optarg); break;
		case 'n': cfg.iters = atol(optarg); break;
		case 'd': cfg.depth = atoi(optarg); break;
		case 'k': cfg.keep_pct = atoi(optarg); break;
		case 'r': cfg.ring = atoi(optarg); break;
		case 's': cfg.seconds = atof(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (cfg.threads < 1 || cfg.iters < 1 || cfg.depth < 1 ||
	    cfg.keep_pct < 0 || cfg.keep_pct > 100 || cfg.ring < 1)
		usage(argv[0]);

	/* Block SIGUSR1 and wait for it with sigwait-like sigsuspend so the
	 * signal cannot arrive between READY and the wait. */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);

	struct thr *th = calloc((size_t)cfg.threads, sizeof(*th));
	if (!th) {
		perror("calloc");
		return 1;
	}
	pthread_barrier_init(&start_barrier, NULL, (unsigned)cfg.threads + 1);
	for (int i = 0; i < cfg.threads; i++) {
		th[i].idx = i;
		int e = pthread_create(&th[i].tid, NULL, thread_main, &th[i]);
		if (e) {
			fprintf(stderr, "pthread_create: %s\n", strerror(e));
			return 1;
		}
	}

	/* READY only once every thread is parked: nothing allocates between
	 * READY and SIGUSR1, whenever the tracer attaches. */
	while (__atomic_load_n(&parked, __ATOMIC_SEQ_CST) < cfg.threads)
		usleep(1000);
	printf("READY %d\n", (int)getpid());
	fflush(stdout);
	sigset_t waitset = old;
	sigdelset(&waitset, SIGUSR1);
	while (!go_flag && !stop_flag)
		sigsuspend(&waitset);
	if (stop_flag)
		return 3;

	double t0 = now_s();
	pthread_barrier_wait(&start_barrier);
	long pairs = 0;
	uintptr_t sink = 0;
	for (int i = 0; i < cfg.threads; i++) {
		pthread_join(th[i].tid, NULL);
		pairs += th[i].pairs;
		sink += th[i].sink;
	}
	double wall = now_s() - t0;

	printf("ns_per_pair %.2f\n", wall * 1e9 * cfg.threads / (double)pairs);
	printf("wall_s %.6f\n", wall);
	printf("pairs %ld\n", pairs);
	printf("calls_per_s %.0f\n", 2.0 * (double)pairs / wall);
	printf("sink %lu\n", (unsigned long)(sink & 1));
	fflush(stdout);
	free(th);
	return 0;
}
