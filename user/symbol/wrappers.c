/*
 * Allocator wrappers matched by regular expressions (regex.h, extended
 * syntax, anchored where a prefix would be too wide), and the C++ standard
 * library by name. The built-in list covers the well-known wrappers of
 * distribution software; CPython's allocators are among them, but a Python
 * frame, when known, names a site before any native frame does
 * (collector.c).
 */
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wrappers.h"

static const char *const builtin[] = {
	/* redis, valkey, KeyDB */
	"^z(try)?(malloc|calloc|realloc)(_usable|_num)*(_internal)?$",
	"^z(strdup|malloc_usable_size|zmalloc_no_tcache)$",
	/* PostgreSQL */
	"^(palloc|palloc0|palloc_extended|repalloc|repalloc_huge|pstrdup|"
	"pnstrdup)$",
	"^MemoryContextAlloc",
	"^AllocSet",
	/* glib */
	"^g_(try_)?(malloc|malloc0|realloc)(_n)?$",
	"^g_slice_alloc0?$",
	"^g_(memdup2?|strdup|strndup)$",
	/* xmalloc family (GNU, git, ...) */
	"^x(malloc|calloc|realloc|zalloc|strdup|strndup|memdupz)$",
	/* node / V8 ArrayBuffer backing stores */
	"ArrayBufferAllocator::",
	"^node::(Unchecked)?(Malloc|Calloc|Realloc)",
	"^v8::internal::BackingStore::Allocate",
	/* V8 10 (node 18, Debian 12): BackingStore::Allocate's callback runs
	 * inside the heap's accounting of external memory */
	"^v8::internal::Heap::AllocateExternalBackingStore",
	/* C++ runtime (the standard library: cxx_library below) */
	"^operator new",
	/* CPython (when no Python frame names the site) */
	"^_?PyMem_",
	"^_?PyObject_(Malloc|Calloc|Realloc|New|NewVar)",
	"^_?PyObject_GC_",
	"^pymalloc_",
	"^_PyObject_Malloc",
};

#define NBUILTIN (sizeof(builtin) / sizeof(builtin[0]))

/*
 * A function of the C++ standard library (std::, __gnu_cxx::), wherever
 * it was compiled: containers, strings and streams allocate for their
 * caller, and their templates are instantiated in the program itself
 * (std::vector<long>::_M_realloc_insert is the program's code), so
 * neither the module nor a prefix tells them apart. A function template's
 * name starts with its return type ("void std::vector<...>::push_back",
 * "std::string& std::vector<...>::emplace_back<...>"): the qualified name
 * follows the last space outside <> and (), and before an operator's
 * symbol (which may be < or (). A user's function that merely takes a
 * std:: type ("app::f<std::string>") is not one. Walking from the
 * allocator outwards, user code that the library calls back (a lambda in a
 * std::function) is reached before the library frames that called it.
 */
static bool cxx_library(const char *func)
{
	const char *name = func;
	int depth = 0;

	for (const char *c = func; *c; c++) {
		if (!depth && !strncmp(c, "operator", 8) &&
		    (c == func || c[-1] == ':' || c[-1] == ' '))
			break;
		if (*c == '<' || *c == '(')
			depth++;
		else if ((*c == '>' || *c == ')') && depth > 0)
			depth--;
		else if (*c == ' ' && !depth && c[1])
			name = c + 1;
	}
	return !strncmp(name, "std::", 5) || !strncmp(name, "__gnu_cxx::", 11);
}

struct wrappers {
	regex_t *re;
	int n;
};

int wrappers_new(struct wrappers **out, char *const *user, int n, char *err,
		 size_t errlen)
{
	struct wrappers *w = calloc(1, sizeof(*w));
	int total = (int)NBUILTIN + n, rc = 0;

	*out = NULL;
	if (!w || !(w->re = calloc((size_t)total, sizeof(regex_t)))) {
		free(w);
		return -ENOMEM;
	}
	for (int i = 0; i < total; i++) {
		const char *pat = i < (int)NBUILTIN ? builtin[i]
						    : user[i - (int)NBUILTIN];

		rc = regcomp(&w->re[i], pat, REG_EXTENDED | REG_NOSUB);
		if (rc) {
			char msg[128];

			regerror(rc, &w->re[i], msg, sizeof(msg));
			snprintf(err, errlen, "invalid --skip-frames '%s': %s",
				 pat, msg);
			wrappers_free(w);
			return -EINVAL;
		}
		w->n = i + 1;
	}
	*out = w;
	return 0;
}

bool wrappers_match(const struct wrappers *w, const char *func)
{
	if (!w || !func)
		return false;
	if (cxx_library(func))
		return true;
	for (int i = 0; i < w->n; i++)
		if (!regexec(&w->re[i], func, 0, NULL, 0))
			return true;
	return false;
}

void wrappers_free(struct wrappers *w)
{
	if (!w)
		return;
	for (int i = 0; i < w->n; i++)
		regfree(&w->re[i]);
	free(w->re);
	free(w);
}
