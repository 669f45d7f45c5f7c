#!/usr/bin/env python3
"""Objects in reference cycles and plain ones: memtop's GC% workload.

Prints "READY <pid>", waits for a line on stdin, then makes N objects that
point at themselves (each freed only by the cyclic garbage collector) and N
plain objects (each freed by its reference count going to zero), drops
them all, collects, stops automatic collections and prints "DONE <n> <c>",
c the collections the interpreter counts (gc.get_stats(), all generations),
which stays the count while it waits for stdin to close.
The lines marked CYCLIC and PLAIN are the two sites memtop must tell apart:
GC% near 100 and 0.
"""

import gc
import os
import sys
import tracemalloc


class Cyclic:
    def __init__(self):
        self.me = self  # a reference cycle: refcounting never frees it
        self.payload = [0] * 8


class Plain:
    def __init__(self):
        self.payload = [0] * 8


def make_cyclic():
    return Cyclic()  # CYCLIC


def make_plain():
    return Plain()  # PLAIN


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    # As in py_server.py: with tracemalloc on, a PGO build's allocations go
    # through its allocator table (the calls memtop probes there).
    tracemalloc.start()
    print("READY %d" % os.getpid(), flush=True)
    sys.stdin.readline()
    for _ in range(n):
        c = make_cyclic()
        p = make_plain()
    del c, p
    gc.collect()
    gc.disable()
    print("DONE %d %d" % (n, sum(s["collections"] for s in gc.get_stats())),
          flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
