#!/usr/bin/env python3
"""An allocation-heavy request handler: the benchmark's Python workload.

    py_handler.py MODE N      MODE: untraced | tm1 | tm25 (tracemalloc with
                              1 or 25 frames, started here)

Prints "READY <pid>", waits for a line on stdin, runs N requests and prints
"US_PER_REQ <microseconds per request>". Each request builds new objects
and buffers, keeps some in a bounded cache, makes short-lived strings,
lists and dicts: what a web handler does between reading a request and
writing its answer.
"""

import collections
import os
import sys
import time
import tracemalloc


class Item:
    __slots__ = ("key", "tags", "body")

    def __init__(self, key, tags, body):
        self.key, self.tags, self.body = key, tags, body


CACHE = collections.OrderedDict()
CACHE_MAX = 512


def handle(i):
    key = "item-%d" % (i % 2048)
    headers = {"path": "/items/" + key, "host": "example.org",
               "accept": "application/json", "n": str(i)}
    tags = [t.upper() for t in ("a", "b", "c", "d") if t]
    body = bytearray(256)
    body[:len(key)] = key.encode()
    item = Item(key, tags, bytes(body))
    CACHE[key] = item
    CACHE.move_to_end(key)
    if len(CACHE) > CACHE_MAX:
        CACHE.popitem(last=False)
    out = {"key": item.key, "tags": ",".join(item.tags),
           "size": len(item.body), "hdr": sorted(headers)}
    return repr(out)


def main():
    mode, n = sys.argv[1], int(sys.argv[2])
    if mode == "tm1":
        tracemalloc.start(1)
    elif mode == "tm25":
        tracemalloc.start(25)
    for i in range(2000):  # warm: the cache full, the type caches hot
        handle(i)
    print("READY %d" % os.getpid(), flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    for i in range(n):
        handle(i)
    dt = time.perf_counter() - t0
    print("US_PER_REQ %.3f" % (dt / n * 1e6), flush=True)


if __name__ == "__main__":
    main()
