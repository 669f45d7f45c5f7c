/*
 * The HTTP endpoint. memtop binds the socket itself, so a bad address or a
 * port in use is one clear line before anything is attached, then hands it
 * to libmicrohttpd, which runs one internal thread (epoll) with bounded
 * connections, a per-connection memory limit (oversized requests are
 * refused by libmicrohttpd itself) and an idle timeout. Each refresh
 * renders the pages into refcounted blobs; the server thread takes a
 * reference under a mutex and hands the blob to libmicrohttpd, which drops
 * it when the response is done or the client has gone, so neither side ever
 * waits for the other beyond a pointer swap. The profile costs far more
 * than the metrics (~4 us a site, 0.2 s at 50k sites), so it is rendered
 * only while someone asks for it: a request that finds none from the latest
 * refresh is suspended until the next one has rendered it, and refreshes
 * keep rendering it for PPROF_WANTED_NS after the last request. A delta
 * profile (?seconds=N, as net/http/pprof serves one) waits the same way,
 * twice: the next refresh takes a baseline of every site's figures, the
 * first refresh N seconds after it renders the difference; the request is
 * suspended meanwhile and the server thread does no work for it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <microhttpd.h>
#include "http.h"
#include "metrics.h"
#include "pprof.h"

#define DEFAULT_HOST	"127.0.0.1"
#define MAX_CONNECTIONS 64
#define MEMORY_LIMIT	(32 * 1024) /* per connection: request line + headers */
#define PPROF_WANTED_NS (300ull * 1000000000ull)
/* Delta profiles: the longest window (net/http/pprof refuses one past the
 * server's write timeout; memtop's is this), and how many at once, each
 * holding a copy of every site's figures while it waits. */
#define DELTA_MAX_S 300
#define MAX_DELTAS  4

enum { PROFILE_PB, PROFILE_TEXT };

struct blob {
	atomic_int refs;
	size_t len;
	char data[];
};

enum { DELTA_FREE, DELTA_BASE, DELTA_END, DELTA_DONE };

/* A delta profile request: its state moves on under the lock, the server
 * thread making it (FREE -> BASE) and freeing it when its connection is
 * done, the refresh loop taking the baseline (BASE -> END) and rendering
 * the answer (END -> DONE, out NULL when that failed). */
struct delta {
	int state;
	unsigned seconds;
	struct MHD_Connection *c;
	struct pprof_base *base;
	uint64_t t0; /* CLOCK_MONOTONIC ns of the baseline */
	struct blob *out;
};

struct http_server {
	struct MHD_Daemon *mhd;
	int fd;
	struct http_opts opts;
	char addr[INET6_ADDRSTRLEN + 8];
	bool loopback;
	pthread_mutex_t lock;
	struct blob *metrics; /* NULL until the first publish */
	/* The profile as pprof's protobuf, and as text (?debug=1): each
	 * rendered at a publish only while someone asks for it. */
	struct blob *profile[2];
	uint64_t seq;	      /* publishes */
	uint64_t prof_seq[2]; /* the publish each profile was rendered at */
	/* Profile requests waiting for the next publish (under lock). */
	struct MHD_Connection *waiting[MAX_CONNECTIONS];
	int nwaiting;
	atomic_uint_fast64_t wanted_until[2]; /* CLOCK_MONOTONIC ns */
	struct delta deltas[MAX_DELTAS];
	atomic_ulong ok, client_errors;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Under h->lock: every waiting profile request is answered again. */
static void resume_waiting(struct http_server *h)
{
	for (int i = 0; i < h->nwaiting; i++)
		MHD_resume_connection(h->waiting[i]);
	h->nwaiting = 0;
}

static const char index_html[] =
	"<!DOCTYPE html>\n<html><head><title>memtop</title></head><body>\n"
	"<h1>memtop</h1>\n<ul>\n"
	"<li><a href=\"/metrics\">/metrics</a>: Prometheus text "
	"exposition</li>\n"
	"<li><a href=\"/debug/pprof/heap\">/debug/pprof/heap</a>: heap profile "
	"(pprof, gzip), as Go's net/http/pprof serves it; <a "
	"href=\"/debug/pprof/heap?debug=1\">?debug=1</a>: as text</li>\n"
	"</ul>\n</body></html>\n";

static const char pprof_index_html[] =
	"<!DOCTYPE "
	"html>\n<html><head><title>/debug/pprof/</title></head><body>\n"
	"<p>Profiles:</p>\n<ul>\n"
	"<li><a href=\"heap\">heap</a>: outstanding memory by call site (<a "
	"href=\"heap?debug=1\">as text</a>)</li>\n"
	"<li><a href=\"allocs\">allocs</a>: the same profile</li>\n"
	"<li>heap?seconds=N: what changed over the next N seconds (N <= "
	"300)</li>\n"
	"</ul>\n</body></html>\n";

static void blob_put(struct blob *b)
{
	if (b && atomic_fetch_sub(&b->refs, 1) == 1)
		free(b);
}

static void blob_free_cb(void *cls)
{
	blob_put(cls);
}

/* A blob holding buf (copied), with one reference. */
static struct blob *blob_new(const void *buf, size_t len)
{
	struct blob *b = malloc(sizeof(*b) + len);

	if (!b)
		return NULL;
	atomic_init(&b->refs, 1);
	b->len = len;
	memcpy(b->data, buf, len);
	return b;
}

static struct blob *blob_get(struct http_server *h, struct blob **slot)
{
	struct blob *b;

	pthread_mutex_lock(&h->lock);
	b = *slot;
	if (b)
		atomic_fetch_add(&b->refs, 1);
	pthread_mutex_unlock(&h->lock);
	return b;
}

static enum MHD_Result queue_static(struct MHD_Connection *c, unsigned code,
				    const char *type, const char *body)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	if (code == MHD_HTTP_SERVICE_UNAVAILABLE)
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result queue_blob(struct http_server *h,
				  struct MHD_Connection *c, struct blob **slot,
				  const char *type, bool attachment)
{
	struct blob *b = blob_get(h, slot);
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (!b)
		return queue_static(
			c, MHD_HTTP_SERVICE_UNAVAILABLE,
			"text/plain; charset=utf-8",
			"memtop has not taken its first sample yet\n");
	r = MHD_create_response_from_buffer_with_free_callback_cls(
		b->len, b->data, blob_free_cb, b);
	if (!r) {
		blob_put(b);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (attachment)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_DISPOSITION,
					"attachment; filename=\"heap\"");
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result queue_error(struct http_server *h,
				   struct MHD_Connection *c, unsigned code,
				   const char *body)
{
	atomic_fetch_add(&h->client_errors, 1);
	return queue_static(c, code, "text/plain; charset=utf-8", body);
}

/* "seconds" as net/http/pprof takes it (strconv.ParseInt, then > 0): a
 * decimal integer, an optional '+' before it, nothing around it. */
static bool parse_seconds(const char *v, unsigned long *out)
{
	const char *p = v && *v == '+' ? v + 1 : v;
	char *end;

	if (!p || *p < '0' || *p > '9')
		return false;
	errno = 0;
	*out = strtoul(p, &end, 10);
	return !errno && !*end && *out > 0;
}

/*
 * /debug/pprof/heap?seconds=N: the first call checks the request and
 * parks it in a delta slot, suspended; the refresh loop resumes it with the
 * answer rendered (or at close, without one).
 */
static enum MHD_Result delta_request(struct http_server *h,
				     struct MHD_Connection *c, const char *secs,
				     void **req_cls)
{
	struct delta *d = *req_cls;
	const char *dbg;
	unsigned long n;
	bool done;

	if (d) {
		pthread_mutex_lock(&h->lock);
		done = d->state == DELTA_DONE && d->out;
		pthread_mutex_unlock(&h->lock);
		if (!done)
			return queue_static(c, MHD_HTTP_SERVICE_UNAVAILABLE,
					    "text/plain; charset=utf-8",
					    "memtop could not render the delta "
					    "profile (stopping, or out of "
					    "memory)\n");
		atomic_fetch_add(&h->ok, 1);
		return queue_blob(h, c, &d->out, "application/octet-stream",
				  true);
	}
	/* net/http/pprof's answers, word for word. */
	if (!parse_seconds(secs, &n))
		return queue_error(h, c, MHD_HTTP_BAD_REQUEST,
				   "invalid value for \"seconds\" - must be a "
				   "positive integer\n");
	dbg = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "debug");
	if (dbg && atoi(dbg) != 0)
		return queue_error(h, c, MHD_HTTP_BAD_REQUEST,
				   "seconds and debug params are "
				   "incompatible\n");
	if (n > DELTA_MAX_S)
		return queue_error(h, c, MHD_HTTP_BAD_REQUEST,
				   "profile duration exceeds server's "
				   "WriteTimeout\n");
	pthread_mutex_lock(&h->lock);
	for (int i = 0; i < MAX_DELTAS && !d; i++)
		if (h->deltas[i].state == DELTA_FREE)
			d = &h->deltas[i];
	if (d) {
		d->state = DELTA_BASE;
		d->seconds = (unsigned)n;
		d->c = c;
		*req_cls = d;
		MHD_suspend_connection(c);
	}
	pthread_mutex_unlock(&h->lock);
	if (!d)
		return queue_static(c, MHD_HTTP_SERVICE_UNAVAILABLE,
				    "text/plain; charset=utf-8",
				    "too many delta profiles at once\n");
	return MHD_YES;
}

static bool is_delta(const struct http_server *h, const void *p)
{
	return p >= (const void *)h->deltas &&
	       p < (const void *)(h->deltas + MAX_DELTAS);
}

/* A connection is done (answered, or gone): its delta slot is free. */
static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_server *h = cls;
	struct delta *d = *req_cls;
	struct blob *out;
	struct pprof_base *base;

	(void)c;
	(void)toe;
	if (!d || !is_delta(h, d))
		return;
	pthread_mutex_lock(&h->lock);
	out = d->out;
	base = d->base;
	memset(d, 0, sizeof(*d));
	pthread_mutex_unlock(&h->lock);
	*req_cls = NULL;
	blob_put(out);
	pprof_base_free(base);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_len, void **req_cls)
{
	struct http_server *h = cls;
	bool head = !strcmp(method, MHD_HTTP_METHOD_HEAD);

	(void)version;
	(void)upload;
	(void)upload_len;
	/* Answered at once, before any body is read: nothing here takes one. */
	if (strcmp(method, MHD_HTTP_METHOD_GET) && !head) {
		atomic_fetch_add(&h->client_errors, 1);
		return queue_static(c, MHD_HTTP_METHOD_NOT_ALLOWED,
				    "text/plain; charset=utf-8",
				    "only GET and HEAD\n");
	}
	if (!strcmp(url, "/metrics")) {
		atomic_fetch_add(&h->ok, 1);
		return queue_blob(h, c, &h->metrics,
				  "text/plain; version=0.0.4; charset=utf-8",
				  false);
	}
	/* allocs: Parca's and Alloy's default path for memory; Go serves
	 * the same profile there. */
	if (!strcmp(url, "/debug/pprof/heap") ||
	    !strcmp(url, "/debug/pprof/allocs")) {
		/* ?debug=N, N > 0: Go's text form, for people and scripts. */
		const char *dbg = MHD_lookup_connection_value(
			c, MHD_GET_ARGUMENT_KIND, "debug");
		const char *secs = MHD_lookup_connection_value(
			c, MHD_GET_ARGUMENT_KIND, "seconds");
		int k = dbg && atoi(dbg) > 0 ? PROFILE_TEXT : PROFILE_PB;
		bool stale;

		/* An empty ?seconds= is the plain profile, as in Go. */
		if ((secs && *secs) || is_delta(h, *req_cls))
			return delta_request(h, c, secs, req_cls);

		atomic_store(&h->wanted_until[k], now_ns() + PPROF_WANTED_NS);
		pthread_mutex_lock(&h->lock);
		stale = h->seq && (!h->profile[k] || h->prof_seq[k] != h->seq);
		/* Once only: after the next publish, whatever it left. */
		if (stale && !*req_cls && h->nwaiting < MAX_CONNECTIONS) {
			*req_cls = h;
			h->waiting[h->nwaiting++] = c;
			MHD_suspend_connection(c);
			pthread_mutex_unlock(&h->lock);
			return MHD_YES;
		}
		pthread_mutex_unlock(&h->lock);
		atomic_fetch_add(&h->ok, 1);
		if (k == PROFILE_TEXT)
			return queue_blob(h, c, &h->profile[k],
					  "text/plain; charset=utf-8", false);
		return queue_blob(h, c, &h->profile[k],
				  "application/octet-stream", true);
	}
	if (!strcmp(url, "/")) {
		atomic_fetch_add(&h->ok, 1);
		return queue_static(c, MHD_HTTP_OK, "text/html; charset=utf-8",
				    index_html);
	}
	if (!strcmp(url, "/debug/pprof/") || !strcmp(url, "/debug/pprof")) {
		atomic_fetch_add(&h->ok, 1);
		return queue_static(c, MHD_HTTP_OK, "text/html; charset=utf-8",
				    pprof_index_html);
	}
	atomic_fetch_add(&h->client_errors, 1);
	return queue_static(c, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8",
			    "not found: see / for the pages memtop serves\n");
}

/* libmicrohttpd's own messages would land on the live screen: dropped. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	(void)fmt;
	(void)ap;
}

/* "HOST:PORT", "[HOST6]:PORT", ":PORT" into host and port strings. */
static int split_listen(const char *arg, char *host, size_t hlen, char *port,
			size_t plen, char *err, size_t errlen)
{
	const char *colon;
	size_t n;
	char *end;
	long p;

	if (arg[0] == '[') {
		const char *rb = strchr(arg, ']');

		if (!rb || rb[1] != ':') {
			snprintf(err, errlen,
				 "--listen %s: expected [IPv6 address]:PORT",
				 arg);
			return -EINVAL;
		}
		n = (size_t)(rb - arg - 1);
		colon = rb + 1;
		arg++;
	} else {
		colon = strrchr(arg, ':');
		if (!colon) {
			snprintf(err, errlen,
				 "--listen %s: expected ADDR:PORT or :PORT",
				 arg);
			return -EINVAL;
		}
		n = (size_t)(colon - arg);
	}
	if (n >= hlen) {
		snprintf(err, errlen, "--listen: address too long");
		return -EINVAL;
	}
	memcpy(host, arg, n);
	host[n] = '\0';
	if (!n)
		snprintf(host, hlen, "%s", DEFAULT_HOST);
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || p < 0 || p > 65535 ||
	    colon[1] == '-' || colon[1] == '+' || colon[1] == ' ') {
		snprintf(err, errlen,
			 "--listen %s: the port must be a number from 0 to "
			 "65535",
			 colon + 1);
		return -EINVAL;
	}
	snprintf(port, plen, "%ld", p);
	return 0;
}

static bool addr_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;

		return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;

		if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) &&
		       a->sin6_addr.s6_addr[12] == 127;
	}
	return false;
}

static void format_addr(const struct sockaddr_storage *ss, char *buf,
			size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const void *)ss;

		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(a->sin_port));
	}
}

static int bind_listen(struct http_server *h, const char *arg, char *err,
		       size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV};
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	struct addrinfo *ai = NULL;
	char host[256], port[8];
	int one = 1, rc, fd;

	rc = split_listen(arg, host, sizeof(host), port, sizeof(port), err,
			  errlen);
	if (rc)
		return rc;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc || !ai) {
		snprintf(err, errlen, "--listen %s: cannot resolve %s: %s", arg,
			 host, rc ? gai_strerror(rc) : "no address");
		return -EINVAL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "--listen %s: cannot create a socket: %s",
			 arg, strerror(-rc));
		freeaddrinfo(ai);
		return rc;
	}
	/* Restarts reuse the port at once; a live listener still conflicts. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 64)) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", arg,
			 strerror(-rc));
		freeaddrinfo(ai);
		close(fd);
		return rc;
	}
	freeaddrinfo(ai);
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen)) {
		rc = -errno;
		snprintf(err, errlen, "--listen %s: getsockname: %s", arg,
			 strerror(-rc));
		close(fd);
		return rc;
	}
	format_addr(&ss, h->addr, sizeof(h->addr));
	h->loopback = addr_loopback(&ss);
	h->fd = fd;
	return 0;
}

int http_open(struct http_server **out, const char *listen_arg,
	      const struct http_opts *o, char *err, size_t errlen)
{
	struct http_server *h = calloc(1, sizeof(*h));
	sigset_t all, old;
	int rc;

	if (!h) {
		snprintf(err, errlen, "--listen: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	h->fd = -1;
	if (o)
		h->opts = *o;
	if (!h->opts.timeout_s)
		h->opts.timeout_s = 10;
	pthread_mutex_init(&h->lock, NULL);
	rc = bind_listen(h, listen_arg, err, errlen);
	if (rc)
		goto fail;
	/* Signals stay with the main thread: the server's never takes one. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	h->mhd = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			MHD_ALLOW_SUSPEND_RESUME,
		0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, h->fd,
		MHD_OPTION_CONNECTION_TIMEOUT, h->opts.timeout_s,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MEMORY_LIMIT,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!h->mhd) {
		rc = -EIO;
		snprintf(err, errlen,
			 "cannot start the HTTP server on %s (libmicrohttpd)",
			 h->addr);
		goto fail;
	}
	*out = h;
	return 0;
fail:
	if (h->fd >= 0)
		close(h->fd);
	pthread_mutex_destroy(&h->lock);
	free(h);
	return rc;
}

const char *http_address(const struct http_server *h)
{
	return h->addr;
}

bool http_is_loopback(const struct http_server *h)
{
	return h->loopback;
}

/* A profile in form k, as a blob. 0 or -errno. */
static int render_profile(const struct snapshot *s, int k, struct blob **out)
{
	uint8_t *pbuf = NULL;
	char *tbuf = NULL;
	size_t len = 0;
	int err;

	*out = NULL;
	if (k == PROFILE_TEXT)
		err = pprof_text(s, &tbuf, &len);
	else
		err = pprof_encode(s, &pbuf, &len);
	if (!err) {
		*out = blob_new(k == PROFILE_TEXT ? (void *)tbuf : (void *)pbuf,
				len);
		if (!*out)
			err = -ENOMEM;
	}
	free(tbuf);
	free(pbuf);
	return err;
}

/*
 * The delta requests' steps this refresh: a baseline for those that wait
 * for one, the answer for those whose window has passed. The work is done
 * outside the lock; only the state moves under it.
 */
static void publish_deltas(struct http_server *h, const struct snapshot *s,
			   uint64_t now)
{
	for (int i = 0; i < MAX_DELTAS; i++) {
		struct delta *d = &h->deltas[i];
		struct pprof_base *base = NULL;
		struct blob *out = NULL;
		uint8_t *buf = NULL;
		size_t len = 0;
		int state;

		pthread_mutex_lock(&h->lock);
		state = d->state;
		pthread_mutex_unlock(&h->lock);
		if (state == DELTA_BASE) {
			/* Without memory for it, the next refresh tries. */
			if (pprof_base_take(s, &base))
				continue;
			pthread_mutex_lock(&h->lock);
			d->base = base;
			d->t0 = now;
			d->state = DELTA_END;
			pthread_mutex_unlock(&h->lock);
		} else if (state == DELTA_END &&
			   now >= d->t0 + d->seconds * 1000000000ull) {
			if (!pprof_encode_delta(s, d->base, &buf, &len))
				out = blob_new(buf, len);
			free(buf);
			pthread_mutex_lock(&h->lock);
			d->out = out;
			d->state = DELTA_DONE;
			MHD_resume_connection(d->c);
			pthread_mutex_unlock(&h->lock);
		}
	}
}

int http_publish(struct http_server *h, const struct snapshot *s)
{
	struct blob *m = NULL, *p[2] = {NULL, NULL}, *old_m, *old_p[2] = {0};
	uint64_t now = now_ns();
	char *mbuf = NULL;
	size_t mlen = 0;
	int err;

	err = metrics_render(s, h->opts.metrics_sites, &mbuf, &mlen);
	if (!err) {
		m = blob_new(mbuf, mlen);
		if (!m)
			err = -ENOMEM;
	}
	free(mbuf);
	for (int k = 0; k < 2 && !err; k++)
		if (atomic_load(&h->wanted_until[k]) > now)
			err = render_profile(s, k, &p[k]);
	if (err) {
		blob_put(m);
		blob_put(p[0]);
		blob_put(p[1]);
		return err;
	}
	pthread_mutex_lock(&h->lock);
	old_m = h->metrics;
	h->metrics = m;
	h->seq++;
	for (int k = 0; k < 2; k++) {
		if (!p[k])
			continue;
		old_p[k] = h->profile[k];
		h->profile[k] = p[k];
		h->prof_seq[k] = h->seq;
	}
	resume_waiting(h);
	pthread_mutex_unlock(&h->lock);
	publish_deltas(h, s, now);
	/* Responses still sending them hold their own references. */
	blob_put(old_m);
	blob_put(old_p[0]);
	blob_put(old_p[1]);
	return 0;
}

void http_stats(const struct http_server *h, unsigned long *ok,
		unsigned long *client_errors)
{
	*ok = atomic_load(&h->ok);
	*client_errors = atomic_load(&h->client_errors);
}

void http_close(struct http_server *h)
{
	if (!h)
		return;
	if (h->mhd) {
		/* Quiesced, the socket is ours again to close, exactly once. */
		MHD_socket fd = MHD_quiesce_daemon(h->mhd);

		/* libmicrohttpd must not stop with suspended connections. */
		pthread_mutex_lock(&h->lock);
		resume_waiting(h);
		for (int i = 0; i < MAX_DELTAS; i++)
			if (h->deltas[i].state == DELTA_BASE ||
			    h->deltas[i].state == DELTA_END) {
				h->deltas[i].state = DELTA_DONE;
				MHD_resume_connection(h->deltas[i].c);
			}
		pthread_mutex_unlock(&h->lock);

		MHD_stop_daemon(h->mhd);
		if (fd != MHD_INVALID_SOCKET)
			close(fd);
	} else if (h->fd >= 0) {
		close(h->fd);
	}
	blob_put(h->metrics);
	blob_put(h->profile[PROFILE_PB]);
	blob_put(h->profile[PROFILE_TEXT]);
	for (int i = 0; i < MAX_DELTAS; i++) {
		blob_put(h->deltas[i].out);
		pprof_base_free(h->deltas[i].base);
	}
	pthread_mutex_destroy(&h->lock);
	free(h);
}
