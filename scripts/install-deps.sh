#!/usr/bin/env bash
# Installs the Debian packages reactord needs to build and test, and only those that are missing.
# Idempotent and silent when everything is present. Usage: scripts/install-deps.sh [--bench]
#   --bench  also installs the peers used only by benchmarks (perf/).
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config make clang-format systemd man-db
  libabsl-dev liburing-dev libevent-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libtomlplusplus-dev nlohmann-json3-dev libspdlog-dev
)
bench_packages=(libboost-context-dev libuv1-dev libasio-dev)

for arg in "$@"; do
  case "$arg" in
    --bench) packages+=("${bench_packages[@]}") ;;
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
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
