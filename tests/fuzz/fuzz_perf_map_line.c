/*
 * libFuzzer target: symbolizer_parse_perf_map_line (user/symbol/symbolizer.c)
 * on one /tmp/perf-PID.map line, written by the traced process.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "symbolizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t start, len;
	const char *name;
	size_t namelen;
	char *line = malloc(size + 1);

	if (!line)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	if (symbolizer_parse_perf_map_line(line, &start, &len, &name,
					   &namelen) == 0) {
		/* The name lies inside the line, is non-empty, printable. */
		if (name < line || name + namelen > line + size || !namelen ||
		    len == 0 || start + len < start)
			abort();
		for (size_t i = 0; i < namelen; i++)
			if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
				abort();
	}
	free(line);
	return 0;
}
