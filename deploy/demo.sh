#!/bin/sh
# The walking skeleton, end to end on one machine: dependencies, build, a small corpus from text
# already on the machine, index, serve on loopback, fetch one batch, print it, stop.
#
#   ./deploy/demo.sh                      # built-in `bytes` tokenizer, nothing downloaded
#   LMX_TOKENIZER=/path/to/tokenizer.json ./deploy/demo.sh
#
# Work files go to $LMX_DEMO_DIR (default: build/demo); the build to $LMX_BUILD_DIR (default: build).
set -eu
cd "$(dirname "$0")/.."
BUILD=${LMX_BUILD_DIR:-build}
DEMO=${LMX_DEMO_DIR:-$BUILD/demo}
TOKENIZER=${LMX_TOKENIZER:-bytes}

step() { printf '\n== %s\n' "$*"; }

step "dependencies (Debian packages)"
./deploy/install-deps.sh
step "build"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
LONGMIXD=$BUILD/server/longmixd
LONGMIX=$BUILD/client/longmix

step "corpus: real text from this machine, stand-in SlimPajama domain labels (deploy/demo-corpus.py)"
rm -rf "$DEMO"
mkdir -p "$DEMO"
python3 deploy/demo-corpus.py "$DEMO/corpus" --mb 6

step "index (tokenizer: $TOKENIZER)"
"$LONGMIXD" index --tokenizer "$TOKENIZER" --out "$DEMO/index" "$DEMO/corpus"
"$LONGMIXD" stats "$DEMO/index"

cat > "$DEMO/config.json" <<JSON
{
  "listen": "127.0.0.1:0",
  "index": "$DEMO/index",
  "threads": 2,
  "plans": {
    "per-source": {"strategy": "per_source", "seq_len": 16384, "global_batch": 4, "seed": 1,
                   "short_keep": 0.1},
    "original":   {"strategy": "original", "seq_len": 16384, "global_batch": 4}
  }
}
JSON
step "serve on loopback (ephemeral port)"
"$LONGMIXD" serve --config "$DEMO/config.json" --port-file "$DEMO/port" 2>"$DEMO/longmixd.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT INT TERM
i=0
while [ ! -s "$DEMO/port" ]; do
  kill -0 $PID 2>/dev/null || { cat "$DEMO/longmixd.log" >&2; exit 1; }
  i=$((i + 1)); [ $i -lt 300 ] || { echo "longmixd did not start" >&2; exit 1; }
  sleep 0.1
done
URL=http://127.0.0.1:$(cat "$DEMO/port")
cat "$DEMO/longmixd.log"

step "longmix fetch --url $URL --plan per-source --step 0 --rank 1 --world 2 --json"
"$LONGMIX" fetch --url "$URL" --plan per-source --step 0 --rank 1 --world 2 --json > "$DEMO/batch.json"
python3 - "$DEMO/batch.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
print(f"plan {b['plan']} (id {b['plan_id']}) step {b['step']} rank {b['rank']}/{b['world']}: "
      f"{len(b['sequences'])} sequences of {b['seq_len']} tokens")
for k, s in enumerate(b["sequences"]):
    print(f"  sequence {k}: first tokens {s['tokens'][:8]} ... next_token {s['next_token']}, {len(s['spans'])} spans")
    for sp in s["spans"][:6]:
        print(f"    [{sp['start']:>6}, {sp['start'] + sp['length']:>6})  {sp['domain']:<16} doc {sp['doc']:>5}"
              f"  tokens [{sp['offset']}, {sp['offset'] + sp['length']})")
    if len(s["spans"]) > 6:
        print(f"    ... {len(s['spans']) - 6} more")
PY

step "longmix stats --url $URL --plan per-source"
"$LONGMIX" stats --url "$URL" --plan per-source

step "longmix show (first 400 bytes of sequence 0)"
"$LONGMIX" show --url "$URL" --plan per-source --step 0 --seq 0 | head -c 400; echo

step "stop the daemon (SIGTERM drains and exits 0)"
kill -TERM $PID
wait $PID
trap - EXIT INT TERM
echo "demo done: files in $DEMO"
