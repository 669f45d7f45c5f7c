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
import subprocess
import sys
import tempfile
import threading
import time

HEADER = ("timestamp,elapsed_s,pid,comm,scope,site_id,function,location,stack,"
          "outstanding_bytes,outstanding_allocs,allocs,frees,alloc_bytes,"
          "rss_bytes,free_bytes,growth_bps,alloc_rate,free_rate,lost_events,"
          "unknown_frees,scale,mmap_bytes,min_size,depth").split(",")
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

READY_TIMEOUT = 10
ATTACH_TIMEOUT = 20
DONE_TIMEOUT = 60
EXIT_TIMEOUT = 20
SETTLE = 0.6  # seconds between DONE and SIGINT (> 2 intervals of 0.2 s)
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
            self.p.wait(timeout=5)


class Proc(Child):
    """A child process whose stdout or stderr lines are collected by a thread."""

    def __init__(self, argv, env=None, watch="stdout", stdout=None):
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
                                  **kw)
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
                      "scale", "mmap_bytes", "min_size", "depth"):
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
           notes=None, comm=None):
    """Compare pid's last sample with the workload's expectations."""
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
            if not frames or frames[-1] != fn:
                errs.append("%s: stack does not end with the function "
                            "(outermost first expected): %r" % (fn, r["stack"]))
            elif stack_root not in frames[:-1]:
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


def test_folded(ctx):
    folded = os.path.join(ctx.tmp, "memtop.folded")
    res, rows = traced_run(ctx, ["gt_basic"], extra=["--folded", folded])
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


TESTS = [
    ("basic", simple_test("gt_basic")),
    ("threads", simple_test("gt_threads", stack_root="worker")),
    ("xfree", test_xfree),
    ("depth", test_depth),
    ("cxx", simple_test("gt_cxx")),
    ("static", simple_test("gt_static",
                           lib_for=lambda w: "/proc/%d/exe" % w.pid)),
    ("static_path", simple_test("gt_static", lib_for=lambda w: w.path)),
    ("jemalloc", simple_test("gt_jemalloc", lib_for=jemalloc_lib)),
    ("exit", test_exit),
    ("exec", test_exec),
    ("two_pids", test_two_pids),
    ("folded", test_folded),
    ("valgrind_basic", valgrind_test("gt_basic")),
    ("valgrind_cxx", valgrind_test("gt_cxx")),
    ("valgrind_exit", valgrind_test("gt_exit")),
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


def main(argv):
    return run_suite(
        TESTS, argv, "integration tests need root and BPF", Ctx,
        needs_memtop=lambda sel: any(not s.startswith("valgrind") for s in sel),
        on_fail=lambda ctx: print_memtop_tail(ctx.memtop))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
