#!/bin/sh
# Instructions per served batch, counted by callgrind: repeatable on a busy machine, where the
# wall-clock bench_serve.sh is not. Serves N distinct cold requests (built, zstd'd and hashed)
# and then the same N again (response cache hits) from one longmixd under callgrind; prints the
# daemon's total instructions and the per-request figure for each phase.
#
#   tests/bench/bench_serve_instr.sh LONGMIXD [N]   # e.g. build/server/longmixd 32
#
# Two binaries (before/after a change) compared in one sitting: run it once per binary.
# Needs ../shared (corpus + tokenizer fixture), valgrind and curl.
set -eu
longmixd=$(realpath "$1")
n=${2:-32}
work=$(mktemp -d /tmp/lmx-bench-instr-XXXXXX)
trap 'kill $LPID 2>/dev/null; rm -rf "$work"' EXIT
. "$(dirname "$0")/serve_setup.sh"
serve_setup "$longmixd" 1
valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" --dump-instr=no --collect-atstart=yes \
  "$longmixd" serve --config "$work/cfg.json" --port-file "$work/port" 2>"$work/vg.log" &
LPID=$!
while [ ! -s "$work/port" ]; do sleep 0.2; done
url="http://127.0.0.1:$(cat "$work/port")"
# counts the daemon's instructions so far (callgrind_control dumps without stopping it)
total() { callgrind_control -d "$LPID" >/dev/null 2>&1; sleep 0.5
          cat "$work"/cg.* | awk '/^summary:/ {s += $2} END {print s}'; rm -f "$work"/cg.*; }
base=$(total)
fetch() { i=0; while [ $i -lt "$n" ]; do
            curl -sf -o /dev/null "$url/v1/plans/p/batches/$((i / 32))?rank=$((i % 32))&world=32"; i=$((i + 1)); done; }
fetch; cold=$(total)
fetch; warm=$(total)
echo "$1: start $base instr; cold $((cold / n)) instr/request; warm (cache) $((warm / n)) instr/request; n=$n"
