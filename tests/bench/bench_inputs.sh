#!/bin/sh
# Indexing speed by input format (issue #13): the same documents as .jsonl.zst (the reference),
# .jsonl.gz (gzip -6), MDS with raw shards and MDS with zstd shards (tests/tools/mds writer),
# indexed with the same tokenizer and threads, interleaved ROUNDS times (best time counts: the
# machine is shared). Also with the `bytes` tokenizer, where the reader's share of the work is
# largest. The issue's target: .jsonl.gz at >= 80% of .jsonl.zst speed.
#
#   tests/bench/bench_inputs.sh LONGMIXD [MB] [THREADS] [ROUNDS]
set -eu
longmixd=$1
mb=${2:-50}
threads=${3:-2}
rounds=${4:-3}
here=$(cd "$(dirname "$0")" && pwd)
shared=$(cd "$here/../../../shared" && pwd)
corpus=/tmp/lmx-bench-corpus-$mb
[ -d "$corpus/train" ] || python3 "$shared/corpus/build-corpus.py" "$corpus" --mb "$mb" >/dev/null
fmt=/tmp/lmx-bench-inputs-$mb
if [ ! -f "$fmt/.done" ]; then
  rm -rf "$fmt"
  mkdir -p "$fmt/zst" "$fmt/gz" "$fmt/mds" "$fmt/mdszstd"
  for f in "$corpus"/train/*/*.jsonl.zst; do
    b=$(basename "$f" .jsonl.zst)
    cp "$f" "$fmt/zst/$b.jsonl.zst"
    zstd -dc "$f" | gzip -6 -c > "$fmt/gz/$b.jsonl.gz"
    zstd -dc "$f" | python3 -c '
import json, sys
for l in sys.stdin:
    o = json.loads(l)
    print(json.dumps({"text": o["text"], "source": o["meta"]["redpajama_set_name"]}, ensure_ascii=False))' > "$fmt/samples.jsonl"
    node "$here/../tools/mds/mds-writer.js" "$fmt/mds/$b" --columns text:str,source:str < "$fmt/samples.jsonl"
    node "$here/../tools/mds/mds-writer.js" "$fmt/mdszstd/$b" --columns text:str,source:str --compression zstd:3 \
      < "$fmt/samples.jsonl"
  done
  rm "$fmt/samples.jsonl"
  touch "$fmt/.done"
fi
text_mb=$(zstd -dc "$fmt"/zst/*.jsonl.zst | python3 -c "import json,sys; print(round(sum(len(json.loads(l)['text'].encode()) for l in sys.stdin) / 1e6, 1))")
echo "input: $corpus ($(ls "$fmt/zst" | wc -l) files, $text_mb MB of text; on disk: zst $(du -sm "$fmt/zst" | cut -f1) MB, gz $(du -sm "$fmt/gz" | cut -f1) MB, mds $(du -sm "$fmt/mds" | cut -f1) MB, mds.zstd $(du -sm "$fmt/mdszstd" | cut -f1) MB), threads $threads, $(nproc) cores, best of $rounds"
for tok in bytes "$shared/fixtures/tokenizers/llama3-bytelevel/tokenizer.json"; do
  best=$(mktemp)
  r=0
  while [ "$r" -lt "$rounds" ]; do
    for kind in zst gz mds mdszstd; do
      extra=""
      case $kind in mds*) extra="--domain-field source" ;; esac
      out=$(mktemp -d /tmp/lmx-bench-inputs-out-XXXXXX)
      t0=$(date +%s.%N)
      # shellcheck disable=SC2086
      "$longmixd" index --tokenizer "$tok" --threads "$threads" --no-progress --out "$out/idx" $extra "$fmt/$kind" 2>/dev/null
      t1=$(date +%s.%N)
      rm -rf "$out"
      echo "$kind $t0 $t1" >> "$best"
    done
    r=$((r + 1))
  done
  python3 - "$best" "$text_mb" "$(basename "$(dirname "$tok")")" <<'PY'
import sys
rows, mb, tok = open(sys.argv[1]).read().split("\n"), float(sys.argv[2]), sys.argv[3]
best = {}
for r in rows:
    if r:
        k, a, b = r.split()
        best[k] = min(best.get(k, 1e9), float(b) - float(a))
ref = best["zst"]
for k in ("zst", "gz", "mds", "mdszstd"):
    name = {"zst": ".jsonl.zst", "gz": ".jsonl.gz", "mds": "MDS raw", "mdszstd": "MDS .zstd"}[k]
    print(f"{tok if tok != '.' else 'bytes':17} {name:11} {mb / best[k]:7.1f} MB/s ({best[k]:.2f} s)  vs .jsonl.zst {ref / best[k]:5.0%}")
PY
  rm -f "$best"
done
