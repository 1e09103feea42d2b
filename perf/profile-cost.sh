#!/usr/bin/env bash
# What a running `reactorctl profile` costs (issue 17; docs/benchmarks.md, "What a profile costs").
#
#   perf/profile-cost.sh [--build-dir DIR] [--no-build] [--connections C] [--size BYTES]
#                        [--requests N] [--rounds R] [--no-callgrind] [--quick] [--out FILE]
#
# One daemon at a time from DIR (default build/release, the release preset): one shard on the
# epoll backend serving echo, pinned to CPU 0; reactord-load on CPU 1, C connections (default 1)
# ping-pong with BYTES-byte messages (default 64), exactly N requests a run (default 200,000).
#
# 1. Server CPU per request, native: the shard thread's CPU time over the same N requests —
#    utime + stime of /proc/PID/task/TID/stat (clock ticks) and the run time of its schedstat
#    (ns, the finer) — with no profile, with `reactorctl profile --hz 99` and with `--hz 1000`
#    running throughout the load, the three alternated in each of R rounds (default 5); medians.
#    Beside them the whole process's utime + stime per request (the admin thread drains the
#    profile every 50 ms) and the samples the profile reported per request. A daemon per round,
#    after one uncounted run that also times a run (a profile lasts that long and 3 s more).
# 2. Exact, independent of load: the system calls of each thread over a whole profile at
#    --hz 1000 against the same span without one (`perf stat --per-thread -e raw_syscalls:sys_enter
#    -e syscalls:sys_enter_rt_sigreturn -p PID`, tracefs mounted if it is not): rt_sigreturn and
#    other system calls per sample, against the samples the profile answered, and the signals
#    delivered (the shard's rt_sigreturn calls) against those samples.
# 3. Exact: user-space instructions per sample in the signal handler: the daemon under
#    `valgrind --tool=callgrind` is profiled at --hz 1000 while it serves 15 s of load; the
#    inclusive instructions of profile_handler over its calls (valgrind enters the handler without
#    a call record: counted as its calls of profile_record, one per recorded signal), and over the
#    weighted samples the profile reported (a CPU-time timer is checked at the scheduler tick, so
#    a shorter period arrives as one signal with overruns, each a sample). --no-callgrind skips it.
# 4. Per signal, where nothing else moves: reactor-profile-signal-cost (perf/profile_signal_cost.cc)
#    times a fiber repeating a fixed unit of arithmetic on a reactor thread without a profile, at
#    99 and 1000 Hz and from a 20 kHz wall-clock timer, alternated in each of R rounds: the cost
#    per signal (from the 20 kHz runs, where it is well above the rounds' spread) and the share of
#    the thread's CPU it makes at the signals each rate delivers.
# --quick: one round, N = 20,000 (a check that the script works, not figures).
# Writes everything it prints to FILE (default perf/results/profile-cost-DATE-cC.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

build=build/release
do_build=1
conns=1
size=64
requests=200000
rounds=5
callgrind=1
out=
usage() { sed -n '4,5p' "$0" >&2; exit 64; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --connections) conns=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --no-callgrind) callgrind=0; shift ;;
    --quick) rounds=1; requests=20000; shift ;;
    --out) out=$2; shift 2 ;;
    *) usage ;;
  esac
done
out=${out:-perf/results/profile-cost-$(date -u +%Y%m%d-%H%M%S)-c$conns.txt}

command -v perf >/dev/null ||
  { echo "profile-cost: perf is not installed (linux-perf: scripts/install-deps.sh --bench)" >&2; exit 1; }
if [[ $callgrind == 1 ]]; then
  command -v valgrind >/dev/null ||
    { echo "profile-cost: valgrind is not installed (or pass --no-callgrind)" >&2; exit 1; }
fi
if [[ ! -d /sys/kernel/tracing/events/syscalls ]]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
fi
[[ -d /sys/kernel/tracing/events/syscalls ]] ||
  { echo "profile-cost: no tracefs at /sys/kernel/tracing (mount -t tracefs nodev /sys/kernel/tracing, as root)" >&2; exit 1; }

if [[ $do_build == 1 ]]; then
  if [[ ! -f $build/CMakeCache.txt ]]; then
    [[ $build == build/release ]] || { echo "profile-cost: $build is not configured" >&2; exit 1; }
    cmake --preset release >/dev/null
  fi
  nice cmake --build "$build" -j "${JOBS:-2}" --target reactord reactord-load reactorctl \
    reactor-profile-signal-cost >/dev/null
fi
daemon=$build/daemon/reactord
load=$build/perf/load/reactord-load
ctl=$build/ctl/reactorctl
sigcost=$build/perf/reactor-profile-signal-cost
sig_units=$((requests >= 200000 ? 200000 : 20000))
for x in "$daemon" "$load" "$ctl"; do
  [[ -x $x ]] || { echo "profile-cost: $x is not built" >&2; exit 1; }
done

tmp=$(mktemp -d)
daemon_pid=
cleanup() {
  [[ -n "$daemon_pid" ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$(dirname "$out")"
exec > >(tee "$out")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_listening() {  # port
  for _ in $(seq 1200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "profile-cost: nothing listens on port $1" >&2
  return 1
}

port=
sock=$tmp/admin.sock
write_config() {
  port=$(free_port)
  cat >"$tmp/reactord.toml" <<TOML
# written by perf/profile-cost.sh
[runtime]
backend = "epoll"
shards = 1
[log]
level = "warn"
format = "text"
[admin]
socket = "$sock"
[[service]]
name = "echo"
kind = "echo"
listen = "127.0.0.1:$port"
idle_timeout_ms = 0
TOML
}

start_daemon() {  # [wrapper...]: the daemon on CPU 0
  write_config
  rm -f "$sock"
  taskset -c 0 "$@" "$daemon" --config "$tmp/reactord.toml" 2>>"$tmp/daemon.log" &
  daemon_pid=$!
  wait_listening "$port"
  for _ in $(seq 600); do [[ -S $sock ]] && return 0; sleep 0.1; done
  echo "profile-cost: no admin socket $sock" >&2
  return 1
}

stop_daemon() {
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || true
  daemon_pid=
}

shard_tid() {
  local t
  for t in /proc/$daemon_pid/task/*; do
    [[ "$(cat "$t/comm" 2>/dev/null)" == shard-0 ]] && { echo "${t##*/}"; return 0; }
  done
  echo "profile-cost: no thread named shard-0 in $daemon_pid" >&2
  return 1
}

run_load() {  # requests -> the load's JSON on stdout
  taskset -c 1 "$load" --port "$port" --connections "$conns" --size "$size" --requests "$1" \
    --duration 600 --json
}

# Starts `reactorctl profile` for $1 s at $2 Hz in the background (answer in $tmp/profile.json)
# and gives the daemon a moment to arm its timers.
start_profile() {
  "$ctl" --socket "$sock" --json profile --seconds "$1" --hz "$2" >"$tmp/profile.json" &
  profile_pid=$!
  sleep 0.5
}

# samples, dropped of the last profile
profile_samples() {
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["samples"], d["dropped"])' \
    "$tmp/profile.json"
}

echo "# perf/profile-cost.sh --build-dir $build --connections $conns --size $size --requests $requests --rounds $rounds"
echo "# $(date -u +%FT%TZ); commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- reactor backends daemon admin ctl || echo ' (with local changes)'); $(nproc) CPUs; kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# daemon: one shard, epoll, echo, pinned to CPU 0; reactord-load on CPU 1: $conns connection(s), $size B, $requests requests a run"

# ---- 1. native, alternated ----
start_daemon
t0=$(date +%s.%N)
run_load "$requests" >/dev/null
t1=$(date +%s.%N)
stop_daemon
run_seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", b - a + 1 }')
profile_seconds=$((2 * run_seconds + 3))  # room for a slower run; a run it misses is flagged
((profile_seconds > 300)) && profile_seconds=300
echo "# an uncounted run took about $run_seconds s: each profile runs $profile_seconds s"
echo
echo "round variant shard_ticks shard_ns process_ticks samples dropped load1"
data=$tmp/native.txt
: >"$data"
for r in $(seq "$rounds"); do
  start_daemon
  tid=$(shard_tid)
  run_load $((requests / 10)) >/dev/null  # warm-up
  for v in none hz99 hz1000; do
    [[ $v != none ]] && start_profile "$profile_seconds" "${v#hz}"
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$daemon_pid/task/$tid/stat")
    read -r ns0 _ < "/proc/$daemon_pid/task/$tid/schedstat"
    read -r pu0 ps0 < <(awk '{print $14, $15}' "/proc/$daemon_pid/stat")
    run_load "$requests" >"$tmp/load.json" || { cat "$tmp/load.json" >&2; exit 1; }
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$daemon_pid/task/$tid/stat")
    read -r ns1 _ < "/proc/$daemon_pid/task/$tid/schedstat"
    read -r pu1 ps1 < <(awk '{print $14, $15}' "/proc/$daemon_pid/stat")
    samples=0 dropped=0
    if [[ $v != none ]]; then
      kill -0 "$profile_pid" 2>/dev/null ||
        echo "# round $r $v: the profile ended before the load did; its tail ran unprofiled"
      wait "$profile_pid" || { echo "profile-cost: reactorctl profile failed" >&2; cat "$tmp/profile.json" >&2; exit 1; }
      read -r samples dropped < <(profile_samples)
    fi
    line="$r $v $((u1 - u0 + s1 - s0)) $((ns1 - ns0)) $((pu1 - pu0 + ps1 - ps0)) $samples $dropped $(cut -d' ' -f1 /proc/loadavg)"
    echo "$line" | tee -a "$data"
  done
  stop_daemon
done

python3 - "$data" "$requests" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
n, tck = int(sys.argv[2]), int(sys.argv[3])
by = {}
for r in rows:
    by.setdefault(r[1], []).append(r)
def med(v, i, scale):
    return statistics.median(float(x[i]) * scale for x in by[v])
print()
print(f"| profile | shard CPU/request (utime+stime) | shard CPU/request (schedstat) | vs none "
      f"(schedstat) | process CPU/request | samples/request | rounds |")
print("|---|---|---|---|---|---|---|")
base = med("none", 3, 1e-3 / n)
for v in ("none", "hz99", "hz1000"):
    if v not in by:
        continue
    tick_us, ns_us = med(v, 2, 1e6 / tck / n), med(v, 3, 1e-3 / n)
    # the per-round ratio's median, as BENCHMARKING.md asks, from the same rounds
    ratios = [float(a[3]) / float(b[3]) for a, b in zip(by[v], by["none"])]
    print(f"| {v} | {tick_us:.3f} us | {ns_us:.3f} us | "
          f"{(statistics.median(ratios) - 1) * 100:+.2f} % | {med(v, 4, 1e6 / tck / n):.3f} us | "
          f"{med(v, 5, 1 / n):.5f} | {len(by[v])} |")
print()
print("vs none: the median over rounds of (this variant's shard CPU / none's in the same round) - 1.")
PY

# ---- 2. system calls per sample, exact ----
# perf counts for a fixed span (its `sleep`), the profile's length and 2 s more, in both.
counted_span() {  # variant: hz1000 or none -> perf's per-thread CSV in $tmp/perf.$1
  perf stat --per-thread -x, -o "$tmp/perf.$1" -e raw_syscalls:sys_enter \
    -e syscalls:sys_enter_rt_sigreturn -p "$daemon_pid" -- sleep $((profile_seconds + 2)) &
  local perf_pid=$!
  sleep 0.3
  if [[ $1 != none ]]; then start_profile "$profile_seconds" "${1#hz}"; fi
  run_load "$requests" >/dev/null
  if [[ $1 != none ]]; then wait "$profile_pid"; fi
  wait "$perf_pid" || true
}
start_daemon
run_load $((requests / 10)) >/dev/null
counted_span none
counted_span hz1000
read -r samples dropped < <(profile_samples)
stop_daemon
echo
echo "## system calls over one profile at --hz 1000 ($profile_seconds s, $requests requests) and the same span without"
echo "samples $samples dropped $dropped"
python3 - "$tmp/perf.none" "$tmp/perf.hz1000" "$samples" <<'PY'
import re, sys
def counts(path):
    out = {}
    for line in open(path):
        f = line.strip().split(",")
        if line.startswith("#") or len(f) < 4:
            continue
        thread = re.sub(r"-\d+$", "", f[0])
        v = int(f[1]) if f[1].isdigit() else 0
        out[(thread, f[3])] = out.get((thread, f[3]), 0) + v
    return out
none, prof, samples = counts(sys.argv[1]), counts(sys.argv[2]), int(sys.argv[3])
signals = prof.get(("shard-0", "syscalls:sys_enter_rt_sigreturn"), 0)
# A CPU-time timer is checked at the scheduler tick: a period shorter than the tick arrives as
# one signal with overruns, counted as that many samples (weight 1 + overrun).
print(f"signals delivered to the shard (its rt_sigreturn calls): {signals}; samples (weighted) "
      f"{samples}, {samples / signals:.2f} per signal" if signals else "no signal delivered")
print("| thread | event | without | with the profile | difference per sample |")
print("|---|---|---|---|---|")
for key in sorted(set(none) | set(prof)):
    a, b = none.get(key, 0), prof.get(key, 0)
    print(f"| {key[0]} | {key[1]} | {a} | {b} | {(b - a) / samples:+.3f} |" if samples else
          f"| {key[0]} | {key[1]} | {a} | {b} | – |")
PY

# ---- 3. handler instructions per sample, callgrind ----
if [[ $callgrind == 1 ]]; then
  cg=$tmp/cg.out
  start_daemon valgrind --tool=callgrind --callgrind-out-file="$cg"
  cg_seconds=$((rounds > 1 ? 15 : 4))
  start_profile $((cg_seconds + 3)) 1000
  taskset -c 1 "$load" --port "$port" --connections "$conns" --size "$size" --warmup 0 \
    --duration "$cg_seconds" --json >"$tmp/load.json" || { cat "$tmp/load.json" >&2; exit 1; }
  wait "$profile_pid" || { echo "profile-cost: reactorctl profile failed" >&2; cat "$tmp/profile.json" >&2; exit 1; }
  read -r samples dropped < <(profile_samples)
  stop_daemon
  echo
  echo "## callgrind: the daemon under valgrind profiled at --hz 1000 while it served ${cg_seconds} s of load"
  echo "samples $samples dropped $dropped (the profile's answer)"
  callgrind_annotate --inclusive=yes --threshold=100 "$cg" >"$tmp/cg.txt" 2>"$tmp/cg.err" ||
    { echo "callgrind_annotate failed:"; head -5 "$tmp/cg.err"; }
  # The handler's work is profile_record (the frame walk and the ring), one call per recorded
  # signal: its inclusive instructions over its calls, read from the raw file (each `calls=` line
  # is followed by the call's position and inclusive cost), so no listing threshold hides it.
  # valgrind enters a signal handler without a call record of its own; the handler adds ~20
  # instructions of its own around the call.
  python3 - "$cg" "$samples" "$dropped" <<'PY'
import re, sys
names, calls, incl, cur, take = {}, 0, 0, "", False
for line in open(sys.argv[1], errors="replace"):
    line = line.strip()
    m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3)
        if m.group(1) == "cfn":
            cur = names.get(m.group(2), "")
        continue
    if take:
        fields = line.split()
        if len(fields) >= 2 and fields[-1].isdigit():
            incl += int(fields[-1])
        take = False
        continue
    if line.startswith("calls=") and "profile_record(" in cur:
        calls += int(line.split("=")[1].split()[0])
        take = True
samples, dropped = int(sys.argv[2]), int(sys.argv[3])
print(f"profile_record inclusive: {incl:,} instructions over {calls} calls (handler calls that "
      f"recorded); samples {samples} + dropped {dropped}")
if calls:
    print(f"user-space instructions per handler call: {incl / calls:,.0f} (+ ~20 in the handler)")
if samples + dropped:
    print(f"per weighted sample: {incl / (samples + dropped):,.0f}")
PY
  grep -E 'profile_handler|profile_record|walk_interrupted_stack|backtrace' "$tmp/cg.txt" | head -8 || true
fi

# ---- 4. per signal, where nothing else moves ----
# reactor-profile-signal-cost: a fiber repeating a fixed unit of arithmetic on a reactor thread
# (CPU 0), its CPU time over the same units without a profile and at 99 and 1000 Hz, alternated.
echo
echo "## per signal: reactor-profile-signal-cost --rounds $rounds --units $sig_units (a compute loop on CPU 0)"
"$sigcost" --rounds "$rounds" --units "$sig_units" --rates 0,99,1000 --wall-hz 20000 --cpu 0
echo
echo "# done $(date -u +%FT%TZ); load $(cut -d' ' -f1-3 /proc/loadavg)"
