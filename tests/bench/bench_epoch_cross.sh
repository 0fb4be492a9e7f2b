#!/bin/sh
# A run crossing epochs (issue #15, docs/SCALING.md): steps 0..STEPS-1 of one plan fetched in order
# by one client, as a trainer does, on the index of bench_growth.sh (N tiny documents in 8 equal
# domains, plans ps/gl/cut). The batch that enters an epoch of a domain with no index for it
# used to walk the whole epoch holding the plan's lock; the next epoch is now made ready in the
# background once the run is past the middle of the current one. Prints the latency
# distribution of the requests, the daemon's CPU, the epoch walks by kind (metrics) and its
# RssAnon/RssFile after the run, for the
# build given and, with OLD=path/to/longmixd, for that binary on the same index. Epoch index
# files are removed before each run (each starts by walking epoch 0 of every domain).
#
#   tests/bench/bench_epoch_cross.sh BUILD_DIR DOCS [STEPS] [PLAN] [WORKDIR]
#   PACE=S: sleep S seconds between requests (a trainer's step time; default 0)
set -eu
build=$1
docs=$2
steps=${3:-400}
plan=${4:-ps}
here=$(cd "$(dirname "$0")" && pwd)
work=${5:-$(mktemp -d "${TMPDIR:-/tmp}/lmx-bench-cross-XXXXXX")}
pace=${PACE:-0}
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
longmixd=$(cd "$build" && pwd)/server/longmixd
. "$here/tiny_setup.sh"
tiny_corpus "$docs"
tiny_index
tiny_serve_start # builds the tables
tiny_serve_stop
clk=$(getconf CLK_TCK)
run() { # LONGMIXD LABEL
  longmixd=$1
  rm -f "$work/idx/plan-tables/"*.epoch.*
  tiny_serve_start
  c0=$(awk '{print $14 + $15}' /proc/$pid/stat)
  s=0
  : > "$work/lat"
  while [ $s -lt "$steps" ]; do
    curl -sf -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/v1/plans/$plan/batches/$s?rank=0&world=1" >> "$work/lat"
    [ "$pace" = 0 ] || sleep "$pace"
    s=$((s + 1))
  done
  c1=$(awk '{print $14 + $15}' /proc/$pid/stat)
  rss=$(awk '/^RssAnon|^RssFile/ {printf "%s %.1f MiB ", $1, $2 / 1024}' /proc/$pid/status)
  walks=$(curl -sf "http://127.0.0.1:$port/metrics" | awk -v p="$plan" '
    index($0, "longmix_plan_epoch_walks_total{plan=\"" p "\"") == 1 { split($1, a, "by=\""); sub(/".*/, "", a[2]); w = w a[2] " " $2 " " }
    END { print (w == "" ? "(no metric)" : w) }')
  tiny_serve_stop
  first=$(head -1 "$work/lat" | awk '{printf "%.1f", $1 * 1000}')
  nslow=$(awk 'NR > 1 && $1 > 0.1' "$work/lat" | wc -l)
  slow=$(awk 'NR > 1 && $1 > 0.1 { printf "%d %d\n", NR - 1, $1 * 1000 }' "$work/lat" | sort -k2 -nr | head -8 |
    awk '{ printf " %d (%d ms)", $1, $2 }')
  cpu=$(echo "$c0 $c1" | awk -v c="$clk" '{printf "%.2f", ($2 - $1) / c}')
  tail -n +2 "$work/lat" | sort -n | awk -v label="$2" -v first="$first" -v slow="$nslow${slow:+, slowest:}$slow" -v cpu="$cpu" -v walks="$walks" -v rss="$rss" '
    { v[NR] = $1 * 1000 }
    END {
      n = NR
      printf "%-4s step 0 (walks epoch 0 of every domain) %s ms; steps 1..%d: p50 %.1f ms, p90 %.1f, p99 %.1f, max %.1f; over 100 ms: %s; daemon CPU %s s; epoch walks: %s; at the end %s\n",
        label, first, n, v[int(n * 0.5) + 1], v[int(n * 0.9) + 1], v[int(n * 0.99) + 1], v[n], slow, cpu, walks, rss
    }'
}
echo "$docs documents, plan $plan, steps 0..$((steps - 1)), pace ${pace}s (load $(cut -d' ' -f1-3 /proc/loadavg))"
run "$longmixd" now
[ -z "${OLD:-}" ] || run "$OLD" old
