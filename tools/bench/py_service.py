#!/usr/bin/env python3
"""A steady, allocation-heavy Python service for tools/bench/growth.

Listens on a loopback port and prints "READY <pid> <port>". Each "GET"
line gets one response line: the handler builds a few hundred objects (a
dict of lists and strings, a JSON-ish rendering), answers and drops them,
so the heap stays the same size however many requests come. One client
connection at a time.
"""

import os
import socket


def handle(n):
    items = [{"id": i, "name": "item-%d" % i, "tags": ["a", "b", str(i)]}
             for i in range(60)]
    body = ",".join("%s:%s" % (d["id"], d["name"]) for d in items)
    return ("%d %d\n" % (n, len(body))).encode()


def main():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    print("READY %d %d" % (os.getpid(), srv.getsockname()[1]), flush=True)
    while True:
        conn, _ = srv.accept()
        with conn:
            f = conn.makefile("rb")
            n = 0
            for line in f:
                n += 1
                conn.sendall(handle(n))


if __name__ == "__main__":
    main()
