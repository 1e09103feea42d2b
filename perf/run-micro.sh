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
# echo_pinned/*) get CPUs 0 and 1 and pin their own threads: loop/server on CPU 0, the other
# side on CPU 1. Figures are medians of three repetitions; read them with docs/benchmarks.md.
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
common=(--benchmark_repetitions=3 --benchmark_report_aggregates_only=true)

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
    --benchmark_filter=-cross_thread "$@" 2>&1 || echo "(runtime_bench exited with $?)"
  echo
  echo "## runtime_bench, cross-thread (${pair_cpus:-unpinned}; loop thread on CPU 0, poster on CPU 1)"
  $pair_cpus "$runtime_bench" "${common[@]}" --benchmark_min_time=0.3 \
    --benchmark_filter=cross_thread "$@" 2>&1 || echo "(runtime_bench exited with $?)"
  echo
  echo "## echo_bench (${pair_cpus:-unpinned}; pinned: server CPU 0, client CPU 1; one_loop: CPU 0)"
  $pair_cpus "$echo_bench" "${common[@]}" --benchmark_min_time=1 "$@" 2>&1 ||
    echo "(echo_bench exited with $?)"
  echo
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out"
echo "run-micro: wrote $out" >&2
