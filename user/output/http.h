/*
 * memtop's HTTP endpoint (--listen): /metrics for Prometheus, and
 * /debug/pprof/heap as Go's net/http/pprof serves it, for Parca, Grafana
 * Alloy's pyroscope.scrape and go tool pprof. libmicrohttpd serves it from
 * its own thread, from bytes rendered at each refresh and published under a
 * lock held only to swap a pointer: a slow or hostile client never holds up
 * tracing, and never sees a snapshot being changed.
 */
#ifndef MEMTOP_OUTPUT_HTTP_H
#define MEMTOP_OUTPUT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h> /* memtop.h, reached through snapshot.h, needs __u32 */
#include "snapshot.h"

struct http_server;

struct http_opts {
	int metrics_sites;  /* --metrics-sites: per-site series for the top N */
	unsigned timeout_s; /* idle connections closed after this; 0: 10 s */
};

/*
 * Listen on listen ("ADDR:PORT", "[ADDR6]:PORT" or ":PORT" for 127.0.0.1;
 * port 0 picks a free one) and start serving; until the first publish,
 * every page answers 503. Returns 0, or -errno with one line in err naming
 * the problem (a bad address, the port in use).
 */
int http_open(struct http_server **out, const char *listen,
	      const struct http_opts *o, char *err, size_t errlen);
/* Where it listens, as "127.0.0.1:9464" or "[::1]:9464". */
const char *http_address(const struct http_server *h);
/* Reachable from this machine only (127.0.0.0/8 or ::1)? */
bool http_is_loopback(const struct http_server *h);
/*
 * Render the snapshot's pages and make them the ones served. Called from
 * the refresh loop; 0 or -ENOMEM (the pages served stay the previous ones).
 */
int http_publish(struct http_server *h, const struct snapshot *s);
/* Requests answered so far, by class, for tests and -v. */
void http_stats(const struct http_server *h, unsigned long *ok,
		unsigned long *client_errors);
void http_close(struct http_server *h);

#endif
