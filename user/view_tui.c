/*
 * Placeholder for the live curses view (issue 3): until it lands, the live
 * mode refreshes like batch mode without a screen.
 */
#include <errno.h>
#include "views.h"

int view_tui_run(struct collector *c, const struct tui_source *src,
		 const struct tui_opts *o, volatile sig_atomic_t *stop)
{
	(void)c;
	(void)src;
	(void)o;
	(void)stop;
	return -ENOSYS;
}
