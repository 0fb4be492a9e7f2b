#!/bin/sh
# Regenerates tests/fixtures/inputs/mds/ with the independent writer (mds-writer.js); the
# fixtures are committed so the reader tests need no node. Usage: make-fixtures.sh [OUT]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../fixtures/inputs/mds}
rm -rf "$out"
mkdir -p "$out"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
words = ["long", "context", "数据", "ünïcödé", "needle", "🙂", "tab\there", "line\nbreak"]
with open(f"{out}/samples.jsonl", "w") as f, open(f"{out}/docs.jsonl", "w") as ref:
    for i in range(40):
        text = " ".join(words[(i + k * k) % len(words)] for k in range(1 + (i * 13) % 50))
        dom = ["books", "web", "code"][i % 3]
        ids = [(i * 31 + k * 7) % 258 for k in range(1 + (i * 5) % 23)]
        f.write(json.dumps({"text": text, "source": dom, "uid": 1000 + i, "name": f"s{i}",
                            "input_ids": ids, "ids16": {"dtype": "uint16", "values": ids},
                            "tok_bytes": {"dtype": "int32", "values": ids},
                            "fixed": ids[:1] * 4, "anyarr": {"dtype": "int64", "values": ids, "shape": [1, len(ids)]}},
                           ensure_ascii=False) + "\n")
        ref.write(json.dumps({"text": text, "meta": {"redpajama_set_name": dom}, "input_ids": ids},
                             ensure_ascii=False) + "\n")
PY
w="node $here/mds-writer.js"
cols=text:str,source:str,uid:int,name:str,input_ids:ndarray:uint32,ids16:ndarray:uint16,tok_bytes:bytes,fixed:ndarray:uint32:4,anyarr:ndarray
$w "$out/plain" --columns "$cols" --size-limit 3000 < "$out/samples.jsonl"
$w "$out/zstd" --columns "$cols" --size-limit 5000 --compression zstd:7 < "$out/samples.jsonl"
$w "$out/gz-noconfig" --columns "$cols" --size-limit 100000 --compression gz --no-config < "$out/samples.jsonl"
rm "$out/samples.jsonl"
