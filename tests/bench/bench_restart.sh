#!/bin/sh
# Restart time of `longmixd serve` with and without the verified record (issue #15, verify once).
# A ~210 MB synthetic index (tests/integration/make-synth-corpus.py, 4 copies of its 6 domains
# = 24 shards, `bytes` tokenizer, u16 ids). Each start is timed from exec until the port file
# appears (serving), R times each:
#   first     no verified.json: every shard is read and hashed (what every start did before)
#   restart   verified.json matches: shards are only stat'ed
#   cold      as first, after posix_fadvise(DONTNEED) on every shard (pages from the disk, as far
#             as this machine's storage allows; the page cache is not dropped system-wide)
# With OLD=path/to/an/older/longmixd, the same index is also started by that binary (it
# verifies every shard at every start).
#
#   tests/bench/bench_restart.sh BUILD_DIR [R]
set -eu
build=$1
reps=${2:-3}
longmixd=$build/server/longmixd
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/lmx-bench-restart-XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 "$here/../integration/make-synth-corpus.py" "$work/c" >/dev/null
inputs=
for k in 0 1 2 3; do
  mkdir -p "$work/in$k"
  for f in "$work"/c/*.jsonl; do
    d=$(basename "$f" .jsonl)
    ln "$f" "$work/in$k/$d.jsonl"
    inputs="$inputs $d=$work/in$k/$d.jsonl"
  done
done
# shellcheck disable=SC2086
"$longmixd" index --tokenizer bytes --threads 2 --no-progress --out "$work/idx" $inputs 2>/dev/null
cat > "$work/cfg.json" <<JSON
{"listen": "127.0.0.1:0", "index": "$work/idx", "threads": 2,
 "plans": {"p": {"strategy": "per_source", "seq_len": 8192, "global_batch": 8, "seed": 1}}}
JSON
size=$(du -sb "$work/idx/shards" | cut -f1)
nshards=$(ls "$work/idx/shards" | wc -l)
echo "index: $nshards shards, $((size / 1000000)) MB"

start_once() { # BINARY -> seconds until serving
  rm -f "$work/port"
  t0=$(date +%s.%N)
  "$1" serve --config "$work/cfg.json" --port-file "$work/port" 2>>"$work/log" &
  pid=$!
  while [ ! -s "$work/port" ]; do
    kill -0 $pid 2>/dev/null || { cat "$work/log" >&2; exit 1; }
    sleep 0.005
  done
  t1=$(date +%s.%N)
  kill -TERM $pid
  wait $pid || true
  echo "$t0 $t1" | awk '{printf "%.3f", $2 - $1}'
}
evict() { python3 -c 'import os,sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$work"/idx/shards/*; }

row() { # NAME BINARY PREP
  t=
  i=0
  while [ $i -lt "$reps" ]; do
    $3
    t="$t $(start_once "$2")"
    i=$((i + 1))
  done
  printf '%-28s' "$1"
  echo "$t" | awk '{min = 1e9; for (i = 1; i <= NF; i++) if ($i < min) min = $i; printf "min %.3f s   (runs:%s)\n", min, $0}'
}
forget() { rm -f "$work/idx/verified.json"; }
forget_cold() { forget; evict; }
nothing() { :; }
start_once "$longmixd" >/dev/null # warm the page cache and write the record
row "first start (reads all)" "$longmixd" forget
row "first start, evicted" "$longmixd" forget_cold
start_once "$longmixd" >/dev/null
row "restart (record)" "$longmixd" nothing
row "restart, evicted" "$longmixd" evict
if [ -n "${OLD:-}" ]; then
  row "old binary" "$OLD" nothing
  row "old binary, evicted" "$OLD" evict
fi
for t in 1 2; do
  printf 'verify --threads %s:         ' $t
  "$longmixd" verify "$work/idx" --threads $t 2>&1 >/dev/null | sed 's/^longmixd verify: //'
done
grep "verified" "$work/log" | sed -n '1p;$p' 
