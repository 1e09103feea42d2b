#!/usr/bin/env python3
"""Backend comparison benchmarks (issue 7): reactord against a raw-epoll floor, libuv, Asio,
redis-server and nginx, on this machine, side by side. `make compare` (and `make bench`) runs it.

  perf/compare.py [--build-dir build/release] [--no-build] [--quick] [--sections LIST]

Every server is pinned to CPU 0 and every client (reactord-load, redis-benchmark, wrk) to CPU 1.
Sections:
  echo     reactord (one shard) on epoll, io_uring and libevent, and the single-threaded peers
           epoll_echo (the floor), uv_echo and asio_echo; 1, 100 and 1,000 connections; 64 B and
           4 KiB messages; closed loop (reactord-load). Beside them (VARIANT_ROWS): reactord with
           runtime.idle = "spin" (epoll, io_uring), with SQPOLL (io_uring), the floor with one
           extra idle thread (epoll_echo --idle-thread), and at 1 connection x 64 B reactord with
           idle = "adaptive": with the block and spin rows of that cell, the latency table. After
           each cell's timed rounds, one counting run per server gives its exact system calls per
           request (perf stat -e raw_syscalls:sys_enter, whole process; count_syscalls_window for
           reactord, count_syscalls for the peers).
  open     open loop at half the lowest peak of the base rows measured by `echo` at 100
           connections, 64 B: latency from the intended send time
  resp     redis-benchmark -c 50 PING_INLINE, SET, GET, INCR, MSET (10 keys) and GET pipelined
           16 deep (-P 16) against reactord's resp service and redis-server (no persistence)
  http     wrk -t1 -c50 against reactord's http service (GET /) and nginx (one worker process)
  memory   RSS per idle connection of reactord (and the floor) at 5,000, 10,000 and 18,000
           echo connections, and of reactord's http and resp services at 10,000, measured 2 s
           after the last request (reactord releases idle stacks after 1 to 1.5 s)
Each cell runs the servers in turn (A B C ... A B C ...), three rounds (--rounds N; one with
--quick), and
reports medians; ratios are the median of the per-round ratios. Server CPU is utime + stime from
/proc/PID/stat over the measured window. Writes perf/results/compare-<date>.{md,json,svg}
(the report: perf/compare_report.py). A reply that fails reactord-load's byte check makes the
run invalid: its results are named compare-<date>-INVALID.* and marked so, and it exits 1.
A row that spins (idle = spin or adaptive, SQPOLL) runs only while it is measured: it is started
before its run and stopped after, so it never takes CPU 0 from another server.
Full run: about 28 minutes (the rows and counts of issue 13 add about 11); --quick: about 3.
"""

import argparse
import contextlib
import dataclasses
import datetime
import select
import signal
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compare_report import machine_info, markdown, svg_chart

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVER_CPU = "0"
CLIENT_CPU = "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

ECHO_CONNS = [1, 100, 1000]
ECHO_SIZES = [64, 4096]
# The RESP rows: label -> (redis-benchmark -t name, its other arguments, the name of the row its
# --csv output prints, requests per run as a multiple of the section's -n). A pipelined run
# answers ~10 times faster, so it gets 10 times the requests for a window as long.
REDIS_TESTS = {
    "PING_INLINE": ("ping_inline", [], "PING_INLINE", 1),
    "SET": ("set", [], "SET", 1),
    "GET": ("get", [], "GET", 1),
    "INCR": ("incr", [], "INCR", 1),
    "MSET (10 keys)": ("mset", [], "MSET (10 keys)", 1),
    "GET -P 16": ("get", ["-P", 16], "GET", 10),
}




@dataclasses.dataclass
class Row:
    """One server of the echo section: reactord on `backend` with extra [runtime] keys, or the peer
    executable `peer` (perf/peers) with `peer_args`."""
    name: str
    backend: str = ""
    runtime: dict = dataclasses.field(default_factory=dict)
    peer: str = ""
    peer_args: tuple = ()
    cells: tuple = None      # the (connections, size) cells it runs in; None: every cell
    exclusive: bool = False  # it spins: started before each of its runs and stopped after
    open_loop: bool = True   # also measured in the open-loop section


# The rows every earlier comparison had: the open loop's rate comes from these alone (a spinning
# or SQPOLL row must not set it), and the targets of issue 7 judge them.
BASE_ROWS = ("reactord-epoll", "reactord-io_uring", "reactord-libevent", "epoll", "libuv", "asio")
# The one-connection latency table (idle = block, adaptive, spin) is the 1 x 64 B cell.
LATENCY_CELL = (1, 64)
# The cells --quick counts system calls in (a full run counts in every cell): the latency table's
# and the one of the io_uring target (at most 0.2 a request at 100 connections).
QUICK_COUNTS = ((1, 64), (100, 64))


def echo_rows(sqpoll_cpu=0):
    """The echo section's rows, in the order each round measures them. The rows of issue 13 run in
    every cell but 1 x 4 KiB (the latency question is 1 x 64 B, throughput the many-connection
    cells), the adaptive rows in the latency cell only. sqpoll_cpu: the CPU the SQPOLL row pins its
    kernel SQ thread to (io_uring_sqpoll_cpu; -1 leaves it unpinned)."""
    variant_cells = tuple((c, z) for c in ECHO_CONNS for z in ECHO_SIZES if (c, z) != (1, 4096))
    return [
        Row("reactord-epoll", "epoll"),
        Row("reactord-io_uring", "io_uring"),
        Row("reactord-libevent", "libevent"),
        Row("epoll", peer="epoll_echo"),
        Row("libuv", peer="uv_echo"),
        Row("asio", peer="asio_echo"),
        # The floor in a process with a second thread: the kernel's fd lookup (fs/file.c fdget)
        # takes a reference with an atomic once the fd table is shared, not before.
        Row("epoll+thread", peer="epoll_echo", peer_args=("--idle-thread",), cells=variant_cells,
            open_loop=False),
        Row("reactord-epoll-spin", "epoll", {"idle": "spin"}, cells=variant_cells, exclusive=True),
        Row("reactord-io_uring-spin", "io_uring", {"idle": "spin"}, cells=variant_cells,
            exclusive=True),
        Row("reactord-io_uring-sqpoll", "io_uring",
            {"io_uring_sqpoll": True, "io_uring_sqpoll_cpu": sqpoll_cpu}, cells=variant_cells,
            exclusive=True, open_loop=False),
        # With batched waits (off by default; 10 us): what they change, system calls per request
        # first, and that the lone connection of the 1 x 64 B cell is not delayed by them.
        Row("reactord-io_uring-minwait", "io_uring", {"io_uring_min_wait_us": 10},
            cells=variant_cells, open_loop=False),
        Row("reactord-epoll-adaptive", "epoll", {"idle": "adaptive"}, cells=(LATENCY_CELL,),
            exclusive=True, open_loop=False),
        Row("reactord-io_uring-adaptive", "io_uring", {"idle": "adaptive"},
            cells=(LATENCY_CELL,), exclusive=True, open_loop=False),
    ]


def in_cell(row, conns, size):
    return row.cells is None or (conns, size) in row.cells


def open_loop_rate(summary):
    """Half the lowest peak rate among the base rows of a cell's summary, or None."""
    peaks = [v["rps"] for n, v in summary.items() if n in BASE_ROWS and v.get("rps")]
    return 0.5 * min(peaks) if peaks else None


def log(msg):
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def load1():
    return float(open("/proc/loadavg").read().split()[0])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stat_cpu_seconds(path):
    """utime + stime in seconds from a /proc stat file."""
    s = open(path).read()
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_seconds(pid):
    """The whole process's CPU time: /proc/PID/stat sums every thread of the thread group, live
    and exited, the kernel's io_uring SQ thread (iou-sqp-PID, a thread of the process) included."""
    return stat_cpu_seconds(f"/proc/{pid}/stat")


def thread_cpu(pid):
    """{tid: (name, CPU seconds)} of each live thread of pid (/proc/PID/task/TID)."""
    out = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[t.name] = ((t / "comm").read_text().strip(), stat_cpu_seconds(t / "stat"))
        except (OSError, ValueError):
            pass  # the thread exited meanwhile
    return out


def thread_kind(name):
    """A thread's name without its number: shard-0 -> shard, iou-sqp-123 -> iou-sqp."""
    return re.sub(r"-?\d+$", "", name) or name


def thread_shares(before, after):
    """The share of each kind of thread in the CPU time used between two thread_cpu() readings."""
    used = {}
    for tid, (name, sec) in after.items():
        kind = thread_kind(name)
        used[kind] = used.get(kind, 0) + sec - before.get(tid, (name, 0))[1]
    total = sum(used.values())
    return {k: v / total for k, v in sorted(used.items())} if total > 0 else {}


def allowed_cpus(pid):
    """{thread name: Cpus_allowed_list} of each live thread of pid."""
    out = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (t / "comm").read_text().strip()
            for line in (t / "status").read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    out[thread_kind(name)] = line.split(":", 1)[1].strip()
        except OSError:
            pass
    return out


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pinned(cpu, argv):
    return ["taskset", "-c", cpu] + [str(a) for a in argv]


class Server:
    """A server process pinned to CPU 0, ready once its port accepts a connection."""

    def __init__(self, name, argv, port, workdir, group=None, exclusive=False):
        self.name, self.argv, self.port, self.workdir = name, argv, port, workdir
        self.group = group or name
        self.exclusive = exclusive  # spins when idle: runs only while measured (Compare.measuring)
        self.config = None  # reactord: the config file
        self.admin = None  # reactord: its admin socket
        self.proc = None

    def start(self):
        logf = open(Path(self.workdir) / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(pinned(SERVER_CPU, self.argv), stdout=logf, stderr=logf,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see "
                                   f"{self.workdir}/{self.name}.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not accept on port {self.port} within 20 s")

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v) if isinstance(v, int) else f'"{v}"'


def reactord_server(build, backend, workdir, max_connections=4096, runtime=None, name=None,
                    exclusive=False):
    """reactord with one shard on `backend` and `runtime`'s extra [runtime] keys, serving echo,
    http and resp: a Server per service (one process), named `name` (reactord-BACKEND)."""
    name = name or f"reactord-{backend}"
    ports = {k: free_port() for k in ("echo", "http", "resp")}
    d = Path(workdir) / name
    d.mkdir(exist_ok=True)
    services = "".join(
        f'\n[[service]]\nname = "{k}"\nkind = "{k}"\nlisten = "127.0.0.1:{p}"\n'
        f"max_connections = {max_connections}\nidle_timeout_ms = 0\n"
        for k, p in ports.items())
    extra = "".join(f"{k} = {toml_value(v)}\n" for k, v in (runtime or {}).items())
    (d / "reactord.toml").write_text(
        "# written by perf/compare.py\n"
        f'[runtime]\nbackend = "{backend}"\nshards = 1\n{extra}'
        '[log]\nlevel = "warn"\nformat = "text"\n'
        '[admin]\nsocket = "admin.sock"\n' + services)
    argv = [build / "daemon/reactord", "--config", d / "reactord.toml"]
    servers = {}
    for kind, port in ports.items():
        servers[kind] = Server(name, argv, port, str(d), exclusive=exclusive)
        servers[kind].config = d / "reactord.toml"
        servers[kind].admin = d / "admin.sock"
    return servers


def reactord_config_error(build, config):
    """None if this reactord accepts the config file (--check-config), else its complaint."""
    p = subprocess.run([build / "daemon/reactord", "--config", config, "--check-config"],
                       capture_output=True, text=True, timeout=30)
    return None if p.returncode == 0 else (p.stderr.strip() or p.stdout.strip())[-300:]


def reactord_backends(build):
    out = subprocess.run([build / "daemon/reactord", "--list-backends"], capture_output=True,
                         text=True).stdout
    return [line.split()[0] for line in out.splitlines() if len(line.split()) > 1 and
            line.split()[1] == "yes"]


# Every reactord-load run whose replies differed from what it sent: one makes the whole run
# invalid (main() exits 1 and names its results *-INVALID), since its figures measured a broken
# server.
byte_mismatches = []


def note_mismatch(result, cell):
    """Records the cell if reactord-load's JSON `result` counts a reply that failed verification."""
    if result.get("errors_verify"):
        byte_mismatches.append(f"{cell}: {result['errors_verify']} replies differed from what "
                               f"was sent ({result.get('first_error', '')})")


def run_load(build, port, pid, conns, size=64, mode="echo", duration=5.0, warmup=1.0, rate=0,
             extra=()):
    argv = [build / "perf/load/reactord-load", "--json", "--port", port, "--connections", conns,
            "--size", size, "--mode", mode, "--duration", duration, "--warmup", warmup,
            "--server-pid", pid, *extra]
    if rate:
        argv += ["--rate", int(rate)]
    load_before = load1()
    p = subprocess.run(pinned(CLIENT_CPU, argv), capture_output=True, text=True,
                       timeout=duration + warmup + 120)
    try:
        r = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"reactord-load failed ({p.returncode}): {p.stderr.strip()[:300]}")
    r["load1"] = (load_before + load1()) / 2
    if r["errors"]:
        log(f"  reactord-load reported {r['errors']} errors: {r['first_error']}")
    note_mismatch(r, f"{mode}, {conns} connections, {size} B, port {port}")
    return {"rps": r["throughput_rps"], "cpu_us": r.get("server_cpu_per_request_us", 0),
            "util": r.get("server_utilization", 0), "client_util": r["client_utilization"],
            "p50": r["latency_us"]["p50"], "p99": r["latency_us"]["p99"],
            "p999": r["latency_us"]["p999"], "max": r["latency_us"]["max"],
            "errors": r["errors"], "verified": r["verified_bytes"], "load1": r["load1"]}


# ---- exact system calls per request (issue 13) ----
SYSCALL_EVENT = "raw_syscalls:sys_enter"
TRACEFS = Path("/sys/kernel/tracing")


def parse_perf_count(text, event=SYSCALL_EVENT):
    """The count of `event` in `perf stat -x,` output (summed over its lines, as --per-thread
    prints one a thread). A thread that never ran while counted reads <not counted>: 0."""
    total, seen = 0, False
    for line in text.splitlines():
        f = line.split(",")
        if line.startswith("#") or len(f) < 3:
            continue
        # -x, fields: value, unit, event, ... (with --per-thread the thread's name first)
        i = next((k for k, x in enumerate(f) if x.strip() == event), None)
        if i is None or i < 2:
            continue
        value = f[i - 2].strip()
        if value == "<not supported>":
            raise RuntimeError(f"perf: {event} is not supported here")
        seen = True
        total += int(value) if value.isdigit() else 0
    if not seen:
        raise RuntimeError(f"perf printed no count of {event}: {text.strip()[-300:]}")
    return total


def per_request(counts, requests):
    """System calls per request from two counting runs: (calls_2 - calls_1) / (requests_2 -
    requests_1). The first run does one request per connection, so connecting, accepting and
    closing cancel out and the figure is the steady state's."""
    (c1, c2), (n1, n2) = counts, requests
    return (c2 - c1) / (n2 - n1) if n2 > n1 else None


class SyscallCounter:
    """`perf stat -e raw_syscalls:sys_enter -p PID` attached with its counters disabled, enabled and
    disabled on command over its --control pipe (each command acknowledged), so only the span
    between enable() and disable() is counted. Counts every thread of the process, and any thread
    they create meanwhile."""

    def __init__(self, pid, out):
        self.out = Path(out)
        ctl_r, self.ctl = os.pipe()
        self.ack, ack_w = os.pipe()
        self.proc = subprocess.Popen(
            ["perf", "stat", "-e", SYSCALL_EVENT, "-p", str(pid), "-x,", "-o", str(self.out),
             "-D", "-1", "--control", f"fd:{ctl_r},{ack_w}"], pass_fds=(ctl_r, ack_w),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(ctl_r)
        os.close(ack_w)

    def command(self, word):
        os.write(self.ctl, f"{word}\n".encode())
        deadline = time.monotonic() + 20
        got = b""
        while b"ack" not in got:
            ready, _, _ = select.select([self.ack], [], [], max(0, deadline - time.monotonic()))
            chunk = os.read(self.ack, 64) if ready else b""
            if not chunk:
                err = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
                raise RuntimeError(f"perf stat did not acknowledge '{word}': {err.strip()[-300:]}")
            got += chunk

    def finish(self):
        """Stops perf (SIGINT, as Ctrl-C) and returns the count."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.ctl)
        os.close(self.ack)
        return parse_perf_count(self.out.read_text() if self.out.exists() else "")


def count_syscalls(build, port, pid, conns, size, extra, workdir):
    """Exact system calls per request of the whole server process pid: two reactord-load runs of a
    fixed request count, `conns` (one per connection) and `conns + extra`, each counted alone from
    just before reactord-load starts to just after it exits; see per_request()."""
    counts, requests = [], []
    for n in (conns, conns + extra):
        counter = SyscallCounter(pid, Path(workdir) / f"perf-{pid}-{n}.csv")
        try:
            counter.command("enable")
            argv = [build / "perf/load/reactord-load", "--json", "--port", port, "--connections",
                    conns, "--size", size, "--requests", n, "--duration", 300]
            p = subprocess.run(pinned(CLIENT_CPU, argv), capture_output=True, text=True,
                               timeout=400)
            counter.command("disable")
        finally:
            count = counter.finish()
        try:
            r = json.loads(p.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            raise RuntimeError(f"reactord-load failed ({p.returncode}): {p.stderr.strip()[:300]}")
        note_mismatch(r, f"syscall count, {conns} connections, {size} B, port {port}")
        if r["errors"] or r["requests"] != n:
            raise RuntimeError(f"counting run: {r['requests']} of {n} requests, {r['errors']} "
                               f"errors ({r['first_error']})")
        counts.append(count)
        requests.append(n)
    return {"per_request": per_request(counts, requests), "syscalls": counts,
            "requests": requests, "method": "difference"}


class Admin:
    """A connection to a reactord admin socket, kept open so that a query costs no process start
    (reactorctl would) and answers within a millisecond or so."""

    def __init__(self, path, wait=10.0):
        """Connects, waiting up to `wait` s for the socket: a daemon may accept on its services
        a moment before its admin thread listens."""
        deadline = time.monotonic() + wait
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(20)
            try:
                self.sock.connect(str(path))
                return
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def ask(self, command):
        self.sock.sendall(command.encode() + b"\n")
        data = b""
        while not (data.endswith(b"\n.\n") or data == b".\n"):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"admin socket closed answering '{command}'")
            data += chunk
        return data[:-2].decode()

    def bytes_out(self, service="echo"):
        """The bytes the service has sent so far."""
        answer = self.ask("services")
        try:
            return next(x["bytes_out"] for x in json.loads(answer) if x["name"] == service)
        except (json.JSONDecodeError, StopIteration, KeyError, TypeError):
            raise RuntimeError(f"admin 'services': {answer[-200:]}")

    def close(self):
        self.sock.close()


def count_syscalls_window(build, port, pid, admin_socket, conns, size, seconds, workdir):
    """Exact system calls per request of a reactord process in the steady state: under a running
    closed-loop load, the echo service's bytes sent are read, the count is switched on for
    `seconds`, off, and the bytes read again (over a connection to its admin socket opened before);
    requests = bytes / size (each echoed message is `size` bytes). For a server that makes system calls by the clock as well as by the request
    (a spinning shard polls while it waits), where the difference of two fixed-count runs
    (count_syscalls) would mix in the time connecting took. The reads sit outside the counted
    span, so the admin's own system calls are not counted; the span and the two reads are a few
    milliseconds apart, the requests' count off by that much."""
    admin = Admin(admin_socket)
    counter = SyscallCounter(pid, Path(workdir) / f"perf-{pid}-window.csv")
    load = None
    try:
        # reactord-load's clock starts once every connection is up: 0.5 s, then the window and
        # half a second of margin.
        argv = [build / "perf/load/reactord-load", "--json", "--port", port, "--connections",
                conns, "--size", size, "--warmup", 0.5, "--duration", seconds + 0.5]
        start = admin.bytes_out()
        load = subprocess.Popen(pinned(CLIENT_CPU, argv), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while admin.bytes_out() == start:  # until the load runs: every connection is up
            if load.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("counting run: the load never started echoing")
            time.sleep(0.02)
        time.sleep(0.25)
        b0 = admin.bytes_out()
        counter.command("enable")
        time.sleep(seconds)
        counter.command("disable")
        b1 = admin.bytes_out()
        out, err = load.communicate(timeout=seconds + 120)
    finally:
        admin.close()
        if load and load.poll() is None:
            load.kill()
            load.wait()
        count = counter.finish()
    try:
        r = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"reactord-load failed ({load.returncode}): {err.strip()[:300]}")
    note_mismatch(r, f"syscall count, {conns} connections, {size} B, port {port}")
    if r["errors"]:
        raise RuntimeError(f"counting run: {r['errors']} errors ({r['first_error']})")
    requests = (b1 - b0) / size
    return {"per_request": count / requests if requests > 0 else None, "syscalls": [count],
            "requests": [requests], "method": "window"}


def check_perf():
    """None when perf can count raw_syscalls:sys_enter here (mounting tracefs if it must), else
    why not."""
    if not shutil.which("perf"):
        return ("perf is not installed (Debian's linux-perf: scripts/install-deps.sh --bench); "
                "it counts system calls per request, or pass --no-syscalls")
    if not (TRACEFS / "events/raw_syscalls").exists():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], capture_output=True)
    if not (TRACEFS / "events/raw_syscalls").exists():
        return (f"no tracefs at {TRACEFS} and `mount -t tracefs nodev {TRACEFS}` failed (root "
                "needed); or pass --no-syscalls")
    p = subprocess.run(["perf", "stat", "-e", SYSCALL_EVENT, "-x,", "--", "true"],
                       capture_output=True, text=True)
    try:
        parse_perf_count(p.stderr)
    except RuntimeError as e:
        return f"perf stat -e {SYSCALL_EVENT} fails here: {e}; or pass --no-syscalls"
    return None


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(rounds, floor):
    """rounds: list of {server: result}. Medians per server, ratios against `floor` per round."""
    names = []
    for r in rounds:
        names += [n for n in r if n not in names]
    out = {}
    for n in names:
        rs = [r[n] for r in rounds if n in r]
        row = {k: median([x[k] for x in rs]) for k in rs[0] if isinstance(rs[0][k], (int, float))}
        row["runs"] = len(rs)
        if floor:
            pairs = [(r[n], r[floor]) for r in rounds if n in r and floor in r]
            row["x_rps"] = median([a["rps"] / b["rps"] for a, b in pairs if b["rps"]])
            row["x_cpu"] = median([a["cpu_us"] / b["cpu_us"] for a, b in pairs if b["cpu_us"]])
        out[n] = row
    return out


class Compare:
    def __init__(self, args):
        self.args = args
        self.build = Path(args.build_dir).resolve()
        self.quick = args.quick
        self.rounds = 1 if args.quick else getattr(args, "rounds", 3)
        # RESP runs are short (200,000 requests, ~2.5 s) and client-bound: five rounds.
        self.resp_rounds = 1 if args.quick else 5
        self.duration = 1.0 if args.quick else 5.0
        self.warmup = 0.25 if args.quick else 1.0
        self.count_seconds = 0.5 if args.quick else 1.0  # a counting window (or run) at the cell's rate
        self.work = tempfile.mkdtemp(prefix="reactord-compare-")
        self.results = {"sections": {}, "loadavg": {}}
        self.servers = []

    def stop_all(self):
        for s in self.servers:
            s.stop()
        self.servers = []

    def start(self, server):
        server.start()
        self.servers.append(server)
        return server

    @contextlib.contextmanager
    def measuring(self, s):
        """Runs the body with s up: an exclusive (spinning) server is started for it and stopped
        after, the others run for the whole section."""
        if s.exclusive:
            s.start()
            self.note_threads(s)
        try:
            yield s
        finally:
            if s.exclusive:
                s.stop()

    def note_threads(self, s):
        """Records once per server the CPUs each of its threads may run on (the SQ thread's tells
        whether SQPOLL shared the server's CPU)."""
        info = self.results.setdefault("servers", {}).setdefault(s.name, {})
        if "allowed_cpus" not in info:
            info["allowed_cpus"] = allowed_cpus(s.pid)

    def load(self, s, conns, size, **kw):
        """run_load against s, plus the share of each of its threads in the CPU time it used."""
        t0 = thread_cpu(s.pid)
        r = run_load(self.build, s.port, s.pid, conns, size, duration=self.duration,
                     warmup=self.warmup, **kw)
        r["threads"] = thread_shares(t0, thread_cpu(s.pid))
        if "iou-sqp" in r["threads"]:
            r["sq_share"] = r["threads"]["iou-sqp"]
        return r

    # ---- echo: closed loop, then the open-loop latency run ----
    def echo_servers(self, max_connections=4096):
        """(Row, Server) for every row of echo_rows() this machine and build can run."""
        out = []
        for row in echo_rows(self.args.sqpoll_cpu):
            if row.backend:
                if row.backend not in self.backends:
                    log(f"{row.name}: reactord backend {row.backend} unavailable here: skipped")
                    continue
                s = reactord_server(self.build, row.backend, self.work, max_connections,
                                    row.runtime, row.name, row.exclusive)["echo"]
                why = reactord_config_error(self.build, s.config) if row.runtime else None
                if why:
                    log(f"{row.name}: this reactord refuses its config ({why}): skipped")
                    continue
            else:
                exe = self.build / "perf/peers" / row.peer
                if not exe.exists():
                    log(f"{row.name}: {exe} not built (library missing?): skipped")
                    continue
                port = free_port()
                s = Server(row.name, [exe, "--port", port, *row.peer_args], port, self.work)
            self.results.setdefault("servers", {})[row.name] = {
                "runtime": row.runtime, "argv": [str(a) for a in s.argv[1:]],
                "exclusive": row.exclusive}
            out.append((row, s))
        return out

    def section_echo(self):
        rows = self.echo_servers()
        for row, s in rows:
            if not s.exclusive:
                self.start(s)
                self.note_threads(s)
        cells = {}
        for conns in ECHO_CONNS:
            for size in ECHO_SIZES:
                servers = [s for row, s in rows if in_cell(row, conns, size)]
                rounds = []
                for r in range(self.rounds):
                    res = {}
                    for s in servers:
                        try:
                            with self.measuring(s):
                                res[s.name] = self.load(s, conns, size)
                        except Exception as e:  # noqa: BLE001 - record and go on
                            log(f"  {s.name} {conns}x{size}: {e}")
                    rounds.append(res)
                cell = cells[f"{conns}x{size}"] = {"conns": conns, "size": size, "rounds": rounds,
                                                   "summary": summarize(rounds, "epoll")}
                summ = cell["summary"]
                if not self.args.no_syscalls and (not self.quick or (conns, size) in QUICK_COUNTS):
                    cell["syscalls"] = self.count_cell(servers, summ, conns, size)
                log(f"echo {conns} conns {size} B: " + ", ".join(
                    f"{n} {v['rps']:.0f}/s {v['cpu_us']:.2f}us"
                    + (f" {v['syscalls']:.3f} sys" if v.get("syscalls") is not None else "")
                    for n, v in summ.items()))
        self.results["sections"]["echo"] = cells

        if "open" in self.sections:
            rate = open_loop_rate(cells.get("100x64", {}).get("summary", {}))
            if rate:
                servers = [s for row, s in rows if row.open_loop]
                rounds = []
                for r in range(self.rounds):
                    res = {}
                    for s in servers:
                        try:
                            with self.measuring(s):
                                res[s.name] = self.load(s, 100, 64, rate=rate)
                        except Exception as e:  # noqa: BLE001
                            log(f"  open loop {s.name}: {e}")
                    rounds.append(res)
                self.results["sections"]["open"] = {"rate": rate, "conns": 100, "size": 64,
                                                    "rounds": rounds,
                                                    "summary": summarize(rounds, "epoll")}
                log(f"open loop at {rate:.0f}/s done")
        self.stop_all()

    def count_cell(self, servers, summ, conns, size):
        """One counting run per server after a cell's timed rounds (perf slows what it counts, so
        never during them): exact system calls per request, into the summary as `syscalls`."""
        out = {}
        for s in servers:
            rps = summ.get(s.name, {}).get("rps") or 0
            extra = max(2000, int(rps * self.count_seconds))
            try:
                with self.measuring(s):
                    if s.admin:  # reactord: its own count of bytes echoed, over a steady window
                        out[s.name] = count_syscalls_window(
                            self.build, s.port, s.pid, s.admin, conns, size, self.count_seconds,
                            self.work)
                    else:  # a peer: no counters, no timers, no spinning
                        out[s.name] = count_syscalls(self.build, s.port, s.pid, conns, size,
                                                     extra, self.work)
            except Exception as e:  # noqa: BLE001
                log(f"  counting {s.name} {conns}x{size}: {e}")
                continue
            if s.name in summ:
                summ[s.name]["syscalls"] = out[s.name]["per_request"]
        return out

    # ---- resp: redis-benchmark ----
    def section_resp(self):
        if not shutil.which("redis-benchmark") or not shutil.which("redis-server"):
            log("redis-benchmark or redis-server missing (install-deps.sh --bench): resp skipped")
            return
        servers = []
        for b in ["epoll", "io_uring"]:
            if b in self.backends:
                servers.append(self.start(reactord_server(self.build, b, self.work)["resp"]))
        port = free_port()
        rdir = Path(self.work) / "redis"
        rdir.mkdir(exist_ok=True)
        servers.append(self.start(Server(
            "redis", ["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
                      "--dir", rdir, "--logfile", rdir / "redis.log"], port, self.work)))
        base_n = 20000 if self.quick else 200000
        tests = {}
        for test, spec in REDIS_TESTS.items():
            n = base_n * spec[3]
            rounds = []
            for r in range(self.resp_rounds):
                res = {}
                # Each round starts with the next server, so none always runs first or last while
                # the host's speed drifts.
                for s in servers[r % len(servers):] + servers[:r % len(servers)]:
                    try:
                        res[s.name] = self.redis_benchmark(s, spec, n)
                    except Exception as e:  # noqa: BLE001
                        log(f"  {test} {s.name}: {e}")
                rounds.append(res)
            tests[test] = {"rounds": rounds, "summary": summarize(rounds, "redis"), "n": n,
                           "args": ["-t", spec[0], *map(str, spec[1])]}
            log(f"resp {test}: " + ", ".join(f"{k} {v['rps']:.0f}/s {v['cpu_us']:.2f}us"
                                             for k, v in tests[test]["summary"].items()))
        self.results["sections"]["resp"] = tests
        self.stop_all()

    def redis_benchmark(self, s, spec, n):
        """One redis-benchmark run of REDIS_TESTS' spec, n requests: rate, server CPU per request
        (per command: an MSET of 10 keys is one), latencies."""
        name, extra, row, _ = spec
        load_before = load1()
        k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c0, t0 = cpu_seconds(s.pid), time.monotonic()
        p = subprocess.run(pinned(CLIENT_CPU, ["redis-benchmark", "-h", "127.0.0.1", "-p", s.port,
                                               "-c", 50, "-n", n, "-t", name, *extra, "--csv"]),
                           capture_output=True, text=True, timeout=600)
        wall, cpu = time.monotonic() - t0, cpu_seconds(s.pid) - c0
        k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = (k1.ru_utime - k0.ru_utime) + (k1.ru_stime - k0.ru_stime)
        rows = [line for line in p.stdout.splitlines() if line.startswith(f'"{row}"')]
        if not rows:
            raise RuntimeError(f"redis-benchmark: {p.stdout[-300:]} {p.stderr[-300:]}")
        f = [x.strip('"') for x in rows[0].split(",")]
        rps = float(f[1])
        window = n / rps
        return {"rps": rps, "cpu_us": cpu / n * 1e6, "util": cpu / window, "p50": float(f[4]) * 1e3,
                "p99": float(f[6]) * 1e3, "max": float(f[7]) * 1e3, "wall": wall,
                "client_cpu_us": client / n * 1e6, "client_util": client / wall,
                "load1": (load_before + load1()) / 2}

    # ---- http: wrk ----
    def section_http(self):
        if not shutil.which("wrk") or not shutil.which("nginx"):
            log("wrk or nginx missing (install-deps.sh --bench): http skipped")
            return
        servers = []
        for b in ["epoll", "io_uring"]:
            if b in self.backends:
                servers.append(self.start(reactord_server(self.build, b, self.work)["http"]))
        body = self.http_body(servers[0].port) if servers else "ok\n"
        servers.append(self.start(self.nginx_server(body)))
        seconds = 1 if self.quick else 5
        for s in servers:  # warm-up, not measured
            self.wrk(s, 1)
        rounds = []
        for r in range(self.rounds):
            res = {}
            for s in servers:
                try:
                    res[s.name] = self.wrk(s, seconds)
                except Exception as e:  # noqa: BLE001
                    log(f"  wrk {s.name}: {e}")
            rounds.append(res)
        self.results["sections"]["http"] = {"rounds": rounds, "summary": summarize(rounds, "nginx"),
                                            "body_bytes": len(body)}
        log("http: " + ", ".join(f"{k} {v['rps']:.0f}/s {v['cpu_us']:.2f}us" for k, v in
                                 self.results["sections"]["http"]["summary"].items()))
        self.stop_all()

    def http_body(self, port):
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := c.recv(4096):
                data += chunk
        return data.split(b"\r\n\r\n", 1)[1].decode()

    def nginx_server(self, body):
        d = Path(self.work) / "nginx"
        d.mkdir(exist_ok=True)
        port = free_port()
        temps = "".join(f"  {k}_temp_path {d}/{k};\n"
                        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        literal = body.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        (d / "nginx.conf").write_text(
            "# written by perf/compare.py: one process serving (no master), like one shard\n"
            f"worker_processes 1;\nmaster_process off;\ndaemon off;\npid {d}/nginx.pid;\n"
            f"error_log {d}/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n  access_log off;\n  keepalive_requests 1000000;\n" + temps +
            f"  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n"
            f'      default_type text/plain;\n      return 200 "{literal}";\n    }}\n  }}\n}}\n')
        return Server("nginx", ["nginx", "-p", d, "-e", d / "error.log", "-c", d / "nginx.conf"],
                      port, self.work)

    def wrk(self, s, seconds):
        load_before = load1()
        c0, t0 = cpu_seconds(s.pid), time.monotonic()
        p = subprocess.run(pinned(CLIENT_CPU, ["wrk", "-t1", "-c50", f"-d{seconds}s", "--latency",
                                               f"http://127.0.0.1:{s.port}/"]),
                           capture_output=True, text=True, timeout=seconds + 60)
        wall, cpu = time.monotonic() - t0, cpu_seconds(s.pid) - c0
        m = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
        total = re.search(r"(\d+) requests in", p.stdout)
        if not m or not total:
            raise RuntimeError(f"wrk: {p.stdout[-300:]} {p.stderr[-300:]}")
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)
        errs = re.search(r"Socket errors: (.*)", p.stdout)

        def lat(q):
            mm = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", p.stdout, re.M)
            if not mm:
                return None
            return float(mm.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[mm.group(2)]

        n = int(total.group(1))
        return {"rps": float(m.group(1)), "cpu_us": cpu / n * 1e6 if n else 0, "util": cpu / wall,
                "p50": lat(50), "p99": lat(99), "errors": int(bad.group(1)) if bad else 0,
                "socket_errors": errs.group(1) if errs else "", "load1": (load_before + load1()) / 2}

    # ---- memory at scale ----
    def section_memory(self):
        counts = [1000, 5000] if self.quick else [5000, 10000, 18000]
        rows = []
        candidates = []
        for b in ["epoll", "io_uring"]:
            if b in self.backends:
                candidates.append(("reactord-" + b, lambda b=b: reactord_server(
                    self.build, b, self.work, max_connections=20000)["echo"]))
        if (self.build / "perf/peers/epoll_echo").exists():
            def floor():
                port = free_port()
                return Server("epoll", [self.build / "perf/peers/epoll_echo", "--port", port],
                              port, self.work)
            candidates.append(("epoll", floor))
        # The http and resp services of reactord at the middle count: reported, not a target.
        for b in ["epoll", "io_uring"]:
            if b in self.backends:
                for mode in ["http", "resp"]:
                    candidates.append((f"reactord-{b} {mode}", lambda b=b, mode=mode:
                                       reactord_server(self.build, b, self.work,
                                                       max_connections=20000)[mode],
                                       mode, [counts[len(counts) // 2]]))
        for name, make, *rest in candidates:
            mode, ns = rest if rest else ("echo", counts)
            for n in ns:
                s = self.start(make())
                try:
                    rows.append(self.idle_rss(s, name, n, mode))
                    r = rows[-1]
                    log(f"memory {name} {n}: {r['per_conn_kib']:.1f} KiB/connection")
                except Exception as e:  # noqa: BLE001
                    log(f"  memory {name} {n}: {e}")
                    rows.append({"server": name, "mode": mode, "connections": n,
                                 "error": str(e)[:300], "load": loadavg()})
                self.stop_all()
        self.results["sections"]["memory"] = rows

    def idle_rss(self, s, name, n, mode="echo"):
        load = self.build / "perf/load/reactord-load"
        # One connection, one message: the server has touched whatever it touches per process.
        subprocess.run(pinned(CLIENT_CPU, [load, "--port", s.port, "--mode", mode,
                                           "--requests", 1]),
                       capture_output=True, timeout=60, check=True)
        time.sleep(0.3)
        base = rss_kib(s.pid)
        client = subprocess.Popen(
            pinned(CLIENT_CPU, [load, "--port", s.port, "--mode", mode, "--connections", n,
                                "--requests", n,
                                "--size", 64, "--source-addrs", 8, "--duration", 120, "--hold",
                                600, "--json"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        try:
            line = client.stderr.readline()  # "holding N connections" once every one echoed
            if "holding" not in line:
                raise RuntimeError(f"reactord-load: {line.strip()} {client.stdout.read()[:300]}")
            result = json.loads(client.stdout.readline())
            # reactord gives an idle connection's stack pages back 1 to 1.5 s after its last
            # request (runtime.release_idle_stacks_ms, default 1000), 1.5 to 2 s where its
            # receive holds a buffer (io_uring; http and resp): measured after that.
            time.sleep(2.5)
            rss = rss_kib(s.pid)
            # A server that exited has no VmRSS (a zombie until reaped): no figure, an error.
            if s.proc.poll() is not None or rss == 0:
                raise RuntimeError(f"{name} exited (status {s.proc.poll()}) holding {n} "
                                   f"connections; see {s.workdir}/{s.name}.log")
        finally:
            client.terminate()
            client.wait()
        held = result["connected"]
        return {"server": name, "mode": mode, "connections": n, "connected": held,
                "errors": result["errors"], "base_kib": base, "rss_kib": rss,
                "per_conn_kib": (rss - base) / held if held else 0, "load": loadavg()}

    def run(self):
        self.sections = self.args.sections.split(",")
        self.backends = reactord_backends(self.build)
        log(f"build {self.build}; reactord backends available: {', '.join(self.backends)}; "
            f"work dir {self.work}; load {loadavg()}")
        started = time.monotonic()
        self.results["started"] = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            for name in ["echo", "resp", "http", "memory"]:
                if name in self.sections or (name == "echo" and "open" in self.sections):
                    before = loadavg()
                    t0 = time.monotonic()
                    getattr(self, f"section_{name}")()
                    self.results["loadavg"][name] = {"before": before, "after": loadavg(),
                                                     "seconds": round(time.monotonic() - t0)}
        finally:
            self.stop_all()
        self.results["seconds"] = round(time.monotonic() - started)
        shutil.rmtree(self.work, ignore_errors=True)
        return self.results


def build(args):
    build_dir = Path(args.build_dir)
    jobs = os.environ.get("JOBS", "2")
    if not (build_dir / "CMakeCache.txt").exists():
        if build_dir.resolve() == (ROOT / "build/release").resolve():
            subprocess.run(["cmake", "--preset", "release"], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
        else:
            sys.exit(f"compare: {build_dir} is not configured; configure it (release) first")
    targets_ = ["reactord", "reactord-load", "epoll_echo", "uv_echo", "asio_echo"]
    known = subprocess.run(["cmake", "--build", build_dir, "--target", "help"],
                           capture_output=True, text=True).stdout
    wanted = [t for t in targets_ if re.search(rf"^{re.escape(t)}:", known, re.M)]
    subprocess.run(["nice", "cmake", "--build", build_dir, "-j", jobs, "--target", *wanted],
                   check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build-dir", default=str(ROOT / "build/release"),
                   help="a Release build of this tree (default build/release, the release preset)")
    p.add_argument("--no-build", action="store_true", help="use the build as it is")
    p.add_argument("--quick", action="store_true",
                   help="one round, 1 s windows, fewer connections for memory: under 3 minutes")
    p.add_argument("--sections", default="echo,open,resp,http,memory",
                   help="comma-separated subset of echo,open,resp,http,memory")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds per echo and http cell without --quick (default 3): more of them "
                        "when the host's speed drifts, each window still 5 s")
    p.add_argument("--out-dir", default=str(HERE / "results"))
    p.add_argument("--no-syscalls", action="store_true",
                   help="skip the counting runs (system calls per request; they need perf)")
    p.add_argument("--sqpoll-cpu", type=int, default=int(SERVER_CPU),
                   help="io_uring_sqpoll_cpu of the SQPOLL row: the server's CPU (default "
                        f"{SERVER_CPU}), or -1 to leave the SQ thread unpinned")
    args = p.parse_args()
    if args.rounds < 1:
        sys.exit("compare: --rounds must be at least 1")

    if not shutil.which("taskset"):
        sys.exit("compare: taskset (util-linux) is needed")
    if os.cpu_count() < 2:
        sys.exit("compare: needs two CPUs (server on CPU 0, client on CPU 1)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by servers and clients
    if not args.no_syscalls and any(x in args.sections.split(",") for x in ("echo", "open")):
        why = check_perf()
        if why:
            sys.exit(f"compare: cannot count system calls: {why}")
    if not args.no_build:
        build(args)
    info = machine_info(Path(args.build_dir).resolve())
    res = Compare(args).run()
    res["machine"] = info
    res["quick"] = args.quick
    res["valid"] = not byte_mismatches
    res["byte_mismatches"] = byte_mismatches
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "compare-" + datetime.datetime.utcnow().strftime("%Y%m%d-%H%M%S") + (
        "-quick" if args.quick else "") + ("" if res["valid"] else "-INVALID")
    (out / f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / f"{stem}.svg").write_text(svg_chart(res))
    md = markdown(res, info, args, f"{stem}.svg")
    (out / f"{stem}.md").write_text(md)
    print(md)
    log(f"wrote {out}/{stem}.md, .json, .svg in {res['seconds']} s")
    if byte_mismatches:
        sys.exit("compare: INVALID run, replies differed from what was sent:\n  "
                 + "\n  ".join(byte_mismatches))


if __name__ == "__main__":
    main()
