#!/usr/bin/env bash
# make test-systemd: reactord's Debian packages under a real systemd.
#
# Boots systemd in a container made of an overlay of this machine's own root (so the container
# has every package the host has, and writes go to a temporary upper layer), with a private
# network, installs the two packages from DEB_DIR with apt-get and checks the service against
# that systemd: start, STATUS=, the admin socket, reload, journald priorities, the watchdog,
# socket activation, a restart and an upgrade that refuse no connection, the drain on stop, the
# exposure level, sysusers and tmpfiles. Then builds
# examples/out-of-tree against the installed libreactor-dev.
#
# Usage (as root): tests/systemd/run.sh [DEB_DIR]   (default build/deb, as `make deb` leaves it)
# Every check prints PASS or FAIL; the last line counts them; the exit status is 1 on any FAIL.
# A container that cannot boot is a FAIL, never a skip.
set -uo pipefail
cd "$(dirname "$0")/../.."
deb_dir=${1:-build/deb}
readonly watchdog_sec=3  # WatchdogSec= for the test (the unit says 10s)

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
# check NAME COMMAND...: PASS or FAIL by the command's status; its output is shown on FAIL.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name"; [[ -z $out ]] || sed 's/^/    /' <<<"$out"; fi
}
finish() {
  echo "test-systemd: $passed passed, $failed failed"
  ((failed == 0))
  exit
}
abort() { fail "$*"; finish; }
# has REGEX: whether stdin has a line matching it. Reads all of stdin, unlike grep -q, whose early
# exit would fail the writer with SIGPIPE, and so the pipeline (pipefail).
has() { grep -E "$@" >/dev/null; }

[[ $(id -u) -eq 0 ]] || abort "test-systemd must run as root (it mounts an overlay and runs systemd-nspawn)"
command -v systemd-nspawn >/dev/null || abort "systemd-nspawn missing: scripts/install-deps.sh --package"
debs=("$deb_dir"/reactord_*.deb "$deb_dir"/libreactor-dev_*.deb)
for d in "${debs[@]}"; do [[ -f $d ]] || abort "no package $d: run make deb"; done

# --- the container -------------------------------------------------------------------------------
tmp=$(mktemp -d /tmp/reactord-systemd.XXXXXX)
root=$tmp/root
nspawn_pid=
cleanup() {
  if [[ -n $nspawn_pid ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
    kill -TERM "$nspawn_pid"  # nspawn shuts the container's systemd down
    for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$nspawn_pid" 2>/dev/null
    wait "$nspawn_pid" 2>/dev/null
  fi
  if mountpoint -q "$root"; then umount "$root" || umount -l "$root"; fi
  mountpoint -q "$root" || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

mkdir -p "$tmp"/{upper,work,root}
mount -t overlay overlay -o "lowerdir=/,upperdir=$tmp/upper,workdir=$tmp/work" "$root" ||
  abort "cannot mount the overlay of / on $root"
# The host's policy-rc.d (if any) forbids starting services; the package must start its own.
rm -f "$root/usr/sbin/policy-rc.d"
# Whatever an earlier install on the host left is not what this package creates.
rm -rf "$root/etc/reactord" "$root/etc/systemd/system/reactord.service.d"
stage=/var/tmp/reactord-test
mkdir -p "$root$stage"
cp "${debs[@]}" "$root$stage/"
cp -r examples/out-of-tree "$root$stage/"

# basic.target (journald, sysusers, tmpfiles, sockets) and nothing the host image has enabled
# for multi-user.target; no timers (apt-daily would compete for the dpkg lock).
systemd-nspawn -D "$root" --keep-unit --register=no --private-network --boot \
  --console=read-only systemd.unit=basic.target systemd.mask=timers.target \
  >"$tmp/boot.log" 2>&1 &
nspawn_pid=$!
cpid=
for _ in $(seq 100); do
  cpid=$(ps --ppid "$nspawn_pid" -o pid=,comm= | awk '$2 == "systemd" { print $1 }')
  [[ -n $cpid ]] && break
  kill -0 "$nspawn_pid" 2>/dev/null || break
  sleep 0.1
done
# inside COMMAND...: runs it inside the container, with a clean environment.
# in_long: the same without the 60 s limit.
in_long() {
  nsenter -t "$cpid" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}
inside() { timeout 60 nsenter -t "$cpid" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"; }
# Until the manager's bus exists, systemctl fails at once ("Failed to connect to bus"): retry.
state=
for _ in $(seq 60); do
  [[ -n $cpid ]] || break
  state=$(inside systemctl is-system-running --wait 2>&1)
  [[ $state == running || $state == degraded ]] && break
  kill -0 "$nspawn_pid" 2>/dev/null || break
  sleep 0.5
done
if [[ $state != running && $state != degraded ]]; then
  tail -n 30 "$tmp/boot.log" | sed 's/^/    /'
  abort "the container boots systemd (PID ${cpid:-none}, state '${state}')"
fi
pass "the container boots systemd (PID $cpid, $state)"

private_network() {
  [[ $(readlink "/proc/$cpid/ns/net") != $(readlink /proc/self/ns/net) ]] &&
    [[ $(inside ip -o link show | awk -F': ' '{ print $2 }') == lo ]]
}
check "the container has a private network (loopback only)" private_network

# --- install -------------------------------------------------------------------------------------
inside getent passwd reactord >/dev/null && inside userdel reactord
inside getent group reactord >/dev/null && inside groupdel reactord
install_packages() {  # no 60 s limit: man-db's trigger alone can take longer on a loaded machine
  in_long sh -c "cd $stage && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    ./reactord_*.deb ./libreactor-dev_*.deb"
}
check "apt-get install ./reactord_*.deb ./libreactor-dev_*.deb (no network)" install_packages
# The example builds in the background while the service is tested; collected at the end.
in_long sh -c "cd $stage/out-of-tree && nice cmake -S . -B build -G Ninja >build.log 2>&1 &&
  nice cmake --build build >>build.log 2>&1 &&
  nice g++ -std=c++20 -o echo-pkgconfig echo.cc \$(pkg-config --cflags --libs reactor) >>build.log 2>&1;
  echo \$? > build.status" &
example_pid=$!

postinst=/var/lib/dpkg/info/reactord.postinst
user_created() {
  inside grep -q '^[[:space:]]*systemd-sysusers .*reactord.conf$' "$postinst" &&
    inside getent passwd reactord | has ':/nonexistent:/usr/sbin/nologin$' &&
    inside getent group reactord >/dev/null
}
check "systemd-sysusers (postinst) created the reactord user and group (absent before)" user_created
tmpfiles_ran() {
  inside grep -q '^[[:space:]]*systemd-tmpfiles .*--create reactord.conf' "$postinst" &&
    [[ $(inside stat -c '%a %U:%G' /etc/reactord) == "755 root:root" ]]
}
check "systemd-tmpfiles (postinst) made /etc/reactord 0755 root:root" tmpfiles_ran
check "the package enabled reactord.service" test "$(inside systemctl is-enabled reactord)" = enabled
check "the package started reactord.service" test "$(inside systemctl is-active reactord)" = active
check "reactord.socket is installed, not enabled" \
  test "$(inside systemctl is-enabled reactord.socket)" = disabled
check "systemd-analyze verify reactord.service reactord.socket" \
  inside systemd-analyze verify reactord.service reactord.socket

# --- the test configuration: the installed one with the debug routes on, a short watchdog --------
conf=/etc/reactord/reactord.toml
inside sed -i 's/^debug_routes = false/debug_routes = true/; s/^shards = 0/shards = 2/' "$conf"
inside mkdir -p /etc/systemd/system/reactord.service.d
inside sh -c "printf '[Service]\nWatchdogSec=${watchdog_sec}s\n' > /etc/systemd/system/reactord.service.d/test.conf"
inside systemctl daemon-reload
inside systemctl stop reactord

# journal helpers: the time now (the container shares the host's clock), and the unit's lines
# since a time (optionally at PRIORITY or worse). Not cursors: journalctl 252 with --after-cursor
# and a filter skips the first matching entry after the cursor.
now() { date +%s.%6N; }
journal_after() { inside journalctl -q -u reactord ${1:+--since "@$1"} -o cat ${2:+-p "$2"}; }
# wait_journal SINCE REGEX [PRIORITY]: up to 10 s for a matching line since SINCE; on failure
# shows the unit's last lines (with their priorities).
wait_journal() {
  for _ in $(seq 50); do
    journal_after "$1" "${3:-}" | has "$2" && return 0
    sleep 0.2
  done
  echo "no line matching '$2'${3:+ at priority $3 or worse} in:"
  inside journalctl -q -u reactord ${1:+--since "@$1"} -o verbose --output-fields=PRIORITY,MESSAGE |
    grep -E '^ +(PRIORITY|MESSAGE)=' | paste - - | tail -n 15
  return 1
}
main_pid() { inside systemctl show -p MainPID --value reactord; }
http() { inside curl -s -m 30 -o /dev/null -w '%{http_code}' "http://127.0.0.1:8080$1"; }

# --- start, STATUS=, the admin socket ------------------------------------------------------------
c=$(now)
check "systemctl start reactord" inside systemctl start reactord
check "reactord is active" test "$(inside systemctl is-active reactord)" = active
started_at=$SECONDS
first_pid=$(main_pid)
status_line() { inside systemctl status reactord | grep -E 'Status: "backend [a-z_]+, 2 shards; echo '; }
check "systemctl status shows the STATUS= line" status_line
stats=$(inside reactorctl stats 2>&1)
check "reactorctl stats through /run/reactord/admin.sock: backend io_uring (inside the unit's seccomp filter)" \
  grep -q "backend io_uring" <<<"$stats"
check "the admin socket is reactord:reactord 0660" \
  test "$(inside stat -c '%a %U:%G' /run/reactord/admin.sock)" = "660 reactord:reactord"
check "/run/reactord (RuntimeDirectory=) is reactord:reactord 0750" \
  test "$(inside stat -c '%a %U:%G' /run/reactord)" = "750 reactord:reactord"
exposure=$(inside systemd-analyze security reactord 2>/dev/null |
  sed -n 's/.*Overall exposure level for reactord.service: \([0-9.]*\).*/\1/p')
check "systemd-analyze security reactord (running unit): ${exposure:-?} is 2.0 or better" \
  awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }'

# --- reload --------------------------------------------------------------------------------------
# systemd's own debug log shows the RELOADING=1 notification and the state changes it causes.
inside systemd-analyze log-level debug
c=$(now)
inside sed -i 's/^level = "info"/level = "warn"/' "$conf"
check "systemctl reload reactord (log level info -> warn)" inside systemctl reload reactord
reloaded() {
  for _ in $(seq 50); do
    inside journalctl -q --since "@$c" -o cat >"$tmp/reload.log"
    grep -q 'reactord.service: Changed reload -> running' "$tmp/reload.log" && break
    sleep 0.2
  done
  grep -qE 'notification message from PID [0-9]+ \(RELOADING=1, MONOTONIC_USEC=[0-9]+\)' \
    "$tmp/reload.log" && grep -q 'reactord.service: Changed running -> reload' "$tmp/reload.log" &&
    grep -q 'reactord.service: Changed reload -> running' "$tmp/reload.log"
}
check "the reload goes through RELOADING=1 (MONOTONIC_USEC) to reloading and back to running" reloaded
inside systemd-analyze log-level info
check "reactord is active after the reload" test "$(inside systemctl is-active reactord)" = active
# At warn the reload's own closing line, logged at info after the new level applies, is gone.
level_applied() {
  wait_journal "$c" 'reload: reading' && sleep 1 && ! journal_after "$c" | has 'reload: done'
}
check "the new log level takes effect (no info line after the reload at warn)" level_applied
c=$(now)
inside sed -i 's/^level = "warn"/level = "info"/' "$conf"
inside systemctl reload reactord
check "back at info: the journal says 'reload: done (log level info)'" \
  wait_journal "$c" '^reload: done \(log level info\)$'
c=$(now)
inside cp "$conf" "$conf.good"
inside sh -c "echo 'this is = = not toml' >> $conf"
inside systemctl reload reactord
check "an invalid file: the journal says the running configuration stays" \
  wait_journal "$c" 'reload: .*keeping the running configuration' err
old_config_kept() {
  [[ $(inside systemctl is-active reactord) == active ]] && inside reactorctl config | has '^level = "info"'
}
check "an invalid file: reactord stays active on the old configuration" old_config_kept
inside mv "$conf.good" "$conf"

# --- journald priorities -------------------------------------------------------------------------
c=$(now)
check "GET /debug/block?ms=300 answers 200" test "$(http '/debug/block?ms=300')" = 200
check "the stall report is in journalctl -u reactord -p warning" \
  wait_journal "$c" 'shard [0-9]+ stalled [0-9]+ ms' warning
ordinary_not_warning() {
  journal_after "" | has '^ready: ' && ! journal_after "" warning | has '^(ready: |service )'
}
check "ordinary lines are not at warning (ready:, service ... listening)" ordinary_not_warning

# --- the watchdog --------------------------------------------------------------------------------
# An idle daemon is never killed: over at least two watchdog periods since the start, the same
# process, no restart and no timeout in the journal.
sleep $((2 * watchdog_sec - (SECONDS - started_at) > 0 ? 2 * watchdog_sec - (SECONDS - started_at) : 0))
idle_alive() {
  [[ $(main_pid) == "$first_pid" ]] && [[ $(inside systemctl show -p NRestarts --value reactord) == 0 ]] &&
    ! inside journalctl -q -u reactord -o cat | has 'Watchdog timeout'
}
check "idle for $((SECONDS - started_at)) s with WatchdogSec=${watchdog_sec}s: never killed" idle_alive
c=$(now)
block_ms=$((watchdog_sec * 1000 + 4000))
http "/debug/block?ms=$block_ms" >/dev/null &
curl_pid=$!
check "a shard blocked ${block_ms} ms: systemd kills reactord for a watchdog timeout" \
  wait_journal "$c" 'reactord.service: Watchdog timeout'
wait "$curl_pid"
restarted() {
  for _ in $(seq 50); do
    [[ $(inside systemctl is-active reactord) == active && $(main_pid) != "$first_pid" ]] && break
    sleep 0.2
  done
  [[ $(inside systemctl is-active reactord) == active && $(main_pid) != "$first_pid" ]] &&
    [[ $(inside systemctl show -p NRestarts --value reactord) == 1 ]]
}
check "Restart=on-failure brings it back (new MainPID, active, NRestarts=1)" restarted

# --- socket activation ---------------------------------------------------------------------------
inside systemctl stop reactord 2>/dev/null  # "can still be activated by reactord.socket"
socket_only() {
  inside systemctl start reactord.socket && [[ $(inside systemctl is-active reactord) == inactive ]]
}
check "reactord.socket starts, reactord.service stays stopped" socket_only
c=$(now)
check "the first connection starts reactord: reactorctl ping answers" inside reactorctl ping
check "reactord is active, started by the socket" test "$(inside systemctl is-active reactord)" = active
serves_passed_fd() {
  journal_after "$c" | has '^admin socket \(activated\)$' && inside reactorctl stats | has backend
}
check "the daemon serves the admin protocol on the passed fd" serves_passed_fd
inside systemctl stop reactord 2>/dev/null  # "can still be activated by reactord.socket"
check "after systemctl stop reactord, the socket still starts it: reactorctl ping" inside reactorctl ping
inside systemctl stop reactord.socket

# --- restart and upgrade with nothing refused ----------------------------------------------------
# On the installed config's backend ("auto": io_uring, checked above). Its multishot accept takes
# connections for the old process ahead of its fibers; the drain serves those before it closes a
# listener, and the rest wait in the queue for the new process (docs/operations.md).
inside systemctl restart reactord
on_uring() { inside reactorctl stats | grep -q "backend io_uring"; }
check "the restart below runs on io_uring" on_uring
check "the fd store holds the admin socket and both shards' listeners of the 3 services (7 fds)" \
  test "$(inside systemctl show -p NFileDescriptorStore --value reactord)" = 7
# connect_loop SECONDS NAME: in the background, for SECONDS, a new connection to the echo service
# for each line, one exchange each; then $stage/NAME holds "EXCHANGES FAILURES", NAME.err the
# shell's errors.
connect_loop() {
  in_long bash -c "end=\$((SECONDS + $1)); ok=0; bad=0
    while ((SECONDS < end)); do
      if exec 3<>/dev/tcp/127.0.0.1/7007 && echo \"line \$ok\" >&3 && read -r -t 5 reply <&3 &&
        [[ \$reply == \"line \$ok\" ]]; then ok=\$((ok + 1)); else bad=\$((bad + 1)); fi
      exec 3<&- 3>&-
    done 2>$stage/$2.err; echo \$ok \$bad > $stage/$2" &
}
# no_failures NAME MIN: the loop's exchanges all succeeded, and at least MIN of them.
no_failures() {
  local ok bad
  read -r ok bad < <(inside cat "$stage/$1")
  echo "exchanges ${ok:-?}, failures ${bad:-?}"
  inside head -n 5 "$stage/$1.err"
  [[ ${bad:-1} == 0 && ${ok:-0} -ge $2 ]]
}
pid_before=$(main_pid)
connect_loop 4 restart
restart_loop=$!
sleep 1
check "systemctl restart reactord while a client keeps connecting" inside systemctl restart reactord
wait "$restart_loop"
check "the restart: no connection refused or reset (the fd store kept the sockets open)" \
  no_failures restart 200
restarted_active() { [[ $(main_pid) != "$pid_before" && $(inside systemctl is-active reactord) == active ]]; }
check "the restart: a new MainPID, active" restarted_active
# upgrade_on BACKEND: `reactorctl upgrade` while a client keeps connecting, on that backend. On
# io_uring a connection arriving in the instant of the hand-over used to be stranded in a listener's
# queue (the old ring's exclusive accept wakeup taken, then cancelled): the client waited its 5 s for
# an echo in 4 of 5 runs here, until a stopped listener swept its queue (docs/backends.md).
upgrade_on() {
  local backend=$1 pid_before upgrade_out new_pid upgrade_loop
  inside sed -i "s/^backend = \"[a-z_]*\"/backend = \"$backend\"/" "$conf"
  inside systemctl reset-failed reactord  # the restarts above count against the unit's start limit
  inside systemctl restart reactord
  check "the upgrade below runs on $backend" has "backend $backend" < <(inside reactorctl stats)
  pid_before=$(main_pid)
  connect_loop 4 "upgrade-$backend"
  upgrade_loop=$!
  sleep 1
  upgrade_out=$(inside reactorctl upgrade 2>&1)
  check "reactorctl upgrade under systemd on $backend: ok" has '^ok: pid [0-9]+ ' <<<"$upgrade_out"
  new_pid=$(sed -n 's/^ok: pid \([0-9]*\) .*/\1/p' <<<"$upgrade_out")
  wait "$upgrade_loop"
  check "the upgrade on $backend: no connection refused, reset or left waiting" \
    no_failures "upgrade-$backend" 200
  upgraded() {
    for _ in $(seq 50); do inside kill -0 "$pid_before" 2>/dev/null || break; sleep 0.2; done
    echo "MainPID $(main_pid), new pid ${new_pid:-?}, old pid $pid_before, $(inside systemctl is-active reactord)"
    ! inside kill -0 "$pid_before" 2>/dev/null && [[ -n $new_pid && $(main_pid) == "$new_pid" ]] &&
      [[ $(inside systemctl is-active reactord) == active ]] && inside reactorctl ping >/dev/null
  }
  check "the upgrade on $backend: the new process is MainPID, the old one exited, reactord stays active" upgraded
}
upgrade_on io_uring
upgrade_on epoll
inside sed -i 's/^backend = "[a-z_]*"/backend = "auto"/' "$conf"
# systemd 252 cannot wait for a main process that is not its child, as the upgraded one is ("Supervising
# process N which is not our child"): here a stop then SIGKILLs it at once instead of letting it
# drain, and the unit ends "failed" (docs/operations.md). Stopped and reset here, so the drain
# below is tested on a main process that is systemd's own child.
inside systemctl stop reactord 2>/dev/null
inside systemctl reset-failed reactord 2>/dev/null

# --- stop drains ---------------------------------------------------------------------------------
inside systemctl start reactord
c=$(now)
inside sh -c "curl -s -m 30 -o /dev/null -w '%{http_code}' 'http://127.0.0.1:8080/debug/block?ms=1500' > $stage/inflight" &
inflight_pid=$!
sleep 0.5
check "systemctl stop reactord" inside systemctl stop reactord
wait "$inflight_pid"
check "a request in flight at the stop is answered (200)" test "$(inside cat $stage/inflight)" = 200
stopped_cleanly() {
  if ! journal_after "$c" | has 'reactord.service: Deactivated successfully' ||
    [[ $(inside systemctl show -p ExecMainStatus --value reactord) != 0 ]]; then
    journal_after "$c" | tail -n 30  # printed by check on failure
    return 1
  fi
}
check "stop: exit 0 in the journal (Deactivated successfully), status 0" stopped_cleanly

# --- libreactor-dev ------------------------------------------------------------------------------
wait "$example_pid"
example_ok() {
  [[ $(inside cat "$stage/out-of-tree/build.status") == 0 ]] || { inside cat "$stage/out-of-tree/build.log"; return 1; }
  # Each binary echoes one line on a port of its own; bash's /dev/tcp is the client.
  inside bash -c "cd $stage/out-of-tree || exit 1
    ./build/reactor-echo 127.0.0.1:7100 >/dev/null 2>&1 & p1=\$!
    ./echo-pkgconfig 127.0.0.1:7101 epoll >/dev/null 2>&1 & p2=\$!
    sleep 1
    s=0
    for port in 7100 7101; do
      exec 3<>/dev/tcp/127.0.0.1/\$port && echo hello >&3 && read -r -t 5 line <&3 &&
        [[ \$line == hello ]] || s=1
      exec 3<&-
    done
    kill \$p1 \$p2; exit \$s"
}
check "examples/out-of-tree builds against the installed libreactor-dev (CMake and pkg-config) and echoes" \
  example_ok

# --- purge ---------------------------------------------------------------------------------------
purged() {
  in_long apt-get purge -y -q reactord libreactor-dev >/dev/null &&
    ! inside test -e /etc/reactord && ! inside test -e /run/reactord &&
    ! inside test -e /lib/systemd/system/reactord.service &&
    [[ $(inside systemctl is-active reactord) != active ]]
}
check "apt-get purge: the service is stopped, /etc/reactord and /run/reactord are gone" purged

finish
