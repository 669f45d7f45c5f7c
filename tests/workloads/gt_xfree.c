/*
 * gt_xfree: blocks allocated on one thread and freed on another, at once
 * and in bulk, in both directions, so that frees land on other CPUs while
 * the allocating CPU is still holding the block as its newest (memtop's
 * per-CPU pending slot) or moving it to the live map. Two threads pass
 * pointers through single-producer rings; nothing freed is missed: memtop
 * must see every free (no unknown frees) and exactly the kept blocks.
 */
#include <pthread.h>
#include <stdatomic.h>
#include "gt_common.h"

#define N    200000
#define RING 64
#define KEEP 16

struct ring {
	void *_Atomic slot[RING];
	_Atomic unsigned long head, tail;
};

static struct ring to_b, to_a;
static pthread_barrier_t start_barrier, done_barrier;
static void *kept[KEEP];
static long long kept_bytes;

static void ring_put(struct ring *r, void *p)
{
	unsigned long h = atomic_load(&r->head);

	while (h - atomic_load(&r->tail) >= RING)
		; /* full: the other side frees */
	atomic_store(&r->slot[h % RING], p);
	atomic_store(&r->head, h + 1);
}

static void *ring_get(struct ring *r)
{
	unsigned long t = atomic_load(&r->tail);
	void *p;

	while (atomic_load(&r->head) == t)
		;
	p = atomic_load(&r->slot[t % RING]);
	atomic_store(&r->tail, t + 1);
	return p;
}

/* Thread A allocates; B frees. */
GT_NOINLINE static void xfree_a_to_b(void)
{
	for (int i = 0; i < N; i++) {
		void *p = malloc((size_t)(16 + i % 700));

		if (!p)
			gt_die("malloc a");
		ring_put(&to_b, p);
	}
}

/* Thread B allocates; A frees. */
GT_NOINLINE static void xfree_b_to_a(void)
{
	for (int i = 0; i < N / 4; i++) {
		void *p = calloc(1, (size_t)(32 + i % 300));

		if (!p)
			gt_die("calloc b");
		ring_put(&to_a, p);
	}
}

GT_NOINLINE static void xfree_keep(void)
{
	for (int j = 0; j < KEEP; j++) {
		size_t sz = (size_t)(48 + 16 * j);

		if (!(kept[j] = malloc(sz)))
			gt_die("keep malloc");
		kept_bytes += (long long)sz;
	}
}

static void *thread_b(void *arg)
{
	(void)arg;
	free(malloc(32)); /* warm this thread's arena */
	pthread_barrier_wait(&start_barrier);
	for (int i = 0; i < N; i++)
		free(ring_get(&to_b));
	xfree_b_to_a();
	pthread_barrier_wait(&done_barrier);
	for (;;)
		pause();
	return NULL;
}

int main(void)
{
	pthread_t b;

	gt_setup();
	if (pthread_barrier_init(&start_barrier, NULL, 2) ||
	    pthread_barrier_init(&done_barrier, NULL, 2))
		gt_die("barrier");
	free(malloc(32));
	if (pthread_create(&b, NULL, thread_b, NULL) != 0)
		gt_die("pthread_create");
	gt_ready_and_wait();

	pthread_barrier_wait(&start_barrier);
	xfree_a_to_b();
	for (int i = 0; i < N / 4; i++)
		free(ring_get(&to_a));
	xfree_keep();
	pthread_barrier_wait(&done_barrier);

	gt_declare("xfree_a_to_b");
	gt_cum("xfree_a_to_b", N, N);
	gt_declare("xfree_b_to_a");
	gt_cum("xfree_b_to_a", N / 4, N / 4);
	gt_add("xfree_keep", kept_bytes, KEEP);
	gt_cum("xfree_keep", KEEP, 0);
	gt_report(0);
	gt_done_and_wait();
	return 0;
}
