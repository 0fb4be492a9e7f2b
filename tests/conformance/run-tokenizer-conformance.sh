#!/bin/sh
# Conformance of `longmixd tokenize` with the reference (HuggingFace tokenizers through node,
# ../shared/peers/hf-tokenize.js) on both fixtures of ../shared/fixtures/tokenizers, over
# tests/conformance/tokenizer_cases.jsonl, a small real-text corpus and raw invalid-UTF-8 and
# Unicode-blank lines (make-raw-inputs.py).
#
# Environment: LONGMIXD (the binary), LMX_SHARED_DIR, optional LMX_PEERS_DIR (a copy of
# shared/peers with node_modules; default /tmp/lmx-peers), optional LMX_CORPUS_DIR (a corpus
# made by shared/corpus/build-corpus.py; default: one of 5 MB built once into LMX_TOKTEST_DIR).
# Exit 77 (skip) when shared/, node or the installed reference is missing.
#
# Added tokens: HF's encode() matches added/special token strings ("<s>", "<|begin_of_text|>")
# inside the text; `longmixd tokenize` does so only with --match-added-tokens (by default they are
# plain text, so a document cannot inject control tokens). The run with --match-added-tokens must
# equal the reference on every document; the default run must equal it on every document that
# contains no added-token string.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIP: $*"; exit 77; }

: "${LONGMIXD:?LONGMIXD must name the longmixd binary}"
shared=${LMX_SHARED_DIR:-}
[ -n "$shared" ] && [ -d "$shared/fixtures/tokenizers" ] || skip "no shared dir with fixtures (LMX_SHARED_DIR='$shared')"
command -v node >/dev/null 2>&1 || skip "node is not installed"
peers=${LMX_PEERS_DIR:-}
if [ -z "$peers" ] || [ ! -d "$peers/node_modules/@anush008" ]; then
  peers=/tmp/lmx-peers
fi
[ -d "$peers/node_modules/@anush008" ] && [ -f "$peers/hf-tokenize.js" ] ||
  skip "reference tokenizer not installed (LMX_PEERS_DIR or /tmp/lmx-peers with node_modules; see $shared/peers/README.md)"

work=${LMX_TOKTEST_DIR:-${TMPDIR:-/tmp}/lmx-tok-conformance}
mkdir -p "$work"
corpus=${LMX_CORPUS_DIR:-}
if [ -z "$corpus" ]; then
  corpus=$work/corpus5
  if [ ! -f "$corpus/manifest.json" ]; then
    rm -rf "$corpus"
    python3 "$shared/corpus/build-corpus.py" "$corpus" --mb 5 >"$work/corpus.log" 2>&1 || {
      echo "FAIL: building the corpus failed (log: $work/corpus.log)"; cat "$work/corpus.log"; exit 1; }
  fi
fi
files=$(find "$corpus" -name '*.jsonl.zst' | sort)
[ -n "$files" ] || { echo "FAIL: no .jsonl.zst files under $corpus"; exit 1; }
# shellcheck disable=SC2086
zstd -dcq $files >"$work/corpus.jsonl"

# raw bytes: invalid UTF-8 inside documents, lines blank to String.trim() (make-raw-inputs.py)
python3 "$here/make-raw-inputs.py" >"$work/raw.jsonl"

rc=0
for fx in llama2-sp-bpe llama3-bytelevel; do
  tj=$shared/fixtures/tokenizers/$fx/tokenizer.json
  for input in "$here/tokenizer_cases.jsonl" "$work/corpus.jsonl" "$work/raw.jsonl"; do
    name=$(basename "$input" .jsonl)
    node "$peers/hf-tokenize.js" "$tj" <"$input" >"$work/$fx.$name.peer" ||
      { echo "FAIL: reference tokenizer failed on $input"; exit 1; }
    "$LONGMIXD" tokenize --tokenizer "$tj" --match-added-tokens <"$input" >"$work/$fx.$name.matched" ||
      { echo "FAIL: longmixd tokenize --match-added-tokens failed on $input"; rc=1; continue; }
    "$LONGMIXD" tokenize --tokenizer "$tj" <"$input" >"$work/$fx.$name.default" ||
      { echo "FAIL: longmixd tokenize failed on $input"; rc=1; continue; }
    node "$here/compare-ids.js" "$input" "$work/$fx.$name.matched" "$work/$fx.$name.peer" \
      "$fx $name --match-added-tokens" || rc=1
    node "$here/compare-ids.js" "$input" "$work/$fx.$name.default" "$work/$fx.$name.peer" \
      "$fx $name default" --allow-added "$tj" || rc=1
  done
done
[ $rc -eq 0 ] && echo "PASS: longmixd tokenize matches the reference" || echo "FAIL: see the first mismatch above"
exit $rc
