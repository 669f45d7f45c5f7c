// gt_cxx: C++ operator new/delete variants, called from a class method and
// from functions in a namespace, so memtop's `function` column must show
// demangled names without parameters (Widget::make, gt::make_buffers).
// Only the outermost allocator call counts: operator new calls malloc, and
// the nothrow forms call the throwing operator new.
#include <new>
#include <cstddef>
#include "gt_common.h"

struct Widget {
	char payload[48];
	long id;
	GT_NOINLINE static Widget *make(int n);
};

struct alignas(128) Aligned {
	char x[300];
};

static void *volatile sink;
static Widget *kept_widgets[16];

// 7 widgets allocated, 2 deleted again (sized delete: _ZdlPvm).
GT_NOINLINE Widget *Widget::make(int n)
{
	for (int i = 0; i < n; i++) {
		kept_widgets[i] = new Widget;
		kept_widgets[i]->id = i;
	}
	delete kept_widgets[0];
	delete kept_widgets[1];
	gt_add("Widget::make", (long long)(n - 2) * (long long)sizeof(Widget),
	       n - 2);
	gt_cum("Widget::make", n, 2);
	return kept_widgets[2];
}

namespace gt
{

// new[] of chars (no array cookie): 3 kept, 1 deleted with delete[].
GT_NOINLINE void make_buffers(int n)
{
	for (int i = 0; i < n; i++)
		sink = new char[1500 + (size_t)i];
	char *tmp = new char[999];
	delete[] tmp;
	long long b = 0;
	for (int i = 0; i < n; i++)
		b += 1500 + i;
	gt_add("gt::make_buffers", b, n);
	gt_cum("gt::make_buffers", n + 1, 1);
}

// nothrow new and new[]: the nothrow forms call operator new inside, the
// outermost call is the one that counts.
GT_NOINLINE void make_nothrow(void)
{
	Widget *w = new (std::nothrow) Widget;
	if (!w)
		gt_die("nothrow new");
	sink = w;
	char *a = new (std::nothrow) char[2222];
	if (!a)
		gt_die("nothrow new[]");
	sink = a;
	gt_add("gt::make_nothrow", (long long)sizeof(Widget) + 2222, 2);
}

// aligned new (align_val_t), one kept, one freed with aligned sized delete;
// aligned new[] kept.
GT_NOINLINE void make_aligned(void)
{
	Aligned *a = new Aligned;
	Aligned *b = new Aligned;
	delete b;
	Aligned *arr = new Aligned[3];
	sink = a;
	sink = arr;
	gt_add("gt::make_aligned", 4 * (long long)sizeof(Aligned), 2);
	gt_cum("gt::make_aligned", 3, 1);
}

// Plain ::operator new / ::operator delete called directly.
GT_NOINLINE void raw_new(void)
{
	void *p = ::operator new(4321);
	void *q = ::operator new(1234);
	::operator delete(q);
	sink = p;
	gt_add("gt::raw_new", 4321, 1);
}

} // namespace gt

GT_NOINLINE static void warm_up(void)
{
	delete new Widget;
	delete[] new char[10];
	delete new (std::nothrow) Widget;
	delete[] new (std::nothrow) char[10];
	delete new Aligned;
	delete[] new Aligned[2];
	::operator delete(::operator new(10));
}

int main()
{
	gt_setup();
	warm_up();
	gt_ready_and_wait();

	sink = Widget::make(7);
	gt::make_buffers(3);
	gt::make_nothrow();
	gt::make_aligned();
	gt::raw_new();

	gt_report(-1);
	gt_done_and_wait();
	return 0;
}
