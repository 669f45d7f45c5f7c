/*
 * libFuzzer target: config_parse (user/model/config.c). The input is argv after
 * "memtop", one argument per NUL-separated piece.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "config.h"

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1), *argv[MAX_ARGS + 2], err[256];
	struct config cfg;
	int argc = 0, rc;
	size_t i, start = 0;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	argv[argc++] = "memtop";
	for (i = 0; i <= size && argc <= MAX_ARGS; i++) {
		if (buf[i] == '\0') {
			argv[argc++] = buf + start;
			start = i + 1;
		}
	}
	argv[argc] = NULL;
	rc = config_parse(&cfg, argc, argv, err, sizeof(err));
	if (rc < 0) {
		/* One line, never empty. */
		if (!err[0] || strchr(err, '\n') || strlen(err) >= sizeof(err))
			abort();
	} else if (rc == CONFIG_RUN) {
		/* No -p and no command is system-wide mode. */
		if (cfg.npids < 0 || cfg.npids > CONFIG_MAX_PIDS ||
		    (cfg.npids && cfg.command) ||
		    (cfg.command && !cfg.command[0]) ||
		    cfg.nlibs > CONFIG_MAX_LIBS || !(cfg.interval_s >= 0.01) ||
		    cfg.interval_s > 3600 || cfg.iterations < 0 ||
		    cfg.max_allocs < 1 || cfg.max_stacks < 1)
			abort();
		for (int k = 0; k < cfg.npids; k++)
			if (cfg.pids[k] <= 0)
				abort();
	}
	free(buf);
	return 0;
}
