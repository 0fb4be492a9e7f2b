#!/bin/sh
# Plan item tables off the heap (issue #15): anonymous RSS and start time of `longmixd serve`
# with three plans (per_source, global, cut) over an index of N tiny documents
# (make-synth-corpus.py --bench N), R starts each:
#   first     no plan tables yet: built (into mapped files in INDEX/plan-tables)
#   restart   tables mapped, not rebuilt
# With OLD=path/to/an/older/longmixd the same starts by that binary (tables on the heap).
# RssAnon/RssFile come from /proc/PID/status once the port file appears (serving).
#
#   tests/bench/bench_plan_tables.sh BUILD_DIR [DOCS] [R]
set -eu
build=$1
docs=${2:-2000000}
reps=${3:-2}
longmixd=$(cd "$build" && pwd)/server/longmixd
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/lmx-bench-tables-XXXXXX)
trap 'rm -rf "$work"' EXIT
# shellcheck disable=SC2046
python3 "$here/../integration/make-synth-corpus.py" "$work/c" --bench "$docs" > "$work/inputs"
# shellcheck disable=SC2046
(cd "$work" && "$longmixd" index --tokenizer bytes --threads 2 --no-progress --out "$work/idx" $(cat inputs) 2>/dev/null)
cat > "$work/cfg.json" <<JSON
{"listen": "127.0.0.1:0", "index": "$work/idx", "threads": 2,
 "plans": {"ps": {"strategy": "per_source", "seq_len": 8192, "global_batch": 8, "seed": 1},
           "gl": {"strategy": "global", "seq_len": 8192, "global_batch": 8, "seed": 2, "long_threshold": 64},
           "cut": {"strategy": "cut", "cut_len": 32, "seq_len": 8192, "global_batch": 8, "seed": 3}}}
JSON
echo "index: $docs documents, $(du -sm "$work/idx/shards" | cut -f1) MB of shards"
start_once() { # BINARY -> "seconds RssAnon(MiB) RssFile(MiB)"
  rm -f "$work/port"
  t0=$(date +%s.%N)
  "$1" serve --config "$work/cfg.json" --port-file "$work/port" 2>>"$work/log" &
  pid=$!
  while [ ! -s "$work/port" ]; do
    kill -0 $pid 2>/dev/null || { cat "$work/log" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s.%N)
  anon=$(awk '/^RssAnon/ {print $2}' /proc/$pid/status)
  file=$(awk '/^RssFile/ {print $2}' /proc/$pid/status)
  curl -sf -o /dev/null "http://127.0.0.1:$(cat "$work/port")/v1/plans/ps/batches/1000000" || echo "batch failed" >&2
  kill -TERM $pid
  wait $pid || true
  echo "$t0 $t1 $anon $file" | awk '{printf "%.2f s, RssAnon %.1f MiB, RssFile %.1f MiB", $2 - $1, $3 / 1024, $4 / 1024}'
}
i=0
while [ $i -lt "$reps" ]; do
  rm -rf "$work/idx/plan-tables"
  echo "first start (builds tables):   $(start_once "$longmixd")"
  echo "restart (maps tables):         $(start_once "$longmixd")"
  if [ -n "${OLD:-}" ]; then
    echo "old binary (heap tables):      $(start_once "$OLD")"
  fi
  i=$((i + 1))
done
du -sh "$work/idx/plan-tables" | sed 's/^/plan tables on disk: /'
