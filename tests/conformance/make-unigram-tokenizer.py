#!/usr/bin/env python3
"""Writes a HuggingFace tokenizer.json for a SentencePiece Unigram .model, the way transformers'
SpmConverter (convert_slow_tokenizer.py) does for XGLM / T5 / XLM-R style models: normalizer
Sequence[Precompiled(the model's charsmap), Strip(right), Replace(" {2,}" -> "▁")], Metaspace
pre-tokenizer and decoder (prepend_scheme "always"), Unigram model with the model's pieces and
scores, unk_id and byte_fallback. The .model protobuf is read by hand (no protobuf module).

Usage: make-unigram-tokenizer.py MODEL OUT_JSON [--no-byte-fallback]

tests/fixtures/tokenizers/spm-unigram/ was made with it from a model trained by Debian's
`sentencepiece` (0.1.97) on the 1 MB corpus of ../shared/corpus plus the stress set:
    python3 ../shared/corpus/build-corpus.py /tmp/c1 --mb 1
    (zstd -dc /tmp/c1/train/chunk1/*.zst | jq -r .text; python3 tests/conformance/make-stress-text.py 400 3 | jq -r .text) > /tmp/train.txt
    spm_train --input=/tmp/train.txt --model_prefix=/tmp/uni --model_type=unigram --vocab_size=8000 \
        --byte_fallback=true --character_coverage=0.9995 --normalization_rule_name=nmt_nfkc
    python3 tests/conformance/make-unigram-tokenizer.py /tmp/uni.model tests/fixtures/tokenizers/spm-unigram/tokenizer.json
The charsmap is SentencePiece's built-in nmt_nfkc rule, the same blob T5, XLM-R, ALBERT and XGLM
files carry."""
import base64
import json
import struct
import sys


def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def fields(b):
    """(field number, wire type, value) of one protobuf message; value: int, bytes or float."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v = b[i:i + 8]
            i += 8
        elif wt == 2:
            n, i = varint(b, i)
            v = b[i:i + n]
            i += n
        elif wt == 5:
            v = struct.unpack("<f", b[i:i + 4])[0]
            i += 4
        else:
            raise SystemExit("unsupported wire type %d" % wt)
        yield f, wt, v


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        raise SystemExit(__doc__)
    byte_fallback = "--no-byte-fallback" not in sys.argv
    data = open(args[0], "rb").read()
    pieces, charsmap, unk_id, add_dummy_prefix = [], b"", None, True
    for f, _, v in fields(data):
        if f == 1:  # SentencePiece {1: piece, 2: score, 3: type}
            p = {1: b"", 2: 0.0, 3: 1}
            for g, _, w in fields(v):
                p[g] = w
            if p[3] == 2:
                unk_id = len(pieces)
            pieces.append([p[1].decode("utf-8"), float(p[2])])
        elif f == 3:  # NormalizerSpec {2: precompiled_charsmap, 3: add_dummy_prefix}
            for g, _, w in fields(v):
                if g == 2:
                    charsmap = w
                elif g == 3:
                    add_dummy_prefix = bool(w)
    norms = [{"type": "Strip", "strip_left": False, "strip_right": True},
             {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "\u2581"}]
    if charsmap:
        norms.insert(0, {"type": "Precompiled",
                         "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")})
    scheme = "always" if add_dummy_prefix else "never"
    added = [{"id": i, "content": p[0], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}
             for i, p in enumerate(pieces) if p[0] in ("<unk>", "<s>", "</s>", "<pad>")]
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": norms},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme,
                          "split": True},
        "post_processor": None,
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme,
                    "split": True},
        "model": {"type": "Unigram", "unk_id": unk_id, "vocab": pieces,
                  "byte_fallback": byte_fallback},
    }
    with open(args[1], "w", encoding="utf-8") as out:
        json.dump(tj, out, ensure_ascii=False, indent=None)
        out.write("\n")


if __name__ == "__main__":
    main()
