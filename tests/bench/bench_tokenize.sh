#!/bin/sh
# Tokenizer throughput: `longmixd tokenize` vs the reference (HF tokenizers via ../shared/peers),
# same input, same machine, same run. Prints MB/s of each and the ratio.
#
#   tests/bench/bench_tokenize.sh LONGMIXD PEERS_DIR [MB]
#
# PEERS_DIR holds an installed copy of ../shared/peers (npm ci done); MB is the corpus size
# (default 50), built with ../shared/corpus/build-corpus.py into /tmp/lmx-bench-corpus-MB.
set -eu
longmixd=$1
peers=$2
mb=${3:-50}
shared=$(cd "$(dirname "$0")/../../../shared" && pwd)
corpus=/tmp/lmx-bench-corpus-$mb
[ -f "$corpus/docs.jsonl" ] || {
  python3 "$shared/corpus/build-corpus.py" "$corpus" --mb "$mb" >/dev/null
  zstd -dc "$corpus"/train/*/*.jsonl.zst > "$corpus/docs.jsonl"
}
bytes=$(python3 -c "import json,sys; print(sum(len(json.loads(l)['text'].encode()) for l in open(sys.argv[1])))" "$corpus/docs.jsonl")
echo "input: $corpus/docs.jsonl, $(wc -l < "$corpus/docs.jsonl") documents, $bytes bytes of text, $(nproc) cores"
for fx in llama2-sp-bpe llama3-bytelevel; do
  tj=$shared/fixtures/tokenizers/$fx/tokenizer.json
  t0=$(date +%s.%N)
  "$longmixd" tokenize --tokenizer "$tj" < "$corpus/docs.jsonl" > /dev/null
  t1=$(date +%s.%N)
  peer=$(node "$peers/hf-tokenize.js" "$tj" --bench < "$corpus/docs.jsonl" 2>&1 >/dev/null | tail -1)
  python3 - "$fx" "$bytes" "$t0" "$t1" "$peer" <<'PY'
import json, sys
fx, nbytes, t0, t1, peer = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5])
ours = nbytes / 1e6 / (t1 - t0)
print(f"{fx:18} longmixd {ours:7.2f} MB/s ({t1 - t0:.2f} s, whole command)  "
      f"peer {peer['mb_per_s']:6.2f} MB/s ({peer['seconds']:.2f} s, encode only)  ratio {ours / peer['mb_per_s']:.1f}x")
PY
done
