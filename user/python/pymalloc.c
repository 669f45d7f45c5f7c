/*
 * pymalloc's usedpools[] found from its shape (see pymalloc.h): one pass
 * over the interpreter's writable data with cheap word checks, then the
 * pools a candidate names are read to confirm it.
 */
#define _GNU_SOURCE /* process_vm_readv */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include "python/pymalloc.h"
#include "source/procfs.h"

#define POOL_ALIGN 4096 /* pools are at least page-aligned */
/* pool_header: ref, freeblock, nextpool, prevpool, arenaindex, szidx. */
#define POOL_NEXT  16
#define POOL_PREV  24
#define POOL_SZIDX 36

/* Do the 64 words at w (address a) look like usedpools[], words only? */
static bool shape_ok(const uint64_t *w, uint64_t a, int *used)
{
	*used = 0;
	for (int c = 0; c < PYMALLOC_CLASSES; c++) {
		uint64_t pta = a + 16 * (uint64_t)c - 16;
		uint64_t nx = w[2 * c], pv = w[2 * c + 1];

		if (nx == pta && pv == pta)
			continue;
		if (nx == pta || pv == pta || !nx || !pv ||
		    (nx & (POOL_ALIGN - 1)) || (pv & (POOL_ALIGN - 1)))
			return false;
		(*used)++;
	}
	return true;
}

/* The pools a candidate names link back to it and have its size class. */
static bool pools_ok(const uint64_t *w, uint64_t a, pymalloc_read_fn rd,
		     void *arg)
{
	for (int c = 0; c < PYMALLOC_CLASSES; c++) {
		uint64_t pta = a + 16 * (uint64_t)c - 16, v, sz;
		uint64_t nx = w[2 * c], pv = w[2 * c + 1];

		if (nx == pta)
			continue;
		if (rd(arg, nx + POOL_PREV, &v) || v != pta)
			return false;
		if (rd(arg, pv + POOL_NEXT, &v) || v != pta)
			return false;
		if (rd(arg, nx + POOL_SZIDX - 4, &sz) ||
		    (uint32_t)(sz >> 32) != (uint32_t)c)
			return false;
	}
	return true;
}

int pymalloc_match(const uint64_t *w, size_t n, uint64_t base,
		   pymalloc_read_fn rd, void *arg, uint64_t *out)
{
	int found = 0, used;

	for (size_t i = 0; i + 2 * PYMALLOC_CLASSES <= n; i++) {
		uint64_t a = base + 8 * i;

		/* Cheapest first: class 0's word is itself - 16 or a pool. */
		if (w[i] != a - 16 && (!w[i] || (w[i] & (POOL_ALIGN - 1))))
			continue;
		if (!shape_ok(&w[i], a, &used) || !used ||
		    !pools_ok(&w[i], a, rd, arg))
			continue;
		if (found)
			return -EEXIST;
		*out = a;
		found = 1;
	}
	return found;
}

static int read_word(void *arg, uint64_t addr, uint64_t *val)
{
	pid_t pid = *(pid_t *)arg;
	struct iovec l = {val, 8}, r = {(void *)(uintptr_t)addr, 8};

	return process_vm_readv(pid, &l, 1, &r, 1, 0) == 8 ? 0 : -EFAULT;
}

#define MAX_REGIONS 16
#define MAX_BYTES   (64u << 20)

int pymalloc_find(pid_t pid, uint64_t code_addr, uint64_t *out)
{
	struct {
		uint64_t start, end;
	} reg[MAX_REGIONS];
	char path[64], line[4096 + 256];
	struct maps_entry e, prev = {0};
	uint64_t inode = 0, dev = 0;
	int nreg = 0, found = 0, err = 0;
	bool after = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	/* The file holding code_addr first, then its writable mappings. */
	while (fgets(line, sizeof(line), f))
		if (!procfs_parse_maps_line(line, &e) && e.inode &&
		    code_addr >= e.start && code_addr < e.end) {
			inode = e.inode;
			dev = (uint64_t)e.dev_major << 32 | e.dev_minor;
			break;
		}
	rewind(f);
	while (inode && fgets(line, sizeof(line), f)) {
		bool same;

		if (procfs_parse_maps_line(line, &e))
			continue;
		same = e.inode == inode &&
		       ((uint64_t)e.dev_major << 32 | e.dev_minor) == dev;
		/* Its .bss continues in the anonymous mapping right after. */
		if ((same || (after && !e.inode && !e.path[0] &&
			      e.start == prev.end)) &&
		    e.perms[0] == 'r' && e.perms[1] == 'w' &&
		    nreg < MAX_REGIONS && e.end - e.start <= MAX_BYTES) {
			reg[nreg].start = e.start;
			reg[nreg++].end = e.end;
		}
		after = same && e.perms[1] == 'w';
		prev = e;
	}
	fclose(f);
	for (int i = 0; i < nreg && err >= 0; i++) {
		size_t len = reg[i].end - reg[i].start;
		uint64_t *w = malloc(len), a;
		struct iovec l = {w, len},
			     r = {(void *)(uintptr_t)reg[i].start, len};

		if (!w)
			return -ENOMEM;
		if (process_vm_readv(pid, &l, 1, &r, 1, 0) == (ssize_t)len) {
			err = pymalloc_match(w, len / 8, reg[i].start,
					     read_word, &pid, &a);
			if (err == 1 && found)
				err = -EEXIST;
			if (err == 1) {
				found = 1;
				*out = a;
			}
		}
		free(w);
	}
	return err < 0 ? err : found;
}
