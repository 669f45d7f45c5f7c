/*
 * Unit tests of the pprof encoder, without root or BPF: a snapshot built by
 * hand (two processes, shared frames, a Python frame, a site without a
 * stack, the allocator's own frame on top) is encoded, gunzipped with zlib,
 * decoded back with protobuf-c, and every part a pprof reader uses is
 * checked: sample types and default, period, values per site, locations
 * leaf first and shared, functions, mappings with file and build id,
 * labels, time and duration.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "check.h"
#include "output/pprof.h"
#include "profile.pb-c.h"

typedef Perftools__Profiles__Profile Profile;

#define SRV  "/srv/app/server"
#define LIBC "/usr/lib/x86_64-linux-gnu/libc.so.6"

/* Frame 0 of every stack is the allocator's (allocator_frames = 1). */
static const struct snap_frame fr_a[] = {
	{0x7f0000001000, "malloc", "[libc.so.6+0x1000]", "libc.so.6", NULL, 0,
	 LIBC, "aabbcc", 0x1000, false},
	{0x401100, "make_buffer", "buf.c:7", "server", "buf.c", 7, SRV,
	 "0123456789abcdef", 0x1100, false},
	{0x401200, "serve", "server.c:30", "server", "server.c", 30, SRV,
	 "0123456789abcdef", 0x1200, false},
	{0x401300, "main", "server.c:5", "server", "server.c", 5, SRV,
	 "0123456789abcdef", 0x1300, false},
	{0x7f0000020000, "__libc_start_main", "[libc.so.6+0x20000]",
	 "libc.so.6", NULL, 0, LIBC, "aabbcc", 0x20000, false},
};
static const struct snap_frame fr_b[] = {
	{0x7f0000001000, "malloc", "[libc.so.6+0x1000]", "libc.so.6", NULL, 0,
	 LIBC, "aabbcc", 0x1000, false},
	{MT_IP_INTERP_TAG | 0x42, "Handler.get", "app.py:12", "", "app.py", 12,
	 NULL, NULL, 0, false},
	{0x401200, "serve", "server.c:30", "server", "server.c", 30, SRV,
	 "0123456789abcdef", 0x1200, false},
	{0x401300, "main", "server.c:5", "server", "server.c", 5, SRV,
	 "0123456789abcdef", 0x1300, false},
};

static struct snap_site sites[4];
static struct snap_proc procs[2];
static struct snapshot snap;

static void build(void)
{
	memset(sites, 0, sizeof(sites));
	sites[0] = (struct snap_site){.pid = 100,
				      .outstanding_bytes = 3000,
				      .outstanding_allocs = 3,
				      .allocs = 5,
				      .frees = 2,
				      .alloc_bytes = 5000,
				      .nframes = 5,
				      .frames = fr_a,
				      .function = "make_buffer"};
	sites[1] = (struct snap_site){.pid = 100,
				      .outstanding_bytes = 700,
				      .outstanding_allocs = 7,
				      .allocs = 7,
				      .alloc_bytes = 700,
				      .nframes = 4,
				      .frames = fr_b,
				      .function = "Handler.get"};
	/* Everything freed: still a sample (alloc_* count). */
	sites[2] = (struct snap_site){.pid = 200,
				      .allocs = 4,
				      .frees = 4,
				      .alloc_bytes = 64,
				      .free_bytes = 64,
				      .nframes = 0,
				      .function = "[stack not captured]"};
	/* Nothing at all: no sample. */
	sites[3] = (struct snap_site){
		.pid = 200, .nframes = 5, .frames = fr_a, .function = "x"};
	procs[0] = (struct snap_proc){.pid = 100, .comm = "server"};
	procs[1] = (struct snap_proc){.pid = 200, .comm = "worker"};
	snap = (struct snapshot){.wall = {1700000000, 250000000},
				 .elapsed_s = 12.5,
				 .scale = 1,
				 .nprocs = 2,
				 .procs = procs,
				 .nsites = 4,
				 .sites = sites,
				 .allocator_frames = 1};
}

static uint8_t *gunzip(const uint8_t *in, size_t len, size_t *outlen)
{
	z_stream z = {0};
	size_t cap = 1 << 20;
	uint8_t *out = malloc(cap);
	int rc;

	if (!out || inflateInit2(&z, 15 + 16) != Z_OK)
		return NULL;
	z.next_in = (Bytef *)in;
	z.avail_in = len;
	z.next_out = out;
	z.avail_out = cap;
	rc = inflate(&z, Z_FINISH);
	*outlen = cap - z.avail_out;
	inflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(out);
		return NULL;
	}
	return out;
}

/* The profile in gz (freed here), encoded with err. */
static Profile *unpack(int err, uint8_t *gz, size_t len)
{
	uint8_t *raw;
	size_t rlen = 0;
	Profile *p;

	check(!err, "pprof_encode: %d", err);
	if (err)
		return NULL;
	check(len > 18 && gz[0] == 0x1f && gz[1] == 0x8b,
	      "gzip magic (%zu bytes)", len);
	raw = gunzip(gz, len, &rlen);
	free(gz);
	check(raw != NULL, "gunzip: %zu bytes", rlen);
	if (!raw)
		return NULL;
	p = perftools__profiles__profile__unpack(NULL, rlen, raw);
	free(raw);
	check(p != NULL, "protobuf-c decodes the profile");
	return p;
}

static Profile *decode(const struct snapshot *s)
{
	uint8_t *gz = NULL;
	size_t len = 0;
	int err = pprof_encode(s, &gz, &len);

	return unpack(err, gz, len);
}

static const char *str(const Profile *p, int64_t i)
{
	return i >= 0 && (size_t)i < p->n_string_table ? p->string_table[i]
						       : "(bad index)";
}

static const Perftools__Profiles__Location *loc(const Profile *p, uint64_t id)
{
	for (size_t i = 0; i < p->n_location; i++)
		if (p->location[i]->id == id)
			return p->location[i];
	return NULL;
}

static const Perftools__Profiles__Function *fn(const Profile *p, uint64_t id)
{
	for (size_t i = 0; i < p->n_function; i++)
		if (p->function[i]->id == id)
			return p->function[i];
	return NULL;
}

static const Perftools__Profiles__Mapping *map(const Profile *p, uint64_t id)
{
	for (size_t i = 0; i < p->n_mapping; i++)
		if (p->mapping[i]->id == id)
			return p->mapping[i];
	return NULL;
}

/* The function name of a sample's k-th location ("" if any link is bad). */
static const char *frame_name(const Profile *p,
			      const Perftools__Profiles__Sample *x, size_t k)
{
	const Perftools__Profiles__Location *l;
	const Perftools__Profiles__Function *f;

	if (k >= x->n_location_id)
		return "";
	l = loc(p, x->location_id[k]);
	if (!l || l->n_line != 1)
		return "";
	f = fn(p, l->line[0]->function_id);
	return f ? str(p, f->name) : "";
}

static void test_layout(void)
{
	static const char *types[][2] = {{"alloc_objects", "count"},
					 {"alloc_space", "bytes"},
					 {"inuse_objects", "count"},
					 {"inuse_space", "bytes"}};
	const Perftools__Profiles__Sample *x;
	const Perftools__Profiles__Location *l;
	const Perftools__Profiles__Function *f;
	const Perftools__Profiles__Mapping *m;
	Profile *p;

	build();
	p = decode(&snap);
	if (!p)
		return;
	check(p->n_string_table > 0 && !strcmp(p->string_table[0], ""),
	      "string_table[0] is \"\"");
	check(p->n_sample_type == 4, "4 sample types (%zu)", p->n_sample_type);
	for (size_t i = 0; i < 4 && i < p->n_sample_type; i++) {
		check_str(str(p, p->sample_type[i]->type), types[i][0],
			  "sample type");
		check_str(str(p, p->sample_type[i]->unit), types[i][1],
			  "sample unit");
	}
	check_str(str(p, p->default_sample_type), "inuse_space",
		  "default sample type");
	check(p->period_type != NULL, "period_type set");
	if (p->period_type) {
		check_str(str(p, p->period_type->type), "space", "period type");
		check_str(str(p, p->period_type->unit), "bytes", "period unit");
	}
	check(p->period == 1, "period 1 when exact (%lld)",
	      (long long)p->period);
	check(p->time_nanos == 1700000000250000000ll, "time_nanos");
	check(p->duration_nanos == 12500000000ll, "duration_nanos");
	check(p->n_sample == 3, "one sample per site with figures (%zu)",
	      p->n_sample);
	if (p->n_sample != 3)
		goto out;

	x = p->sample[0];
	check(x->n_value == 4 && x->value[0] == 5 && x->value[1] == 5000 &&
		      x->value[2] == 3 && x->value[3] == 3000,
	      "site 0 values 5, 5000, 3, 3000");
	check(x->n_location_id == 4,
	      "allocator frame dropped: 4 locations (%zu)", x->n_location_id);
	check_str(frame_name(p, x, 0), "make_buffer", "leaf first");
	check_str(frame_name(p, x, 1), "serve", "then its caller");
	check_str(frame_name(p, x, 2), "main", "then main");
	check_str(frame_name(p, x, 3), "__libc_start_main", "root last");
	l = loc(p, x->location_id[0]);
	check(l && l->address == 0x401100 && l->line[0]->line == 7,
	      "leaf location: address and line");
	f = l ? fn(p, l->line[0]->function_id) : NULL;
	check(f && !strcmp(str(p, f->filename), "buf.c"), "function's file");
	m = l ? map(p, l->mapping_id) : NULL;
	check(m != NULL, "leaf has a mapping");
	if (m) {
		check_str(str(p, m->filename), SRV, "mapping file name");
		check_str(str(p, m->build_id), "0123456789abcdef",
			  "mapping build id");
		check(m->memory_start <= 0x401100 && m->memory_limit > 0x401300,
		      "mapping covers its addresses");
		check(m->file_offset == m->memory_start - 0x400000,
		      "mapping file offset consistent with the frames");
		check(m->has_functions && m->has_filenames &&
			      m->has_line_numbers,
		      "mapping says it is symbolized");
	}
	check(p->n_mapping == 2 && p->mapping[0]->id == 1 &&
		      !strcmp(str(p, p->mapping[0]->filename), SRV),
	      "mapping[0] is the main executable, not libc (%zu mappings)",
	      p->n_mapping);
	for (size_t i = 0; i < p->n_mapping; i++)
		if (!strcmp(str(p, p->mapping[i]->filename), LIBC))
			check(p->mapping[i]->memory_start == 0x7f0000020000 &&
				      !strcmp(str(p, p->mapping[i]->build_id),
					      "aabbcc"),
			      "libc's mapping: only the kept frame, its build "
			      "id");
	check(x->n_label == 2 && !strcmp(str(p, x->label[0]->key), "pid") &&
		      x->label[0]->num == 100 &&
		      !strcmp(str(p, x->label[1]->key), "comm") &&
		      !strcmp(str(p, x->label[1]->str), "server"),
	      "labels pid=100 comm=server");

	x = p->sample[1];
	check_str(frame_name(p, x, 0), "Handler.get",
		  "a Python frame is a function of its own");
	l = x->n_location_id ? loc(p, x->location_id[0]) : NULL;
	check(l && l->mapping_id == 0 && l->line[0]->line == 12,
	      "Python location: no mapping, line 12");
	f = l ? fn(p, l->line[0]->function_id) : NULL;
	check(f && !strcmp(str(p, f->filename), "app.py"), "Python file");
	check(x->n_location_id == 3 &&
		      x->location_id[1] == p->sample[0]->location_id[1] &&
		      x->location_id[2] == p->sample[0]->location_id[2],
	      "shared frames share locations");
	check(p->n_function == 6,
	      "functions stored once, with the placeholder (%zu)",
	      p->n_function);

	x = p->sample[2];
	check(x->n_value == 4 && x->value[0] == 4 && x->value[1] == 64 &&
		      x->value[2] == 0 && x->value[3] == 0,
	      "freed site keeps its alloc figures");
	check_str(frame_name(p, x, 0), "[stack not captured]",
		  "no stack: the placeholder is the frame");
	check(x->n_label == 2 && !strcmp(str(p, x->label[1]->str), "worker"),
	      "comm of the second process");
out:
	perftools__profiles__profile__free_unpacked(p, NULL);
}

static void test_sampled_and_allocator(void)
{
	Profile *p;

	build();
	snap.scale = 100;
	snap.allocator_frames = 0;
	p = decode(&snap);
	if (!p)
		return;
	check(p->period == 100, "period N under --sample N (%lld)",
	      (long long)p->period);
	check(p->n_comment == 2 && strstr(str(p, p->comment[1]), "sampled"),
	      "the estimate is said in a comment");
	check(p->n_sample == 3 && p->sample[0]->n_location_id == 5,
	      "no allocator frames declared: every frame kept");
	if (p->n_sample)
		check_str(frame_name(p, p->sample[0], 0), "malloc",
			  "leaf is then the first frame");
	perftools__profiles__profile__free_unpacked(p, NULL);
}

static void test_growth(void)
{
	const Perftools__Profiles__Sample *x;
	Profile *p;

	build();
	snap.growth = true;
	/* A growth site: its figures are page faults, not allocations. */
	sites[1].touched = true;
	sites[1].touched_bytes = 8 << 20;
	sites[1].outstanding_bytes = 8 << 20;
	sites[1].alloc_bytes = 8 << 20;
	sites[1].allocs = 2048;
	p = decode(&snap);
	if (!p)
		return;
	check(p->n_sample_type == 5 &&
		      !strcmp(str(p, p->sample_type[4]->type),
			      "touched_space") &&
		      !strcmp(str(p, p->sample_type[4]->unit), "bytes"),
	      "growth mode: a fifth sample type, touched_space/bytes");
	check_str(str(p, p->default_sample_type), "touched_space",
		  "growth mode: touched_space is the default");
	check(p->n_sample == 3, "growth mode: 3 samples (%zu)", p->n_sample);
	if (p->n_sample == 3) {
		x = p->sample[0];
		check(x->n_value == 5 && x->value[3] == 3000 &&
			      x->value[4] == 0,
		      "an allocation site: inuse_space 3000, touched 0");
		x = p->sample[1];
		check(x->n_value == 5 && x->value[0] == 0 && x->value[1] == 0 &&
			      x->value[2] == 0 && x->value[3] == 0 &&
			      x->value[4] == 8 << 20,
		      "a growth site: touched 8 MiB, no allocation figures");
	}
	perftools__profiles__profile__free_unpacked(p, NULL);
}

static void test_empty_and_file(void)
{
	char path[] = "/tmp/memtop-pprof-XXXXXX";
	struct snapshot empty = {.scale = 1};
	uint8_t *gz = NULL;
	size_t len = 0;
	Profile *p = decode(&empty);
	FILE *f;
	int fd;

	if (p) {
		check(p->n_sample == 0 && p->n_sample_type == 4,
		      "empty snapshot: no samples, still 4 types");
		perftools__profiles__profile__free_unpacked(p, NULL);
	}
	build();
	fd = mkstemp(path);
	if (fd < 0)
		return;
	close(fd);
	check(!pprof_write(path, &snap), "pprof_write");
	f = fopen(path, "rb");
	if (f) {
		uint8_t buf[2];

		check(fread(buf, 1, 2, f) == 2 && buf[0] == 0x1f &&
			      buf[1] == 0x8b,
		      "file is gzip");
		fclose(f);
	}
	unlink(path);
	check(symlink("/nonexistent-target", path) == 0 &&
		      pprof_write(path, &snap) < 0,
	      "a symlink at the path is not followed");
	unlink(path);
	check(pprof_encode(NULL, &gz, &len) == -EINVAL, "NULL snapshot");
}

/* Go's text form (?debug=1): totals, records by bytes, "#" frame lines. */
static void test_text(void)
{
	char *t = NULL, *rec_a, *rec_b, *rec_c;
	size_t len = 0;

	build();
	check(!pprof_text(&snap, &t, &len) && t && len == strlen(t),
	      "pprof_text renders");
	if (!t)
		return;
	fputs(t, stdout);
	check(strstr(t, "heap profile: 10: 3700 [16: 5764] @ heap/2\n") == t,
	      "text: the header totals inuse and alloc of every site");
	rec_a = strstr(t, "\n3: 3000 [5: 5000] @ 0x401100 0x401200 0x401300 "
			  "0x7f0000020000\n#\t0x401100\tmake_buffer\tbuf.c:7\n"
			  "#\t0x401200\tserve\tserver.c:30\n");
	rec_b = strstr(t, "\n7: 700 [7: 700] @ 0x8000000000000042 0x401200");
	rec_c = strstr(t, "\n0: 0 [4: 64] @ 0x0\n#\t0x0\t[stack not "
			  "captured]\t\n");
	check(rec_a && rec_b && rec_c, "text: a record per site, leaf first, "
				       "the allocator's frame dropped");
	check(rec_a && rec_b && rec_c && rec_a < rec_b && rec_b < rec_c,
	      "text: records by inuse bytes, most first");
	check(!strstr(t, "malloc"), "text: no allocator frame");
	check(strstr(t, "#\t0x8000000000000042\tHandler.get\tapp.py:12\n") !=
		      NULL,
	      "text: a Python frame by its name and line");
	check(strstr(t, "\n# memtop\n# pid 100 server: ") != NULL,
	      "text: a memtop section per process");
	free(t);
}

/* A delta profile (?seconds=N): only what changed between the baseline
 * and now, matched by site, with the window as its duration. */
static void test_delta(void)
{
	const Perftools__Profiles__Sample *x;
	struct pprof_base *b = NULL;
	uint8_t *gz = NULL;
	size_t len = 0;
	Profile *p;
	int err;

	build();
	sites[0].stack_id = 11;
	sites[1].stack_id = 12;
	sites[3].stack_id = 13;
	check(!pprof_base_take(&snap, &b), "pprof_base_take");
	if (!b)
		return;
	/* In the window: site 0 allocates 2 more blocks (2000 B) and frees
	 * one old one (1000 B); site 3 allocates its first; sites 1 and 2
	 * (the one without a stack) do nothing. */
	sites[0].allocs += 2;
	sites[0].alloc_bytes += 2000;
	sites[0].frees += 1;
	sites[0].outstanding_allocs += 1;
	sites[0].outstanding_bytes += 1000;
	sites[3].allocs = 1;
	sites[3].alloc_bytes = 48;
	sites[3].outstanding_allocs = 1;
	sites[3].outstanding_bytes = 48;
	snap.wall.tv_sec += 5;
	snap.wall.tv_nsec -= 200000000;
	err = pprof_encode_delta(&snap, b, &gz, &len);
	pprof_base_free(b);
	p = unpack(err, gz, len);
	if (!p)
		return;
	check(p->duration_nanos == 4800000000ll, "duration: the window (%lld)",
	      (long long)p->duration_nanos);
	check(p->time_nanos == 1700000005050000000ll,
	      "time: the later snapshot's (%lld)", (long long)p->time_nanos);
	check(p->n_sample == 2, "only the sites that changed (%zu)",
	      p->n_sample);
	if (p->n_sample == 2) {
		x = p->sample[0];
		check(x->n_value == 4 && x->value[0] == 2 &&
			      x->value[1] == 2000 && x->value[2] == 1 &&
			      x->value[3] == 1000,
		      "site 0: 2 allocations of 2000 B, 1 more live, 1000 B");
		x = p->sample[1];
		check(x->n_value == 4 && x->value[0] == 1 &&
			      x->value[1] == 48 && x->value[2] == 1 &&
			      x->value[3] == 48,
		      "a site new in the window: all of it");
	}
	perftools__profiles__profile__free_unpacked(p, NULL);
	/* Frees only: inuse goes negative, as in Go's deltas. */
	build();
	sites[0].stack_id = 11;
	b = NULL;
	check(!pprof_base_take(&snap, &b), "pprof_base_take again");
	sites[0].frees += 3;
	sites[0].outstanding_allocs -= 3;
	sites[0].outstanding_bytes -= 3000;
	gz = NULL;
	err = b ? pprof_encode_delta(&snap, b, &gz, &len) : -ENOMEM;
	pprof_base_free(b);
	p = unpack(err, gz, len);
	if (!p)
		return;
	check(p->n_sample == 1 && p->sample[0]->value[0] == 0 &&
		      p->sample[0]->value[2] == -3 &&
		      p->sample[0]->value[3] == -3000,
	      "frees only: inuse -3, -3000 B, nothing allocated");
	perftools__profiles__profile__free_unpacked(p, NULL);
}

int main(void)
{
	test_text();
	test_layout();
	test_sampled_and_allocator();
	test_growth();
	test_empty_and_file();
	test_delta();
	printf("%d checks, %d failed\n", checks, failures);
	return failures != 0;
}
