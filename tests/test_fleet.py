#!/usr/bin/env python3
"""memtop's exports for fleet tools, checked by the real consumers.

Usage (as root, kernel with BPF):
    MEMTOP=/abs/build/memtop WORKLOADS=/abs/build/tests/workloads \\
        python3 tests/test_fleet.py [test names...]

  pprof_file     memtop --pprof FILE on gt_basic: `go tool pprof -top` shows
                 every function's exact outstanding bytes and blocks and the
                 exact total; the profile says inuse_space by default,
                 period 1, and names the workload's executable
  pprof_sampled  --pprof with --sample 10: period 10, every count a multiple
                 of 10, and a comment saying the figures are estimates
  pprof_url      the same from --listen's /debug/pprof/heap, fetched by
                 `go tool pprof` itself over HTTP
  pprof_text     /debug/pprof/heap?debug=1, Go's text heap profile: the
                 totals and each leaf function's bytes and blocks exact
  pprof_delta    /debug/pprof/heap?seconds=3, a delta profile as Go serves
                 one: a window spanning the workload's allocations shows
                 them exactly (`go tool pprof -top`), a window after them
                 shows nothing; bad seconds values are 400; the plain
                 profile and /metrics (promtool) still pass afterwards
  growth         --growth on gt_growth: the profile's default type is
                 touched_space, map_grow exactly its 8 MiB in it and in
                 memtop_site_touched_bytes; no allocator figures; promtool
  promtool       /metrics passes `promtool check metrics`; the process's
                 outstanding bytes and blocks, unknown frees and the top
                 site (--metrics-sites 3) are exact, at most 3 site series
  prometheus     a real Prometheus server (its own temp dir, a free port)
                 scrapes memtop every second; its query API returns the
                 workload's exact outstanding bytes, and up == 1
  hostile        while tracing: 404, 405, an oversized request, a client
                 sending half a request (timed out), 30 clients that vanish
                 mid-response, 8 threads of concurrent scrapes all exact;
                 afterwards memtop's CSV is still exact (tracing undisturbed)
  daemon         memtop --listen without -b and without a terminal: no
                 screen, nothing on stdout, /metrics exact
  live           the live screen in tmux with --listen: /metrics and
                 go tool pprof on the URL exact while the screen shows the
                 sites; q ends memtop and the endpoint
  bad_listen     the port in use, a bad address, a bad port: one error
                 line, exit status 2, nothing attached

Without root or BPF it prints a loud SKIP and exits 0 (1 when CI=true).
Python 3 standard library only; reuses integration.py's helpers.
"""

import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import integration as it  # noqa: E402
from integration import TestFailure, check  # noqa: E402

MEMTOP = os.environ.get("MEMTOP", "")
WORKLOADS = os.environ.get("WORKLOADS", "")
LISTEN = "127.0.0.1:0"  # memtop picks a free port and says which
SERVE_RE = re.compile(r"serving http://([^/]+)/")


def tool(name):
    path = shutil.which(name)
    if not path:
        raise TestFailure("%s is not installed (tools/install-deps installs it)"
                          % name)
    return path


def go_env(ctx):
    env = dict(os.environ)
    env.setdefault("HOME", ctx.tmp)
    env["PPROF_TMPDIR"] = ctx.tmp  # where pprof keeps fetched profiles
    env.setdefault("GOCACHE", os.path.join(ctx.tmp, "gocache"))
    return env


def http(url, method="GET", timeout=10):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def served_at(m):
    line = m.wait_for(lambda l: SERVE_RE.search(l) is not None, 20,
                      "'serving http://' on memtop stderr")
    return SERVE_RE.search(line).group(1)


def start_traced(ctx, extra, name="gt_basic", env=None):
    """A workload, memtop attached with extra args, the workload's
    expectations once it is DONE and the last sample has everything."""
    w = ctx.workload(name, env)
    w.wait_ready()
    m = ctx.start_memtop([w.pid], extra)
    # Growth mode attaches no allocator probes and says so instead.
    m.wait_for(lambda l: "probes attached" in l or "growth mode:" in l,
               it.ATTACH_TIMEOUT, "memtop attached")
    w.signal(signal.SIGUSR1)
    exp = w.wait_done()
    time.sleep(it.SETTLE)
    check(m.alive(), "memtop died while tracing (rc=%s)" % m.p.poll())
    return w, m, exp


# --------------------------------------------------------------------------
# go tool pprof

TOP_RE = re.compile(r"^\s*(\S+)\s+\S+%\s+\S+%\s+(\S+)\s+\S+%\s+(.+?)\s*$")


def parse_value(s):
    return int(s[:-1]) if s.endswith("B") else int(s)


def pprof_top(ctx, source, index):
    """{function: flat}, total and the header of `go tool pprof -top`."""
    argv = [tool("go"), "tool", "pprof", "-top", "-nodefraction=0",
            "-nodecount=100000", "-sample_index=" + index]
    if index.endswith("space"):
        argv.append("-unit=B")
    r = subprocess.run(argv + [source], capture_output=True, timeout=120,
                       env=go_env(ctx))
    out = r.stdout.decode("utf-8", "replace")
    check(r.returncode == 0, "go tool pprof failed (rc=%d): %s" %
          (r.returncode, r.stderr.decode("utf-8", "replace")[-800:]))
    flat, total, header = {}, None, []
    started = False
    for line in out.splitlines():
        mt = re.search(r"Total samples = (\d+)B?", line)
        if mt:
            total = int(mt.group(1))
        if line.strip().startswith("flat"):
            started = True
            continue
        if not started:
            header.append(line)
            continue
        mt = TOP_RE.match(line)
        if mt:
            flat[mt.group(3)] = flat.get(mt.group(3), 0) + parse_value(
                mt.group(1))
    ctx.notes.append("go tool pprof -top %s: %d functions, total %s" %
                     (index, len(flat), total))
    return flat, total, header, out


def check_pprof(ctx, source, exp, exe):
    errs = []
    for index, pos in (("inuse_space", 0), ("inuse_objects", 1)):
        flat, total, header, out = pprof_top(ctx, source, index)
        for fn, want in sorted(exp["fn"].items()):
            got = flat.get(fn, 0)
            if got != want[pos]:
                errs.append("%s %s: pprof %d, workload %d" %
                            (index, fn, got, want[pos]))
        extra = {f: v for f, v in flat.items() if v and f not in exp["fn"]}
        if extra:
            errs.append("%s: functions the workload did not allocate from: %s"
                        % (index, extra))
        if total != exp["total"][pos]:
            errs.append("%s total: pprof %s, workload %d" %
                        (index, total, exp["total"][pos]))
        if index == "inuse_space":
            check(any(l.startswith("File: " + exe) for l in header),
                  "the profile is not named after %s:\n%s" % (exe, out[:600]))
    r = subprocess.run([tool("go"), "tool", "pprof", "-raw", source],
                       capture_output=True, timeout=120, env=go_env(ctx))
    raw = r.stdout.decode("utf-8", "replace")
    check(r.returncode == 0, "go tool pprof -raw failed")
    check("PeriodType: space bytes" in raw and "Period: 1\n" in raw,
          "period type/period wrong:\n" + raw[:400])
    check("alloc_objects/count alloc_space/bytes inuse_objects/count "
          "inuse_space/bytes[dflt]" in raw,
          "sample types not Go's heap profile's:\n" + raw[:600])
    check("malloc" not in re.findall(r"^\s+\d+: 0x[0-9a-f]+ M=\d+ (\S+)", raw,
                                     re.M),
          "the allocator's own frame is in the profile")
    check(not errs, "\n    ".join(errs))


def test_pprof_file(ctx):
    path = os.path.join(ctx.tmp, "heap.pb.gz")
    w, m, exp = start_traced(ctx, ["--pprof", path])
    m.stop()
    check(os.path.exists(path), "--pprof file was not written")
    with open(path, "rb") as f:
        check(f.read(2) == b"\x1f\x8b", "--pprof file is not gzip")
    check_pprof(ctx, path, exp, "gt_basic")


def test_pprof_sampled(ctx):
    path = os.path.join(ctx.tmp, "heap.pb.gz")
    w, m, exp = start_traced(ctx, ["--pprof", path, "--sample", "10"])
    m.stop()
    r = subprocess.run([tool("go"), "tool", "pprof", "-raw", path],
                       capture_output=True, timeout=120, env=go_env(ctx))
    raw = r.stdout.decode("utf-8", "replace")
    check(r.returncode == 0, "go tool pprof -raw failed")
    check("Period: 10\n" in raw, "--sample 10: period is not 10:\n" + raw[:400])
    check("estimated (1 in 10 sampled)" in raw,
          "--sample 10: the profile does not say it is an estimate:\n" +
          raw[:400])
    values = [int(v) for v in re.findall(r"^\s+(\d+)\s+\d+\s+\d+\s+\d+:",
                                          raw, re.M)]
    check(values and all(v % 10 == 0 for v in values),
          "--sample 10: alloc_objects not scaled by 10: %s" % values[:10])


def test_growth(ctx):
    path = os.path.join(ctx.tmp, "growth.pb.gz")
    w, m, exp = start_traced(ctx, ["--growth", "--pprof", path, "--listen",
                                   LISTEN, "--metrics-sites", "5"],
                             name="gt_growth", env={"GT_MIB": "16"})
    addr = served_at(m)
    st, _, body = http("http://%s/metrics" % addr)
    text = body.decode()
    r = subprocess.run([tool("promtool"), "check", "metrics"], input=body,
                       capture_output=True, timeout=60)
    check(r.returncode == 0, "promtool check metrics: %s%s" %
          (r.stdout.decode(), r.stderr.decode()))
    touched = metric(text, "memtop_touched_bytes_total", {"pid": str(w.pid)})
    check(metric(text, "memtop_outstanding_bytes", {"pid": str(w.pid)})
          is None, "growth mode has no allocator figures")
    site = metric(text, "memtop_site_touched_bytes", {"function": "map_grow"})
    check(site == 8 << 20, "memtop_site_touched_bytes{map_grow} = %s" % site)
    m.stop()
    flat, total, header, out = pprof_top(ctx, path, "touched_space")
    check(flat.get("map_grow") == 8 << 20,
          "pprof touched_space map_grow %s, the workload 8 MiB" %
          flat.get("map_grow"))
    check(total is not None and touched is not None and total >= touched,
          "pprof touched total %s, /metrics said %s before the end" %
          (total, touched))
    check(any(l.startswith("Type: touched_space") for l in header),
          "growth profile's default type is not touched_space:\n" + out[:500])
    inuse, itotal, _, _ = pprof_top(ctx, path, "inuse_space")
    check(not itotal, "growth mode: inuse_space %s, expected none" % itotal)


def test_pprof_url(ctx):
    w, m, exp = start_traced(ctx, ["--listen", LISTEN])
    addr = served_at(m)
    st, hdr, body = http("http://%s/debug/pprof/heap" % addr)
    check(st == 200 and body[:2] == b"\x1f\x8b",
          "/debug/pprof/heap: status %d" % st)
    check(hdr.get("Content-Type") == "application/octet-stream",
          "Content-Type %r" % hdr.get("Content-Type"))
    check_pprof(ctx, "http://%s/debug/pprof/heap" % addr, exp, "gt_basic")
    m.stop()


def raw_samples(ctx, path):
    """The sample lines of `go tool pprof -raw` on path."""
    r = subprocess.run([tool("go"), "tool", "pprof", "-raw", path],
                       capture_output=True, timeout=120, env=go_env(ctx))
    raw = r.stdout.decode("utf-8", "replace")
    check(r.returncode == 0, "go tool pprof -raw failed: %s" %
          r.stderr.decode("utf-8", "replace")[-400:])
    body = raw.split("Samples:", 1)[-1].split("Locations", 1)[0]
    return [l for l in body.splitlines()[2:] if re.match(r"^\s+-?\d", l)]


def test_pprof_delta(ctx):
    w = ctx.workload("gt_basic")
    w.wait_ready()
    m = ctx.start_memtop([w.pid], ["--listen", LISTEN])
    addr = served_at(m)
    m.wait_for(lambda l: "probes attached" in l, it.ATTACH_TIMEOUT,
               "memtop attached")
    url = "http://%s/debug/pprof/heap" % addr
    for bad in ("0", "-2", "x", "1.5", "301"):
        st, _, body = http(url + "?seconds=" + bad)
        check(st == 400, "?seconds=%s: status %d, not 400 (%r)" %
              (bad, st, body[:80]))
    # The window opens at the next refresh after the request and closes
    # at the first one 3 s after that: the workload allocates within it.
    pool = concurrent.futures.ThreadPoolExecutor(1)
    t0 = time.monotonic()
    fut = pool.submit(http, url + "?seconds=3", "GET", 30)
    time.sleep(1.0)
    w.signal(signal.SIGUSR1)
    exp = w.wait_done()
    st, hdr, body = fut.result()
    waited = time.monotonic() - t0
    pool.shutdown()
    check(st == 200 and body[:2] == b"\x1f\x8b",
          "?seconds=3: status %d" % st)
    check(3.0 <= waited < 10.0, "?seconds=3 answered after %.1f s" % waited)
    path = os.path.join(ctx.tmp, "delta.pb.gz")
    with open(path, "wb") as f:
        f.write(body)
    ctx.notes.append("delta over the allocations: %d B in %.1f s" %
                     (len(body), waited))
    check_pprof(ctx, path, exp, "gt_basic")
    # A window after the workload is done: nothing allocated, nothing
    # freed, so no sample at all; the full profile still has it all.
    time.sleep(it.SETTLE)
    st, _, body = http(url + "?seconds=2", timeout=30)
    check(st == 200 and body[:2] == b"\x1f\x8b",
          "the quiet delta: status %d" % st)
    with open(path, "wb") as f:
        f.write(body)
    quiet = raw_samples(ctx, path)
    check(not quiet, "a window with no allocations has samples:\n" +
          "\n".join(quiet[:10]))
    check_pprof(ctx, url, exp, "gt_basic")
    st, _, body = http("http://%s/metrics" % addr)
    check(st == 200, "/metrics after the deltas: %d" % st)
    r = subprocess.run([tool("promtool"), "check", "metrics"], input=body,
                       capture_output=True, timeout=60)
    check(r.returncode == 0, "promtool check metrics failed: %s" %
          (r.stdout + r.stderr).decode("utf-8", "replace")[-600:])
    m.stop()


def test_pprof_text(ctx):
    w, m, exp = start_traced(ctx, ["--listen", LISTEN])
    addr = served_at(m)
    st, hdr, body = http("http://%s/debug/pprof/heap?debug=1" % addr)
    m.stop()
    text = body.decode("utf-8", "replace")
    check(st == 200 and hdr.get("Content-Type") == "text/plain; charset=utf-8",
          "?debug=1: status %d, Content-Type %r" % (st, hdr.get("Content-Type")))
    head = re.match(r"heap profile: (\d+): (\d+) \[(\d+): (\d+)\] @ heap/2\n",
                    text)
    check(head, "?debug=1 does not start as Go's text heap profile:\n" +
          text[:300])
    check((int(head.group(2)), int(head.group(1))) == tuple(exp["total"]),
          "text totals %s B in %s blocks, the workload %s" %
          (head.group(2), head.group(1), exp["total"]))
    # Per record, its leaf (the first "#" line) as go tool pprof's flat.
    flat = {}
    for rec in re.finditer(r"^(\d+): (\d+) \[\d+: \d+\] @[ 0-9a-fx]*\n"
                           r"#\t0x[0-9a-f]+\t([^\t\n]+)", text, re.M):
        b, o = flat.get(rec.group(3), (0, 0))
        flat[rec.group(3)] = (b + int(rec.group(2)), o + int(rec.group(1)))
    errs = ["%s: text %s, workload %s" % (fn, flat.get(fn), tuple(want))
            for fn, want in sorted(exp["fn"].items())
            if flat.get(fn, (0, 0)) != tuple(want)]
    errs += ["%s: %s B held, the workload allocated none there" % (fn, v[0])
             for fn, v in flat.items() if v[0] and fn not in exp["fn"]]
    check(not errs, "\n    ".join(errs))
    check("\tmalloc\t" not in text, "the allocator's own frame is listed")
    ctx.notes.append("?debug=1: %d records, %s B" %
                     (text.count(" @ 0x"), head.group(2)))


# --------------------------------------------------------------------------
# Prometheus


def metric(text, name, labels=None):
    """The value of the series name{labels...}; None when absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        mt = re.match(r"^([a-z_]+)(\{(.*)\})? (\S+)$", line)
        if not mt or mt.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', mt.group(3) or ""))
        if all(got.get(k) == v for k, v in (labels or {}).items()):
            return float(mt.group(4))
    return None


def check_metrics_exact(text, w, exp):
    pid = {"pid": str(w.pid)}
    b = metric(text, "memtop_outstanding_bytes", pid)
    a = metric(text, "memtop_outstanding_allocations", pid)
    check((b, a) == tuple(float(x) for x in exp["total"]),
          "memtop_outstanding_bytes/allocations %s/%s, workload %s" %
          (b, a, exp["total"]))


def test_promtool(ctx):
    w, m, exp = start_traced(ctx, ["--listen", LISTEN, "--metrics-sites", "3"])
    addr = served_at(m)
    st, hdr, body = http("http://%s/metrics" % addr)
    text = body.decode()
    check(st == 200, "/metrics status %d" % st)
    check(hdr.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
          "Content-Type %r" % hdr.get("Content-Type"))
    r = subprocess.run([tool("promtool"), "check", "metrics"], input=body,
                       capture_output=True, timeout=60)
    check(r.returncode == 0, "promtool check metrics: %s%s" %
          (r.stdout.decode(), r.stderr.decode()))
    check_metrics_exact(text, w, exp)
    labels = {"pid": str(w.pid), "comm": "gt_basic"}
    check(metric(text, "memtop_allocations_total", labels) is not None,
          "no memtop_allocations_total for the workload")
    uf = metric(text, "memtop_unknown_frees_total")
    check(uf is not None and uf >= exp["unknown"],
          "memtop_unknown_frees_total %s < %s" % (uf, exp["unknown"]))
    for name in ("memtop_rss_bytes", "memtop_frees_total",
                 "memtop_allocated_bytes_total"):
        check(metric(text, name, labels) is not None, "no " + name)
    check(metric(text, "memtop_cpu_seconds_total") > 0, "no memtop CPU time")
    check(metric(text, "memtop_kernel_memory_bytes") > 0,
          "no kernel memory of memtop's maps")
    check(metric(text, "memtop_lost_events_total",
                 {"reason": "live_map_full"}) == 0, "lost events")
    sites = [l for l in text.splitlines()
             if l.startswith("memtop_site_outstanding_bytes{")]
    check(len(sites) == 3, "%d site series, --metrics-sites 3" % len(sites))
    top = max(exp["fn"].items(), key=lambda kv: kv[1][0])
    check(metric(text, "memtop_site_outstanding_bytes",
                 {"function": top[0]}) == top[1][0],
          "top site %s: %s" % (top[0], sites))
    m.stop()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_prometheus(ctx):
    w, m, exp = start_traced(ctx, ["--listen", LISTEN])
    addr = served_at(m)
    data = os.path.join(ctx.tmp, "prometheus")
    os.makedirs(data)
    conf = os.path.join(ctx.tmp, "prometheus.yml")
    with open(conf, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: memtop\n"
                "    static_configs:\n      - targets: ['%s']\n" % addr)
    port = free_port()
    prom = it.Proc([tool("prometheus"), "--config.file=" + conf,
                    "--storage.tsdb.path=" + data,
                    "--web.listen-address=127.0.0.1:%d" % port,
                    "--log.level=warn"], watch="stderr")
    ctx.procs.append(prom)
    api = "http://127.0.0.1:%d" % port
    want = exp["total"][0]
    q = 'memtop_outstanding_bytes{job="memtop",pid="%d"}' % w.pid
    got, up = None, None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        check(prom.alive(), "prometheus exited:\n" + prom.tail())
        try:
            st, _, body = http(api + "/api/v1/query?" +
                               urllib.parse.urlencode({"query": q}), timeout=5)
            res = json.loads(body)["data"]["result"] if st == 200 else []
            got = int(float(res[0]["value"][1])) if res else None
            st, _, body = http(api + "/api/v1/query?query=up", timeout=5)
            res = json.loads(body)["data"]["result"] if st == 200 else []
            up = res[0]["value"][1] if res else None
        except (OSError, ValueError, KeyError):
            pass
        if got == want and up == "1":
            break
        time.sleep(0.5)
    ctx.notes.append("prometheus %s = %s (workload %d), up %s" %
                     (q, got, want, up))
    check(got == want, "Prometheus says %s = %s, the workload %d" %
          (q, got, want))
    check(up == "1", "up{job=memtop} = %s" % up)
    prom.signal(signal.SIGTERM)
    prom.wait(20)
    m.stop()


# --------------------------------------------------------------------------
# Bad clients


def raw_request(addr, data, timeout=5):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        s.sendall(data)
    except OSError:
        pass
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except OSError:
        pass
    s.close()
    return out


def status(resp):
    mt = re.match(rb"HTTP/1\.\d (\d{3})", resp)
    return int(mt.group(1)) if mt else None


def test_hostile(ctx):
    w, m, exp = start_traced(ctx, ["--listen", LISTEN])
    addr = served_at(m)
    base = "http://" + addr
    check(http(base + "/nope")[0] == 404, "unknown path is not 404")
    check(http(base + "/debug/pprof/profile")[0] == 404,
          "a CPU profile is not 404")
    for meth in ("POST", "PUT", "DELETE", "PATCH"):
        st, hdr, _ = http(base + "/metrics", method=meth)
        check(st == 405 and hdr.get("Allow") == "GET, HEAD",
              "%s: status %s Allow %r" % (meth, st, hdr.get("Allow")))
    resp = raw_request(addr, b"GET /metrics HTTP/1.1\r\nX-Big: " +
                       b"a" * 100000 + b"\r\n\r\n")
    check(resp == b"" or 400 <= (status(resp) or 0) < 500,
          "oversized request answered %r" % resp[:60])
    resp = raw_request(addr, b"\x00\xff garbage\r\n\r\n")
    check(resp == b"" or 400 <= (status(resp) or 0) < 500,
          "garbage answered %r" % resp[:60])

    host, port = addr.rsplit(":", 1)
    slow = socket.create_connection((host, int(port)))
    slow.sendall(b"GET /metr")
    t_slow = time.monotonic()
    for _ in range(30):  # ask for the profile, then reset the connection
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET /debug/pprof/heap HTTP/1.1\r\nHost: x\r\n\r\n")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()

    def scrape(i):
        path = "/metrics" if i % 2 else "/debug/pprof/heap"
        st, _, body = http(base + path)
        if st != 200:
            return "status %d" % st
        if path == "/metrics":
            b = metric(body.decode(), "memtop_outstanding_bytes",
                       {"pid": str(w.pid)})
            if b != exp["total"][0]:
                return "outstanding %s" % b
        elif body[:2] != b"\x1f\x8b":
            return "profile not gzip"
        return None

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        errs = [e for e in ex.map(scrape, range(80)) if e]
    check(not errs, "concurrent scrapes: %s" % errs[:5])
    slow.settimeout(30)
    try:
        gone = slow.recv(100)
    except OSError:
        gone = b""
    waited = time.monotonic() - t_slow
    slow.close()
    check(gone == b"" or status(gone) == 408,
          "the half-sent request got %r" % gone[:60])
    check(waited < 25, "the slow client was held %.0fs" % waited)
    ctx.notes.append("slow client closed after %.1fs" % waited)
    check(m.alive(), "memtop died")
    m.stop()
    rows = it.read_csv(m.csv_path)
    it.verify(rows, w.pid, exp, notes=ctx.notes)


def test_daemon(ctx):
    w = ctx.workload("gt_basic")
    w.wait_ready()
    out = os.path.join(ctx.tmp, "stdout")
    with open(out, "wb") as f:
        m = it.Proc([MEMTOP, "-p", str(w.pid), "-d", it.INTERVAL, "--listen",
                     LISTEN], watch="stderr", stdout=f)
    ctx.procs.append(m)
    m.wait_for(lambda l: "probes attached" in l, it.ATTACH_TIMEOUT,
               "'probes attached'")
    addr = served_at(m)
    w.signal(signal.SIGUSR1)
    exp = w.wait_done()
    time.sleep(it.SETTLE)
    st, _, body = http("http://%s/metrics" % addr)
    check(st == 200, "/metrics status %d" % st)
    check_metrics_exact(body.decode(), w, exp)
    m.signal(signal.SIGTERM)
    rc = m.wait(it.EXIT_TIMEOUT)
    check(rc == 0, "memtop exited %s after SIGTERM" % rc)
    check(os.path.getsize(out) == 0, "a daemon wrote %d bytes to stdout" %
          os.path.getsize(out))


def test_live(ctx):
    if not shutil.which("tmux"):
        raise TestFailure("tmux is not installed")
    w = ctx.workload("gt_basic")
    w.wait_ready()
    port = free_port()
    sock = "memtop-fleet-%d" % os.getpid()
    tmux = ["tmux", "-L", sock]
    argv = "%s -p %d -d %s --listen 127.0.0.1:%d" % (MEMTOP, w.pid,
                                                    it.INTERVAL, port)
    subprocess.run(tmux + ["-f", "/dev/null", "new-session", "-d", "-s",
                           "live", "-x", "120", "-y", "40",
                           "env TERM=tmux-256color " + argv], check=True,
                   timeout=10)
    base = "http://127.0.0.1:%d" % port
    try:
        deadline = time.monotonic() + it.ATTACH_TIMEOUT
        while True:
            try:
                if http(base + "/metrics", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            check(time.monotonic() < deadline, "the live view never served")
            time.sleep(0.2)
        w.signal(signal.SIGUSR1)
        exp = w.wait_done()
        time.sleep(it.SETTLE)
        st, _, body = http(base + "/metrics")
        check_metrics_exact(body.decode(), w, exp)
        check_pprof(ctx, base + "/debug/pprof/heap", exp, "gt_basic")
        screen = subprocess.run(tmux + ["capture-pane", "-p", "-t", "live"],
                                capture_output=True, timeout=10).stdout
        check(b"alloc_realloc_move" in screen,
              "the live screen does not show the sites:\n%s" %
              screen.decode("utf-8", "replace"))
        subprocess.run(tmux + ["send-keys", "-t", "live", "q"], timeout=10)
        deadline = time.monotonic() + it.EXIT_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
            except OSError:
                break
            check(time.monotonic() < deadline, "still serving after q")
            time.sleep(0.2)
    finally:
        subprocess.run(tmux + ["kill-server"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def test_bad_listen(ctx):
    w = ctx.workload("gt_basic")
    w.wait_ready()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    cases = [("127.0.0.1:%d" % port, "Address already in use"),
             (":%d" % port, "Address already in use"),
             ("nonsense", "ADDR:PORT"),
             (":70000", "0 to 65535"),
             ("300.1.2.3:9464", "cannot resolve"),
             ("", "--listen needs")]
    try:
        for arg, word in cases:
            r = subprocess.run([MEMTOP, "-p", str(w.pid), "-b", "-n", "1",
                                "--listen", arg], capture_output=True,
                               timeout=30, stdin=subprocess.DEVNULL)
            err = r.stderr.decode("utf-8", "replace")
            lines = err.strip().splitlines()
            check(r.returncode == 2, "--listen %r: exit %d" % (arg, r.returncode))
            check(len(lines) == 1 and word in lines[0],
                  "--listen %r: expected one line with %r, got %r" %
                  (arg, word, err))
            check("attached" not in err and not r.stdout,
                  "--listen %r: attached anyway" % arg)
    finally:
        busy.close()
    r = subprocess.run([MEMTOP, "-p", str(w.pid), "-b", "--metrics-sites",
                        "3"], capture_output=True, timeout=30)
    check(r.returncode == 2 and b"--listen" in r.stderr,
          "--metrics-sites without --listen: %d %r" % (r.returncode, r.stderr))


TESTS = [
    ("pprof_file", test_pprof_file),
    ("pprof_sampled", test_pprof_sampled),
    ("pprof_url", test_pprof_url),
    ("pprof_text", test_pprof_text),
    ("pprof_delta", test_pprof_delta),
    ("growth", test_growth),
    ("promtool", test_promtool),
    ("prometheus", test_prometheus),
    ("hostile", test_hostile),
    ("daemon", test_daemon),
    ("live", test_live),
    ("bad_listen", test_bad_listen),
]


def main(argv):
    it.MEMTOP, it.WORKLOADS = MEMTOP, WORKLOADS
    return it.run_suite(TESTS, argv, "fleet export tests need root and BPF",
                        it.Ctx, prefix="fleet_",
                        on_fail=lambda ctx: it.print_memtop_tail(ctx.memtop))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
