#!/usr/bin/env bash
# What the loop statistics and the watchdog cost per request (issues 5 and 6).
#
#   perf/observability-cost.sh [--connections C] [--size BYTES] [--rounds R] [--keep DIR] [N1 N2]
#
# Builds reactord and reactord-load three times (Release, in build/obs-*):
#   full     as shipped: statistics on, the loop publishes its current slice, watchdog enabled
#   nostats  -DREACTOR_STATS=OFF: every counter and histogram write compiled out
#   nohooks  -DREACTOR_WATCHDOG_HOOKS=OFF: no slice publication, and watchdog.enabled = false
# and measures each with one shard on the epoll backend, serving BYTES-byte echo requests
# ping-pong over C connections (default 1 and 64):
#
# 1. Exact user-space instructions per request: the daemon runs under `valgrind --tool=callgrind
#    --separate-threads=yes` twice, for N1 and N2 requests (reactord-load --requests, outside
#    valgrind); the difference of the shard thread's counts over N2 - N1 cancels start-up,
#    shutdown and idle time. Independent of machine load. The kernel's share (TCP, system calls)
#    is not counted, so the percentage is of the user-space part alone.
# 2. The user-space share of the server's CPU per request (utime / (utime + stime) of the full
#    daemon over a native run): the instruction overhead times that share estimates the overhead
#    in CPU per request, assuming the extra instructions run as fast as the average one.
# 3. Server CPU per request measured natively, pinned (daemon CPU 0, load CPU 1), R rounds of
#    full / nostats / nohooks alternated, medians: the direct figure, which on a shared machine
#    moves by more than the overheads measured here.
# The watchdog thread's cost does not scale with requests but with time (it wakes every
# threshold_ms / 4): measured natively as the CPU time of the thread named "watchdog"
# (/proc/PID/task/TID/schedstat, ns) over 10 s of an idle daemon.
set -euo pipefail
cd "$(dirname "$0")/.."

conns=1
size=64
rounds=5
keep=
while [[ $# -gt 0 && "$1" == --* ]]; do
  case "$1" in
    --connections) conns=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;  # keep the callgrind files there, for callgrind_annotate
    *) echo "usage: $0 [--connections C] [--size BYTES] [--rounds R] [--keep DIR] [N1 N2]" >&2
       exit 64 ;;
  esac
done
n1=${1:-2000}
n2=${2:-12000}
command -v valgrind >/dev/null || { echo "observability-cost: valgrind is not installed" >&2; exit 1; }

variants=(full nostats nohooks)
declare -A flags=(
  [full]="-DREACTOR_STATS=ON -DREACTOR_WATCHDOG_HOOKS=ON"
  [nostats]="-DREACTOR_STATS=OFF -DREACTOR_WATCHDOG_HOOKS=ON"
  [nohooks]="-DREACTOR_STATS=ON -DREACTOR_WATCHDOG_HOOKS=OFF"
)
for v in "${variants[@]}"; do
  # shellcheck disable=SC2086
  cmake -S . -B "build/obs-$v" -G Ninja -DCMAKE_BUILD_TYPE=Release -DREACTOR_BUILD_TESTS=OFF \
    -DREACTOR_BUILD_PERF=OFF ${flags[$v]} >/dev/null
  cmake --build "build/obs-$v" --target reactord reactord-load >/dev/null
done

tmp=$(mktemp -d)
daemon_pid=
cleanup() {
  [[ -n "$daemon_pid" ]] && kill "$daemon_pid" 2>/dev/null || true
  if [[ -n "$keep" ]]; then mkdir -p "$keep" && cp "$tmp"/cg.* "$keep"/ 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

load=build/obs-full/perf/load/reactord-load

# Waits until the daemon (under valgrind: seconds) accepts connections on port $1.
wait_listening() {
  for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "observability-cost: nothing listens on port $1" >&2
  return 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

write_config() {  # variant port admin_socket
  local enabled=true
  [[ "$1" == nohooks ]] && enabled=false
  cat >"$tmp/reactord.toml" <<TOML
[runtime]
backend = "epoll"
shards = 1
[log]
level = "warn"
format = "text"
[admin]
socket = "$3"
[watchdog]
enabled = $enabled
[[service]]
name = "echo"
kind = "echo"
listen = "127.0.0.1:$2"
TOML
}

# Prints "shard watchdog other" instructions of one callgrind run, by thread: the shard thread is
# the one that ran Shard::accept_loop, the watchdog's the one that ran Watchdog::run.
thread_totals() {
  local shard=0 wd=0 other=0 f n
  for f in "$1"-*; do
    n=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
    if grep -q 'Watchdog::run' "$f"; then wd=$((wd + n))
    elif grep -q 'Shard::accept_loop' "$f"; then shard=$((shard + n))
    else other=$((other + n)); fi
  done
  echo "$shard $wd $other"
}

declare -A per_request
for v in "${variants[@]}"; do
  declare -A shard_ir=()
  for n in "$n1" "$n2"; do
    port=$(free_port)
    write_config "$v" "$port" "$tmp/admin.sock"
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$tmp/cg.$v.$n" \
      "build/obs-$v/daemon/reactord" --config "$tmp/reactord.toml" 2>"$tmp/vg.$v.$n" &
    daemon_pid=$!
    wait_listening "$port"
    "$load" --port "$port" --connections "$conns" --size "$size" --requests "$n" \
      --duration 600 >"$tmp/load.$v.$n" || { cat "$tmp/load.$v.$n" >&2; exit 1; }
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || { echo "reactord ($v) exited with $?" >&2; tail "$tmp/vg.$v.$n" >&2; exit 1; }
    daemon_pid=
    read -r s w o < <(thread_totals "$tmp/cg.$v.$n")
    shard_ir[$n]=$s
    echo "$v: $n requests: shard thread $s, watchdog thread $w, other threads $o instructions" >&2
  done
  per_request[$v]=$(((shard_ir[$n2] - shard_ir[$n1]) * 10 / (n2 - n1)))
done

# The watchdog thread natively, idle: CPU nanoseconds per second.
port=$(free_port)
write_config full "$port" "$tmp/admin.sock"
"build/obs-full/daemon/reactord" --config "$tmp/reactord.toml" 2>/dev/null &
daemon_pid=$!
wd_tid=
for _ in $(seq 50); do
  for t in /proc/$daemon_pid/task/*; do
    [[ "$(cat "$t/comm" 2>/dev/null)" == watchdog ]] && wd_tid=${t##*/}
  done
  [[ -n "$wd_tid" ]] && break
  sleep 0.1
done
[[ -n "$wd_tid" ]] || { echo "observability-cost: no watchdog thread found" >&2; exit 1; }
ns0=$(awk '{print $1}' "/proc/$daemon_pid/task/$wd_tid/schedstat")
sleep 10
ns1=$(awk '{print $1}' "/proc/$daemon_pid/task/$wd_tid/schedstat")
kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=

# Native, pinned, the variants alternated round by round.
declare -A native=()
user_ticks=0
all_ticks=0
for r in $(seq "$rounds"); do
  for v in "${variants[@]}"; do
    port=$(free_port)
    write_config "$v" "$port" "$tmp/admin.sock"
    taskset -c 0 "build/obs-$v/daemon/reactord" --config "$tmp/reactord.toml" 2>/dev/null &
    daemon_pid=$!
    wait_listening "$port"
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$daemon_pid/stat")
    taskset -c 1 "$load" --port "$port" --connections "$conns" --size "$size" --duration 3 \
      --warmup 0.5 --server-pid "$daemon_pid" --json >"$tmp/native.json" ||
      { cat "$tmp/native.json" >&2; exit 1; }
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$daemon_pid/stat")
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || true
    daemon_pid=
    cpu=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["server_cpu_per_request_us"])' \
      "$tmp/native.json")
    native[$v]+="$cpu "
    if [[ "$v" == full ]]; then
      user_ticks=$((user_ticks + u1 - u0))
      all_ticks=$((all_ticks + u1 - u0 + s1 - s0))
    fi
    echo "round $r: $v: server CPU per request $cpu us" >&2
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.2f %%", (a - b) * 100 / b }'; }
instr() { awk -v x="$1" 'BEGIN { printf "%.1f", x / 10 }'; }
full=${per_request[full]}
user_share=$(awk -v u="$user_ticks" -v a="$all_ticks" 'BEGIN { printf "%.3f", a ? u / a : 0 }')
echo
echo "reactord, one shard, epoll, $size B echo, $conns connection(s); $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- reactor backends daemon || echo ' (with local changes)')"
printf '\n| build | user-space instructions per request | vs full | est. share of CPU per request | server CPU per request, native (median of %d) | vs full |\n' "$rounds"
printf '|---|---|---|---|---|---|\n'
nf=$(median "${native[full]}")
for v in "${variants[@]}"; do
  nv=$(median "${native[$v]}")
  if [[ "$v" == full ]]; then
    printf '| %s | %s | | | %s us | |\n' "$v" "$(instr "$full")" "$nv"
  else
    est=$(awk -v a="$full" -v b="${per_request[$v]}" -v u="$user_share" \
      'BEGIN { printf "%+.2f %%", (a - b) * 100 / b * u }')
    printf '| %s | %s | %s | %s | %s us | %s |\n' "$v" "$(instr "${per_request[$v]}")" \
      "$(pct "$full" "${per_request[$v]}")" "$est" "$nv" "$(pct "$nf" "$nv")"
  fi
done
echo
echo "\"vs full\": what the full build costs more than that one. User space is $user_share of the"
echo "full daemon's CPU time here (utime / (utime + stime)); the estimate is the instruction"
echo "overhead times that share. Native runs, all rounds: full ${native[full]}/ nostats ${native[nostats]}/ nohooks ${native[nohooks]}"
printf 'watchdog thread, idle daemon with one shard: %d us CPU per second (%s of one CPU)\n' \
  "$(((ns1 - ns0) / 10000))" "$(awk -v x="$((ns1 - ns0))" 'BEGIN { printf "%.3f %%", x / 10 / 1e9 * 100 }')"
