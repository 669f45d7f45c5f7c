/*
 * The pprof encoder: a snapshot becomes one Profile message (protobuf-c,
 * from profile.proto), gzip-compressed with zlib as pprof files are. It is
 * laid out as Go's heap profiles, since every pprof reader knows those:
 * the sample types come from one table (a new figure is one more row), one
 * sample per site with pid and comm labels, locations leaf first without
 * the allocator's own frames (Go drops its runtime allocation frames the
 * same way), one location per (process, address) and one function per
 * (name, file), so frames shared by many sites are stored once. Interpreter
 * and JIT frames have no mapping; their names still make them functions.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "array.h"
#include "profile.pb-c.h"
#include "pprof.h"
#include "views.h"

typedef Perftools__Profiles__Profile Profile;
typedef Perftools__Profiles__ValueType ValueType;
typedef Perftools__Profiles__Sample Sample;
typedef Perftools__Profiles__Label Label;
typedef Perftools__Profiles__Mapping Mapping;
typedef Perftools__Profiles__Location Location;
typedef Perftools__Profiles__Line Line;
typedef Perftools__Profiles__Function Function;

/*
 * The values of every sample, in order: Go's heap profile's four, then
 * growth mode's touched bytes (only in growth mode, and then the default).
 * A growth site's figures are its page faults, not allocations: they count
 * as touched_space only.
 */
struct sample_value {
	const char *type, *unit;
	int64_t (*get)(const struct snap_site *st);
	bool growth_only;
};

static int64_t v_alloc_objects(const struct snap_site *st)
{
	return st->touched ? 0 : (int64_t)st->allocs;
}

static int64_t v_alloc_space(const struct snap_site *st)
{
	return st->touched ? 0 : (int64_t)st->alloc_bytes;
}

static int64_t v_inuse_objects(const struct snap_site *st)
{
	return st->touched ? 0 : st->outstanding_allocs;
}

static int64_t v_inuse_space(const struct snap_site *st)
{
	return st->touched ? 0 : st->outstanding_bytes;
}

static int64_t v_touched_space(const struct snap_site *st)
{
	return st->touched ? (int64_t)st->touched_bytes : 0;
}

static const struct sample_value sample_values[] = {
	{"alloc_objects", "count", v_alloc_objects, false},
	{"alloc_space", "bytes", v_alloc_space, false},
	{"inuse_objects", "count", v_inuse_objects, false},
	{"inuse_space", "bytes", v_inuse_space, false},
	{"touched_space", "bytes", v_touched_space, true},
};
#define MAXVALUES	    (sizeof(sample_values) / sizeof(sample_values[0]))
#define DEFAULT_TYPE	    "inuse_space"
#define GROWTH_DEFAULT_TYPE "touched_space"
#define NLABELS		    2 /* pid, comm */

/* Open addressing: key (a, b) -> v, v = 0 an empty slot. */
struct slot {
	uint64_t a, b;
	uint32_t v;
};

struct table {
	struct slot *s;
	size_t cap, n;
};

struct mapping_acc {
	uint64_t lo, hi, base; /* addresses seen; base = address of offset 0 */
	bool files, lines;
};

struct enc {
	const struct snapshot *snap;
	const char **strs;
	size_t nstrs, strs_cap;
	struct table str_tab, fn_tab, loc_tab, map_tab;
	Function *fns;
	size_t nfns, fns_cap;
	Location *locs;
	Line *lines;
	size_t nlocs, locs_cap, lines_cap;
	Mapping *maps;
	struct mapping_acc *macc;
	size_t nmaps, maps_cap, macc_cap;
	Sample *samples;
	size_t nsamples;
	uint64_t *loc_ids; /* every sample's ids, back to back */
	size_t nloc_ids, loc_ids_cap;
	size_t *loc_first; /* sample i's ids start at loc_ids[loc_first[i]] */
	const struct sample_value *vals[MAXVALUES]; /* the rows in force */
	size_t nvals;
	int64_t *values; /* nvals per sample */
	Label *labels;	 /* NLABELS per sample */
	int64_t pid_key, comm_key;
};

static uint64_t mix(uint64_t h)
{
	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 29;
	return h;
}

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int table_grow(struct table *t)
{
	size_t cap = t->cap ? t->cap * 2 : 1024;
	struct slot *ns = calloc(cap, sizeof(*ns));

	if (!ns)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		const struct slot *o = &t->s[i];
		size_t j;

		if (!o->v)
			continue;
		for (j = mix(o->a ^ mix(o->b)) & (cap - 1); ns[j].v;
		     j = (j + 1) & (cap - 1))
			;
		ns[j] = *o;
	}
	free(t->s);
	t->s = ns;
	t->cap = cap;
	return 0;
}

/*
 * The slot for (a, b), or the empty one where it goes (NULL: no memory).
 * same() tells keys with equal (a, b) apart where those are only a hash.
 */
static struct slot *table_slot(struct table *t, uint64_t a, uint64_t b,
			       bool (*same)(const struct enc *, uint32_t,
					    const void *),
			       const struct enc *e, const void *key)
{
	size_t i;

	if ((t->n + 1) * 2 > t->cap && table_grow(t))
		return NULL;
	for (i = mix(a ^ mix(b)) & (t->cap - 1); t->s[i].v;
	     i = (i + 1) & (t->cap - 1))
		if (t->s[i].a == a && t->s[i].b == b &&
		    (!same || same(e, t->s[i].v, key)))
			break;
	return &t->s[i];
}

static bool same_str(const struct enc *e, uint32_t v, const void *key)
{
	return !strcmp(e->strs[v - 1], key);
}

/* The string's index in the string table (0 for NULL and ""), or -1. */
static int64_t str_index(struct enc *e, const char *s)
{
	struct slot *sl;
	uint64_t h;

	if (!s || !*s)
		return 0;
	h = str_hash(s);
	sl = table_slot(&e->str_tab, h, 0, same_str, e, s);
	if (!sl)
		return -1;
	if (sl->v)
		return sl->v - 1;
	if (array_reserve((void **)&e->strs, &e->strs_cap, e->nstrs + 1,
			  sizeof(*e->strs)))
		return -1;
	e->strs[e->nstrs] = s;
	*sl = (struct slot){h, 0, (uint32_t)++e->nstrs};
	e->str_tab.n++;
	return (int64_t)e->nstrs - 1;
}

static uint64_t function_id(struct enc *e, const char *name, const char *file)
{
	int64_t ni = str_index(e, name), fi = str_index(e, file);
	struct slot *sl;
	Function *f;

	if (ni < 0 || fi < 0)
		return 0;
	sl = table_slot(&e->fn_tab, (uint64_t)ni, (uint64_t)fi, NULL, e, NULL);
	if (!sl)
		return 0;
	if (sl->v)
		return sl->v;
	if (array_reserve((void **)&e->fns, &e->fns_cap, e->nfns + 1,
			  sizeof(*e->fns)))
		return 0;
	f = &e->fns[e->nfns];
	*f = (Function)PERFTOOLS__PROFILES__FUNCTION__INIT;
	f->id = e->nfns + 1;
	f->name = ni;
	f->system_name = ni;
	f->filename = fi;
	*sl = (struct slot){(uint64_t)ni, (uint64_t)fi, (uint32_t)f->id};
	e->fn_tab.n++;
	e->nfns++;
	return f->id;
}

/* The frame's mapped file, by its path (or "[vdso]"); 0: none. */
static uint64_t mapping_id(struct enc *e, uint32_t pid,
			   const struct snap_frame *fr)
{
	const char *name = fr->path && *fr->path ? fr->path : NULL;
	struct mapping_acc *acc;
	struct slot *sl;
	int64_t ni, bi;
	Mapping *m;

	if (!name && fr->module && fr->module[0] == '[')
		name = fr->module;
	if (!name || (fr->ip & MT_IP_INTERP_TAG))
		return 0;
	ni = str_index(e, name);
	bi = str_index(e, fr->build_id);
	if (ni < 0 || bi < 0)
		return 0;
	sl = table_slot(&e->map_tab, pid, (uint64_t)ni, NULL, e, NULL);
	if (!sl)
		return 0;
	if (!sl->v) {
		if (array_reserve((void **)&e->maps, &e->maps_cap, e->nmaps + 1,
				  sizeof(*e->maps)) ||
		    array_reserve((void **)&e->macc, &e->macc_cap, e->nmaps + 1,
				  sizeof(*e->macc)))
			return 0;
		m = &e->maps[e->nmaps];
		*m = (Mapping)PERFTOOLS__PROFILES__MAPPING__INIT;
		m->id = e->nmaps + 1;
		m->filename = ni;
		m->build_id = bi;
		m->has_functions = true;
		e->macc[e->nmaps] =
			(struct mapping_acc){.lo = fr->ip,
					     .hi = fr->ip,
					     .base = fr->ip - fr->offset};
		*sl = (struct slot){pid, (uint64_t)ni, (uint32_t)m->id};
		e->map_tab.n++;
		e->nmaps++;
	}
	m = &e->maps[sl->v - 1];
	acc = &e->macc[sl->v - 1];
	if (!m->build_id && bi)
		m->build_id = bi;
	if (fr->ip < acc->lo)
		acc->lo = fr->ip;
	if (fr->ip > acc->hi)
		acc->hi = fr->ip;
	acc->files |= fr->file != NULL;
	acc->lines |= fr->line > 0;
	return sl->v;
}

/* A frame in a file that is not a shared library (no ".so" in its name). */
static bool is_executable(const struct snap_frame *fr)
{
	const char *base;

	if (!fr->path || fr->path[0] != '/' || (fr->ip & MT_IP_INTERP_TAG))
		return false;
	base = strrchr(fr->path, '/') + 1;
	return !strstr(base, ".so");
}

static uint64_t location_id(struct enc *e, uint32_t pid,
			    const struct snap_frame *fr)
{
	struct slot *sl;
	Location *l;

	sl = table_slot(&e->loc_tab, pid, fr->ip, NULL, e, NULL);
	if (!sl)
		return 0;
	if (sl->v)
		return sl->v;
	if (array_reserve((void **)&e->locs, &e->locs_cap, e->nlocs + 1,
			  sizeof(*e->locs)) ||
	    array_reserve((void **)&e->lines, &e->lines_cap, e->nlocs + 1,
			  sizeof(*e->lines)))
		return 0;
	l = &e->locs[e->nlocs];
	*l = (Location)PERFTOOLS__PROFILES__LOCATION__INIT;
	e->lines[e->nlocs] = (Line)PERFTOOLS__PROFILES__LINE__INIT;
	e->lines[e->nlocs].function_id = function_id(e, fr->func, fr->file);
	e->lines[e->nlocs].line = fr->line;
	if (!e->lines[e->nlocs].function_id)
		return 0;
	l->id = e->nlocs + 1;
	l->mapping_id = mapping_id(e, pid, fr);
	l->address = fr->ip & MT_IP_INTERP_TAG ? 0 : fr->ip;
	*sl = (struct slot){pid, fr->ip, (uint32_t)l->id};
	e->loc_tab.n++;
	e->nlocs++;
	return l->id;
}

static const char *proc_comm(const struct snapshot *s, uint32_t pid)
{
	for (int i = 0; i < s->nprocs; i++)
		if (s->procs[i].pid == pid)
			return s->procs[i].comm;
	return NULL;
}

static int add_sample(struct enc *e, const struct snap_site *st)
{
	struct snap_frame none = {0};
	int first = e->snap->allocator_frames, n = st->nframes;
	size_t k = e->nsamples;

	if (!st->frames || n <= 0) {
		/* No stack: the bytes still count, under the placeholder. */
		none.func = st->function ? st->function : "[unknown]";
		none.ip = 0;
		first = 0;
		n = 1;
	} else if (first >= n) {
		first = n - 1; /* only the allocator's frame: keep it */
	}
	if (array_reserve((void **)&e->loc_ids, &e->loc_ids_cap,
			  e->nloc_ids + (size_t)(n - first),
			  sizeof(*e->loc_ids)))
		return -ENOMEM;
	e->loc_first[k] = e->nloc_ids;
	for (int i = first; i < n; i++) {
		const struct snap_frame *fr =
			st->frames && st->nframes > 0 ? &st->frames[i] : &none;
		uint64_t id = location_id(e, st->pid, fr);

		if (!id)
			return -ENOMEM;
		e->loc_ids[e->nloc_ids++] = id;
	}
	e->samples[k] = (Sample)PERFTOOLS__PROFILES__SAMPLE__INIT;
	e->samples[k].n_location_id = e->nloc_ids - e->loc_first[k];
	for (size_t v = 0; v < e->nvals; v++)
		e->values[k * e->nvals + v] = e->vals[v]->get(st);
	e->labels[k * NLABELS] = (Label)PERFTOOLS__PROFILES__LABEL__INIT;
	e->labels[k * NLABELS].key = e->pid_key;
	e->labels[k * NLABELS].num = st->pid;
	e->labels[k * NLABELS + 1] = (Label)PERFTOOLS__PROFILES__LABEL__INIT;
	e->labels[k * NLABELS + 1].key = e->comm_key;
	e->labels[k * NLABELS + 1].str =
		str_index(e, proc_comm(e->snap, st->pid));
	if (e->labels[k * NLABELS + 1].str < 0)
		return -ENOMEM;
	e->nsamples++;
	return 0;
}

static bool site_counts(const struct enc *e, const struct snap_site *st)
{
	for (size_t v = 0; v < e->nvals; v++)
		if (e->vals[v]->get(st))
			return true;
	return false;
}

static int gzip_buf(const uint8_t *in, size_t len, uint8_t **out,
		    size_t *outlen)
{
	z_stream z = {0};
	uint8_t *buf;
	size_t cap;
	int rc;

	/* windowBits 15 + 16: a gzip header and trailer, as pprof wants. */
	if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	cap = deflateBound(&z, len) + 64;
	buf = malloc(cap);
	if (!buf) {
		deflateEnd(&z);
		return -ENOMEM;
	}
	z.next_in = (Bytef *)in;
	z.avail_in = len;
	z.next_out = buf;
	z.avail_out = cap;
	rc = deflate(&z, Z_FINISH);
	*outlen = cap - z.avail_out;
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(buf);
		return -ENOMEM;
	}
	*out = buf;
	return 0;
}

static void enc_free(struct enc *e)
{
	free(e->strs);
	free(e->str_tab.s);
	free(e->fn_tab.s);
	free(e->loc_tab.s);
	free(e->map_tab.s);
	free(e->fns);
	free(e->locs);
	free(e->lines);
	free(e->maps);
	free(e->macc);
	free(e->samples);
	free(e->loc_ids);
	free(e->loc_first);
	free(e->values);
	free(e->labels);
}

static int encode(const struct snapshot *s, int64_t duration_ns, uint8_t **out,
		  size_t *len)
{
	Profile p = PERFTOOLS__PROFILES__PROFILE__INIT;
	ValueType vt[MAXVALUES], period = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
	ValueType *vtp[MAXVALUES];
	ValueType vt_init = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
	Sample **sp = NULL;
	Location **lp = NULL;
	Function **fp = NULL;
	Mapping **mp = NULL;
	Line **linep = NULL;
	Label **labelp = NULL;
	uint8_t *packed = NULL;
	struct enc e = {.snap = s};
	char modes[160], version[64];
	int64_t comments[2];
	size_t ncomments = 0, nsites = 0, plen;
	int err = -ENOMEM;

	if (!s || !out || !len)
		return -EINVAL;
	for (size_t v = 0; v < MAXVALUES; v++)
		if (!sample_values[v].growth_only || s->growth)
			e.vals[e.nvals++] = &sample_values[v];
	for (int i = 0; i < s->nsites; i++)
		nsites += site_counts(&e, &s->sites[i]);
	e.samples = calloc(nsites + 1, sizeof(*e.samples));
	e.loc_first = calloc(nsites + 1, sizeof(*e.loc_first));
	e.values = calloc((nsites + 1) * e.nvals, sizeof(*e.values));
	e.labels = calloc((nsites + 1) * NLABELS, sizeof(*e.labels));
	if (!e.samples || !e.loc_first || !e.values || !e.labels)
		goto cleanup;
	/* string_table[0] must be "". */
	if (array_reserve((void **)&e.strs, &e.strs_cap, 1, sizeof(*e.strs)))
		goto cleanup;
	e.strs[e.nstrs++] = "";
	for (size_t v = 0; v < e.nvals; v++) {
		vt[v] = vt_init;
		vt[v].type = str_index(&e, e.vals[v]->type);
		vt[v].unit = str_index(&e, e.vals[v]->unit);
		if (vt[v].type < 0 || vt[v].unit < 0)
			goto cleanup;
		vtp[v] = &vt[v];
	}
	period.type = str_index(&e, "space");
	period.unit = str_index(&e, "bytes");
	e.pid_key = str_index(&e, "pid");
	e.comm_key = str_index(&e, "comm");
	p.default_sample_type =
		str_index(&e, s->growth ? GROWTH_DEFAULT_TYPE : DEFAULT_TYPE);
	snprintf(version, sizeof(version), "memtop %s", MEMTOP_VERSION);
	comments[ncomments++] = str_index(&e, version);
	if (*snapshot_modes(s, modes, sizeof(modes)))
		comments[ncomments++] = str_index(&e, modes);
	if (period.type < 0 || period.unit < 0 || e.pid_key < 0 ||
	    e.comm_key < 0 || p.default_sample_type < 0 || comments[0] < 0 ||
	    comments[ncomments - 1] < 0)
		goto cleanup;

	/* mapping[0] names the profile ("File: server"): the outermost
	 * executable of the first site with a stack, met before the rest. */
	for (int i = 0; i < s->nsites; i++) {
		const struct snap_site *st = &s->sites[i];
		const struct snap_frame *pick = NULL;

		if (st->nframes <= 0 || !st->frames)
			continue;
		for (int k = st->nframes - 1; k >= 0 && !pick; k--)
			if (is_executable(&st->frames[k]))
				pick = &st->frames[k];
		mapping_id(&e, st->pid,
			   pick ? pick : &st->frames[st->nframes - 1]);
		break;
	}
	for (int i = 0; i < s->nsites; i++) {
		if (!site_counts(&e, &s->sites[i]))
			continue;
		err = add_sample(&e, &s->sites[i]);
		if (err)
			goto cleanup;
	}
	err = -ENOMEM;

	sp = calloc(e.nsamples + 1, sizeof(*sp));
	labelp = calloc(e.nsamples * NLABELS + 1, sizeof(*labelp));
	lp = calloc(e.nlocs + 1, sizeof(*lp));
	linep = calloc(e.nlocs + 1, sizeof(*linep));
	fp = calloc(e.nfns + 1, sizeof(*fp));
	mp = calloc(e.nmaps + 1, sizeof(*mp));
	if (!sp || !labelp || !lp || !linep || !fp || !mp)
		goto cleanup;
	for (size_t i = 0; i < e.nsamples; i++) {
		Sample *x = &e.samples[i];

		x->location_id = e.loc_ids + e.loc_first[i];
		x->n_value = e.nvals;
		x->value = e.values + i * e.nvals;
		for (int k = 0; k < NLABELS; k++)
			labelp[i * NLABELS + k] = &e.labels[i * NLABELS + k];
		x->n_label = NLABELS;
		x->label = labelp + i * NLABELS;
		sp[i] = x;
	}
	for (size_t i = 0; i < e.nlocs; i++) {
		linep[i] = &e.lines[i];
		e.locs[i].n_line = 1;
		e.locs[i].line = &linep[i];
		lp[i] = &e.locs[i];
	}
	for (size_t i = 0; i < e.nfns; i++)
		fp[i] = &e.fns[i];
	for (size_t i = 0; i < e.nmaps; i++) {
		const struct mapping_acc *a = &e.macc[i];

		e.maps[i].memory_start = a->lo;
		e.maps[i].memory_limit = a->hi + 1;
		e.maps[i].file_offset = a->lo - a->base;
		e.maps[i].has_filenames = a->files;
		e.maps[i].has_line_numbers = a->lines;
		mp[i] = &e.maps[i];
	}
	p.n_sample_type = e.nvals;
	p.sample_type = vtp;
	p.n_sample = e.nsamples;
	p.sample = sp;
	p.n_mapping = e.nmaps;
	p.mapping = mp;
	p.n_location = e.nlocs;
	p.location = lp;
	p.n_function = e.nfns;
	p.function = fp;
	p.n_string_table = e.nstrs;
	p.string_table = (char **)e.strs;
	p.time_nanos = (int64_t)s->wall.tv_sec * 1000000000 + s->wall.tv_nsec;
	p.duration_nanos = duration_ns;
	p.period_type = &period;
	p.period = s->scale > 1 ? s->scale : 1;
	p.n_comment = ncomments;
	p.comment = comments;

	plen = perftools__profiles__profile__get_packed_size(&p);
	packed = malloc(plen ? plen : 1);
	if (!packed)
		goto cleanup;
	perftools__profiles__profile__pack(&p, packed);
	err = gzip_buf(packed, plen, out, len);
cleanup:
	free(packed);
	free(sp);
	free(labelp);
	free(lp);
	free(linep);
	free(fp);
	free(mp);
	enc_free(&e);
	return err;
}

int pprof_encode(const struct snapshot *s, uint8_t **out, size_t *len)
{
	if (!s)
		return -EINVAL;
	return encode(s, (int64_t)(s->elapsed_s * 1e9), out, len);
}

/* A site's identity from one snapshot to the next, and the figures the
 * sample values are made of. */
struct base_row {
	uint32_t pid;
	bool touched;
	uint64_t stack_id;
	uint64_t fhash; /* of its function, for sites without a stack */
	uint64_t allocs, alloc_bytes, touched_bytes;
	int64_t outstanding_allocs, outstanding_bytes;
};

struct pprof_base {
	struct timespec wall;
	size_t n;
	struct base_row rows[]; /* by cmp_row */
};

static int cmp_row(const void *a, const void *b)
{
	const struct base_row *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	if (x->touched != y->touched)
		return x->touched ? 1 : -1;
	if (x->stack_id != y->stack_id)
		return x->stack_id < y->stack_id ? -1 : 1;
	return (x->fhash > y->fhash) - (x->fhash < y->fhash);
}

/* Sites without a captured stack share stack_id 0: their placeholder
 * function tells them apart. */
static uint64_t row_fhash(const struct snap_site *st)
{
	return st->stack_id || !st->function ? 0 : str_hash(st->function);
}

int pprof_base_take(const struct snapshot *s, struct pprof_base **out)
{
	size_t n = s->nsites > 0 ? (size_t)s->nsites : 0;
	struct pprof_base *b =
		malloc(sizeof(*b) + (n + 1) * sizeof(b->rows[0]));

	*out = NULL;
	if (!b)
		return -ENOMEM;
	b->wall = s->wall;
	b->n = n;
	for (size_t i = 0; i < n; i++) {
		const struct snap_site *st = &s->sites[i];

		b->rows[i] = (struct base_row){
			.pid = st->pid,
			.touched = st->touched,
			.stack_id = st->stack_id,
			.fhash = row_fhash(st),
			.allocs = st->allocs,
			.alloc_bytes = st->alloc_bytes,
			.touched_bytes = st->touched_bytes,
			.outstanding_allocs = st->outstanding_allocs,
			.outstanding_bytes = st->outstanding_bytes,
		};
	}
	qsort(b->rows, n, sizeof(b->rows[0]), cmp_row);
	*out = b;
	return 0;
}

void pprof_base_free(struct pprof_base *b)
{
	free(b);
}

int pprof_encode_delta(const struct snapshot *s, const struct pprof_base *b,
		       uint8_t **out, size_t *len)
{
	struct snapshot d;
	struct snap_site *sites;
	int64_t dur;
	int err;

	if (!s || !b || !out || !len)
		return -EINVAL;
	/* The sites as copies holding the differences: the encoder and its
	 * sample values stay the one path both profiles take. The unsigned
	 * counters wrap to the signed difference the values read them as. */
	sites = calloc(s->nsites > 0 ? (size_t)s->nsites : 1, sizeof(*sites));
	if (!sites)
		return -ENOMEM;
	for (int i = 0; i < s->nsites; i++) {
		const struct snap_site *st = &s->sites[i];
		struct base_row key = {.pid = st->pid,
				       .touched = st->touched,
				       .stack_id = st->stack_id,
				       .fhash = row_fhash(st)};
		const struct base_row *r = bsearch(&key, b->rows, b->n,
						   sizeof(b->rows[0]), cmp_row);

		sites[i] = *st;
		if (!r)
			continue;
		sites[i].allocs -= r->allocs;
		sites[i].alloc_bytes -= r->alloc_bytes;
		sites[i].touched_bytes -= r->touched_bytes;
		sites[i].outstanding_allocs -= r->outstanding_allocs;
		sites[i].outstanding_bytes -= r->outstanding_bytes;
	}
	d = *s;
	d.sites = sites;
	dur = ((int64_t)s->wall.tv_sec - b->wall.tv_sec) * 1000000000 +
	      (s->wall.tv_nsec - b->wall.tv_nsec);
	err = encode(&d, dur, out, len);
	free(sites);
	return err;
}

int pprof_write(const char *path, const struct snapshot *s)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int err;

	if (!path || !*path)
		return -EINVAL;
	err = pprof_encode(s, &buf, &len);
	if (err)
		return err;
	err = views_write_path(path, (const char *)buf, len);
	free(buf);
	return err;
}

/* Sites by the bytes they hold (touched, in growth mode), most first. */
static int64_t text_bytes(const struct snap_site *st)
{
	return st->touched ? (int64_t)st->touched_bytes : st->outstanding_bytes;
}

static int cmp_text_site(const void *a, const void *b)
{
	const struct snap_site *x = *(const struct snap_site *const *)a;
	const struct snap_site *y = *(const struct snap_site *const *)b;

	if (text_bytes(x) != text_bytes(y))
		return text_bytes(x) > text_bytes(y) ? -1 : 1;
	return strcmp(x->site_id, y->site_id);
}

/*
 * One record: "inuse_objects: inuse_bytes [alloc_objects: alloc_bytes] @"
 * and its frames' addresses leaf first, then a "#" line per frame. A
 * growth site's page faults and touched bytes stand in both pairs.
 */
static void text_record(FILE *f, const struct snapshot *s,
			const struct snap_site *st)
{
	int first = s->allocator_frames, n = st->nframes;
	int64_t io = st->outstanding_allocs, ib = st->outstanding_bytes;
	int64_t ao = (int64_t)st->allocs, ab = (int64_t)st->alloc_bytes;

	if (st->touched) {
		io = ao = st->outstanding_allocs;
		ib = ab = (int64_t)st->touched_bytes;
	}
	if (!st->frames || n <= 0)
		first = n = 0;
	else if (first >= n)
		first = n - 1; /* only the allocator's frame: keep it */
	fprintf(f, "%" PRId64 ": %" PRId64 " [%" PRId64 ": %" PRId64 "] @", io,
		ib, ao, ab);
	for (int i = first; i < n; i++)
		fprintf(f, " %#" PRIx64, st->frames[i].ip);
	if (!n)
		fputs(" 0x0", f);
	fputc('\n', f);
	for (int i = first; i < n; i++)
		fprintf(f, "#\t%#" PRIx64 "\t%s\t%s\n", st->frames[i].ip,
			st->frames[i].func, st->frames[i].location);
	if (!n)
		fprintf(f, "#\t0x0\t%s\t%s\n",
			st->function ? st->function : "[unknown]",
			st->location ? st->location : "");
	fputc('\n', f);
}

int pprof_text(const struct snapshot *s, char **out, size_t *len)
{
	const struct snap_site **v = NULL;
	int64_t io = 0, ib = 0, ao = 0, ab = 0;
	char modes[160];
	size_t n = 0;
	FILE *f;

	if (!s || !out || !len)
		return -EINVAL;
	*out = NULL;
	*len = 0;
	if (s->nsites > 0) {
		v = malloc((size_t)s->nsites * sizeof(*v));
		if (!v)
			return -ENOMEM;
	}
	for (int i = 0; i < s->nsites; i++) {
		const struct snap_site *st = &s->sites[i];

		if (!text_bytes(st) && !st->allocs)
			continue;
		v[n++] = st;
		if (st->touched) {
			io += st->outstanding_allocs;
			ao += st->outstanding_allocs;
			ib += (int64_t)st->touched_bytes;
			ab += (int64_t)st->touched_bytes;
		} else {
			io += st->outstanding_allocs;
			ib += st->outstanding_bytes;
			ao += (int64_t)st->allocs;
			ab += (int64_t)st->alloc_bytes;
		}
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_text_site);
	f = open_memstream(out, len);
	if (!f) {
		free(v);
		return -ENOMEM;
	}
	/* heap/2: Go writes twice its sampling rate; the figures here are
	 * already scaled (--sample), so readers must not scale them again. */
	fprintf(f,
		"heap profile: %" PRId64 ": %" PRId64 " [%" PRId64 ": %" PRId64
		"] @ heap/2\n",
		io, ib, ao, ab);
	for (size_t i = 0; i < n; i++)
		text_record(f, s, v[i]);
	fprintf(f, "\n# memtop\n");
	if (s->growth)
		fprintf(f,
			"# %s: each record is a stack's page faults and "
			"touched bytes\n",
			SNAP_GROWTH_LABEL);
	if (*snapshot_modes(s, modes, sizeof(modes)))
		fprintf(f, "# %s\n", modes);
	for (int i = 0; i < s->nprocs; i++) {
		const struct snap_proc *p = &s->procs[i];

		fprintf(f,
			"# pid %" PRIu32 " %s: outstanding %" PRId64
			" B in %" PRId64 " blocks, touched %" PRIu64
			" B, RSS %" PRIu64 " B%s\n",
			p->pid, p->comm, p->outstanding_bytes,
			p->outstanding_allocs, p->touched_bytes, p->rss_bytes,
			p->alive ? "" : " (exited)");
	}
	free(v);
	if (fclose(f)) {
		free(*out);
		*out = NULL;
		*len = 0;
		return -ENOMEM;
	}
	return 0;
}
