/*
 * Growable arrays of a raw sample. The source fills one sample per refresh
 * and reuses its storage, so steady-state refreshes do not allocate.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "array.h"
#include "sample.h"

void sample_reset(struct raw_sample *s)
{
	s->nsites = 0;
	s->nprocs = 0;
	s->ngcs = 0;
	s->ntypes = 0;
	s->ntype_sites = 0;
	memset(s->counters, 0, sizeof(s->counters));
	s->recursion_misses = 0;
	s->self_cpu_s = 0;
	s->self_kernel_bytes = 0;
}

int sample_add_site(struct raw_sample *s, const struct raw_site *site)
{
	int err = ARRAY_RESERVE(s->sites, s->sites_cap, s->nsites + 1);

	if (err)
		return err;
	s->sites[s->nsites++] = *site;
	return 0;
}

int sample_add_gc(struct raw_sample *s, const struct raw_gc *g)
{
	int err = ARRAY_RESERVE(s->gcs, s->gcs_cap, s->ngcs + 1);

	if (err)
		return err;
	s->gcs[s->ngcs++] = *g;
	return 0;
}

int sample_add_type(struct raw_sample *s, const struct raw_type *t)
{
	int err = ARRAY_RESERVE(s->types, s->types_cap, s->ntypes + 1);

	if (err)
		return err;
	s->types[s->ntypes++] = *t;
	return 0;
}

int sample_add_type_site(struct raw_sample *s, const struct raw_type_site *t)
{
	int err = ARRAY_RESERVE(s->type_sites, s->type_sites_cap,
				s->ntype_sites + 1);

	if (err)
		return err;
	s->type_sites[s->ntype_sites++] = *t;
	return 0;
}

struct raw_proc *sample_find_proc(struct raw_sample *s, uint32_t tgid)
{
	for (size_t i = 0; i < s->nprocs; i++)
		if (s->procs[i].tgid == tgid)
			return &s->procs[i];
	return NULL;
}

struct raw_proc *sample_add_proc(struct raw_sample *s, uint32_t tgid)
{
	struct raw_proc *p = sample_find_proc(s, tgid);

	if (p)
		return p;
	if (ARRAY_RESERVE(s->procs, s->procs_cap, s->nprocs + 1))
		return NULL;
	p = &s->procs[s->nprocs++];
	memset(p, 0, sizeof(*p));
	p->tgid = tgid;
	return p;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int sample_filter(struct raw_sample *s,
		  bool (*keep)(void *ctx, const struct raw_proc *p), void *ctx)
{
	uint32_t *kept = malloc((s->nprocs ? s->nprocs : 1) * sizeof(*kept));
	size_t np = 0, ns = 0;

	if (!kept)
		return -ENOMEM;
	for (size_t i = 0; i < s->nprocs; i++) {
		if (!keep(ctx, &s->procs[i]))
			continue;
		kept[np] = s->procs[i].tgid;
		s->procs[np++] = s->procs[i];
	}
	s->nprocs = np;
	qsort(kept, np, sizeof(*kept), cmp_u32);
	/* Sites by binary search: system-wide samples have many of both. */
	for (size_t i = 0; i < s->nsites; i++)
		if (bsearch(&s->sites[i].key.tgid, kept, np, sizeof(*kept),
			    cmp_u32))
			s->sites[ns++] = s->sites[i];
	s->nsites = ns;
	free(kept);
	return 0;
}

void sample_free(struct raw_sample *s)
{
	free(s->sites);
	free(s->procs);
	free(s->gcs);
	free(s->types);
	free(s->type_sites);
	memset(s, 0, sizeof(*s));
}
