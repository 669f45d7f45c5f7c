#!/usr/bin/env python3
"""One Python line whose allocations come from several C functions: the
rows memtop must tell apart by the C frame below the line.

Prints "READY <pid>", waits for a line on stdin, then keeps N entries
made on the line marked APART (a dict, a list, a string and the tuple
holding them: different C functions, some with two call sites in one),
prints "DONE" and waits for stdin to close.
"""

import os
import sys

N = 20000


def work(keep):
    for i in range(N):
        keep.append(({"k%d" % i: i}, [i] * 30, "x" * (200 + i % 7)))  # APART


def main():
    keep = []
    print("READY %d" % os.getpid(), flush=True)
    sys.stdin.readline()
    work(keep)
    print("DONE", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
