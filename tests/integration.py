#!/usr/bin/env python3
"""memtop integration tests against ground-truth workloads.

Usage (as root, kernel with BPF and BTF):
    MEMTOP=/abs/build/memtop WORKLOADS=/abs/build/tests/workloads \
        python3 tests/integration.py [test names...]

Each workload (tests/workloads/gt_*.c*) prints READY <pid>, waits for
SIGUSR1, allocates from distinct functions, prints
"EXPECT <function> <bytes> <allocs>" lines (plus EXPECT_TOTAL, EXPECT_CUM,
EXPECT_UNKNOWN_FREES, EXPECT_INUSE_AT_EXIT) and DONE, then waits for
SIGTERM. The tests compare memtop's last CSV sample with those numbers
exactly. Prints PASS/FAIL per test; exits non-zero if any test failed.
Python 3 standard library only.
"""

import csv
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import urllib.request
import time

HEADER = ("timestamp,elapsed_s,pid,comm,scope,site_id,function,location,stack,"
          "outstanding_bytes,outstanding_allocs,allocs,frees,alloc_bytes,"
          "rss_bytes,free_bytes,growth_bps,alloc_rate,free_rate,lost_events,"
          "unknown_frees,scale,mmap_bytes,min_size,depth,open_fds,threads,"
          "gc_frees,gc_collections,touched_bytes,not_seen,peak_bytes,"
          "interval_peak_bytes").split(",")
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# TIMEOUT_SCALE stretches the waits on slow machines (tools/vmtest sets it
# under qemu's TCG, which runs a guest several times slower).
_SCALE = float(os.environ.get("TIMEOUT_SCALE", "1") or 1)
READY_TIMEOUT = 10 * _SCALE
ATTACH_TIMEOUT = 20 * _SCALE
DONE_TIMEOUT = 60 * _SCALE
EXIT_TIMEOUT = 20 * _SCALE
SETTLE = 0.6 * _SCALE  # seconds between DONE and SIGINT (> 2 intervals of 0.2 s)
INTERVAL = "0.2"

MEMTOP = os.environ.get("MEMTOP", "")
WORKLOADS = os.environ.get("WORKLOADS", "")
VERBOSE = os.environ.get("VERBOSE", "") not in ("", "0")


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


# --------------------------------------------------------------------------
# Processes


class Child:
    """What every test's child process can do: self.p is its Popen."""

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.p.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        if self.alive():
            try:
                os.kill(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            # A killed memtop exits once the kernel has detached its
            # probes: a perf-event uprobe each on kernels before 6.6, slow
            # under an emulator. Cleanup waits, and never raises.
            try:
                self.p.wait(timeout=30 * _SCALE)
            except subprocess.TimeoutExpired:
                print("    note: pid %d still running %.0f s after SIGKILL" %
                      (self.p.pid, 30 * _SCALE), flush=True)


class Proc(Child):
    """A child process whose stdout or stderr lines are collected by a thread."""

    def __init__(self, argv, env=None, watch="stdout", stdout=None, cwd=None):
        self.argv = argv
        self.lines = []
        self.q = queue.Queue()
        kw = {}
        if watch == "stdout":
            kw["stdout"] = subprocess.PIPE
            kw["stderr"] = subprocess.DEVNULL
        else:
            kw["stdout"] = stdout if stdout is not None else subprocess.DEVNULL
            kw["stderr"] = subprocess.PIPE
        self.p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                  cwd=cwd, **kw)
        self.pid = self.p.pid
        stream = self.p.stdout if watch == "stdout" else self.p.stderr
        self.t = threading.Thread(target=self._reader, args=(stream,),
                                  daemon=True)
        self.t.start()

    def _reader(self, stream):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            self.q.put(line)
        self.q.put(None)

    def wait_for(self, pred, timeout, what):
        """Wait for a line satisfying pred; returns it, raises on timeout/EOF."""
        deadline = time.monotonic() + timeout
        for line in list(self.lines):
            if pred(line):
                return line
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure("timeout (%ss) waiting for %s" % (timeout, what))
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                rc = self.p.poll()
                raise TestFailure("%s ended (rc=%s) before %s" %
                                  (os.path.basename(self.argv[0]), rc, what))
            if pred(line):
                return line

    def tail(self, n=25):
        return "\n".join("    | " + l for l in self.lines[-n:])

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


class Workload(Proc):
    def __init__(self, name, env_extra=None):
        env = dict(os.environ)
        env.pop("GT_NO_WAIT", None)
        env.update(env_extra or {})
        self.name = name
        self.path = os.path.join(WORKLOADS, name)
        if not os.access(self.path, os.X_OK):
            raise TestFailure("workload %s not built" % self.path)
        super().__init__([self.path], env=env, watch="stdout")

    def wait_ready(self):
        line = self.wait_for(lambda l: l.startswith("READY "), READY_TIMEOUT,
                             "READY from " + self.name)
        check(int(line.split()[1]) == self.pid, "READY pid mismatch: " + line)

    def wait_done(self):
        self.wait_for(lambda l: l == "DONE", DONE_TIMEOUT, "DONE from " + self.name)
        errs = [l for l in self.lines if l.startswith("GT_ERROR")]
        check(not errs, "workload error: %s" % errs)
        return parse_expect(self.lines)


class RootWorkload(Workload):
    """A workload run in another root (tools/test-roots) as PID 1 of its own
    PID namespace: unshare --pid --fork --mount-proc chroot ROOT wl. Its
    pid is the host's; its READY line gives the namespace's (1)."""

    def __init__(self, name, root):
        self.name = name
        self.path = os.path.join(WORKLOADS, name)
        if not os.access(self.path, os.X_OK):
            raise TestFailure("workload %s not built" % self.path)
        self.dir = tempfile.mkdtemp(prefix="memtop-gt-",
                                    dir=os.path.join(root, "tmp"))
        shutil.copy(self.path, self.dir)
        inroot = "/tmp/%s/%s" % (os.path.basename(self.dir), name)
        env = dict(os.environ)
        env.pop("GT_NO_WAIT", None)
        Proc.__init__(self, ["unshare", "--pid", "--fork", "--mount-proc",
                             "chroot", root, inroot], env=env, watch="stdout")

    def wait_ready(self):
        line = self.wait_for(lambda l: l.startswith("READY "), READY_TIMEOUT,
                             "READY from " + self.name)
        check(line.split()[1] == "1", "not PID 1 of its namespace: " + line)
        kids = open("/proc/%d/task/%d/children" %
                    (self.p.pid, self.p.pid)).read().split()
        check(len(kids) == 1, "unshare has children %r" % kids)
        self.pid = int(kids[0])

    def signal(self, sig):
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self):
        if self.pid != self.p.pid:
            self.signal(signal.SIGKILL)
        super().kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def sid_root():
    """Debian unstable's root (built and cached by tools/test-roots)."""
    r = subprocess.run([os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "tools", "test-roots"), "sid"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True)
    check(r.returncode == 0, "tools/test-roots sid: %s" % r.stderr.strip())
    return r.stdout.strip()


def root_test(name, stack_root="main"):
    """A ground-truth workload in Debian unstable's root (its glibc, not
    ours), as PID 1 of a PID namespace: the figures exactly as on the host."""
    def t(ctx):
        w = RootWorkload(name, sid_root())
        ctx.procs.append(w)
        w.wait_ready()
        m = ctx.start_memtop([w.pid], [])
        m.wait_attached()
        w.signal(signal.SIGUSR1)
        exp = w.wait_done()
        time.sleep(SETTLE)
        check(m.alive(), "memtop died while tracing (rc=%s)" % m.p.poll())
        m.stop()
        rows = read_csv(m.csv_path)
        verify(rows, w.pid, exp, stack_root=stack_root, notes=ctx.notes,
               comm=name)
    return t


def parse_expect(lines):
    exp = {"fn": {}, "cum": {}, "total": None, "unknown": None, "inuse": None}
    for l in lines:
        f = l.split()
        if not f:
            continue
        if f[0] == "EXPECT":
            exp["fn"][f[1]] = (int(f[2]), int(f[3]))
        elif f[0] == "EXPECT_CUM":
            exp["cum"][f[1]] = (int(f[2]), int(f[3]))
        elif f[0] == "EXPECT_TOTAL":
            exp["total"] = (int(f[1]), int(f[2]))
        elif f[0] == "EXPECT_UNKNOWN_FREES":
            exp["unknown"] = int(f[1])
        elif f[0] == "EXPECT_INUSE_AT_EXIT":
            exp["inuse"] = (int(f[1]), int(f[2]))
    return exp


class Memtop(Proc):
    def __init__(self, pids, tmpdir, extra=()):
        self.csv_path = os.path.join(tmpdir, "memtop.csv")
        self.out_path = os.path.join(tmpdir, "memtop.out")
        self.out = open(self.out_path, "wb")
        argv = [MEMTOP, "-p", ",".join(str(p) for p in pids), "-b", "-d",
                INTERVAL, "--csv", self.csv_path, "--csv-top", "0"] + list(extra)
        self.cmdline = " ".join(argv)
        super().__init__(argv, watch="stderr", stdout=self.out)

    def wait_attached(self):
        self.wait_for(lambda l: "probes attached" in l, ATTACH_TIMEOUT,
                      "'probes attached' on memtop stderr")

    def stop(self):
        """SIGINT, wait, require exit status 0."""
        self.signal(signal.SIGINT)
        rc = self.wait(EXIT_TIMEOUT)
        check(rc is not None, "memtop did not exit within %ss of SIGINT" %
              EXIT_TIMEOUT)
        check(rc == 0, "memtop exited with status %s after SIGINT" % rc)
        self.t.join(timeout=5)
        self.out.close()


# --------------------------------------------------------------------------
# CSV


def read_csv(path):
    check(os.path.exists(path), "CSV file %s was not created" % path)
    with open(path, newline="") as f:
        raw = f.read()
    check(raw, "CSV file is empty")
    first = raw.split("\n", 1)[0].rstrip("\r")
    check(first == ",".join(HEADER),
          "CSV header mismatch:\n  got:  %s\n  want: %s" % (first, ",".join(HEADER)))
    rows = list(csv.reader(raw.splitlines()))
    check(rows[0] == HEADER, "CSV header fields mismatch")
    out = []
    for i, r in enumerate(rows[1:], start=2):
        check(len(r) == len(HEADER),
              "CSV line %d has %d fields, want %d: %r" % (i, len(r), len(HEADER), r))
        d = dict(zip(HEADER, r))
        check(TS_RE.match(d["timestamp"]),
              "CSV line %d: timestamp %r not ISO 8601 with ms and Z" % (i, d["timestamp"]))
        check(d["scope"] in ("process", "site"),
              "CSV line %d: bad scope %r" % (i, d["scope"]))
        try:
            d["elapsed_s"] = float(d["elapsed_s"])
            d["pid"] = int(d["pid"])
            for k in ("outstanding_bytes", "outstanding_allocs", "allocs", "frees",
                      "alloc_bytes", "free_bytes", "lost_events", "unknown_frees",
                      "scale", "mmap_bytes", "min_size", "depth", "open_fds",
                      "threads", "gc_frees", "gc_collections", "peak_bytes",
                      "interval_peak_bytes"):
                d[k] = int(d[k]) if d[k] != "" else None
        except ValueError as e:
            raise TestFailure("CSV line %d: bad number: %s: %r" % (i, e, r))
        d["_line"] = i
        out.append(d)
    check(out, "CSV has a header but no rows")
    return out


def last_sample(rows, pid, require_global_last=False):
    """(process_row, [site rows]) of the last sample that has pid's process row."""
    procs = [r for r in rows if r["scope"] == "process" and r["pid"] == pid]
    check(procs, "no scope=process row for pid %d in CSV" % pid)
    last = max(procs, key=lambda r: (r["elapsed_s"], r["timestamp"], r["_line"]))
    if require_global_last:
        gl = max(r["elapsed_s"] for r in rows)
        check(last["elapsed_s"] == gl,
              "final sample (elapsed_s=%s) has no process row for pid %d "
              "(its last one is at %s)" % (gl, pid, last["elapsed_s"]))
    key = (last["timestamp"], last["elapsed_s"])
    sites = [r for r in rows if r["scope"] == "site" and r["pid"] == pid and
             (r["timestamp"], r["elapsed_s"]) == key]
    return last, sites


def aggregate(sites):
    agg = {}
    for r in sites:
        a = agg.setdefault(r["function"], [0, 0, 0, 0, []])
        a[0] += r["outstanding_bytes"] or 0
        a[1] += r["outstanding_allocs"] or 0
        a[2] += r["allocs"] or 0
        a[3] += r["frees"] or 0
        a[4].append(r)
    return agg


def verify(rows, pid, exp, stack_root="main", require_global_last=False,
           notes=None, comm=None, inner=None):
    """Compare pid's last sample with the workload's expectations. A stack
    ends with its function, or with frames inner(frame) allows after it."""
    proc, sites = last_sample(rows, pid, require_global_last)
    agg = aggregate(sites)
    errs = []
    if comm is not None and proc["comm"] != comm[:15]:
        errs.append("process row comm %r, expected %r" % (proc["comm"], comm[:15]))
    for fn, (eb, ea) in sorted(exp["fn"].items()):
        gb, ga = agg[fn][:2] if fn in agg else (0, 0)
        if (gb, ga) != (eb, ea):
            errs.append("%s: expected %d B in %d allocs, got %d B in %d allocs%s" %
                        (fn, eb, ea, gb, ga, "" if fn in agg else " (no site row)"))
    for fn, (eal, efr) in sorted(exp["cum"].items()):
        if fn not in agg:
            errs.append("%s: no site row (expected cumulative allocs=%d frees=%d)" %
                        (fn, eal, efr))
            continue
        gal, gfr = agg[fn][2:4]
        if (gal, gfr) != (eal, efr):
            errs.append("%s: expected cumulative allocs=%d frees=%d, got allocs=%d "
                        "frees=%d" % (fn, eal, efr, gal, gfr))
    # Stacks of the expected functions: bare names, outermost first.
    for fn, (eb, ea) in sorted(exp["fn"].items()):
        if fn not in agg or ea == 0:
            continue
        for r in agg[fn][4]:
            if (r["outstanding_allocs"] or 0) == 0:
                continue
            frames = r["stack"].split(";") if r["stack"] else []
            while inner and frames and frames[-1] != fn and inner(frames[-1]):
                frames.pop()
            if not frames or frames[-1] != fn:
                errs.append("%s: stack does not end with the function "
                            "(outermost first expected): %r" % (fn, r["stack"]))
            elif stack_root is not None and stack_root not in frames[:-1]:
                errs.append("%s: stack does not contain %r: %r" %
                            (fn, stack_root, r["stack"]))
            if any("(" in f for f in frames):
                errs.append("%s: stack frames not bare names: %r" % (fn, r["stack"]))
    unexpected = {fn: a[:2] for fn, a in agg.items()
                  if fn not in exp["fn"] and (a[0] or a[1])}
    if exp["total"] is not None:
        got = (proc["outstanding_bytes"], proc["outstanding_allocs"])
        if got != exp["total"]:
            errs.append("process row: expected total %d B in %d allocs, got %s B in "
                        "%s allocs" % (exp["total"] + got))
    # Internal consistency: with --csv-top 0 the sites add up to the process.
    sb = sum(r["outstanding_bytes"] or 0 for r in sites)
    sa = sum(r["outstanding_allocs"] or 0 for r in sites)
    if (sb, sa) != (proc["outstanding_bytes"], proc["outstanding_allocs"]):
        errs.append("site rows sum to %d B / %d allocs but process row says %s B / "
                    "%s allocs" % (sb, sa, proc["outstanding_bytes"],
                                   proc["outstanding_allocs"]))
    if exp["unknown"] is not None:
        uf = proc["unknown_frees"]
        if uf is None or uf < exp["unknown"]:
            errs.append("process row: expected unknown_frees >= %d, got %s" %
                        (exp["unknown"], uf))
    if unexpected:
        errs.append("unexpected sites holding memory: %s" %
                    ", ".join("%s=%dB/%d" % (k, v[0], v[1])
                              for k, v in sorted(unexpected.items())))
    if notes is not None:
        notes.append("pid %d: process row %sB/%s allocs, allocs=%s frees=%s "
                     "lost_events=%s unknown_frees=%s, %d site rows" %
                     (pid, proc["outstanding_bytes"], proc["outstanding_allocs"],
                      proc["allocs"], proc["frees"], proc["lost_events"],
                      proc["unknown_frees"], len(sites)))
    if errs:
        raise TestFailure("pid %d (%s):\n    " % (pid, proc["comm"]) +
                          "\n    ".join(errs))
    return proc, sites


# --------------------------------------------------------------------------
# Test driver


class Ctx:
    """Tracks processes and temp dirs of one test for cleanup/diagnostics."""

    def __init__(self, name):
        self.name = name
        self.procs = []
        self.memtop = None
        self.tmp = tempfile.mkdtemp(prefix="memtop-it-%s-" % name)
        self.notes = []
        self.litter = []  # files the test's processes leave elsewhere

    def workload(self, name, env=None):
        w = Workload(name, env)
        self.procs.append(w)
        return w

    def start_memtop(self, pids, extra=()):
        self.memtop = Memtop(pids, self.tmp, extra)
        self.procs.append(self.memtop)
        return self.memtop

    def cleanup(self):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            if isinstance(p, Memtop) and not p.out.closed:
                p.out.close()
        for path in self.litter:
            try:
                os.unlink(path)
            except OSError:
                pass
        if not os.environ.get("KEEP_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)


def traced_run(ctx, names, lib_for=None, extra=(), env=None):
    """Start workloads, attach memtop, trigger, wait for DONE, stop memtop.

    Returns ([(workload, expectations)], csv rows)."""
    ws = [ctx.workload(n, env) for n in names]
    for w in ws:
        w.wait_ready()
    args = list(extra)
    if lib_for:
        args += ["--lib", lib_for(ws[0])]
    m = ctx.start_memtop([w.pid for w in ws], args)
    m.wait_attached()
    for w in ws:
        w.signal(signal.SIGUSR1)
    exps = [w.wait_done() for w in ws]
    time.sleep(SETTLE)
    check(m.alive(), "memtop died while tracing (rc=%s)" % m.p.poll())
    m.stop()
    rows = read_csv(m.csv_path)
    return list(zip(ws, exps)), rows


def simple_test(name, stack_root="main", lib_for=None):
    def t(ctx):
        res, rows = traced_run(ctx, [name], lib_for=lib_for)
        for w, exp in res:
            verify(rows, w.pid, exp, stack_root=stack_root, notes=ctx.notes,
                   comm=w.name)
    return t


def test_stl(name):
    """Blocks allocated inside libstdc++ (Debian's, no frame pointers):
    the share of the containers' bytes charged to the function that built
    them is at least 90% (37% when stacks stopped in libstdc++), and then
    exact, with stacks through to main."""
    def t(ctx):
        res, rows = traced_run(ctx, [name])
        w, exp = res[0]
        _, sites = last_sample(rows, w.pid)
        agg = aggregate(sites)
        want = sum(b for b, _ in exp["fn"].values())
        right = sum(min(agg[fn][0], b) if fn in agg else 0
                    for fn, (b, _) in exp["fn"].items())
        ctx.notes.append("%s: %d of %d B (%.1f%%) charged to the function "
                         "that built them" % (name, right, want,
                                              100.0 * right / want))
        check(right * 100 >= want * 90,
              "only %d of %d B (%.1f%%) charged to the function that built "
              "them; by site: %s" % (right, want, 100.0 * right / want,
                                     ", ".join("%s=%d" % (k, v[0]) for k, v in
                                               sorted(agg.items()) if v[0])))
        verify(rows, w.pid, exp, notes=ctx.notes, comm=w.name,
               inner=lambda f: "std::" in f)
    return t


def test_peak(ctx):
    """A burst allocated and freed between two samples: outstanding never
    shows it, the peaks must, exactly; the intervals after it fall back to
    the held level."""
    w = ctx.workload("gt_peak")
    w.wait_ready()
    m = ctx.start_memtop([w.pid], ["--listen", "127.0.0.1:0"])
    m.wait_attached()
    addr = m.wait_for(lambda l: "serving http://" in l, ATTACH_TIMEOUT,
                      "'serving http://' on memtop stderr")
    addr = re.search(r"serving http://([^/]+)/", addr).group(1)
    w.signal(signal.SIGUSR1)
    exp = w.wait_done()
    want_peak = [int(l.split()[1]) for l in w.lines
                 if l.startswith("EXPECT_PEAK ")]
    check(len(want_peak) == 1, "no EXPECT_PEAK line from gt_peak")
    want_peak = want_peak[0]
    hold = exp["fn"]["peak_hold"][0]
    time.sleep(2 * SETTLE)
    check(m.alive(), "memtop died while tracing (rc=%s)" % m.p.poll())
    with urllib.request.urlopen("http://%s/metrics" % addr, timeout=10) as r:
        metrics = r.read().decode()
    m.stop()
    want_line = 'memtop_peak_bytes{pid="%d",comm="gt_peak"} %d' % (w.pid,
                                                                 want_peak)
    check(want_line in metrics.splitlines(),
          "/metrics has no %r:\n%s" % (want_line, "\n".join(
              l for l in metrics.splitlines() if "peak" in l)))
    rows = read_csv(m.csv_path)
    procs = sorted((r for r in rows if r["scope"] == "process" and
                    r["pid"] == w.pid), key=lambda r: r["_line"])
    check(len(procs) >= 3, "only %d samples of pid %d" % (len(procs), w.pid))
    last = procs[-1]
    ivals = [r["interval_peak_bytes"] for r in procs]
    ctx.notes.append("peak %s (want %d), interval peaks %s, outstanding %s"
                     % (last["peak_bytes"], want_peak, ivals,
                        last["outstanding_bytes"]))
    check(last["outstanding_bytes"] == hold,
          "outstanding %s, want the held %d" % (last["outstanding_bytes"], hold))
    check(last["peak_bytes"] == want_peak,
          "peak_bytes %s, want %d" % (last["peak_bytes"], want_peak))
    check(max(ivals) == want_peak,
          "no interval shows the burst: interval peaks %s, want %d"
          % (ivals, want_peak))
    check(last["interval_peak_bytes"] == hold,
          "last interval's peak %s, want the held %d (the burst was "
          "intervals ago)" % (last["interval_peak_bytes"], hold))
    check(all(r["peak_bytes"] >= r["interval_peak_bytes"] >=
              r["outstanding_bytes"] for r in procs),
          "peak >= interval peak >= outstanding fails in some sample")
    first = procs.index(next(r for r in procs
                             if r["interval_peak_bytes"] == want_peak))
    check(all(r["peak_bytes"] < want_peak for r in procs[:first]),
          "peak_bytes reached the burst before any interval did")
    with open(m.out_path, errors="replace") as f:
        out = f.read()
    want_txt = ", peak %.1f MiB (interval %.1f KiB" % (want_peak / 1048576.0,
                                                    hold / 1024.0)
    check(re.search(r"PID %d .*" % w.pid + re.escape(want_txt), out),
          "batch output shows no peak for pid %d" % w.pid)


def jemalloc_lib(w):
    with open("/proc/%d/maps" % w.pid) as f:
        for line in f:
            f5 = line.split(None, 5)
            if len(f5) == 6 and "libjemalloc" in f5[5]:
                return f5[5].strip()
    raise TestFailure("libjemalloc not mapped in pid %d" % w.pid)


def test_two_pids(ctx):
    res, rows = traced_run(ctx, ["gt_basic", "gt_basic"])
    check(res[0][0].pid != res[1][0].pid, "same pid twice")
    errs = []
    for w, exp in res:
        try:
            verify(rows, w.pid, exp, notes=ctx.notes)
        except TestFailure as e:
            errs.append(str(e))
    check(not errs, "\n  ".join(errs))


def test_folded(ctx, name="gt_basic"):
    folded = os.path.join(ctx.tmp, "memtop.folded")
    res, rows = traced_run(ctx, [name], extra=["--folded", folded])
    w, exp = res[0]
    check(os.path.exists(folded), "--folded file was not created")
    with open(folded) as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    check(lines, "--folded file is empty")
    total = 0
    per_fn = {}
    for l in lines:
        stack, _, num = l.rpartition(" ")
        check(stack and num.isdigit(), "bad folded line: %r" % l)
        total += int(num)
        frames = stack.split(";")
        per_fn.setdefault(frames[-1], []).append((frames, int(num)))
    errs = []
    if total != exp["total"][0]:
        errs.append("folded lines sum to %d, expected process total %d" %
                    (total, exp["total"][0]))
    am = per_fn.get("alloc_malloc", [])
    if not am:
        errs.append("no folded line ending with ';alloc_malloc <bytes>' (last "
                    "frames seen: %s)" % sorted(per_fn)[:20])
    else:
        s = sum(n for _, n in am)
        if s != exp["fn"]["alloc_malloc"][0]:
            errs.append("alloc_malloc folded bytes %d, expected %d" %
                        (s, exp["fn"]["alloc_malloc"][0]))
        for frames, _ in am:
            if "main" not in frames[:-1]:
                errs.append("alloc_malloc folded stack lacks main (outermost "
                            "first?): %s" % ";".join(frames))
    # 43+ frames: past the short-stack map, every frame still there.
    deep = per_fn.get("alloc_deep", [])
    for frames, _ in deep:
        n = frames.count("deep_recurse")
        if n != 40 or "main" not in frames:
            errs.append("alloc_deep stack has %d deep_recurse frames (want "
                        "40) and %s main: %s" % (
                            n, "a" if "main" in frames else "no",
                            ";".join(frames)))
    if not deep:
        errs.append("no folded line ending with ';alloc_deep <bytes>'")
    for fn, (eb, _) in exp["fn"].items():
        got = sum(n for _, n in per_fn.get(fn, []))
        if got != eb:
            errs.append("folded %s: %d bytes, expected %d" % (fn, got, eb))
    check(not errs, "\n    ".join(errs))
    # The CSV of the same run must be right too.
    verify(rows, w.pid, exp, notes=ctx.notes)


def test_exit(ctx):
    w = ctx.workload("gt_exit")
    w.wait_ready()
    m = ctx.start_memtop([w.pid])
    m.wait_attached()
    w.signal(signal.SIGUSR1)
    exp = w.wait_done()
    check(w.wait(10) == 0, "gt_exit did not exit 0 by itself")
    rc = m.wait(EXIT_TIMEOUT)
    check(rc is not None, "memtop still running %ss after its only target exited"
          % EXIT_TIMEOUT)
    check(rc == 0, "memtop exited with status %s after the target exited" % rc)
    m.t.join(timeout=5)
    m.out.close()
    check(any("exited" in l for l in m.lines),
          "memtop did not print a line containing 'exited'")
    rows = read_csv(m.csv_path)
    verify(rows, w.pid, exp, require_global_last=True, notes=ctx.notes)


def test_exec(ctx):
    """The target execs itself: the old image's blocks are purged, the new
    image is traced under the same pid, exactly."""
    w = ctx.workload("gt_exec")
    w.wait_ready()
    m = ctx.start_memtop([w.pid])
    m.wait_attached()
    w.signal(signal.SIGUSR1)
    exp = w.wait_done()
    time.sleep(0.6)
    m.stop()
    rows = read_csv(m.csv_path)
    verify(rows, w.pid, exp, notes=ctx.notes)


VALGRIND_RE = re.compile(r"in use at exit: ([\d,]+) bytes in ([\d,]+) blocks")


def valgrind_test(name):
    def t(ctx):
        vg = shutil.which("valgrind")
        if not vg:
            raise SkipTest("valgrind not installed")
        env = dict(os.environ, GT_NO_WAIT="1", GT_NO_PVALLOC="1")
        p = subprocess.run([vg, "--leak-check=full", "--error-exitcode=99",
                            "--errors-for-leak-kinds=none",
                            os.path.join(WORKLOADS, name)], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=120)
        out = p.stdout.decode(errors="replace")
        err = p.stderr.decode(errors="replace")
        check(p.returncode == 0, "valgrind %s exit %d:\n%s" %
              (name, p.returncode, err[-2000:]))
        exp = parse_expect(out.splitlines())
        check(exp["inuse"] is not None and "DONE" in out.splitlines(),
              "workload output incomplete:\n" + out)
        m = VALGRIND_RE.search(err)
        check(m, "no 'in use at exit' in valgrind output:\n" + err[-2000:])
        got = (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", "")))
        check(got == exp["inuse"],
              "valgrind in use at exit %d B in %d blocks, workload computed "
              "%d B in %d blocks" % (got + exp["inuse"]))
        tb = sum(b for b, _ in exp["fn"].values())
        ta = sum(a for _, a in exp["fn"].values())
        check((tb, ta) == exp["total"], "EXPECT lines sum to %d/%d but "
              "EXPECT_TOTAL is %d/%d" % ((tb, ta) + exp["total"]))
        ctx.notes.append("valgrind: %d B in %d blocks" % got)
    return t


class SkipTest(Exception):
    pass


def test_depth(ctx):
    """--depth 3: stacks of at most 3 frames, figures still exact, the mode
    labelled in CSV, batch and folded output."""
    folded = os.path.join(ctx.tmp, "memtop.folded")
    res, rows = traced_run(ctx, ["gt_basic"],
                           extra=["--depth", "3", "--folded", folded])
    w, exp = res[0]
    proc, sites = last_sample(rows, w.pid)
    errs = []
    if (proc["outstanding_bytes"], proc["outstanding_allocs"]) != exp["total"]:
        errs.append("process total %s B / %s, expected %d B / %d" % (
            proc["outstanding_bytes"], proc["outstanding_allocs"],
            exp["total"][0], exp["total"][1]))
    agg = aggregate(sites)
    for fn, (eb, ea) in sorted(exp["fn"].items()):
        got = tuple(agg[fn][:2]) if fn in agg else (0, 0)
        if got != (eb, ea):
            errs.append("%s: expected %d B in %d, got %s" % (fn, eb, ea, got))
    for r in sites:
        n = len(r["stack"].split(";")) if r["stack"] else 0
        if n > 3:
            errs.append("site %s has %d frames: %s" % (r["function"], n,
                                                        r["stack"]))
    if any(r["depth"] != 3 for r in rows):
        errs.append("CSV depth column not 3 on every row")
    with open(folded) as f:
        lines = [l for l in f if l.strip()]
    if not lines or not all(l.startswith("[memtop: stacks cut at 3 frames];")
                            for l in lines):
        errs.append("folded lines not rooted at the --depth label: %r" %
                    lines[:2])
    elif sum(int(l.rsplit(" ", 1)[1]) for l in lines) != exp["total"][0]:
        errs.append("folded lines do not sum to the total")
    check(not errs, "\n    ".join(errs))


def stack_tails(rows, pid, exp, want, what):
    """Exact figures (verify), no [unknown 0x...] frame in any of pid's
    stacks, and each expected function's stacks from main on matching
    want[fn]: a list of frame names or sets of names one of which the
    frame has. Returns the stacks seen, for the notes."""
    root = "main" if all(p[0] == "main" for p in want.values()) else None
    proc, sites = verify(rows, pid, exp, stack_root=root)
    errs, seen = [], set()
    for r in sites:
        frames = r["stack"].split(";") if r["stack"] else []
        junk = [f for f in frames if f.startswith("[unknown")]
        if junk:
            errs.append("%s: junk frame %s in %r" % (r["function"], junk[0],
                                                      r["stack"]))
        if r["function"] not in want or not r["outstanding_allocs"]:
            continue
        seen.add(r["stack"])
        tail = frames[frames.index("main"):] if "main" in frames else frames
        pat = want[r["function"]]
        if len(tail) != len(pat) or any(
                f not in (p if isinstance(p, set) else {p})
                for p, f in zip(pat, tail)):
            errs.append("%s (%s): stack %r, want %s" % (
                r["function"], what, r["stack"], ";".join(
                    "|".join(sorted(p)) if isinstance(p, set) else p
                    for p in pat)))
    check(not errs, "\n    ".join(errs))
    return sorted(seen)


# The frame returning into the signal trampoline: named by its code (a
# stripped libc has no symbol for it), or by glibc's symbol where libc has
# its symbol table.
SIGNAL_FRAME = {"[signal frame]", "__restore_rt"}

# A handler's stack, as the CFI unwinder walks it: past the trampoline (its
# frame is the interrupted thread's state the kernel saved) into the
# interrupted function and main. raise() reaches the handler from libc's
# kill syscall; the libc frames between raise and the trampoline are
# glibc's business, so only their ends are pinned.
SIGNAL_CFI = {
    "on_alarm": ["main", "spin_for_alarm", SIGNAL_FRAME, "on_alarm"],
}


def test_signal(name, fp_walk=False):
    """Blocks allocated in signal handlers (SIGALRM over a spinning
    function, raise(SIGUSR2)): exact bytes per handler, and stacks that go
    on cleanly past the signal frame. The CFI unwinder reads the
    interrupted registers from the kernel's signal frame (glibc's
    __restore_rt has a signal-frame FDE): main;spin_for_alarm;
    [signal frame];on_alarm. The frame-pointer walk (--max-unwind-mb 0)
    follows rbp: with frame pointers it goes from the trampoline to the
    interrupted function's caller (the interrupted pc itself is only in
    the signal frame, which it does not read): main;[signal frame];
    on_alarm; without them it ends at the handler. Never a junk frame."""
    def t(ctx):
        extra = ["--max-unwind-mb", "0"] if fp_walk else []
        res, rows = traced_run(ctx, [name], extra=extra)
        w, exp = res[0]
        if not fp_walk:
            want = dict(SIGNAL_CFI)
            stacks = stack_tails(rows, w.pid, exp, want, "CFI")
            # raise: main;raise_usr2;raise;...libc...;<trampoline>;on_usr2
            _, sites = last_sample(rows, w.pid)
            for r in sites:
                if r["function"] != "on_usr2" or not r["outstanding_allocs"]:
                    continue
                f = r["stack"].split(";")
                tail = f[f.index("main"):] if "main" in f else f
                check(tail[:3] == ["main", "raise_usr2", "raise"] and
                      len(tail) >= 5 and tail[-2] in SIGNAL_FRAME and
                      tail[-1] == "on_usr2",
                      "on_usr2: stack %r, want main;raise_usr2;raise;...;"
                      "[signal frame];on_usr2" % r["stack"])
                stacks.append(r["stack"])
        elif name.endswith("_nofp"):
            want = {"on_alarm": ["on_alarm"], "on_usr2": ["on_usr2"]}
            stacks = stack_tails(rows, w.pid, exp, want, "frame pointers")
        else:
            want = {"on_alarm": ["main", SIGNAL_FRAME, "on_alarm"],
                    "on_usr2": ["main", SIGNAL_FRAME, "on_usr2"]}
            stacks = stack_tails(rows, w.pid, exp, want, "frame pointers")
        ctx.notes.extend(sorted(set(stacks)))
    return t


PLT_STACKS = {
    "gt_lib_direct": ["main", "call_direct", "gt_lib_direct"],
    "gt_lib_indirect": ["main", "call_indirect", "gt_lib_indirect"],
    "gt_lib_fill": ["main", "call_nested", "gt_lib_nested", "gt_lib_fill"],
}


def test_plt(name, fp_walk=False):
    """Blocks allocated by the test's own shared library through PLT stubs
    (lazily bound) at both ends, one function called through a dlsym
    pointer, one through the library's own PLT: exact bytes per function
    and every stack through the library and the executable to main (the
    frame-pointer walk of code built without them ends at the allocating
    function, cleanly)."""
    def t(ctx):
        extra = ["--max-unwind-mb", "0"] if fp_walk else []
        res, rows = traced_run(ctx, [name], extra=extra)
        w, exp = res[0]
        want = PLT_STACKS
        if fp_walk and name.endswith("_nofp"):
            want = {fn: [fn] for fn in PLT_STACKS}
        ctx.notes.extend(stack_tails(rows, w.pid, exp, want,
                                     "frame pointers" if fp_walk else "CFI"))
    return t


def test_badfp(name, fp_walk=False):
    """A function that holds a pointer to key-name digits in rbp while it
    calls malloc (as code without frame pointers may). Where the program
    keeps frame pointers the walk follows rbp at return addresses and
    reads the digits as the caller: it must end the stack there, one site
    for every key, never an [unknown 0x3833...] frame and a site per key
    (redis's zmalloc rows). Built without them, the CFI finds the real
    caller: main;store_key;gt_badfp_call. The plain frame-pointer walk
    (--max-unwind-mb 0: no mappings to check frames against) ends at
    gt_badfp_call either way."""
    def t(ctx):
        extra = ["--max-unwind-mb", "0"] if fp_walk else []
        res, rows = traced_run(ctx, [name], extra=extra)
        w, exp = res[0]
        want = ["gt_badfp_call"]
        if name.endswith("_nofp") and not fp_walk:
            want = ["main", "store_key", "gt_badfp_call"]
        stacks = stack_tails(rows, w.pid, exp, {"gt_badfp_call": want},
                             "frame pointers" if fp_walk else "CFI")
        check(len(stacks) == 1, "%d distinct stacks for one call site: %s"
              % (len(stacks), stacks))
        _, sites = last_sample(rows, w.pid)
        n = [r for r in sites if r["function"] == "gt_badfp_call" and
             r["outstanding_allocs"]]
        check(len(n) == 1, "%d sites for one call site: %s" % (
            len(n), ", ".join(r["site_id"] for r in n)))
        ctx.notes.extend(stacks)
    return t


def test_xfree(ctx):
    """Frees on another thread (another CPU) than the malloc, at once."""
    res, rows = traced_run(ctx, ["gt_xfree"])
    for w, exp in res:
        verify(rows, w.pid, exp, notes=ctx.notes, comm=w.name)
        proc, _ = last_sample(rows, w.pid, False)
        check(proc["unknown_frees"] == 0 and proc["lost_events"] == 0,
              "gt_xfree: every free is of a block memtop saw allocated: "
              "unknown_frees=%s lost_events=%s, expected 0 and 0" %
              (proc["unknown_frees"], proc["lost_events"]))


def test_files(ctx):
    """Files and threads never closed or joined: open_fds and threads grow by
    exactly the workload's counts between the sample before the trigger and
    the last one, in the CSV and in batch output."""
    w = ctx.workload("gt_files")
    w.wait_ready()
    m = ctx.start_memtop([w.pid])
    m.wait_attached()
    deadline = time.monotonic() + ATTACH_TIMEOUT
    before = None
    while before is None:
        check(time.monotonic() < deadline, "no CSV sample before the trigger")
        time.sleep(0.1)
        try:
            before = last_sample(read_csv(m.csv_path), w.pid)[0]
        except TestFailure:
            pass
    w.signal(signal.SIGUSR1)
    w.wait_done()
    want = {}
    for l in w.lines:
        f = l.split()
        if f and f[0] in ("EXPECT_FILES", "EXPECT_THREADS"):
            want[f[0]] = int(f[1])
    check(len(want) == 2, "workload did not report its counts: %s" % w.lines)
    time.sleep(SETTLE)
    m.stop()
    after = last_sample(read_csv(m.csv_path), w.pid)[0]
    for col in ("open_fds", "threads"):
        check(before[col] is not None and after[col] is not None,
              "%s empty in a live process's row" % col)
    check(after["open_fds"] - before["open_fds"] == want["EXPECT_FILES"],
          "open_fds %d -> %d, expected +%d" % (before["open_fds"],
                                               after["open_fds"],
                                               want["EXPECT_FILES"]))
    check(after["threads"] - before["threads"] == want["EXPECT_THREADS"],
          "threads %d -> %d, expected +%d" % (before["threads"], after["threads"],
                                              want["EXPECT_THREADS"]))
    with open(m.out_path, errors="replace") as f:
        batch = [l for l in f if l.startswith("PID %d " % w.pid)]
    check(batch, "no batch line for the process")
    want_txt = "files %d (+%d), threads %d (+%d)" % (
        after["open_fds"], want["EXPECT_FILES"], after["threads"],
        want["EXPECT_THREADS"])
    check(want_txt in batch[-1], "batch line %r lacks %r" % (batch[-1], want_txt))


# Sites redis-server makes under redis-benchmark when the plain
# frame-pointer walk ends its stacks at the wrappers. Measured: 8 sites in
# each of 4 runs of redis_fp_walk's load (Debian 12's redis 7.0, -n 15000,
# the last CSV sample with --csv-top 0), against 14001 before the steps were
# bounded (a site per key-name value read as a frame); 5x the measurement.
REDIS_FP_SITES = 40
# Share of its allocations at stacks with a junk frame the plain walk still
# allows: a wrong rbp that points into the stack at a slot holding a pointer
# into writable memory reads as a frame (only a check against the mappings
# could reject it). Measured: 3 of 212,800 calls (0.0014%), one or two
# constant values, no site per value.
REDIS_FP_JUNK = 0.001


class Redis(Child):
    """Debian's redis-server on a private loopback port, no persistence."""

    def __init__(self, port):
        self.port = port
        self.p = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.pid = self.p.pid
        deadline = time.monotonic() + READY_TIMEOUT
        while subprocess.run(["redis-cli", "-p", str(port), "ping"],
                             capture_output=True).stdout.strip() != b"PONG":
            check(self.alive() and time.monotonic() < deadline,
                  "redis-server did not answer on port %d" % port)
            time.sleep(0.1)


def test_redis(ctx, fp_walk=False):
    """Debian's redis-server (no frame pointers) under redis-benchmark: every
    stack is unwound from CFI through processCommand, sites are named after
    the caller of its z*alloc wrappers, nothing is lost. The plain
    frame-pointer walk (--max-unwind-mb 0) cannot go past the wrappers
    (redis keeps no frame pointers, rbp holds its data): its stacks end
    there, the random keys make no site each, and a junk frame is rare
    (REDIS_FP_JUNK)."""
    if not shutil.which("redis-server") or not shutil.which("redis-benchmark"):
        raise SkipTest("redis-server / redis-benchmark not installed")
    port = 20000 + (os.getpid() + (1 if fp_walk else 0)) % 20000
    r = Redis(port)
    ctx.procs.append(r)
    m = ctx.start_memtop([r.pid], ["--max-unwind-mb", "0"] if fp_walk else [])
    m.wait_attached()
    # Fewer requests where everything is slower (an emulator): 30000 took
    # 5 minutes under qemu's TCG.
    n = max(3000, int(30000 / _SCALE))
    subprocess.run(["redis-benchmark", "-p", str(port), "-q", "-n", str(n),
                    "-c", "20", "-t", "set,lpush", "-d", "100", "-r",
                    "100000"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=300 * _SCALE,
                   check=True)
    time.sleep(SETTLE)
    m.stop()
    rows = read_csv(m.csv_path)
    last = max(x["elapsed_s"] for x in rows)
    proc = [x for x in rows if x["scope"] == "process" and x["elapsed_s"] == last]
    sites = [x for x in rows if x["scope"] == "site" and x["elapsed_s"] == last]
    check(proc and sites, "no rows for redis-server in the last sample")
    p = proc[0]
    check(p["allocs"] > n, "only %d allocations seen" % p["allocs"])
    check(p["lost_events"] * 100 < p["allocs"],
          "lost %d of %d calls" % (p["lost_events"], p["allocs"]))
    junk = [x for x in sites if "[unknown" in x["stack"]]
    junk_allocs = sum(x["allocs"] for x in junk)
    if fp_walk:
        # One site per wrapper call site (plus startup's), not per key.
        check(len(sites) < REDIS_FP_SITES,
              "%d sites (a site per junk value?), want < %d" %
              (len(sites), REDIS_FP_SITES))
        check(junk_allocs <= REDIS_FP_JUNK * p["allocs"],
              "junk frames in %d stacks, %d of %d calls, e.g. %r" % (
                  len(junk), junk_allocs, p["allocs"],
                  junk[0]["stack"] if junk else ""))
        held = sum(x["outstanding_bytes"] for x in sites)
        ctx.notes.append("redis (frame pointers): %d allocs, %d lost, %d "
                         "sites, %d with a junk frame (%d calls), %d B "
                         "held; top: %s" % (
                             p["allocs"], p["lost_events"], len(sites),
                             len(junk), junk_allocs, held,
                             max(sites, key=lambda x: x["outstanding_bytes"])
                             ["stack"]))
        return
    check(not junk, "junk frames in %d stacks, e.g. %r" % (len(junk),
                                                        junk[0]["stack"] if junk else ""))
    wrappers = [x for x in sites if re.match(r"^z(try)?(malloc|calloc|realloc)",
                                             x["function"])]
    check(not wrappers, "sites named after redis's wrappers: %s" %
          sorted(set(x["function"] for x in wrappers)))
    # Debian's redis-server is a symlink to redis-check-rdb: its frames
    # carry the name it was run by.
    real = os.path.basename(os.path.realpath(shutil.which("redis-server")))
    if real != "redis-server":
        named = [x for x in sites if real in x["location"] or real in x["stack"]]
        check(not named, "%d sites name redis-server's frames %s, e.g. %s" %
              (len(named), real, named[0]["location"] if named else ""))
        check(any(x["location"].startswith("[redis-server+") for x in sites),
              "no LOCATION reads [redis-server+0x...]")
    held = sum(x["outstanding_bytes"] for x in sites)
    cmd = sum(x["outstanding_bytes"] for x in sites
              if "processCommand" in x["stack"].split(";"))
    check(cmd > 0, "no stack reaches processCommand")
    deep = sum(x["outstanding_bytes"] for x in sites
               if x["stack"].startswith("_start;"))
    check(deep * 100 >= held * 90,
          "only %d of %d held bytes have stacks down to _start" % (deep, held))
    ctx.notes.append("redis: %d allocs, %d lost, %d sites, %d B held, %d B "
                     "through processCommand; top: %s" % (
                         p["allocs"], p["lost_events"], len(sites), held, cmd,
                         max(sites, key=lambda x: x["outstanding_bytes"])["function"]))


class Prometheus(Child):
    """Debian's prometheus (a Go program) on a private loopback port."""

    def __init__(self, tmp, port):
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global: {scrape_interval: 1s}\n")
        self.p = subprocess.Popen(
            ["prometheus", "--config.file=" + cfg,
             "--web.listen-address=127.0.0.1:%d" % port,
             "--storage.tsdb.path=" + os.path.join(tmp, "tsdb")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.pid = self.p.pid


def test_go(ctx):
    """Debian's prometheus, a Go program: its heap is the Go runtime's, made
    without malloc, so memtop says so, at attach and with its figures,
    instead of showing a process that holds nothing."""
    if not shutil.which("prometheus"):
        skip_or_fail("prometheus not installed")
    g = Prometheus(ctx.tmp, 20000 + (os.getpid() + 7) % 20000)
    ctx.procs.append(g)
    time.sleep(1.0)
    check(g.alive(), "prometheus exited at once")
    m = ctx.start_memtop([g.pid])
    m.wait_attached()
    time.sleep(2 * float(INTERVAL) + SETTLE)
    m.stop()
    err = "\n".join(m.lines)
    check("pid %d is a Go program" % g.pid in err,
          "memtop did not say pid %d is a Go program:\n%s" % (g.pid, err))
    with open(m.out_path) as f:
        out = f.read()
    check("not seen: the Go runtime's heap" in out,
          "the batch figures do not say the Go heap is not seen:\n" +
          out[-1500:])


def skip_or_fail(msg):
    """A test that cannot run here: a loud SKIP, a failure under CI=true."""
    if os.environ.get("CI", "").lower() == "true":
        raise TestFailure(msg + " (CI=true: a skip is a failure)")
    raise SkipTest(msg)


NODE_APP = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "workloads", "js_buffers.js")
NODE_ALLOCATOR = "node::NodeArrayBufferAllocator::Allocate"


def elf_sections(path):
    """{name: (offset, size)} of a 64-bit little-endian ELF file's sections."""
    with open(path, "rb") as f:
        h = f.read(64)
        if h[:4] != b"\x7fELF" or h[4] != 2 or h[5] != 1:
            return {}
        shoff, = struct.unpack_from("<Q", h, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", h, 0x3a)
        f.seek(shoff)
        raw = f.read(shentsize * shnum)
        shs = [struct.unpack_from("<IIQQQQ", raw, i * shentsize)
               for i in range(shnum)]
        if not shs or shstrndx >= shnum:
            return {}
        f.seek(shs[shstrndx][4])
        names = f.read(shs[shstrndx][5])
        return {names[n:names.index(b"\0", n)].decode(): (off, size)
                for n, _, _, _, off, size in shs}


def elf_unnamed(path):
    """Why a library's local functions have no names for memtop, or None:
    no .symtab and no debug file where elfutils looks (build-id, then
    the .gnu_debuglink name beside it, in .debug/ and under /usr/lib/debug)."""
    secs = elf_sections(path)
    if not secs or ".symtab" in secs:
        return None
    cands = []
    with open(path, "rb") as f:
        if ".note.gnu.build-id" in secs:
            off, size = secs[".note.gnu.build-id"]
            f.seek(off + 16)  # namesz, descsz, type, "GNU\0"
            bid = f.read(size - 16).hex()
            cands.append("/usr/lib/debug/.build-id/%s/%s.debug" %
                         (bid[:2], bid[2:]))
        if ".gnu_debuglink" in secs:
            off, size = secs[".gnu_debuglink"]
            f.seek(off)
            link = f.read(size).split(b"\0")[0].decode()
            d = os.path.dirname(os.path.realpath(path))
            cands += [os.path.join(d, link), os.path.join(d, ".debug", link),
                      "/usr/lib/debug" + os.path.join(d, link)]
    if any(os.path.exists(c) for c in cands):
        return None
    return ("%s has no .symtab and no debug file (%s): V8's local functions "
            "have no names" % (path, ", ".join(cands) or "no build-id"))


def node_elf(node):
    """The file node's V8 is in: a shared libnode (Debian's) or node."""
    try:
        out = subprocess.run(["ldd", node], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    m = re.search(r"libnode\.so\S*\s+=>\s+(\S+)", out)
    return m.group(1) if m else os.path.realpath(node)


def test_node(ctx):
    """node --perf-basic-prof: Buffers kept by one JavaScript function are
    charged to it (FUNCTION keepBuffers, LOCATION js_buffers.js:LINE), the
    Buffers' bytes exactly; 200 functions compiled, named, dropped and
    collected before it (their code space reused) hold nothing."""
    node = shutil.which("node")
    if not node:
        skip_or_fail("node not installed (Debian: nodejs)")
    # Debian 12 strips libnode.so.108: the V8 function calling the
    # allocator for a Buffer has no name, and memtop cannot tell it from
    # the JavaScript above it (the site is that frame, not the function).
    why = elf_unnamed(node_elf(node))
    if why:
        skip_or_fail(why + " (Debian: install libnode108-dbgsym from "
                     "debian-debug)")
    with open(NODE_APP) as f:
        line = next(i for i, l in enumerate(f, 1) if "// KEEP" in l)
    hold = int(1500 * _SCALE)
    w = Proc([node, "--perf-basic-prof", "--interpreted-frames-native-stack",
              "--expose-gc", "--no-compilation-cache", NODE_APP],
             env=dict(os.environ, JS_HOLD_MS=str(hold)), watch="stdout",
             cwd=ctx.tmp)  # V8 writes isolate-*.log where it runs
    ctx.procs.append(w)
    perf_map = "/tmp/perf-%d.map" % w.pid
    ctx.litter.append(perf_map)
    r = w.wait_for(lambda l: l.startswith("READY "), READY_TIMEOUT,
                   "READY from node")
    check(int(r.split()[1]) == w.pid, "READY pid mismatch: " + r)
    m = ctx.start_memtop([w.pid])
    m.wait_attached()
    w.signal(signal.SIGUSR2)
    w.wait_for(lambda l: l == "DONE", DONE_TIMEOUT + 4 * hold / 1000.0,
               "DONE from node")
    exp = parse_expect(w.lines)
    decoy = [tuple(int(x) for x in l.split()[1:]) for l in w.lines
             if l.startswith("EXPECT_DECOYS ")]
    check(decoy, "no EXPECT_DECOYS line from node")
    time.sleep(SETTLE)
    check(m.alive(), "memtop died while tracing (rc=%s)" % m.p.poll())
    m.stop()
    rows = read_csv(m.csv_path)
    want_b, want_n = exp["fn"]["keepBuffers"]

    def buffers(sites, pred):
        got = [r for r in sites if pred(r["function"]) and
               NODE_ALLOCATOR in r["stack"].split(";")]
        return (sum(r["outstanding_bytes"] for r in got),
                sum(r["outstanding_allocs"] for r in got))

    # While the decoys held theirs, some sample charged them by name.
    by_ts = {}
    for r in rows:
        if r["pid"] == w.pid and r["scope"] == "site":
            by_ts.setdefault((r["timestamp"], r["elapsed_s"]), []).append(r)
    named = max((buffers(s, lambda f: re.match(r"^decoy\d+$", f))
                 for s in by_ts.values()), default=(0, 0))
    if named != decoy[0]:
        # What held the Buffers instead, in the sample holding most.
        top = max(by_ts.values(), default=[],
                  key=lambda s: buffers(s, lambda f: True)[0])
        held = sorted((r for r in top if NODE_ALLOCATOR in
                       r["stack"].split(";") and r["outstanding_bytes"]),
                      key=lambda r: -r["outstanding_bytes"])[:5]
        raise TestFailure(
            "no sample charges the decoys' %d B in %d Buffers to decoyN "
            "(best: %d B in %d); the sample holding most Buffers has: %s" %
            (decoy[0] + named + (", ".join(
                "%s %s=%d/%d" % (r["function"], r["location"],
                                 r["outstanding_bytes"],
                                 r["outstanding_allocs"])
                for r in held) or "none",)))
    # Whether V8 put keepBuffers' code where older entries named other code
    # (the test is only as sharp as that; V8 decides).
    reused = set()
    try:
        with open(perf_map) as f:
            entries = []
            for l in f:
                p = l.split(" ", 2)
                try:
                    start, size = int(p[0], 16), int(p[1], 16)
                except (ValueError, IndexError):
                    continue
                name = p[2].strip() if len(p) == 3 else ""
                if "keepBuffers" in name:
                    reused.update(n for s, e, n in entries
                                  if s < start + size and start < e and
                                  "keepBuffers" not in n)
                entries.append((start, start + size, name))
    except OSError:
        pass
    ctx.notes.append("keepBuffers' code at an address the perf map named "
                     "before: %s" % (", ".join(sorted(reused)) or "none"))
    proc, sites = last_sample(rows, w.pid)
    mine = [r for r in sites if r["function"] == "keepBuffers"]
    check(mine, "no site named keepBuffers; top sites: %s" % ", ".join(
        "%s %s=%d" % (r["function"], r["location"], r["outstanding_bytes"])
        for r in sorted(sites, key=lambda r: -r["outstanding_bytes"])[:5]))
    locs = sorted(set(r["location"] for r in mine))
    check(locs == ["js_buffers.js:%d" % line],
          "keepBuffers' LOCATION %s, want js_buffers.js:%d" % (locs, line))
    got = buffers(sites, lambda f: f == "keepBuffers")
    check(got == (want_b, want_n),
          "keepBuffers holds %d B in %d Buffers, want %d B in %d" %
          (got + (want_b, want_n)))
    # Node's own record per Buffer (its BackingStore and extension) comes
    # from the same JavaScript frame: at most 256 B each.
    total = sum(r["outstanding_bytes"] for r in mine)
    check(want_b <= total <= want_b + 256 * want_n,
          "keepBuffers holds %d B in all, want %d B plus at most %d B of "
          "node's records" % (total, want_b, 256 * want_n))
    others = buffers(sites, lambda f: f != "keepBuffers")
    check(others == (0, 0),
          "%d B in %d Buffers charged elsewhere: %s" % (others + (", ".join(
              "%s %s=%d" % (r["function"], r["location"],
                            r["outstanding_bytes"])
              for r in sites if r["function"] != "keepBuffers" and
              r["outstanding_bytes"] and
              NODE_ALLOCATOR in r["stack"].split(";")),)))
    ctx.notes.append("node: keepBuffers %d B (%d B Buffers in %d), process "
                     "%d B, decoys named %d B" % (total, got[0], got[1],
                                                  proc["outstanding_bytes"],
                                                  named[0]))


VERIFIER_LIMIT = 1000000  # instructions the kernel's verifier processes


def test_verifier(ctx):
    """Every BPF program loads with room to spare on this kernel, in exact
    and in growth mode: the verifier processed at most 85% of its limit of
    1M instructions for each (MEMTOP_VERIFIER_STATS=1). How much it explores
    differs between kernel builds: the same object took 505k instructions
    for growth_charge on one 6.18 build and failed on another at 1M."""
    w = ctx.workload("gt_basic")
    w.wait_ready()
    env = dict(os.environ, MEMTOP_VERIFIER_STATS="1")
    for mode in ([], ["--growth"]):
        r = subprocess.run([MEMTOP, "-b", "-d", "0.2", "-n", "1"] + mode +
                           ["-p", str(w.pid)], env=env, timeout=6 * ATTACH_TIMEOUT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           universal_newlines=True)
        what = "memtop %s" % " ".join(mode or ["(exact)"])
        check(r.returncode == 0, "%s exited %d: %s" % (what, r.returncode,
                                                      r.stderr[-300:]))
        got = re.findall(r"memtop: verifier: (\S+) (\d+) insns", r.stderr)
        check(got, "%s printed no verifier stats: %s" % (what, r.stderr[-300:]))
        worst = max(got, key=lambda g: int(g[1]))
        ctx.notes.append("%s: %d programs, the largest %s at %s insns" %
                         (what, len(got), worst[0], worst[1]))
        for name, insns in got:
            check(int(insns) <= VERIFIER_LIMIT * 85 // 100,
                  "%s: %s took %s of the verifier's %d instructions" %
                  (what, name, insns, VERIFIER_LIMIT))


TESTS = [
    ("basic", simple_test("gt_basic")),
    ("verifier", test_verifier),
    ("threads", simple_test("gt_threads", stack_root="worker")),
    ("xfree", test_xfree),
    ("depth", test_depth),
    ("cxx", simple_test("gt_cxx")),
    # Built -O2 -fomit-frame-pointer: the stacks come from CFI.
    ("basic_nofp", simple_test("gt_basic_nofp")),
    ("threads_nofp", simple_test("gt_threads_nofp", stack_root="worker")),
    ("cxx_nofp", simple_test("gt_cxx_nofp")),
    # Through a signal frame and through PLT stubs, by CFI and by frame
    # pointers (--max-unwind-mb 0), built with and without them.
    ("signal", test_signal("gt_signal")),
    ("signal_nofp", test_signal("gt_signal_nofp")),
    ("signal_fp_walk", test_signal("gt_signal", fp_walk=True)),
    ("signal_nofp_fp_walk", test_signal("gt_signal_nofp", fp_walk=True)),
    ("plt", test_plt("gt_plt")),
    ("plt_nofp", test_plt("gt_plt_nofp")),
    ("plt_fp_walk", test_plt("gt_plt", fp_walk=True)),
    ("plt_nofp_fp_walk", test_plt("gt_plt_nofp", fp_walk=True)),
    ("badfp", test_badfp("gt_badfp")),
    ("badfp_nofp", test_badfp("gt_badfp_nofp")),
    ("badfp_fp_walk", test_badfp("gt_badfp", fp_walk=True)),
    ("badfp_nofp_fp_walk", test_badfp("gt_badfp_nofp", fp_walk=True)),
    ("stl", test_stl("gt_stl")),
    ("stl_nofp", test_stl("gt_stl_nofp")),
    ("static", simple_test("gt_static",
                           lib_for=lambda w: "/proc/%d/exe" % w.pid)),
    ("static_path", simple_test("gt_static", lib_for=lambda w: w.path)),
    ("jemalloc", simple_test("gt_jemalloc", lib_for=jemalloc_lib)),
    ("exit", test_exit),
    ("exec", test_exec),
    ("two_pids", test_two_pids),
    ("peak", test_peak),
    ("folded", test_folded),
    ("folded_nofp", lambda ctx: test_folded(ctx, "gt_basic_nofp")),
    ("redis", test_redis),
    ("redis_fp_walk", lambda ctx: test_redis(ctx, fp_walk=True)),
    ("node", test_node),
    ("go", test_go),
    ("files", test_files),
    ("valgrind_basic", valgrind_test("gt_basic")),
    ("valgrind_cxx", valgrind_test("gt_cxx")),
    ("valgrind_stl", valgrind_test("gt_stl")),
    ("valgrind_stl_nofp", valgrind_test("gt_stl_nofp")),
    ("valgrind_exit", valgrind_test("gt_exit")),
    ("basic_sid_root", root_test("gt_basic")),
    ("threads_sid_root", root_test("gt_threads", stack_root="worker")),
]


def environment_ok():
    why = []
    if os.geteuid() != 0:
        why.append("not running as root")
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        why.append("/sys/kernel/btf/vmlinux missing")
    return why


def run_suite(tests, argv, what, make_ctx, prefix="", why=None,
              needs_memtop=lambda sel: True, after=None, on_fail=None):
    """Run the selected (name, fn) tests of a suite: one PASS/SKIP/FAIL line
    each and a summary; 0 when all passed. Shared by every root test suite.

    what: the suite, for the skip banner; make_ctx(name): a fresh context
    with cleanup() (and notes, if it keeps them); prefix: before each name;
    why: reasons the machine cannot run it (environment_ok() by default);
    after(ctx): more checks once a test has passed; on_fail(ctx): what to
    print about a failure besides its notes."""
    why = environment_ok() if why is None else why
    if why:
        msg = "SKIP: %s (%s)" % (what, "; ".join(why))
        bar = "!" * len(msg)
        print("%s\n%s\n%s" % (bar, msg, bar), flush=True)
        return 1 if os.environ.get("CI", "").lower() == "true" else 0
    names = [n for n, _ in tests]
    sel = argv[1:] or names
    bad = [s for s in sel if s not in names]
    if bad:
        print("unknown test(s): %s; known: %s" % (" ".join(bad), " ".join(names)))
        return 2
    if needs_memtop(sel) and not (MEMTOP and os.access(MEMTOP, os.X_OK)):
        print("FAIL setup: MEMTOP=%r is not an executable" % MEMTOP)
        return 1
    if not (WORKLOADS and os.path.isdir(WORKLOADS)):
        print("FAIL setup: WORKLOADS=%r is not a directory" % WORKLOADS)
        return 1
    failed = []
    t0 = time.monotonic()
    for name, fn in tests:
        if name not in sel:
            continue
        ctx = None
        start = time.monotonic()
        try:
            ctx = make_ctx(name)
            fn(ctx)
            if after is not None:
                after(ctx)
            print("PASS %s%s (%.1fs)" % (prefix, name, time.monotonic() - start),
                  flush=True)
            if VERBOSE:
                for n in getattr(ctx, "notes", []):
                    print("    " + n)
        except SkipTest as e:
            print("SKIP %s%s: %s" % (prefix, name, e), flush=True)
        except Exception as e:  # TestFailure or anything unexpected
            failed.append(name)
            kind = "" if isinstance(e, TestFailure) else "%s: " % type(e).__name__
            print("FAIL %s%s: %s%s" % (prefix, name, kind, e), flush=True)
            for n in getattr(ctx, "notes", []):
                print("    note: " + n)
            if ctx is not None and on_fail is not None:
                on_fail(ctx)
        finally:
            if ctx is not None:
                ctx.cleanup()
    print("%d/%d passed in %.1fs%s" % (len(sel) - len(failed), len(sel),
                                        time.monotonic() - t0,
                                        (" (failed: %s)" % " ".join(failed))
                                        if failed else ""))
    return 1 if failed else 0


def print_memtop_tail(m):
    if m is not None:
        print("  memtop: %s\n  memtop stderr (tail):\n%s" % (m.cmdline, m.tail()),
              flush=True)
        # Which counter a lost event went to: batch output's last lost line.
        # Not every test's memtop writes batch output to a file.
        try:
            with open(getattr(m, "out_path", None) or "",
                      errors="replace") as f:
                lost = [l.rstrip() for l in f if l.startswith("lost: ")]
        except OSError:
            lost = []
        if lost:
            print("  memtop's last %s" % lost[-1], flush=True)


def main(argv):
    return run_suite(
        TESTS, argv, "integration tests need root and BPF", Ctx,
        needs_memtop=lambda sel: any(not s.startswith("valgrind") for s in sel),
        on_fail=lambda ctx: print_memtop_tail(ctx.memtop))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
