#!/bin/sh
# The test command: installs dependencies, builds with -Werror, runs every ctest test.
#
#   ./tests/run.sh              # build/ : the normal build
#   ./tests/run.sh --sanitize   # build-asan/ : the same suite under ASan+UBSan
#   ./tests/run.sh --fuzz N     # build-fuzz/ : every fuzz target for N seconds (clang, libFuzzer)
#
# Tests that need ../shared (real tokenizers, the reference peer) skip themselves when it is absent;
# when it is present, the reference tokenizer is installed into the build folder first.
set -eu
cd "$(dirname "$0")/.."
mode=${1:-normal}
./deploy/install-deps.sh

jobs=$(nproc)
case "$mode" in
normal) build=build; flags="" ;;
--sanitize) build=build-asan; flags="-DLMX_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug" ;;
--fuzz)
  seconds=${2:-30}
  cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DLMX_FUZZ=ON -DLMX_WERROR=ON >/dev/null
  cmake --build build-fuzz -j"$jobs"
  FUZZ_JOBS=${FUZZ_JOBS:-$jobs} exec ./tests/fuzz/run-fuzz.sh build-fuzz "$seconds" ;;
*) echo "usage: tests/run.sh [--sanitize | --fuzz SECONDS]" >&2; exit 2 ;;
esac

# The reference tokenizer (HF tokenizers via Node.js) for the conformance tests, when available.
peers=$(pwd)/$build/peers
if [ -d ../shared/peers ] && command -v npm >/dev/null 2>&1 && [ ! -d "$peers/node_modules" ]; then
  mkdir -p "$peers" && cp -r ../shared/peers/. "$peers/"
  (cd "$peers" && npm ci --no-audit --no-fund --loglevel=error) || echo "tests/run.sh: peer install failed; conformance tests will skip" >&2
fi
export LMX_PEERS_DIR="$peers"

cmake -S . -B "$build" -DLMX_WERROR=ON $flags >/dev/null
cmake --build "$build" -j"$jobs"
# Sanitizer findings fail the test that triggered them.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build" --output-on-failure -j"$jobs"
