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

# (1) reader alone, 3 rounds, best wall and best CPU (user+system) of each; the machine may be
# shared, so CPU seconds are the steadier comparison.
python3 - "$dump" "$tools/bench.mjs" "$corpus"/pq/*.parquet <<'PY'
import resource, subprocess, sys, time
dump, bench, files = sys.argv[1], sys.argv[2], sys.argv[3:]
def ours():
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN); t0 = time.time(); n = 0
    for f in files:
        out = subprocess.run([dump, "--count", f, "text"], capture_output=True, check=True, text=True).stdout
        n += int(out.split()[2])
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.time() - t0, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), n
def duck(th):
    w, c, n, _ = subprocess.run(["node", bench, "read", str(th), *files], capture_output=True, check=True,
                                text=True).stdout.split()
    return float(w), float(c), int(n)
res = {"longmix 1 thread": [], "DuckDB 1 thread": [], "DuckDB 2 threads": []}
for _ in range(3):
    res["longmix 1 thread"].append(ours())
    res["DuckDB 1 thread"].append(duck(1))
    res["DuckDB 2 threads"].append(duck(2))
sizes = {r[2] for v in res.values() for r in v}
mb = sizes.pop() / 1e6
if sizes:
    print("WARNING: the readers counted different text bytes")
print(f"reader: text column of {len(files)} files, {mb:.1f} MB of text, best of 3")
for k, v in res.items():
    w, c = min(r[0] for r in v), min(r[1] for r in v)
    print(f"  {k:18} wall {w:6.3f} s ({mb / w:7.1f} MB/s)   CPU {c:6.3f} s ({mb / c:7.1f} MB/s of CPU)")
PY

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
