#!/usr/bin/env bash
# Regenerates the seed corpora in tests/fuzz/corpus/<target>/ from real artifacts:
#   fuzz_index      a real index (`longmixd index --tokenizer bytes`) packed as the target reads it
#   fuzz_wire       real batch bodies fetched from `longmixd serve` over that index (several plans,
#                   ranks, cu_seqlens on/off), plus the same bodies re-encoded with 4-byte tokens
#   fuzz_config     the contract's example config and variants; plan objects on their own
#   fuzz_request    the HTTP API's paths and queries
#   fuzz_tokenizer  the built-in tokenizers of fuzz_encode and cut-down copies of the shared
#                   fixtures (../shared/fixtures/tokenizers), with tokenizer_config.json after a NUL
#   fuzz_encode     texts for each built-in tokenizer
#   fuzz_client_body the fuzz_wire bodies plain and zstd-compressed (zstd CLI), a zstd RLE bomb
#                   and one that lies about its size, error texts with escapes
#   fuzz_charsmap   the nmt_nfkc charsmap of tests/fixtures/tokenizers/spm-unigram and one-key tries
#   fuzz_parquet    12-row files from DuckDB, arrow-rs and hyparquet-writer (tests/tools/parquet/gen.mjs;
#                   needs node + `npm ci` there, else the committed seeds stay)
# Usage: tests/fuzz/make-seeds.sh BUILD_DIR   (a build with longmixd; fuzz_encode if LMX_FUZZ=ON)
# The seeds are committed; run this only to refresh them. Needs python3 and curl.
set -euo pipefail
BUILD=${1:?usage: make-seeds.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
OUT=$HERE/corpus
LONGMIXD=$BUILD/server/longmixd
[ -x "$LONGMIXD" ] || { echo "make-seeds.sh: no $LONGMIXD" >&2; exit 1; }
WORK=$(mktemp -d)
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
for t in fuzz_index fuzz_wire fuzz_config fuzz_request fuzz_tokenizer fuzz_encode fuzz_client_body; do
  rm -rf "${OUT:?}/$t"; mkdir -p "$OUT/$t"
done

# ---- fuzz_gzip, fuzz_mds (issue #13): the committed input fixtures (independent writers) ----
# fuzz_gzip: [name/layout byte][file]; fuzz_mds: [u16 len][index.json][shard 0 decompressed]
rm -rf "$OUT/fuzz_gzip" "$OUT/fuzz_mds"; mkdir -p "$OUT/fuzz_gzip" "$OUT/fuzz_mds"
python3 - "$SRC/tests/fixtures/inputs" "$OUT" <<'PY'
import gzip, json, os, struct, sys, zlib
fx, out = sys.argv[1], sys.argv[2]
g = os.path.join(fx, "gzip")
small = open(os.path.join(g, "docs.jsonl"), "rb").read()[:1500]
seeds = {"cli": (1, open(os.path.join(g, "docs.gzip-cli.jsonl.gz"), "rb").read()),
         "multi": (1, open(os.path.join(g, "docs.multi-member.jsonl.gz"), "rb").read()),
         "python": (3, open(os.path.join(g, "docs.python.json.gz"), "rb").read()),
         "zstd": (2, open(os.path.join(g, "docs.jsonl.zstd"), "rb").read()),
         "plain": (0, small),
         "layout": (5, gzip.compress(b'{"content": "x", "id": 7, "meta": {"redpajama_set_name": "a"}}\n', mtime=0)),
         "truncated": (1, gzip.compress(small, mtime=0)[:300])}
for name, (flag, data) in seeds.items():
    open(os.path.join(out, "fuzz_gzip", name), "wb").write(bytes([flag]) + data)
m = os.path.join(fx, "mds")
for folder in ("plain", "zstd", "gz-noconfig"):
    ix = json.load(open(os.path.join(m, folder, "index.json")))
    ix["shards"] = ix["shards"][:1]
    sh = ix["shards"][0]
    raw = os.path.join(m, folder, sh["raw_data"]["basename"])
    if os.path.exists(raw):
        data = open(raw, "rb").read()
    elif sh["compression"].startswith("gz"):
        data = gzip.decompress(open(os.path.join(m, folder, sh["zip_data"]["basename"]), "rb").read())
    else:
        continue  # zstd: no zstd module in the standard library; plain/gz cover the layout
    j = json.dumps(ix, separators=(",", ":")).encode()
    open(os.path.join(out, "fuzz_mds", folder), "wb").write(struct.pack("<H", len(j)) + j + data)
PY

# fuzz_index: an index with the optional ids section (--id-field), packed like the others
python3 - "$WORK/ids.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i, t in enumerate(["alpha", "", "beta gamma", "delta"]):
        f.write(json.dumps({"text": t, "id": f"doc-{i}" if i != 2 else 7, "meta": {"redpajama_set_name": "S"}}) + "\n")
PY
(cd "$WORK" && "$LONGMIXD" index --tokenizer bytes --id-field id --out idx-ids ids.jsonl >/dev/null 2>&1)
python3 - "$WORK/idx-ids" "$OUT/fuzz_index/ids-f0" <<'PY'
import json, os, struct, sys
idx, out = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(idx, "manifest.json")))
mb = json.dumps(m, separators=(",", ":")).encode()
b = bytes([0]) + struct.pack("<H", len(mb)) + mb
for s in m["shards"]:
    sb = open(os.path.join(idx, "shards", s["file"]), "rb").read()
    b += struct.pack("<H", len(sb)) + sb
open(out, "wb").write(b)
PY

# ---- a small real index ----
mkdir -p "$WORK/in/books" "$WORK/in/web"
printf 'Call me Ishmael. Some years ago - never mind how long precisely - having little or no money.' \
  > "$WORK/in/books/moby.txt"
printf 'It was the best of times, it was the worst of times.\n' > "$WORK/in/books/two.txt"
python3 - "$WORK/in/web/a.jsonl" <<'PY'
import json, sys
docs = [("hello world", "RedPajamaC4"), ("caf\u00e9 \u65e5\u672c\u8a9e \U0001F600", "RedPajamaWikipedia"),
        ("", "RedPajamaC4"), ("x" * 300, "RedPajamaGithub"), ("short", "RedPajamaC4")]
with open(sys.argv[1], "w") as f:
    for t, d in docs:
        f.write(json.dumps({"text": t, "meta": {"redpajama_set_name": d}}) + "\n")
PY
(cd "$WORK" && "$LONGMIXD" index --tokenizer bytes --out idx in/books in/web >/dev/null 2>&1)
(cd "$WORK" && "$LONGMIXD" index --tokenizer bytes --out idx1 in/web/a.jsonl >/dev/null 2>&1)

# fuzz_index input: [flags][u16 len][manifest][u16 len][shard 0]...
python3 - "$WORK" "$OUT/fuzz_index" <<'PY'
import json, os, struct, sys
work, out = sys.argv[1], sys.argv[2]
def pack(idx, flags):
    m = json.load(open(os.path.join(idx, "manifest.json")))
    mb = json.dumps(m, separators=(",", ":")).encode()
    b = bytes([flags]) + struct.pack("<H", len(mb)) + mb
    for s in m["shards"]:
        sb = open(os.path.join(idx, "shards", s["file"]), "rb").read()
        b += struct.pack("<H", len(sb)) + sb
    return b
for name, idx in (("two-shards", "idx"), ("one-shard", "idx1")):
    for flags in (0, 1, 4):
        open(os.path.join(out, "%s-f%d" % (name, flags)), "wb").write(pack(os.path.join(work, idx), flags))
PY

# ---- batches from a real server ----
cat > "$WORK/config.json" <<'JSON'
{
  "listen": "127.0.0.1:0",
  "threads": 2,
  "plans": {
    "per-source": {"strategy": "per_source", "seq_len": 64, "global_batch": 4, "seed": 1,
                   "long_threshold": 100, "short_keep": 0.5, "bos": true, "eos": true},
    "no-cu": {"strategy": "per_source", "seq_len": 32, "global_batch": 2, "cu_seqlens": false,
              "domain_weights": {"books": 0.6}},
    "global": {"strategy": "global", "seq_len": 48, "global_batch": 2, "long_threshold": 50},
    "original": {"strategy": "original", "seq_len": 40, "global_batch": 2, "bos": false},
    "cut": {"strategy": "cut", "cut_len": 16, "seq_len": 32, "global_batch": 2},
    "padded": {"strategy": "original", "seq_len": 64, "global_batch": 2, "pad_multiple": 8, "eos": true}
  }
}
JSON
"$LONGMIXD" serve --config "$WORK/config.json" --index "$WORK/idx" --listen 127.0.0.1:0 \
  --port-file "$WORK/port" >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
PORT=$(cat "$WORK/port")
URL=http://127.0.0.1:$PORT
fetch() { curl -sf -o "$OUT/fuzz_wire/$1" "$URL$2"; }
fetch per-source-0 "/v1/plans/per-source/batches/0"
fetch per-source-7-r1w2 "/v1/plans/per-source/batches/7?rank=1&world=2"
fetch no-cu-0 "/v1/plans/no-cu/batches/0"
fetch global-3 "/v1/plans/global/batches/3"
fetch original-1-r1w2 "/v1/plans/original/batches/1?rank=1&world=2"
fetch cut-2 "/v1/plans/cut/batches/2"
fetch seq-5 "/v1/plans/per-source/sequences/5"
fetch cp-1of4-3 "/v1/plans/per-source/batches/3?cp_rank=1&cp_size=4"   # wire v2 (CP slice)
fetch cp-0of1-cut-2 "/v1/plans/cut/batches/2?rank=1&world=2&cp_size=1"
fetch padded-1 "/v1/plans/padded/batches/1"                                # wire v3 (padded)
fetch thd-2of4-padded-0 "/v1/plans/padded/batches/0?cp_rank=2&cp_size=4&cp_layout=thd"
curl -sf "$URL/v1/plans" >"$WORK/plans.json"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=

# The same bodies with 4-byte tokens (the layout of proto/WIRE.md, re-encoded).
python3 - "$OUT/fuzz_wire" <<'PY'
import os, struct, sys
d = sys.argv[1]
al = lambda x: (x + 7) & ~7
def reencode(b):
    (flags,) = struct.unpack_from("<I", b, 12)
    seq_len, n_seqs, tb, n_dom, n_spans, n_cu = struct.unpack_from("<6I", b, 48)
    assert tb == 2
    cu = flags & 1
    def layout(tb, blob):
        t = 96; nt = al(t + n_seqs * seq_len * tb); si = al(nt + 4 * n_seqs); sp = al(si + 4 * (n_seqs + 1))
        ci = al(sp + 32 * n_spans); c = al(ci + (4 * (n_seqs + 1) if cu else 0)); do = al(c + 4 * n_cu)
        db = do + 4 * (n_dom + 1); return [t, nt, si, sp, ci, c, do, db, al(db + blob)]
    a = layout(2, 0)
    blob = len(b) - a[7]
    offs = struct.unpack_from("<%dI" % (n_dom + 1), b, a[6]); blob = offs[-1]
    a = layout(2, blob); z = layout(4, blob)
    out = bytearray(z[8]); out[:96] = b[:96]
    struct.pack_into("<I", out, 56, 4); struct.pack_into("<Q", out, 72, z[8])
    toks = struct.unpack_from("<%dH" % (n_seqs * seq_len), b, a[0])
    struct.pack_into("<%dI" % len(toks), out, z[0], *toks)
    for i in range(1, 8):  # sections after the tokens keep their bytes
        end = a[i + 1] if i < 7 else a[7] + blob
        out[z[i]:z[i] + end - a[i]] = b[a[i]:end]
    return bytes(out)
for f in sorted(os.listdir(d)):
    b = open(os.path.join(d, f), "rb").read()
    if f.startswith(("per-source-0", "no-cu-0", "cut-2")):
        open(os.path.join(d, f + "-tb4"), "wb").write(reencode(b))
PY

# ---- configs and plan objects ----
python3 - "$OUT/fuzz_config" "$WORK/config.json" <<'PY'
import json, sys
out = sys.argv[1]
def w(name, obj):
    open("%s/%s.json" % (out, name), "w").write(json.dumps(obj, indent=1) + "\n")
h = "blake2b-256:" + "ab" * 32
contract = {
  "listen": "127.0.0.1:8470", "index": "/var/lib/longmix/index", "threads": 2,
  "auth": {"read": [h], "admin": ["blake2b-256:" + "0f" * 32]},
  "plans": {
    "per-source": {"strategy": "per_source", "seq_len": 131072, "global_batch": 32, "seed": 1,
                   "long_threshold": 4096, "short_keep": 0.1, "bos": True, "eos": False},
    "books": {"strategy": "per_source", "domain_weights": {"RedPajamaBook": 0.6}, "short_keep": 0.1},
    "global": {"strategy": "global", "short_keep": 0.1},
    "original": {"strategy": "original"},
    "cut4k": {"strategy": "cut", "cut_len": 4096}}}
w("contract", contract)
w("seed-config", json.load(open(sys.argv[2])))
w("extensions", {"listen": "0.0.0.0:9000", "index": "idx", "state_dir": "/tmp/state", "zstd_level": -3,
                 "connection_limit": 10, "connection_timeout": 5, "access_log": True, "auth": {"read": []},
                 "plans": {"a.b_c-1": {"strategy": "per_source", "total_tokens": 1000000, "cu_seqlens": False,
                                       "domain_weights": {"x": 1, "y": 2.5e-3, "z": 1e300}}}})
w("plan-per-source", contract["plans"]["per-source"])
w("plan-cut", {"strategy": "cut", "cut_len": 1, "seq_len": 2, "global_batch": 65536, "seed": 4611686018427387903})
w("plan-global", {"strategy": "global", "short_keep": 1, "long_threshold": 4294967295, "eos": True, "bos": False})
PY

# ---- requests: [method byte][path?query] (0 GET, 1 HEAD, 2 POST, 3 DELETE) ----
req() { printf "$1%s" "$3" >"$OUT/fuzz_request/$2"; }
req '\000' dashboard '/'
req '\000' healthz '/healthz'
req '\001' metrics-head '/metrics'
req '\000' stats '/v1/stats?plan=per-source'
req '\000' plans '/v1/plans'
req '\002' plan-add '/v1/plans'
req '\003' plan-delete '/v1/plans/books'
req '\000' plan-one '/v1/plans/per-source'
req '\000' batch '/v1/plans/per-source/batches/12?rank=3&world=8'
req '\000' batch-default '/v1/plans/cut4k/batches/4611686018427387903'
req '\000' batch-bad '/v1/plans/x/batches/-1?rank=%31&world=0'
req '\000' sequence-text '/v1/plans/global/sequences/7?format=text'
req '\000' sequence-bin '//v1//plans/a.b_c-1/sequences/0?format=binary&format=text'

# ---- tokenizers ----
if [ -x "$BUILD/tests/fuzz_encode" ]; then
  LMX_FUZZ_DUMP_TOKENIZERS=1 "$BUILD/tests/fuzz_encode" -runs=0 2>/dev/null | grep '^{' >"$WORK/builtin.jsonl" || true
fi
python3 - "$OUT/fuzz_tokenizer" "$WORK/builtin.jsonl" "$SRC/../shared/fixtures/tokenizers" <<'PY'
import json, os, sys
out, builtin, fixtures = sys.argv[1:4]
names = ["bytelevel-llama3re", "bytelevel-gpt2", "sp-bytefallback", "sp-metaspace"]
if os.path.exists(builtin):
    for name, line in zip(names, open(builtin)):
        open(os.path.join(out, name), "w").write(line.strip())
        if name == "bytelevel-gpt2":  # BertNormalizer + UnicodeScripts on the same vocabulary
            t = json.loads(line)
            t["normalizer"] = {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                               "strip_accents": None, "lowercase": True}
            t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "UnicodeScripts"}, t["pre_tokenizer"]]}
            open(os.path.join(out, name + "-bert-scripts"), "w").write(
                json.dumps(t, ensure_ascii=False, separators=(",", ":")))
def cut(src, keep):
    t = json.load(open(os.path.join(src, "tokenizer.json")))
    m = t["model"]
    vocab = {k: v for k, v in m["vocab"].items() if v < keep}
    merges = []
    for mg in m["merges"]:
        a, b = mg.split(" ") if isinstance(mg, str) else mg
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(mg)
    m["vocab"], m["merges"] = vocab, merges
    t["added_tokens"] = t["added_tokens"][:4]
    cfg = json.load(open(os.path.join(src, "tokenizer_config.json")))
    cfg = {k: cfg[k] for k in ("bos_token", "eos_token", "add_bos_token", "add_eos_token") if k in cfg}
    return json.dumps(t, ensure_ascii=False, separators=(",", ":")).encode(), json.dumps(cfg).encode()
for name, keep in (("llama3-bytelevel", 600), ("llama2-sp-bpe", 400)):
    src = os.path.join(fixtures, name)
    if not os.path.isdir(src):
        continue
    tj, cfg = cut(src, keep)
    open(os.path.join(out, name + "-cut"), "wb").write(tj)
    open(os.path.join(out, name + "-cut-config"), "wb").write(tj + b"\0" + cfg)
PY

# ---- encode: [selector][text]; selector bits 0-1 tokenizer, bit 2 match added tokens ----
python3 - "$OUT/fuzz_encode" <<'PY'
import sys
out = sys.argv[1]
texts = {"en": "The quick brown fox's 12345 tokens, and the rest.\n\n  indented\ttab",
         "uni": "caf\u00e9 \u65e5\u672c\u8a9e \U0001F600 \u2581x \u00a0nbsp",
         "special": "<s> hi </s><|begin_of_text|>x<|end_of_text|>",
         "spaces": "   leading and trailing   \r\n\r\n"}
for k in range(4):
    for m in (0, 4):
        for name, t in texts.items():
            open("%s/t%d%s-%s" % (out, k, "m" if m else "", name), "wb").write(bytes([k | m]) + t.encode())
open("%s/invalid-utf8" % out, "wb").write(b"\x00ab\xff\xfe\xc3(\xe2\x82 \xf0\x9f\x98")
PY

# ---- pretok: [selector][text]; selector = fast scanner (0 LLaMA-3, 1 Qwen2, 2 GPT-2, 3 o200k,
# 4-6 DeepSeek-V3's three Splits, 7 the three as one pass) ----
python3 - "$OUT/fuzz_pretok" <<'PY'
import os, sys
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
texts = {"en": "The quick brown fox's 12345 tokens, and the rest.\n\n  indented\ttab  ",
         "uni": "caf\u00e9 \u65e5\u672c\u8a9e \U0001F600\u200d\U0001F600 \u2581x \u00a0nbsp \u0661\u0662\u0663\u0664 x\u0301",
         "contractions": "I'LL it's we'Re THEY'VE \u017F's 'd 'm\r\n\r\n \r\n",
         "spaces": "   leading and trailing   \r\n\r\n\t \u3000\u3000x  "}
for k in range(8):
    for name, t in texts.items():
        open("%s/s%d-%s" % (out, k, name), "wb").write(bytes([k]) + t.encode())
PY

# ---- client body sink: [flags: bit 0 zstd, bit 1 caller buffer, bits 2-4 limit][chunk-1][body] ----
python3 - "$OUT/fuzz_wire" "$OUT/fuzz_client_body" <<'PY'
import os, struct, subprocess, sys
src, out = sys.argv[1:3]
def rle(announced, actual):  # a zstd frame of zeros in RLE blocks announcing `announced` bytes
    f, left, block = bytearray(struct.pack("<IBQ", 0xFD2FB528, 0xE0, announced)), actual, min(1 << 17, announced)
    while True:
        n = min(left, block); left -= n
        f += struct.pack("<I", (left == 0) | 2 | n << 3)[:3] + b"\0"
        if not left: return bytes(f)
for name in sorted(os.listdir(src))[:6]:
    body = open(os.path.join(src, name), "rb").read()
    z = subprocess.run(["zstd", "-q", "-c", "-3"], input=body, capture_output=True, check=True).stdout
    open(f"{out}/plain-{name}", "wb").write(bytes([6 << 2, 255]) + body)
    open(f"{out}/zstd-{name}", "wb").write(bytes([1 | 6 << 2, 200]) + z)
    open(f"{out}/zstd-caller-{name}", "wb").write(bytes([3 | 4 << 2, 17]) + z)
open(f"{out}/bomb", "wb").write(bytes([1 | 5 << 2, 255]) + rle(64 << 20, 64 << 20))
open(f"{out}/lie", "wb").write(bytes([1 | 6 << 2, 63]) + rle(1 << 16, 1 << 20))
open(f"{out}/escapes", "wb").write(bytes([3 << 2, 40]) +
     '{"error": "bad\x1b[31m", "detail": "a\nb\r\x07 \u009b2J \u202e \xff"}'.encode("utf-8", "surrogateescape"))
PY
# ---- parquet: small files from the three independent writers ----
if [ -d "$SRC/tests/tools/parquet/node_modules" ] && command -v node >/dev/null; then
  rm -rf "${OUT:?}/fuzz_parquet"; mkdir -p "$OUT/fuzz_parquet"
  node "$SRC/tests/tools/parquet/gen.mjs" "$WORK/parquet" 12 fixtures >/dev/null
  cp "$WORK"/parquet/*.parquet "$OUT/fuzz_parquet/"
fi
# ---- charsmap: [u32 blob length][blob][text]: the real nmt_nfkc charsmap, one-key tries ----
rm -rf "${OUT:?}/fuzz_charsmap"; mkdir -p "$OUT/fuzz_charsmap"
python3 - "$SRC/tests/fixtures/tokenizers/spm-unigram/tokenizer.json" "$OUT/fuzz_charsmap" <<'PY'
import base64, json, struct, sys
tj, d = json.load(open(sys.argv[1], encoding="utf-8")), sys.argv[2]
cm = base64.b64decode([n for n in tj["normalizer"]["normalizers"] if n["type"] == "Precompiled"][0]["precompiled_charsmap"])
text = "Hello \uff21\uff22 \ufb01 e\u0301 \u212b \r\n\t x\u00a0y \u3000 \u00bd \U0001f469\u200d\U0001f467 \U0001f1e9\U0001f1ea \u1100\u1161\u11a8 \x00\x7f"
open(d + "/nmt-nfkc", "wb").write(struct.pack("<I", len(cm)) + cm + text.encode())
def one(value, norm):  # root offset 1; 'a' at unit 0x60, its leaf value at 0x61
    u = [0] * 98; u[0] = 1 << 10; u[0x60] = 0x61 | 1 << 8 | 1 << 10; u[0x61] = value
    b = struct.pack("<I", 98 * 4) + struct.pack("<98I", *u) + norm
    return struct.pack("<I", len(b)) + b
open(d + "/one-key", "wb").write(one(0, b"b\x00") + "aa\u0301 a\u0301\u0301\u0301 ca".encode())
open(d + "/one-key-delete", "wb").write(one(1, b"b\x00") + b"xay")
open(d + "/bad-offset", "wb").write(one(7, b"b\x00") + b"a")
PY

for t in "$OUT"/*/; do printf '%-16s %3d seeds\n' "$(basename "$t")" "$(ls "$t" | wc -l)"; done
