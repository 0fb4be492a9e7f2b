#!/usr/bin/env python3
"""Writes a deterministic mixed-script stress set as JSON Lines ({"text": ...}) to stdout, for the
tokenizer conformance suites: CJK, Arabic, Devanagari, Thai, Hangul, Cyrillic, Greek, emoji with
ZWJ and skin tones, flags, combining marks, fullwidth forms, ligatures, Unicode 15/16 letters,
digit runs in several scripts, whitespace runs, CRLF, contractions, code, URLs and the special
token strings of the common families. Usage: make-stress-text.py [N_DOCS] [SEED]"""
import json
import random
import sys

FRAGMENTS = [
    "The quick brown fox jumps over the lazy dog.", "I'LL", "we're", "THEY'VE", "don't", "'s", "'D",
    "日本語のテキスト、漢字とカタカナ。", "中文文本测试，标点符号！", "한국어 텍스트", "ｶﾀｶﾅ",
    "مرحبا بالعالم", "١٢٣٤٥٦", "हिन्दी पाठ", "१२३", "ภาษาไทย สวัสดีครับ", "Привет, мир!", "Ωμέγα λόγος",
    "👩‍👩‍👧‍👦", "👍🏽", "🏳️‍🌈", "🇩🇪🇯🇵", "😀😃", "e\u0301", "a\u0308\u0323", "x\u0327\u0301", "Å", "Å",
    "ＡＢＣ１２３", "ﬁﬂ ligatures", "Ⅻ ½ ² ③", "\U00031350\U00031351", "\U00010D50\U00010D51", "\U00016D40",
    "12345678901234", "3.14159", "1,000,000", "   ", "\t\t", "\n", "\n\n\n", "\r\n", "\r\n\r\n", "\u3000",
    "\u00a0", "\u2028", "\u200b", "def f(x):\n    return x**2 // 3", "if (a && b) { c++; }",
    "https://example.com/a/b?c=d&e=f", "user@example.org", "<s>", "</s>", "<|endoftext|>",
    "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>", "<bos>", "<end_of_turn>",
    "<｜begin▁of▁sentence｜>", "▁", "ſ's", "ǅ", "İstanbul", "ß", "ﬀ", "ℌ𝔢𝔩𝔩𝔬", "Ꙩ", "𐍈",
    # BertNormalizer / UnicodeScripts: controls, format chars (Cf), private use (Co), unassigned
    # (Cn) and chars newer than HF's tables, CJK extensions inside and outside HF's ranges,
    # accents, kana with U+30FC, script changes inside words
    "a\x01b\x7fc\x1fd", "x\x0by\x0cz\x85w", "soft\u00adhyphen", "\ufeffBOM", "w\u2060j", "\u200e\u200f",
    "\ue000\uf8ff\U000f0000", "\u0378\u0380", "\U0001e4d0\U0001e4d1", "\ufffd",
    "\U0002b820\U0002b81f\U0002ceb0\U00030000\U00031350", "\uf900\u2f800", "々〆",
    "Café naïve RÉSUMÉ", "Tiếng Việt", "ÅNGSTRÖM", "Straße", "ラーメンとカツ丼ー", "ﾗｰﾒﾝ",
    "abcΩδεжз123", "ΑΒΓabc", "x\u0300\u0301y", "Ⓐⓑ", "\u0e01\u0e34\u0e4c", "ᄀ\u1160",
    # normalization data newer than HF's (lmx_hf_char_tables.h): decompositions (U+1E030..1E06D,
    # U+32FF, U+11938 = U+11935 U+11930), combining classes (U+07FD), marks (Kawi U+11F00..)
    "\U0001e030\U0001e06d\u0308", "\u32ff", "\U00011935\U00011930\U00011938", "a\u0301\u07fd",
    "\U00011f00\U00011f01e\u0301",
    # Indic conjuncts (grapheme rule GB9c): one cluster, so the Precompiled charsmap maps U+0958
    # char by char and keeps the U+0301 it would drop from a short cluster
    "\u0915\u094d\u0958\u0301", "\u0915\u094d\u200d\u0958\u0301", "\u0915\u093c\u094d\u0958\u0301",
    "\u0915\u094d\u0937", "\u0915\u0958\u0301", "\u0995\u09cd\u09b7\u0301",
]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 12)
    for _ in range(n):
        k = rng.randint(1, 40)
        parts = []
        for _ in range(k):
            parts.append(rng.choice(FRAGMENTS))
            parts.append(rng.choice(["", " ", " ", "  ", "\n", ", ", "."]))
        print(json.dumps({"text": "".join(parts)}, ensure_ascii=False))


main()
