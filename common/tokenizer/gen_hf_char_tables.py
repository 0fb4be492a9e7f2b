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

  * nodecomp, noccc: HF's NFC/NFD/NFKC/NFKD use the crate unicode-normalization-alignments
    (an older Unicode than lmx_unicode_tables.c's): the chars whose decomposition our tables
    have and HF does not (HF's NFKD leaves them), and the chars with a nonzero combining class
    in our tables that HF does not reorder. Probed over every code point (decompositions) and
    over our nonzero-class chars (classes never change once assigned, so HF knows a class or
    has 0); the script then checks that our NFD, NFKD, NFC and NFKC of every char HF
    decomposes and our NFC of every pair our composition table joins, with these exceptions,
    equal HF's, and fails otherwise;
  * accent: the chars HF's StripAccents removes (the crate's is_combining_mark).
  * incb: Indic_Conjunct_Break (Consonant, Linker, Extend) for grapheme rule GB9c, which HF's
    segmentation (unicode-segmentation) applies in the Precompiled normalizer: probed with
    the nmt_nfkc charsmap of tests/fixtures/tokenizers/spm-unigram, whose whole-cluster rule
    shows whether a char sequence joins the next consonant into one cluster.

The normalization exceptions are relative to lmx_unicode_tables.c (read from this script's
directory): regenerate them after that file changes.
Surrogates (U+D800..DFFF) cannot occur in valid UTF-8 and are not probed (keep, no mark, Any).
The outputs are committed; nothing in them is typed by hand. Regenerate after changing the peer's
version (tests/conformance then checks the result against it).
"""
import json
import os
import re
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
const nNfkd = T.nfkdNormalizer(), nNfd = T.nfdNormalizer(), nAcc = T.stripAccentsNormalizer();
const decomp = {}, accent = [], cccKnown = [];
const cccAsk = JSON.parse(process.argv[2]);
// GB9c (Indic_Conjunct_Break) as HF's Precompiled normalizer segments: a cluster under 6 bytes
// is replaced whole (U+0958 + U+0301 by U+0958's mapping, the mark dropped), a longer one char
// by char (the mark kept), so whether "X" joins "U+0958 U+0301" shows in the output's end.
const norm = JSON.parse(fs.readFileSync(process.argv[3], "utf8")).normalizer;
const pcj = (norm.normalizers || [norm]).find((x) => x.type === "Precompiled");
const pc = T.precompiled(Array.from(Buffer.from(pcj.precompiled_charsmap, "base64")));
const joins = (x) => pc.normalizeString(x + "\u0958\u0301").endsWith("\u0301");
const incb = {}; // 1 Consonant, 2 Linker, 3 Extend
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
  const kd = nNfkd.normalizeString(s);
  if (kd !== s) decomp[c] = [kd, nNfd.normalizeString(s)];
  if (nAcc.normalizeString(s) === "") accent.push(c);
  // Consonant: c U+094D x U+0958; Linker: U+0915 c x U+0958 (a Prepend char c would join
  // U+0958 by GB9b: ruled out by "a" c U+0958); Extend: U+0915 U+094D c x U+0958
  if (joins(s + "\u094d")) incb[c] = 1;
  else if (!joins("a" + s)) {
    if (joins("\u0915" + s)) incb[c] = 2;
    else if (joins("\u0915\u094d" + s)) incb[c] = 3;
  }
}
// compositions: NFC and NFKC of each char HF decomposes, NFC of each pair our tables compose
const nNfc = T.nfcNormalizer(), nNfkc = T.nfkcNormalizer();
const comp = {}, pairNfc = [];
for (const c of Object.keys(decomp)) comp[c] = [nNfc.normalizeString(S(+c)), nNfkc.normalizeString(S(+c))];
for (const [a, b] of JSON.parse(process.argv[4])) pairNfc.push(nNfc.normalizeString(S(a) + S(b)));
// combining class known (nonzero) to HF: a char of class k > 1 moves before U+0334 (class 1),
// one of class 1 before U+0301 (230)
for (const c of cccAsk) {
  const s = S(c);
  if (nNfd.normalizeString(s + "\u0334") === "\u0334" + s || nNfd.normalizeString("\u0301" + s) === s + "\u0301")
    cccKnown.push(c);
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
    clean, mark, cjk, script, reps, decomp, accent, cccKnown, incb, comp, pairNfc}));
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


def c_table(text, name):
    """The numbers in the initializer of the C array `name` in text."""
    m = re.search(r"\b%s\[\d*\] = \{(.*?)\n\};" % re.escape(name), text, re.S)
    if not m:
        sys.exit("lmx_unicode_tables.c: no array " + name)
    return [int(x, 0) for x in re.findall(r"0x[0-9A-Fa-f]+|\d+", m.group(1))]


def our_normalization(path):
    """(canonical {cp: (d1, d2)}, compat {cp: [cps]}, ccc(cp)) from the committed
    lmx_unicode_tables.c, the data the normalizers start from."""
    with open(path) as f:
        text = f.read()
    d = c_table(text, "lmx__uni_decomp")
    canon = {d[i]: (d[i + 1], d[i + 2]) for i in range(0, len(d), 3)}
    k = c_table(text, "lmx__uni_kdecomp")
    pool = c_table(text, "lmx__uni_kpool")
    compat = {k[i]: pool[k[i + 1]:k[i + 1] + k[i + 2]] for i in range(0, len(k), 3)}
    s1 = c_table(text, "lmx__uni_ccc_stage1")
    s2 = c_table(text, "lmx__uni_ccc_stage2")
    m = re.search(r"lmx__uni_comp\[\] = \{(.*?)\n\};", text, re.S)
    pairs = {}
    for key, cp in re.findall(r"\{0x([0-9A-Fa-f]+)ULL, 0x([0-9A-Fa-f]+)\}", m.group(1) if m else ""):
        key = int(key, 16)
        pairs[(key >> 21, key & 0x1FFFFF)] = int(cp, 16)
    if not pairs:
        sys.exit("lmx_unicode_tables.c: no array lmx__uni_comp")
    return canon, compat, lambda cp: s2[s1[cp >> 8] * 256 + (cp & 255)], pairs


def is_hangul(cp):
    return 0xAC00 <= cp < 0xAC00 + 11172


def check_decomp(canon, compat, ccc, pairs, nodecomp, noccc, hf, hf_comp, hf_pairs):
    """Our NFD/NFKD, NFC/NFKC of each char HF decomposes and our NFC of each pair our tables
    compose (lmx_tok_utf8.c's algorithm, with the exceptions applied) must be HF's."""
    def cc(cp):
        return 0 if cp in noccc else ccc(cp)

    def pair(a, b):
        if 0x1100 <= a < 0x1113 and 0x1161 <= b < 0x1176:
            return 0xAC00 + ((a - 0x1100) * 21 + (b - 0x1161)) * 28
        if is_hangul(a) and (a - 0xAC00) % 28 == 0 and 0x11A7 < b < 0x11C3:
            return a + (b - 0x11A7)
        c = pairs.get((a, b))
        return c if c is not None and c not in nodecomp else None

    def dech(cp, kd):  # with Hangul, as the C decompose()
        if is_hangul(cp) and not (kd and cp in compat):
            s = cp - 0xAC00
            return [0x1100 + s // 588, 0x1161 + (s % 588) // 28] + ([0x11A7 + s % 28] if s % 28 else [])
        return dec(cp, kd)

    def nfc(text, kd):
        v = [y for x in text for y in dech(ord(x), kd)]
        v = list(map(ord, order(v)))
        if not v:
            return ""
        out, starter, last = [v[0]], 0, (256 if cc(v[0]) else 0)
        for ch in v[1:]:
            c = cc(ch)
            comp = pair(out[starter], ch) if (last < c or last == 0) else None
            if comp and not (last == 0 and len(out) - 1 != starter):
                out[starter] = comp
                continue
            if c == 0:
                starter = len(out)
            last = c
            out.append(ch)
        return "".join(map(chr, out))

    def dec(cp, kd):
        if cp in nodecomp:
            return [cp]
        if kd and cp in compat:
            return [y for x in compat[cp] for y in dec(x, kd)]
        if cp in canon:
            a, b = canon[cp]
            return dec(a, kd) + (dec(b, kd) if b else [])
        return [cp]

    def order(v):
        v = list(v)
        for i in range(1, len(v)):
            j = i
            c = cc(v[j])
            while c and j > 0 and cc(v[j - 1]) > c:
                v[j - 1], v[j] = v[j], v[j - 1]
                j -= 1
        return "".join(map(chr, v))

    bad = [c for c, (kd, d) in hf.items() if not is_hangul(c) and
           (order(dec(c, True)) != kd or order(dec(c, False)) != d)]
    if bad:
        sys.exit("HF decomposes differently from ours (exceptions applied): " +
                 ", ".join("U+%04X" % c for c in bad[:20]))
    bad = [c for c, (k, kk) in hf_comp.items() if nfc(chr(c), False) != k or nfc(chr(c), True) != kk]
    bad += [ab for ab, h in zip(sorted(pairs), hf_pairs) if nfc(chr(ab[0]) + chr(ab[1]), False) != h]
    if bad:
        sys.exit("HF composes differently from ours (exceptions applied): %s" % bad[:20])


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    peers = os.path.abspath(sys.argv[1])
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__))
    canon, compat, ccc, pairs = our_normalization(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                        "lmx_unicode_tables.c"))
    ask = [c for c in range(0x110000) if ccc(c)]
    # a SentencePiece nmt_nfkc charsmap (it maps U+0958) for the GB9c probe
    fx = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
                      "tokenizers", "spm-unigram", "tokenizer.json")
    r = subprocess.run(["node", "-e", PROBE_JS, peers, json.dumps(ask), os.path.abspath(fx),
                        json.dumps(sorted(pairs))],
                       capture_output=True, text=True)
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
    hf_decomp = {int(k): v for k, v in d["decomp"].items()}
    extra = [c for c in hf_decomp if c not in canon and c not in compat and not is_hangul(c)]
    if extra:
        sys.exit("HF decomposes chars our tables do not: " + ", ".join("U+%04X" % c for c in extra[:20]))
    nodecomp = set(canon) | set(compat)
    nodecomp -= set(hf_decomp)
    known = set(d["cccKnown"])
    noccc = set(c for c in ask if c not in known and c not in hf_decomp)
    hf_comp = {int(k): v for k, v in d["comp"].items()}
    check_decomp(canon, compat, ccc, pairs, nodecomp, noccc, hf_decomp, hf_comp, d["pairNfc"])
    accent = ranges(d["accent"])
    incb = {int(k): v for k, v in d["incb"].items()}
    n_incb = [sum(1 for v in incb.values() if v == k) for k in (1, 2, 3)]
    if not all(n_incb):
        sys.exit("GB9c probe found no Consonant, Linker or Extend char: %s" % n_incb)
    incb_runs = runs(incb, 0)
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
/* NFC/NFD/NFKC/NFKD (crate unicode-normalization-alignments, an older Unicode): the chars whose
 * decomposition (canonical or compatibility) lmx_unicode_tables has and HF does not (HF neither
 * decomposes nor composes them), and those with a nonzero combining class there and 0 in HF;
 * sorted inclusive ranges like the two above. */
extern const uint32_t lmx__hf_nodecomp_ranges[];
extern const uint32_t lmx__hf_nodecomp_ranges_n;
extern const uint32_t lmx__hf_noccc_ranges[];
extern const uint32_t lmx__hf_noccc_ranges_n;
/* StripAccents (the crate's is_combining_mark): the chars it removes, sorted inclusive ranges. */
extern const uint32_t lmx__hf_accent_ranges[];
extern const uint32_t lmx__hf_accent_ranges_n;
/* Grapheme rule GB9c (Indic_Conjunct_Break) as HF's segmentation has it: runs
 * (start << 2 | LMX_HF_INCB_*), the first at 0. */
enum { LMX_HF_INCB_NONE = 0, LMX_HF_INCB_CONSONANT = 1, LMX_HF_INCB_LINKER = 2, LMX_HF_INCB_EXTEND = 3 };
extern const uint32_t lmx__hf_incb_runs[];
extern const uint32_t lmx__hf_incb_runs_n;
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
    c += c_array("lmx__hf_nodecomp_ranges", "uint32_t", ["0x%x" % x for rg in ranges(nodecomp) for x in rg])
    c += c_array("lmx__hf_noccc_ranges", "uint32_t", ["0x%x" % x for rg in ranges(noccc) for x in rg])
    c += c_array("lmx__hf_accent_ranges", "uint32_t", ["0x%x" % x for rg in accent for x in rg])
    c += c_array("lmx__hf_incb_runs", "uint32_t", ["0x%x" % (s << 2 | v) for s, v in incb_runs])
    c += c_array("lmx__hf_script_runs", "uint32_t", ["0x%x" % (s << 8 | v) for s, v in script_runs])
    for name, text in (("lmx_hf_char_tables.h", h), ("lmx_hf_char_tables.c", c)):
        tmp = os.path.join(out_dir, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(out_dir, name))
    print("clean runs %d, mark ranges %d, cjk ranges %d, script classes %d, script runs %d, "
          "nodecomp %d, noccc %d, accent ranges %d, InCB consonant/linker/extend %s, runs %d" %
          (len(clean_runs), len(mark), len(cjk), max(script.values()), len(script_runs),
           len(nodecomp), len(noccc), len(accent), "/".join(map(str, n_incb)), len(incb_runs)))


if __name__ == "__main__":
    main()
