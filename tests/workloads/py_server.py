#!/usr/bin/env python3
"""A leaking TCP server: memtop's Python workload.

Every connection is kept forever in a module-level list, and each
Connection holds a ConnectionHandler that points back at it (a reference
cycle, as handler/protocol pairs in real servers have). Real loopback
sockets, the default allocator (no PYTHONMALLOC). tracemalloc runs inside
the server so that it can report its own growth: a client that sends
"MARK" gets "MARK <bytes traced now>" back; "TMSTOP" stops tracemalloc
(CPython puts its own allocators back in its allocator tables).

    python3 py_server.py          prints "READY <pid> <port>", serves forever
    python3 py_server.py --client PORT N     makes N requests (the client)
"""

import os
import socket
import sys
import tracemalloc

BUF = 4096
_CONNECTIONS = []  # the leak: nothing ever removes a connection


class ConnectionHandler:
    def __init__(self, conn):
        self.conn = conn  # back-reference: Connection <-> handler cycle
        self.requests = 0

    def handle(self, data):
        self.requests += 1
        self.conn.buffer[:len(data)] = data
        return b"OK " + data[:16] + b"\n"


class Connection:
    def __init__(self, sock, addr):
        self.addr = addr
        self.buffer = bytearray(BUF)  # LEAK: per-connection buffer
        self.handler = ConnectionHandler(self)  # HANDLER
        self.peer = "%s:%d" % addr


class Server:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)

    def serve_client(self, sock, addr):
        data = sock.recv(256)
        if data.startswith(b"MARK"):
            sock.sendall(b"MARK %d\n" % tracemalloc.get_traced_memory()[0])
            return
        if data.startswith(b"TMSTOP"):  # the allocator tables change back
            tracemalloc.stop()
            sock.sendall(b"TMSTOP\n")
            return
        conn = Connection(sock, addr)  # CREATE: the line that leaks
        _CONNECTIONS.append(conn)
        sock.sendall(conn.handler.handle(data))

    def serve_forever(self):
        while True:
            sock, addr = self.sock.accept()
            try:
                self.serve_client(sock, addr)
            finally:
                sock.close()


def client(port, n):
    for i in range(n):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /item/%d\n" % i)
            s.recv(256)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--client":
        client(int(sys.argv[2]), int(sys.argv[3]))
        return
    tracemalloc.start()
    srv = Server()
    print("READY %d %d" % (os.getpid(), srv.sock.getsockname()[1]), flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
