/*
 * Unit tests of the HTTP endpoint, without root or BPF: the server listens
 * on a free loopback port, a hand-made snapshot is published, and plain
 * sockets play the clients: 503 before the first publish, the pages after,
 * 404, 405 with Allow, an oversized request refused, a client that sends
 * half a request and one that leaves mid-response while others are served,
 * and the address errors (bad syntax, a port in use) as one line each.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "check.h"
#include "output/http.h"

static struct snap_proc procs[1];
static struct snapshot snap;
static int port;

static int connect_port(int p)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)p)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Send req, read the whole answer (the server closes or times out). */
/* Connect and send req; the socket, or -1. */
static int send_request(const char *req, size_t reqlen)
{
	int fd = connect_port(port);

	/* Refused mid-send is an answer too: it is read all the same. */
	if (fd >= 0 && send(fd, req, reqlen, MSG_NOSIGNAL) < 0) {
	}
	return fd;
}

/* Read the whole answer (the server closes, or 5 s of silence). */
static char *read_answer(int fd, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap + 1);

	*len = 0;
	if (fd < 0 || !buf) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	for (;;) {
		struct pollfd pfd = {fd, POLLIN, 0};
		ssize_t r;

		if (poll(&pfd, 1, 5000) <= 0)
			break;
		if (n == cap) {
			char *nb = realloc(buf, 2 * cap + 1);

			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		r = recv(fd, buf + n, cap - n, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static char *request(const char *req, size_t reqlen, size_t *len)
{
	return read_answer(send_request(req, reqlen), len);
}

#define GET_PPROF                                                              \
	"GET /debug/pprof/heap HTTP/1.1\r\nHost: x\r\nConnection: "            \
	"close\r\n\r\n"

static char *get(const char *method, const char *path, size_t *len)
{
	char req[512];
	int n = snprintf(req, sizeof(req),
			 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: "
			 "close\r\n\r\n",
			 method, path);

	return request(req, (size_t)n, len);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int status_of(const char *resp)
{
	int code = 0;

	if (!resp || sscanf(resp, "HTTP/1.%*d %d", &code) != 1)
		return 0;
	return code;
}

/* One request, its status and (when needle) a part of its answer. */
static void expect(const char *method, const char *path, int status,
		   const char *needle, const char *what)
{
	size_t len;
	char *r = get(method, path, &len);

	check(status_of(r) == status && (!needle || strstr(r, needle)), "%s",
	      what);
	free(r);
}

static void test_errors(void)
{
	struct http_server *h = NULL, *h2 = NULL;
	char err[256], addr[64];

	check(http_open(&h, "nonsense", NULL, err, sizeof(err)) == -EINVAL &&
		      strstr(err, "ADDR:PORT") && !strchr(err, '\n'),
	      "no colon: %s", err);
	check(http_open(&h, ":99999", NULL, err, sizeof(err)) == -EINVAL &&
		      strstr(err, "0 to 65535"),
	      "port out of range: %s", err);
	check(http_open(&h, ":80x", NULL, err, sizeof(err)) == -EINVAL,
	      "port not a number: %s", err);
	check(http_open(&h, "256.1.1.1:80", NULL, err, sizeof(err)) ==
			      -EINVAL &&
		      strstr(err, "cannot resolve"),
	      "bad IPv4 address: %s", err);
	check(http_open(&h, "[::1:80", NULL, err, sizeof(err)) == -EINVAL,
	      "unclosed IPv6 bracket: %s", err);
	check(!http_open(&h, ":0", NULL, err, sizeof(err)), ":0 listens");
	if (!h)
		return;
	check(!strncmp(http_address(h), "127.0.0.1:", 10) &&
		      http_is_loopback(h),
	      "the default address is 127.0.0.1 (%s)", http_address(h));
	snprintf(addr, sizeof(addr), "%s", http_address(h));
	check(http_open(&h2, addr, NULL, err, sizeof(err)) == -EADDRINUSE &&
		      strstr(err, "Address already in use") && !h2,
	      "port in use: %s", err);
	http_close(h);
	h = NULL;
	check(!http_open(&h, "127.0.0.2:0", NULL, err, sizeof(err)) &&
		      http_is_loopback(h),
	      "127.0.0.2 is loopback too");
	http_close(h);
	h = NULL;
	if (!http_open(&h, "[::1]:0", NULL, err, sizeof(err))) {
		check(!strncmp(http_address(h), "[::1]:", 6) &&
			      http_is_loopback(h),
		      "IPv6 loopback (%s)", http_address(h));
		http_close(h);
	}
}

int main(void)
{
	struct http_opts o = {.metrics_sites = 0, .timeout_s = 2};
	struct http_server *h = NULL;
	char err[256], *r, big[40000];
	size_t len;
	int slow, gone[20], fd;

	test_errors();
	if (http_open(&h, "127.0.0.1:0", &o, err, sizeof(err))) {
		check(0, "http_open: %s", err);
		return 1;
	}
	port = atoi(strrchr(http_address(h), ':') + 1);

	expect("GET", "/metrics", 503, "Retry-After: 1",
	       "503 before the first publish");

	procs[0] = (struct snap_proc){
		.pid = 42, .comm = "app", .outstanding_bytes = 12345};
	snap = (struct snapshot){.scale = 1, .nprocs = 1, .procs = procs};
	check(!http_publish(h, &snap), "publish");

	r = get("GET", "/metrics", &len);
	check(status_of(r) == 200 && strstr(r, "text/plain; version=0.0.4") &&
		      strstr(r, "\nmemtop_outstanding_bytes{pid=\"42\",comm="
				"\"app\"} 12345\n"),
	      "/metrics serves the published figures");
	free(r);
	r = get("HEAD", "/metrics", &len);
	check(status_of(r) == 200 && !strstr(r, "memtop_outstanding_bytes{"),
	      "HEAD: headers only");
	free(r);
	/* Nobody asked for a profile yet: that publish rendered none, so the
	 * request waits for the next one, which renders it. */
	fd = send_request(GET_PPROF, strlen(GET_PPROF));
	{
		struct pollfd pfd = {fd, POLLIN, 0};

		check(fd >= 0 && poll(&pfd, 1, 300) == 0,
		      "a profile request waits for the next publish");
	}
	check(!http_publish(h, &snap), "publish again");
	r = read_answer(fd, &len);
	check(status_of(r) == 200 && strstr(r, "application/octet-stream") &&
		      strstr(r, "\r\n\r\n\x1f\x8b"),
	      "/debug/pprof/heap is gzip, once published");
	free(r);
	check(!http_publish(h, &snap), "a publish while profiles are wanted");
	expect("GET", "/debug/pprof/heap", 200, "\r\n\r\n\x1f\x8b",
	       "while wanted, every publish renders it: served at once");
	/* ?debug=1: the text form, wanted (and so rendered) on its own. */
	{
		static const char req[] = "GET /debug/pprof/heap?debug=1 "
					  "HTTP/1.1\r\nHost: x\r\nConnection: "
					  "close\r\n\r\n";

		fd = send_request(req, sizeof(req) - 1);
	}
	/* The server thread may not have read the request yet when a publish
	 * happens (then that publish renders no text profile): publish until
	 * the answer comes. */
	{
		struct pollfd pfd = {fd, POLLIN, 0};
		int tries = 0, pub = 0;

		do
			pub |= http_publish(h, &snap);
		while (fd >= 0 && poll(&pfd, 1, 100) == 0 && ++tries < 100);
		check(!pub, "publish for the text profile");
	}
	r = read_answer(fd, &len);
	check(status_of(r) == 200 && strstr(r, "text/plain; charset=utf-8") &&
		      strstr(r,
			     "\r\n\r\nheap profile: 0: 0 [0: 0] @ heap/2\n") &&
		      strstr(r, "# pid 42 app: outstanding 12345 B"),
	      "/debug/pprof/heap?debug=1 is Go's text heap profile");
	free(r);
	expect("GET", "/debug/pprof/heap?debug=0", 200, "\r\n\r\n\x1f\x8b",
	       "?debug=0 is the protobuf");
	/* ?seconds=N, a delta profile: bad values refused with
	 * net/http/pprof's answers, a good one answered after N seconds. */
	{
		static const char *const bad[] = {
			"0",   "-1",   "+-1",  "abc",
			"1.5", "%201", "1%20", "99999999999999999999"};
		static const char req[] = "GET /debug/pprof/heap?seconds=1 "
					  "HTTP/1.1\r\nHost: x\r\nConnection: "
					  "close\r\n\r\n";
		char path[128];
		struct pollfd pfd;
		double t0, waited;
		int tries = 0, pub = 0;

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			snprintf(path, sizeof(path),
				 "/debug/pprof/heap?seconds=%s", bad[i]);
			r = get("GET", path, &len);
			check(status_of(r) == 400 &&
				      strstr(r,
					     "invalid value for \"seconds\""),
			      "?seconds=%s: 400", bad[i]);
			free(r);
		}
		expect("GET", "/debug/pprof/heap?seconds=", 200,
		       "\r\n\r\n\x1f\x8b",
		       "an empty ?seconds= is the plain profile, as in Go");
		expect("GET", "/debug/pprof/heap?seconds=301", 400, "exceeds",
		       "?seconds=301: 400, past the longest window");
		expect("GET", "/debug/pprof/heap?seconds=1&debug=1", 400,
		       "incompatible", "?seconds with ?debug: 400");
		fd = send_request(req, sizeof(req) - 1);
		pfd = (struct pollfd){fd, POLLIN, 0};
		t0 = now_s();
		/* Refreshes every 100 ms: the first one after the request
		 * takes the baseline, the first one a second after it
		 * answers. */
		do
			pub |= http_publish(h, &snap);
		while (fd >= 0 && poll(&pfd, 1, 100) == 0 && ++tries < 100);
		waited = now_s() - t0;
		check(!pub, "publish for the delta profile");
		r = read_answer(fd, &len);
		check(status_of(r) == 200 &&
			      strstr(r, "application/octet-stream") &&
			      strstr(r, "\r\n\r\n\x1f\x8b"),
		      "?seconds=1 is a gzip profile");
		check(waited >= 1.0 && waited < 5.0,
		      "?seconds=1 answered a second on (%.2f s)", waited);
		free(r);
	}
	expect("GET", "/", 200, "/debug/pprof/heap", "/ is an index");
	expect("GET", "/nope", 404, NULL, "unknown path: 404");
	expect("GET", "/metrics/../etc/passwd", 404, NULL, "dot-dot path: 404");
	expect("POST", "/metrics", 405, "Allow: GET, HEAD",
	       "POST: 405 with Allow");
	expect("DELETE", "/", 405, NULL, "DELETE: 405");

	/* A request header far past the per-connection memory limit. */
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /metrics HTTP/1.1\r\nX-Big: ", 30);
	r = request(big, sizeof(big), &len);
	check(len == 0 || (status_of(r) >= 400 && status_of(r) < 500),
	      "oversized request refused (%d)", status_of(r));
	free(r);

	/* Half a request held open, and clients that leave at once: the
	 * next scrape is served all the same. */
	slow = connect_port(port);
	check(slow >= 0 && send(slow, "GET /metr", 9, MSG_NOSIGNAL) == 9,
	      "a slow client holds a connection");
	for (int i = 0; i < 20; i++) {
		gone[i] = connect_port(port);
		if (gone[i] >= 0) {
			struct linger lg = {1, 0}; /* close with a reset */

			send(gone[i], "GET /debug/pprof/heap HTTP/1.1\r\n\r\n",
			     34, MSG_NOSIGNAL);
			setsockopt(gone[i], SOL_SOCKET, SO_LINGER, &lg,
				   sizeof(lg));
			close(gone[i]);
		}
	}
	expect("GET", "/metrics", 200, NULL,
	       "served while a slow client waits");
	if (slow >= 0) {
		struct pollfd pfd = {slow, POLLIN, 0};
		char c;

		/* timeout_s is 2: closed by the server well before 10 s. */
		check(poll(&pfd, 1, 10000) == 1 && recv(slow, &c, 1, 0) <= 0,
		      "the slow client is timed out and closed");
		close(slow);
	}
	/* Publish while clients come and go: old pages are freed by the last
	 * response that holds them (ASan sees any mistake). */
	for (int i = 0; i < 50; i++) {
		procs[0].outstanding_bytes = 1000 + i;
		check(!http_publish(h, &snap), "republish %d", i);
	}
	r = get("GET", "/metrics", &len);
	check(status_of(r) == 200 && strstr(r, "memtop_outstanding_bytes{pid="
					       "\"42\",comm=\"app\"} 1049\n"),
	      "the latest publish is served");
	free(r);
	http_close(h);
	printf("%d checks, %d failed\n", checks, failures);
	return failures != 0;
}
