/*
 * The one clock memtop stamps things with: CLOCK_MONOTONIC in ns, the clock
 * of bpf_ktime_get_ns, so userspace times and BPF times compare directly.
 */
#ifndef MEMTOP_CLOCK_H
#define MEMTOP_CLOCK_H

#include <stdint.h>

uint64_t mono_ns(void);

#endif
