#!/usr/bin/env python3
"""Growth mode (memtop --growth) against workloads whose growth is known.

Usage (as root, kernel with BPF):
    MEMTOP=/abs/build/memtop WORKLOADS=/abs/build/tests/workloads \
        python3 tests/test_growth.py [test names...]

- ground_truth: gt_growth grows its heap by exactly N MiB of touched pages
  in grow_heap() while churn() reuses one 256 KiB block: grow_heap is
  charged N MiB plus at most the allocator's headers' pages, churn about
  its one block, map_grow exactly its 8 MiB; every view says it is growth
  mode; CSV's allocation columns are empty, touched_bytes adds up; the
  folded file holds touched bytes per stack.
- nofp_small: gt_growth built -O2 -fomit-frame-pointer grows in 4 KiB
  blocks (GT_SMALL=1): nearly every fresh page is first written inside
  glibc (the next chunk's header, memset), which has no frame pointers;
  the CFI unwinder walks from the fault to grow_small, which is charged
  exactly the pages the workload computes from its blocks' addresses (at
  least 90% of the process's touched bytes).
- thp: a region that asks for transparent huge pages (madvise
  MADV_HUGEPAGE, 2 MiB-aligned) is written page by page: one fault maps
  2 MiB, and the stack is charged the 2 MiB, so thp_grow is charged the
  whole region exactly (skipped where THP is never enabled).
- returned: the same process hands its memory back (free + malloc_trim,
  munmap): RSS falls, TOUCHED stays, the returned bytes are counted.
- rss_since_attach: the growth comes before the first sample: "RSS since
  attach" counts it, as TOUCHED does (the RSS read at the attach).
- agree_exact: growth mode and exact mode (allocator probes) on the same
  workload name the same leading site.
- python_leak: a leaking CPython server (tests/workloads/py_server.py) is
  charged, by growth mode, at the Python line creating its buffers.
- systemwide: growth mode without -p finds the growing process and stack.
- systemwide_nofp: and, once it has grown, unwinds it by CFI (faults inside
  glibc reach the caller).
- go_names: Debian's prometheus (Go, stripped: no .symtab, no DWARF)
  scraping itself: its growth sites and every frame of their stacks in
  Go's text are named from Go's own table (.gopclntab), function and
  file:line, none left as [prometheus+0x...]; its stacks are walked by
  frame pointers past the faulting frame, and sites named past Go's
  runtime.
- tui_switch: the live view in tmux: the growth columns and label, then x
  switches the process to exact tracing (OUTSTANDING, allocator probes)
  and back.
Prints PASS/FAIL per test. Python 3 standard library only.
"""

import csv
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import integration as it  # noqa: E402
from integration import TestFailure, check  # noqa: E402

MEMTOP = os.environ.get("MEMTOP", "")
WORKLOADS = os.environ.get("WORKLOADS", "")
LABEL = "growth mode: RSS growth by stack from page faults, no allocator probes"
MIB = 1 << 20
PAGE = 4096
N_MIB = 32
SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "workloads", "py_server.py")


class Ctx(it.Ctx):
    def growth_memtop(self, args, name="memtop"):
        """memtop --growth in batch mode with a CSV; returns (Proc, csv, out)."""
        csv_path = os.path.join(self.tmp, name + ".csv")
        out_path = os.path.join(self.tmp, name + ".out")
        out = open(out_path, "wb")
        argv = [MEMTOP, "-b", "-d", "0.2", "--csv", csv_path, "--csv-top",
                "0"] + list(args)
        m = it.Proc(argv, watch="stderr", stdout=out)
        m.cmdline = " ".join(argv)
        m.out = out
        self.procs.append(m)
        self.memtop = m
        return m, csv_path, out_path


def wait_attached(m):
    m.wait_for(lambda l: LABEL in l or "probes attached" in l,
               it.ATTACH_TIMEOUT, "memtop to attach")


def stop(m):
    m.signal(signal.SIGINT)
    rc = m.wait(it.EXIT_TIMEOUT)
    check(rc == 0, "memtop exited with status %s after SIGINT" % rc)
    m.out.close()


def rows_of(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    check(rows, "no CSV rows in %s" % path)
    return rows


def last(rows, pid):
    """pid's last process row and that sample's site rows."""
    procs = [r for r in rows if r["scope"] == "process" and
             int(r["pid"]) == pid]
    check(procs, "no process row for pid %d" % pid)
    p = procs[-1]
    sites = [r for r in rows if r["scope"] == "site" and int(r["pid"]) == pid
             and r["timestamp"] == p["timestamp"]]
    return p, sites


def touched_by(sites, fn):
    """Touched bytes of the sites whose stack has fn."""
    return sum(int(r["touched_bytes"]) for r in sites
               if fn in r["stack"].split(";"))


def workload_value(w, key):
    line = w.wait_for(lambda l: l.startswith(key + " "), it.DONE_TIMEOUT, key)
    return int(line.split()[-1])


def run_growth(ctx, env, extra=()):
    w = ctx.workload("gt_growth", env)
    w.wait_ready()
    m, csv_path, out_path = ctx.growth_memtop(
        ["--growth", "-p", str(w.pid)] + list(extra))
    wait_attached(m)
    w.signal(signal.SIGUSR1)
    w.wait_for(lambda l: l == "DONE", it.DONE_TIMEOUT, "DONE")
    time.sleep(it.SETTLE)
    return w, m, csv_path, out_path


def test_ground_truth(ctx):
    folded = os.path.join(ctx.tmp, "g.folded")
    w, m, csv_path, out_path = run_growth(
        ctx, {"GT_MIB": str(N_MIB)}, ["--folded", folded])
    stop(m)
    rows = rows_of(csv_path)
    p, sites = last(rows, w.pid)
    want = workload_value(w, "TOUCH grow_heap")
    blocks = workload_value(w, "BLOCKS")
    grow = touched_by(sites, "grow_heap")
    churn = touched_by(sites, "churn")
    mapped = touched_by(sites, "map_grow")
    ctx.notes.append("grow_heap %d of %d B, churn %d B, map_grow %d B, "
                     "process %s B" % (grow, want, churn, mapped,
                                       p["touched_bytes"]))
    # Each block's successor header, written inside malloc, is on a fresh
    # page too: the CFI walk charges it to grow_heap as well, so the blocks
    # span their bytes plus 16 B of header each (churn's block and a small
    # one sit between the first two: a page more at most).
    lost = faults_lost(out_path)
    extra = (blocks * 16 // PAGE + 2) * PAGE
    check(want - lost * PAGE <= grow <= want + extra,
          "grow_heap charged %d B, expected %d B to %d B more (faults lost "
          "%d)" % (grow, want, extra, lost))
    check(churn <= 256 * 1024 + 2 * PAGE,
          "churn charged %d B: it reuses one 256 KiB block" % churn)
    check(mapped == 8 * MIB, "map_grow charged %d B, touched %d" %
          (mapped, 8 * MIB))
    top = max(sites, key=lambda r: int(r["touched_bytes"]))
    check(top["function"] == "grow_heap",
          "leading site is %s, expected grow_heap" % top["function"])
    total = sum(int(r["touched_bytes"]) for r in sites)
    check(int(p["touched_bytes"]) == total,
          "process touched_bytes %s, its sites sum to %d" %
          (p["touched_bytes"], total))
    for r in [p] + sites:
        for col in ("outstanding_bytes", "allocs", "frees", "alloc_bytes",
                    "alloc_rate"):
            check(r[col] == "", "growth row has %s=%r (no allocator probes)" %
                  (col, r[col]))
    check(int(p["rss_bytes"]) > want, "RSS %s below the growth" % p["rss_bytes"])
    out = open(out_path).read()
    heads = [l for l in out.splitlines() if l.startswith("memtop ")]
    check(heads and all(LABEL in l for l in heads),
          "a batch sample lacks the growth-mode label")
    check(re.search(r"\bTOUCHED\s+TOUCHED/s\s+FUNCTION\s+LOCATION", out),
          "batch has no TOUCHED table heading")
    fold = {}
    for l in open(folded):
        stack, n = l.rsplit(" ", 1)
        fold[stack] = fold.get(stack, 0) + int(n)
    fgrow = sum(n for s, n in fold.items() if "grow_heap" in s.split(";"))
    check(fgrow == grow, "folded grow_heap %d B, CSV %d B" % (fgrow, grow))


def faults_lost(out_path):
    got = re.findall(r"^faults lost: (\d+)$", open(out_path).read(), re.M)
    check(got, "batch never says how many faults were lost")
    return int(got[-1])


def test_nofp_small(ctx):
    w = ctx.workload("gt_growth_nofp", {"GT_MIB": "16", "GT_SMALL": "1"})
    w.wait_ready()
    m, csv_path, out_path = ctx.growth_memtop(
        ["--growth", "-p", str(w.pid)])
    wait_attached(m)
    w.signal(signal.SIGUSR1)
    w.wait_for(lambda l: l == "DONE", it.DONE_TIMEOUT, "DONE")
    time.sleep(it.SETTLE)
    stop(m)
    p, sites = last(rows_of(csv_path), w.pid)
    want = workload_value(w, "TOUCH grow_small")
    grow = touched_by(sites, "grow_small")
    total = int(p["touched_bytes"])
    lost = faults_lost(out_path)
    through = through_libc(sites, "grow_small")
    ctx.notes.append("grow_small %d of %d B (%.1f%% of the process's %d B), "
                     "%d B through glibc frames, faults lost %d" %
                     (grow, want, 100.0 * grow / max(total, 1), total,
                      through, lost))
    # Exact: a fault whose perf event came on another CPU is counted lost.
    check(want - lost * PAGE <= grow <= want,
          "grow_small charged %d B, its blocks' fresh pages are %d B "
          "(faults lost %d)" % (grow, want, lost))
    check(grow * 10 >= total * 9,
          "grow_small has %d B of the process's %d B touched" % (grow, total))
    check(through * 2 >= want,
          "only %d B of grow_small's came through glibc's frames (malloc, "
          "_int_malloc, sysmalloc, memset): the faults inside them did not "
          "reach it" % through)
    top = max(sites, key=lambda r: int(r["touched_bytes"]))
    check(top["function"] == "grow_small",
          "leading site is %s, expected grow_small" % top["function"])


THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"


def test_thp(ctx):
    try:
        mode = open(THP_ENABLED).read()
    except OSError:
        raise it.SkipTest("no transparent huge pages (%s missing)" %
                          THP_ENABLED)
    if "[always]" not in mode and "[madvise]" not in mode:
        raise it.SkipTest("transparent huge pages disabled: %s" %
                          mode.strip())
    w = ctx.workload("gt_growth_nofp", {"GT_MIB": "16", "GT_THP": "1"})
    w.wait_ready()
    m, csv_path, out_path = ctx.growth_memtop(
        ["--growth", "-p", str(w.pid)])
    wait_attached(m)
    w.signal(signal.SIGUSR1)
    w.wait_for(lambda l: l == "DONE", it.DONE_TIMEOUT, "DONE")
    time.sleep(it.SETTLE)
    stop(m)
    want = workload_value(w, "TOUCH thp_grow")
    huge = workload_value(w, "THP")
    p, sites = last(rows_of(csv_path), w.pid)
    grow = touched_by(sites, "thp_grow")
    lost = faults_lost(out_path)
    ctx.notes.append("thp_grow %d of %d B, %d B of it in huge pages, "
                     "process %s B, faults lost %d" %
                     (grow, want, huge, p["touched_bytes"], lost))
    if huge <= 0:
        # THP is on but the kernel found no free 2 MiB page (memory
        # fragmented): the figure below holds, the huge-page path is untried.
        msg = "THP enabled but no huge page mapped (AnonHugePages %d)" % huge
        if os.environ.get("CI", "").lower() == "true":
            raise TestFailure(msg)
        raise it.SkipTest(msg)
    # Each lost fault's note may hide a huge page.
    check(want - lost * 2 * MIB <= grow <= want,
          "thp_grow charged %d B, it touched %d B (%d B in huge pages, "
          "faults lost %d)" % (grow, want, huge, lost))
    top = max(sites, key=lambda r: int(r["touched_bytes"]))
    check(top["function"] == "thp_grow",
          "leading site is %s, expected thp_grow" % top["function"])
    check(int(p["touched_bytes"]) < want + 2 * MIB,
          "the process touched %s B, more than its region and a huge page"
          % p["touched_bytes"])


def test_returned(ctx):
    w, m, csv_path, out_path = run_growth(
        ctx, {"GT_MIB": str(N_MIB), "GT_RETURN": "1"})
    p1, _ = last(rows_of(csv_path), w.pid)
    w.wait_for(lambda l: l.startswith("READY ") and
               w.lines.count(l) == 2, it.READY_TIMEOUT, "second READY")
    w.signal(signal.SIGUSR1)
    w.wait_for(lambda l: l.startswith("RETURNED"), it.DONE_TIMEOUT,
               "RETURNED")
    time.sleep(it.SETTLE)
    stop(m)
    p2, _ = last(rows_of(csv_path), w.pid)
    rss1, rss2 = int(p1["rss_bytes"]), int(p2["rss_bytes"])
    t1, t2 = int(p1["touched_bytes"]), int(p2["touched_bytes"])
    ctx.notes.append("RSS %d -> %d B, touched %d -> %d B" % (rss1, rss2, t1, t2))
    check(rss1 - rss2 >= (N_MIB + 8) * MIB * 9 // 10,
          "RSS fell only %d B after %d MiB went back" %
          (rss1 - rss2, N_MIB + 8))
    check(t2 >= t1, "TOUCHED fell from %d to %d" % (t1, t2))
    out = open(out_path).read()
    m2 = re.findall(r"returned ([\d.]+) (B|KiB|MiB|GiB) in (\d+) calls", out)
    check(m2, "batch never says what was returned")
    v, u, _ = m2[-1]
    got = float(v) * {"B": 1, "KiB": 1 << 10, "MiB": MIB, "GiB": 1 << 30}[u]
    check(got >= (N_MIB + 8) * MIB * 0.99,
          "returned %s %s, expected %d MiB" % (v, u, N_MIB + 8))


UNITS = {"B": 1, "KiB": 1 << 10, "MiB": MIB, "GiB": 1 << 30}


def batch_procs(out_path, pid):
    """(touched, RSS change since attach) of pid in each batch sample."""
    got = re.findall(r"^PID %d \S+: touched ([\d.]+) (B|KiB|MiB|GiB) .*, "
                     r"RSS [\d.]+ \S+ \(([+-]?[\d.]+) (B|KiB|MiB|GiB) since "
                     r"attach\)" % pid, open(out_path).read(), re.M)
    return [(float(t) * UNITS[tu], float(r) * UNITS[ru])
            for t, tu, r, ru in got]


def test_rss_since_attach(ctx):
    # The growth comes between the attach and the first sample (4 s on):
    # TOUCHED counts it from the attach, and so must "RSS since attach".
    w = ctx.workload("gt_growth", {"GT_MIB": str(N_MIB)})
    w.wait_ready()
    m, _, out_path = ctx.growth_memtop(["--growth", "-p", str(w.pid),
                                        "-d", "4", "-n", "1"])
    wait_attached(m)
    w.signal(signal.SIGUSR1)
    w.wait_for(lambda l: l == "DONE", it.DONE_TIMEOUT, "DONE")
    rc = m.wait(it.EXIT_TIMEOUT + 4)
    m.out.close()
    check(rc == 0, "memtop -n 1 exited with status %s" % rc)
    got = batch_procs(out_path, w.pid)
    check(got, "no process line for pid %d in the batch sample" % w.pid)
    touched, rss_change = got[0]
    ctx.notes.append("first sample: touched %d B, RSS %+d B since attach" %
                     (touched, rss_change))
    check(touched >= (N_MIB + 8) * MIB * 0.9,
          "touched only %d B of the %d MiB grown" % (touched, N_MIB + 8))
    check(0.8 * touched <= rss_change <= 1.2 * touched + 2 * MIB,
          "RSS changed %+d B since attach while %d B were touched" %
          (rss_change, touched))


def test_agree_exact(ctx):
    w, m, csv_path, _ = run_growth(ctx, {"GT_MIB": "16"})
    stop(m)
    _, sites = last(rows_of(csv_path), w.pid)
    gtop = max(sites, key=lambda r: int(r["touched_bytes"]))["function"]
    # The same workload, exact mode: allocator probes, outstanding bytes.
    w2 = ctx.workload("gt_growth", {"GT_MIB": "16"})
    w2.wait_ready()
    m2, csv2, _ = ctx.growth_memtop(["-p", str(w2.pid)], name="exact")
    wait_attached(m2)
    w2.signal(signal.SIGUSR1)
    w2.wait_for(lambda l: l == "DONE", it.DONE_TIMEOUT, "DONE")
    time.sleep(it.SETTLE)
    stop(m2)
    _, s2 = last(rows_of(csv2), w2.pid)
    check(all(r["touched_bytes"] == "" for r in s2),
          "exact mode filled touched_bytes")
    etop = max(s2, key=lambda r: int(r["outstanding_bytes"]))["function"]
    ctx.notes.append("growth leader %s, exact leader %s" % (gtop, etop))
    check(gtop == etop == "grow_heap",
          "leading sites differ: growth %s, exact %s" % (gtop, etop))


def marker_line(tag):
    with open(SERVER) as f:
        for i, line in enumerate(f, 1):
            if "# " + tag in line:
                return i
    raise TestFailure("no '# %s' line in %s" % (tag, SERVER))


def test_python_leak(ctx):
    python = "/usr/bin/python3.11"
    if not os.access(python, os.X_OK):
        raise it.SkipTest("no %s" % python)
    env = dict(os.environ)
    env.pop("PYTHONMALLOC", None)
    srv = it.Proc([python, SERVER], env=env)
    ctx.procs.append(srv)
    f = srv.wait_for(lambda l: l.startswith("READY "), it.READY_TIMEOUT,
                     "READY").split()
    pid, port = int(f[1]), int(f[2])
    subprocess.check_call([python, SERVER, "--client", str(port), "50"])
    m, csv_path, _ = ctx.growth_memtop(["--growth", "-p", str(pid)])
    wait_attached(m)
    time.sleep(0.5)
    subprocess.check_call([python, SERVER, "--client", str(port), "3000"])
    time.sleep(it.SETTLE)
    stop(m)
    p, sites = last(rows_of(csv_path), pid)
    check(sites, "no growth sites for the server")
    sites.sort(key=lambda r: -int(r["touched_bytes"]))
    top = sites[0]
    want = "py_server.py:%d" % marker_line("LEAK")
    ctx.notes.append("server touched %s B; top %s B %s %s" %
                     (p["touched_bytes"], top["touched_bytes"],
                      top["function"], top["location"]))
    check(int(top["touched_bytes"]) >= 3000 * 4096 // 2,
          "the leading site touched only %s B for 3000 leaked 4 KiB buffers" %
          top["touched_bytes"])
    check(top["function"] == "Connection.__init__" and
          top["location"] == want,
          "leading site %s %s, expected Connection.__init__ %s" %
          (top["function"], top["location"], want))
    check("Server.serve_client" in top["stack"].split(";"),
          "the creating frame is not in the stack %r" % top["stack"])


def grow_systemwide(ctx, workload, env):
    """workload grows once under system-wide growth mode: (w, its sites)."""
    w = ctx.workload(workload, env)
    w.wait_ready()
    m, csv_path, out_path = ctx.growth_memtop(["--growth"])
    wait_attached(m)
    w.signal(signal.SIGUSR1)
    w.wait_for(lambda l: l == "DONE", it.DONE_TIMEOUT, "DONE")
    time.sleep(it.SETTLE + 0.4)
    stop(m)
    return w, last(rows_of(csv_path), w.pid)[1]


def through_libc(sites, fn):
    """Bytes charged to fn through glibc's allocator or memset frames."""
    libc = {"malloc", "_int_malloc", "sysmalloc"}
    return sum(int(r["touched_bytes"]) for r in sites
               if fn in r["stack"].split(";") and
               (libc & set(r["stack"].split(";")) or "memset" in r["stack"]))


def test_systemwide(ctx):
    w, sites = grow_systemwide(ctx, "gt_growth", {"GT_MIB": "16"})
    grow = touched_by(sites, "grow_heap")
    ctx.notes.append("system-wide: pid %d grow_heap %d B" % (w.pid, grow))
    check(grow >= 16 * MIB - 17 * PAGE,
          "system-wide growth mode charged grow_heap %d B of 16 MiB" % grow)


def stamp(r):
    """A CSV row's timestamp in seconds (ISO 8601, UTC, milliseconds)."""
    d, t = r["timestamp"].rstrip("Z").split("T")
    h, mi, s = t.split(":")
    return int(d.replace("-", "")) * 86400 + int(h) * 3600 + int(mi) * 60 + \
        float(s)


def sample_before(rows, pid, p, secs):
    """pid's process row and site rows of the last sample at least secs
    before process row p."""
    procs = [r for r in rows if r["scope"] == "process" and
             int(r["pid"]) == pid and stamp(r) <= stamp(p) - secs]
    check(procs, "no sample %.1f s before the last" % secs)
    q = procs[-1]
    return q, [r for r in rows if r["scope"] == "site" and
               int(r["pid"]) == pid and r["timestamp"] == q["timestamp"]]


def test_systemwide_nofp(ctx):
    # Faults inside glibc (no frame pointers) reach grow_small once memtop
    # has loaded the growing process's unwind tables, which it does for a
    # process that has touched 256 KiB, a read or a few later (reads are
    # slow while the system's stacks are symbolized at first). grow_small
    # grows 64 MiB at ~300 us a 4 KiB block, about 5 s: memtop stops after
    # 3 s, and the last second's growth must reach grow_small through glibc.
    w = ctx.workload("gt_growth_nofp", {"GT_MIB": "64", "GT_SMALL": "1",
                                        "GT_PACE_US": "300"})
    w.wait_ready()
    m, csv_path, out_path = ctx.growth_memtop(["--growth"])
    wait_attached(m)
    w.signal(signal.SIGUSR1)
    time.sleep(3.0)
    stop(m)
    rows = rows_of(csv_path)
    p, sites = last(rows, w.pid)
    q, before = sample_before(rows, w.pid, p, 1.0)
    grew = int(p["touched_bytes"]) - int(q["touched_bytes"])
    through = (through_libc(sites, "grow_small") -
               through_libc(before, "grow_small"))
    ctx.notes.append("system-wide, no frame pointers: in the last %.1f s the "
                     "process touched %d B, %d B of it reached grow_small "
                     "through glibc frames" %
                     (stamp(p) - stamp(q), grew, through))
    check(grew >= 1 * MIB, "the process grew only %d B in the last second: "
          "was it still growing?" % grew)
    check(through * 10 >= grew * 9,
          "system-wide: of the %d B the process touched in the last second "
          "only %d B reached grow_small through glibc's frames: its unwind "
          "tables were not loaded" % (grew, through))


# ---- The live view ----------------------------------------------------


def test_tui_switch(ctx):
    import test_tui as tt

    if not shutil_which("tmux"):
        raise it.SkipTest("tmux not installed")
    w = ctx.workload("gt_growth", {"GT_MIB": "8", "GT_FOREVER": "1"})
    w.wait_ready()
    w.signal(signal.SIGUSR1)
    w.wait_for(lambda l: l == "DONE", it.DONE_TIMEOUT, "DONE")
    tm = tt.Tmux(ctx.tmp, 160, 40)
    ctx.tmux = tm
    tm.line("%s --growth -p %d -d 0.3; echo GROWTH\"\"EXIT=$?" %
            (shlex.quote(MEMTOP), w.pid))
    s = tm.wait(lambda s: LABEL in s.text and re.search(
        r"TOUCHED\s+TOUCHED/s\s+TREND\s+FUNCTION\s+LOCATION", s.text),
        "the growth-mode screen", tt.SCREEN_TIMEOUT)
    check("OUTSTANDING" not in s.text, "growth screen shows OUTSTANDING")
    tm.type("x")
    s = tm.wait(lambda s: "EXACT TRACING" in s.text and
                re.search(r"OUTSTANDING.*FUNCTION", s.text) and
                "grow_heap" in s.text, "exact tracing after x", 30)
    check(LABEL not in s.text, "exact view still labelled growth mode")
    tm.type("x")
    tm.wait(lambda s: LABEL in s.text and "EXACT TRACING" not in s.text and
            re.search(r"TOUCHED\s+TOUCHED/s", s.text),
            "growth mode again after a second x", 30)
    tm.type("q")
    s = tm.wait(lambda s: "GROWTHEXIT=" in s.text, "memtop to quit", 20)
    check("GROWTHEXIT=0" in s.text, "memtop exit status: %s" %
          re.findall(r"GROWTHEXIT=\d+", s.text))


def wait_listening(port, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def go_text_offsets(path):
    """The file offsets [lo, hi) of a Go 1.18+ binary's Go text, from its
    .gopclntab header (textStart) and functab (the end entry), 64-bit
    little-endian ELF."""
    import struct
    with open(path, "rb") as f:
        elf = f.read()
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3a)
    secs = [struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize)
            for i in range(shnum)]
    strtab = secs[shstrndx][4]
    by_name = {}
    for name, _, _, addr, off, size in secs:
        end = elf.index(b"\0", strtab + name)
        by_name[elf[strtab + name:end].decode()] = (addr, off, size)
    t_addr, t_off, _ = by_name[".text"]
    _, p, _ = by_name[".gopclntab"]
    magic, = struct.unpack_from("<I", elf, p)
    check(magic in (0xfffffff0, 0xfffffff1), "not a Go 1.18+ table")
    nfunc, _, text, _, _, _, _, pcln = struct.unpack_from("<8Q", elf, p + 8)
    end, = struct.unpack_from("<I", elf, p + pcln + 8 * nfunc)
    return text - t_addr + t_off, text + end - t_addr + t_off


def test_go_names(ctx):
    if not shutil_which("prometheus"):
        it.skip_or_fail("prometheus not installed")
    port = 20000 + (os.getpid() + 11) % 20000
    cfg = os.path.join(ctx.tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        # Scraping itself every 100 ms keeps it growing (series, chunks).
        f.write("global: {scrape_interval: 100ms}\n"
                "scrape_configs:\n- job_name: self\n"
                "  static_configs: [{targets: ['127.0.0.1:%d']}]\n" % port)
    g = it.Proc(["prometheus", "--config.file=" + cfg,
                 "--web.listen-address=127.0.0.1:%d" % port,
                 "--storage.tsdb.path=" + os.path.join(ctx.tmp, "tsdb")],
                watch="stderr")
    ctx.procs.append(g)
    check(wait_listening(port, it.READY_TIMEOUT),
          "prometheus did not listen on 127.0.0.1:%d" % port)
    m, csv_path, _ = ctx.growth_memtop(["--growth", "-p", str(g.p.pid)])
    wait_attached(m)
    time.sleep(3 * it._SCALE)
    stop(m)
    p, sites = last(rows_of(csv_path), g.p.pid)
    check(sites, "no growth sites for prometheus")
    sites.sort(key=lambda r: -int(r["touched_bytes"]))
    top = sites[:10]
    ctx.notes.append("prometheus touched %s B in %d sites; top: %s" % (
        p["touched_bytes"], len(sites),
        "; ".join("%s %s %s B" % (r["function"], r["location"],
                                  r["touched_bytes"]) for r in top[:3])))
    for r in top:
        check(not r["function"].startswith("[") and
              re.search(r"\.(go|s):\d+$", r["location"]),
              "site %r at %r is not a named Go function with file:line" %
              (r["function"], r["location"]))
    # Go's text has no CFI but keeps frame pointers: its stacks are
    # walked whole (to runtime.goexit), not cut at the faulting frame, and
    # a site is named past Go's runtime (memclr, mallocgc) by its caller.
    total = sum(int(r["touched_bytes"]) for r in sites)
    deep = sum(int(r["touched_bytes"]) for r in sites
               if len(r["stack"].split(";")) >= 4)
    check(deep * 2 >= total, "only %d of %d B touched in stacks of 4 frames"
          " or more" % (deep, total))
    check(any(not r["function"].startswith("runtime.") for r in top),
          "every top site is named by Go's runtime: %s" %
          ", ".join(r["function"] for r in top))
    # No frame in Go's text may be left as [prometheus+0x...] (cgo's C
    # code beside it may: its static functions have no name left).
    lo, hi = go_text_offsets(shutil_which("prometheus"))
    unnamed = sorted({f for r in sites for f in r["stack"].split(";")
                      if f.startswith("[prometheus+0x") and
                      lo <= int(f[len("[prometheus+"):-1], 16) - 1 < hi})
    check(not unnamed, "%d frames in prometheus's Go text unnamed: %s" %
          (len(unnamed), ", ".join(unnamed[:5])))


def shutil_which(name):
    import shutil
    return shutil.which(name)


TESTS = [
    ("ground_truth", test_ground_truth),
    ("nofp_small", test_nofp_small),
    ("thp", test_thp),
    ("returned", test_returned),
    ("rss_since_attach", test_rss_since_attach),
    ("agree_exact", test_agree_exact),
    ("python_leak", test_python_leak),
    ("systemwide", test_systemwide),
    ("systemwide_nofp", test_systemwide_nofp),
    ("go_names", test_go_names),
    ("tui_switch", test_tui_switch),
]


class GrowthCtx(Ctx):
    tmux = None

    def cleanup(self):
        if self.tmux is not None:
            self.tmux.kill()
        for p in self.procs:
            p.kill()
            if getattr(p, "out", None) is not None and not p.out.closed:
                p.out.close()
        super().cleanup()


def main(argv):
    return it.run_suite(TESTS, argv, "growth-mode tests need root and BPF",
                        GrowthCtx, prefix="growth/",
                        on_fail=lambda ctx: it.print_memtop_tail(ctx.memtop))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
