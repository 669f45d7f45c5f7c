/*
 * libFuzzer target: procfs_parse_maps_line (user/source/procfs.c) on one
 * /proc/PID/maps line. The path part is chosen by the traced process.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "procfs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct maps_entry e;
	char *line = malloc(size + 1);

	if (!line)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	if (procfs_parse_maps_line(line, &e) == 0) {
		/* What the callers rely on. */
		if (e.end < e.start || strlen(e.perms) != 4 ||
		    strlen(e.path) >= sizeof(e.path) || strchr(e.path, '\n'))
			abort();
	}
	free(line);
	return 0;
}
