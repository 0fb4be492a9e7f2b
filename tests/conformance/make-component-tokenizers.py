#!/usr/bin/env python3
"""Component matrix for conformance.tokenizer_components: writes one tokenizer.json per
normalizer / pre-tokenizer variant into OUT_DIR, each made by swapping the variant into a real
vocabulary (BASE, a byte-level BPE tokenizer.json such as GPT-2's): the variant's steps run
before a ByteLevel(use_regex=false) pre-tokenizer, so every string stays encodable.
Usage: make-component-tokenizers.py BASE_TOKENIZER_JSON OUT_DIR"""
import json
import os
import sys

BL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
BEHAVIORS = ["Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"]
PRE = {
    "digits": {"type": "Digits", "individual_digits": False},
    "digits-individual": {"type": "Digits", "individual_digits": True},
    "whitespace": {"type": "Whitespace"},
    "whitespace-split": {"type": "WhitespaceSplit"},
    "punctuation": {"type": "Punctuation", "behavior": "Isolated"},
    "punctuation-contiguous": {"type": "Punctuation", "behavior": "Contiguous"},
    "char-delimiter": {"type": "CharDelimiterSplit", "delimiter": "-"},
    "metaspace-always": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
    "metaspace-first": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True},
    "metaspace-never-nosplit": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never", "split": False},
    "deepseek-digits-cjk": [{"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
                            {"type": "Split", "pattern": {"Regex": "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"},
                             "behavior": "Isolated", "invert": False}],
}
for b in BEHAVIORS:
    for inv in (False, True):
        PRE["split-re-%s%s" % (b, "-invert" if inv else "")] = {
            "type": "Split", "pattern": {"Regex": "\\p{N}+|[\\p{P}\\p{S}]"}, "behavior": b, "invert": inv}
    PRE["split-str-%s" % b] = {"type": "Split", "pattern": {"String": ", "}, "behavior": b, "invert": False}
    PRE["split-empty-%s" % b] = {"type": "Split", "pattern": {"Regex": "x*"}, "behavior": b, "invert": False}
NORM = {
    "nfc": {"type": "NFC"},
    "prepend": {"type": "Prepend", "prepend": "\u2581"},
    "replace-str": {"type": "Replace", "pattern": {"String": "  "}, "content": " _ "},
    "replace-regex": {"type": "Replace", "pattern": {"Regex": "\\s+|\\p{N}"}, "content": "#"},
    "nfd": {"type": "NFD"},
    "nfkc": {"type": "NFKC"},
    "nfkd": {"type": "NFKD"},
    "lowercase": {"type": "Lowercase"},
    "strip": {"type": "Strip", "strip_left": True, "strip_right": True},
    "strip-left": {"type": "Strip", "strip_left": True, "strip_right": False},
    "strip-accents": {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}]},
    "nfkc-lowercase": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]},
}


def main():
    base = json.load(open(sys.argv[1], encoding="utf-8"))
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for name, pre in PRE.items():
        t = dict(base)
        t["normalizer"] = None
        t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": (pre if isinstance(pre, list) else [pre]) + [BL]}
        json.dump(t, open(os.path.join(out, "pre-%s.json" % name), "w", encoding="utf-8"), ensure_ascii=False)
    for name, norm in NORM.items():
        t = dict(base)
        t["normalizer"] = norm
        t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\s+|\\p{L}+|\\p{N}"}, "behavior": "Isolated", "invert": False}, BL]}
        json.dump(t, open(os.path.join(out, "norm-%s.json" % name), "w", encoding="utf-8"), ensure_ascii=False)


main()
