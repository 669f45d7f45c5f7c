/*
 * Allocator wrappers: functions that only pass an allocation on (redis's
 * zmalloc, PostgreSQL's palloc, glib's g_malloc, operator new, the C++
 * standard library, ...). A site is named after the first
 * frame outside them; the stack itself keeps every frame. A built-in list
 * of POSIX extended regular expressions on the demangled function name,
 * plus the user's own (--skip-frames).
 */
#ifndef MEMTOP_SYMBOL_WRAPPERS_H
#define MEMTOP_SYMBOL_WRAPPERS_H

#include <stdbool.h>
#include <stddef.h>

struct wrappers;

/* The built-in list plus n user expressions; -EINVAL with a message in err
 * for an expression that does not compile. */
int wrappers_new(struct wrappers **out, char *const *user, int n, char *err,
		 size_t errlen);
bool wrappers_match(const struct wrappers *w, const char *func);
void wrappers_free(struct wrappers *w);

#endif
