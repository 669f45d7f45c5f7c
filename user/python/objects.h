/*
 * Objects by type (--types): the live blocks of each CPython process,
 * allocated since attach (the tracer's live map), named by the type of the
 * object each holds. A block's header is read from the target once
 * (process_vm_readv, nearby blocks in one range, at most max_reads a
 * refresh: the rest waits for the next one, counted "unread") and decoded
 * by python/types.c; the answer is kept while the block lives. Per refresh
 * the reader emits, per process and type, live objects and bytes, and the
 * sites that allocated them, into the raw sample.
 */
#ifndef MEMTOP_PYTHON_OBJECTS_H
#define MEMTOP_PYTHON_OBJECTS_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include "model/sample.h"
#include "python/types.h"

struct objects;

/* Reads the target's memory: the read of a test or a benchmark may differ. */
typedef ssize_t (*objects_readv_fn)(pid_t pid, const struct iovec *local,
				    unsigned long nlocal,
				    const struct iovec *remote,
				    unsigned long nremote);

int objects_new(struct objects **out, unsigned max_reads);
/* Start a refresh: the blocks given next are all that live now. */
void objects_begin(struct objects *o);
/* One live block of pid. Only CPython processes are kept (python.h). */
void objects_block(struct objects *o, uint32_t pid, uint64_t addr,
		   uint64_t size, uint64_t stack_id);
/* Read what is new (bounded), and put the per-type figures into raw. */
int objects_end(struct objects *o, struct raw_sample *raw);
/* Tell the reader the layout of pid (tests, benchmarks; python_version()
 * otherwise) and how to read its memory (NULL: process_vm_readv). */
void objects_set_process(struct objects *o, uint32_t pid,
			 const struct pyt_layout *lay, objects_readv_fn readv);
void objects_forget(struct objects *o, uint32_t pid);
void objects_free(struct objects *o);

#endif
