/*
 * gt_signal: blocks allocated inside signal handlers, kept live. The
 * handler's stack goes through the kernel's signal frame: its return
 * address is libc's signal trampoline (__restore_rt), and the interrupted
 * function's state is in the ucontext the kernel saved above it, not in a
 * call frame. Two ways in:
 *   - SIGALRM from a timer while spin_for_alarm() spins: the interrupted
 *     pc is in our own code (a leaf loop, no call in progress);
 *   - raise(SIGUSR2) from raise_usr2(): the interrupted pc is libc's
 *     kill syscall, inside raise().
 * An unwinder that follows the signal frame continues into the
 * interrupted function and main; one that does not must end the stack at
 * the trampoline, never with a junk frame.
 */
#include <sys/time.h>
#include "gt_common.h"

#define ALARM_BYTES 12345
#define USR2_BYTES  23456
#define ROUNDS	    4

static void *held[2 * ROUNDS];
static int nheld;
static volatile sig_atomic_t spinning, alarmed, missed;

GT_NOINLINE static void on_alarm(int sig)
{
	(void)sig;
	if (!spinning) { /* not where the test wants it: try again */
		missed = 1;
		return;
	}
	/* malloc in a handler: safe here, the interrupted code is a loop
	 * that holds no allocator lock. */
	held[nheld] = malloc(ALARM_BYTES);
	if (!held[nheld++])
		gt_die("malloc in SIGALRM handler");
	gt_add("on_alarm", ALARM_BYTES, 1);
	alarmed = 1;
}

GT_NOINLINE static void on_usr2(int sig)
{
	(void)sig;
	held[nheld] = malloc(USR2_BYTES);
	if (!held[nheld++])
		gt_die("malloc in SIGUSR2 handler");
	gt_add("on_usr2", USR2_BYTES, 1);
}

/* Spins until SIGALRM lands while it spins (a timer that fires before the
 * loop is re-armed). */
GT_NOINLINE static void spin_for_alarm(void)
{
	struct itimerval it = {.it_value = {.tv_usec = 20000}};

	alarmed = 0;
	do {
		missed = 0;
		spinning = 0;
		if (setitimer(ITIMER_REAL, &it, NULL))
			gt_die("setitimer");
		spinning = 1;
		while (!alarmed && !missed)
			;
	} while (!alarmed);
	spinning = 0;
}

GT_NOINLINE static void raise_usr2(void)
{
	if (raise(SIGUSR2))
		gt_die("raise");
}

static void handle(int sig, void (*fn)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL))
		gt_die("sigaction");
}

int main(void)
{
	gt_setup();
	handle(SIGALRM, on_alarm);
	handle(SIGUSR2, on_usr2);
	gt_declare("on_alarm");
	gt_declare("on_usr2");
	gt_ready_and_wait();

	for (int i = 0; i < ROUNDS; i++) {
		spin_for_alarm();
		raise_usr2();
	}

	gt_report(0);
	gt_done_and_wait();
	return 0;
}
