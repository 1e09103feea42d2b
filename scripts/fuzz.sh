#!/usr/bin/env bash
# Runs every libFuzzer target in build/fuzz for SECONDS each, one after another, and fails if any
# finds a crash, a sanitizer report, a leak or a timeout. Usage: scripts/fuzz.sh SECONDS [--ci]
#   --ci  start each from a fresh copy of its seed corpus fuzz/corpus/SEEDS in
#         build/fuzz/ci-corpus/TARGET, so the committed corpora never grow; the copy, with what
#         the run added, stays there after the run (CI keeps it with the build). Without --ci,
#         the corpus kept in build/fuzz/corpus/TARGET (seeded likewise) grows from run to run.
# SEEDS is the target's own name, but for the differential oracles (*_diff), which start from the
# seeds of the parser they compare. Each target's line says how many inputs it executed.
# A crashing input is saved as build/fuzz/artifacts/TARGET/crash-*; reproduce it with
#   build/fuzz/fuzz/TARGET_fuzz build/fuzz/artifacts/TARGET/crash-...
# then add it as a regression test in tests/ (see docs/reliability.md, Fuzzing).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:?usage: scripts/fuzz.sh SECONDS [--ci]}
ci=false
[[ ${2:-} == --ci ]] && ci=true

targets=(config admin http_parser resp_parser http_parser_diff resp_parser_diff)
declare -A max_len=([config]=4096 [admin]=12288 [http_parser]=4096 [resp_parser]=4096
  [http_parser_diff]=4096 [resp_parser_diff]=4096)
declare -A seeds=([http_parser_diff]=http_parser [resp_parser_diff]=resp_parser)

build=build/fuzz
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
summary=$build/fuzz-summary.txt
: >"$summary"
failed=()
for t in "${targets[@]}"; do
  seed=${seeds[$t]:-$t}
  if $ci; then
    corpus=$build/ci-corpus/$t
    rm -rf "$corpus"
  else
    corpus=$build/corpus/$t
  fi
  mkdir -p "$corpus" "$build/artifacts/$t"
  cp -n fuzz/corpus/"$seed"/* "$corpus"/
  log=$tmp/$t.log
  status=0
  # -timeout: one input taking 10 s is a hang. -rss_limit_mb: a parser holding 1 GiB is a bug.
  "$build/fuzz/${t}_fuzz" "$corpus" -dict="fuzz/dict/$seed.dict" -max_total_time="$seconds" \
    -max_len="${max_len[$t]}" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t/" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  line="$t: ${runs:-?} executions in $seconds s (${rate:-?}/s), corpus $(ls "$corpus" | wc -l) inputs"
  if [[ $status -ne 0 ]]; then
    line+=", FAILED (exit $status)"
    failed+=("$t")
    grep -E -A30 '^==[0-9]+==|FUZZ_CHECK|runtime error|Test unit written' "$log" | head -60 >&2 || true
  fi
  echo "fuzz: $line" | tee -a "$summary"
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: crashes in ${failed[*]}; inputs in $build/artifacts/" >&2
  exit 1
fi
