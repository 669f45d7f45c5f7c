#!/usr/bin/env python3
"""memtop on a leaking Python server, against its own tracemalloc.

    MEMTOP=/abs/build/memtop python3 tests/test_python.py [LABEL...]

For each CPython: pyenv's 3.11, 3.12 and 3.13 builds and Debian 12's
/usr/bin/python3.11 on the host, and Debian unstable's own 3.13, 3.14 and
3.15 (PGO/LTO builds, a newer glibc) chrooted into the root tools/test-roots
builds, each as PID 1 of its own PID namespace (unshare --pid --fork
--mount-proc chroot ROOT python3.X), as a containerised server runs:
start tests/workloads/py_server.py, attach memtop (-b -d 0.5 --csv F
--csv-top 0), drive N loopback client connections, and compare the growth
of the process's outstanding bytes over the driving window with the growth
tracemalloc reports inside the server: within 2%; then tracemalloc.stop()
(the interpreter's allocator tables change back) and the same requests must
grow memtop's figure as much again. The site that grew most
must be the Connection's buffer line in Connection.__init__, called from
Server.serve_client. PYTHONS="path ..." replaces the host interpreters;
labels (e.g. sid-3.14 pyenv-3.12) select runs, PY_TESTS="python_realloc
..." the tests. python_realloc: blocks pymalloc resizes (in place, moved,
from NULL; tests/workloads/py_realloc.py) with tracemalloc's hooks in the
tables and then pymalloc's own, within 2%. python_apart: the rows of
one line of tests/workloads/py_apart.py, allocated by several C functions,
each name their C frame in batch output. Needs root and BPF: a loud
SKIP (exit 0) otherwise, exit 1 when CI=true.
"""

import csv
import datetime
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "workloads", "py_server.py")
CYCLES = os.path.join(HERE, "workloads", "py_cycles.py")
APART = os.path.join(HERE, "workloads", "py_apart.py")
REALLOC = os.path.join(HERE, "workloads", "py_realloc.py")
REALLOC_N = 20000
TEST_ROOTS = os.path.join(os.path.dirname(HERE), "tools", "test-roots")
MEMTOP = os.environ.get("MEMTOP", "")
N = int(os.environ.get("PY_TEST_CONNECTIONS", "1500"))
TOLERANCE = 0.02


class TestFailure(Exception):
    pass


class SkipTest(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


class Target:
    """One interpreter to test: on the host, or chrooted into root as PID 1
    of its own PID namespace."""

    def __init__(self, label, python, root=None):
        self.label, self.python, self.root = label, python, root


def interpreters():
    """(targets, errors): what to run, and what could not be set up."""
    if os.environ.get("PYTHONS"):
        return [Target(p, p) for p in os.environ["PYTHONS"].split()], []
    found = [Target("debian-3.11", p) for p in ["/usr/bin/python3.11"]
             if os.access(p, os.X_OK)]
    for v in ("3.11", "3.12", "3.13"):
        for p in sorted(glob.glob("/root/.pyenv/versions/%s*/bin/python%s" %
                                  (v, v))):
            found.append(Target("pyenv-" + p.split("/")[-3], p))
    errors = []
    r = subprocess.run([TEST_ROOTS, "sid"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    if r.returncode:
        errors.append("tools/test-roots sid failed: %s" % r.stderr.strip())
    else:
        root = r.stdout.strip()
        for v in ("3.13", "3.14", "3.15"):
            found.append(Target("sid-" + v, "/usr/bin/python" + v, root))
    return found, errors


class Server:
    """py_server.py under one target; pid is its pid as memtop sees it."""

    def __init__(self, t, env, script=SERVER, args=()):
        self.t, self.tmp_in_root = t, None
        server = script
        if t.root:
            self.tmp_in_root = tempfile.mkdtemp(prefix="memtop-py-",
                                                dir=os.path.join(t.root, "tmp"))
            shutil.copy(script, self.tmp_in_root)
            server = "/tmp/%s/%s" % (os.path.basename(self.tmp_in_root),
                                     os.path.basename(script))
            argv = ["unshare", "--pid", "--fork", "--mount-proc", "chroot",
                    t.root, t.python, server]
        else:
            argv = [t.python, server]
        self.proc = subprocess.Popen(argv + list(args), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        f = self.proc.stdout.readline().split()
        check(len(f) in (2, 3) and f[0] == b"READY",
              "server did not start: %r" % f)
        self.ns_pid = int(f[1])
        self.port = int(f[2]) if len(f) == 3 else None
        self.pid = self.proc.pid
        if t.root:
            # unshare forked the namespace's PID 1, which became python.
            kids = open("/proc/%d/task/%d/children" %
                        (self.proc.pid, self.proc.pid)).read().split()
            check(len(kids) == 1, "unshare has children %r" % kids)
            self.pid = int(kids[0])
            nspid = [l for l in open("/proc/%d/status" % self.pid)
                     if l.startswith("NSpid:")][0].split()
            check(nspid[-1] == str(self.ns_pid) == "1",
                  "server is not PID 1 of its namespace: NSpid %r, says %d" %
                  (nspid, self.ns_pid))

    def ask(self, line):
        """A command on stdin (scripts that read them), its answer's words."""
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().split()

    def stop(self):
        if self.pid != self.proc.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()
        self.proc.wait()
        if self.tmp_in_root:
            shutil.rmtree(self.tmp_in_root, ignore_errors=True)


def marker_line(tag, path=SERVER):
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if "# " + tag in line:
                return i
    raise TestFailure("no '# %s' line in %s" % (tag, SERVER))


def request(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(payload)
        return s.recv(256)


def mark(port):
    r = request(port, b"MARK").split()
    check(len(r) == 2 and r[0] == b"MARK", "bad MARK reply %r" % r)
    return int(r[1]), time.time()


def read_rows(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["_t"] = datetime.datetime.strptime(
            r["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=datetime.timezone.utc).timestamp()
    return rows


def sample_after(path, pid, t, timeout=60):
    """The first process row of pid taken at least 0.6 s after time t
    (the server is idle then), and the site rows of that sample."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            rows = read_rows(path)
            procs = [r for r in rows if r["scope"] == "process" and
                     int(r["pid"]) == pid and r["_t"] >= t + 0.6]
            if procs:
                p = procs[0]
                sites = {r["site_id"]: r for r in rows if r["scope"] == "site"
                         and r["timestamp"] == p["timestamp"]}
                return p, sites
        time.sleep(0.2)
    raise TestFailure("no memtop sample after the mark within %ss" % timeout)


def client(port, n):
    # The host's Python drives the loopback clients: a chroot shares the
    # network namespace.
    subprocess.check_call([sys.executable, SERVER, "--client", str(port),
                           str(n)])


def start_memtop(args, err_path, stdout=subprocess.DEVNULL):
    """memtop with args, stderr into err_path, once it says its probes
    are attached."""
    memtop = subprocess.Popen([MEMTOP] + args, stdout=stdout,
                              stderr=open(err_path, "w"))
    deadline = time.monotonic() + 30
    while "probes attached" not in open(err_path).read():
        check(memtop.poll() is None and time.monotonic() < deadline,
              "memtop did not attach: %s" % open(err_path).read())
        time.sleep(0.1)
    return memtop


def server_env():
    """The environment for the leaking server: CPython's allocator as the
    build has it (the test sets tracemalloc itself)."""
    env = dict(os.environ)
    env.pop("PYTHONMALLOC", None)
    env.pop("PYTHONTRACEMALLOC", None)
    return env


def run_one(t, tmp):
    srv = Server(t, server_env())
    memtop = None
    try:
        pid, port = srv.pid, srv.port
        client(port, 50)
        csv_path = os.path.join(tmp, "py.csv")
        err_path = os.path.join(tmp, "py.err")
        memtop = start_memtop(["-p", str(pid), "-b", "-d", "0.5", "--csv",
                               csv_path, "--csv-top", "0"], err_path)
        time.sleep(1.0)
        t1, w1 = mark(port)
        p1, s1 = sample_after(csv_path, pid, w1)
        client(port, N)
        t2, w2 = mark(port)
        p2, s2 = sample_after(csv_path, pid, w2)
        # tracemalloc.stop() puts pymalloc back into the allocator tables:
        # memtop must follow (re-probe at its next refresh) and see the same
        # growth for the same requests, now without tracemalloc to compare.
        r = request(port, b"TMSTOP")
        check(r.startswith(b"TMSTOP"), "bad TMSTOP reply %r" % r)
        time.sleep(1.5)
        _, w3 = mark(port)
        p3, _ = sample_after(csv_path, pid, w3)
        client(port, N)
        _, w4 = mark(port)
        p4, _ = sample_after(csv_path, pid, w4)
        memtop.send_signal(signal.SIGINT)
        check(memtop.wait(30) == 0, "memtop exited with %s" % memtop.returncode)
        grow_tm = t2 - t1
        grow_mt = int(p2["outstanding_bytes"]) - int(p1["outstanding_bytes"])
        ratio = grow_mt / grow_tm if grow_tm else float("inf")
        print("  %s: tracemalloc +%d B, memtop +%d B (%.1f%%), mmap_bytes %s, "
              "lost %s" % (t.label, grow_tm, grow_mt, (ratio - 1) * 100,
                           p2["mmap_bytes"], p2["lost_events"]), flush=True)
        grow_mt2 = int(p4["outstanding_bytes"]) - int(p3["outstanding_bytes"])
        ratio2 = grow_mt2 / grow_tm if grow_tm else float("inf")
        print("  after tracemalloc.stop(): memtop +%d B for the same %d "
              "requests (%.1f%%), not seen: %r" %
              (grow_mt2, N, (ratio2 - 1) * 100, p4["not_seen"]), flush=True)
        errs = []
        if abs(ratio - 1) > TOLERANCE:
            errs.append("growth differs by %.1f%% (> %d%%)" %
                        ((ratio - 1) * 100, TOLERANCE * 100))
        if p2["not_seen"]:
            errs.append("while tracemalloc runs memtop sees everything, yet "
                        "says it does not see %r" % p2["not_seen"])
        if "inlines" in p4["not_seen"]:
            # A PGO build runs pymalloc inlined in its callers once the
            # tables hold pymalloc again: memtop must say so, and may only
            # miss allocations, never invent them.
            if not (0.5 < ratio2 < 1):
                errs.append("after tracemalloc.stop(), with inlined calls "
                            "said unseen, the growth is %.1f%% of the truth"
                            % (ratio2 * 100))
        elif abs(ratio2 - 1) > TOLERANCE:
            errs.append("after tracemalloc.stop() the growth differs by "
                        "%.1f%% (> %d%%) and memtop says nothing is unseen "
                        "(%r)" % ((ratio2 - 1) * 100, TOLERANCE * 100,
                                  p4["not_seen"]))
        growth = []
        for sid, r in s2.items():
            before = int(s1[sid]["outstanding_bytes"]) if sid in s1 else 0
            growth.append((int(r["outstanding_bytes"]) - before, r))
        growth.sort(key=lambda g: -g[0])
        check(growth, "no site rows")
        top = growth[0][1]
        print("  top site by growth: +%d B  %s  %s  [%s]" %
              (growth[0][0], top["function"], top["location"],
               top["stack"][-160:]), flush=True)
        want = "py_server.py:%d" % marker_line("LEAK")
        if top["function"] != "Connection.__init__" or top["location"] != want:
            errs.append("top site is %s %s, expected Connection.__init__ %s" %
                        (top["function"], top["location"], want))
        frames = top["stack"].split(";")
        if "Server.serve_client" not in frames:
            errs.append("the creating frame Server.serve_client (line %d) is "
                        "not in the stack %r" % (marker_line("CREATE"),
                                                 top["stack"]))
        # The Python frames stand where the eval loop's native frames were:
        # the stack starts at the module's code, and what follows the
        # leaking function is the C it called, never the interpreter's
        # start-up (the native walk went past an eval loop it did not
        # recognise: a PGO build's loop runs in a part split off its symbol).
        startup = {"_start", "__libc_start_main", "Py_BytesMain", "Py_RunMain",
                   "PyEval_EvalCode"}
        inner = frames[len(frames) - frames[::-1].index("Connection.__init__"):] \
            if "Connection.__init__" in frames else []
        if frames[0] != "<module>" or startup & set(inner):
            errs.append("the Python frames are not spliced in where the eval "
                        "loop ran: %r" % top["stack"])
        # Without --python-native, below the Python frames is the one C
        # function that called the allocator.
        if len(inner) != 1:
            errs.append("%d C frames below Connection.__init__ without "
                        "--python-native (expected 1): %r" %
                        (len(inner), top["stack"]))
        if errs:
            raise TestFailure("; ".join(errs))
    finally:
        if memtop and memtop.poll() is None:
            memtop.kill()
        srv.stop()


def growth_errors(what, grow_tm, grow_mt, not_seen):
    """What is wrong with memtop's growth against tracemalloc's."""
    ratio = grow_mt / grow_tm if grow_tm else float("inf")
    if "inlines" in not_seen:
        # A PGO build inlines pymalloc's fast path once the tables hold
        # pymalloc: memtop says so, and may only miss, never invent (how
        # much it misses depends on the workload's share of small blocks).
        if not 0 < ratio <= 1 + TOLERANCE:
            return ["%s, with inlined calls said unseen, the growth is "
                    "%.1f%% of the truth" % (what, ratio * 100)]
        return []
    if abs(ratio - 1) > TOLERANCE:
        return ["%s the growth differs by %.1f%% (> %d%%), not seen: %r" %
                (what, (ratio - 1) * 100, TOLERANCE * 100, not_seen)]
    return []


def run_realloc(t, tmp):
    """pymalloc's reallocs: blocks grown and shrunk in place, moved to
    another size class, begun by realloc(NULL), kept
    (tests/workloads/py_realloc.py). The same batch of items is made with
    tracemalloc running, and again after tracemalloc.stop() (pymalloc's own
    functions in the tables: the uprobe session that predicts where a block
    will be); the second must grow memtop's outstanding bytes by what
    tracemalloc counted for the first, and the site that grew most is in
    make()."""
    srv = Server(t, server_env(), REALLOC, [str(REALLOC_N)])
    memtop = None
    try:
        pid = srv.pid
        csv_path = os.path.join(tmp, "rea.csv")
        err_path = os.path.join(tmp, "py.err")
        r = srv.ask("RUN")  # warm: the interpreter's own first allocations
        check(r[:1] == [b"DONE"], "bad RUN reply %r" % r)
        tm1 = int(r[1])
        memtop = start_memtop(["-p", str(pid), "-b", "-d", "0.5", "--csv",
                               csv_path, "--csv-top", "0"], err_path)
        time.sleep(1.0)
        p1, s1 = sample_after(csv_path, pid, time.time())
        r = srv.ask("RUN")
        tm2 = int(r[1])
        p2, s2 = sample_after(csv_path, pid, time.time())
        check(srv.ask("TMSTOP") == [b"TMSTOP"], "bad TMSTOP reply")
        time.sleep(1.5)
        p3, _ = sample_after(csv_path, pid, time.time())
        srv.ask("RUN")
        p4, _ = sample_after(csv_path, pid, time.time())
        memtop.send_signal(signal.SIGINT)
        check(memtop.wait(30) == 0, "memtop exited with %s" % memtop.returncode)
        grow_tm = tm2 - tm1
        grow1 = int(p2["outstanding_bytes"]) - int(p1["outstanding_bytes"])
        grow2 = int(p4["outstanding_bytes"]) - int(p3["outstanding_bytes"])
        # While tracemalloc runs, its own traces (raw mallocs in its hooks)
        # grow the process too, in table-sized steps: that batch is shown,
        # and the batch after tracemalloc.stop() is held to its figure.
        print("  %s: %d items: tracemalloc +%d B, memtop +%d B while it runs "
              "(%+.2f%%: its traces included); after tracemalloc.stop() "
              "memtop +%d B (%+.2f%%), lost %s, not seen: %r" %
              (t.label, REALLOC_N, grow_tm, grow1, (grow1 / grow_tm - 1) * 100,
               grow2, (grow2 / grow_tm - 1) * 100, p4["lost_events"],
               p4["not_seen"]), flush=True)
        errs = growth_errors("after tracemalloc.stop()", grow_tm, grow2,
                             p4["not_seen"])
        growth = sorted(((int(r["outstanding_bytes"]) -
                          (int(s1[sid]["outstanding_bytes"]) if sid in s1
                           else 0), r) for sid, r in s2.items()),
                        key=lambda g: -g[0])
        check(growth, "no site rows")
        top = growth[0][1]
        print("  top site by growth: +%d B  %s  %s  [%s]" %
              (growth[0][0], top["function"], top["location"],
               top["stack"][-120:]), flush=True)
        # 3.11's comprehensions are functions of their own, called by make.
        if "make" not in top["stack"].split(";"):
            errs.append("top site is %s %s, not called by make(): %r" %
                        (top["function"], top["location"], top["stack"]))
        if errs:
            raise TestFailure("; ".join(errs))
    finally:
        if memtop and memtop.poll() is None:
            memtop.kill()
        srv.stop()


def run_native(t, tmp):
    """--python-native: the leaking line's stack also holds the C frames
    between the allocator's caller and the eval loop (bytearray's
    constructor calls, at least two), spliced under the Python frames."""
    srv = Server(t, server_env())
    memtop = None
    try:
        pid, port = srv.pid, srv.port
        csv_path = os.path.join(tmp, "native.csv")
        err_path = os.path.join(tmp, "py.err")
        memtop = start_memtop(["-p", str(pid), "-b", "-d", "0.5", "--csv",
                               csv_path, "--csv-top", "0", "--python-native"],
                              err_path)
        time.sleep(1.0)
        client(port, 300)
        _, w = mark(port)
        _, sites = sample_after(csv_path, pid, w)
        memtop.send_signal(signal.SIGINT)
        check(memtop.wait(30) == 0, "memtop exited with %s" % memtop.returncode)
        want = "py_server.py:%d" % marker_line("LEAK")
        rows = [r for r in sites.values() if r["location"] == want]
        check(rows, "no site at %s" % want)
        top = max(rows, key=lambda r: int(r["outstanding_bytes"]))
        frames = top["stack"].split(";")
        check("Connection.__init__" in frames and frames[0] == "<module>",
              "Python frames not spliced in: %r" % top["stack"])
        inner = frames[len(frames) - frames[::-1].index("Connection.__init__"):]
        print("  %d C frames below Connection.__init__: %s" %
              (len(inner), ";".join(inner)[-160:]), flush=True)
        check(len(inner) >= 2, "--python-native kept %d C frames below "
              "Connection.__init__: %r" % (len(inner), top["stack"]))
    finally:
        if memtop and memtop.poll() is None:
            memtop.kill()
        srv.stop()


def run_apart(t, tmp):
    """Rows at one Python line that differ by the C frame below it: each
    names that frame ("in list_repeat"; "in PyUnicode_New #id" where two
    call sites in one function allocate), never the site id alone."""
    root_tmp, argv = None, [t.python, APART]
    if t.root:
        root_tmp = tempfile.mkdtemp(prefix="memtop-py-",
                                    dir=os.path.join(t.root, "tmp"))
        shutil.copy(APART, root_tmp)
        argv = ["chroot", t.root, t.python, "/tmp/%s/py_apart.py" %
                os.path.basename(root_tmp)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    memtop = None
    try:
        f = proc.stdout.readline().split()
        check(f[:1] == [b"READY"], "py_apart.py did not start: %r" % f)
        out_path = os.path.join(tmp, "apart.out")
        memtop = start_memtop(["-p", str(proc.pid), "-b", "-d", "0.5",
                               "--top", "0"], os.path.join(tmp, "py.err"),
                              stdout=open(out_path, "w"))
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        check(proc.stdout.readline().strip() == b"DONE",
              "py_apart.py did not finish")
        time.sleep(1.2)
        memtop.send_signal(signal.SIGINT)
        check(memtop.wait(30) == 0, "memtop exited with %s" % memtop.returncode)
        want = "py_apart.py:%d" % marker_line("APART", APART)
        text = open(out_path).read()
        last = text[text.rindex("memtop "):] if "memtop " in text else ""
        labels = []
        for line in last.splitlines():
            w = line.split()
            if want in w:
                labels.append(" ".join(w[w.index(want) + 1:]))
        print("  %d rows at %s: %s" % (len(labels), want,
                                       "; ".join(labels)[:300]), flush=True)
        check(len(labels) >= 3, "%d rows at %s in the last sample" %
              (len(labels), want))
        check(all(l.startswith("in ") for l in labels),
              "a row at %s without its C frame's name: %r" % (want, labels))
    finally:
        if memtop and memtop.poll() is None:
            memtop.kill()
        proc.kill()
        proc.wait()
        if root_tmp:
            shutil.rmtree(root_tmp, ignore_errors=True)


def run_gc(t, tmp):
    """Objects in cycles are freed by the cyclic collector, plain ones by
    their reference count: the sites that made them show gc_frees >= 90%
    and exactly 0% of their frees, and the collections are counted."""
    n = 5000
    script, inroot = CYCLES, None
    if t.root:
        inroot = tempfile.mkdtemp(prefix="memtop-py-",
                                  dir=os.path.join(t.root, "tmp"))
        shutil.copy(CYCLES, inroot)
        script = "/tmp/%s/py_cycles.py" % os.path.basename(inroot)
        argv = ["unshare", "--pid", "--fork", "--mount-proc", "chroot",
                t.root, t.python, script, str(n)]
    else:
        argv = [t.python, script, str(n)]
    cyc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    pid = cyc.pid
    memtop = None
    try:
        f = cyc.stdout.readline().split()
        check(len(f) == 2 and f[0] == b"READY", "workload did not start: %r" % f)
        if t.root:
            kids = open("/proc/%d/task/%d/children" % (cyc.pid, cyc.pid)).read()
            check(len(kids.split()) == 1, "unshare has children %r" % kids)
            pid = int(kids.split()[0])
        else:
            pid = int(f[1])
        csv_path = os.path.join(tmp, "gc.csv")
        err_path = os.path.join(tmp, "py.err")
        out_path = os.path.join(tmp, "gc.out")
        memtop = start_memtop(["-p", str(pid), "-b", "-d", "0.5", "--csv",
                               csv_path, "--csv-top", "0"], err_path,
                              open(out_path, "w"))
        first = sample_after(csv_path, pid, time.time() - 0.6)[0]
        cyc.stdin.write(b"go\n")
        cyc.stdin.flush()
        line = cyc.stdout.readline().split()
        check(len(line) == 3 and line[0] == b"DONE",
              "workload did not finish: %r" % line)
        p, sites = sample_after(csv_path, pid, time.time())
        memtop.send_signal(signal.SIGINT)
        check(memtop.wait(30) == 0, "memtop exited with %s" % memtop.returncode)
        errs = []
        made = [r for r in sites.values() if
                r["location"] == "py_cycles.py:%d" % marker_line("CYCLIC", CYCLES)
                and int(r["allocs"]) >= n // 2]
        check(made, "no site at the CYCLIC line made >= %d objects" % (n // 2))
        for tag, lo, hi in (("CYCLIC", 0.9, 1.0), ("PLAIN", 0.0, 0.0)):
            loc = "py_cycles.py:%d" % marker_line(tag, CYCLES)
            # The sites of the objects themselves (one free per object made
            # there): strings and such made on the same line are fewer.
            objs = [r for r in sites.values() if r["location"] == loc and
                    int(r["frees"]) >= n // 2]
            if not objs:
                errs.append("no site at %s with >= %d frees" % (loc, n // 2))
            for r in objs:
                share = int(r["gc_frees"]) / int(r["frees"])
                print("  %s site %s %s: %s of %s frees by the collector "
                      "(%.1f%%)" % (tag, r["function"], loc, r["gc_frees"],
                                    r["frees"], share * 100), flush=True)
                if not lo <= share <= hi:
                    errs.append("%s site %s: GC share %.1f%%, expected "
                                "%.0f-%.0f%%" % (tag, r["site_id"], share * 100,
                                                 lo * 100, hi * 100))
        if not p["gc_collections"] or not first["gc_collections"]:
            errs.append("gc_collections empty for a CPython process")
        elif int(p["gc_collections"]) <= int(first["gc_collections"]):
            errs.append("gc_collections did not grow: %s -> %s" %
                        (first["gc_collections"], p["gc_collections"]))
        elif int(p["gc_collections"]) != int(line[2]):
            # The workload stopped collecting before it printed its count.
            errs.append("gc_collections %s, the interpreter counts %s" %
                        (p["gc_collections"], int(line[2])))
        else:
            print("  collections: %s -> %s (the interpreter: %d)" %
                  (first["gc_collections"], p["gc_collections"],
                   int(line[2])), flush=True)
        out = open(out_path).read()
        if " GC% " not in out or " collections (+" not in out:
            errs.append("batch output lacks the GC% column or gc line")
        if errs:
            raise TestFailure("; ".join(errs))
    finally:
        if memtop and memtop.poll() is None:
            memtop.kill()
        if pid != cyc.pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        cyc.kill()
        cyc.wait()
        if inroot:
            shutil.rmtree(inroot, ignore_errors=True)


def type_rows(path, pid, t):
    """The type rows of pid's first sample at least 0.6 s after time t."""
    p, _ = sample_after(path, pid, t)
    return {r["function"]: r for r in read_rows(path)
            if r["scope"] == "type" and r["timestamp"] == p["timestamp"]
            and int(r["pid"]) == pid}


def run_types(t, tmp):
    """A server that keeps every connection: the live Connection and
    ConnectionHandler objects grow one for one with the connections, and
    the sites named for them are the lines that create them."""
    n = 300
    env = dict(os.environ)
    env.pop("PYTHONMALLOC", None)
    srv = Server(t, env)
    memtop = None
    try:
        pid, port = srv.pid, srv.port
        client(port, 20)
        csv_path = os.path.join(tmp, "types.csv")
        out_path = os.path.join(tmp, "types.out")
        err_path = os.path.join(tmp, "py.err")
        memtop = start_memtop(["-p", str(pid), "-b", "-d", "0.5", "--types",
                               "--top", "0", "--csv", csv_path, "--csv-top",
                               "0"], err_path, open(out_path, "w"))
        time.sleep(1.0)
        _, w1 = mark(port)
        before = type_rows(csv_path, pid, w1)
        client(port, n)
        _, w2 = mark(port)
        after = type_rows(csv_path, pid, w2)
        memtop.send_signal(signal.SIGINT)
        check(memtop.wait(30) == 0, "memtop exited with %s" % memtop.returncode)
        errs = []
        for name in ("Connection", "ConnectionHandler"):
            b = int(before[name]["outstanding_allocs"]) if name in before else 0
            a = int(after[name]["outstanding_allocs"]) if name in after else 0
            print("  %s: %d -> %d live objects (+%d for %d connections)" %
                  (name, b, a, a - b, n), flush=True)
            if a - b != n:
                errs.append("%s grew by %d, expected %d" % (name, a - b, n))
        # The batch section names each type's top site: the creating lines.
        lines = open(out_path).read().split("\n")
        want = {"Connection": "Server.serve_client py_server.py:%d" %
                marker_line("CREATE"),
                "ConnectionHandler": "Connection.__init__ py_server.py:%d" %
                marker_line("HANDLER")}
        for name, site in want.items():
            rows = [l for l in lines if (" %s " % name) in l and
                    l.split()[0] == str(pid)]
            if not rows or not rows[-1].endswith(site):
                errs.append("%s: top site %r, expected %r" %
                            (name, rows[-1] if rows else None, site))
        if errs:
            raise TestFailure("; ".join(errs))
    finally:
        if memtop and memtop.poll() is None:
            memtop.kill()
        srv.stop()


def main():
    why = []
    if os.geteuid() != 0:
        why.append("not running as root")
    if why:
        msg = "SKIP: Python tests need root and BPF (%s)" % "; ".join(why)
        print("%s\n%s\n%s" % ("!" * len(msg), msg, "!" * len(msg)), flush=True)
        return 1 if os.environ.get("CI", "").lower() == "true" else 0
    if not (MEMTOP and os.access(MEMTOP, os.X_OK)):
        print("FAIL setup: MEMTOP=%r is not an executable" % MEMTOP)
        return 1
    pys, errors = interpreters()
    for e in errors:
        print("FAIL setup: %s" % e)
    if sys.argv[1:]:
        pys = [t for t in pys if t.label in sys.argv[1:]]
    if not pys:
        print("FAIL setup: no CPython found (set PYTHONS)")
        return 1
    failed, skipped, ran = list(errors), [], len(errors)
    for py in pys:
        tmp = tempfile.mkdtemp(prefix="memtop-py-")
        for name, fn in (("python_server", run_one),
                         ("python_native", run_native),
                         ("python_apart", run_apart), ("python_gc", run_gc),
                         ("python_types", run_types),
                         ("python_realloc", run_realloc)):
            if os.environ.get("PY_TESTS") and \
                    name not in os.environ["PY_TESTS"].split():
                continue
            t0 = time.monotonic()
            ran += 1
            try:
                fn(py, tmp)
                print("PASS %s %s (%.1fs)" % (name, py.label,
                                             time.monotonic() - t0),
                      flush=True)
            except SkipTest as e:
                skipped.append("%s %s" % (name, py.label))
                print("SKIP %s %s: %s" % (name, py.label, e), flush=True)
            except Exception as e:
                failed.append("%s %s" % (name, py.label))
                print("FAIL %s %s: %s" % (name, py.label, e), flush=True)
                err = os.path.join(tmp, "py.err")
                if os.path.exists(err):
                    print("  memtop stderr:\n" + open(err).read()[-1500:])
    print("%d/%d passed, %d skipped%s" % (
        ran - len(failed) - len(skipped), ran, len(skipped),
        " (failed: %s)" % ", ".join(failed) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
