#!/bin/sh
# Parquet (issue #13): (1) the reader alone, `parquet_dump --count FILE text` (decode the text
# column of every row, no tokenization), against DuckDB reading the same column of the same files
# (sum of byte lengths; 1 and 2 threads) in the same run; (2) `longmixd index` of the same corpus as
# .jsonl.zst and as Parquet (snappy, written by DuckDB; one Parquet file per .jsonl.zst file), same
# threads, byte and llama3-bytelevel tokenizers. The issue's goals: Parquet indexing >= 80% of the
# .jsonl.zst speed; the reader faster than DuckDB.
#
#   tests/bench/bench_parquet.sh BUILD_DIR [MB]     (needs node/npm for DuckDB, python3, zstd)
set -eu
build=$(cd "$1" && pwd)
mb=${2:-50}
here=$(cd "$(dirname "$0")" && pwd)
shared=$(cd "$here/../../../shared" && pwd)
longmixd=$build/server/longmixd
dump=$build/tests/parquet_dump
tools=$build/parquet-tools
mkdir -p "$tools"
cp "$here/../tools/parquet/package.json" "$here/../tools/parquet/package-lock.json" "$here/../tools/parquet/bench.mjs" "$tools/"
[ -d "$tools/node_modules/@duckdb" ] || (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error)
corpus=/tmp/lmx-bench-parquet-$mb
if [ ! -f "$corpus/done" ]; then
  rm -rf "$corpus"
  python3 "$shared/corpus/build-corpus.py" "$corpus/src" --mb "$mb" >/dev/null
  mkdir -p "$corpus/zst" "$corpus/pq"
  for f in "$corpus"/src/train/*/*.jsonl.zst; do
    b=$(basename "$f" .jsonl.zst)
    cp "$f" "$corpus/zst/"
    zstd -qdc "$f" > "$corpus/$b.jsonl"
    node "$tools/bench.mjs" convert "$corpus/$b.jsonl" "$corpus/pq/$b.parquet"
    rm "$corpus/$b.jsonl"
  done
  touch "$corpus/done"
fi
echo "input: $corpus: $(ls "$corpus"/zst | wc -l) files; .jsonl.zst $(du -sm "$corpus/zst" | cut -f1) MB, .parquet $(du -sm "$corpus/pq" | cut -f1) MB; $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
now() { date +%s.%N; }
py() { python3 -c "$1" "$@"; }

# (1) reader alone, 3 rounds, best of each
best_ours=999; best_d1=999; best_d2=999
for round in 1 2 3; do
  t0=$(now)
  for f in "$corpus"/pq/*.parquet; do "$dump" --count "$f" text > /dev/null; done
  t1=$(now)
  ours=$(py 'import sys; print(float(sys.argv[3]) - float(sys.argv[2]))' "$t0" "$t1")
  d1=$(node "$tools/bench.mjs" read 1 "$corpus"/pq/*.parquet)
  d2=$(node "$tools/bench.mjs" read 2 "$corpus"/pq/*.parquet)
  best_ours=$(py 'import sys; print(min(float(sys.argv[2]), float(sys.argv[3])))' "$best_ours" "$ours")
  best_d1=$(py 'import sys; print(min(float(sys.argv[2]), float(sys.argv[3].split()[0])))' "$best_d1" "$d1")
  best_d2=$(py 'import sys; print(min(float(sys.argv[2]), float(sys.argv[3].split()[0])))' "$best_d2" "$d2")
done
bytes=$(echo "$d1" | cut -d' ' -f2)
ours_bytes=$(for f in "$corpus"/pq/*.parquet; do "$dump" --count "$f" text; done | awk '{s += $3} END {print s}')
[ "$bytes" = "$ours_bytes" ] || echo "WARNING: DuckDB counted $bytes text bytes, longmix $ours_bytes"
py '
import sys
b, o, d1, d2 = int(sys.argv[2]) / 1e6, float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
print(f"reader (text column, {b:.1f} MB, best of 3): longmix 1 thread {b / o:7.1f} MB/s ({o:.3f} s)   "
      f"DuckDB 1 thread {b / d1:7.1f} MB/s ({d1:.3f} s)   DuckDB 2 threads {b / d2:7.1f} MB/s ({d2:.3f} s)   "
      f"longmix/DuckDB-1t {d1 / o:.2f}x")' "$bytes" "$best_ours" "$best_d1" "$best_d2"

# (2) indexing, same threads: .jsonl.zst vs .parquet
for tok in bytes "$shared/fixtures/tokenizers/llama3-bytelevel/tokenizer.json"; do
  name=$(basename "$(dirname "$tok")"); [ "$tok" = bytes ] && name=bytes
  for threads in 2; do
    for fmt in zst pq; do
      out=$(mktemp -d /tmp/lmx-bench-pqidx-XXXXXX)
      t0=$(now); "$longmixd" index --tokenizer "$tok" --threads "$threads" --no-progress --out "$out/idx" "$corpus/$fmt" 2>/dev/null; t1=$(now)
      docs=$("$longmixd" stats "$out/idx" --json | python3 -c "import json,sys; s=json.load(sys.stdin); print(s['total_docs'], s['total_tokens'])")
      rm -rf "$out"
      eval "t_$fmt=$(py 'import sys; print(float(sys.argv[3]) - float(sys.argv[2]))' "$t0" "$t1")"
      eval "d_$fmt=\"$docs\""
    done
    py '
import sys
name, th, tz, tp, dz, dp = sys.argv[2:8]
tz, tp = float(tz), float(tp)
same = "same docs and tokens" if dz == dp else "MISMATCH"
print(f"index {name:16} threads {th}: .jsonl.zst {tz:.2f} s  .parquet {tp:.2f} s  parquet/jsonl.zst speed {tz / tp:.2f}"
      f"  ({dz} vs {dp}: {same})")' "$name" "$threads" "$t_zst" "$t_pq" "$d_zst" "$d_pq"
  done
done
