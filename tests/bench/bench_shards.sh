#!/bin/sh
# Restart time against the number of shards (issue #15, docs/SCALING.md "SlimPajama-627B"): an
# index has one shard per input file (SlimPajama's train split: tens of thousands of files), and
# a restart of an unchanged index stat()s every shard and opens it (no hashing: verified.json).
# For each count S: S input files of 20 tiny documents (`bytes` tokenizer), one per_source plan;
# a first start (verifies, builds the table), then restarts: time from exec to the port file,
# best of 3, with the daemon's CPU time at that point. The slope between counts is the cost of
# one shard at a restart.
#
#   tests/bench/bench_shards.sh BUILD_DIR [COUNTS] [WORKDIR]   (COUNTS default "100 1000 4000")
set -eu
build=$1
counts=${2:-100 1000 4000}
longmixd=$(cd "$build" && pwd)/server/longmixd
work=${3:-$(mktemp -d "${TMPDIR:-/tmp}/lmx-bench-shards-XXXXXX")}
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
clk=$(getconf CLK_TCK)
here=$(cd "$(dirname "$0")" && pwd)
. "$here/tiny_setup.sh" # tiny_serve_start/stop on $work/cfg.json
start() { # -> "WALL CPU" of one start, daemon stopped after
  t0=$(date +%s.%N)
  tiny_serve_start
  t1=$(date +%s.%N)
  cpu=$(awk '{print $14 + $15}' /proc/$pid/stat)
  tiny_serve_stop
  echo "$t0 $t1 $cpu" | awk -v c="$clk" '{printf "%.3f %.2f\n", $2 - $1, $3 / c}'
}
for n in $counts; do
  rm -rf "$work/in" "$work/idx"
  python3 - "$work/in" "$n" <<'PY'
import json, os, sys
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out)
for i in range(n):
    with open(os.path.join(out, "part-%06d.jsonl" % i), "w") as f:
        for k in range(20):
            f.write(json.dumps({"text": "doc %d of file %d " % (k, i) + "x" * (k * 7 % 50)}) + "\n")
PY
  t0=$(date +%s.%N)
  "$longmixd" index --tokenizer bytes --threads 2 --no-progress --out "$work/idx" "web=$work/in" 2>/dev/null
  t1=$(date +%s.%N)
  rm -rf "$work/in"
  cat > "$work/cfg.json" <<JSON
{"listen": "127.0.0.1:0", "index": "$work/idx", "threads": 2, "cache_mb": 0,
 "plans": {"ps": {"strategy": "per_source", "seq_len": 8192, "global_batch": 8, "seed": 1}}}
JSON
  first=$(start)
  best=""
  for k in 1 2 3; do
    r=$(start)
    best=$(printf '%s\n%s\n' "$best" "$r" | awk 'NF { if (b == "" || $1 < w) { w = $1; b = $0 } } END { print b }')
  done
  echo "$n shards: index $(echo "$t0 $t1" | awk '{printf "%.1f", $2 - $1}') s; first start $(echo "$first" | awk '{print $1 " s wall, " $2 " s CPU"}'); restart (best of 3) $(echo "$best" | awk '{print $1 " s wall, " $2 " s CPU"}') (load $(cut -d' ' -f1-3 /proc/loadavg))"
done
