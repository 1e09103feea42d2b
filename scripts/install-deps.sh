#!/usr/bin/env bash
# Installs the Debian packages reactord needs to build and test, and only those that are missing.
# Idempotent and silent when everything is present.
# Usage: scripts/install-deps.sh [--bench] [--package]
#   --bench    also installs the peers used only by benchmarks (perf/).
#   --package  also installs what `make deb` and `make test-systemd` need: the Debian packaging
#              tools and systemd-nspawn (the systemd test boots the machine's own root with it).
# prometheus is there for its promtool (tests/admin_test checks the `metrics` output). Debian's
# prometheus (like redis-server and nginx) starts its server when installed: while this script
# installs, a policy-rc.d that forbids every start is in place, and any existing one is restored.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config make clang-format systemd man-db
  libabsl-dev liburing-dev libevent-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libtomlplusplus-dev nlohmann-json3-dev libspdlog-dev
  prometheus redis-tools python3-redis
  clang-14 libclang-rt-14-dev
  # The differential fuzz oracles (fuzz/*_diff_fuzz.cc, also replayed by the test suites), and
  # curl, a client of tests/http_clients_test.
  libhttp-parser-dev libhiredis-dev curl
)
# python3 runs perf/compare.py (standard library only); linux-perf counts its system calls per
# request (perf stat -e raw_syscalls:sys_enter) and perf/profile-cost.sh's, valgrind the exact
# instruction counts (perf/callgrind-*.sh, perf/observability-cost.sh, perf/profile-cost.sh).
bench_packages=(libboost-context-dev libuv1-dev libasio-dev redis-server nginx-light wrk
  python3 linux-perf valgrind)
package_packages=(debhelper dpkg-dev fakeroot lintian systemd-container)

for arg in "$@"; do
  case "$arg" in
    --bench) packages+=("${bench_packages[@]}") ;;
    --package) packages+=("${package_packages[@]}") ;;
    *) echo "install-deps: unknown argument '$arg'" >&2; exit 64 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root or install them with apt-get" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

policy=/usr/sbin/policy-rc.d
saved=/usr/sbin/policy-rc.d.install-deps-saved
# A saved policy left by an interrupted run is the machine's own: put it back first.
if [[ -e "$saved" ]]; then mv -f "$saved" "$policy"; fi
if [[ -e "$policy" ]]; then mv -f "$policy" "$saved"; fi
restore_policy() {
  rm -f "$policy"
  if [[ -e "$saved" ]]; then mv -f "$saved" "$policy"; fi
}
trap restore_policy EXIT
trap 'exit 130' INT TERM HUP  # so the EXIT trap restores the policy
printf '#!/bin/sh\n# reactord scripts/install-deps.sh is installing: start nothing.\nexit 101\n' \
  >"$policy"
chmod 755 "$policy"

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
