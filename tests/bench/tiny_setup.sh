# Sourced by bench_growth.sh, bench_first_batch.sh, bench_epoch_cross.sh and bench_shards.sh (issue #15): N tiny documents
# (make-tiny-corpus.py: 1-8 tokens each) indexed with the `bytes` tokenizer into $work/idx,
# $work/cfg.json serving plans ps (per_source), gl (global) and cut, and a daemon started on it.
# Needs $work, $longmixd and $here.
#   tiny_corpus N               the corpus in $work/c, its input files listed in $work/inputs
#   tiny_index [CMD ARGS...]    index it (CMD, e.g. /usr/bin/time -o F, wraps longmixd); drops $work/c
#   tiny_serve_start            sets pid and port once the daemon listens
#   tiny_serve_stop
tiny_corpus() {
  python3 "$here/make-tiny-corpus.py" "$work/c" "$1" 8 > "$work/inputs"
}
tiny_index() {
  # shellcheck disable=SC2046
  "$@" "$longmixd" index --tokenizer bytes --threads 2 --no-progress --out "$work/idx" $(cat "$work/inputs") 2>/dev/null
  rm -rf "$work/c"
  cat > "$work/cfg.json" <<JSON
{"listen": "127.0.0.1:0", "index": "$work/idx", "threads": 2, "cache_mb": 0, "send_timeout": 86400,
 "plans": {"ps": {"strategy": "per_source", "seq_len": 8192, "global_batch": 8, "seed": 1},
           "gl": {"strategy": "global", "seq_len": 8192, "global_batch": 8, "seed": 2, "long_threshold": 4},
           "cut": {"strategy": "cut", "cut_len": 4, "seq_len": 8192, "global_batch": 8, "seed": 3}}}
JSON
}
tiny_serve_start() {
  rm -f "$work/port"
  "$longmixd" serve --config "$work/cfg.json" --port-file "$work/port" >>"$work/log" 2>&1 &
  pid=$!
  while [ ! -s "$work/port" ]; do
    kill -0 $pid 2>/dev/null || { cat "$work/log" >&2; exit 1; }
    sleep 0.002 # bench_shards.sh times restarts of ~50 ms with this loop
  done
  port=$(cat "$work/port")
}
tiny_serve_stop() { kill -TERM "$pid"; wait "$pid" || true; }
