#!/usr/bin/env python3
"""memtop reliability and security tests.

Usage (as root, kernel with BPF, BTF and uprobes):
    MEMTOP=/abs/build/memtop WORKLOADS=/abs/build/tests/workloads \\
        python3 tests/test_reliability.py [test names...]

Three groups:
  bad_*     bad input: memtop must exit non-zero with the documented code,
            print exactly one line on stderr naming the problem, and return
            within BAD_INPUT_BOUND seconds (a hang guard, not a benchmark).
  fault_*   faults while tracing: the target is stopped and continued or
            forks, memtop gets SIGINT/SIGTERM/SIGHUP/SIGPIPE, a map fills,
            the disk under --csv fills, memtop is SIGKILLed (no probes left).
            (The target exiting is covered by integration.py's "exit".)
  sec_*     output files 0644 and no symlink following, no setuid, hostile
            and untrusted /tmp/perf-PID.map files.

Without root: a loud SKIP and exit 0 (exit 1 when CI=true).
Python 3 standard library only; reuses integration.py's helpers.
"""

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import integration as it  # noqa: E402
from integration import TestFailure, SkipTest, check  # noqa: E402

MEMTOP = it.MEMTOP
WORKLOADS = it.WORKLOADS
BAD_INPUT_BOUND = 3.0  # seconds; memtop must answer within ~1 s
# Exiting includes detaching the uprobes: 0.2-0.4 s with uprobe_multi links.
EXIT_BOUND = 3.0
SANITIZER_RE = re.compile(r"runtime error:|AddressSanitizer|LeakSanitizer")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# main.c's enum exit_code, documented in memtop.8's EXIT STATUS.
EXIT_RUNTIME, EXIT_USAGE, EXIT_TARGET, EXIT_PERM = 1, 2, 3, 4


# --------------------------------------------------------------------------
# Helpers


def run_bad(argv, want_rc, want_re, prefix=(), env=None):
    """Run memtop with bad input; check rc, one stderr line, promptness."""
    cmd = list(prefix) + [MEMTOP] + list(argv)
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=BAD_INPUT_BOUND + 10, env=env)
    except subprocess.TimeoutExpired:
        raise TestFailure("%s: still running after %ss" %
                          (" ".join(cmd), BAD_INPUT_BOUND + 10))
    dt = time.monotonic() - t0
    err = p.stderr.decode("utf-8", "replace")
    lines = err.splitlines()
    what = "%s -> rc=%s in %.2fs, stderr=%r" % (" ".join(cmd), p.returncode,
                                                 dt, err)
    check(p.returncode == want_rc, "expected exit %d: %s" % (want_rc, what))
    check(len(lines) == 1, "expected exactly one stderr line: " + what)
    check(lines[0].startswith("memtop: "), "stderr line not 'memtop: ...': "
          + what)
    check(re.search(want_re, lines[0]), "stderr does not match /%s/: %s" %
          (want_re, what))
    check(dt < BAD_INPUT_BOUND, "took %.2fs (bound %ss): %s" %
          (dt, BAD_INPUT_BOUND, what))
    return lines[0]


def unused_pid():
    pid_max = int(open("/proc/sys/kernel/pid_max").read())
    for pid in range(pid_max - 1, 1000, -1):
        if not os.path.exists("/proc/%d" % pid):
            return pid
    raise TestFailure("no unused PID found")


def nobody_dir(parent):
    """A fresh directory that user nobody can enter (mkdtemp makes 0700)."""
    d = tempfile.mkdtemp(prefix="memtop-rel-", dir=parent)
    os.chmod(d, 0o755)
    return d


def fdinfo_bpf_ids(pid):
    """(link ids, prog ids) of the BPF objects process pid holds open."""
    links, progs = set(), set()
    fddir = "/proc/%d/fdinfo" % pid
    for fd in os.listdir(fddir):
        try:
            with open(os.path.join(fddir, fd)) as f:
                txt = f.read()
        except OSError:
            continue
        m = re.search(r"^link_id:\s*(\d+)", txt, re.M)
        if m:
            links.add(int(m.group(1)))
        m = re.search(r"^prog_id:\s*(\d+)", txt, re.M)
        if m:
            progs.add(int(m.group(1)))
    return links, progs


def bpftool_ids(kind):
    p = subprocess.run(["bpftool", kind, "list", "-j"], capture_output=True,
                       timeout=20)
    check(p.returncode == 0, "bpftool %s list failed: %s" %
          (kind, p.stderr.decode(errors="replace")))
    return {o["id"] for o in json.loads(p.stdout.decode() or "[]")}


def uprobe_events():
    """The kernel's tracefs uprobe_events, read in a private mount namespace
    (tracefs need not be mounted on the host)."""
    for path in ("/sys/kernel/tracing/uprobe_events",
                 "/sys/kernel/debug/tracing/uprobe_events"):
        if os.path.exists(path):
            with open(path) as f:
                return f.read()
    p = subprocess.run(["unshare", "-m", "sh", "-c",
                        "mount -t tracefs none /sys/kernel/tracing && "
                        "cat /sys/kernel/tracing/uprobe_events"],
                       capture_output=True, timeout=20)
    if p.returncode != 0:
        raise SkipTest("cannot read uprobe_events: %s" %
                       p.stderr.decode(errors="replace").strip())
    return p.stdout.decode(errors="replace")


def wait_gone(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TestFailure(what)
        time.sleep(0.1)


def last_lost(out_path):
    """The figure of the last 'lost: N' line of memtop's batch output."""
    with open(out_path, errors="replace") as f:
        vals = re.findall(r"^lost: (\d+)", f.read(), re.M)
    check(vals, "no 'lost:' line in the batch output")
    return int(vals[-1])


# --------------------------------------------------------------------------
# Bad input. One gt_basic workload serves as a valid target where one is
# needed (memtop must fail before attaching anything to it).


class Target:
    proc = None

    @classmethod
    def pid(cls):
        if cls.proc is None or not cls.proc.alive():
            cls.proc = it.Workload("gt_basic")
            cls.proc.wait_ready()
        return cls.proc.pid

    @classmethod
    def close(cls):
        if cls.proc is not None:
            cls.proc.kill()


def bad(argv_fn, rc, regex, prefix=()):
    def t(ctx):
        argv = argv_fn() if callable(argv_fn) else argv_fn
        ctx.notes.append(run_bad(argv, rc, regex, prefix))
    return t


def P():
    return str(Target.pid())


def test_bad_values(ctx):
    cases = []
    for v in ("0", "-1", "abc", "1e9", "nan", "inf", "", "0.001", "1s"):
        cases.append((["-d", v], r"-d '.*': expected seconds"))
    for v in ("0", "-1", "abc", "1e30", "99999999999999999999", "2.5"):
        cases.append((["-n", v], r"-n '.*': expected a positive"))
    for v in ("0", "-1", "abc", "99999999999", "268435457"):
        cases.append((["--max-allocs", v], r"--max-allocs '.*': expected 1 to"))
    for v in ("0", "-5", "abc", "999999999"):
        cases.append((["--max-stacks", v], r"--max-stacks '.*': expected 1 to"))
    for v in ("-1", "x"):
        cases.append((["--top", v], r"--top"))
        cases.append((["--csv-top", v], r"--csv-top"))
    cases.append((["-o", "bogus"], r"invalid sort field 'bogus'"))
    for v in ("0", "-1", "abc"):
        cases.append((["--min-size", v], r"invalid --min-size"))
        cases.append((["--sample", v], r"invalid --sample"))
    cases.append((["-u", "no-such-user-memtop"], r"unknown user"))
    pid = P()
    for extra, regex in cases:
        ctx.notes.append(run_bad(["-p", pid, "-b"] + extra, EXIT_USAGE, regex))


def test_bad_options(ctx):
    pid = P()
    cases = [
        (["-p", pid, "--bogus"], r"unknown option --bogus"),
        (["-p", pid, "-Z"], r"unknown option -Z"),
        (["-p", pid, "-b", "extra"], r"unexpected argument 'extra'"),
        (["-p", pid, "--csv"], r"option --csv needs an argument"),
        (["-p", pid, "--folded"], r"option --folded needs an argument"),
        (["-p", pid, "--lib"], r"option --lib needs an argument"),
        (["-p", pid, "-d"], r"option -d needs an argument"),
        (["-p", pid, "-n"], r"option -n needs an argument"),
        (["-p", pid, "--max-allocs"], r"--max-allocs needs an argument"),
        (["-p", pid, "--csv", ""], r"--csv needs a file name"),
        (["-p", pid, "--lib", ""], r"--lib needs a path"),
    ]
    for argv, regex in cases:
        ctx.notes.append(run_bad(argv, EXIT_USAGE, regex))


def test_bad_static_stripped(ctx):
    """A static binary without symbols: nothing to probe, with or without
    --lib pointing at it. (An unstripped one is found through .symtab.)"""
    src = os.path.join(WORKLOADS, "gt_static")
    exe = os.path.join(ctx.tmp, "gt_static_stripped")
    shutil.copy(src, exe)
    subprocess.run(["strip", exe], check=True, timeout=30)
    w = it.Proc([exe], watch="stdout")
    ctx.procs.append(w)
    w.wait_for(lambda l: l.startswith("READY "), it.READY_TIMEOUT, "READY")
    pid = str(w.pid)
    ctx.notes.append(run_bad(["-p", pid, "-b"], EXIT_TARGET,
                             r"no allocator library.*--lib"))
    ctx.notes.append(run_bad(["-p", pid, "-b", "--lib", "/etc/passwd"],
                             EXIT_TARGET, r"/etc/passwd: not an ELF file"))
    ctx.notes.append(run_bad(["-p", pid, "-b", "--lib", "/bin/true"],
                             EXIT_TARGET, r"/bin/true: exports none of the "
                             r"allocator functions"))
    ctx.notes.append(run_bad(["-p", pid, "-b", "--lib", "/nonexistent/lib.so"],
                             EXIT_TARGET, r"/nonexistent/lib.so: No such file"))
    ctx.notes.append(run_bad(["-p", pid, "-b", "--lib", exe], EXIT_TARGET,
                             r"allocator"))


def test_bad_output_paths(ctx):
    pid = P()
    d = nobody_dir(ctx.tmp)
    os.chown(d, 65534, 65534)
    os.chmod(d, 0o700)
    for opt in ("--csv", "--folded"):
        ctx.notes.append(run_bad(["-p", pid, "-b", opt, "/nonexistent/dir/x"],
                                 EXIT_USAGE, r"cannot write /nonexistent/dir/x: "
                                 r"No such file or directory"))
        ctx.notes.append(run_bad(["-p", pid, "-b", opt, ctx.tmp], EXIT_USAGE,
                                 r"cannot write .*: Is a directory"))
        # Root, but without the capabilities that bypass file permissions.
        ctx.notes.append(run_bad(
            ["-p", pid, "-b", opt, os.path.join(d, "x")], EXIT_USAGE,
            r"cannot write .*/x: Permission denied",
            prefix=["setpriv", "--bounding-set=-dac_override,-dac_read_search"]))


def test_bad_privileges(ctx):
    pid = P()
    ctx.notes.append(run_bad(["-p", pid, "-b"], EXIT_PERM, r"needs root.*sudo",
                             prefix=NOBODY))
    ctx.notes.append(run_bad(
        ["-p", pid, "-b"], EXIT_PERM, r"without CAP_BPF and CAP_PERFMON.*sudo",
        prefix=["setpriv", "--bounding-set=-bpf,-perfmon,-sys_admin"]))


def test_bad_kernel(ctx):
    """No BTF, no uprobes: hidden in a private mount namespace. A kernel
    older than 6.1: uname(2) says 2.6.x under setarch's UNAME26
    personality."""
    pid = P()
    for hide, regex in (("/sys/kernel/btf", r"no BTF.*CONFIG_DEBUG_INFO_BTF"),
                        ("/sys/bus/event_source/devices/uprobe",
                         r"no uprobes.*CONFIG_UPROBE_EVENTS")):
        sh = 'mount -t tmpfs none %s && exec "$0" "$@"' % hide
        ctx.notes.append(run_bad(["-p", pid, "-b"], EXIT_PERM, regex,
                                 prefix=["unshare", "-m", "sh", "-c", sh]))
    ctx.notes.append(run_bad(["-p", pid, "-b"], EXIT_PERM,
                             r"Linux 2\.6\.\S+ is older than 6\.1, the oldest "
                             r"kernel memtop runs on",
                             prefix=["setarch", "x86_64", "--uname-2.6"]))


# --------------------------------------------------------------------------
# Faults


def test_fault_stop_cont(ctx):
    """SIGSTOP'd then continued while traced: memtop keeps sampling (a
    stopped process is not an exited one) and the figures stay exact."""
    w = ctx.workload("gt_basic")
    w.wait_ready()
    m = ctx.start_memtop([w.pid])
    m.wait_attached()
    os.kill(w.pid, signal.SIGSTOP)
    time.sleep(1.2)  # 6 samples while stopped
    check(m.alive(), "memtop died while the target was stopped")
    check(not any("exited" in l for l in m.lines),
          "memtop reported a stopped target as exited: %s" % m.lines)
    os.kill(w.pid, signal.SIGCONT)
    w.signal(signal.SIGUSR1)
    exp = w.wait_done()
    time.sleep(it.SETTLE)
    m.stop()
    rows = it.read_csv(m.csv_path)
    it.verify(rows, w.pid, exp, notes=ctx.notes)


def test_fault_fork(ctx):
    """A traced process forks: with -p the child is not traced, the parent's
    figures stay exact across the fork."""
    w = ctx.workload("gt_fork")
    w.wait_ready()
    m = ctx.start_memtop([w.pid])
    m.wait_attached()
    w.signal(signal.SIGUSR1)
    try:
        exp = w.wait_done()
    finally:
        for l in w.lines:
            if l.startswith("CHILD "):
                ctx.extra_pids.append(int(l.split()[1]))
    check(ctx.extra_pids, "gt_fork printed no CHILD line")
    child = ctx.extra_pids[0]
    time.sleep(it.SETTLE)
    m.stop()
    rows = it.read_csv(m.csv_path)
    check(not [r for r in rows if r["pid"] == child],
          "the forked child %d appears in the CSV" % child)
    it.verify(rows, w.pid, exp, notes=ctx.notes)


def signal_test(sig):
    def t(ctx):
        """memtop gets sig: exit 0, the final sample written although no
        interval has passed (-d 10), the folded file written."""
        w = ctx.workload("gt_basic")
        w.wait_ready()
        folded = os.path.join(ctx.tmp, "memtop.folded")
        m = ctx.start_memtop([w.pid], ["-d", "10", "--folded", folded])
        m.wait_attached()
        w.signal(signal.SIGUSR1)
        exp = w.wait_done()
        time.sleep(0.3)
        t0 = time.monotonic()
        m.signal(sig)
        rc = m.wait(it.EXIT_TIMEOUT)
        dt = time.monotonic() - t0
        check(rc is not None, "memtop still running %ss after %s" %
              (it.EXIT_TIMEOUT, sig.name))
        check(rc == 0, "memtop exited %s after %s" % (rc, sig.name))
        check(dt < EXIT_BOUND, "memtop took %.1fs to exit after %s" %
              (dt, sig.name))
        ctx.notes.append("exit 0 %.2fs after %s" % (dt, sig.name))
        m.t.join(timeout=5)
        m.out.close()
        rows = it.read_csv(m.csv_path)
        procs = [r for r in rows if r["scope"] == "process"]
        check(len(procs) == 1, "expected exactly the final sample, got %d "
              "process rows" % len(procs))
        it.verify(rows, w.pid, exp, notes=ctx.notes)
        with open(folded) as f:
            total = sum(int(l.rsplit(" ", 1)[1]) for l in f if l.strip())
        check(total == exp["total"][0], "folded file sums to %d, expected %d"
              % (total, exp["total"][0]))
    return t


def test_fault_sigpipe(ctx):
    """memtop -b ... | head -3: memtop exits promptly and cleanly, no crash,
    and its probes are gone."""
    w = ctx.workload("gt_basic")
    w.wait_ready()
    for extra in ([], ["--csv", "-"]):
        argv = [MEMTOP, "-p", str(w.pid), "-b", "-d", "0.1"] + extra
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            lines = []
            while len(lines) < 3:
                l = p.stdout.readline()
                check(l, "memtop ended before 3 lines (%s)" % " ".join(argv))
                lines.append(l)
            ids = fdinfo_bpf_ids(p.pid)  # a sample was printed: attached
            p.stdout.close()  # head -3 exits
            t0 = time.monotonic()
            try:
                rc = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                raise TestFailure("memtop still running 10 s after its "
                                  "reader closed the pipe (%s)" % " ".join(argv))
            dt = time.monotonic() - t0
            err = p.stderr.read().decode(errors="replace")
            check(rc >= 0, "memtop killed by signal %d after EPIPE" % -rc)
            check(rc in (0, EXIT_RUNTIME), "memtop exit %d after EPIPE: %s" %
                  (rc, err))
            check(dt < EXIT_BOUND, "memtop took %.1fs to exit after its "
                  "reader closed the pipe" % dt)
            check(not SANITIZER_RE.search(err), "sanitizer report: " + err)
            links, progs = ids
            check(links, "no BPF links seen in memtop's fds while tracing")
            left = links & bpftool_ids("link")
            check(not left, "links left after memtop exited: %s" % left)
            ctx.notes.append("%s: exit %d %.2fs after EPIPE, %d links gone" %
                             (" ".join(argv[3:]), rc, dt, len(links)))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_fault_map_full(ctx):
    """--max-allocs 1000 and 5000 live blocks: lost events counted and shown,
    the tracked figures consistent, no crash."""
    w = ctx.workload("gt_many")
    w.wait_ready()
    m = ctx.start_memtop([w.pid], ["--max-allocs", "1000"])
    m.wait_attached()
    w.signal(signal.SIGUSR1)
    exp = w.wait_done()
    time.sleep(it.SETTLE)
    check(m.alive(), "memtop died when the live map filled")
    m.stop()
    rows = it.read_csv(m.csv_path)
    proc, sites = it.last_sample(rows, w.pid)
    n = exp["fn"]["many_alloc"][1]
    tracked = proc["outstanding_allocs"]
    # The live map holds 1000; each CPU's newest block waits outside it.
    cap = 1000 + (os.cpu_count() or 1)
    check(0 < tracked <= cap, "outstanding_allocs %s, expected 1..%d" %
          (tracked, cap))
    check(proc["lost_events"] >= n - tracked,
          "lost_events %s, expected >= %d (%d blocks, %d tracked)" %
          (proc["lost_events"], n - tracked, n, tracked))
    sb = sum(r["outstanding_bytes"] for r in sites)
    sa = sum(r["outstanding_allocs"] for r in sites)
    check((sb, sa) == (proc["outstanding_bytes"], tracked),
          "site rows sum to %d B / %d but the process row says %d B / %d" %
          (sb, sa, proc["outstanding_bytes"], tracked))
    many = [r for r in sites if r["function"] == "many_alloc"]
    check(many, "no many_alloc site")
    mb = sum(r["outstanding_bytes"] for r in many)
    ma = sum(r["outstanding_allocs"] for r in many)
    check(mb == 100 * ma, "many_alloc: %d B in %d blocks of 100 B" % (mb, ma))
    shown = last_lost(m.out_path)
    check(shown == proc["lost_events"], "batch 'lost: %d' but CSV "
          "lost_events %d" % (shown, proc["lost_events"]))
    ctx.notes.append("tracked %d of %d blocks, lost_events %d" %
                     (tracked, n, proc["lost_events"]))


def test_fault_stacks_full(ctx):
    """--max-stacks 64 filled by 360 stacks that free what they allocate:
    stacks are lost (counted), and the idle empty sites give their room back
    within seconds, not after --reclaim-after's 30 s, so that a stack made
    afterwards (keep_new) is stored and named."""
    w = ctx.workload("gt_stackfill")
    w.wait_ready()
    m = ctx.start_memtop([w.pid], ["--max-stacks", "64", "-d", "0.5"])
    m.wait_attached()
    w.signal(signal.SIGUSR1)
    exp = w.wait_done()
    time.sleep(it.SETTLE)
    m.stop()
    rows = it.read_csv(m.csv_path)
    proc, sites = it.last_sample(rows, w.pid)
    check(proc["lost_events"] > 0, "no stack lost: the map did not fill")
    keep = [r for r in sites if r["function"] == "keep_new"]
    kb = sum(r["outstanding_bytes"] for r in keep)
    want = exp["fn"]["keep_new"][0]
    # keep_new allocates every 20 ms for 6 s; those before the room came
    # back are "[stack not captured]": most must be its own.
    check(kb >= want // 2, "keep_new holds %d B of its %d B: its stack was "
          "not stored while the map held idle empty sites" % (kb, want))
    ctx.notes.append("keep_new %d of %d B, lost_events %d" %
                     (kb, want, proc["lost_events"]))


def placements(pids):
    """What `memtop -v` says of where it probes pids: placement offsets and
    the CPython allocator table functions."""
    r = subprocess.run([MEMTOP, "-v", "-b", "-n", "1", "-d", "0.3", "-p",
                        ",".join(str(p) for p in pids)],
                       capture_output=True, text=True,
                       timeout=60 * it._SCALE)
    check(r.returncode == 0, "memtop -v failed (%d): %s" %
          (r.returncode, r.stderr[-500:]))
    got = sorted(set(re.findall(r"probing (\S+) at \+(\d+)", r.stderr)))
    tabs = sorted(set(re.findall(r"allocator table function at \S+ probed "
                                 r"\(.*?(\+0x[0-9a-f]+)\)", r.stderr)))
    fallback = "probing its API functions instead" in r.stderr
    return got, tabs, fallback


def test_fault_foreign_breakpoints(ctx):
    """A system-wide tracer's breakpoints (here another memtop) sit in every
    mapping of libc and python, memtop's own reading of those files
    included: where memtop places its probes, and the CPython allocator
    tables it finds by decoding the API functions, must not change."""
    if not os.access("/usr/bin/python3", os.X_OK):
        raise SkipTest("/usr/bin/python3 missing")
    w = ctx.workload("gt_basic")
    w.wait_ready()
    py = subprocess.Popen(["/usr/bin/python3", "-c",
                           "import time\nx = [str(i) for i in range(9)]\n"
                           "time.sleep(120)"])
    try:
        time.sleep(0.5)
        alone = placements([w.pid, py.pid])
        check(alone[0] and alone[1] and not alone[2],
              "no placements or allocator tables alone: %r" % (alone,))
        sw = subprocess.Popen([MEMTOP, "-b", "-d", "5"],
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60 * it._SCALE
            line = ""
            while "probes attached" not in line and \
                    time.monotonic() < deadline:
                line = sw.stderr.readline()
                if not line and sw.poll() is not None:
                    raise TestFailure("system-wide memtop exited (%s)" %
                                      sw.returncode)
            check("probes attached" in line, "system-wide memtop did not "
                  "attach")
            beside = placements([w.pid, py.pid])
        finally:
            sw.send_signal(signal.SIGINT)
            try:
                sw.wait(30)
            except subprocess.TimeoutExpired:
                sw.kill()
                sw.wait()
        check(beside == alone, "beside a system-wide tracer memtop probes "
              "elsewhere:\n  alone:  %r\n  beside: %r" % (alone, beside))
        ctx.notes.append("%d placements, %d table functions, the same" %
                         (len(alone[0]), len(alone[1])))
    finally:
        py.kill()
        py.wait()


def test_fault_disk_full(ctx):
    """--csv on a 64 KiB tmpfs at 20 samples/s: an error naming the file and
    ENOSPC, tracing goes on, the file is valid CSV up to its last row."""
    mnt = os.path.join(ctx.tmp, "small")
    os.mkdir(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt],
                   check=True, timeout=20)
    ctx.mounts.append(mnt)
    w = ctx.workload("gt_basic")
    w.wait_ready()
    csv_path = os.path.join(mnt, "full.csv")
    m = ctx.start_memtop([w.pid], ["-d", "0.05", "--csv", csv_path])
    m.wait_attached()
    w.signal(signal.SIGUSR1)
    w.wait_done()
    line = m.wait_for(lambda l: "No space left on device" in l, 30,
                      "an ENOSPC message")
    check(csv_path in line, "the error does not name the file: %r" % line)
    time.sleep(0.5)
    check(m.alive(), "memtop died after the disk filled (rc=%s)" % m.p.poll())
    m.signal(signal.SIGINT)
    rc = m.wait(it.EXIT_TIMEOUT)
    check(rc in (0, EXIT_RUNTIME), "memtop exit %s after a full disk" % rc)
    m.t.join(timeout=5)
    m.out.close()
    with open(csv_path, "rb") as f:
        raw = f.read()
    check(raw.endswith(b"\n"), "the CSV ends in a partial row")
    rows = it.read_csv(csv_path)  # every row complete and well-formed
    groups = {}
    for r in rows:
        groups.setdefault(r["timestamp"], []).append(r)
    for ts, g in groups.items():
        check(g[0]["scope"] == "process", "sample %s does not start with its "
              "process row" % ts)
    errs = [l for l in m.lines if "No space" in l]
    ctx.notes.append("%d bytes, %d samples kept; %d ENOSPC message(s); exit %d"
                     % (len(raw), len(groups), len(errs), rc))


def test_fault_sigkill(ctx):
    """kill -9 memtop: no link, program or uprobe event of it remains, and
    the target keeps running normally."""
    w = ctx.workload("gt_basic")
    w.wait_ready()
    m = ctx.start_memtop([w.pid])
    m.wait_attached()
    links, progs = fdinfo_bpf_ids(m.pid)
    check(links and progs, "no BPF links/programs in memtop's fds")
    check(links <= bpftool_ids("link"), "bpftool does not list memtop's links")
    before = uprobe_events()
    os.kill(m.pid, signal.SIGKILL)
    m.p.wait(timeout=10)
    wait_gone(lambda: not (links & bpftool_ids("link")), 5,
              "links left after SIGKILL: %s" % (links & bpftool_ids("link")))
    wait_gone(lambda: not (progs & bpftool_ids("prog")), 5,
              "programs left after SIGKILL: %s" % (progs & bpftool_ids("prog")))
    ev = uprobe_events()
    mine = [l for l in ev.splitlines() if "libbpf_%d_" % m.pid in l]
    check(not mine, "uprobe_events entries of memtop left: %s" % mine)
    check("libbpf_%d_" % m.pid not in before,
          "memtop used tracefs uprobe_events (legacy uprobes)")
    w.signal(signal.SIGUSR1)
    w.wait_done()
    check(w.alive(), "the target died after memtop was killed")
    ctx.notes.append("%d links, %d programs gone" % (len(links), len(progs)))


# --------------------------------------------------------------------------
# Security


def test_sec_output_files(ctx):
    """--csv and --folded created 0644 (umask 022), owned by root."""
    old = os.umask(0o022)
    try:
        csv_path = os.path.join(ctx.tmp, "memtop.csv")
        folded = os.path.join(ctx.tmp, "out.folded")
        w = ctx.workload("gt_basic")
        w.wait_ready()
        m = ctx.start_memtop([w.pid], ["-n", "2", "--folded", folded])
        rc = m.wait(it.ATTACH_TIMEOUT)
        m.out.close()
        check(rc == 0, "memtop -n 2 exited %s" % rc)
    finally:
        os.umask(old)
    for path in (csv_path, folded):
        st = os.lstat(path)
        check(stat.S_ISREG(st.st_mode), "%s is not a regular file" % path)
        check(stat.S_IMODE(st.st_mode) == 0o644, "%s has mode %o, want 644" %
              (path, stat.S_IMODE(st.st_mode)))
        check(st.st_uid == 0, "%s owned by uid %d" % (path, st.st_uid))


def test_sec_symlink(ctx):
    """A symlink planted at --csv/--folded is not followed: clear error, the
    file it points to is untouched."""
    pid = P()
    victim = os.path.join(ctx.tmp, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    link = os.path.join(ctx.tmp, "planted")
    os.symlink(victim, link)
    for opt in ("--csv", "--folded"):
        ctx.notes.append(run_bad(["-p", pid, "-b", "-n", "1", opt, link],
                                 EXIT_USAGE, r"cannot write .*planted: it is a "
                                 r"symbolic link \(not followed\)"))
        with open(victim) as f:
            check(f.read() == "precious\n", "%s followed the symlink" % opt)


def test_sec_setuid(ctx):
    """A setuid copy of memtop run by nobody refuses to run."""
    d = nobody_dir("/var/tmp")
    ctx.cleanup_dirs.append(d)
    exe = os.path.join(d, "memtop")
    shutil.copy(MEMTOP, exe)
    os.chown(exe, 0, 0)
    os.chmod(exe, 0o4755)
    p = subprocess.run(NOBODY + [exe, "--version"], capture_output=True,
                       timeout=10)
    err = p.stderr.decode(errors="replace")
    if p.returncode == 0:
        raise TestFailure("setuid memtop ran for nobody: %r" % p.stdout)
    check(p.returncode == EXIT_PERM and "setuid" in err and
          len(err.splitlines()) == 1,
          "setuid memtop: rc=%d stderr=%r" % (p.returncode, err))
    ctx.notes.append(err.strip())


EVIL_COMM = r'''
import ctypes, os, sys, time
ctypes.CDLL(None).prctl(15, b"\x1b[2J\x1b]0;t\x07\nx", 0, 0, 0)
print("READY", os.getpid(), flush=True)
while True:
    keep = [bytearray(1000) for _ in range(10)]
    time.sleep(0.02)
'''


def test_sec_hostile_comm(ctx):
    """A process naming itself with escape sequences and a newline: no
    control character reaches memtop's output or CSV."""
    w = it.Proc([sys.executable, "-c", EVIL_COMM], watch="stdout")
    ctx.procs.append(w)
    w.wait_for(lambda l: l.startswith("READY "), it.READY_TIMEOUT, "READY")
    with open("/proc/%d/comm" % w.pid, "rb") as f:
        check(b"\x1b" in f.read(), "prctl(PR_SET_NAME) did not take")
    m = ctx.start_memtop([w.pid], ["-n", "3"])
    rc = m.wait(it.ATTACH_TIMEOUT)
    m.t.join(timeout=5)
    m.out.close()
    check(rc == 0, "memtop exited %s" % rc)
    for path in (m.out_path, m.csv_path):
        with open(path, "rb") as f:
            data = f.read()
        bad = sorted({c for c in data if (c < 0x20 and c != 0x0a) or c == 0x7f})
        check(not bad, "control bytes %s in %s" % (bad, path))
    rows = it.read_csv(m.csv_path)
    comm = [r["comm"] for r in rows if r["scope"] == "process"][-1]
    ctx.notes.append("comm shown as %r" % comm)


JUNK = [
    b"\x00\x01\x02 binary \xff\xfe junk\x00 with NULs\n",
    b"7f0000000000 100 \x1b[2J\x1b]0;pwned\x07escape\n",
    b"A" * (2 << 20) + b"\n",  # a 2 MiB line
    b"ffffffffffffffff 10 wraps_around\n",
    b"123456789abcdef0123 10 too_many_digits\n",
    b"0x 0x name_without_digits\n",
    b"1000 0 zero_size\n",
    b"   \t  \n",
    b"\n" * 1000,
    b"zzzz yyyy not_hex\n",
    b" " * 100000 + b"\n",
]


def perf_map_test(mode, owner, want_named):
    def t(ctx):
        """A /tmp/perf-PID.map full of junk around the real entry: memtop
        must not crash and must name the JIT frame from the map (only when
        the file is trusted: owned by root or the target's user and not
        writable by others)."""
        w = ctx.workload("gt_jit")
        w.wait_ready()
        jit = [l for l in w.lines if l.startswith("JIT ")]
        check(jit, "gt_jit printed no JIT line")
        start, size = jit[0].split()[1:3]
        path = "/tmp/perf-%d.map" % w.pid
        ctx.cleanup_files.append(path)
        with open(path, "wb") as f:
            for j in JUNK[:5]:
                f.write(j)
            f.write(("%s %s jit_alloc\n" % (start, size)).encode())
            for j in JUNK[5:]:
                f.write(j)
            f.write(b"\xff" * 5000)  # no final newline
        os.chown(path, owner, owner)
        os.chmod(path, mode)
        m = ctx.start_memtop([w.pid])
        m.wait_attached()
        w.signal(signal.SIGUSR1)
        exp = w.wait_done()
        time.sleep(it.SETTLE)
        check(m.alive(), "memtop died (rc=%s)" % m.p.poll())
        m.stop()
        rows = it.read_csv(m.csv_path)
        if want_named:
            it.verify(rows, w.pid, exp, notes=ctx.notes)
            return
        proc, sites = it.last_sample(rows, w.pid)
        named = [r for r in sites if "jit_alloc" in r["function"] + r["stack"]]
        if named:
            raise TestFailure("an untrusted perf map (mode %o, uid %d) was "
                              "used: %s" % (mode, owner, named[0]["stack"]))
        ctx.notes.append("perf map ignored; sites: %s" %
                         ", ".join(sorted(r["function"] for r in sites)))
        check(proc["outstanding_bytes"] == exp["total"][0],
              "process total %s, expected %d" % (proc["outstanding_bytes"],
                                                 exp["total"][0]))
    return t


# --------------------------------------------------------------------------
# Driver


class Ctx(it.Ctx):
    def __init__(self, name):
        super().__init__(name)
        self.extra_pids = []
        self.mounts = []
        self.cleanup_files = []
        self.cleanup_dirs = []

    def cleanup(self):
        for pid in self.extra_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for p in self.procs:
            p.kill()
        for mnt in self.mounts:
            subprocess.run(["umount", "-l", mnt], timeout=20)
        for f in self.cleanup_files:
            try:
                os.unlink(f)
            except OSError:
                pass
        for d in self.cleanup_dirs:
            shutil.rmtree(d, ignore_errors=True)
        super().cleanup()


TESTS = [
    ("bad_missing_pid", bad(["-p"], EXIT_USAGE, r"option -p needs an argument")),
    ("bad_pid_and_command", bad(["-p", "1", "--", "true"], EXIT_USAGE,
                                r"-p and a command cannot be combined")),
    ("bad_follow_alone", bad(["-f", "-b"], EXIT_USAGE,
                             r"-f follows the children of -p PID")),
    ("bad_pid_text", bad(["-p", "abc"], EXIT_USAGE, r"invalid PID 'abc'")),
    ("bad_pid_negative", bad(["-p", "-5"], EXIT_USAGE, r"invalid PID '-5'")),
    ("bad_pid_zero", bad(["-p", "0"], EXIT_USAGE, r"invalid PID '0'")),
    ("bad_pid_list", bad(["-p", "1,x"], EXIT_USAGE, r"invalid PID 'x'")),
    ("bad_pid_absent", bad(lambda: ["-p", str(unused_pid()), "-b"], EXIT_TARGET,
                           r"no process with PID \d+")),
    ("bad_kernel_thread", bad(["-p", "2", "-b"], EXIT_TARGET,
                              r"PID 2 \(kthreadd\) is a kernel thread")),
    ("bad_static_stripped", test_bad_static_stripped),
    ("bad_values", test_bad_values),
    ("bad_options", test_bad_options),
    ("bad_output_paths", test_bad_output_paths),
    ("bad_privileges", test_bad_privileges),
    ("bad_kernel", test_bad_kernel),
    ("fault_stop_cont", test_fault_stop_cont),
    ("fault_fork", test_fault_fork),
    ("fault_sigint", signal_test(signal.SIGINT)),
    ("fault_sigterm", signal_test(signal.SIGTERM)),
    ("fault_sighup", signal_test(signal.SIGHUP)),
    ("fault_sigpipe", test_fault_sigpipe),
    ("fault_map_full", test_fault_map_full),
    ("fault_stacks_full", test_fault_stacks_full),
    ("fault_foreign_breakpoints", test_fault_foreign_breakpoints),
    ("fault_disk_full", test_fault_disk_full),
    ("fault_sigkill", test_fault_sigkill),
    ("sec_output_files", test_sec_output_files),
    ("sec_symlink", test_sec_symlink),
    ("sec_setuid", test_sec_setuid),
    ("sec_hostile_comm", test_sec_hostile_comm),
    ("sec_perf_map_hostile", perf_map_test(0o644, 0, True)),
    ("sec_perf_map_world_writable", perf_map_test(0o666, 0, False)),
    ("sec_perf_map_other_owner", perf_map_test(0o644, 65534, False)),
]


def main(argv):
    why = it.environment_ok()
    for tool in ("setpriv", "unshare", "strip", "bpftool", "mount"):
        if not shutil.which(tool):
            why.append("%s not installed" % tool)

    def no_sanitizer_report(ctx):
        san = [l for p in ctx.procs if isinstance(p, it.Memtop)
               for l in p.lines if SANITIZER_RE.search(l)]
        check(not san, "sanitizer report on memtop's stderr: %s" %
              " | ".join(san[:3]))
    try:
        return it.run_suite(TESTS, argv, "reliability tests need root and BPF",
                            Ctx, why=why, after=no_sanitizer_report,
                            on_fail=lambda ctx: it.print_memtop_tail(ctx.memtop))
    finally:
        Target.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
