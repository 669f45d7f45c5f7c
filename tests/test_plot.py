#!/usr/bin/env python3
"""tools/memtop-plot tests: charts from a recorded and a live memtop CSV.

Usage:
    python3 tests/test_plot.py
    MEMTOP=/abs/build/memtop WORKLOADS=/abs/build/tests/workloads \
        python3 tests/test_plot.py      # also plots a live capture (root)

The recorded capture, tests/data/sample.csv, is a real `memtop --csv` run on
a small server-like program (a growing handle_request leak, a cache that
plateaus, sessions that come and go). The live test traces gt_basic. Checks
that the images exist, are real PNG/SVG and are non-trivial, that the
labels are the top sites' functions, and that bad input fails cleanly.
Needs gnuplot (gnuplot-nox); without it prints a loud SKIP and exits 0
(1 when CI=true). Python 3 standard library only.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PLOT = os.path.join(HERE, "..", "tools", "memtop-plot")
SAMPLE = os.path.join(HERE, "data", "sample.csv")
MEMTOP = os.environ.get("MEMTOP", "")
WORKLOADS = os.environ.get("WORKLOADS", "")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class TestFailure(Exception):
    pass


class SkipTest(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def plot(*args):
    return subprocess.run([sys.executable, PLOT] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=60)


def check_png(path):
    check(os.path.exists(path), "%s was not written" % path)
    with open(path, "rb") as f:
        data = f.read()
    check(data.startswith(PNG_MAGIC), "%s is not a PNG" % path)
    check(len(data) > 5 * 1024, "%s is only %d bytes" % (path, len(data)))


def test_sample_png(tmp):
    out = os.path.join(tmp, "sample.png")
    r = plot(SAMPLE, "-o", out)
    check(r.returncode == 0, "memtop-plot failed: %s" % r.stderr.decode())
    check_png(out)


def test_sample_default_name(tmp):
    csv = os.path.join(tmp, "capture.csv")
    shutil.copy(SAMPLE, csv)
    r = plot(csv)
    check(r.returncode == 0, "memtop-plot failed: %s" % r.stderr.decode())
    check_png(os.path.join(tmp, "capture.png"))


def test_sample_svg_labels(tmp):
    out = os.path.join(tmp, "sample.svg")
    r = plot(SAMPLE, "-o", out, "--top", "2")
    check(r.returncode == 0, "memtop-plot failed: %s" % r.stderr.decode())
    svg = open(out, encoding="utf-8").read()
    check("<svg" in svg and len(svg) > 5 * 1024, "not a real SVG")
    # The two sites holding the most at the end, and not the third.
    for want in ("total outstanding", "RSS", "handle_request",
                 "cache_insert"):
        check(want in svg, "label %r missing from the chart" % want)
    check("session_new" not in svg, "--top 2 drew a third site")


def test_bad_input(tmp):
    r = plot(os.path.join(tmp, "missing.csv"), "-o",
             os.path.join(tmp, "x.png"))
    check(r.returncode == 1 and b"cannot read" in r.stderr,
          "missing file: rc %d %r" % (r.returncode, r.stderr))
    bogus = os.path.join(tmp, "bogus.csv")
    with open(bogus, "w") as f:
        f.write("a,b\n1,2\n")
    r = plot(bogus, "-o", os.path.join(tmp, "x.png"))
    check(r.returncode == 1 and b"not a memtop CSV" in r.stderr,
          "bogus CSV: rc %d %r" % (r.returncode, r.stderr))
    r = plot(SAMPLE, "-o", os.path.join(tmp, "x.jpg"))
    check(r.returncode == 2, "a .jpg output was accepted")
    check(not os.path.exists(os.path.join(tmp, "x.png")),
          "an image was written for bad input")


def test_live_capture(tmp):
    """memtop --csv on gt_basic, then the chart of that capture."""
    if os.geteuid() != 0 or not os.path.exists("/sys/kernel/btf/vmlinux"):
        raise SkipTest("needs root and BPF")
    if not (MEMTOP and os.access(MEMTOP, os.X_OK) and WORKLOADS):
        raise SkipTest("MEMTOP and WORKLOADS not set")
    csv = os.path.join(tmp, "live.csv")
    wl = subprocess.Popen([os.path.join(WORKLOADS, "gt_basic")],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
    mt = None
    try:
        line = wl.stdout.readline().decode()
        check(line.startswith("READY"), "gt_basic said %r" % line)
        mt = subprocess.Popen([MEMTOP, "-p", str(wl.pid), "-b", "-d", "0.2",
                               "--csv", csv], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        line = mt.stderr.readline().decode()
        check("probes attached" in line, "memtop said %r" % line)
        os.kill(wl.pid, signal.SIGUSR1)
        while True:
            line = wl.stdout.readline().decode()
            check(line, "gt_basic ended before DONE")
            if line.strip() == "DONE":
                break
        time.sleep(1.0)
        mt.send_signal(signal.SIGINT)
        check(mt.wait(timeout=20) == 0, "memtop failed")
    finally:
        for p in (mt, wl):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=5)
    out = os.path.join(tmp, "live.svg")
    r = plot(csv, "-o", out, "--top", "3")
    check(r.returncode == 0, "memtop-plot failed: %s" % r.stderr.decode())
    check("alloc_realloc_move" in open(out, encoding="utf-8").read(),
          "the biggest gt_basic site is not in the chart")
    out = os.path.join(tmp, "live.png")
    r = plot(csv, "-o", out)
    check(r.returncode == 0, "memtop-plot failed: %s" % r.stderr.decode())
    check_png(out)


TESTS = [
    ("sample_png", test_sample_png),
    ("sample_default_name", test_sample_default_name),
    ("sample_svg_labels", test_sample_svg_labels),
    ("bad_input", test_bad_input),
    ("live_capture", test_live_capture),
]


def main():
    if not shutil.which("gnuplot"):
        msg = "SKIP: plot tests need gnuplot (apt install gnuplot-nox)"
        bar = "!" * len(msg)
        print("%s\n%s\n%s" % (bar, msg, bar), flush=True)
        return 1 if os.environ.get("CI", "").lower() == "true" else 0
    failed = []
    for name, fn in TESTS:
        tmp = tempfile.mkdtemp(prefix="memtop-plot-test-")
        try:
            fn(tmp)
            print("PASS plot_%s" % name, flush=True)
        except SkipTest as e:
            print("SKIP plot_%s: %s" % (name, e), flush=True)
        except Exception as e:
            failed.append(name)
            kind = "" if isinstance(e, TestFailure) else type(e).__name__ + ": "
            print("FAIL plot_%s: %s%s" % (name, kind, e), flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d/%d passed%s" % (len(TESTS) - len(failed), len(TESTS),
                              (" (failed: %s)" % " ".join(failed))
                              if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
