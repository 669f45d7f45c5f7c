/*
 * Naming the object in a CPython heap block from its bytes: where the
 * PyObject starts inside the block (after the GC header and, from 3.11, the
 * managed-dict / weakref pre-header, as the type's flags say), whether its
 * ob_type is a type object whose own type is a type, and the type's name
 * (tp_name; the qualified name of heap types). Every byte comes from a
 * process memtop does not trust, through a read callback that may fail:
 * nothing here follows a pointer without it, and a block that does not add
 * up is "untyped", never guessed. Pure, so it is unit-tested and fuzzed.
 */
#ifndef MEMTOP_PYTHON_TYPES_H
#define MEMTOP_PYTHON_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PYT_NAME_MAX   128 /* longer names are refused */
#define PYT_HEAD_BYTES 48  /* of a block's start: enough for every layout */

/* Type flags used (the same values from 3.11 to 3.15). */
#define PYT_TPFLAGS_MANAGED_WEAKREF  (1ull << 3) /* 3.12+ */
#define PYT_TPFLAGS_MANAGED_DICT     (1ull << 4)
#define PYT_TPFLAGS_HEAPTYPE	     (1ull << 9)
#define PYT_TPFLAGS_READY	     (1ull << 12)
#define PYT_TPFLAGS_HAVE_GC	     (1ull << 14)
#define PYT_TPFLAGS_UNICODE_SUBCLASS (1ull << 28)
#define PYT_TPFLAGS_TYPE_SUBCLASS    (1ull << 31)

/* What differs between the versions handled. */
struct pyt_layout {
	unsigned minor; /* 3.minor; 11 or later */
	uint16_t
		ht_qualname; /* PyHeapTypeObject.ht_qualname; 0: tp_name only */
	uint16_t str_ascii_data; /* where a compact ASCII str's characters start
				  */
};

/* A layout for 3.minor: 0, or -ENOTSUP before 3.11. */
int pyt_layout_for(unsigned minor, struct pyt_layout *out);

/* Read len bytes of the target at addr: 0, or -EFAULT. */
typedef int (*pyt_read_fn)(void *ctx, uint64_t addr, void *buf, size_t len);

struct pyt_type {
	uint64_t flags;
	int64_t basicsize, itemsize;
	char name[PYT_NAME_MAX];
};

/*
 * Validate the type object at addr and name it: 0; -EFAULT when a read
 * failed (a pointer into unmapped memory); -EINVAL when the bytes are not a
 * ready type whose type is a type, or its name is not a terminated
 * printable string.
 */
int pyt_read_type(const struct pyt_layout *l, pyt_read_fn rd, void *ctx,
		  uint64_t addr, struct pyt_type *out);

/* Bytes before the PyObject in a block of an object of a type with flags. */
unsigned pyt_preheader(const struct pyt_layout *l, uint64_t flags);

/* The ob_type a block's head would hold with the object at offset off
 * (0, 16, 32): false when the head is too short for it or the word before
 * it cannot be a live object's reference count. Inline: the type reader
 * asks it up to three times a block, a million blocks a read. */
static inline bool pyt_candidate(const uint8_t *head, size_t len, unsigned off,
				 uint64_t *type)
{
	uint64_t refcnt;

	if (len < 16 || off > len - 16)
		return false;
	/* A live object's reference count is not 0 and, on x86_64, fits in
	 * 32 bits (3.12+'s immortal counts included; 3.14 keeps flags in the
	 * top 16 bits): a pointer there (a GC header's, a pre-header's, an
	 * array of object pointers) says no object starts at off, without
	 * reading what the next word points at. */
	memcpy(&refcnt, head + off, sizeof(refcnt));
	if (!(uint32_t)refcnt || (refcnt >> 32 & 0xffff))
		return false;
	memcpy(type, head + off + 8, sizeof(*type));
	return *type && !(*type & 7);
}

/* Could an object of type t sit at offset off of a block of size bytes? */
bool pyt_fits(const struct pyt_layout *l, const struct pyt_type *t,
	      unsigned off, uint64_t size);

#endif
