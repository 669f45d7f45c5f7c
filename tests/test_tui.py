#!/usr/bin/env python3
"""memtop live-screen tests: the curses view driven through tmux.

Usage (as root, kernel with BPF and BTF, tmux installed):
    MEMTOP=/abs/build/memtop WORKLOADS=/abs/build/tests/workloads \
        python3 tests/test_tui.py [test names...]

memtop runs in a detached tmux session (private server socket) on the
ground-truth workload gt_basic (READY <pid>, SIGUSR1, EXPECT lines, DONE).
Keys go in with send-keys, the screen comes back with capture-pane, and the
tests check what a user would see: the summary, rows ordered by outstanding
bytes as the EXPECT lines say, every sort key, the stack screen, search,
filter, baseline, resizing to 80x24 and 200x60, the summary's "Not seen:"
note on Debian's PGO python3.11 (as -b prints it), and that q, SIGTERM and -n
leave the shell usable with exit status 0, the terminal modes unchanged and
no alternate screen. Without root, BPF or tmux it prints a loud SKIP and
exits 0 (1 when CI=true). Python 3 standard library only.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

MEMTOP = os.environ.get("MEMTOP", "")
WORKLOADS = os.environ.get("WORKLOADS", "")
VERBOSE = os.environ.get("VERBOSE", "") not in ("", "0")
INTERVAL = "0.3"
# TIMEOUT_SCALE stretches the waits, as in integration.py (make asan sets 2:
# an ASan memtop's screen once took over 10 s to show what it shows in 5).
_SCALE = float(os.environ.get("TIMEOUT_SCALE", "1") or 1)
SCREEN_TIMEOUT = 20 * _SCALE  # attach and first frame
TIMEOUT = 10 * _SCALE  # anything else the screen should show
EXIT_TIMEOUT = 20 * _SCALE

SORT_KEYS = [  # key, sort_field_name(), heading, how values compare
    ("N", "count", "COUNT"),
    ("G", "growth", "GROWTH/s"),
    ("A", "alloc", "ALLOC/s"),
    ("T", "age", "AGE"),
    ("M", "outstanding", "OUTSTANDING"),
]
NUMERIC_HEADINGS = ["OUTSTANDING", "COUNT", "GROWTH/s", "ALLOC/s", "FREE/s",
                    "AVG", "AGE"]
UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import integration as it  # noqa: E402
from integration import TestFailure, check  # noqa: E402


# --------------------------------------------------------------------------
# Parsing what is on the screen


def parse_value(s):
    """A table cell as a number: '1.5 MiB', '+40.0 KiB', '12', '3.4M', '1m05'."""
    s = s.strip()
    m = re.fullmatch(r"([+-]?[\d.]+) (B|KiB|MiB|GiB)", s)
    if m:
        return float(m.group(1)) * UNITS[m.group(2)]
    m = re.fullmatch(r"([+-]?[\d.]+)([MG]?)", s)
    if m:
        return float(m.group(1)) * {"": 1, "M": 1e6, "G": 1e9}[m.group(2)]
    m = re.fullmatch(r"(\d+)([smhd])(\d*)", s)
    if m:
        big = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        small = {"s": 0, "m": 1, "h": 60, "d": 3600}[m.group(2)]
        return int(m.group(1)) * big + int(m.group(3) or 0) * small
    raise TestFailure("cannot parse table cell %r" % s)


class Screen:
    """One capture of the pane, split into summary, heading, rows and bar."""

    def __init__(self, text):
        self.text = text
        self.lines = text.split("\n")
        self.heading = None
        for i, l in enumerate(self.lines):
            if "OUTSTANDING" in l and "FUNCTION" in l:
                self.heading = i
                break
        self.rows = []
        if self.heading is not None:
            for l in self.lines[self.heading + 1:]:
                if "F1Help" in l or not l.strip():
                    break
                self.rows.append(l)

    def has_table(self):
        return self.heading is not None

    def summary(self):
        return "\n".join(self.lines[: self.heading or 0])

    def span(self, name):
        """Character columns of a right-aligned heading's cell."""
        h = self.lines[self.heading]
        end = h.index(name) + len(name)
        prev = 1
        for other in NUMERIC_HEADINGS + ["PID"]:
            if other == name or other not in h:
                continue
            e = h.index(other) + len(other)
            if e < end and e > prev:
                prev = e
        return prev, end

    def column(self, name):
        a, b = self.span(name)
        return [parse_value(r[a:b]) for r in self.rows]

    def functions(self):
        h = self.lines[self.heading]
        a, b = h.index("FUNCTION"), h.index("LOCATION")
        return [r[a:b].strip() for r in self.rows]


def non_increasing(v):
    return all(x >= y for x, y in zip(v, v[1:]))


# --------------------------------------------------------------------------
# Processes


class Workload:
    """gt_basic: READY <pid>, SIGUSR1, EXPECT lines and DONE, then SIGTERM."""

    def __init__(self, name="gt_basic"):
        path = os.path.join(WORKLOADS, name)
        check(os.access(path, os.X_OK), "workload %s not built" % path)
        env = dict(os.environ)
        env.pop("GT_NO_WAIT", None)
        self.p = subprocess.Popen([path], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, env=env)
        self.pid = self.p.pid
        self.lines = []
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in iter(self.p.stdout.readline, b""):
            with self.cv:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.lines.append(None)
            self.cv.notify_all()

    def wait_line(self, pred, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for l in self.lines:
                    if l is None:
                        raise TestFailure("workload ended before " + what)
                    if pred(l):
                        return l
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure("timeout waiting for " + what)
                self.cv.wait(left)

    def start(self):
        """SIGUSR1, then the EXPECT lines: {function: (bytes, allocs)}."""
        self.wait_line(lambda l: l.startswith("READY "), "READY")
        os.kill(self.pid, signal.SIGUSR1)
        self.wait_line(lambda l: l == "DONE", "DONE")
        with self.cv:
            bad = [l for l in self.lines if l and l.startswith("GT_ERROR")]
            check(not bad, "workload error: %s" % bad)
            exp = {}
            for l in self.lines:
                f = (l or "").split()
                if len(f) == 4 and f[0] == "EXPECT":
                    exp[f[1]] = (int(f[2]), int(f[3]))
        return exp

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=5)


class Tmux:
    """A detached session on a private server, running a plain sh."""

    made = 0

    def __init__(self, tmpdir, width=120, height=40):
        # A socket of its own: the previous test's server may still be
        # exiting on a shared one ("server exited unexpectedly").
        Tmux.made += 1
        self.sock = "memtop-test-%d-%d" % (os.getpid(), Tmux.made)
        self.tmp = tmpdir
        self.target = "tui"
        env = "env PS1='$ ' ENV= HISTFILE=/dev/null TERM=tmux-256color sh"
        self.cmd("-f", "/dev/null", "new-session", "-d", "-s", self.target,
                 "-x", str(width), "-y", str(height), env)
        self.cmd("set-option", "-t", self.target, "history-limit", "0")

    def cmd(self, *args):
        r = subprocess.run(["tmux", "-L", self.sock] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=10)
        if r.returncode:
            raise TestFailure("tmux %s: %s" % (" ".join(args),
                                              r.stderr.decode().strip()))
        return r.stdout.decode("utf-8", "replace")

    def type(self, text):
        self.cmd("send-keys", "-t", self.target, "-l", text)

    def keys(self, *names):
        self.cmd("send-keys", "-t", self.target, *names)

    def line(self, text):
        self.type(text)
        self.keys("Enter")

    def capture(self):
        return Screen(self.cmd("capture-pane", "-p", "-t", self.target)
                      .rstrip("\n"))

    def fmt(self, f):
        return self.cmd("display-message", "-p", "-t", self.target,
                        f).strip()

    def size(self):
        return tuple(int(v) for v in self.fmt(
            "#{pane_width} #{pane_height}").split())

    def resize(self, w, h):
        self.cmd("resize-window", "-t", self.target, "-x", str(w), "-y",
                 str(h))

    def wait(self, pred, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.capture()
            try:
                # ncurses may reach the pane in several writes: judge only
                # a frame that a second capture shows unchanged, never one
                # caught halfway through a redraw.
                if pred(last):
                    time.sleep(0.05)
                    again = self.capture()
                    if again.text == last.text:
                        return last
            except (TestFailure, ValueError, IndexError):
                pass
            time.sleep(0.1)
        raise TestFailure("timeout (%ss) waiting for %s; screen:\n%s" %
                          (timeout, what, last.text if last else "-"))

    def kill(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Ctx:
    """A workload and a tmux session; memtop started from the session's sh."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="memtop-tui-")
        self.wl = Workload()
        self.tmux = Tmux(self.tmp)
        self.runs = 0

    def start_memtop(self, extra="", wait_screen=True):
        """Start memtop; returns its pid. Its exit status is echoed."""
        self.runs += 1
        n = self.runs
        pidf = os.path.join(self.tmp, "memtop%d.pid" % n)
        self.stty = [os.path.join(self.tmp, "stty%d.%s" % (n, w))
                     for w in ("before", "after")]
        self.tag = "EXIT%d=" % n
        argv = "%s -p %d -d %s %s" % (shlex.quote(MEMTOP), self.wl.pid,
                                      INTERVAL, extra)
        self.tmux.line(
            # The quotes keep the typed command from matching the tag.
            "stty -g > %s; sh -c %s; echo EXIT\"\"%d=$?; stty -g > %s" %
            (self.stty[0],
             shlex.quote("echo $$ > %s; exec %s" % (pidf, argv)),
             n, self.stty[1]))
        deadline = time.monotonic() + SCREEN_TIMEOUT
        while not os.path.exists(pidf) or not open(pidf).read().strip():
            check(time.monotonic() < deadline, "memtop did not start")
            time.sleep(0.05)
        pid = int(open(pidf).read())
        if wait_screen:
            self.tmux.wait(lambda s: s.has_table(), "the memtop screen",
                           SCREEN_TIMEOUT)
        return pid

    def wait_exit(self, status=0):
        """The echoed status, a restored terminal and a working shell."""
        tag = self.tag
        s = self.tmux.wait(lambda s: tag in s.text, "memtop to exit",
                           EXIT_TIMEOUT)
        m = re.search(re.escape(tag) + r"(\d+)", s.text)
        check(m and int(m.group(1)) == status,
              "memtop exit status %s, expected %d" %
              (m.group(1) if m else "?", status))
        check(self.tmux.fmt("#{alternate_on}") == "0",
              "the alternate screen is still on after memtop exited")
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(self.stty[1]):
            check(time.monotonic() < deadline, "the shell did not go on")
            time.sleep(0.05)
        time.sleep(0.1)
        before, after = (open(p).read().strip() for p in self.stty)
        check(before == after,
              "terminal modes changed: %s -> %s" % (before, after))
        # The shell reads and echoes a line again: it is usable.
        self.tmux.line("echo ALIVE-$((6*7))")
        self.tmux.wait(lambda s: "ALIVE-42" in s.text, "a working shell")

    def cleanup(self):
        self.tmux.kill()
        self.wl.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# Tests


def expect_order(exp, funcs):
    """Functions with distinct expected bytes appear in that order."""
    pos = {f: i for i, f in enumerate(funcs)}
    seen = [(b, f) for f, (b, _) in exp.items() if b > 0 and f in pos]
    for b1, f1 in seen:
        for b2, f2 in seen:
            if b1 > b2:
                check(pos[f1] < pos[f2],
                      "%s (%d B) is listed after %s (%d B)" %
                      (f1, b1, f2, b2))


def test_screen(ctx):
    t = ctx.tmux
    ctx.start_memtop()
    exp = ctx.wl.start()
    top_fn = max(exp, key=lambda f: exp[f][0])
    want = [f for f, (b, _) in exp.items() if b > 0]

    # Summary and rows, ordered by outstanding bytes.
    s = t.wait(lambda s: set(want) <= set(s.functions()),
               "every EXPECT function in the table")
    summ = s.summary()
    for word in ("PID %d" % ctx.wl.pid, "gt_basic", "Outstanding:",
                 "Rates:", "RSS:", "Lost:", "Interval: %ss" % INTERVAL,
                 "Sort: outstanding", "elapsed"):
        check(word in summ, "summary lacks %r:\n%s" % (word, summ))
    funcs = s.functions()
    check(funcs[0] == top_fn, "first row %s, expected %s" % (funcs[0], top_fn))
    check(non_increasing(s.column("OUTSTANDING")),
          "rows not ordered by outstanding bytes:\n" + s.text)
    expect_order(exp, funcs)
    shown = dict(zip(funcs, s.column("OUTSTANDING")))
    for f in want:
        b = exp[f][0]
        check(abs(shown[f] - b) <= max(0.06 * b, 1),
              "%s shows %.0f B, expected %d" % (f, shown[f], b))

    # Colours by default, and the sorted heading stands out.
    def sgr_before(word):
        esc = t.cmd("capture-pane", "-p", "-e", "-t", t.target)
        line = next(l for l in esc.split("\n") if "FUNCTION" in l)
        m = re.search(r"\x1b\[([\d;]*)m *" + re.escape(word), line)
        return m.group(1) if m else ""
    check(re.search(r"\x1b\[3[1-7]m",
                    t.cmd("capture-pane", "-p", "-e", "-t", t.target)),
          "no colours without -C")
    check(sgr_before("OUTSTANDING") != sgr_before("COUNT"),
          "the sorted heading is not highlighted")

    # Every sort key reorders by its column, and R reverses it.
    for key, name, col in SORT_KEYS:
        t.keys(key)
        s = t.wait(lambda s: ("Sort: %s " % name) in s.summary() + " ",
                   "sort " + name)
        check(non_increasing(s.column(col)),
              "%s: %s not in descending order:\n%s" % (key, col, s.text))
    t.keys("N")
    s = t.wait(lambda s: "Sort: count " in s.summary() + " ", "sort count")
    check(sgr_before("COUNT") != sgr_before("AVG"),
          "N: the COUNT heading is not highlighted")
    most = max(exp, key=lambda f: exp[f][1])
    check(s.functions()[0] == most,
          "N: first row %s, expected %s (most allocations)" %
          (s.functions()[0], most))
    t.keys("R")
    s = t.wait(lambda s: "Sort: count (reversed)" in s.summary(), "reverse")
    check(non_increasing(s.column("COUNT")[::-1]),
          "R: COUNT not ascending:\n" + s.text)
    t.keys("R", ">")
    t.wait(lambda s: "Sort: growth " in s.summary() + " ", "> to growth")
    t.keys("<", "<")
    t.wait(lambda s: "Sort: outstanding " in s.summary() + " ",
           "< to outstanding")

    # Enter: the full stack of the selected site, down to main.
    t.keys("Home")
    first = t.wait(lambda s: s.has_table(), "table").functions()[0]
    t.keys("Enter")
    s = t.wait(lambda s: "Stack of" in s.text, "the stack screen")
    check(first in s.lines[0], "stack of %r, expected %s" % (s.lines[0], first))
    frames = [l for l in s.lines if re.match(r"\s*#\d+ ", l)]
    check(len(frames) >= 2, "stack has %d frames:\n%s" % (len(frames), s.text))
    check(frames[0].split()[1] == first, "frame #0 is not " + first)
    check(any(l.split()[1] == "main" for l in frames),
          "no main frame in the stack:\n" + s.text)
    check("gt_basic.c:" in s.text, "no file:line in the stack:\n" + s.text)
    t.keys("q")
    t.wait(lambda s: s.has_table() and s.rows, "q back to the table")

    # / search selects the next match (shown by opening its stack).
    t.keys("/")
    t.type("free_so")
    t.keys("Enter")
    time.sleep(0.2)
    t.keys("Enter")
    t.wait(lambda s: "Stack of free_some" in s.text, "search free_some")
    t.keys("Escape")
    t.wait(lambda s: s.has_table() and s.rows, "Esc back to the table")

    # \ filter: only matching rows; Esc clears it.
    t.keys("\\")
    t.type("alloc_")
    t.keys("Enter")
    s = t.wait(lambda s: 'FILTER "alloc_"' in s.summary() and s.rows and
               all("alloc_" in f for f in s.functions()), "filter alloc_")
    check(set(s.functions()) >= {f for f in want if "alloc_" in f},
          "filter hid matching rows:\n" + s.text)
    t.keys("\\")
    t.type("calloc")
    t.keys("Enter")
    s = t.wait(lambda s: s.functions() == ["alloc_calloc"], "filter calloc")
    check(re.search(r"Sites: 1/\d+", s.summary()), "Sites count not 1/N")
    t.keys("Escape")
    t.wait(lambda s: "FILTER" not in s.summary() and len(s.rows) >= len(want),
           "Esc clears the filter")

    # B sets the baseline (shown in the summary), B again clears it.
    t.keys("B")
    t.wait(lambda s: "BASELINE" in s.summary(), "baseline in the summary")
    t.keys("B")
    t.wait(lambda s: "BASELINE" not in s.summary(), "baseline cleared")

    # Z pauses the table; the summary keeps going.
    t.keys("Z")
    t.wait(lambda s: "PAUSED" in s.summary(), "paused")
    t.keys("Z")
    t.wait(lambda s: "PAUSED" not in s.summary(), "resumed")

    # Help lists the keys; any key returns.
    t.keys("h")
    t.wait(lambda s: "memtop keys" in s.text and "baseline" in s.text, "help")
    t.keys("x")
    t.wait(lambda s: s.has_table(), "back from help")

    # Resizes redraw the whole screen at the new size.
    for w, h in ((80, 24), (200, 60), (120, 40)):
        t.resize(w, h)
        check(t.size() == (w, h), "pane is %s, not %dx%d" % (t.size(), w, h))

        def redrawn(s, w=w, h=h):
            return (len(s.lines) == h and s.lines[0].startswith("memtop") and
                    s.has_table() and "F1Help" in s.lines[-1] and
                    s.functions()[0] == top_fn and
                    max(len(l) for l in s.lines) <= w and
                    (w < 120 or "LOCATION" in s.lines[s.heading]) and
                    (w < 200 or len(s.rows) >= len(want)))
        s = t.wait(redrawn, "a %dx%d redraw" % (w, h))
        if w == 200:
            # Nothing is left over from the smaller screen.
            check(all(not l.strip() for l in
                      s.lines[s.heading + 1 + len(s.rows):-1]),
                  "stale lines after the rows:\n" + s.text)

    # Very small terminals: no crash, and a full redraw after.
    for w, h in ((20, 5), (2, 2), (1, 1)):
        t.resize(w, h)
        time.sleep(0.5)
    t.resize(80, 24)
    t.wait(lambda s: len(s.lines) == 24 and s.lines[0].startswith("memtop")
           and s.has_table(), "a redraw at 80x24 after 1x1")

    # q quits with status 0 and leaves a usable shell.
    t.keys("q")
    ctx.wait_exit(0)


def test_sigterm(ctx):
    pid = ctx.start_memtop()
    ctx.wl.start()
    time.sleep(0.5)
    os.kill(pid, signal.SIGTERM)
    ctx.wait_exit(0)


def test_sigint(ctx):
    ctx.start_memtop()
    ctx.tmux.keys("C-c")
    ctx.wait_exit(0)


def test_iterations(ctx):
    """-n 3 quits by itself after three refreshes."""
    ctx.start_memtop("-n 3", wait_screen=False)
    ctx.wait_exit(0)


def test_no_color(ctx):
    """-C: attributes only; the default: colours."""
    ctx.start_memtop("-C")
    esc = ctx.tmux.cmd("capture-pane", "-p", "-e", "-t", ctx.tmux.target)
    sgr = re.findall(r"\x1b\[([\d;]*)m", esc)
    col = [c for c in sgr
           if any(p.isdigit() and (30 <= int(p) <= 47 or 90 <= int(p) <= 107)
                  and int(p) not in (39, 49) for p in c.split(";"))]
    check(not col, "colour escapes with -C: %s" % col[:5])
    check(any("7" in c.split(";") for c in sgr), "no reverse video with -C")
    ctx.tmux.keys("q")
    ctx.wait_exit(0)


def test_types(ctx):
    """'o' on a Python server that keeps every connection: Connection and
    ConnectionHandler have one live object per connection, and Enter on
    Connection lists the line that creates them; Esc goes back."""
    import glob
    import socket
    pys = sorted(glob.glob("/root/.pyenv/versions/3.12*/bin/python3.12") +
                 glob.glob("/root/.pyenv/versions/3.11*/bin/python3.11"))
    check(pys, "no pyenv CPython 3.11/3.12 to run the server with")
    server = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "workloads", "py_server.py")
    srv = subprocess.Popen([pys[0], server], stdout=subprocess.PIPE)
    try:
        f = srv.stdout.readline().split()
        check(len(f) == 3 and f[0] == b"READY", "server did not start: %r" % f)
        port = int(f[2])
        gt_pid, ctx.wl.pid = ctx.wl.pid, int(f[1])
        try:
            ctx.start_memtop()
        finally:
            ctx.wl.pid = gt_pid
        ctx.tmux.keys("o")
        ctx.tmux.wait(lambda s: "OBJECTS/s" in s.text, "the types screen")
        n = 200
        for i in range(n):
            with socket.create_connection(("127.0.0.1", port)) as c:
                c.sendall(b"GET /%d\n" % i)
                c.recv(256)
        for name in ("Connection", "ConnectionHandler"):
            ctx.tmux.wait(lambda s: re.search(r"^\s+\d+\s+%d\s.*\s%s$" %
                                              (n, name), s.text, re.M),
                          "%d live %s objects" % (n, name))
        line = None
        with open(server) as fh:
            for i, l in enumerate(fh, 1):
                if "# CREATE" in l:
                    line = i
        for _ in range(10):
            ctx.tmux.keys("Down")
            ctx.tmux.keys("Enter")
            s = ctx.tmux.wait(lambda s: "SITES THAT ALLOCATED" in s.text,
                              "the sites of a type")
            if "SITES THAT ALLOCATED Connection (" in s.text:
                break
            ctx.tmux.keys("Escape")
            ctx.tmux.wait(lambda s: "OBJECTS/s" in s.text, "the types screen")
        check("SITES THAT ALLOCATED Connection (" in s.text,
              "Enter never showed Connection's sites:\n" + s.text)
        check(re.search(r"^\s+%d\s.*Server\.serve_client  py_server\.py:%d$" %
                        (n, line), s.text, re.M),
              "Connection's site is not the creating line %d:\n%s" %
              (line, s.text))
        ctx.tmux.keys("Escape")
        ctx.tmux.wait(lambda s: "OBJECTS/s" in s.text, "back to the types")
        ctx.tmux.keys("Escape")
        ctx.tmux.wait(lambda s: s.has_table(), "back to the sites table")
        ctx.tmux.keys("q")
        ctx.wait_exit(0)
    finally:
        srv.kill()
        srv.wait()


def test_not_seen(ctx):
    """Debian's python3.11, a PGO build, inlines pymalloc's fast path past
    the probes: the summary says so, as batch output does."""
    py = "/usr/bin/python3.11"
    check(os.path.exists(py), "no Debian %s to run the server with" % py)
    server = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "workloads", "py_server.py")
    srv = subprocess.Popen([py, server], stdout=subprocess.PIPE)
    try:
        f = srv.stdout.readline().split()
        check(len(f) == 3 and f[0] == b"READY", "server did not start: %r" % f)
        gt_pid, ctx.wl.pid = ctx.wl.pid, int(f[1])
        try:
            ctx.start_memtop()
        finally:
            ctx.wl.pid = gt_pid
        # The server runs tracemalloc, whose hooks replace the inlined
        # path in the allocator tables: stopped, pymalloc's is back.
        import socket
        with socket.create_connection(("127.0.0.1", int(f[2]))) as c:
            c.sendall(b"TMSTOP\n")
            c.recv(64)
        ctx.tmux.wait(lambda s: re.search(r"^Not seen: .*inlines",
                                          s.summary(), re.M),
                      "the summary's not-seen note")
        ctx.tmux.keys("q")
        ctx.wait_exit(0)
    finally:
        srv.kill()
        srv.wait()


TESTS = [
    ("screen", test_screen),
    ("sigterm", test_sigterm),
    ("sigint", test_sigint),
    ("iterations", test_iterations),
    ("no_color", test_no_color),
    ("types", test_types),
    ("not_seen", test_not_seen),
]


def environment_ok():
    why = []
    if os.geteuid() != 0:
        why.append("not running as root")
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        why.append("/sys/kernel/btf/vmlinux missing")
    if not shutil.which("tmux"):
        why.append("tmux not installed")
    return why


def main(argv):
    def on_fail(ctx):
        if VERBOSE:
            try:
                print(ctx.tmux.capture().text)
            except Exception:
                pass
    return it.run_suite(TESTS, argv, "TUI tests need root, BPF and tmux",
                        lambda name: Ctx(), prefix="tui_",
                        why=environment_ok(), on_fail=on_fail)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
