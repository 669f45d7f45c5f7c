/*
 * manysites: a heap with many live blocks under many distinct call stacks,
 * for measuring what a tracer's refresh and memory cost at scale.
 *
 *   manysites [-l levels] [-n leaves] [-b blocks_per_stack] [-s size]
 *
 * A binary tree of noinline calls (two call sites per level, -l levels,
 * default 16) reaches up to 2^levels leaves, each under its own chain of
 * return addresses; the first -n of them (default 50,000) allocate. Each
 * leaf mallocs -b blocks (default 20) of -s bytes (default 64) and keeps
 * them: 50,000 distinct stacks and 1,000,000 live blocks by default, none
 * freed until the process ends.
 *
 * Start protocol: prints "READY <pid>", waits for SIGUSR1 (a tracer attaches
 * in between), allocates, prints "DONE <blocks> <stacks>" and then sleeps
 * until it is killed, so the tracer can be measured against a still heap.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int levels = 16, per_leaf = 20;
static long max_leaves = 50000, leaves;
static size_t size = 64;
static void **blocks;
static long nblocks;
static volatile sig_atomic_t go;

static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

/*
 * Two call sites of level() per level: their return addresses differ, so
 * each leaf has its own stack, one frame per level (about 20 frames in
 * all, a typical depth). The empty asm keeps each a call, not a jump.
 */
__attribute__((noinline)) static void level(int d)
{
	if (d == levels) {
		if (leaves++ >= max_leaves)
			return;
		for (int i = 0; i < per_leaf; i++) {
			blocks[nblocks] = malloc(size);
			if (!blocks[nblocks]) {
				perror("manysites: malloc");
				exit(1);
			}
			nblocks++;
		}
		return;
	}
	level(d + 1);
	__asm__ volatile("" ::: "memory");
	level(d + 1);
	__asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigset_t mask, old;
	int opt;

	while ((opt = getopt(argc, argv, "l:n:b:s:")) != -1) {
		switch (opt) {
		case 'l':
			levels = atoi(optarg);
			break;
		case 'n':
			max_leaves = atol(optarg);
			break;
		case 'b':
			per_leaf = atoi(optarg);
			break;
		case 's':
			size = (size_t)atol(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-l levels] [-n leaves] [-b blocks_per_stack] [-s size]\n",
				argv[0]);
			return 2;
		}
	}
	if (levels < 0 || levels > 24 || max_leaves < 1 || per_leaf < 1 ||
	    size < 1) {
		fprintf(stderr,
			"manysites: levels 0..24, leaves >= 1, blocks >= 1, size >= 1\n");
		return 2;
	}
	blocks = calloc((size_t)per_leaf << levels, sizeof(*blocks));
	if (!blocks) {
		perror("manysites: calloc");
		return 1;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, &old);
	sigaction(SIGUSR1, &sa, NULL);
	printf("READY %d\n", getpid());
	fflush(stdout);
	while (!go)
		sigsuspend(&old);
	level(0);
	printf("DONE %ld %ld\n", nblocks,
	       max_leaves < (1L << levels) ? max_leaves : 1L << levels);
	fflush(stdout);
	for (;;)
		pause();
}
