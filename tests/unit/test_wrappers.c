/*
 * Unit tests of user/symbol/wrappers.c: which demangled function names a
 * site's FUNCTION passes over (allocator wrappers, the C++ standard
 * library wherever its templates were instantiated, --skip-frames
 * expressions) and which name a site (the program's own functions, even
 * those that take or return std:: types).
 */
#include <stdbool.h>
#include <stdio.h>
#include "check.h"
#include "wrappers.h"

static const char *const skipped[] = {
	"zmalloc",
	"palloc0",
	"MemoryContextAllocZero",
	"g_malloc0_n",
	"node::NodeArrayBufferAllocator::Allocate",
	"v8::internal::Heap::AllocateExternalBackingStore(std::function<void* "
	"(unsigned long)> const&, unsigned long)",
	"operator new",
	"operator new[]",
	"std::__cxx11::basic_string<char, std::char_traits<char>, "
	"std::allocator<char> >::_M_construct<char const*>",
	"std::__cxx11::basic_string<char, std::char_traits<char>, "
	"std::allocator<char> >::basic_string<std::allocator<char> >",
	"std::__cxx11::basic_string<char, std::char_traits<char>, "
	"std::allocator<char> >::push_back",
	"std::__cxx11::basic_ostringstream<char, std::char_traits<char>, "
	"std::allocator<char> >::str",
	"void std::vector<long, std::allocator<long> "
	">::_M_realloc_insert<long>",
	"std::__cxx11::basic_string<char, std::char_traits<char>, "
	"std::allocator<char> >& std::vector<std::__cxx11::basic_string<char, "
	"std::char_traits<char>, std::allocator<char> >, "
	"std::allocator<std::__cxx11::basic_string<char, "
	"std::char_traits<char>, std::allocator<char> > > "
	">::emplace_back<unsigned long, char>",
	"std::pair<std::_Rb_tree_iterator<int>, bool> std::_Rb_tree<int, int, "
	"std::_Identity<int>, std::less<int>, std::allocator<int> "
	">::_M_insert_unique<int const&>",
	"std::basic_ostream<char, std::char_traits<char> >& std::operator<< "
	"<std::char_traits<char> >",
	"__gnu_cxx::new_allocator<int>::allocate",
	"std::_Function_handler<void (), main::{lambda()#1}>::_M_invoke",
	"my_alloc_wrapper",
};

static const char *const named[] = {
	"main",
	"make_strings",
	"Widget::make",
	"gt::make_buffers",
	"v8::internal::(anonymous namespace)::ConstructBuffer",
	"app::load<std::__cxx11::basic_string<char, std::char_traits<char>, "
	"std::allocator<char> > >",
	"void app::fill<std::vector<int, std::allocator<int> > >",
	"std::vector<int, std::allocator<int> > app::parse",
	"main::{lambda()#1}::operator()",
	"app::Matrix::operator()",
	"stdlib_like_name",
	"[unknown 0x1234]",
};

int main(void)
{
	char *user[] = {"^my_alloc_"};
	char err[256];
	struct wrappers *w = NULL;

	check(!wrappers_new(&w, user, 1, err, sizeof(err)) && w,
	      "wrappers_new with one --skip-frames expression");
	for (size_t i = 0; i < sizeof(skipped) / sizeof(skipped[0]); i++)
		check(wrappers_match(w, skipped[i]), "passed over: %s",
		      skipped[i]);
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
		check(!wrappers_match(w, named[i]), "names a site: %s",
		      named[i]);
	check(!wrappers_match(w, NULL), "a frame without a name: no match");
	wrappers_free(w);
	{
		char *bad[] = {"(unclosed"};

		check(wrappers_new(&w, bad, 1, err, sizeof(err)) < 0 && !w &&
			      strstr(err, "(unclosed"),
		      "an invalid expression refused: %s", err);
	}
	printf("%d/%d checks failed\n", failures, checks);
	return failures != 0;
}
