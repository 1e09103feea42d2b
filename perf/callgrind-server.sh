#!/usr/bin/env bash
# Exact user-space instructions per request of a server under reactord-load, with callgrind: the
# server runs under `valgrind --tool=callgrind` twice, serving exactly N1 and then N2 requests, and
# the difference divided by N2 - N1 is one request's instructions (start-up, connection set-up and
# shutdown cancel out), in total and per function. System calls per request the same way with
# `strace -c -f`. Independent of machine load, unlike every timing in perf/compare.py.
#
#   perf/callgrind-server.sh BUILD_DIR SERVER [MODE] [CONNECTIONS] [SIZE] [N1 N2]
#   SERVER: reactord-epoll, reactord-io_uring, reactord-libevent, epoll, libuv, asio,
#           redis (MODE resp) or nginx (MODE http)
# reactord runs one shard with idle_timeout_ms = 0, as in perf/compare.py (the peers arm no timers).
# CACHE_SIM=1 adds valgrind's cache simulation (--cache-sim=yes) and prints both runs' totals
# (Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw): simulated misses per request, by the same difference.
#   e.g. perf/callgrind-server.sh build/release reactord-epoll echo 100 64 20000 40000
#        perf/callgrind-server.sh build/release nginx http 50
set -euo pipefail

if [[ $# -lt 2 ]]; then
  sed -n '2,12p' "$0" >&2
  exit 64
fi
build=$(cd "$1" && pwd)
server=$2
mode=${3:-echo}
conns=${4:-100}
size=${5:-64}
n1=${6:-20000}
n2=${7:-40000}
load="$build/perf/load/reactord-load"
[[ -x "$load" ]] || { echo "callgrind-server: $load not found" >&2; exit 1; }

tmp=$(mktemp -d)
trap '[[ -n "${KEEP:-}" ]] || rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

server_argv() {
  case "$server" in
    reactord-*)
      cat >"$tmp/reactord.toml" <<EOF
[runtime]
backend = "${server#reactord-}"
shards = 1
[log]
level = "warn"
[admin]
socket = "$tmp/admin.sock"
[[service]]
name = "svc"
kind = "$mode"
listen = "127.0.0.1:$port"
idle_timeout_ms = 0
EOF
      echo "$build/daemon/reactord --config $tmp/reactord.toml" ;;
    epoll | libuv | asio)
      local exe=epoll_echo
      [[ $server == libuv ]] && exe=uv_echo
      [[ $server == asio ]] && exe=asio_echo
      echo "$build/perf/peers/$exe --port $port" ;;
    redis) echo "redis-server --port $port --save '' --appendonly no --dir $tmp" ;;
    nginx)
      mkdir -p "$tmp/nginx"
      cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1; master_process off; daemon off; pid $tmp/nginx/pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $tmp/nginx/b; proxy_temp_path $tmp/nginx/p; fastcgi_temp_path $tmp/nginx/f;
  uwsgi_temp_path $tmp/nginx/u; scgi_temp_path $tmp/nginx/s;
  server { listen 127.0.0.1:$port; location / { default_type text/plain; return 200 "reactord shard 0\n"; } } }
EOF
      echo "nginx -p $tmp/nginx -e $tmp/nginx/error.log -c $tmp/nginx/nginx.conf" ;;
    *) echo "callgrind-server: unknown server '$server'" >&2; exit 64 ;;
  esac
}

wait_port() {
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "callgrind-server: $server did not listen on $port" >&2
  exit 1
}

# run TOOL N: the server under TOOL while reactord-load sends exactly N requests, then SIGTERM.
run() {
  local tool=$1 n=$2 pid
  case "$tool" in
    callgrind) eval "exec valgrind --tool=callgrind ${CACHE_SIM:+--cache-sim=yes} --callgrind-out-file=$tmp/cg.$n $(server_argv)" \
                 >"$tmp/server.$n.log" 2>&1 & ;;
    strace) eval "exec strace -f -c -o $tmp/st.$n $(server_argv)" >"$tmp/server.$n.log" 2>&1 & ;;
  esac
  pid=$!
  wait_port
  "$load" --port "$port" --mode "$mode" --connections "$conns" --size "$size" --requests "$n" \
    --duration 600 >"$tmp/load.$n" || { cat "$tmp/load.$n" >&2; exit 1; }
  # strace stays attached until its tracee exits: signal the server, not strace.
  if [[ $tool == strace ]]; then pkill -TERM -P "$pid"; else kill -TERM "$pid"; fi
  wait "$pid" || true
}

for n in "$n1" "$n2"; do run callgrind "$n"; done
for n in "$n1" "$n2"; do run strace "$n"; done

echo "# $server, $mode, $conns connections, $size B: per request (difference of $n1 and $n2 requests)"
if [[ -n "${CACHE_SIM:-}" ]]; then
  for n in "$n1" "$n2"; do
    echo "totals at $n requests: $(callgrind_annotate --inclusive=no --threshold=100 "$tmp/cg.$n" |
      grep 'PROGRAM TOTALS' | sed 's/ ([0-9.]*%)//g')"
  done
fi
python3 - "$tmp" "$n1" "$n2" <<'EOF'
import re, subprocess, sys
tmp, n1, n2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def functions(n):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100",
                          f"{tmp}/cg.{n}"], capture_output=True, text=True).stdout
    total = int(re.search(r"^([\d,]+) .*PROGRAM TOTALS", out, re.M).group(1).replace(",", ""))
    fns = {}
    for m in re.finditer(r"^\s*([\d,]+) (?:\([^)]*\) )?\s*(\S.*?)\s*$", out, re.M):
        name = m.group(2)
        if "PROGRAM TOTALS" in name or name.startswith("Ir") or name.startswith("-"):
            continue
        fns[name] = fns.get(name, 0) + int(m.group(1).replace(",", ""))
    return total, fns
t1, f1 = functions(n1)
t2, f2 = functions(n2)
d = n2 - n1
print(f"user-space instructions per request: {(t2 - t1) / d:,.0f}")
rows = sorted(((f2.get(k, 0) - f1.get(k, 0)) / d, k) for k in set(f1) | set(f2))
for v, k in reversed(rows[-25:]):
    if v >= 5:
        print(f"  {v:8,.0f}  {k[:110]}")
def calls(n):
    c = {}
    for line in open(f"{tmp}/st.{n}"):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            c[f[-1]] = int(f[3])
    return c
c1, c2 = calls(n1), calls(n2)
per = {k: (c2.get(k, 0) - c1.get(k, 0)) / d for k in set(c1) | set(c2)}
print(f"system calls per request: {sum(per.values()):.2f} (" + ", ".join(
    f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda x: -x[1]) if v >= 0.01) + ")")
EOF
