/*
 * The unit tests' one assertion helper: each check prints "ok - what" or
 * "FAIL - what" and is counted; a test's main returns failures != 0.
 */
#ifndef MEMTOP_TEST_CHECK_H
#define MEMTOP_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int failures, checks;

__attribute__((format(printf, 2, 3), unused)) static void
check(int ok, const char *fmt, ...)
{
	va_list ap;

	checks++;
	if (!ok)
		failures++;
	printf("%s - ", ok ? "ok" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

__attribute__((unused)) static void check_str(const char *got, const char *want,
					      const char *what)
{
	if (got && want && !strcmp(got, want))
		check(1, "%s: \"%s\"", what, want);
	else
		check(0, "%s: got \"%s\", want \"%s\"", what,
		      got ? got : "(null)", want ? want : "(null)");
}

#endif
