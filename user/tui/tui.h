/*
 * The live view: a top-like curses screen of a source's snapshots. The files
 * in user/tui/ are the only ones that include curses.
 */
#ifndef MEMTOP_TUI_H
#define MEMTOP_TUI_H

#include <signal.h>
#include <stdbool.h>
#include "loop.h"
#include "snapshot.h"
#include "source.h"

/*
 * The live curses screen: a view of the refresh loop (loop.h), which calls
 * it with each snapshot and while it waits for keys; it drives the source's
 * sort, baseline and collapse settings from the keys.
 */
struct tui_opts {
	bool no_color;
	enum sort_field sort; /* the source's initial order (-o, -r) */
	bool reverse;
	bool system_wide; /* no -p: every process, allocations since attach */
	/* The top level lists processes (system-wide, several -p, -f); Enter
	 * drills into one's call sites. Also on whenever the snapshot has more
	 * than one process. */
	bool process_list;
};

/*
 * Run the loop of lo under the screen until q, *stop set (by a signal
 * handler), or -n refreshes. Returns 0, -ENOSYS without a screen, or
 * -errno; the terminal is restored on every path.
 */
int view_tui_run(struct source *src, const struct loop_opts *lo,
		 const struct tui_opts *o, volatile sig_atomic_t *stop);

#endif
