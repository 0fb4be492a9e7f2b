#!/bin/sh
# Index throughput end to end (read .jsonl.zst, decompress, parse, tokenize, write shards,
# checksum, manifest) against tokenize-only (`longmixd tokenize` on the same text, decompressed
# beforehand), with 1 and 2 threads, for both real tokenizers. The issue's goal: indexing at
# >= 80% of tokenize-only speed.
#
#   tests/bench/bench_index.sh LONGMIXD [MB]
set -eu
longmixd=$1
mb=${2:-50}
shared=$(cd "$(dirname "$0")/../../../shared" && pwd)
corpus=/tmp/lmx-bench-corpus-$mb
[ -f "$corpus/docs.jsonl" ] || {
  python3 "$shared/corpus/build-corpus.py" "$corpus" --mb "$mb" >/dev/null
  zstd -dc "$corpus"/train/*/*.jsonl.zst > "$corpus/docs.jsonl"
}
text_mb=$(python3 -c "import json,sys; print(sum(len(json.loads(l)['text'].encode()) for l in open(sys.argv[1])) / 1e6)" "$corpus/docs.jsonl")
echo "input: $corpus ($(ls "$corpus"/train/*/*.jsonl.zst | wc -l) .jsonl.zst files, $text_mb MB of text), $(nproc) cores"
secs() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$2"; }
for fx in llama2-sp-bpe llama3-bytelevel; do
  tj=$shared/fixtures/tokenizers/$fx/tokenizer.json
  for threads in 1 2; do
    out=$(mktemp -d /tmp/lmx-bench-index-XXXXXX)
    t0=$(date +%s.%N); "$longmixd" index --tokenizer "$tj" --threads "$threads" --no-progress --out "$out/idx" "$corpus/train" 2>/dev/null; t1=$(date +%s.%N)
    "$longmixd" tokenize --tokenizer "$tj" --threads "$threads" < "$corpus/docs.jsonl" > /dev/null; t2=$(date +%s.%N)
    rm -rf "$out"
    python3 - "$fx" "$threads" "$text_mb" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" <<'PY'
import sys
fx, th, mb, ti, tt = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
print(f"{fx:18} threads {th}: index {mb / ti:6.1f} MB/s ({ti:.2f} s)  tokenize-only {mb / tt:6.1f} MB/s ({tt:.2f} s)"
      f"  index/tokenize {tt / ti:.2f}")
PY
  done
done
