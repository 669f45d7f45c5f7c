/*
 * The refresh loop (see loop.h). Between refreshes it waits in steps of at
 * most TICK_MS, so a signal or a key is seen quickly; a refresh that runs
 * late moves the next one an interval on rather than bunching them up.
 */
#include <poll.h>
#include "clock.h"
#include "loop.h"

#define TICK_MS 100

static double now_s(void)
{
	return (double)mono_ns() / 1e9;
}

void loop_init(struct loop *l, const struct loop_opts *o)
{
	*l = (struct loop){
		.o = o,
		.interval = o->interval_s > 0 ? o->interval_s : 1.0,
	};
}

void loop_refresh_now(struct loop *l)
{
	l->asked = true;
}

void loop_set_interval(struct loop *l, double s)
{
	l->interval = s;
	l->next = l->last + s;
}

double loop_interval(const struct loop *l)
{
	return l->interval;
}

int loop_run(struct loop *l, const struct loop_view *v,
	     volatile sig_atomic_t *stop)
{
	const struct loop_opts *o = l->o;
	bool gone = false;

	l->next = now_s() + (o->batch ? l->interval : 0);
	for (;;) {
		const struct snapshot *s = NULL;
		double now = now_s();
		int err;

		if (*stop) {
			/* Batch: a signal still gets its final sample, unless
			 * the last one is under 5 ms old: samples are told
			 * apart by their millisecond timestamps. */
			if (!o->batch || (l->n && now - l->last < 0.005))
				return 0;
		} else if (!l->asked && (gone || now < l->next)) {
			int ms = TICK_MS;

			if (!gone && (l->next - now) * 1000 < ms)
				ms = (int)((l->next - now) * 1000) + 1;
			if (!v)
				poll(NULL, 0, ms);
			else if (v->wait(v->ctx, ms))
				return 0;
			continue;
		}
		l->asked = false;
		err = o->refresh(o->ctx, &s);
		l->last = now_s();
		if (err == LOOP_FAILED)
			return 0;
		if (err)
			return err;
		l->n++;
		l->next += l->interval;
		if (l->next < now)
			l->next = now + l->interval;
		if (v) {
			err = v->show(v->ctx, s);
			if (err < 0)
				return err;
			gone |= err == LOOP_GONE;
		} else if (o->gone(o->ctx)) {
			return 0;
		}
		if (o->iterations > 0 && (l->n >= o->iterations || (v && gone)))
			return 0;
		if (o->batch && *stop)
			return 0;
	}
}
