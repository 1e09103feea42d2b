"""The report of perf/compare.py: the machine it ran on, the targets of issue 7 judged, the tables
(markdown) and the chart (SVG, written by hand), all from the results dictionary that compare.py
also saves as JSON, so a committed perf/results/compare-*.json can be rendered again."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The folders whose code the measured binaries are built from.
SOURCE_DIRS = ("reactor", "backends", "config", "services", "admin", "daemon", "perf")


def uncommitted_sources(root):
    """The `git status --porcelain` lines for SOURCE_DIRS under root, less perf/results/ (the
    comparison's own output, which builds nothing)."""
    p = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", *SOURCE_DIRS,
                        ":(exclude)perf/results"], capture_output=True, text=True)
    return p.stdout.strip()


def machine_info(build):
    def cmd(*a):
        try:
            return subprocess.run(a, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    cache = Path(build) / "CMakeCache.txt"
    source = build_type = "?"
    if cache.exists():
        for line in cache.read_text().splitlines():
            if line.startswith("CMAKE_HOME_DIRECTORY:"):
                source = line.split("=", 1)[1]
            if line.startswith("CMAKE_BUILD_TYPE:"):
                build_type = line.split("=", 1)[1]
    dirty = uncommitted_sources(ROOT)
    return {"cpus": os.cpu_count(), "cpu": cpu, "kernel": os.uname().release,
            "commit": cmd("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"),
            "source": source, "build": str(build), "build_type": build_type,
            "uncommitted_in_tree": bool(dirty), "compiler": cmd("c++", "--version").split("\n")[0],
            "redis": cmd("redis-server", "--version"),
            "nginx": subprocess.run(["nginx", "-v"], capture_output=True,
                                    text=True).stderr.strip() if shutil.which("nginx") else "",
            "wrk": cmd("wrk", "-v").split("\n")[0] if shutil.which("wrk") else ""}


def fmt(v, digits=0):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def fx(v):
    return "–" if v is None else f"{v:.2f}×"


def util_note(u):
    return "" if u is None or u >= 0.9 else " ¹"


def us(v, digits=0):
    return f"{fmt(v, digits)} µs"


def util_cell(r):
    return f"{fmt(r['util'], 2)}{util_note(r['util'])}"


def table(header, rows):
    """A markdown table: the header line, the separator, one line per row of cells."""
    def line(cells):
        return "| " + " | ".join(str(c) for c in cells) + " |"
    return [line(header), "|" + "---|" * len(header), *(line(r) for r in rows)]


# The RESP and HTTP tables: the same measurements of each server, then the ratios to the peer.
SERVICE_COLUMNS = ["req/s", "server CPU/req", "server util", "p50", "p99"]


def service_cells(r):
    return [fmt(r["rps"]), us(r["cpu_us"], 2), util_cell(r), us(r["p50"]), us(r["p99"])]


def client_cells(r):
    """redis-benchmark's CPU per request and utilization, absent from results older than them."""
    if r.get("client_cpu_us") is None:
        return "", ""
    return us(r["client_cpu_us"], 2), fmt(r["client_util"], 2)


def ratio_cells(r):
    return [fx(r.get("x_rps")), fx(r.get("x_cpu")), fmt(r["load1"], 1)]


def paired_ratio(rounds, a, b, key):
    """The median over rounds of round[a][key] / round[b][key], from the rounds that measured both
    (servers alternate within a round, so each pair shares the machine's state)."""
    xs = sorted(r[a][key] / r[b][key] for r in rounds
                if a in r and b in r and r[a].get(key) is not None and r[b].get(key))
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


# The one-connection latency table: (row, backend, what the shard does when idle), its block row
# first per backend (the reference of the "× block" column).
LATENCY_ROWS = [
    ("reactord-epoll", "epoll", "block"),
    ("reactord-epoll-adaptive", "epoll", "adaptive"),
    ("reactord-epoll-spin", "epoll", "spin"),
    ("reactord-io_uring", "io_uring", "block"),
    ("reactord-io_uring-adaptive", "io_uring", "adaptive"),
    ("reactord-io_uring-spin", "io_uring", "spin"),
    ("reactord-io_uring-sqpoll", "io_uring", "block, SQPOLL"),
]


def latency_rows(echo):
    """The latency table's rows from the echo section's 1 x 64 B cell: (name, backend, idle,
    summary row, its p50 over the block row's as the median of per-round ratios)."""
    cell = echo.get("1x64")
    if not cell:
        return []
    out = []
    for name, backend, idle in LATENCY_ROWS:
        r = cell["summary"].get(name)
        if r:
            out.append((name, backend, idle, r,
                        paired_ratio(cell["rounds"], name, f"reactord-{backend}", "p50")))
    return out


def sys_cell(r):
    v = r.get("syscalls")
    return "–" if v is None else f"{v:.3f}"


def targets(res):
    """Each target of issue 7 with what this run measured."""
    out = []
    echo = res["sections"].get("echo", {})

    def cell(c, s, name):
        return echo.get(f"{c}x{s}", {}).get("summary", {}).get(name)

    def judge(ok_rate, ok_cpu):
        if ok_rate and ok_cpu:
            return "met"
        if ok_rate or ok_cpu:
            return "met on " + ("rate" if ok_rate else "CPU/request") + " only"
        return "missed"

    # The connection counts and message sizes this run measured.
    echo_conns = sorted({c["conns"] for c in echo.values()})
    echo_sizes = sorted({c["size"] for c in echo.values()})
    for name, want, conns in [("reactord-epoll", 0.95, [100]), ("reactord-io_uring", 1.1,
                                                                 [100, 1000])]:
        for c in conns:
            for s in echo_sizes:
                r = cell(c, s, name)
                if not r:
                    continue
                eff = 1 / r["x_cpu"] if r.get("x_cpu") else None
                out.append((f"{name} ≥ {want}× raw epoll, {c} conns, {s} B",
                            f"rate {fx(r['x_rps'])}, CPU efficiency {fx(eff)}",
                            judge((r["x_rps"] or 0) >= want, eff is not None and eff >= want)))
    for s in echo_sizes:
        r = cell(100, s, "reactord-io_uring")
        if r and r.get("syscalls") is not None:
            out.append((f"reactord-io_uring ≤ 0.2 system calls per request, 100 conns, {s} B",
                        f"{r['syscalls']:.3f} (raw epoll: {sys_cell(cell(100, s, 'epoll') or {})})",
                        "met" if r["syscalls"] <= 0.2 else "missed"))
    for name, backend, idle, r, x_block in latency_rows(echo):
        if idle == "spin" and x_block is not None:
            out.append((f"idle = spin: 1-connection p50 ≥ 20 % below block, {backend}",
                        f"p50 {us(r['p50'], 1)}, {fx(x_block)} block's, at {us(r['cpu_us'], 2)} "
                        "server CPU/req", "met" if x_block <= 0.8 else "missed"))
    for peer in ["libuv", "asio"]:
        ahead_rate = ahead_cpu = total = 0
        for c in echo_conns:
            for s in echo_sizes:
                r, p = cell(c, s, "reactord-epoll"), cell(c, s, peer)
                best = [cell(c, s, n) for n in ("reactord-epoll", "reactord-io_uring",
                                                "reactord-libevent")]
                best = [b for b in best if b]
                if not best or not p:
                    continue
                total += 1
                ahead_rate += max(b["rps"] for b in best) > p["rps"]
                ahead_cpu += min(b["cpu_us"] for b in best) < p["cpu_us"]
        if total:
            out.append((f"reactord (best backend) ahead of {peer}",
                        f"rate in {ahead_rate}/{total} cells, CPU/request in {ahead_cpu}/{total}",
                        judge(ahead_rate == total, ahead_cpu == total)))
    for sec, peer in [("resp", "redis"), ("http", "nginx")]:
        data = res["sections"].get(sec)
        if not data:
            continue
        groups = data.items() if sec == "resp" else [("GET /", data)]
        for test, d in groups:
            for name in ("reactord-epoll", "reactord-io_uring"):
                r = d["summary"].get(name)
                if not r or r.get("x_rps") is None:
                    continue
                out.append((f"{sec} {test}: {name} ≥ 1.0× {peer} rate, ≤ its CPU/request",
                            f"rate {fx(r['x_rps'])}, CPU/request {fx(r['x_cpu'])}",
                            judge((r["x_rps"] or 0) >= 1.0, (r["x_cpu"] or 9) <= 1.0)))
    mem = res["sections"].get("memory", [])
    for m in mem:
        if m["server"].startswith("reactord") and m.get("mode", "echo") == "echo":
            # Issue 14's bound (issue 8 asked for 16 KiB), for echo; http and resp are reported.
            label = f"≤ 4 KiB RSS per idle connection, {m['server']}, {m['connections']:,}"
            if "error" in m:
                out.append((label, f"no figure: {m['error']}", "missed"))
                continue
            out.append((label, f"{m['per_conn_kib']:.1f} KiB",
                        "met" if m["per_conn_kib"] <= 4 else "missed"))
    return out


def markdown(res, info, args, svg_name):
    L = []
    a = L.append
    rounds = getattr(args, "rounds", 3)
    mode = ("--quick (one round, 1 s windows)" if args.quick
            else f"full ({rounds} rounds, 5 s windows)")
    a(f"# reactord comparison — {res['started']}")
    a("")
    if res.get("byte_mismatches"):
        a("**INVALID: replies differed from what was sent, so these figures measured a broken "
          "server:** " + "; ".join(res["byte_mismatches"]))
        a("")
    a(f"- run: `perf/compare.py {' '.join(sys.argv[1:])}`, {mode}, {res['seconds']} s in all")
    a(f"- commit {info['commit']}; source `{info['source']}`"
      + (" (the working tree had uncommitted changes under "
         + " ".join(d + "/" for d in SOURCE_DIRS) + ")" if info["uncommitted_in_tree"] and info["source"] == str(ROOT) else ""))
    a(f"- build `{info['build']}` ({info['build_type']}), {info['compiler']}")
    a(f"- machine: {info['cpus']} CPUs, {info['cpu']}, kernel {info['kernel']}")
    a(f"- peers: {info['redis']}; {info['nginx']}; {info['wrk']}")
    a("- servers pinned to CPU 0, clients to CPU 1 (`taskset`); server CPU = utime + stime of the "
      "server process (/proc/PID/stat: every thread of it) over the measured window")
    a("- load average (1, 5, 15 min) before → after each section: " + "; ".join(
        f"{k} {v['before']} → {v['after']} ({v['seconds']} s)" for k, v in res["loadavg"].items()))
    a("")
    a("¹ server utilization below 0.9: the server was not the bottleneck (the client, or CPU time "
      "taken by other work on the machine, limited the rate); compare CPU per request.")
    a("")
    a(f"![throughput and server CPU per request]({svg_name})")
    a("")
    a("## Targets")
    a("")
    a("| target | measured | |")
    a("|---|---|---|")
    for t, m, v in targets(res):
        a(f"| {t} | {m} | **{v}** |")
    a("")
    echo = res["sections"].get("echo")
    if echo:
        a("## Echo, closed loop (reactord-load)")
        a("")
        a("Medians; `× epoll` columns are medians of per-round ratios against the raw-epoll floor "
          "(rate: above 1 is faster; CPU: server CPU per request over the floor's, below 1 is "
          "cheaper).")
        a("")
        a("`syscalls/req`: the server process's system calls (every thread; "
          "`perf stat -e raw_syscalls:sys_enter -p PID`) per request, exact, from a counting run "
          "after the cell's timed rounds: for reactord over a steady window of a running load, "
          "requests from the echo service's bytes sent (admin `services`); for a peer the "
          "difference of two fixed-count runs (one request per connection, then more), so "
          "connecting and closing cancel out. A spinning row's polls while it waits count too "
          "(docs/benchmarks.md, \"What the numbers mean\"). `epoll+thread` is the floor with one "
          "extra idle thread; `-spin`, `-adaptive`: `runtime.idle`; `-sqpoll`: "
          "`runtime.io_uring_sqpoll = true`, its kernel SQ thread's CPU time included (a thread of "
          "the process).")
        a("")
        L += table(["conns", "size", "server", "req/s", "server CPU/req", "syscalls/req",
                    "server util", "client util", "p99", "× epoll rate", "× epoll CPU", "load"],
                   [[c["conns"], f"{c['size']} B", n, fmt(r["rps"]), us(r["cpu_us"], 2),
                     sys_cell(r), util_cell(r), fmt(r["client_util"], 2),
                     f"{fmt(r['p99'] / 1000, 2)} ms", fx(r.get("x_rps")), fx(r.get("x_cpu")),
                     fmt(r["load1"], 1)]
                    for c in echo.values() for n, r in c["summary"].items()])
        a("")
        lat = latency_rows(echo)
        if lat:
            a("## Echo latency, one connection × 64 B: block, adaptive, spin")
            a("")
            a("Closed loop (one request in flight), from the 1 × 64 B cell above. `× block p50`: "
              "median of per-round ratios to the same backend's `block` row. A spinning shard "
              "uses its CPU whether or not requests come: its CPU per request is the price of "
              "its latency.")
            a("")
            L += table(["server", "backend", "idle", "p50", "p99", "× block p50",
                        "server CPU/req", "server util", "syscalls/req"],
                       [[n, b, idle, us(r["p50"], 1), us(r["p99"], 1), fx(x), us(r["cpu_us"], 2),
                         fmt(r["util"], 2), sys_cell(r)] for n, b, idle, r, x in lat])
            a("")
        sq = [(c, n, r) for c in echo.values() for n, r in c["summary"].items()
              if r.get("sq_share") is not None]
        if sq:
            cpus = res.get("servers", {}).get("reactord-io_uring-sqpoll", {}).get(
                "allowed_cpus", {}).get("iou-sqp", "?")
            a(f"SQPOLL: the kernel's SQ thread (`iou-sqp-PID`, allowed CPUs {cpus}) used this "
              "share of the server's CPU per request: " + ", ".join(
                  f"{c['conns']} × {c['size']} B {r['sq_share'] * 100:.0f} %" for c, n, r in sq)
              + ".")
            a("")
    op = res["sections"].get("open")
    if op:
        a(f"## Echo, open loop at {op['rate']:,.0f} requests/s (half the lowest peak at 100 "
          "connections, 64 B)")
        a("")
        a("Latency from the intended send time (no coordinated omission).")
        a("")
        L += table(["server", "achieved req/s", "p50", "p99", "p99.9", "max", "server CPU/req",
                    "server util", "load"],
                   [[n, fmt(r["rps"]), us(r["p50"]), us(r["p99"]), us(r["p999"]), us(r["max"]),
                     us(r["cpu_us"], 2), fmt(r["util"], 2), fmt(r["load1"], 1)]
                    for n, r in op["summary"].items()])
        a("")
    resp = res["sections"].get("resp")
    if resp:
        n = next(iter(resp.values()))["n"]
        piped = resp.get("GET -P 16", {}).get("n", n)
        a(f"## RESP: redis-benchmark -c 50 -n {n:,} (`GET -P 16`: -n {piped:,}, pipelined 16 deep; "
          "the others one request at a time)")
        a("")
        L += table(["test", "server", *SERVICE_COLUMNS, "client CPU/req", "client util",
                    "× redis rate", "× redis CPU", "load"],
                   [[test, name, *service_cells(r), *client_cells(r), *ratio_cells(r)]
                    for test, d in resp.items() for name, r in d["summary"].items()])
        a("")
        a("Client: redis-benchmark's own CPU time (user + system) per request and over the run's "
          "wall time; where it is near 1 while the server's is below 0.9, the rate measures the "
          "client's CPU per request, not the server's capacity.")
        a("")
    http = res["sections"].get("http")
    if http:
        a(f"## HTTP: wrk -t1 -c50 GET / ({http['body_bytes']}-byte body from both)")
        a("")
        L += table(["server", *SERVICE_COLUMNS, "non-2xx", "× nginx rate", "× nginx CPU", "load"],
                   [[name, *service_cells(r), fmt(r["errors"]), *ratio_cells(r)]
                    for name, r in http["summary"].items()])
        a("")
    mem = res["sections"].get("memory")
    if mem:
        a("## Memory: RSS per idle connection (one 64 B request each, then idle; echo unless named)")
        a("")
        L += table(["server", "connections", "held", "RSS before", "RSS with them",
                    "per connection", "load"],
                   [[m["server"], f"{m['connections']:,}", f"{m['connected']:,}",
                     f"{m['base_kib']:,} KiB", f"{m['rss_kib']:,} KiB",
                     f"{m['per_conn_kib']:.1f} KiB", m["load"]] if "error" not in m else
                    [m["server"], f"{m['connections']:,}", "—", "—", "—", m["error"], m["load"]]
                    for m in mem])
        a("")
    return "\n".join(L) + "\n"


COLORS = {"reactord-epoll": "#1f77b4", "reactord-io_uring": "#17becf",
          "reactord-libevent": "#9467bd", "epoll": "#7f7f7f", "libuv": "#ff7f0e",
          "asio": "#d62728", "redis": "#2ca02c", "nginx": "#8c564b",
          "epoll+thread": "#c7c7c7", "reactord-epoll-spin": "#aec7e8",
          "reactord-io_uring-spin": "#9edae5", "reactord-io_uring-sqpoll": "#bcbd22",
          "reactord-epoll-adaptive": "#393b79", "reactord-io_uring-adaptive": "#637939"}


def svg_chart(res):
    """Four panels of grouped bars: echo throughput, echo server CPU per request, and the same
    for resp and http. Written by hand: no plotting library needed."""
    panels = []
    echo = res["sections"].get("echo", {})
    if echo:
        groups = [(f"{c['conns']}c {c['size']}B", c["summary"]) for c in echo.values()]
        panels.append(("Echo, closed loop: requests/s (thousands)", groups, "rps", 1e-3))
        panels.append(("Echo: server CPU per request (µs)", groups, "cpu_us", 1))
    other = []
    for test, d in res["sections"].get("resp", {}).items():
        other.append((test, d["summary"]))
    if res["sections"].get("http"):
        other.append(("HTTP GET", res["sections"]["http"]["summary"]))
    if other:
        panels.append(("RESP and HTTP: requests/s (thousands)", other, "rps", 1e-3))
        panels.append(("RESP and HTTP: server CPU per request (µs)", other, "cpu_us", 1))
    width, ph, top, left = 1000, 240, 40, 60
    names = []
    for _, groups, _, _ in panels:
        for _, summ in groups:
            names += [n for n in summ if n not in names]
    height = top + len(panels) * (ph + 50) + 30 + 16 * (len(names) // 6)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="20" font-size="14">reactord comparison, {res["started"]} '
           f'(server CPU 0, client CPU 1)</text>']
    lx, ly = left, 28
    for n in names:  # legend, wrapped at the right edge
        w = 14 + 7 * len(n) + 16
        if lx + w > width - 20 and lx > left:
            lx, ly = left, ly + 16
        out.append(f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{COLORS.get(n, "#000")}"/>'
                   f'<text x="{lx + 14}" y="{ly + 9}">{n}</text>')
        lx += w
    y0 = top + 20 + (ly - 28)
    for title, groups, key, scale in panels:
        vals = [summ[n][key] * scale for _, summ in groups for n in summ
                if summ[n].get(key) is not None]
        vmax = max(vals) if vals else 1
        plot_w = width - left - 20
        gw = plot_w / max(1, len(groups))
        out.append(f'<text x="{left}" y="{y0 + 12}" font-size="12" font-weight="bold">'
                   f'{title}</text>')
        base = y0 + ph
        for i in range(5):  # grid
            v = vmax * i / 4
            yy = base - (ph - 30) * i / 4
            out.append(f'<line x1="{left}" x2="{width - 20}" y1="{yy:.1f}" y2="{yy:.1f}" '
                       f'stroke="#ddd"/><text x="{left - 5}" y="{yy + 4:.1f}" '
                       f'text-anchor="end">{v:.3g}</text>')
        for gi, (label, summ) in enumerate(groups):
            present = [n for n in names if n in summ and summ[n].get(key) is not None]
            bw = (gw - 12) / max(1, len(present))
            for bi, n in enumerate(present):
                v = summ[n][key] * scale
                h = (ph - 30) * v / vmax
                x = left + gi * gw + 6 + bi * bw
                out.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bw - 1:.1f}" '
                           f'height="{h:.1f}" fill="{COLORS.get(n, "#000")}">'
                           f'<title>{n} {label}: {v:.3g}</title></rect>')
            out.append(f'<text x="{left + gi * gw + gw / 2:.1f}" y="{base + 14}" '
                       f'text-anchor="middle">{label}</text>')
        y0 += ph + 50
    out.append("</svg>")
    return "\n".join(out) + "\n"
