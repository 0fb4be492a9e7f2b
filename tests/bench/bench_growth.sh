#!/bin/sh
# The growth curve of docs/SCALING.md (issue #15): an index of N tiny documents
# (make-tiny-corpus.py: 1-8 tokens each, `bytes` tokenizer) served with three plans (per_source,
# global, cut), and for each start of `longmixd serve`:
#   first     no plan tables, no verified record: verifies every shard, builds the tables
#   restart   record and tables in place: stat()s the shards, maps the tables
# with wall time to the port file, the daemon's CPU time (utime+stime of /proc/PID/stat) and
# RssAnon/RssFile once serving; then batch latency of step 0 and step 10^6 of each plan, cold
# (a fresh daemon after POSIX_FADV_DONTNEED on every index and table file) and warm (the same
# request again, best of 5; the response cache is off), with the daemon's CPU time for the
# cold request. Prints the load average with each part:
# the machine may be shared, so prefer the CPU and RSS columns. COLD=0: no eviction before the
# latency runs ("first" = the first request of a fresh daemon, whatever the page cache holds).
# LAT_PLANS=- skips the latency runs. OLD=PATH: the restarts and the index open again with
# another longmixd on the same index (an A/B of start-up code). Also timed: opening the index
# alone (`longmixd doc IDX 0`), evicted and warm.
#
#   [COLD=0] [LAT_PLANS="ps gl cut"|-] [OLD=longmixd] tests/bench/bench_growth.sh BUILD_DIR DOCS [WORKDIR]   (WORKDIR removed at the end)
set -eu
build=$1
docs=$2
longmixd=$(cd "$build" && pwd)/server/longmixd
here=$(cd "$(dirname "$0")" && pwd)
work=${3:-$(mktemp -d "${TMPDIR:-/tmp}/lmx-bench-growth-XXXXXX")}
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
load() { cut -d' ' -f1-3 /proc/loadavg; }
clk=$(getconf CLK_TCK)
. "$here/tiny_setup.sh"

t0=$(date +%s.%N)
tiny_corpus "$docs"
t1=$(date +%s.%N)
echo "corpus: $docs documents in $(echo "$t0 $t1" | awk '{printf "%.1f", $2 - $1}') s, $(du -sm "$work/c" | cut -f1) MB (load $(load))"
tiny_index /usr/bin/time -f "%e s wall, %U s user, %S s sys, max RSS %M KiB" -o "$work/itime"
echo "index: $(cat "$work/itime"), $(du -sm "$work/idx/shards" | cut -f1) MB of shards (load $(load))"
evict() {
  python3 - "$work/idx" <<'PY'
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        fd = os.open(os.path.join(root, f), os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
PY
}
start() { # sets pid, port and res ("wall s, cpu s, RssAnon, RssFile"); runs in this shell
  s0=$(date +%s.%N)
  tiny_serve_start
  s1=$(date +%s.%N)
  cpu=$(awk -v c="$clk" '{printf "%.2f", ($14 + $15) / c}' /proc/$pid/stat)
  anon=$(awk '/^RssAnon/ {print $2}' /proc/$pid/status)
  file=$(awk '/^RssFile/ {print $2}' /proc/$pid/status)
  res=$(echo "$s0 $s1 $cpu $anon $file" |
    awk '{printf "%.2f s wall, %.2f s CPU, RssAnon %.1f MiB, RssFile %.1f MiB", $2 - $1, $3, $4 / 1024, $5 / 1024}')
}
stop() { tiny_serve_stop; }
fetch() { # PLAN STEP -> seconds (a failure is reported, not fatal: the daemon is stopped after)
  curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/v1/plans/$1/batches/$2?rank=0&world=1" ||
    echo "request failed: $1 step $2 (curl $?)" >&2
}
start
echo "first start (verify + build tables): $res (load $(load))"
stop
du -sm "$work/idx/plan-tables" | awk '{print "plan tables: " $1 " MB"}'
evict
start
echo "restart, page cache evicted: $res (load $(load))"
stop
start
echo "restart, warm: $res (load $(load))"
stop
open_index() { # "evicted" or "warm": `longmixd doc IDX 0` = open the index + one record
  [ "$1" = warm ] || evict
  /usr/bin/time -f "%e s wall, %U s user, %S s sys, max RSS %M KiB" -o "$work/otime" "$longmixd" doc "$work/idx" 0 >/dev/null
  echo "index open ($1): $(cat "$work/otime") (load $(load))"
}
open_index evicted
open_index warm
if [ -n "${OLD:-}" ]; then
  new_longmixd=$longmixd
  longmixd=$(cd "$(dirname "$OLD")" && pwd)/$(basename "$OLD")
  echo "--- OLD=$longmixd"
  evict
  start
  echo "OLD restart, page cache evicted: $res (load $(load))"
  stop
  start
  echo "OLD restart, warm: $res (load $(load))"
  stop
  open_index evicted
  open_index warm
  longmixd=$new_longmixd
fi
lat=${LAT_PLANS:-ps gl cut}
[ "$lat" = - ] && lat=
for plan in $lat; do
  for step in 0 1000000; do
    [ "${COLD:-1}" = 0 ] || evict
    start
    c0=$(awk '{print $14 + $15}' /proc/$pid/stat)
    cold=$(fetch $plan $step)
    c1=$(awk '{print $14 + $15}' /proc/$pid/stat)
    best=99
    for _ in 1 2 3 4 5; do
      w=$(fetch $plan $step)
      best=$(echo "$best $w" | awk '{print ($2 < $1) ? $2 : $1}')
    done
    stop
    echo "$plan step $step: $([ "${COLD:-1}" = 0 ] && echo first || echo cold) $(echo "$cold" | awk '{printf "%.1f", $1 * 1000}') ms ($(echo "$c0 $c1" | awk -v c="$clk" '{printf "%.2f", ($2 - $1) / c}') s daemon CPU), warm $(echo "$best" | awk '{printf "%.1f", $1 * 1000}') ms (load $(load))"
  done
done
