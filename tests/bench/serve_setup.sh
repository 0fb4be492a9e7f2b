# Sourced by the serving benchmarks: the 20 MB real-text corpus indexed with the LLaMA-3
# tokenizer into $work/idx, and $work/cfg.json serving plan "p" (131072-token sequences, global
# batch 32) with THREADS daemon threads.  Usage: serve_setup LONGMIXD THREADS
serve_setup() {
  shared=$(cd "$(dirname "$0")/../../../shared" && pwd)
  corpus=/tmp/lmx-bench-corpus-20
  [ -d "$corpus/train" ] || python3 "$shared/corpus/build-corpus.py" "$corpus" --mb 20 >/dev/null
  "$1" index --tokenizer "$shared/fixtures/tokenizers/llama3-bytelevel/tokenizer.json" --out "$work/idx" \
    --no-progress "$corpus/train" 2>/dev/null
  cat > "$work/cfg.json" <<JSON
{"listen": "127.0.0.1:0", "index": "$work/idx", "threads": $2,
 "plans": {"p": {"strategy": "per_source", "seq_len": 131072, "global_batch": 32, "seed": 1}}}
JSON
}
