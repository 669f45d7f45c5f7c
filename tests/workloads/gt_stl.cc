// gt_stl: blocks allocated inside the C++ standard library, as C++ programs
// allocate most of theirs: std::string's buffers come from libstdc++.so
// (basic_string<char> is instantiated there: _M_construct, _M_mutate,
// _M_create, stringbuf's growth), std::vector's from the templates
// instantiated here (_M_realloc_insert). Debian builds libstdc++ without
// frame pointers, and the _nofp build of this file has none either, so a
// stack reaches the function that built the container only by CFI.
//
// Each function's blocks are its containers' own (the object allocated
// with new, and its buffer: capacity() + 1 bytes for a string,
// capacity() elements for a vector), held at DONE; the buffers a container
// outgrew are freed on the way.
#include <cstddef>
#include <sstream>
#include <string>
#include <vector>
#include "gt_common.h"

static std::string *kept_strings[64];
static std::string *grown, *report;
static std::vector<long> *numbers;
static std::vector<std::string> *names;

// A string's block: its capacity and the terminating NUL.
static long long str_block(const std::string &s)
{
	return (long long)s.capacity() + 1;
}

// 64 strings of 300..363 characters, each built by _M_construct.
GT_NOINLINE void make_strings(int n)
{
	long long b = 0;
	for (int i = 0; i < n; i++) {
		kept_strings[i] = new std::string(300 + (size_t)i, 'a');
		b += (long long)sizeof(std::string) +
		     str_block(*kept_strings[i]);
	}
	gt_add("make_strings", b, 2LL * n);
}

// One string grown a character at a time: _M_mutate doubles its buffer,
// freeing the old one each time.
GT_NOINLINE void grow_string(int n)
{
	grown = new std::string;
	for (int i = 0; i < n; i++)
		grown->push_back((char)('a' + i % 26));
	gt_add("grow_string",
	       (long long)sizeof(std::string) + str_block(*grown), 2);
}

// A report written through an ostringstream (its stringbuf grows inside
// libstdc++ and is freed with it), kept as a copy.
GT_NOINLINE void format_report(int n)
{
	{
		std::ostringstream os;
		for (int i = 0; i < n; i++)
			os << "line " << i << " of " << n << '\n';
		report = new std::string(os.str());
	}
	gt_add("format_report",
	       (long long)sizeof(std::string) + str_block(*report), 2);
}

// A vector grown by push_back: _M_realloc_insert, instantiated here.
GT_NOINLINE void fill_vector(int n)
{
	numbers = new std::vector<long>;
	for (int i = 0; i < n; i++)
		numbers->push_back(i);
	gt_add("fill_vector",
	       (long long)sizeof(*numbers) +
		       (long long)(numbers->capacity() * sizeof(long)),
	       2);
}

// A vector of strings constructed in place: the vector's block from here,
// each string's from libstdc++.
GT_NOINLINE void make_names(int n)
{
	names = new std::vector<std::string>;
	names->reserve((size_t)n);
	long long b = (long long)sizeof(*names) +
		      (long long)(names->capacity() * sizeof(std::string));
	for (int i = 0; i < n; i++) {
		names->emplace_back(100 + (size_t)i, 'z');
		b += str_block(names->back());
	}
	gt_add("make_names", b, 2LL + n);
}

// Each path once before READY: lazy binding and libstdc++'s first-use
// state (locale, iostream init) stay out of the traced figures.
GT_NOINLINE static void warm_up(void)
{
	std::string *s = new std::string(100, 'w');
	s->push_back('x');
	delete s;
	{
		std::ostringstream os;
		os << "warm " << 1 << '\n';
		std::string r = os.str();
	}
	std::vector<long> v;
	v.push_back(1);
	std::vector<std::string> vs;
	vs.emplace_back(50, 'w');
}

int main()
{
	gt_setup();
	warm_up();
	gt_ready_and_wait();

	make_strings(64);
	grow_string(5000);
	format_report(300);
	fill_vector(10000);
	make_names(48);

	gt_report(-1);
	gt_done_and_wait();
	return 0;
}
