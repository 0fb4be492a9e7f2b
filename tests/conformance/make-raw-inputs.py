#!/usr/bin/env python3
"""Writes raw JSON Lines (bytes, not valid UTF-8 everywhere) to stdout for the tokenizer
conformance suite: documents whose "text" holds invalid UTF-8 (overlong forms, truncated
sequences, lone continuation bytes, UTF-8-encoded surrogates, code points past U+10FFFF, bytes
that never occur) between ordinary text, and lines the reference skips as blank because
JavaScript's String.trim() leaves nothing (U+00A0, U+3000, U+FEFF, U+2028, U+205F ... alone or
with ASCII whitespace). node's readline repairs each line lossily (one U+FFFD per maximal invalid
subpart, proto/TOKENIZER.md); `longmixd tokenize` must give the same ids and skip the same lines.
Usage: make-raw-inputs.py > raw.jsonl"""
import sys

BAD = [
    b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xf8\x88\x80\x80\xaf",  # overlong
    b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xe2\x82x", b"\xf0\x9f\x98 ",  # truncated
    b"\x80", b"\xbf\xbf", b"\x80\x80\x80\x80\x80",  # lone continuation bytes
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\xbd\xed\xb8\x80",  # surrogates (CESU-8 pair last)
    b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf7\xbf\xbf\xbf",  # past U+10FFFF
    b"\xfe", b"\xff", b"\xfe\xff", b"\xc0", b"\xe0\x9f\x80", b"\xf0\x8f\xbf\xbf",
]
BLANK = [
    b"\xc2\xa0", b"\xe3\x80\x80", b"\xef\xbb\xbf", b"\xe2\x80\xa8", b"\xe2\x80\xa9", b"\xe1\x9a\x80",
    b"\xe2\x80\x80\xe2\x80\x8a", b"\xe2\x80\xaf\xe2\x81\x9f", b" \t\xc2\xa0\x0b\x0c \xe3\x80\x80 ",
]
# not blank to the reference: a wrong ending of a blank sequence is text, not JSON, so it is not
# written (the reference would fail on it as well)


def main():
    out = sys.stdout.buffer
    words = [b"caf", b" au lait", b"Hello", b" world", b"\xe6\x97\xa5\xe6\x9c\xac", b"123", b" ", b"\xc3\xa9"]
    k = 0
    for i, bad in enumerate(BAD):
        for pre, post in ((b"", b""), (words[i % len(words)], words[(i + 3) % len(words)])):
            out.write(b'{"text":"' + pre + bad + post + b'"}\n')
            out.write(BLANK[k % len(BLANK)] + b"\n")
            k += 1
    # every invalid piece in one document, and next to the escape of a lone surrogate
    out.write(b'{"text":"' + b"a".join(BAD) + b'"}\n')
    out.write(b'{"text":"\\ud800' + BAD[13] + b'x\\udfff"}\n')
    out.write(b'{"text":"end"}\n')


main()
