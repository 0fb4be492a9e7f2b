#!/bin/sh
# First batch of a restarted daemon with a warm page cache (issue #15, docs/SCALING.md): the
# index and plans of bench_growth.sh (N tiny documents, plans per_source/global/cut), a first start
# that builds the plan tables (and their epoch 0 indexes), then for each plan and step (0, 10^6)
# two fresh daemons, each answering the same request once:
#   new    the step's epochs were never used: walked (and written beside the tables)
#   again  a restart after a run that used them: read from the epoch index files
# with wall time of the request, the daemon's CPU time and minor page faults during it. No
# eviction: every file is in the page cache (bench_growth.sh measures the evicted case).
#
#   tests/bench/bench_first_batch.sh BUILD_DIR DOCS [WORKDIR]   (WORKDIR removed at the end)
set -eu
build=$1
docs=$2
longmixd=$(cd "$build" && pwd)/server/longmixd
here=$(cd "$(dirname "$0")" && pwd)
work=${3:-$(mktemp -d "${TMPDIR:-/tmp}/lmx-bench-first-XXXXXX")}
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
. "$here/tiny_setup.sh"
tiny_corpus "$docs"
tiny_index
clk=$(getconf CLK_TCK)
once() { # PLAN STEP -> "W ms (C s daemon CPU, F minor faults)"
  tiny_serve_start
  set -- "$1" "$2" "$(awk '{print $14 + $15, $10}' /proc/$pid/stat)"
  t=$(curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/v1/plans/$1/batches/$2?rank=0&world=1")
  a=$(awk '{print $14 + $15, $10}' /proc/$pid/stat)
  tiny_serve_stop
  echo "$t $3 $a" | awk -v c="$clk" '{printf "%.1f ms (%.2f s CPU, %d faults)", $1 * 1000, ($4 - $2) / c, $5 - $3}'
}
tiny_serve_start
tiny_serve_stop
echo "$docs documents: tables built ($(du -sm "$work/idx/plan-tables" | cut -f1) MB with the epoch 0 indexes) (load $(cut -d' ' -f1-3 /proc/loadavg))"
for plan in ps gl cut; do
  for step in 0 1000000; do
    echo "$plan step $step: new $(once $plan $step), again $(once $plan $step) (load $(cut -d' ' -f1-3 /proc/loadavg))"
  done
done
