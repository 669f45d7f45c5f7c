/*
 * Formatting shared by every view: human byte units, ISO 8601 timestamps,
 * and the site sort order (field names as the user types them, and the
 * comparison itself), so that batch, CSV and the live screen print numbers
 * and order rows the same way.
 */
#define _GNU_SOURCE /* qsort_r */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <linux/types.h> /* memtop.h, reached through snapshot.h, needs __u32 */
#include "snapshot.h"
#include "views.h"

static const char *const unit_names[] = {"B", "KiB", "MiB", "GiB"};
#define NUNITS ((int)(sizeof(unit_names) / sizeof(unit_names[0])))

char *fmt_bytes(char *buf, size_t len, double bytes, int unit)
{
	const char *sign = "";
	double v = bytes;
	int u;

	if (!buf || !len)
		return buf;
	if (isnan(v)) {
		snprintf(buf, len, "? B");
		return buf;
	}
	if (v < 0) {
		sign = "-";
		v = -v;
	}
	if (unit >= 1 && unit <= NUNITS) {
		u = unit - 1;
		v /= (double)(1ULL << (10 * u));
	} else {
		u = 0;
		while (u < NUNITS - 1 && v >= 1024.0) {
			v /= 1024.0;
			u++;
		}
		/*
		 * 1048575 B is 1023.999 KiB, which "%.1f" would print as
		 * "1024.0 KiB": step up when rounding reaches the next unit.
		 */
		if (u > 0 && u < NUNITS - 1 && v >= 1023.95) {
			v /= 1024.0;
			u++;
		}
	}
	/* Whole bytes have no fraction worth showing; larger units get one. */
	if (u == 0)
		snprintf(buf, len, "%s%.0f B", sign, v);
	else
		snprintf(buf, len, "%s%.1f %s", sign, v, unit_names[u]);
	/* "-0 B" from a tiny negative rate reads like a bug. */
	if (u == 0 && *sign && strcmp(buf, "-0 B") == 0)
		snprintf(buf, len, "0 B");
	return buf;
}

char *fmt_iso8601(char *buf, size_t len, const struct timespec *ts)
{
	time_t sec;
	long nsec;
	struct tm tm;
	size_t n;

	if (!buf || !len)
		return buf;
	buf[0] = '\0';
	if (!ts)
		return buf;
	sec = ts->tv_sec;
	nsec = ts->tv_nsec;
	/* Tolerate unnormalised input rather than print ".-250" or ".1500". */
	if (nsec < 0 || nsec >= 1000000000L) {
		sec += nsec / 1000000000L;
		nsec %= 1000000000L;
		if (nsec < 0) {
			nsec += 1000000000L;
			sec--;
		}
	}
	if (!gmtime_r(&sec, &tm))
		return buf;
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!n) {
		buf[0] = '\0';
		return buf;
	}
	snprintf(buf + n, len - n, ".%03ldZ", nsec / 1000000L);
	return buf;
}

static const struct {
	const char *name;
	enum sort_field field;
} sort_names[] = {
	/* The first name of each field is its canonical one. */
	{"outstanding", SORT_OUTSTANDING},
	{"bytes", SORT_OUTSTANDING},
	{"mem", SORT_OUTSTANDING},
	{"count", SORT_COUNT},
	{"growth", SORT_GROWTH},
	{"alloc", SORT_ALLOC_RATE},
	{"alloc-rate", SORT_ALLOC_RATE},
	{"free", SORT_FREE_RATE},
	{"free-rate", SORT_FREE_RATE},
	{"avg", SORT_AVG},
	{"age", SORT_AGE},
	{"function", SORT_FUNCTION},
};

bool snapshot_has_gc(const struct snapshot *s)
{
	for (int i = 0; i < s->nprocs; i++)
		if (s->procs[i].has_gc)
			return true;
	return false;
}

char *snapshot_modes(const struct snapshot *s, char *buf, size_t len)
{
	size_t n = 0;

	if (!len)
		return buf;
	buf[0] = '\0';
	if (s->scale > 1)
		n += (size_t)snprintf(buf + n, len - n,
				      "estimated (1 in %u sampled)", s->scale);
	if (s->min_size && n < len)
		n += (size_t)snprintf(buf + n, len - n,
				      "%sblocks >= %llu B only", n ? ", " : "",
				      (unsigned long long)s->min_size);
	if (s->depth && n < len)
		snprintf(buf + n, len - n, "%sstacks cut at %u frames",
			 n ? ", " : "", s->depth);
	return buf;
}

const char *sort_field_name(enum sort_field f)
{
	size_t i;

	for (i = 0; i < sizeof(sort_names) / sizeof(sort_names[0]); i++)
		if (sort_names[i].field == f)
			return sort_names[i].name;
	return "?";
}

int sort_field_parse(const char *s, enum sort_field *out)
{
	size_t i;

	if (!s || !out)
		return -EINVAL;
	for (i = 0; i < sizeof(sort_names) / sizeof(sort_names[0]); i++) {
		if (strcasecmp(s, sort_names[i].name) == 0) {
			*out = sort_names[i].field;
			return 0;
		}
	}
	return -EINVAL;
}

double snapshot_avg(int64_t bytes, int64_t blocks)
{
	return blocks > 0 ? (double)bytes / (double)blocks : 0;
}

static double site_avg(const struct snap_site *s)
{
	return snapshot_avg(s->outstanding_bytes, s->outstanding_allocs);
}

/* NaN sorts below every number, so a bad rate cannot break transitivity. */
static int cmp_double(double a, double b)
{
	if (isnan(a))
		return isnan(b) ? 0 : -1;
	if (isnan(b))
		return 1;
	return (a > b) - (a < b);
}

static int cmp_i64(int64_t a, int64_t b)
{
	return (a > b) - (a < b);
}

static int cmp_str(const char *a, const char *b)
{
	int r;

	a = a ? a : "";
	b = b ? b : "";
	r = strcasecmp(a, b);
	return r ? r : strcmp(a, b);
}

/* Positive when a comes after b in ascending order of the field. */
static int cmp_field(const struct snap_site *a, const struct snap_site *b,
		     enum sort_field f)
{
	switch (f) {
	case SORT_OUTSTANDING:
		return cmp_i64(a->outstanding_bytes, b->outstanding_bytes);
	case SORT_COUNT:
		return cmp_i64(a->outstanding_allocs, b->outstanding_allocs);
	case SORT_GROWTH:
		return cmp_double(a->growth_bps, b->growth_bps);
	case SORT_ALLOC_RATE:
		return cmp_double(a->alloc_rate, b->alloc_rate);
	case SORT_FREE_RATE:
		return cmp_double(a->free_rate, b->free_rate);
	case SORT_AVG:
		return cmp_double(site_avg(a), site_avg(b));
	case SORT_AGE:
		return cmp_double(a->age_s, b->age_s);
	case SORT_FUNCTION:
		return cmp_str(a->function, b->function);
	default:
		return 0;
	}
}

struct sort_ctx {
	enum sort_field field;
	bool reverse;
};

static int cmp_sites(const void *pa, const void *pb, void *arg)
{
	const struct snap_site *a = pa, *b = pb;
	const struct sort_ctx *c = arg;
	int r;

	r = cmp_field(a, b, c->field);
	/* Numbers read best largest first; names alphabetically. */
	if (c->field != SORT_FUNCTION)
		r = -r;
	/* Ties must not depend on qsort, or rows jump between refreshes. */
	if (!r)
		r = -cmp_i64(a->outstanding_bytes, b->outstanding_bytes);
	if (!r)
		r = strcmp(a->site_id, b->site_id);
	if (!r)
		r = (a->pid > b->pid) - (a->pid < b->pid);
	return c->reverse ? -r : r;
}

/*
 * Numeric sorts (all but FUNCTION) sort small keys, not the rows: a row is
 * ~400 bytes with its trend, and a refresh with 65k sites spent more time
 * moving rows inside qsort than building them. The rows are then put in
 * place with one move each (cycle by cycle). The order is the same as
 * cmp_sites' (stack_id's hex site_id sorts like the number).
 */
struct sort_item {
	double k;
	int64_t ob;
	uint64_t sid;
	uint32_t pid;
	uint32_t idx;
};

struct item_ctx {
	const struct snap_site *rows;
	bool reverse;
};

static double field_key(const struct snap_site *s, enum sort_field f)
{
	switch (f) {
	case SORT_OUTSTANDING:
		return (double)s->outstanding_bytes;
	case SORT_COUNT:
		return (double)s->outstanding_allocs;
	case SORT_GROWTH:
		return s->growth_bps;
	case SORT_ALLOC_RATE:
		return s->alloc_rate;
	case SORT_FREE_RATE:
		return s->free_rate;
	case SORT_AVG:
		return site_avg(s);
	case SORT_AGE:
		return s->age_s;
	default:
		return 0;
	}
}

static inline int cmp_items(const void *pa, const void *pb, void *arg)
{
	const struct sort_item *a = pa, *b = pb;
	const struct item_ctx *c = arg;
	int r = -cmp_double(a->k, b->k);

	if (!r)
		r = -cmp_i64(a->ob, b->ob);
	if (!r)
		r = (a->sid > b->sid) - (a->sid < b->sid);
	if (!r)
		r = strcmp(c->rows[a->idx].site_id, c->rows[b->idx].site_id);
	if (!r)
		r = (a->pid > b->pid) - (a->pid < b->pid);
	return c->reverse ? -r : r;
}

/* Bottom-up merge sort with the comparison inlined: qsort_r's indirect
 * calls were a third of a refresh's sort at 50k sites. Stable; a merge of
 * two runs already in order is skipped. */
static int sort_items(struct sort_item *a, size_t n, const struct item_ctx *c)
{
	struct sort_item *tmp = malloc(n * sizeof(*tmp)), *src = a, *dst = tmp;

	if (!tmp)
		return -ENOMEM;
	for (size_t w = 1; w < n; w *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * w) {
			size_t mid = lo + w < n ? lo + w : n;
			size_t hi = lo + 2 * w < n ? lo + 2 * w : n;
			size_t i = lo, j = mid, k = lo;

			if (mid == hi || cmp_items(&src[mid - 1], &src[mid],
						   (void *)c) <= 0) {
				memcpy(dst + lo, src + lo,
				       (hi - lo) * sizeof(*dst));
				continue;
			}
			while (i < mid && j < hi)
				dst[k++] = cmp_items(&src[j], &src[i],
						     (void *)c) < 0
						   ? src[j++]
						   : src[i++];
			while (i < mid)
				dst[k++] = src[i++];
			while (j < hi)
				dst[k++] = src[j++];
		}
		struct sort_item *t = src;

		src = dst;
		dst = t;
	}
	if (src != a)
		memcpy(a, src, n * sizeof(*a));
	free(tmp);
	return 0;
}

void snapshot_sort_sites(struct snap_site *sites, int n, enum sort_field f,
			 bool reverse)
{
	snapshot_sort_sites_from(sites, n, f, reverse, NULL, NULL);
}

void snapshot_sort_sites_from(struct snap_site *sites, int n, enum sort_field f,
			      bool reverse, const uint32_t *start,
			      uint32_t *order)
{
	struct sort_ctx c = {.field = f, .reverse = reverse};
	struct item_ctx ic = {.rows = sites, .reverse = reverse};
	struct sort_item *it;
	struct snap_site tmp;

	if (!sites || n < 2)
		return;
	it = f == SORT_FUNCTION ? NULL : malloc((size_t)n * sizeof(*it));
	if (!it) {
		qsort_r(sites, (size_t)n, sizeof(*sites), cmp_sites, &c);
		if (order)
			for (int i = 0; i < n; i++)
				order[i] = (uint32_t)i;
		return;
	}
	for (int i = 0; i < n; i++) {
		uint32_t r = start ? start[i] : (uint32_t)i;

		it[i].k = field_key(&sites[r], f);
		it[i].ob = sites[r].outstanding_bytes;
		it[i].sid = sites[r].stack_id;
		it[i].pid = sites[r].pid;
		it[i].idx = r;
	}
	if (sort_items(it, (size_t)n, &ic)) {
		free(it);
		qsort_r(sites, (size_t)n, sizeof(*sites), cmp_sites, &c);
		if (order)
			for (int i = 0; i < n; i++)
				order[i] = (uint32_t)
					i; /* a permutation, if no hint */
		return;
	}
	if (order)
		for (int i = 0; i < n; i++)
			order[i] = it[i].idx;
	/* Position j takes row it[j].idx; a placed position gets idx = j. */
	for (uint32_t i = 0; i < (uint32_t)n; i++) {
		uint32_t j = i;

		if (it[i].idx == i)
			continue;
		tmp = sites[i];
		while (it[j].idx != i) {
			uint32_t k = it[j].idx;

			sites[j] = sites[k];
			it[j].idx = j;
			j = k;
		}
		sites[j] = tmp;
		it[j].idx = j;
	}
	free(it);
}

int views_write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int views_write_path(const char *path, const char *buf, size_t len)
{
	int fd, err;

	if (!strcmp(path, "-")) {
		/* Whatever stdio holds for stdout must come out before us. */
		fflush(stdout);
		return views_write_all(STDOUT_FILENO, buf, len);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		  0644);
	if (fd < 0)
		return -errno;
	err = views_write_all(fd, buf, len);
	/* close() is where NFS and some FUSE file systems report lost data. */
	if (close(fd) < 0 && !err)
		err = -errno;
	return err;
}
