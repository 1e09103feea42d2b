#!/usr/bin/env python3
"""perf/compare.py's logic, without running a comparison: a reply that failed reactord-load's
verification makes the run exit non-zero with its results named *-INVALID and marked invalid; the
"uncommitted changes" note ignores the comparison's own results under perf/results/; perf's counts
are read and turned into system calls per request; server CPU is the whole process's (every
thread); the rows of issue 13 run in the cells they should, a spinning row only while measured, and
do not set the open loop's rate; the report has the system-call column, the latency table and
their targets, and a memory row whose server died misses its target; the admin client reads a service's bytes sent; a missing perf stops the run with a
clear message.
Usage: compare_logic_test.py (exits 0 when every check holds)."""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "perf"))
import compare  # noqa: E402
import compare_report  # noqa: E402

RealCompare = compare.Compare


def git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def check_uncommitted(tmp):
    root = Path(tmp) / "repo"
    (root / "perf/results").mkdir(parents=True)
    (root / "perf/bench.cc").write_text("int main() {}\n")
    git(root, "init", "-q")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "seed")
    (root / "perf/results/compare-1.json").write_text("{}\n")
    assert compare_report.uncommitted_sources(root) == "", "its own results count as changes"
    (root / "perf/bench.cc").write_text("int main() { return 1; }\n")
    assert "perf/bench.cc" in compare_report.uncommitted_sources(root), "an edit goes unreported"


def run_main(tmp, result, name):
    """Runs compare.main() with a fake comparison whose one cell is `result`; returns its exit
    status and the files it wrote."""
    out = Path(tmp) / name

    class FakeCompare:
        def __init__(self, args):
            pass

        def run(self):
            compare.note_mismatch(result, "echo, 1 connections, 64 B, port 1")
            return {"sections": {}, "loadavg": {}, "started": "now", "seconds": 0}

    compare.byte_mismatches.clear()
    compare.Compare = FakeCompare
    sys.argv = ["compare.py", "--no-build", "--quick", "--no-syscalls", "--out-dir", str(out)]
    status = 0
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            compare.main()
    except SystemExit as e:
        status = e.code
    return status, sorted(out.iterdir())


def check_mismatch(tmp):
    status, files = run_main(tmp, {"errors_verify": 0}, "clean")
    assert status in (0, None), f"a clean run exited {status}"
    assert not any("INVALID" in f.name for f in files), files
    status, files = run_main(tmp, {"errors_verify": 3, "first_error": "echo differs"}, "bad")
    assert status not in (0, None), "a run with a byte mismatch exited 0"
    assert files and all("-INVALID." in f.name for f in files), files
    res = json.loads(next(f for f in files if f.suffix == ".json").read_text())
    assert res["valid"] is False and "3 replies differed" in res["byte_mismatches"][0], res
    md = next(f for f in files if f.suffix == ".md").read_text()
    assert "INVALID" in md, md


def check_perf_parsing():
    # perf stat -x, -o FILE: a comment line, then value,unit,event,run time,percentage,...
    text = "# started on Tue Dec  1 16:00:00 2026\n\n48123,,raw_syscalls:sys_enter,5012345,100.00,,\n"
    assert compare.parse_perf_count(text) == 48123, compare.parse_perf_count(text)
    per_thread = ("shard-0-20593,42588,,raw_syscalls:sys_enter,5012345,100.00,,\n"
                  "watchdog-20594,492,,raw_syscalls:sys_enter,5012345,100.00,,\n"
                  "admin-20595,<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n")
    assert compare.parse_perf_count(per_thread) == 43080, compare.parse_perf_count(per_thread)
    assert compare.parse_perf_count("<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n") == 0
    for bad in ["", "# only a comment\n", "<not supported>,,raw_syscalls:sys_enter,0,0,,\n"]:
        try:
            compare.parse_perf_count(bad)
        except RuntimeError:
            continue
        raise AssertionError(f"no error for perf output {bad!r}")
    # 100 connections: 100 requests then 100 + 50,000; connection set-up cancels out.
    assert compare.per_request([1700, 2700], [100, 50100]) == 0.02
    assert compare.per_request([5, 5], [1, 1]) is None


def check_whole_process_cpu():
    """A thread other than the main one burns 0.3 s of CPU: cpu_seconds counts it, and
    thread_cpu/thread_shares give it to that thread (reading the main thread's own stat would
    miss it: the main thread only waits)."""
    def burn():
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass
    pid = os.getpid()
    c0, t0 = compare.cpu_seconds(pid), compare.thread_cpu(pid)
    main0 = compare.stat_cpu_seconds(f"/proc/{pid}/task/{pid}/stat")
    t = threading.Thread(target=burn)
    t.start()
    t.join()  # an exited thread's time stays in the process's
    c1, t1 = compare.cpu_seconds(pid), compare.thread_cpu(pid)
    main1 = compare.stat_cpu_seconds(f"/proc/{pid}/task/{pid}/stat")
    assert c1 - c0 >= 0.28, f"the process's CPU grew by {c1 - c0} s, not 0.3 s"
    assert main1 - main0 < 0.15, f"the main thread itself used {main1 - main0} s"
    # The burner exited: thread_cpu lists live threads only, so check shares with one that lives.
    done = threading.Event()

    def burn_then_wait():
        burn()
        done.set()
        time.sleep(2)
    t = threading.Thread(target=burn_then_wait)
    t0 = compare.thread_cpu(pid)
    t.start()
    done.wait()
    shares = compare.thread_shares(t0, compare.thread_cpu(pid))
    t.join()
    assert max(shares.values()) > 0.8, shares
    assert compare.thread_kind("iou-sqp-1234") == "iou-sqp"
    assert compare.thread_kind("shard-0") == "shard"
    assert compare.thread_shares({"1": ("a", 1.0)}, {"1": ("a", 1.0)}) == {}


def check_rows():
    rows = {r.name: r for r in compare.echo_rows(sqpoll_cpu=0)}
    for base in compare.BASE_ROWS:
        assert base in rows and rows[base].cells is None and not rows[base].exclusive, base
    in_1x64 = {n for n, r in rows.items() if compare.in_cell(r, 1, 64)}
    for b in ("epoll", "io_uring"):
        for suffix in ("", "-adaptive", "-spin"):
            assert f"reactord-{b}{suffix}" in in_1x64, (b, suffix, in_1x64)
    assert "reactord-io_uring-sqpoll" in in_1x64 and "epoll+thread" in in_1x64
    for conns, size in [(100, 64), (100, 4096), (1000, 64), (1000, 4096)]:
        cell = {n for n, r in rows.items() if compare.in_cell(r, conns, size)}
        assert {"epoll", "epoll+thread", "reactord-epoll-spin", "reactord-io_uring-spin",
                "reactord-io_uring-sqpoll"} <= cell, (conns, size, cell)
        assert not any("adaptive" in n for n in cell), cell
    for n in ("reactord-epoll-spin", "reactord-io_uring-spin", "reactord-io_uring-sqpoll",
              "reactord-epoll-adaptive", "reactord-io_uring-adaptive"):
        assert rows[n].exclusive, f"{n} spins but would run beside the others"
    assert rows["epoll+thread"].peer == "epoll_echo" and "--idle-thread" in rows[
        "epoll+thread"].peer_args
    sq = rows["reactord-io_uring-sqpoll"].runtime
    assert sq["io_uring_sqpoll"] is True and sq["io_uring_sqpoll_cpu"] == 0, sq
    assert compare.echo_rows(sqpoll_cpu=-1)[9].runtime["io_uring_sqpoll_cpu"] == -1
    mw = rows["reactord-io_uring-minwait"]
    assert mw.runtime == {"io_uring_min_wait_us": 10} and not mw.exclusive, mw
    assert "reactord-io_uring-minwait" in in_1x64
    assert all(compare.in_cell(mw, c, z) for c in (100, 1000) for z in (64, 4096))
    summary = {"epoll": {"rps": 40000}, "reactord-epoll": {"rps": 30000},
               "reactord-io_uring-sqpoll": {"rps": 2000}, "epoll+thread": {"rps": 1000}}
    assert compare.open_loop_rate(summary) == 15000, compare.open_loop_rate(summary)
    assert compare.open_loop_rate({"reactord-epoll-spin": {"rps": 5}}) is None


def check_config(tmp):
    s = compare.reactord_server(Path("/nonexistent"), "io_uring", tmp, 10,
                                {"io_uring_sqpoll": True, "io_uring_sqpoll_cpu": 0,
                                 "idle": "spin"}, "reactord-io_uring-x", exclusive=True)["echo"]
    text = s.config.read_text()
    for line in ['backend = "io_uring"', "io_uring_sqpoll = true", "io_uring_sqpoll_cpu = 0",
                 'idle = "spin"']:
        assert line + "\n" in text, (line, text)
    assert text.index("io_uring_sqpoll") < text.index("[log]"), "keys outside [runtime]"
    assert s.name == "reactord-io_uring-x" and s.exclusive


def check_measuring():
    events = []

    class FakeServer:
        def __init__(self, name, exclusive):
            self.name, self.exclusive, self.pid = name, exclusive, os.getpid()

        def start(self):
            events.append(("start", self.name))

        def stop(self):
            events.append(("stop", self.name))

    c = RealCompare.__new__(RealCompare)
    c.results = {}
    for s in (FakeServer("spin", True), FakeServer("block", False)):
        with c.measuring(s):
            events.append(("run", s.name))
    assert events == [("start", "spin"), ("run", "spin"), ("stop", "spin"), ("run", "block")], \
        events
    assert "allowed_cpus" in c.results["servers"]["spin"]
    events.clear()
    try:
        with c.measuring(FakeServer("spin", True)):
            raise ValueError("the run failed")
    except ValueError:
        pass
    assert events[-1] == ("stop", "spin"), "a failed run left a spinning server up"


def check_report():
    def row(p50, cpu, sysc=None):
        r = {"rps": 1e6 / p50, "cpu_us": cpu, "util": 0.5, "client_util": 0.5, "p50": p50,
             "p99": 2 * p50, "load1": 1.0, "x_rps": 1.0, "x_cpu": 1.0}
        if sysc is not None:
            r["syscalls"] = sysc
        return r
    rounds = [{"reactord-epoll": row(30, 10), "reactord-epoll-spin": row(20, 40),
               "reactord-io_uring": row(30, 10), "reactord-io_uring-spin": row(27, 40)},
              {"reactord-epoll": row(40, 10), "reactord-epoll-spin": row(20, 40),
               "reactord-io_uring": row(30, 10), "reactord-io_uring-spin": row(28, 40)},
              {"reactord-epoll": row(20, 10), "reactord-epoll-spin": row(20, 40),
               "reactord-io_uring": row(30, 10), "reactord-io_uring-spin": row(29, 40)}]
    assert abs(compare_report.paired_ratio(rounds, "reactord-epoll-spin", "reactord-epoll", "p50")
               - 2 / 3) < 1e-9
    assert compare_report.paired_ratio(rounds, "nobody", "reactord-epoll", "p50") is None
    summary = compare.summarize(rounds, None)
    summary["reactord-io_uring"]["syscalls"] = 0.051
    hundred = {"reactord-io_uring": row(900, 5, 0.3), "epoll": row(900, 5, 2.0)}
    res = {"sections": {"echo": {
        "1x64": {"conns": 1, "size": 64, "rounds": rounds, "summary": summary},
        "100x64": {"conns": 100, "size": 64, "rounds": [hundred], "summary": hundred}}},
        "loadavg": {}, "started": "now", "seconds": 1,
        "servers": {"reactord-io_uring-sqpoll": {"allowed_cpus": {"iou-sqp": "0"}}}}
    mem = {"connected": 5000, "errors": 0, "base_kib": 1, "rss_kib": 2, "load": "1 1 1"}
    res["sections"]["memory"] = [
        {**mem, "server": "reactord-epoll", "connections": 5000, "per_conn_kib": 3.9},
        {**mem, "server": "reactord-epoll", "connections": 10000, "per_conn_kib": 4.9},
        {"server": "reactord-io_uring", "connections": 18000, "load": "1 1 1",
         "error": "reactord-io_uring exited (status -9) holding 18000 connections"}]
    targets = {t: v for t, m, v in compare_report.targets(res)}
    assert targets["≤ 4 KiB RSS per idle connection, reactord-epoll, 5,000"] == "met", targets
    assert targets["≤ 4 KiB RSS per idle connection, reactord-epoll, 10,000"] == "missed"
    # A server that died while holding its connections has no figure and misses the target.
    assert targets["≤ 4 KiB RSS per idle connection, reactord-io_uring, 18,000"] == "missed"
    assert targets["idle = spin: 1-connection p50 ≥ 20 % below block, epoll"] == "met", targets
    assert targets["idle = spin: 1-connection p50 ≥ 20 % below block, io_uring"] == "missed"
    assert targets["reactord-io_uring ≤ 0.2 system calls per request, 100 conns, 64 B"] == \
        "missed", targets
    info = {k: "?" for k in ("commit", "source", "build", "build_type", "compiler", "cpus", "cpu",
                             "kernel", "redis", "nginx", "wrk")}
    info["uncommitted_in_tree"] = False

    class Args:
        quick = True
    md = compare_report.markdown(res, info, Args(), "x.svg")

    class FiveRounds:
        quick = False
        rounds = 5
    assert "full (5 rounds, 5 s windows)" in compare_report.markdown(res, info, FiveRounds(),
                                                                     "x.svg")
    assert "| conns | size | server | req/s | server CPU/req | syscalls/req |" in md, md
    assert "## Echo latency, one connection × 64 B: block, adaptive, spin" in md, md
    assert "| reactord-io_uring | io_uring | block | 30.0 µs | 60.0 µs | 1.00× | 10.00 µs |" \
        " 0.50 | 0.051 |" in md, md
    assert "| 0.67× |" in md, md
    assert "| reactord-io_uring | 18,000 | — | — | — | reactord-io_uring exited (status -9)" in md, md
    compare_report.svg_chart(res)


def check_admin(tmp):
    """Admin waits for a socket that is not there yet, reads a service's bytes sent from an
    answer that arrives in pieces, on one connection for several questions, and says so when a
    service is missing."""
    import socket
    path = Path(tmp) / "admin.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    answers = [b'[{"name":"http","bytes_out":1},', b'{"name":"echo","bytes_out":6400}]\n.\n',
               b'[{"name":"echo","bytes_out":12800}]\n.\n', b'[]\n.\n']

    def serve():
        time.sleep(0.2)  # the daemon's admin thread listens a moment after its services
        listener.bind(str(path))
        listener.listen(1)
        conn, _ = listener.accept()
        with conn:
            for i, a in enumerate([answers[:2], answers[2:3], answers[3:]]):
                line = b""
                while not line.endswith(b"\n"):
                    line += conn.recv(100)
                assert line == b"services\n", line
                for part in a:
                    conn.sendall(part)
                    time.sleep(0.01)
    t = threading.Thread(target=serve)
    t.start()
    admin = compare.Admin(path)
    try:
        assert admin.bytes_out() == 6400
        assert admin.bytes_out() == 12800
        try:
            admin.bytes_out()
        except RuntimeError as e:
            assert "services" in str(e), e
        else:
            raise AssertionError("no error for a missing service")
    finally:
        admin.close()
        t.join()
        listener.close()


def check_perf_missing(tmp):
    """Without perf the run stops at once and says what to install, unless --no-syscalls."""
    real_which = compare.shutil.which
    compare.shutil.which = lambda name: None if name == "perf" else real_which(name)
    try:
        assert "linux-perf" in compare.check_perf(), compare.check_perf()
        sys.argv = ["compare.py", "--no-build", "--quick", "--sections", "echo", "--out-dir",
                    str(Path(tmp) / "noperf")]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                compare.main()
        except SystemExit as e:
            assert "cannot count system calls" in str(e.code) and "linux-perf" in str(e.code), e
        else:
            raise AssertionError("compare ran without perf")
    finally:
        compare.shutil.which = real_which


CHECKS = [check_perf_parsing, check_whole_process_cpu, check_rows, check_measuring, check_report]
with tempfile.TemporaryDirectory() as tmp:
    check_uncommitted(tmp)
    for check in CHECKS:
        check()
    check_config(tmp)
    check_admin(tmp)
    check_perf_missing(tmp)
    check_mismatch(tmp)
print(f"compare_logic_test: {len(CHECKS) + 5} passed, 0 failed")
