#!/usr/bin/env python3
"""Blocks that pymalloc resizes, kept: memtop's ground truth for realloc.

Each item is a small bytearray grown by appends and then shrunk, a list
grown by appends, and tuples cut to their length, all kept in a
module-level list. Their buffers are
resized through PyObject_Realloc / PyMem_Realloc: in place while the size
stays in its pymalloc size class (and above 3/4 of it), moved to another
class otherwise, and begun by realloc(NULL, n). tracemalloc runs from the
start, so the process can report its own growth.

Commands on stdin, one a line, each answered on stdout:
    RUN        makes the next batch of N items (the same sizes every batch),
               answers "DONE <bytes traced now>"
    TMSTOP     tracemalloc.stop() (pymalloc goes back into the allocator
               tables), answers "TMSTOP"

    python3 py_realloc.py N     prints "READY <pid>", then serves commands
"""

import os
import sys
import tracemalloc

_KEEP = []  # the items: nothing ever removes one
CHUNK = b"abcdefghijklmnopqrstuvwxyz"


def make(i):
    b = bytearray(24)
    for j in range(12):
        b += CHUNK[:1 + (i + j) % 9]  # GROW: in place or moved
    del b[-(i % 13) - 1:]  # SHRINK: in place within 3/4 of the class
    items = []
    for j in range(i % 40):
        items.append(j)  # the list's item array: realloc(NULL), then moves
    # A tuple from a generator starts with 10 slots and is cut to its
    # length: with 8 or 9 items it stays in place (above 3/4 of its size
    # class), and these hold most of the bytes kept.
    tuples = [tuple(j for j in range(8 + (i + k) % 2)) for k in range(8)]
    _KEEP.append((b, items, tuples))  # TRIM


def main():
    n = int(sys.argv[1])
    tracemalloc.start()
    print("READY %d" % os.getpid(), flush=True)
    for line in sys.stdin:
        if line.startswith("RUN"):
            for i in range(n):
                make(i)
            print("DONE %d" % tracemalloc.get_traced_memory()[0], flush=True)
        elif line.startswith("TMSTOP"):
            tracemalloc.stop()
            print("TMSTOP", flush=True)


if __name__ == "__main__":
    main()
