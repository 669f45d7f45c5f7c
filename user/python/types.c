/*
 * The object header decoder (see types.h). Offsets of PyObject and
 * PyTypeObject have been the same from 3.11 to 3.15 on x86_64 (ob_type 8,
 * tp_name 24, tp_basicsize 32, tp_itemsize 40, tp_flags 168); the heap
 * type's qualified name and the str layout differ and come from the
 * layout (offsetof() on pyenv 3.11.7, 3.12.1, 3.13.0's headers).
 */
#include <errno.h>
#include <string.h>
#include "python/types.h"

#define OB_TYPE	     8
#define TP_NAME	     24
#define TP_BASICSIZE 32
#define TP_ITEMSIZE  40
#define TP_FLAGS     168
#define STR_LENGTH   16
#define STR_STATE    32
#define STR_COMPACT  (1u << 5)
#define STR_ASCII    (1u << 6)
#define GC_HEAD	     16
#define PRE_HEADER   16 /* managed dict and weakref pointers */

int pyt_layout_for(unsigned minor, struct pyt_layout *out)
{
	memset(out, 0, sizeof(*out));
	if (minor < 11)
		return -ENOTSUP;
	out->minor = minor;
	out->str_ascii_data = minor == 11 ? 48 : 40;
	if (minor == 11)
		out->ht_qualname = 864;
	else if (minor <= 13)
		out->ht_qualname = 872;
	/* 3.14+: no checked offset for ht_qualname; tp_name names them. */
	return 0;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static int rd64(pyt_read_fn rd, void *ctx, uint64_t addr, uint64_t *v)
{
	uint8_t b[8];

	if (addr & 7 || rd(ctx, addr, b, sizeof(b)))
		return -EFAULT;
	*v = get64(b);
	return 0;
}

static bool printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return n > 0;
}

/*
 * A C string of the target: read up to the end of its page first (the
 * next page may be unmapped), then on. -EFAULT unreadable, -EINVAL no
 * terminator within PYT_NAME_MAX or not printable.
 */
static int read_cstr(pyt_read_fn rd, void *ctx, uint64_t addr, char *out)
{
	size_t got = 0, n;
	bool ended = false;

	memset(out, 0, PYT_NAME_MAX);
	while (got < PYT_NAME_MAX && !ended) {
		n = 4096 - ((addr + got) & 4095);
		if (n > PYT_NAME_MAX - got)
			n = PYT_NAME_MAX - got;
		if (rd(ctx, addr + got, out + got, n))
			return -EFAULT;
		ended = memchr(out + got, '\0', n) != NULL;
		got += n;
	}
	if (!ended) {
		out[0] = '\0';
		return -EINVAL;
	}
	if (!printable(out, strlen(out))) {
		out[0] = '\0';
		return -EINVAL;
	}
	return 0;
}

/* A compact ASCII str object's characters; -errno. */
static int read_ascii(const struct pyt_layout *l, pyt_read_fn rd, void *ctx,
		      uint64_t str, char *out)
{
	uint8_t h[40];
	uint64_t len;
	uint32_t state;

	if (!str || str & 7 || rd(ctx, str, h, sizeof(h)))
		return -EFAULT;
	len = get64(h + STR_LENGTH);
	memcpy(&state, h + STR_STATE, sizeof(state));
	if (!(state & STR_COMPACT) || !(state & STR_ASCII) || !len ||
	    len >= PYT_NAME_MAX)
		return -EINVAL;
	if (rd(ctx, str + l->str_ascii_data, out, len))
		return -EFAULT;
	out[len] = '\0';
	return printable(out, len) ? 0 : -EINVAL;
}

int pyt_read_type(const struct pyt_layout *l, pyt_read_fn rd, void *ctx,
		  uint64_t addr, struct pyt_type *out)
{
	uint8_t t[TP_FLAGS + 8];
	uint64_t meta, meta_flags, mm, mm_flags, name;
	char qual[PYT_NAME_MAX];
	int err;

	memset(out, 0, sizeof(*out));
	if (!addr || addr & 7 || rd(ctx, addr, t, sizeof(t)))
		return -EFAULT;
	out->flags = get64(t + TP_FLAGS);
	memcpy(&out->basicsize, t + TP_BASICSIZE, 8);
	memcpy(&out->itemsize, t + TP_ITEMSIZE, 8);
	if (!(out->flags & PYT_TPFLAGS_READY) || out->basicsize < 16 ||
	    out->basicsize > (1 << 24) || out->itemsize < 0 ||
	    out->itemsize > (1 << 20))
		return -EINVAL;
	/* Its type must be a type (type, or a metaclass) whose type is a
	 * type: the chain every type object has. */
	meta = get64(t + OB_TYPE);
	if (rd64(rd, ctx, meta + TP_FLAGS, &meta_flags) ||
	    rd64(rd, ctx, meta + OB_TYPE, &mm) ||
	    rd64(rd, ctx, mm + TP_FLAGS, &mm_flags))
		return -EFAULT;
	if (!(meta_flags & PYT_TPFLAGS_TYPE_SUBCLASS) ||
	    !(mm_flags & PYT_TPFLAGS_TYPE_SUBCLASS))
		return -EINVAL;
	name = get64(t + TP_NAME);
	if (!name)
		return -EINVAL;
	err = read_cstr(rd, ctx, name, out->name);
	if (err)
		return err;
	/* Heap types (classes) by their qualified name, "Server.Handler". */
	if (out->flags & PYT_TPFLAGS_HEAPTYPE && l->ht_qualname) {
		uint64_t q;

		if (!rd64(rd, ctx, addr + l->ht_qualname, &q) &&
		    !read_ascii(l, rd, ctx, q, qual))
			memcpy(out->name, qual, sizeof(qual));
	}
	return 0;
}

unsigned pyt_preheader(const struct pyt_layout *l, uint64_t flags)
{
	uint64_t pre = l->minor >= 12 ? (PYT_TPFLAGS_MANAGED_DICT |
					 PYT_TPFLAGS_MANAGED_WEAKREF)
				      : PYT_TPFLAGS_MANAGED_DICT;

	return (flags & PYT_TPFLAGS_HAVE_GC ? GC_HEAD : 0) +
	       (flags & pre ? PRE_HEADER : 0);
}

bool pyt_fits(const struct pyt_layout *l, const struct pyt_type *t,
	      unsigned off, uint64_t size)
{
	/* A compact str is smaller than str's tp_basicsize (that of the
	 * non-compact form); every other object holds at least its type's
	 * basic size. */
	if (pyt_preheader(l, t->flags) != off || size < off + 16)
		return false;
	return t->flags & PYT_TPFLAGS_UNICODE_SUBCLASS ||
	       (uint64_t)t->basicsize + off <= size;
}
