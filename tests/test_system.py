#!/usr/bin/env python3
"""memtop system-wide tests against ground-truth workloads.

Usage (as root, kernel with BPF and BTF; tmux for the screen test):
    MEMTOP=/abs/build/memtop WORKLOADS=/abs/build/tests/workloads \\
        python3 tests/test_system.py [test names...]

  two_procs   memtop with no -p (CSV), one gt_basic started before it and one
              after: exact per-process totals and per-function sums for both
  exit        a process that exits while memtop runs system-wide (gt_basic,
              SIGTERM; --comm gt_basic keeps the CSV small): its last row
              is exact, it is shown at most once after it exited, then gone
              from later samples; memtop goes on
  command     memtop -- gt_exit: exact from the start (nothing missed before
              the first allocation), memtop exits 0 after the command;
              memtop -- gt_forker with GT_EXIT_CODE=3: memtop exits 3, and
              without -f the forked child is not traced
  follow      memtop -f -- gt_forker: parent and child each their own
              process row with exact totals and functions
  filters     -u nobody (a workload run as nobody with setpriv) and
              --comm NAME: only those processes appear, with exact totals
  sample      --sample 10: figures scaled x10 and labelled (CSV scale
              column, batch "estimated (1 in 10 sampled)"): gt_threads'
              cumulative allocs/frees and gt_many's outstanding bytes
              within +-30% of the exact figures
  screen      the live view in tmux, system-wide: the process list (PID,
              USER, COMM, OUTSTANDING ...) with rows for the workloads,
              an exited process shown dimmed once then gone, Enter drills
              into a process's call sites, Esc back, q exits 0

Without root or BPF it prints a loud SKIP and exits 0 (1 when CI=true).
Python 3 standard library only; reuses integration.py's helpers.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import integration as it  # noqa: E402
from integration import TestFailure, SkipTest, check  # noqa: E402

MEMTOP = os.environ.get("MEMTOP", "")
WORKLOADS = os.environ.get("WORKLOADS", "")
VERBOSE = os.environ.get("VERBOSE", "") not in ("", "0")
INTERVAL = "0.3"
SETTLE = 1.0  # > 3 intervals: the last sample has every allocation
ATTACH_TIMEOUT = 60  # system-wide attach walks every process's maps
EXIT_TIMEOUT = 30


# --------------------------------------------------------------------------
# Processes


class Run(it.Child):
    """A process whose stdout and stderr lines are both collected."""

    def __init__(self, argv, env=None, stdin=subprocess.DEVNULL):
        self.argv = argv
        self.cmdline = " ".join(argv)
        self.lines = {"out": [], "err": []}
        self.cv = threading.Condition()
        self.eof = {"out": False, "err": False}
        self.p = subprocess.Popen(argv, env=env, stdin=stdin,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.pid = self.p.pid
        self.threads = [threading.Thread(target=self._read, args=(k, s),
                                         daemon=True)
                        for k, s in (("out", self.p.stdout),
                                     ("err", self.p.stderr))]
        for t in self.threads:
            t.start()

    def _read(self, key, stream):
        for raw in iter(stream.readline, b""):
            with self.cv:
                self.lines[key].append(
                    raw.decode("utf-8", "replace").rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.eof[key] = True
            self.cv.notify_all()

    def wait_for(self, key, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for l in self.lines[key]:
                    if pred(l):
                        return l
                if self.eof[key]:
                    raise TestFailure("%s ended (rc=%s) before %s" % (
                        os.path.basename(self.argv[0]), self.p.poll(), what))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure("timeout (%ss) waiting for %s" %
                                      (timeout, what))
                self.cv.wait(left)

    def wait(self, timeout):
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self.threads:
            t.join(timeout=5)
        return rc

    def tail(self, key="err", n=20):
        return "\n".join("    | " + l for l in self.lines[key][-n:])


class Memtop(Run):
    """memtop -b -d INTERVAL --csv FILE --csv-top 0 [extra] [-- command]."""

    def __init__(self, tmpdir, extra=(), command=None, env=None, tag=""):
        self.csv_path = os.path.join(tmpdir, "memtop%s.csv" % tag)
        argv = [MEMTOP, "-b", "-d", INTERVAL, "--csv", self.csv_path,
                "--csv-top", "0"] + list(extra)
        if command:
            argv += ["--"] + list(command)
        super().__init__(argv, env=env)

    def wait_attached(self):
        self.wait_for("err", lambda l: "probes attached" in l, ATTACH_TIMEOUT,
                      "'probes attached' on memtop's stderr")

    def stop(self):
        self.signal(signal.SIGINT)
        rc = self.wait(EXIT_TIMEOUT)
        check(rc is not None, "memtop did not exit within %ss of SIGINT" %
              EXIT_TIMEOUT)
        check(rc == 0, "memtop exited with status %s after SIGINT" % rc)


def workload_env(extra=None):
    env = dict(os.environ)
    env.pop("GT_NO_WAIT", None)
    env.update(extra or {})
    return env


class Workload(Run):
    def __init__(self, name, env=None, prefix=()):
        self.name = name
        self.path = os.path.join(WORKLOADS, name)
        check(os.access(self.path, os.X_OK), "workload %s not built" %
              self.path)
        super().__init__(list(prefix) + [self.path], env=workload_env(env))

    def wait_ready(self):
        line = self.wait_for("out", lambda l: l.startswith("READY "), 10,
                             "READY from " + self.name)
        check(int(line.split()[1]) == self.pid, "READY pid mismatch: " + line)

    def wait_done(self):
        self.wait_for("out", lambda l: l == "DONE", 60,
                      "DONE from " + self.name)
        bad = [l for l in self.lines["out"] if l.startswith("GT_ERROR")]
        check(not bad, "workload error: %s" % bad)
        return it.parse_expect(self.lines["out"])


class Ctx:
    def __init__(self, name):
        import tempfile
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="memtop-sys-%s-" % name)
        self.procs = []
        self.notes = []
        self.memtops = []

    def workload(self, name, env=None, prefix=()):
        w = Workload(name, env, prefix)
        self.procs.append(w)
        return w

    def memtop(self, extra=(), command=None, env=None, tag=""):
        m = Memtop(self.tmp, extra, command, env, tag)
        self.procs.append(m)
        self.memtops.append(m)
        return m

    def cleanup(self):
        for p in self.procs:
            p.kill()
        if not os.environ.get("KEEP_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)


def started_after(exp, warm_fn="warm_up"):
    """Expectations of a gt_* workload traced from its start: the warm-up
    blocks it still holds count too (EXPECT_INUSE_AT_EXIT), at warm_fn, and
    the frees of warm-up blocks are known frees."""
    e = dict(exp)
    e["fn"] = dict(exp["fn"])
    tb, ta = exp["total"]
    ib, ia = exp["inuse"]
    if (ib, ia) != (tb, ta):
        e["fn"][warm_fn] = (ib - tb, ia - ta)
    e["total"] = exp["inuse"]
    e["unknown"] = None
    return e


def samples(rows):
    """Distinct samples, in order: [(timestamp, elapsed_s)]."""
    seen = []
    for r in rows:
        k = (r["timestamp"], r["elapsed_s"])
        if not seen or seen[-1] != k:
            if k not in seen:
                seen.append(k)
    return seen


def iso_to_epoch(ts):
    import calendar
    base, ms = ts[:-1].split(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + \
        int(ms) / 1000.0


def verify_all(rows, items, ctx):
    errs = []
    for pid, exp, comm in items:
        try:
            it.verify(rows, pid, exp, notes=ctx.notes, comm=comm)
        except TestFailure as e:
            errs.append(str(e))
    check(not errs, "\n  ".join(errs))


# --------------------------------------------------------------------------
# Tests


def test_two_procs(ctx):
    a = ctx.workload("gt_basic")
    a.wait_ready()
    m = ctx.memtop()
    m.wait_attached()
    b = ctx.workload("gt_basic")  # after memtop: traced from its start
    b.wait_ready()
    for w in (a, b):
        w.signal(signal.SIGUSR1)
    ea, eb = a.wait_done(), b.wait_done()
    time.sleep(SETTLE)
    check(m.alive(), "memtop died while tracing (rc=%s)" % m.p.poll())
    m.stop()
    rows = it.read_csv(m.csv_path)
    pids = {r["pid"] for r in rows if r["scope"] == "process"}
    verify_all(rows, [(a.pid, ea, "gt_basic"),
                      (b.pid, started_after(eb), "gt_basic")], ctx)
    ctx.notes.append("%d processes in the CSV" % len(pids))


class CsvTail:
    """Follows a growing CSV cheaply: (timestamp, elapsed, pid, scope,
    function, outstanding_allocs) of each complete line. System-wide with
    --csv-top 0 the file grows fast; re-parsing it all would not keep up."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.buf = b""
        self.rows = []

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return self.rows
        self.pos += len(data)
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for l in lines:
            if not l or l.startswith(b"timestamp,"):
                continue
            row = next(it.csv.reader([l.decode("utf-8", "replace")]))
            if len(row) < len(it.HEADER):
                continue
            self.rows.append((row[0], float(row[1]), int(row[2]), row[4],
                              row[6], row[10]))
        return self.rows

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while not pred(self.poll()):
            if time.monotonic() > deadline:
                raise TestFailure("timeout (%ss) waiting for %s in the CSV"
                                  % (timeout, what))
            time.sleep(0.2)


def test_exit(ctx):
    # --comm keeps the CSV to the workload: with --csv-top 0 every site of
    # every process goes in each sample, gigabytes in minutes on a busy
    # machine. Still no -p: the system-wide path (probes, forgetting).
    # A second gt_basic stays: its rows mark the samples after the exit.
    witness = ctx.workload("gt_basic")
    witness.wait_ready()
    m = ctx.memtop(["--comm", "gt_basic"])
    m.wait_attached()
    tail = CsvTail(m.csv_path)
    w = ctx.workload("gt_basic")
    w.wait_ready()
    for p in (w, witness):
        p.signal(signal.SIGUSR1)
    exp = w.wait_done()
    witness.wait_done()
    # Symbolized while alive (frames are read from /proc/PID/maps)...
    want = str(exp["fn"]["free_some"][1])
    tail.wait(lambda rows: any(r[2] == w.pid and r[4] == "free_some" and
                               r[5] == want for r in rows),
              60, "pid %d's free_some row" % w.pid)
    time.sleep(SETTLE)
    # ... then it exits: one more row at most, then gone for good.
    w.signal(signal.SIGTERM)
    check(w.wait(10) == 0, "gt_basic did not exit 0 on SIGTERM")
    t_exit = time.time()

    def gone(rows):
        last = max(r[1] for r in rows if r[2] == w.pid)
        later = {r[1] for r in rows if r[1] > last}
        return iso_to_epoch(rows[-1][0]) > t_exit and len(later) >= 2
    tail.wait(gone, 60, "2 samples without pid %d" % w.pid)
    check(m.alive(), "memtop stopped when a process exited (rc=%s): "
          "system-wide it must go on" % m.p.poll())
    m.stop()
    rows = it.read_csv(m.csv_path)
    it.verify(rows, w.pid, started_after(exp), notes=ctx.notes,
              comm="gt_basic")
    mine = [r for r in rows if r["pid"] == w.pid and r["scope"] == "process"]
    last = max(r["elapsed_s"] for r in mine)
    after = [s for s in samples(rows) if s[1] > last]
    check(len(after) >= 2, "fewer than 2 samples after the process's last "
          "row (%d): cannot tell it is gone" % len(after))
    shown_dead = [r for r in mine if iso_to_epoch(r["timestamp"]) > t_exit]
    check(len(shown_dead) <= 1, "the exited process has a row in %d samples "
          "after it exited (at most 1: shown once, then dropped)" %
          len(shown_dead))
    ctx.notes.append("pid %d: %d rows, %d after exit, %d samples after its "
                     "last row" % (w.pid, len(mine), len(shown_dead),
                                   len(after)))


def command_run(ctx, name, extra=(), env=None, tag=""):
    """memtop [extra] -- workload, driven through memtop's stdout (the
    command shares it). Returns (memtop, expectations, exit status)."""
    m = ctx.memtop(extra, command=[os.path.join(WORKLOADS, name)],
                   env=workload_env(env), tag=tag)
    line = m.wait_for("out", lambda l: l.startswith("READY "), 30,
                      "READY from %s under memtop" % name)
    pid = int(line.split()[1])
    m.wait_for("err", lambda l: "probes attached" in l, 5,
               "'probes attached' (printed before the command is released)")
    os.kill(pid, signal.SIGUSR1)
    m.wait_for("out", lambda l: l == "DONE", 30, "DONE from " + name)
    exp = it.parse_expect(m.lines["out"])
    return m, pid, exp


def test_command(ctx):
    # gt_exit allocates, says DONE and exits 0 about a second later.
    m, pid, exp = command_run(ctx, "gt_exit")
    rc = m.wait(EXIT_TIMEOUT)
    check(rc is not None, "memtop still running %ss after its command "
          "exited" % EXIT_TIMEOUT)
    check(rc == 0, "memtop exited %s, the command 0" % rc)
    rows = it.read_csv(m.csv_path)
    it.verify(rows, pid, started_after(exp), require_global_last=True,
              notes=ctx.notes, comm="gt_exit")
    check(any("exited" in l for l in m.lines["err"]),
          "memtop did not say the command exited")
    # The command's exit status is memtop's; without -f a child is not
    # traced.
    m, pid, exp = command_run(ctx, "gt_forker", env={"GT_EXIT_CODE": "3"},
                              tag="2")
    m.wait_for("out", lambda l: l == "CHILD_DONE", 10, "CHILD_DONE")
    child = int(next(l for l in m.lines["out"]
                     if l.startswith("CHILD ")).split()[1])
    time.sleep(SETTLE)
    os.kill(pid, signal.SIGTERM)
    rc = m.wait(EXIT_TIMEOUT)
    check(rc == 3, "memtop exited %s, the command 3" % rc)
    rows = it.read_csv(m.csv_path)
    it.verify(rows, pid, started_after(exp), notes=ctx.notes,
              comm="gt_forker")
    check(not [r for r in rows if r["pid"] == child],
          "the child %d was traced without -f" % child)
    out = [l for l in m.lines["out"] if l.startswith("memtop ")]
    check(out, "no batch sample on memtop's stdout")


def test_follow(ctx):
    m, pid, exp = command_run(ctx, "gt_forker", extra=["-f"])
    m.wait_for("out", lambda l: l == "CHILD_DONE", 10, "CHILD_DONE")
    lines = m.lines["out"]
    child = int(next(l for l in lines if l.startswith("CHILD ")).split()[1])
    cexp = {"fn": {}, "cum": {}, "total": None, "unknown": None,
            "inuse": None}
    for l in lines:
        f = l.split()
        if f and f[0] == "CHILD_EXPECT":
            cexp["fn"][f[1]] = (int(f[2]), int(f[3]))
        elif f and f[0] == "CHILD_TOTAL":
            cexp["total"] = (int(f[1]), int(f[2]))
    time.sleep(SETTLE)
    check(m.alive(), "memtop stopped early (rc=%s)" % m.p.poll())
    os.kill(pid, signal.SIGTERM)
    rc = m.wait(EXIT_TIMEOUT)
    check(rc == 0, "memtop exited %s after the command exited 0" % rc)
    rows = it.read_csv(m.csv_path)
    verify_all(rows, [(pid, started_after(exp), "gt_forker"),
                      (child, cexp, "gt_forker")], ctx)
    other = {r["pid"] for r in rows} - {pid, child}
    check(not other, "processes other than the command and its child: %s"
          % sorted(other))


def uid_of(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for l in f:
                if l.startswith("Uid:"):
                    return int(l.split()[1])
    except OSError:
        return None
    return None


def test_filters(ctx):
    setpriv = shutil.which("setpriv")
    if not setpriv:
        raise SkipTest("setpriv (util-linux) not installed")
    # One system-wide memtop at a time: two would trace each other.
    # -u nobody: a gt_basic run as nobody, one as root.
    nob = ctx.workload("gt_basic", prefix=[
        setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"])
    root = ctx.workload("gt_basic")
    for w in (nob, root):
        w.wait_ready()
    check(uid_of(nob.pid) == 65534, "the setpriv workload is not nobody")
    mu = ctx.memtop(["-u", "nobody"], tag="u")
    mu.wait_attached()
    for w in (nob, root):
        w.signal(signal.SIGUSR1)
    en, er = nob.wait_done(), root.wait_done()
    time.sleep(SETTLE)
    mu.stop()
    rows = it.read_csv(mu.csv_path)
    it.verify(rows, nob.pid, en, notes=ctx.notes, comm="gt_basic")
    pids = {r["pid"] for r in rows}
    check(root.pid not in pids, "-u nobody shows root's gt_basic")
    bad = {p: uid_of(p) for p in pids if uid_of(p) not in (None, 65534)}
    check(not bad, "-u nobody shows other users' processes: %s" % bad)
    # --comm gt_exit: a gt_exit and a gt_basic, both root. gt_exit lives
    # 4 s after its allocations, not 1: this checks the filter, and a
    # process that is gone before memtop's first look at it has no maps to
    # name its sites with (an ASan memtop on a loaded machine once missed
    # the second).
    ex = ctx.workload("gt_exit", env={"GT_EXIT_AFTER": "4"})
    ex.wait_ready()
    mc = ctx.memtop(["--comm", "gt_exit"], tag="c")
    mc.wait_attached()
    ex.signal(signal.SIGUSR1)
    ee = ex.wait_done()
    time.sleep(SETTLE)
    mc.stop()
    rows = it.read_csv(mc.csv_path)
    it.verify(rows, ex.pid, ee, notes=ctx.notes, comm="gt_exit")
    comms = {r["comm"] for r in rows}
    check(comms == {"gt_exit"}, "--comm gt_exit shows %s" % sorted(comms))
    check(root.pid not in {r["pid"] for r in rows},
          "--comm gt_exit shows gt_basic")


def test_sample(ctx):
    th = ctx.workload("gt_threads")
    many = ctx.workload("gt_many", env={"GT_MANY": "20000"})
    for w in (th, many):
        w.wait_ready()
    m = ctx.memtop(["-p", "%d,%d" % (th.pid, many.pid), "--sample", "10"])
    m.wait_attached()
    for w in (th, many):
        w.signal(signal.SIGUSR1)
    et, em = th.wait_done(), many.wait_done()
    time.sleep(SETTLE)
    m.stop()
    check(any("estimated (1 in 10 sampled)" in l for l in m.lines["out"]),
          "the batch summary does not say the figures are estimates")
    rows = it.read_csv(m.csv_path)
    scales = {r["scale"] for r in rows}
    check(scales == {10}, "CSV scale column %s, expected 10" % scales)

    def near(got, want, what):
        check(want and abs(got - want) <= 0.3 * want,
              "%s: estimated %s, exact %s (more than 30%% off)" %
              (what, got, want))
        ctx.notes.append("%s: estimated %s, exact %s (%+.1f%%)" %
                         (what, got, want, 100.0 * (got - want) / want))

    proc, sites = it.last_sample(rows, th.pid)
    want_allocs = sum(a for a, _ in et["cum"].values())
    want_frees = sum(f for _, f in et["cum"].values())
    near(proc["allocs"], want_allocs, "gt_threads allocs")
    near(proc["frees"], want_frees, "gt_threads frees")
    check(proc["allocs"] % 10 == 0, "allocs not scaled by 10")
    proc, sites = it.last_sample(rows, many.pid)
    near(proc["outstanding_bytes"], em["total"][0], "gt_many outstanding")
    near(proc["outstanding_allocs"], em["total"][1], "gt_many blocks")


# ---- The live screen -------------------------------------------------------


class ProcScreen:
    """A capture of the process list (or of a process's sites)."""

    def __init__(self, text):
        self.text = text
        self.lines = text.split("\n")
        self.heading = None
        for i, l in enumerate(self.lines):
            if "OUTSTANDING" in l and ("COMMAND" in l or "FUNCTION" in l):
                self.heading = i
                break
        self.rows = []
        if self.heading is not None:
            for l in self.lines[self.heading + 1:]:
                if "F1Help" in l or not l.strip():
                    break
                self.rows.append(l)

    def is_list(self):
        return self.heading is not None and \
            "COMMAND" in self.lines[self.heading]

    def is_sites(self):
        return self.heading is not None and \
            "FUNCTION" in self.lines[self.heading]

    def pids(self):
        out = []
        for r in self.rows:
            f = r[1:].split()
            if f and f[0].isdigit():
                out.append(int(f[0]))
        return out

    def row(self, pid):
        for r in self.rows:
            f = r[1:].split()
            if f and f[0] == str(pid):
                return r
        return None

    def functions(self):
        h = self.lines[self.heading]
        a, b = h.index("FUNCTION"), h.index("LOCATION")
        return [r[a:b].strip() for r in self.rows]


def test_screen(ctx):
    import test_tui
    if not shutil.which("tmux"):
        raise SkipTest("tmux not installed")
    a = ctx.workload("gt_basic")
    a.wait_ready()
    t = test_tui.Tmux(ctx.tmp, 140, 40)
    pidf = os.path.join(ctx.tmp, "memtop.pid")
    try:
        argv = "%s -d 0.5" % MEMTOP
        t.line("sh -c 'echo $$ > %s; exec %s'; echo EXIT\"\"=$?" %
               (pidf, argv))

        def cap():
            return ProcScreen(t.cmd("capture-pane", "-p", "-t", t.target)
                              .rstrip("\n"))

        def wait(pred, what, timeout=60):
            deadline = time.monotonic() + timeout
            last = None
            while time.monotonic() < deadline:
                last = cap()
                try:
                    if pred(last):
                        return last
                except (ValueError, IndexError):
                    pass
                time.sleep(0.1)
            raise TestFailure("timeout (%ss) waiting for %s; screen:\n%s" %
                              (timeout, what, last.text if last else "-"))

        s = wait(lambda s: s.is_list(), "the process list", 60)
        h = s.lines[s.heading]
        for col in ("PID", "USER", "COMM", "OUTSTANDING", "COUNT",
                    "GROWTH/s", "ALLOC/s", "FREE/s", "RSS", "TREND"):
            check(col in h, "process list heading lacks %s: %r" % (col, h))
        check("system-wide: allocations since attach" in s.lines[0],
              "summary does not say system-wide:\n" + s.text)
        b = ctx.workload("gt_basic")
        b.wait_ready()
        e = ctx.workload("gt_exit")
        e.wait_ready()
        for w in (a, b):
            w.signal(signal.SIGUSR1)
        a.wait_done()
        b.wait_done()
        # Only the workloads: filter by command name.
        t.keys("\\")
        t.type("gt_")
        t.keys("Enter")
        s = wait(lambda s: {a.pid, b.pid, e.pid} == set(s.pids()) and
                 'FILTER "gt_"' in s.text, "rows for both gt_basic and "
                 "gt_exit, only")
        for w in (a, b):
            r = s.row(w.pid)
            check("root" in r and "gt_basic" in r, "row for %d: %r" %
                  (w.pid, r))
        vals = [test_tui.parse_value(r[s.lines[s.heading].index("COMM") + 16:
                                       s.lines[s.heading].index("OUTSTANDING")
                                       + len("OUTSTANDING")])
                for r in s.rows]
        check(vals == sorted(vals, reverse=True),
              "processes not ordered by outstanding bytes:\n" + s.text)
        # An exited process: dimmed, marked, once; then gone.
        e.signal(signal.SIGUSR1)
        e.wait_done()
        e.wait(10)

        # The exited row is shown for one refresh only: its text and its
        # attributes come from one capture (with escapes), not two.
        seen = {}

        def dimmed(s):
            esc = t.cmd("capture-pane", "-p", "-e", "-t", t.target)
            line = next((l for l in esc.split("\n")
                         if str(e.pid) in re.sub(r"\x1b\[[\d;]*m", "", l)),
                        None)
            if line is None or "<exited>" not in line:
                return False
            seen["line"] = line
            return True
        wait(dimmed, "gt_exit shown as exited", 60)
        line = seen["line"]
        check(any("2" in p.split(";")
                  for p in re.findall(r"\x1b\[([\d;]*)m", line)),
              "the exited process's row is not dim: %r" % line)
        wait(lambda s: s.is_list() and e.pid not in s.pids(),
             "the exited process to go")
        # Enter on the selected row (a gt_basic: the filter leaves only
        # those) drills in. (No Home: under load its escape sequence can
        # arrive split, and a lone Esc clears the filter.)
        s = wait(lambda s: s.is_list() and s.pids(), "the list")
        check(set(s.pids()) <= {a.pid, b.pid}, "the filter shows %s:\n%s" %
              (s.pids(), s.text))
        t.keys("Enter")
        s = wait(lambda s: s.is_sites() and "alloc_malloc" in s.functions(),
                 "the call sites of a gt_basic")
        m = re.search(r"PID (\d+) gt_basic", s.lines[0])
        check(m and int(m.group(1)) in (a.pid, b.pid),
              "drilled-in summary is not about a gt_basic:\n" + s.text)
        first = int(m.group(1))
        check("PID" not in s.lines[s.heading].split()[:1],
              "the site view of one process has a PID column")
        check({"alloc_malloc", "alloc_calloc", "free_some"} <=
              set(s.functions()), "functions missing:\n" + s.text)
        # Enter opens a stack, Esc back to the sites, Esc back to the list.
        t.keys("Enter")
        wait(lambda s: "Stack of" in s.text, "the stack screen")
        t.keys("Escape")
        wait(lambda s: s.is_sites(), "back to the sites")
        t.keys("Escape")
        s = wait(lambda s: s.is_list() and first in s.pids(),
                 "Esc back to the process list")
        # q at the top level quits with status 0.
        t.keys("q")
        s = wait(lambda s: "EXIT=" in s.text, "memtop to exit")
        m = re.search(r"EXIT=(\d+)", s.text)
        check(m and m.group(1) == "0", "memtop exit status %s" %
              (m.group(1) if m else "?"))
    finally:
        t.kill()
        # A memtop left behind would trace (and slow) every later test.
        try:
            mpid = int(open(pidf).read())
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(mpid, sig)
                except ProcessLookupError:
                    break
                for _ in range(50):
                    time.sleep(0.1)
                    if not os.path.exists("/proc/%d" % mpid):
                        break
        except (OSError, ValueError):
            pass


TESTS = [
    ("two_procs", test_two_procs),
    ("exit", test_exit),
    ("command", test_command),
    ("follow", test_follow),
    ("filters", test_filters),
    ("sample", test_sample),
    ("screen", test_screen),
]


def main(argv):
    it.MEMTOP, it.WORKLOADS = MEMTOP, WORKLOADS

    def on_fail(ctx):
        for m in ctx.memtops:
            it.print_memtop_tail(m)
    return it.run_suite(TESTS, argv, "system-wide tests need root and BPF",
                        Ctx, prefix="system_", on_fail=on_fail)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
