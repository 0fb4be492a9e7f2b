#!/bin/sh
# Indexing memory (issue #15): peak anonymous memory (RssAnon: heap, thread stacks, buffers) and
# peak file-backed memory (RssFile: mapped shards being written, libraries) of
# `longmixd index --tokenizer bytes`, sampled from /proc/PID/status every 10 ms, for each
# thread count and each corpus size (make-synth-corpus.py --bench N: N documents of 16-96
# tokens in 4 domains); plus VmHWM (the kernel's peak RSS, both kinds) and CPU time.
#
#   tests/bench/bench_index_memory.sh BUILD_DIR "DOCS..." "THREADS..."
#   e.g. tests/bench/bench_index_memory.sh build-rel "1000000 8000000" "1 2 8"
set -eu
build=$1
sizes=${2:-"1000000 8000000"}
threads=${3:-"1 2 8"}
longmixd=$(cd "$build" && pwd)/server/longmixd
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/lmx-bench-imem-XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "docs threads | wall s | CPU s | peak RssAnon MiB | peak RssFile MiB | VmHWM MiB | shards MB | load"
for n in $sizes; do
  rm -rf "$work/c"
  python3 "$here/../integration/make-synth-corpus.py" "$work/c" --bench "$n" > "$work/inputs"
  for t in $threads; do
    rm -rf "$work/idx"
    s0=$(date +%s.%N)
    # shellcheck disable=SC2046
    /usr/bin/time -f "%U %S" -o "$work/time" \
      "$longmixd" index --tokenizer bytes --threads "$t" --no-progress --out "$work/idx" $(cat "$work/inputs") \
      2>/dev/null &
    tpid=$!
    pid=
    while [ -z "$pid" ] && kill -0 $tpid 2>/dev/null; do pid=$(pgrep -P $tpid || true); done
    anon=0 file=0 hwm=0
    while [ -n "$pid" ] && kill -0 $pid 2>/dev/null; do
      st=$(cat /proc/$pid/status 2>/dev/null) || break
      a=$(echo "$st" | awk '/^RssAnon/ {print $2}')
      f=$(echo "$st" | awk '/^RssFile/ {print $2}')
      h=$(echo "$st" | awk '/^VmHWM/ {print $2}')
      [ -n "$a" ] && [ "$a" -gt "$anon" ] && anon=$a
      [ -n "$f" ] && [ "$f" -gt "$file" ] && file=$f
      [ -n "$h" ] && [ "$h" -gt "$hwm" ] && hwm=$h
      sleep 0.01
    done
    wait $tpid
    s1=$(date +%s.%N)
    cpu=$(awk '{print $1 + $2}' "$work/time")
    echo "$n $t $s0 $s1 $cpu $anon $file $hwm $(du -sm "$work/idx/shards" | cut -f1) $(cut -d' ' -f1 /proc/loadavg)" |
      awk '{printf "%s %s | %.2f | %.2f | %.1f | %.1f | %.1f | %s | %s\n", $1, $2, $4 - $3, $5,
                        $6 / 1024, $7 / 1024, $8 / 1024, $9, $10}'
  done
done
