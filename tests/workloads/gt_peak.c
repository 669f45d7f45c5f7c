/*
 * gt_peak: a burst allocated and freed between two samples, so that only
 * the peak shows it (see gt_common.h for the protocol). peak_hold keeps its
 * blocks; then, after GT_PEAK_PAUSE_MS (default 1000: several of memtop's
 * intervals with outstanding at the held level), peak_burst allocates 600
 * blocks, frees half, allocates 200 more with calloc and frees them all, in
 * a few milliseconds. The highest outstanding level is the held bytes plus
 * the first 600 blocks, printed as "EXPECT_PEAK bytes" before DONE.
 */
#include <time.h>
#include "gt_common.h"

#define HOLD_N	   10
#define HOLD_SIZE  1000
#define BURST_SIZE 100003
#define BURST_A	   600 /* allocated first */
#define BURST_F	   300 /* of which freed */
#define BURST_B	   200 /* then allocated: 500 held, below the 600 */

static void *hold[HOLD_N];
static void *burst[BURST_A + BURST_B];

GT_NOINLINE static void peak_hold(void)
{
	for (int i = 0; i < HOLD_N; i++)
		if (!(hold[i] = malloc(HOLD_SIZE)))
			gt_die("malloc");
	gt_add("peak_hold", HOLD_N * HOLD_SIZE, HOLD_N);
}

GT_NOINLINE static void peak_burst(void)
{
	int i;

	for (i = 0; i < BURST_A; i++)
		if (!(burst[i] = malloc(BURST_SIZE)))
			gt_die("malloc");
	for (i = 0; i < BURST_F; i++)
		free(burst[i]);
	for (i = BURST_A; i < BURST_A + BURST_B; i++)
		if (!(burst[i] = calloc(1, BURST_SIZE)))
			gt_die("calloc");
	for (i = BURST_F; i < BURST_A + BURST_B; i++)
		free(burst[i]);
	gt_declare("peak_burst");
}

static void pause_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int main(void)
{
	const char *pause = getenv("GT_PEAK_PAUSE_MS");

	gt_setup();
	free(malloc(10));
	free(calloc(1, 10));
	gt_ready_and_wait();

	peak_hold();
	if (!gt_no_wait)
		pause_ms(pause ? atol(pause) : 1000);
	peak_burst();

	gt_report(-1);
	gt_out("EXPECT_PEAK %lld\n",
	       (long long)HOLD_N * HOLD_SIZE + (long long)BURST_A * BURST_SIZE);
	gt_done_and_wait();
}
