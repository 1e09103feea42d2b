#!/bin/bash
# repro: daemon + load + profile, N times
B=${B:-/work/main/build/debug}
cd /tmp/pc
ulimit -c unlimited
for i in $(seq 1 ${N:-6}); do
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  cat > r.toml <<TOML
[runtime]
backend = "epoll"
shards = 1
[log]
level = "warn"
[admin]
socket = "/tmp/pc/admin.sock"
[[service]]
name = "echo"
kind = "echo"
listen = "127.0.0.1:$port"
idle_timeout_ms = 0
TOML
  rm -f admin.sock
  $B/daemon/reactord --config r.toml 2>> d.log &
  pid=$!
  sleep 0.5
  $B/perf/load/reactord-load --port $port --connections 1 --size 64 --duration 4 --json > /dev/null 2>&1 &
  lp=$!
  for hz in 99 1000 99; do
  $B/ctl/reactorctl --socket admin.sock --json profile --seconds 1 --hz $hz > p.json 2>p.err
  echo "run $i profile $hz rc=$? $(head -c 100 p.err)"
  done
  wait $lp
  kill -TERM $pid; wait $pid; echo "daemon rc=$?"
done
