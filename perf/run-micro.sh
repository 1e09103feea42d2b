#!/usr/bin/env bash
# Runs the micro-benchmarks (runtime_bench, echo_bench) pinned, three repetitions each, writes
# perf/results/micro-<date>.txt and prints it. About two minutes. `make bench` calls it.
#
#   perf/run-micro.sh BUILD_DIR [extra Google Benchmark flags...]
#   e.g. perf/run-micro.sh build/release
#        perf/run-micro.sh build/perf-release --benchmark_format=json
# Extra flags go to all three runs (a --benchmark_filter replaces the script's own).
#
# Single-thread benchmarks run under `taskset -c 0`. The two-thread ones (cross_thread/*,
# cross_shard/*, echo_pinned/*) get CPUs 0 and 1 and pin their own threads: loop/server on CPU 0,
# the other side on CPU 1. Figures are medians of three repetitions; read them with docs/benchmarks.md.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 BUILD_DIR [extra benchmark flags...]" >&2
  exit 64
fi
build=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
runtime_bench="$build/perf/runtime_bench"
echo_bench="$build/perf/echo_bench"
for b in "$runtime_bench" "$echo_bench"; do
  [[ -x "$b" ]] || { echo "run-micro: $b not found: build $build first" >&2; exit 1; }
done

ncpu=$(nproc)
single_cpu="taskset -c 0"
pair_cpus="taskset -c 0,1"
if [[ $ncpu -lt 2 ]]; then
  echo "run-micro: only $ncpu CPU: the two-thread benchmarks run unpinned" >&2
  pair_cpus=""
fi

mkdir -p "$here/results"
out="$here/results/micro-$(date +%Y%m%d-%H%M%S).txt"
# Repetitions run in random order across benchmarks (A B A B rather than A A A B B B), so a drift
# in machine load spreads over everything compared (docs/benchmarks.md, BENCHMARKING.md).
common=(--benchmark_repetitions=3 --benchmark_report_aggregates_only=true
  --benchmark_enable_random_interleaving=true)

compiler() {
  local cxx
  cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
  "${cxx:-c++}" --version 2>/dev/null | head -1
}

{
  echo "# reactord micro-benchmarks — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit:     $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "machine:    $ncpu CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "kernel:     $(uname -r)"
  echo "compiler:   $(compiler)"
  echo "build:      $build ($(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null))"
  echo "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min; other work on the machine skews the figures)"
  echo
  echo "## runtime_bench, single-thread ($single_cpu; min time 0.2 s per repetition)"
  $single_cpu "$runtime_bench" "${common[@]}" --benchmark_min_time=0.2 \
    --benchmark_filter=-cross_ "$@" 2>&1 || echo "(runtime_bench exited with $?)"
  echo
  echo "## runtime_bench, cross-thread (${pair_cpus:-unpinned}; loop thread on CPU 0, poster on CPU 1)"
  $pair_cpus "$runtime_bench" "${common[@]}" --benchmark_min_time=0.3 \
    --benchmark_filter=cross_ "$@" 2>&1 || echo "(runtime_bench exited with $?)"
  echo
  echo "## echo_bench (${pair_cpus:-unpinned}; pinned: server CPU 0, client CPU 1; one_loop: CPU 0)"
  $pair_cpus "$echo_bench" "${common[@]}" --benchmark_min_time=1 "$@" 2>&1 ||
    echo "(echo_bench exited with $?)"
  echo
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out"

# The ratios docs/benchmarks.md asks for, from the medians above. Throughput ratios use wall
# clock; the CPU ratios (epoll's CPU per message over the backend's: above 1 means the backend
# spends less) hold up better when other work shares the machine.
summarize() {
  awk '
    # A value with an SI suffix and maybe a unit: "17.4459ns", "996.206ps", "7.48u", "22.801k/s".
    function si(v,    x, m) {
      x = v; sub(/\/s$/, "", x); sub(/s$/, "", x)
      m = 1
      if (x ~ /p$/) m = 1e-12; else if (x ~ /n$/) m = 1e-9; else if (x ~ /u$/) m = 1e-6
      else if (x ~ /m$/) m = 1e-3; else if (x ~ /k$/) m = 1e3; else if (x ~ /M$/) m = 1e6
      else if (x ~ /G$/) m = 1e9
      sub(/[pnumkMG]$/, "", x)
      return x * m
    }
    function counter(key,    i, f) {
      for (i = 1; i <= NF; i++) if (index($i, key "=") == 1) { f = $i; sub(key "=", "", f); return f }
      return ""
    }
    /_median/ {
      name = $1; sub(/_median$/, "", name)
      if (name ~ /^switch\//) sw[name] = si(counter("switch")) * 1e9
      if (name == "spawn_join/pooled_stack") spawn = si($4 $5) * 1e9
      if (name ~ /^echo_/) {
        split(name, p, "/")  # shape, backend, conns:N, ...
        key = p[1] "/" p[3]
        mps[key, p[2]] = si(counter("items_per_second"))
        cpu[key, p[2]] = si(counter(p[1] == "echo_pinned" ? "srv_cpu/msg" : "proc_cpu/msg")) * 1e6
        keys[key] = 1; backends[p[2]] = 1
      }
    }
    END {
      print "## summary (medians)"
      f = sw["switch/boost_fcontext"]; o = sw["switch/reactor/switch_context"]
      if (o > 0) printf "switch: ours %.1f ns, fcontext %s -> ours/fcontext %s (target <= 1.0)\n", o,
        (f > 0 ? sprintf("%.1f ns", f) : "n/a"), (f > 0 ? sprintf("%.2f", o / f) : "n/a")
      if (spawn > 0) printf "spawn+join, pooled stack: %.0f ns CPU (target < 200 ns): %s\n", spawn,
        (spawn < 200 ? "met" : "missed")
      for (k in keys) for (b in backends) if ((k, b) in mps && (k, "epoll") in mps)
        printf "%s %s: %.0f msg/s = %.2fx epoll; %s %.2f us/msg, epoll/%s %.2f\n", k, b, mps[k, b],
          mps[k, b] / mps[k, "epoll"], (k ~ /pinned/ ? "server CPU" : "process CPU"), cpu[k, b],
          b, cpu[k, "epoll"] / cpu[k, b]
    }' "$1"
}
summarize "$out" | sort -s -k1,1 | tee -a "$out"
echo "run-micro: wrote $out" >&2
