/*
 * Unit tests of objects by type: the header decoder (python/types.c) and
 * the reader (python/objects.c) on a fake CPython 3.12 address space built
 * here: a metatype, a static type, a class with a qualified name, and
 * hostile types (a type pointer into unmapped memory, a name without a
 * terminator, a "type" whose type is not a type), blocks holding objects
 * of each, a block that is no object, and a block in unmapped memory. No
 * root needed. Prints one line per check; exits non-zero if any failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <linux/types.h>
#include "python/objects.h"
#include "python/types.h"

#include "check.h"

#define BASE 0x10000ull
#define SIZE 0x20000ull
static uint8_t mem[SIZE]; /* the target's memory at BASE; the rest unmapped */
static uint64_t hole_lo, hole_hi; /* unmapped inside it too */
static int nreadv;

static int fake_read(void *ctx, uint64_t addr, void *buf, size_t len)
{
	(void)ctx;
	if (addr < BASE || addr + len > BASE + SIZE || addr + len < addr ||
	    (addr < hole_hi && addr + len > hole_lo))
		return -EFAULT;
	memcpy(buf, mem + (addr - BASE), len);
	return 0;
}

/* process_vm_readv's contract: stops at the first remote iovec that fails. */
static ssize_t fake_readv(pid_t pid, const struct iovec *l, unsigned long nl,
			  const struct iovec *r, unsigned long nr)
{
	size_t done = 0;

	(void)pid;
	nreadv++;
	if (nl != 1)
		return -1;
	for (unsigned long i = 0; i < nr; i++) {
		if (done + r[i].iov_len > l[0].iov_len ||
		    fake_read(NULL, (uint64_t)(uintptr_t)r[i].iov_base,
			      (char *)l[0].iov_base + done, r[i].iov_len))
			break;
		done += r[i].iov_len;
	}
	if (!done && nr) {
		errno = EFAULT;
		return -1;
	}
	return (ssize_t)done;
}

static void put64(uint64_t addr, uint64_t v)
{
	memcpy(mem + (addr - BASE), &v, 8);
}

/* An object's header: a reference count of 1 and its type. */
static void put_obj(uint64_t addr, uint64_t type)
{
	put64(addr, 1);
	put64(addr + 8, type);
}

static void put_str(uint64_t addr, const char *s)
{
	memcpy(mem + (addr - BASE), s, strlen(s) + 1);
}

#define F_READY (1ull << 12)
#define F_SUB	(1ull << 31)
#define F_HEAP	(1ull << 9)
#define F_GC	(1ull << 14)
#define F_DICT	(1ull << 4)
#define F_WEAK	(1ull << 3)

static void make_type(uint64_t t, uint64_t meta, uint64_t flags, int64_t basic,
		      int64_t item, uint64_t name)
{
	put64(t + 8, meta);
	put64(t + 24, name);
	put64(t + 32, (uint64_t)basic);
	put64(t + 40, (uint64_t)item);
	put64(t + 168, flags);
}

/* Addresses of the fake heap. */
#define T_TYPE	   0x10000
#define T_INT	   0x10400
#define T_CONN	   0x10800
#define T_UNMAPPED 0x11000 /* its ob_type points outside */
#define T_NONAME   0x11400 /* its name never ends */
#define T_NOTMETA  0x11800 /* its type is int, not a type */
#define S_QUAL	   0x12000
#define NAMES	   0x12400
#define BLOCKS	   0x14000

static void build(void)
{
	memset(mem, 0, sizeof(mem));
	put_str(NAMES, "type");
	put_str(NAMES + 16, "int");
	put_str(NAMES + 32, "Connection");
	put_str(NAMES + 48, "Bad");
	memset(mem + (NAMES + 256 - BASE), 'A', 600); /* no terminator */
	make_type(T_TYPE, T_TYPE, F_READY | F_SUB | F_GC, 928, 40, NAMES);
	make_type(T_INT, T_TYPE, F_READY, 24, 4, NAMES + 16);
	make_type(T_CONN, T_TYPE, F_READY | F_HEAP | F_GC | F_DICT | F_WEAK, 16,
		  0, NAMES + 32);
	put64(T_CONN + 872, S_QUAL);		   /* ht_qualname, 3.12 */
	put64(S_QUAL + 16, 17);			   /* length */
	put64(S_QUAL + 32, (1u << 5) | (1u << 6)); /* compact, ascii */
	put_str(S_QUAL + 40, "Server.Connection");
	make_type(T_UNMAPPED, 0xdead0000, F_READY, 16, 0, NAMES + 48);
	make_type(T_NONAME, T_TYPE, F_READY, 16, 0, NAMES + 256);
	make_type(T_NOTMETA, T_INT, F_READY, 16, 0, NAMES + 48);
	/* Blocks: an int at offset 0 (28 bytes), a Connection after its GC
	 * header and pre-header (48), objects of the hostile types, bytes
	 * that are no object. */
	put_obj(BLOCKS + 0x000, T_INT);
	/* The Connection's GC header links to other objects: its words are
	 * pointers (each a type pointer's place for an object at offset 0 or
	 * 16, whose reference count would be a pointer). */
	put64(BLOCKS + 0x100 + 0, 0x7f1234560000ull);
	put64(BLOCKS + 0x100 + 8, T_INT);
	put64(BLOCKS + 0x100 + 16, 0x7f1234560000ull);
	put64(BLOCKS + 0x100 + 24, T_INT);
	put_obj(BLOCKS + 0x100 + 32, T_CONN);
	put_obj(BLOCKS + 0x200, T_UNMAPPED);
	put_obj(BLOCKS + 0x300, T_NONAME);
	put_obj(BLOCKS + 0x400, T_NOTMETA);
	memset(mem + (BLOCKS + 0x500 - BASE), 0x41, 64);
	put_obj(BLOCKS + 0x600, T_INT); /* an "int" too small for one */
}

static void test_decoder(void)
{
	struct pyt_layout l;
	struct pyt_type t;
	uint64_t ta;

	check(pyt_layout_for(10, &l) == -ENOTSUP, "3.10: no layout");
	check(pyt_layout_for(12, &l) == 0 && l.ht_qualname == 872 &&
		      l.str_ascii_data == 40,
	      "3.12 layout");
	check(pyt_read_type(&l, fake_read, NULL, T_INT, &t) == 0 &&
		      !strcmp(t.name, "int") && t.basicsize == 24,
	      "static type int: named \"%s\"", t.name);
	check(pyt_read_type(&l, fake_read, NULL, T_CONN, &t) == 0 &&
		      !strcmp(t.name, "Server.Connection"),
	      "class: qualified name \"%s\"", t.name);
	check(pyt_read_type(&l, fake_read, NULL, T_UNMAPPED, &t) == -EFAULT,
	      "type whose type pointer is unmapped: -EFAULT");
	check(pyt_read_type(&l, fake_read, NULL, T_NONAME, &t) == -EINVAL,
	      "name without a terminator: -EINVAL");
	check(pyt_read_type(&l, fake_read, NULL, T_NOTMETA, &t) == -EINVAL,
	      "type whose type is not a type: -EINVAL");
	check(pyt_read_type(&l, fake_read, NULL, 0xdead0000, &t) == -EFAULT,
	      "type pointer into unmapped memory: -EFAULT");
	check(pyt_read_type(&l, fake_read, NULL, T_INT + 4, &t) == -EFAULT,
	      "misaligned type pointer refused");
	check(pyt_preheader(&l, F_GC | F_DICT) == 32 &&
		      pyt_preheader(&l, F_GC) == 16 &&
		      pyt_preheader(&l, F_WEAK) == 16 &&
		      pyt_preheader(&l, 0) == 0,
	      "3.12 pre-headers: GC 16, managed dict/weakref 16");
	pyt_layout_for(11, &l);
	check(pyt_preheader(&l, F_WEAK) == 0 && pyt_preheader(&l, F_DICT) == 16,
	      "3.11: no managed weakref pre-header");
	check(!pyt_candidate(mem, 15, 0, &ta), "head too short: no candidate");
	check(pyt_candidate(mem + (BLOCKS - BASE), 48, 0, &ta) && ta == T_INT,
	      "an int's head: a candidate at offset 0");
	check(!pyt_candidate(mem + (BLOCKS + 0x100 - BASE), 48, 0, &ta) &&
		      !pyt_candidate(mem + (BLOCKS + 0x100 - BASE), 48, 16,
				     &ta) &&
		      pyt_candidate(mem + (BLOCKS + 0x100 - BASE), 48, 32,
				    &ta) &&
		      ta == T_CONN,
	      "a pointer where the reference count would be: no candidate "
	      "there (the Connection at 32 only)");
	{
		uint8_t h[16] = {0};

		memcpy(h + 8, &(uint64_t){T_INT}, 8);
		check(!pyt_candidate(h, 16, 0, &ta),
		      "a reference count of 0: no candidate");
		memcpy(h, &(uint64_t){0xc0000000ull | (1ull << 50)}, 8);
		check(pyt_candidate(h, 16, 0, &ta),
		      "3.14's immortal count with flags above: a candidate");
	}
}

static const struct raw_type *find_type(const struct raw_sample *r,
					const char *name)
{
	for (size_t i = 0; i < r->ntypes; i++)
		if (!strcmp(r->types[i].name, name))
			return &r->types[i];
	return NULL;
}

static void refresh(struct objects *o, struct raw_sample *raw, int nblocks)
{
	static const struct {
		uint64_t off, size, stack;
	} b[] = {
		{0x000, 28, 1}, {0x100, 48, 2}, {0x200, 32, 3}, {0x300, 32, 3},
		{0x400, 32, 3}, {0x500, 64, 4}, {0x600, 20, 5},
	};

	sample_reset(raw);
	sample_add_proc(raw, 7);
	objects_begin(o);
	for (int i = 0; i < nblocks && i < (int)(sizeof(b) / sizeof(b[0])); i++)
		objects_block(o, 7, BLOCKS + b[i].off, b[i].size, b[i].stack);
	/* A block in unmapped memory. */
	objects_block(o, 7, 0x900000, 64, 6);
	check(objects_end(o, raw) == 0, "objects_end");
}

static void test_reader(void)
{
	struct raw_sample raw = {0};
	struct objects *o;
	struct pyt_layout l;
	const struct raw_type *t;
	const struct raw_proc *p;

	pyt_layout_for(12, &l);
	check(objects_new(&o, 0) == 0, "objects_new");
	objects_set_process(o, 7, &l, fake_readv);
	refresh(o, &raw, 7);
	p = sample_find_proc(&raw, 7);
	check(raw.ntypes == 2, "2 types named (int, Server.Connection): %zu",
	      raw.ntypes);
	t = find_type(&raw, "int");
	check(t && t->objects == 1 && t->bytes == 28 && t->nsites == 1 &&
		      raw.type_sites[t->first_site].stack_id == 1,
	      "int: 1 object, 28 B, from site 1");
	t = find_type(&raw, "Server.Connection");
	check(t && t->objects == 1 && t->bytes == 48 &&
		      raw.type_sites[t->first_site].stack_id == 2,
	      "Connection found past its GC header and pre-header, site 2");
	check(p && p->has_types && p->obj_typed == 2 && p->obj_untyped == 6 &&
		      p->obj_unread == 0,
	      "typed 2, untyped 6 (hostile types, no object, too small, "
	      "unmapped), unread 0: %llu %llu %llu",
	      p ? (unsigned long long)p->obj_typed : 0,
	      p ? (unsigned long long)p->obj_untyped : 0,
	      p ? (unsigned long long)p->obj_unread : 0);
	check(p && p->bad_types >= 3, "hostile types counted: %llu",
	      p ? (unsigned long long)p->bad_types : 0);

	/* The same blocks again: nothing is read a second time. */
	nreadv = 0;
	refresh(o, &raw, 7);
	check(nreadv == 0, "second refresh, same blocks: no reads (%d)",
	      nreadv);
	t = find_type(&raw, "int");
	check(t && t->objects == 1, "int still 1");

	/* The Connection freed: its type empties. */
	refresh(o, &raw, 1);
	check(!find_type(&raw, "Server.Connection") && find_type(&raw, "int"),
	      "freed blocks leave the figures");

	/* The class freed and another made at its address: a new block of
	 * it is named by the new class, not the cached old name. */
	put_str(S_QUAL + 40, "Server.Handler123");
	refresh(o, &raw, 2);
	check(find_type(&raw, "Server.Handler123") &&
		      !find_type(&raw, "Server.Connection"),
	      "a class replaced at the same address: the new name");
	objects_free(o);
	build();

	/* A bound on reads per refresh: the rest wait, counted unread. */
	check(objects_new(&o, 2) == 0, "objects_new(max 2)");
	objects_set_process(o, 7, &l, fake_readv);
	refresh(o, &raw, 7);
	p = sample_find_proc(&raw, 7);
	check(p && p->obj_unread == 6 && p->obj_typed + p->obj_untyped == 2,
	      "max_reads 2: 2 read, 6 wait");
	refresh(o, &raw, 7);
	refresh(o, &raw, 7);
	refresh(o, &raw, 7);
	p = sample_find_proc(&raw, 7);
	check(p && p->obj_unread == 0 && p->obj_typed == 2,
	      "all read after 4 refreshes");
	objects_free(o);
	sample_free(&raw);
}

/*
 * Blocks over six 16 KiB regions, given in a scattered order, one of them
 * alone in an unmapped hole among them: every other block is named (the
 * reading goes on past the hole), that one is untyped, and the sites are
 * each block's own.
 */
static void test_regions(void)
{
	enum { FIRST = 0x18000, STEP = 0x100, N = (0x30000 - FIRST) / STEP };
	struct raw_sample raw = {0};
	const struct raw_type *t;
	const struct raw_proc *p;
	struct pyt_layout l;
	struct objects *o;
	int64_t sites = 0;

	build();
	hole_lo = 0x21000;
	hole_hi = 0x23000;
	for (int i = 0; i < N; i++)
		put_obj(FIRST + (uint64_t)i * STEP, T_INT);
	pyt_layout_for(12, &l);
	check(objects_new(&o, 0) == 0, "objects_new");
	objects_set_process(o, 7, &l, fake_readv);
	sample_reset(&raw);
	sample_add_proc(&raw, 7);
	objects_begin(o);
	for (int k = 0; k < N; k++) {
		int i = (k * 37) % N; /* N is not a multiple of 37 */
		uint64_t a = FIRST + (uint64_t)i * STEP;

		if (a >= hole_lo - 512 && a < hole_hi + 512 && a != 0x22000)
			continue;
		objects_block(o, 7, a, 28, 100 + (uint64_t)i % 3);
	}
	check(objects_end(o, &raw) == 0, "objects_end");
	p = sample_find_proc(&raw, 7);
	t = find_type(&raw, "int");
	for (size_t i = 0; t && i < t->nsites; i++)
		sites += raw.type_sites[t->first_site + i].objects;
	check(t && p && p->obj_untyped == 1 && p->obj_unread == 0 &&
		      t->objects == (int64_t)p->obj_typed && t->nsites == 3 &&
		      sites == t->objects && t->objects >= N - 60,
	      "%lld ints over 6 regions named, the one in the hole untyped "
	      "(%llu), 3 sites",
	      t ? (long long)t->objects : -1LL,
	      p ? (unsigned long long)p->obj_untyped : 0);
	hole_lo = hole_hi = 0;
	objects_free(o);
	sample_free(&raw);
}

/*
 * Hundreds of blocks in each region (a pool of small objects), given in a
 * scattered order, over refreshes: every one is named and counted, the
 * second refresh reads none, and a refresh begun and never ended (its
 * reading failed) leaves nothing half done. One block far from the others
 * (its own window of regions) is unmapped.
 */
static void blocks_dense(struct objects *o, int n)
{
	for (int k = 0; k < n; k++) {
		int i = (k * 37) % n; /* n is not a multiple of 37 */

		objects_block(o, 7, 0x18000 + (uint64_t)i * 0x20, 28,
			      200 + (uint64_t)i % 5);
		/* One far away (another GiB of address space), unmapped. */
		if (k == n / 2)
			objects_block(o, 7, 0x7f0000001000ull, 64, 9);
	}
}

static void test_dense(void)
{
	enum { N = (0x30000 - 0x18000) / 0x20 };
	struct raw_sample raw = {0};
	const struct raw_type *t;
	const struct raw_proc *p;
	struct pyt_layout l;
	struct objects *o;

	build();
	for (int i = 0; i < N; i++)
		put_obj(0x18000 + (uint64_t)i * 0x20, T_INT);
	pyt_layout_for(12, &l);
	check(objects_new(&o, 0) == 0, "objects_new");
	objects_set_process(o, 7, &l, fake_readv);
	objects_begin(o);
	blocks_dense(o, N);
	for (int round = 0; round < 2; round++) {
		sample_reset(&raw);
		sample_add_proc(&raw, 7);
		nreadv = 0;
		objects_begin(o);
		blocks_dense(o, N);
		check(objects_end(o, &raw) == 0, "objects_end");
		p = sample_find_proc(&raw, 7);
		t = find_type(&raw, "int");
		check(p && t && p->obj_typed == N && p->obj_untyped == 1 &&
			      p->obj_unread == 0 && t->objects == N &&
			      t->nsites == 5,
		      "refresh %d: %d ints, 512 a region, all named (%lld), "
		      "5 sites, the far one untyped",
		      round, N, t ? (long long)t->objects : -1LL);
		if (round)
			check(nreadv == 0, "second refresh: no reads (%d)",
			      nreadv);
	}
	objects_free(o);
	sample_free(&raw);
}

int main(void)
{
	build();
	test_decoder();
	test_reader();
	test_regions();
	test_dense();
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
