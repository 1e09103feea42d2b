#!/usr/bin/env bash
# Runs every libFuzzer target in build/fuzz for SECONDS each, as many at once as there are CPUs
# (each fuzzer is one single-threaded process: every target still gets SECONDS of a CPU), and
# fails if any finds a crash, a sanitizer report, a leak or a timeout.
# Usage: scripts/fuzz.sh SECONDS [--ci]
#   --ci  start each from a fresh copy of its seed corpus fuzz/corpus/SEEDS in
#         build/fuzz/ci-corpus/TARGET, so the committed corpora never grow; the copy, with what
#         the run added, stays there after the run (CI keeps it with the build), and with the
#         same random seed every time (FUZZ_SEED, default 1): CI's run is the one anyone repeats
#         with `make fuzz-ci` (up to how many inputs a machine gets through in the time), so a
#         red CI can be reproduced and a green local run predicts CI. Finding new inputs is the
#         work of runs without --ci. Without --ci, the corpus kept in build/fuzz/corpus/TARGET
#         (seeded likewise) grows from run to run, and each run draws a new seed.
# SEEDS is the target's own name, but for the differential oracles (*_diff), which start from the
# seeds of the parser they compare. Each target's line says how many inputs it executed.
# A crashing input is saved as build/fuzz/artifacts/TARGET/crash-*; reproduce it with
#   build/fuzz/fuzz/TARGET_fuzz build/fuzz/artifacts/TARGET/crash-...
# then add it as a regression test in tests/ (see docs/reliability.md, Fuzzing).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:?usage: scripts/fuzz.sh SECONDS [--ci]}
ci=false
seed_flag=()
if [[ ${2:-} == --ci ]]; then
  ci=true
  seed_flag=(-seed="${FUZZ_SEED:-1}")
fi

targets=(config admin http_parser resp_parser http_parser_diff resp_parser_diff)
declare -A max_len=([config]=4096 [admin]=12288 [http_parser]=4096 [resp_parser]=4096
  [http_parser_diff]=4096 [resp_parser_diff]=4096)
declare -A seeds=([http_parser_diff]=http_parser [resp_parser_diff]=resp_parser)

build=build/fuzz
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
summary=$build/fuzz-summary.txt
: >"$summary"
jobs=$(nproc)
# The corpus a target runs on (see --ci above).
corpus_of() {
  if $ci; then echo "$build/ci-corpus/$1"; else echo "$build/corpus/$1"; fi
}
# One target: its fuzzer's exit status in $tmp/TARGET.status, its output (and any error setting
# up its corpus) in $tmp/TARGET.log.
fuzz_one() {
  local t=$1 seed=${seeds[$1]:-$1} corpus status=0
  corpus=$(corpus_of "$t")
  : >"$tmp/$t.log"
  if $ci; then rm -rf "$corpus"; fi
  mkdir -p "$corpus" "$build/artifacts/$t"
  cp -n fuzz/corpus/"$seed"/* "$corpus"/ 2>>"$tmp/$t.log" || status=$?
  # -timeout: one input taking 10 s is a hang. -rss_limit_mb: a parser holding 1 GiB is a bug.
  [[ $status -ne 0 ]] ||
    "$build/fuzz/${t}_fuzz" "$corpus" "${seed_flag[@]}" -dict="fuzz/dict/$seed.dict" -max_total_time="$seconds" \
      -max_len="${max_len[$t]}" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$t/" >>"$tmp/$t.log" 2>&1 || status=$?
  echo "$status" >"$tmp/$t.status"
}
running=0
for t in "${targets[@]}"; do
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
  fuzz_one "$t" &
  running=$((running + 1))
done
wait || true
failed=()
for t in "${targets[@]}"; do
  corpus=$(corpus_of "$t")
  log=$tmp/$t.log
  status=$(cat "$tmp/$t.status" 2>/dev/null || echo "?")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" || true)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" || true)
  line="$t: ${runs:-?} executions in $seconds s (${rate:-?}/s), corpus $(ls "$corpus" | wc -l) inputs"
  if [[ $status != 0 ]]; then
    line+=", FAILED (exit $status)"
    failed+=("$t")
    grep -E -A30 '^==[0-9]+==|FUZZ_CHECK|runtime error|Test unit written|^cp: ' "$log" |
      head -60 >&2 || true
  fi
  echo "fuzz: $line" | tee -a "$summary"
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: crashes in ${failed[*]}; inputs in $build/artifacts/" >&2
  exit 1
fi
