#!/usr/bin/env python3
"""Writes N tiny synthetic documents (1-8 lower-case letters each: generated, not real data) as
FILES zstd-compressed JSON Lines files, `{"text": ...}` a line, for the growth curve of
docs/SCALING.md (issue #15): with the `bytes` tokenizer a document is 1-8 tokens, so an index of
200M documents is ~8 GB (32-byte document records + 2-byte ids) and indexes at the indexer's
per-document rate. A 1M-line block is generated once and repeated (content does not matter
here, only counts and lengths). Needs the `zstd` program.

  make-tiny-corpus.py OUTDIR N [FILES]     # prints the inputs (DOMAIN=PATH) on stdout"""
import os, random, subprocess, sys

BLOCK = 1 << 20


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    files = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    os.makedirs(out, exist_ok=True)
    rng = random.Random(15)
    letters = "abcdefghijklmnopqrstuvwxyz"
    lines = ['{"text":"%s"}\n' % "".join(rng.choice(letters) for _ in range(rng.randint(1, 8))) for _ in range(BLOCK)]
    block = "".join(lines).encode()
    offs = [0]
    for ln in lines:
        offs.append(offs[-1] + len(ln))
    inputs = []
    for k in range(files):
        count = n // files + (1 if k < n % files else 0)
        path = os.path.join(out, f"tiny{k}.jsonl.zst")
        with open(path, "wb") as f:
            z = subprocess.Popen(["zstd", "-1", "-q", "-c"], stdin=subprocess.PIPE, stdout=f)
            while count >= BLOCK:
                z.stdin.write(block)
                count -= BLOCK
            z.stdin.write(block[:offs[count]])
            z.stdin.close()
            if z.wait() != 0:
                sys.exit("zstd failed")
        inputs.append(f"Tiny{k}={path}")
    print("\n".join(inputs))


if __name__ == "__main__":
    main()
