/*
 * gt_threads: NTHREADS threads, created (and their arenas warmed) before
 * READY so that pthread_create's own allocations happen before memtop
 * attaches. After SIGUSR1 each thread runs CHURN malloc/free pairs from
 * thread_churn (nothing outstanding) and keeps KEEP blocks of known sizes
 * from thread_keep. Threads never exit (joining could free their TLS).
 */
#include <pthread.h>
#include "gt_common.h"

#define NTHREADS 8
#define CHURN	 100000
#define KEEP	 10

static pthread_barrier_t start_barrier, done_barrier;
static long long kept_bytes[NTHREADS];
static void *kept[NTHREADS][KEEP];

GT_NOINLINE static void thread_churn(int t)
{
	for (int i = 0; i < CHURN; i++) {
		void *p = malloc((size_t)(16 + (i + t) % 1009));
		if (!p)
			gt_die("churn malloc");
		*(volatile char *)p = 1;
		free(p);
	}
}

GT_NOINLINE static void thread_keep(int t)
{
	for (int j = 0; j < KEEP; j++) {
		size_t sz = (size_t)(100 * (t + 1) + 8 * j);
		if (!(kept[t][j] = malloc(sz)))
			gt_die("keep malloc");
		kept_bytes[t] += (long long)sz;
	}
}

GT_NOINLINE static void *worker(void *arg)
{
	int t = (int)(long)arg;
	free(malloc(32)); /* warm up this thread's arena and tcache */
	pthread_barrier_wait(&start_barrier);
	thread_churn(t);
	thread_keep(t);
	pthread_barrier_wait(&done_barrier);
	for (;;)
		pause(); /* all signals blocked: sleeps forever */
	return NULL;
}

int main(void)
{
	gt_setup();
	if (pthread_barrier_init(&start_barrier, NULL, NTHREADS + 1) ||
	    pthread_barrier_init(&done_barrier, NULL, NTHREADS + 1))
		gt_die("barrier");
	free(malloc(32));
	pthread_t tid[NTHREADS];
	for (long t = 0; t < NTHREADS; t++)
		if (pthread_create(&tid[t], NULL, worker, (void *)t) != 0)
			gt_die("pthread_create");
	gt_ready_and_wait();

	pthread_barrier_wait(&start_barrier);
	pthread_barrier_wait(&done_barrier);

	gt_declare("thread_churn");
	gt_cum("thread_churn", (long long)NTHREADS * CHURN,
	       (long long)NTHREADS * CHURN);
	for (int t = 0; t < NTHREADS; t++)
		gt_add("thread_keep", kept_bytes[t], KEEP);
	gt_cum("thread_keep", (long long)NTHREADS * KEEP, 0);
	gt_report(-1);
	gt_done_and_wait();
	return 0;
}
