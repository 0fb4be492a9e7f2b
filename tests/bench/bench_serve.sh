#!/bin/sh
# longmixd vs nginx serving the same bytes (issue #6): 128K-token sequences with u32 ids (LLaMA-3
# tokenizer, 128K vocab), one sequence per request (rank r of world = global_batch), 32 concurrent
# keep-alive connections (wrk, 2 threads), T seconds each. nginx serves the very batch bodies
# longmixd produced, as static files, so both send identical byte counts per request.
#
# Two longmixd runs: "warm" cycles over the same 128 requests as nginx, so after the first pass
# every answer comes from the response cache (proto/HTTP.md, "Response cache"); "cold" never
# repeats a request (step = floor(i/32), rank = i%32, walking upward far past what T seconds can
# reach, from step 4 on), so every answer is built and hashed: the uncached per-request cost.
#
#   tests/bench/bench_serve.sh BUILD_DIR [SECONDS] [CONNECTIONS]
#
# Needs ../shared (corpus + tokenizer fixture), wrk and nginx (Debian: wrk, nginx-light).
set -eu
build=$1
secs=${2:-10}
conns=${3:-32}
longmixd=$build/server/longmixd
work=$(mktemp -d /tmp/lmx-bench-serve-XXXXXX)
trap 'kill $LPID $NPID 2>/dev/null; rm -rf "$work"' EXIT
. "$(dirname "$0")/serve_setup.sh"
serve_setup "$longmixd" 2
"$longmixd" serve --config "$work/cfg.json" --port-file "$work/port" 2>"$work/longmixd.log" &
LPID=$!
while [ ! -s "$work/port" ]; do sleep 0.1; done
lport=$(cat "$work/port")
# The same bodies as static files: steps 0..3, all 32 ranks.
mkdir -p "$work/www"
n=0
for step in 0 1 2 3; do
  r=0
  while [ $r -lt 32 ]; do
    curl -s -o "$work/www/$n.bin" "http://127.0.0.1:$lport/v1/plans/p/batches/$step?rank=$r&world=32"
    n=$((n + 1)); r=$((r + 1))
  done
done
chmod 755 "$work" && chmod -R a+rX "$work/www"
size=$(stat -c %s "$work/www/0.bin")
nport=$((lport + 1))
cat > "$work/nginx.conf" <<NGINX
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on; tcp_nopush on; keepalive_requests 1000000;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  server { listen 127.0.0.1:$nport; root $work/www; }
}
NGINX
mkdir -p "$work/tmp"
nginx -c "$work/nginx.conf" -g 'daemon off;' &
NPID=$!
sleep 0.5
# wrk cycles through the same 128 request paths on both servers.
cat > "$work/longmixd.lua" <<'LUA'
local i = 0
request = function()
  local k = i % 128; i = i + 1
  return wrk.format("GET", "/v1/plans/p/batches/" .. (k // 32) .. "?rank=" .. (k % 32) .. "&world=32")
end
LUA
sed -i 's|(k // 32)|math.floor(k / 32)|' "$work/longmixd.lua"
# Cold: every request distinct. wrk gives each thread its own Lua state, so thread t takes
# i = 128+t, 130+t, ... (stride = the 2 threads of run() below): no two requests coincide, and
# none is one of the 128 above (steps 0-3), which the warm runs have cached.
cat > "$work/cold.lua" <<'LUA'
local n = 0
function setup(thread) thread:set("tid", n); n = n + 1 end
function init(args) i = 128 + tid end
request = function()
  local k = i; i = i + 2
  return wrk.format("GET", "/v1/plans/p/batches/" .. math.floor(k / 32) .. "?rank=" .. (k % 32) .. "&world=32")
end
LUA
cat > "$work/nginx.lua" <<'LUA'
local i = 0
request = function() local k = i % 128; i = i + 1; return wrk.format("GET", "/" .. k .. ".bin") end
LUA
cat > "$work/zstd.lua" <<'LUA'
local i = 0
request = function()
  local k = i % 128; i = i + 1
  return wrk.format("GET", "/v1/plans/p/batches/" .. math.floor(k / 32) .. "?rank=" .. (k % 32) .. "&world=32",
                    {["Accept-Encoding"] = "zstd"})
end
LUA
echo "body: $size bytes per request (one 131072-token sequence, u32 ids + spans), $conns connections, $secs s, $(nproc) cores"
# run URL SCRIPT NAME TAG: prints one line; the req/s go to $work/rps.TAG for the ratios.
run() { wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$2" "$1" | awk -v name="$3" -v out="$work/rps.$4" '
  /Requests\/sec/ {rps=$2} /Transfer\/sec/ {tps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2}
  /Non-2xx/ {err=$NF} /Socket errors/ {serr=$0}
  END {printf "%-28s %10s req/s %10s/s  p50 %8s  p99 %8s  non-2xx %s %s\n", name, rps, tps, p50, p99, (err?err:0), serr;
       print rps > out}'; }
cache() { curl -s "http://127.0.0.1:$lport/metrics" |
  awk '/^longmix_cache_(hits_total|misses_total) / {sub("longmix_cache_", ""); printf "%s ", $0} END {print ""}'; }
c0=$(cache)
run "http://127.0.0.1:$lport" "$work/longmixd.lua" "longmixd warm (plain)" warm
c1=$(cache)
run "http://127.0.0.1:$nport" "$work/nginx.lua" "nginx static (plain)" nginx
run "http://127.0.0.1:$lport" "$work/cold.lua" "longmixd cold (plain)" cold
c2=$(cache)
run "http://127.0.0.1:$lport" "$work/zstd.lua" "longmixd warm (zstd)" zstd
echo "cache counters: before $c0| after warm $c1| after cold $c2| after zstd $(cache)"
awk -v w="$(cat "$work/rps.warm")" -v c="$(cat "$work/rps.cold")" -v n="$(cat "$work/rps.nginx")" \
  'BEGIN {printf "ratio longmixd/nginx (plain): warm (cache hits) %.2f, cold (every request built and hashed) %.2f\n",
          w / n, c / n}'
