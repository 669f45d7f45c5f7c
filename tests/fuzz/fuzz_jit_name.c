/*
 * libFuzzer target: symbolizer_parse_jit_name (user/symbol/symbolizer.c) on
 * the name part of one perf-map line (V8's "JS:~fn file:line:col"),
 * written by the traced process. The input is copied to a buffer of its
 * exact size, not NUL-terminated, as the symbolizer keeps perf-map names
 * back to back: a read past the name is an out-of-bounds read here.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "symbolizer.h"

static int inside(const char *p, size_t n, const char *raw, size_t len)
{
	return p >= raw && n <= len && (size_t)(p - raw) <= len - n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jit_name a, b;
	char *raw = malloc(size ? size : 1);
	int rc;

	if (!raw)
		return 0;
	memcpy(raw, data, size);
	rc = symbolizer_parse_jit_name(raw, size, &a);
	if (!size) {
		if (rc == 0)
			abort();
		free(raw);
		return 0;
	}
	if (rc != 0)
		abort();
	if (a.name && (!a.name_len || !inside(a.name, a.name_len, raw, size)))
		abort();
	if (!a.file) {
		/* Not a program's source: named by the whole text. */
		if (a.name != raw || a.name_len != size || a.line)
			abort();
	} else {
		if (!a.file_len || !inside(a.file, a.file_len, raw, size) ||
		    a.line <= 0 || memchr(a.file, '/', a.file_len) ||
		    (a.name && a.name + a.name_len > a.file))
			abort();
	}
	/* The same text, the same answer. */
	if (symbolizer_parse_jit_name(raw, size, &b) || a.name != b.name ||
	    a.name_len != b.name_len || a.file != b.file ||
	    a.file_len != b.file_len || a.line != b.line ||
	    a.func_frame != b.func_frame)
		abort();
	free(raw);
	return 0;
}
