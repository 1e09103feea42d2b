#!/usr/bin/env bash
# Exact instruction counts per operation of one benchmark (runtime_bench, or echo_bench for names
# starting with echo_), with callgrind.
#
#   perf/callgrind-ops.sh BUILD_DIR BENCHMARK_NAME [N1 N2]
#   e.g. perf/callgrind-ops.sh build/perf-prof spawn_join/pooled_stack
#
# Runs the benchmark under `valgrind --tool=callgrind` twice, for exactly N1 and N2 iterations
# (REACTOR_BENCH_ITERATIONS), and divides the difference of the instruction counts by N2 - N1:
# set-up, tear-down and the dynamic loader cancel out, leaving the instructions of one iteration,
# in total and per function (self cost, inlined code counted in the function it was inlined into).
# User-space instructions only: the kernel's share of a system call is not counted. For
# echo_bench, N counts messages, rounded up to whole batches (max(256, 100 x connections)):
# pass multiples of the batch. Build with -g for file names (see docs/benchmarks.md).
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 BUILD_DIR BENCHMARK_NAME [N1 N2]" >&2
  exit 64
fi
build=$1
name=$2
n1=${3:-2000}
n2=${4:-4000}
bin="$build/perf/runtime_bench"
[[ "$name" == echo_* ]] && bin="$build/perf/echo_bench"
[[ -x "$bin" ]] || { echo "callgrind-ops: $bin not found (build it first)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "callgrind-ops: valgrind is not installed" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Google Benchmark filters are regular expressions: match the name exactly (a fixed iteration
# count appends /iterations:N to it; echo_bench names end in /process_time/real_time).
filter="^$(printf '%s' "$name" | sed 's/[][\.*^$+?(){}|]/\\&/g')(/iterations:[0-9]+)?(/process_time)?(/real_time)?\$"

for n in "$n1" "$n2"; do
  REACTOR_BENCH_ITERATIONS=$n valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$n" \
    "$bin" --benchmark_filter="$filter" --benchmark_repetitions=1 >"$tmp/out.$n" 2>"$tmp/err.$n" ||
    { cat "$tmp/err.$n" >&2; exit 1; }
  grep -q "$name" "$tmp/out.$n" || { echo "callgrind-ops: no benchmark named $name" >&2; exit 1; }
  callgrind_annotate --threshold=100 --inclusive=no --auto=no "$tmp/cg.$n" >"$tmp/ann.$n" 2>/dev/null
done

awk -v n1="$n1" -v n2="$n2" -v name="$name" '
  # Lines look like: "  362,924 ( 2.46%)  file:function [object]" or "362,924  file:function".
  function parse(line, arr,    count, rest) {
    if (line !~ /^ *[0-9][0-9,]* /) return
    count = line; sub(/^ */, "", count); sub(/ .*/, "", count); gsub(/,/, "", count)
    rest = line; sub(/^ *[0-9][0-9,]* +(\([^)]*\) +)?/, "", rest)
    sub(/ \[[^]]*\]$/, "", rest)
    # One entry per function: drop the source file (inlined code is listed under its own file)
    # and the recursion-level suffix callgrind appends.
    if (rest != "PROGRAM TOTALS") { sub(/^[^:]*:/, "", rest); sub(/\x27[0-9]+$/, "", rest) }
    arr[rest] += count
  }
  FNR == 1 { file++ }
  file == 1 { parse($0, a) }
  file == 2 { parse($0, b) }
  END {
    d = n2 - n1
    total = (b["PROGRAM TOTALS"] - a["PROGRAM TOTALS"]) / d
    printf "%s: %.1f instructions per iteration (callgrind, %d vs %d iterations)\n", name, total, n1, n2
    for (k in b) {
      if (k == "PROGRAM TOTALS") continue
      per = (b[k] - a[k]) / d
      if (per >= 0.5) printf "%10.1f  %s\n", per, k | "sort -rn | head -40"
    }
  }' "$tmp/ann.$n1" "$tmp/ann.$n2"
