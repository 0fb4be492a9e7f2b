#!/usr/bin/env python3
"""Generates common/tokenizer/lmx_hf_char_tables.[ch]: the character sets HF tokenizers decides
with its own, older Unicode tables rather than Unicode 16, derived by probing the reference
itself (HF `tokenizers` through its Node.js binding, ../shared/peers) over every code point.

    python3 common/tokenizer/gen_hf_char_tables.py PEERS_DIR [OUT_DIR]
    (PEERS_DIR: an installed copy of ../shared/peers, with node_modules/@anush008/tokenizers;
     OUT_DIR: default the directory of this script)

Why probing: HF's BertNormalizer (tokenizers/src/normalizers/bert.rs) calls the Rust crate
`unicode_categories` 0.1 (`is_other`: Cc Cf Cn Co Cs of an old Unicode; `is_mark_nonspacing`:
Mn) and std's `char::is_whitespace`; its UnicodeScripts pre-tokenizer uses a generated table
(pre_tokenizers/unicode_scripts/scripts.rs, from SentencePiece's script data, `Any` for what it
does not list). None of these is Unicode 16 (e.g. a char assigned after the crate's tables is
"other" and BertNormalizer(clean_text) deletes it). Asking the reference for each code point gives
exactly its sets, whatever their sources. Tables (lookups in lmx_hf_char_tables.h):

  * clean: what BertNormalizer's clean_text does to each char: keep, remove (NUL, U+FFFD,
    is_other except \\t \\n \\r) or replace by ' ' (\\t \\n \\r, char::is_whitespace);
  * mark: chars BertNormalizer's strip_accents removes after NFD (is_mark_nonspacing);
  * cjk: chars handle_chinese_chars surrounds with spaces (bert.rs's is_chinese_char);
  * script: UnicodeScripts' fixed_script of each char as a class number (0 = Any: ' ' and the
    chars the table lacks; Hiragana, Katakana and U+30FC are Han). Two chars have the same number
    iff the reference keeps them in one piece; numbers are given in order of first appearance.

Surrogates (U+D800..DFFF) cannot occur in valid UTF-8 and are not probed (keep, no mark, Any).
The outputs are committed; nothing in them is typed by hand. Regenerate after changing the peer's
version (tests/conformance then checks the result against it).
"""
import json
import os
import subprocess
import sys

PROBE_JS = r"""
const path = require("path"), fs = require("fs"), os = require("os");
const peers = process.argv[1];
const T = require(path.join(peers, "node_modules", "@anush008", "tokenizers"));
const pkg = JSON.parse(fs.readFileSync(path.join(peers, "node_modules", "@anush008", "tokenizers", "package.json")));
const cargo = fs.readFileSync(path.join(peers, "node_modules", "@anush008", "tokenizers", "Cargo.toml"), "utf8");
const m = /^tokenizers\s*=\s*"([^"]+)"/m.exec(cargo);
const cps = [];
for (let c = 0; c < 0x110000; c++) if (c < 0xD800 || c > 0xDFFF) cps.push(c);
const S = (c) => String.fromCodePoint(c);
const bert = (o) => T.bertNormalizer(Object.assign({cleanText: false, handleChineseChars: false,
                                                     stripAccents: false, lowercase: false}, o));
const nClean = bert({cleanText: true}), nMark = bert({stripAccents: true}), nCjk = bert({handleChineseChars: true});
const clean = {}, mark = [], cjk = [];
for (const c of cps) {
  const s = S(c);
  const o = nClean.normalizeString(s);
  if (o === "") clean[c] = 1;
  else if (o === " " && c !== 32) clean[c] = 2;
  else if (o !== s) throw new Error("clean_text: unexpected " + c);
  if (nMark.normalizeString(s) === "") mark.push(c);
  const k = nCjk.normalizeString(s);
  if (k === " " + s + " ") cjk.push(c);
  else if (k !== s) throw new Error("handle_chinese_chars: unexpected " + c);
}
// UnicodeScripts: a WordLevel model with only [UNK] makes one token per pre-token, whose
// offsets (in chars) are the pieces.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "lmx-hfprobe-"));
const tj = path.join(tmp, "tokenizer.json");
fs.writeFileSync(tj, JSON.stringify({version: "1.0", truncation: null, padding: null, added_tokens: [],
  normalizer: null, pre_tokenizer: {type: "UnicodeScripts"}, post_processor: null, decoder: null,
  model: {type: "WordLevel", vocab: {"[UNK]": 0}, unk_token: "[UNK]"}}));
const tok = T.Tokenizer.fromFile(tj);
fs.rmSync(tmp, {recursive: true});
async function starts(chars) { // set of char positions where a piece starts
  const e = await tok.encode(chars.map(S).join(""), null, {addSpecialTokens: false});
  return new Set(e.getOffsets().map((o) => o[0]));
}
// split before x[i] for i odd, in the text x[0] x[1] x[2] ...: x[i-1] sets the last script
async function pairSplits(x) {
  const out = [];
  for (let a = 0; a < x.length; a += 65536) {
    const ch = x.slice(a, a + 65536), st = await starts(ch);
    for (let i = 1; i < ch.length; i += 2) out.push(st.has(i));
  }
  return out;
}
(async () => {
  // Any: no split after a Latin char and none after a Han one (a char cannot be both)
  const la = [], ha = [];
  for (const c of cps) { la.push(0x61, c); ha.push(0x30A2, c); }
  const sl = await pairSplits(la), sh = await pairSplits(ha);
  const nonAny = cps.filter((c, i) => sl[i] || sh[i]);
  // runs of one script among consecutive non-Any chars
  const chain = [];
  for (let i = 1; i < nonAny.length; i++) chain.push(nonAny[i - 1], nonAny[i]);
  const sc = await pairSplits(chain);
  const reps = [], script = {};
  let cur = 0;
  for (let i = 0; i < nonAny.length; i++) {
    if (i === 0 || sc[i - 1]) {
      // a new run: the class of its first char, against one char of each known class
      const r = nonAny[i];
      cur = 0;
      if (reps.length) {
        const x = [];
        for (const k of reps) x.push(r, k);
        const s = await pairSplits(x);
        const j = s.indexOf(false);
        if (j >= 0) cur = j + 1;
      }
      if (!cur) { reps.push(nonAny[i]); cur = reps.length; }
    }
    script[nonAny[i]] = cur;
  }
  process.stdout.write(JSON.stringify({peer: pkg.name + "@" + pkg.version, tokenizers: m ? m[1] : "?",
    clean, mark, cjk, script, reps}));
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""


def runs(value_of, default):
    """[(start, value)] runs over 0..0x10FFFF, first at 0."""
    out = []
    prev = None
    for c in range(0x110000):
        v = value_of.get(c, default)
        if v != prev:
            out.append((c, v))
            prev = v
    return out


def ranges(cps):
    out = []
    for c in sorted(cps):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def c_array(name, ctype, items, per_line=8):
    lines = []
    for i in range(0, len(items), per_line):
        lines.append("    " + ", ".join(items[i:i + per_line]) + ",")
    return "const %s %s[] = {\n%s\n};\nconst uint32_t %s_n = %d;\n" % (ctype, name, "\n".join(lines), name, len(items))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    peers = os.path.abspath(sys.argv[1])
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run(["node", "-e", PROBE_JS, peers], capture_output=True, text=True)
    if r.returncode:
        sys.exit("probe failed: " + r.stderr)
    d = json.loads(r.stdout)
    clean = {int(k): v for k, v in d["clean"].items()}
    script = {int(k): v for k, v in d["script"].items()}
    if max(script.values()) > 255:
        sys.exit("more than 255 script classes")
    src = "HF tokenizers %s (npm %s), probed over every code point" % (d["tokenizers"], d["peer"])
    clean_runs = runs(clean, 0)
    script_runs = runs(script, 0)
    mark = ranges(d["mark"])
    cjk = ranges(d["cjk"])
    h = """/* GENERATED by common/tokenizer/gen_hf_char_tables.py from %s.
 * Do not edit: re-run the script. The character sets HF tokenizers' BertNormalizer and
 * UnicodeScripts pre-tokenizer use (their own, older Unicode data; see the script). */
#ifndef LMX_HF_CHAR_TABLES_H
#define LMX_HF_CHAR_TABLES_H

#include <stdint.h>

/* BertNormalizer clean_text: runs (start << 2 | LMX_HF_CLEAN_*), the first at 0, each lasting
 * until the next one's start. */
enum { LMX_HF_CLEAN_KEEP = 0, LMX_HF_CLEAN_REMOVE = 1, LMX_HF_CLEAN_SPACE = 2 };
extern const uint32_t lmx__hf_clean_runs[];
extern const uint32_t lmx__hf_clean_runs_n;
/* strip_accents (is_mark_nonspacing) and handle_chinese_chars: sorted inclusive ranges,
 * first[2i], last[2i+1]. */
extern const uint32_t lmx__hf_mark_ranges[];
extern const uint32_t lmx__hf_mark_ranges_n;
extern const uint32_t lmx__hf_cjk_ranges[];
extern const uint32_t lmx__hf_cjk_ranges_n;
/* UnicodeScripts: runs (start << 8 | class), class 0 = Any; LMX_HF_N_SCRIPTS classes. */
#define LMX_HF_N_SCRIPTS %d
extern const uint32_t lmx__hf_script_runs[];
extern const uint32_t lmx__hf_script_runs_n;
extern const char lmx__hf_char_tables_source[];

/* The value of the run holding cp in runs[0..n) (start << shift | value, the first at 0). */
static inline uint32_t lmx__hf_run_value(const uint32_t *runs, uint32_t n, unsigned shift, uint32_t cp)
{
    uint32_t lo = 0, hi = n;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if ((runs[mid] >> shift) <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return runs[lo] & ((1u << shift) - 1);
}

/* cp in one of the inclusive ranges r[0..n) (first, last pairs)? */
static inline int lmx__hf_in_ranges(const uint32_t *r, uint32_t n, uint32_t cp)
{
    uint32_t lo = 0, hi = n / 2;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r[2 * mid + 1] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n / 2 && r[2 * lo] <= cp;
}

#endif
""" % (src, max(script.values()) + 1)
    c = """/* GENERATED by common/tokenizer/gen_hf_char_tables.py from %s.
 * Do not edit: re-run the script. */
#include "lmx_hf_char_tables.h"

const char lmx__hf_char_tables_source[] = "%s";

""" % (src, src)
    c += c_array("lmx__hf_clean_runs", "uint32_t", ["0x%x" % (s << 2 | v) for s, v in clean_runs])
    c += c_array("lmx__hf_mark_ranges", "uint32_t", ["0x%x" % x for rg in mark for x in rg])
    c += c_array("lmx__hf_cjk_ranges", "uint32_t", ["0x%x" % x for rg in cjk for x in rg])
    c += c_array("lmx__hf_script_runs", "uint32_t", ["0x%x" % (s << 8 | v) for s, v in script_runs])
    for name, text in (("lmx_hf_char_tables.h", h), ("lmx_hf_char_tables.c", c)):
        tmp = os.path.join(out_dir, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(out_dir, name))
    print("clean runs %d, mark ranges %d, cjk ranges %d, script classes %d, script runs %d" %
          (len(clean_runs), len(mark), len(cjk), max(script.values()), len(script_runs)))


if __name__ == "__main__":
    main()
