#!/usr/bin/env python3
"""Component matrix for conformance.tokenizer_components: writes one tokenizer.json per
normalizer / pre-tokenizer variant into OUT_DIR, each made by swapping the variant into a real
vocabulary (BASE, a byte-level BPE tokenizer.json such as GPT-2's): the variant's steps run
before a ByteLevel(use_regex=false) pre-tokenizer, so every string stays encodable.
With UNIGRAM (a SentencePiece Unigram tokenizer.json, tests/fixtures/tokenizers/spm-unigram/) it
also writes: its real Precompiled charsmap as a normalizer variant of BASE, and Unigram variants
(pre-tokenizers, byte fallback off, no unk fusing partners, all-equal scores for Viterbi ties).
Usage: make-component-tokenizers.py BASE_TOKENIZER_JSON OUT_DIR [UNIGRAM_TOKENIZER_JSON]"""
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

# BertNormalizer (its own, older Unicode sets: lmx_hf_char_tables) and UnicodeScripts
NORM.update({
    "bert": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
             "strip_accents": None, "lowercase": True},
    "bert-cased": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                   "strip_accents": None, "lowercase": False},
    "bert-strip-cased": {"type": "BertNormalizer", "clean_text": False, "handle_chinese_chars": False,
                         "strip_accents": True, "lowercase": False},
    "bert-nostrip-lower": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": False,
                           "strip_accents": False, "lowercase": True},
})
PRE["unicode-scripts"] = {"type": "UnicodeScripts"}
PRE["unicode-scripts-ws"] = [{"type": "UnicodeScripts"}, {"type": "WhitespaceSplit"}]


def cut(base, n_merges):
    """The base's first n_merges merges and the vocabulary they need (its 256 byte chars and the
    merge results, ids unchanged): the same tokenizer on a smaller scale, quicker to load for
    both tools (43 files)."""
    m = base["model"]
    merges = m["merges"][:n_merges]
    keep = {tok for tok, i in m["vocab"].items() if i < 256}
    # added tokens stay in the vocabulary: HF gives an added token missing from it a new id
    # (vocabulary size + n), ignoring the one in the file
    keep |= {a["content"] for a in base.get("added_tokens") or []}
    for x in merges:
        a, b = x if isinstance(x, list) else x.split(" ", 1)
        keep.add(a + b)
    t = dict(base)
    t["model"] = dict(m, merges=merges, vocab={k: v for k, v in m["vocab"].items() if k in keep})
    return t


def main():
    base = cut(json.load(open(sys.argv[1], encoding="utf-8")), 6000)
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
    if len(sys.argv) > 3:
        unigram(base, json.load(open(sys.argv[3], encoding="utf-8")), out)


def unigram(base, uni, out):
    """Precompiled into BASE; Unigram variants of UNI."""
    pc = [n for n in uni["normalizer"]["normalizers"] if n["type"] == "Precompiled"][0]
    split = {"type": "Split", "pattern": {"Regex": "\\s+|\\p{L}+|\\p{N}"}, "behavior": "Isolated", "invert": False}
    variants = {
        "norm-precompiled": dict(base, normalizer=pc,
                                 pre_tokenizer={"type": "Sequence", "pretokenizers": [split, BL]}),
        "norm-precompiled-lowercase": dict(base, normalizer={"type": "Sequence", "normalizers": [pc, {"type": "Lowercase"}]},
                                           pre_tokenizer={"type": "Sequence", "pretokenizers": [split, BL]}),
    }
    m = uni["model"]
    ms = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    for name, pre in [("metaspace-first", dict(ms, prepend_scheme="first")),
                      ("metaspace-never-nosplit", dict(ms, prepend_scheme="never", split=False)),
                      ("whitespace-split", [{"type": "WhitespaceSplit"}, ms]),
                      # Whitespace's \w+|[^\w\s]+ decides word edges that Unigram shows (Unicode 16 letters)
                      ("whitespace", [{"type": "Whitespace"}, ms]),
                      ("none", None)]:
        variants["unigram-pre-" + name] = dict(uni, pre_tokenizer=(
            {"type": "Sequence", "pretokenizers": pre} if isinstance(pre, list) else pre))
    variants["unigram-no-precompiled"] = dict(uni, normalizer={"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]})
    variants["unigram-no-byte-fallback"] = dict(uni, model=dict(m, byte_fallback=False))
    # Viterbi ties: every piece scores the same, so many paths tie and the first one found wins
    variants["unigram-ties"] = dict(uni, model=dict(m, vocab=[[p, -1.0] for p, _ in m["vocab"]]))
    variants["unigram-ties-zero"] = dict(uni, model=dict(m, vocab=[[p, 0.0] for p, _ in m["vocab"]]))
    # the unk piece matched literally and a short vocabulary: many unknowns, fused
    keep = m["vocab"][:3] + [v for v in m["vocab"][3:] if len(v[0]) == 1][:150]
    variants["unigram-small-unk"] = dict(uni, model=dict(m, vocab=keep, unk_id=0))
    for name, t in variants.items():
        json.dump(t, open(os.path.join(out, name + ".json"), "w", encoding="utf-8"), ensure_ascii=False)


main()
