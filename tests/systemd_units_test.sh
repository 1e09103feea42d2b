#!/usr/bin/env bash
# Installs reactord into a staging root and checks its unit: `systemd-analyze verify` prints
# nothing, and `systemd-analyze security --offline=true` rates its exposure 2.0 or better.
# verify needs ExecStart's binary and the Documentation= man page to exist, so it checks a copy
# of the unit pointing into the staging root, with MANPATH set to the staged pages.
set -euo pipefail
build=$1
stage=$(mktemp -d /tmp/reactord-stage-XXXXXX)
trap 'rm -rf "$stage"' EXIT

DESTDIR="$stage/root" cmake --install "$build" >/dev/null
unit=$(find "$stage/root" -name reactord.service -path "*systemd/system*" | head -n 1)
[[ -n "$unit" ]] || { echo "reactord.service not installed"; exit 1; }
bin=$(sed -n 's|^ExecStart=\([^ ]*\).*|\1|p' "$unit")
prefix=${bin%/bin/reactord}
for f in "$bin" /etc/reactord/reactord.toml "$prefix"/lib/sysusers.d/reactord.conf \
         "$prefix"/lib/tmpfiles.d/reactord.conf "$prefix"/lib/sysctl.d/60-reactord.conf \
         "$prefix"/share/man/man8/reactord.8; do
  [[ -f "$stage/root$f" ]] || { echo "not installed: $f"; exit 1; }
done
"$stage/root$bin" --check-config --config "$stage/root/etc/reactord/reactord.toml" >/dev/null

sed "s|^ExecStart=$bin|ExecStart=$stage/root$bin|" "$unit" > "$stage/reactord.service"
out=$(MANPATH="$stage/root$prefix/share/man" systemd-analyze verify "$stage/reactord.service" 2>&1)
if [[ -n "$out" ]]; then
  echo "systemd-analyze verify complained:"; echo "$out"; exit 1
fi
exposure=$(systemd-analyze security --offline=true "$stage/reactord.service" 2>/dev/null |
           sed -n 's/.*Overall exposure level for reactord.service: \([0-9.]*\).*/\1/p')
echo "exposure level: $exposure"
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' || {
  echo "exposure $exposure is worse than 2.0"; exit 1; }
echo "systemd units: ok"
