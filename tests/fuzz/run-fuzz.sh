#!/usr/bin/env bash
# Runs every built libFuzzer target for SECONDS each, starting from its seed corpus.
# Usage: tests/fuzz/run-fuzz.sh BUILD_DIR SECONDS [TARGET...]
#   BUILD_DIR  a build configured with -DCMAKE_C_COMPILER=clang -DLMX_FUZZ=ON
#   TARGET     fuzz_wire, fuzz_config, ... (default: every tests/fuzz_* executable in BUILD_DIR)
# Environment: FUZZ_JOBS=N runs N targets at once (default 1); FUZZ_ARTIFACTS=DIR keeps crash
# inputs and logs there (default BUILD_DIR/fuzz-artifacts).
# Seeds are copied into a temporary working corpus, so the repository is never modified.
# Exits non-zero when any target crashed, leaked, timed out or failed to start.
set -uo pipefail
BUILD=${1:?usage: run-fuzz.sh BUILD_DIR SECONDS [TARGET...]}
SECONDS_EACH=${2:?usage: run-fuzz.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "$BUILD" && pwd)
ART=${FUZZ_ARTIFACTS:-$BUILD/fuzz-artifacts}
JOBS=${FUZZ_JOBS:-1}
mkdir -p "$ART"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for exe in "$BUILD"/tests/fuzz_*; do
    [ -x "$exe" ] && [ -f "$exe" ] && targets+=("$(basename "$exe")")
  done
fi
[ ${#targets[@]} -gt 0 ] || { echo "run-fuzz.sh: no fuzz targets in $BUILD/tests (configure with -DLMX_FUZZ=ON)" >&2; exit 2; }

max_len() {
  case $1 in
    fuzz_tokenizer) echo 32768 ;;
    fuzz_charsmap) echo 262144 ;; # the real nmt_nfkc charsmap seed is 237 KB
    fuzz_index) echo 16384 ;;
    fuzz_wire) echo 16384 ;;
    fuzz_config) echo 8192 ;;
    fuzz_gzip) echo 65536 ;;
    fuzz_mds) echo 32768 ;;
    fuzz_parquet) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

run_one() {
  local t=$1 exe=$BUILD/tests/$1 corpus=$WORK/$1 log=$ART/$1.log
  mkdir -p "$corpus"
  [ -d "$HERE/corpus/$t" ] && cp -R "$HERE/corpus/$t/." "$corpus/"
  local args=(-max_total_time="$SECONDS_EACH" -max_len="$(max_len "$t")" -timeout=30 -rss_limit_mb=4096
              -artifact_prefix="$ART/$t-" -print_final_stats=1)
  [ -f "$HERE/$t.dict" ] && args+=(-dict="$HERE/$t.dict")
  if [ ! -x "$exe" ]; then
    echo "FAIL $t: $exe not built" | tee "$log"
    return 1
  fi
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} "$exe" "${args[@]}" "$corpus" >"$log" 2>&1
  local rc=$?
  local execs speed
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if [ $rc -eq 0 ]; then
    printf 'ok   %-16s %ss  %s execs  %s exec/s\n' "$t" "$SECONDS_EACH" "${execs:-?}" "${speed:-?}"
  else
    printf 'FAIL %-16s exit %d; log %s\n' "$t" "$rc" "$log"
    grep -E 'ERROR|SUMMARY|invariant|Test unit written' "$log" | head -5 | sed 's/^/     /'
  fi
  return $rc
}

status=0
pids=()
names=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  names+=("$t")
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 0.2; done
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || status=1
done
[ $status -eq 0 ] && echo "run-fuzz.sh: no crashes" || echo "run-fuzz.sh: crashes (inputs and logs in $ART)" >&2
exit $status
