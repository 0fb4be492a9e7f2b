#!/bin/sh
# Re-runs common/tokenizer/gen_hf_char_tables.py (which probes the HF reference over every code
# point) into a temporary folder and fails when the committed common/tokenizer/lmx_hf_char_tables.[ch]
# differ. Needs node and the installed reference (LMX_PEERS_DIR, default /tmp/lmx-peers; see
# ../shared/peers/README.md); skips (77) without.
set -eu
src=${LMX_SOURCE_DIR:?}
peers=${LMX_PEERS_DIR:-/tmp/lmx-peers}
command -v node >/dev/null 2>&1 || { echo "SKIP: node is not installed"; exit 77; }
[ -d "$peers/node_modules/@anush008/tokenizers" ] || { echo "SKIP: reference tokenizer not installed in $peers"; exit 77; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python3 "$src/common/tokenizer/gen_hf_char_tables.py" "$peers" "$out"
rc=0
for f in lmx_hf_char_tables.h lmx_hf_char_tables.c; do
  cmp -s "$out/$f" "$src/common/tokenizer/$f" || { echo "FAIL: common/tokenizer/$f differs from a fresh probe of the reference"; rc=1; }
done
[ $rc -eq 0 ] && echo "PASS: committed HF character tables are fresh"
exit $rc
