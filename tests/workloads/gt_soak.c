/*
 * gt_soak: the soak test's workload (tools/soak), not part of `make test`.
 * THREADS threads make about RATE allocator calls per second in total
 * (free + malloc pairs, some calloc/realloc), each through one of 2^DEPTH
 * call paths (a chain of DEPTH frames, each step_a or step_b), and the
 * paths in use change every second: stacks churn, old ones stop holding
 * memory, new ones appear. Each thread keeps a ring of LIVE blocks, so the
 * heap stays bounded. Prints "READY <pid>" and then "RATE <calls/s>" every
 * second; runs until killed (or for SECONDS).
 *
 *   gt_soak [RATE [THREADS [LIVE [SECONDS]]]]   (500000 4 4096 0)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include "gt_common.h"

#define DEPTH		17
#define PATHS_PER_EPOCH 1024

struct worker {
	void **ring;
	unsigned live, slot;
	unsigned long long rnd;
	unsigned long long calls; /* this thread's allocator calls */
};

static long rate_per_thread;
static unsigned live_blocks = 4096;
static atomic_ullong calls;
static volatile unsigned sink_counter;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Replace one block of the ring: 2 allocator calls (free + an allocation). */
GT_NOINLINE static void leaf(struct worker *w)
{
	unsigned i = w->slot++ % w->live;
	size_t size = 16 + (w->rnd >> 33) % 2000;

	w->rnd = w->rnd * 6364136223846793005ULL + 1442695040888963407ULL;
	switch ((w->rnd >> 40) % 8) {
	case 0:
		free(w->ring[i]);
		w->ring[i] = calloc(1, size);
		break;
	case 1:
		/* realloc of a live block: one call that frees and allocates */
		w->ring[i] = realloc(w->ring[i], size);
		w->calls += 1;
		atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
		return;
	default:
		free(w->ring[i]);
		w->ring[i] = malloc(size);
		break;
	}
	w->calls += 2;
	atomic_fetch_add_explicit(&calls, 2, memory_order_relaxed);
}

typedef void (*step_fn)(struct worker *, unsigned, int);
static void step_a(struct worker *, unsigned, int);
static void step_b(struct worker *, unsigned, int);

/* Two functions, one call site each: the stack spells the path's bits. */
GT_NOINLINE static void step_a(struct worker *w, unsigned path, int level)
{
	if (level == DEPTH)
		leaf(w);
	else
		((path >> level) & 1 ? step_b : step_a)(w, path, level + 1);
	sink_counter++; /* no tail call */
}

GT_NOINLINE static void step_b(struct worker *w, unsigned path, int level)
{
	if (level == DEPTH)
		leaf(w);
	else
		((path >> level) & 1 ? step_b : step_a)(w, path, level + 1);
	sink_counter++;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	double start = now();

	for (;;) {
		/* The paths in use change every second. */
		unsigned epoch = (unsigned)(now() - start);

		for (int k = 0; k < 256; k++) {
			unsigned path =
				(epoch * PATHS_PER_EPOCH +
				 (unsigned)((w->rnd >> 20) % PATHS_PER_EPOCH)) &
				((1u << DEPTH) - 1);
			step_a(w, path, 0);
		}
		/* Hold the rate: sleep when ahead of it. */
		double ahead =
			w->calls / (double)rate_per_thread - (now() - start);
		if (ahead > 0.001) {
			struct timespec ts = {0, (long)(ahead * 1e9)};
			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long rate = argc > 1 ? atol(argv[1]) : 500000;
	int nthreads = argc > 2 ? atoi(argv[2]) : 4;
	long seconds = argc > 4 ? atol(argv[4]) : 0;
	unsigned long long last = 0;
	double t0;

	if (argc > 3)
		live_blocks = (unsigned)atoi(argv[3]);
	if (rate < 1000 || nthreads < 1 || nthreads > 64 || live_blocks < 1)
		gt_die("usage: gt_soak [RATE [THREADS [LIVE [SECONDS]]]]");
	rate_per_thread = rate / nthreads;
	for (int i = 0; i < nthreads; i++) {
		struct worker *w = calloc(1, sizeof(*w));
		pthread_t t;

		if (!w || !(w->ring = calloc(live_blocks, sizeof(void *))))
			gt_die("calloc");
		w->live = live_blocks;
		w->rnd = 0x9e3779b97f4a7c15ULL * (i + 1);
		if (pthread_create(&t, NULL, worker_main, w))
			gt_die("pthread_create");
	}
	gt_out("READY %d\n", (int)getpid());
	t0 = now();
	for (long s = 1; !seconds || s <= seconds; s++) {
		struct timespec ts = {1, 0};
		unsigned long long c;

		nanosleep(&ts, NULL);
		c = atomic_load(&calls);
		gt_out("RATE %llu\n", c - last);
		last = c;
	}
	gt_out("TOTAL %llu calls in %.1f s\n", last, now() - t0);
	_exit(0);
}
