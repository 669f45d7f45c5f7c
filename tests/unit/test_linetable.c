/*
 * Unit test for python_linetable_line (user/python/python.c), the decoder of
 * CPython 3.11+ location tables read from a traced interpreter's memory.
 * Ground truth is CPython itself: each python3 found (PATH, pyenv's 3.11+)
 * compiles tests/unit/data/linetables.py and prints its code objects' tables
 * with the line co_lines() gives every code unit; the decoder must give the
 * same. Every truncation of a table must give either that line or -1 (never
 * another line, never a read past the end: ASan in `make asan`).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "python.h"

#include "check.h"

#ifndef TEST_DATA
#define TEST_DATA "tests/unit/data"
#endif

struct code {
	int firstlineno;
	uint8_t *tab;
	size_t len;
	int *line; /* CPython's line of each unit */
	int nunits, cap;
};

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int decode_hex(const char *h, struct code *c)
{
	size_t n = strlen(h);

	while (n && (h[n - 1] == '\n' || h[n - 1] == ' '))
		n--;
	c->tab = malloc(n / 2 + 1);
	if (!c->tab)
		return -1;
	for (c->len = 0; c->len < n / 2; c->len++) {
		int hi = hexval(h[2 * c->len]), lo = hexval(h[2 * c->len + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		c->tab[c->len] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* One code object: every unit as CPython says, every truncation safe. */
static void check_code(const char *py, int idx, const struct code *c)
{
	int bad = 0, badcut = 0;

	for (int u = 0; u < c->nunits; u++) {
		int got = python_linetable_line(c->tab, c->len, c->firstlineno,
						u);

		if (got != c->line[u] && bad++ < 3)
			printf("  %s code %d unit %d: got %d, CPython %d\n", py,
			       idx, u, got, c->line[u]);
		for (size_t cut = 0; cut < c->len; cut++) {
			int part = python_linetable_line(c->tab, cut,
							 c->firstlineno, u);

			if (part != -1 && part != c->line[u] && badcut++ < 3)
				printf("  %s code %d unit %d, %zu of %zu "
				       "bytes: got %d, want %d or -1\n",
				       py, idx, u, cut, c->len, part,
				       c->line[u]);
		}
	}
	check(!bad,
	      "%s code %d (first line %d, %zu bytes): %d units as CPython", py,
	      idx, c->firstlineno, c->len, c->nunits);
	check(!badcut, "%s code %d: every truncation gives the line or -1", py,
	      idx);
}

/* 1 when py ran the script, 0 when it skipped (older than 3.11). */
static int run_python(const char *py)
{
	char cmd[1024], buf[65536];
	struct code c = {0};
	int ncodes = 0, ran = 1;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "%s %s/linetables.py 2>&1", py, TEST_DATA);
	f = popen(cmd, "r");
	if (!f) {
		check(0, "%s: cannot run: %s", py, strerror(errno));
		return 0;
	}
	while (fgets(buf, sizeof(buf), f)) {
		int u, line;

		if (!strncmp(buf, "SKIP", 4)) {
			printf("skip - %s: %s", py, buf + 5);
			ran = 0;
		} else if (!strncmp(buf, "CODE ", 5)) {
			char *hex;

			if (c.tab)
				check_code(py, ncodes++, &c);
			free(c.tab);
			c.tab = NULL;
			c.nunits = 0;
			c.firstlineno = (int)strtol(buf + 5, &hex, 10);
			if (decode_hex(hex + 1, &c)) {
				check(0, "%s: bad table line %.60s", py, buf);
				break;
			}
		} else if (sscanf(buf, "U %d %d", &u, &line) == 2 &&
			   u == c.nunits) {
			if (c.nunits == c.cap) {
				int ncap = c.cap ? c.cap * 2 : 64;
				int *nl = realloc(c.line, ncap * sizeof(*nl));

				if (!nl)
					break;
				c.line = nl;
				c.cap = ncap;
			}
			c.line[c.nunits++] = line;
		} else {
			check(0, "%s: unexpected output: %.200s", py, buf);
			ran = 0;
		}
	}
	if (c.tab)
		check_code(py, ncodes++, &c);
	if (pclose(f) != 0) {
		check(0, "%s linetables.py failed", py);
		ran = 0;
	}
	free(c.tab);
	free(c.line);
	if (ran)
		check(ncodes >= 10, "%s: %d code objects compared", py, ncodes);
	return ran;
}

/* Hand-made cases CPython does not emit but a hostile process may. */
static void check_hostile(void)
{
	const uint8_t not_entry[] = {0x00, 0x80};
	const uint8_t endless[] = {0xe8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	const uint8_t noloc[] = {0xf8}; /* code 15, one unit */

	check(python_linetable_line(NULL, 0, 7, 0) == -1, "empty table: -1");
	check(python_linetable_line(not_entry, sizeof(not_entry), 7, 0) == -1,
	      "a byte without the entry bit: -1");
	check(python_linetable_line(endless, sizeof(endless), 7, 0) == -1,
	      "a varint that never ends: -1");
	check(python_linetable_line(noloc, sizeof(noloc), 7, 0) == -1,
	      "no location: -1");
	check(python_linetable_line(noloc, sizeof(noloc), 7, -1) == -1,
	      "a negative unit: -1");
}

int main(void)
{
	const char *pys[64];
	int npys = 0, ran = 0;
	glob_t g = {0};

	check_hostile();
	pys[npys++] = "python3";
	if (getenv("HOME")) {
		char pat[512];

		snprintf(pat, sizeof(pat),
			 "%s/.pyenv/versions/3.1[1-9]*/bin/python3",
			 getenv("HOME"));
		if (!glob(pat, 0, NULL, &g))
			for (size_t i = 0; i < g.gl_pathc && npys < 64; i++)
				pys[npys++] = g.gl_pathv[i];
	}
	for (int i = 0; i < npys; i++)
		ran += run_python(pys[i]);
	check(ran > 0, "at least one CPython 3.11+ compared (%d)", ran);
	globfree(&g);
	printf("%d checks, %d failed\n", checks, failures);
	return failures != 0;
}
