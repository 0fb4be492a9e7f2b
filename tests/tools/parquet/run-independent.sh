#!/usr/bin/env bash
# ctest parquet.independent_writers: installs the pinned writers (npm ci) into BUILD/parquet-tools,
# writes the matrix (gen.mjs matrix: DuckDB, arrow-rs via parquet-wasm, hyparquet-writer; all
# codecs, dictionary on/off, page v1/v2, delta encodings, several row groups and pages, nulls, a
# struct column) and compares our reader's rows with hyparquet's and DuckDB's (compare.mjs).
# Exit 77 (skipped) without node/npm or when the packages cannot be installed.
set -euo pipefail
BUILD=${1:?usage: run-independent.sh BUILD_DIR PARQUET_DUMP [ROWS]}
DUMP=${2:?}
ROWS=${3:-2000}
HERE=$(cd "$(dirname "$0")" && pwd)
command -v node >/dev/null && command -v npm >/dev/null || { echo "skipped: no node/npm"; exit 77; }
T=$BUILD/parquet-tools
mkdir -p "$T"
cp "$HERE/package.json" "$HERE/package-lock.json" "$HERE/gen.mjs" "$HERE/compare.mjs" "$T/"
if ! cmp -s "$T/package-lock.json" "$T/node_modules/.package-lock.json.ci" 2>/dev/null; then
  (cd "$T" && npm ci --no-audit --no-fund --loglevel=error) || { echo "skipped: npm ci failed (offline?)"; exit 77; }
  cp "$T/package-lock.json" "$T/node_modules/.package-lock.json.ci"
fi
rm -rf "$T/matrix"
node "$T/gen.mjs" "$T/matrix" "$ROWS" matrix
node "$T/compare.mjs" "$T/matrix" "$DUMP"
