#!/usr/bin/env python3
"""Builds a small demo corpus in SlimPajama format from text Debian installs on every machine.

  demo-corpus.py OUTDIR [--mb 8]

Writes OUTDIR/train/chunk1/demo_N.jsonl.zst, lines {"text": ..., "meta": {"redpajama_set_name": ...}}.
The text is real, the domain labels are STAND-INS chosen by where the text comes from:
  RedPajamaBook      /usr/share/common-licenses (long legal prose)
  RedPajamaGithub    C headers under /usr/include and Python sources under /usr/lib/python3*
  RedPajamaC4        /usr/share/doc/*/copyright files (short)
It is for trying longmix out, not a training corpus. Deterministic for a given machine image.
Needs the zstd command line tool."""
import argparse, glob, json, os, subprocess

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--mb", type=float, default=8)
args = ap.parse_args()

sources = {
    "RedPajamaBook": sorted(glob.glob("/usr/share/common-licenses/*")),
    "RedPajamaGithub": sorted(glob.glob("/usr/include/**/*.h", recursive=True))
    + sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True)),
    "RedPajamaC4": sorted(glob.glob("/usr/share/doc/*/copyright")),
}
budget = {"RedPajamaBook": 0.25, "RedPajamaGithub": 0.5, "RedPajamaC4": 0.25}

docs = []
for domain, files in sources.items():
    left = int(args.mb * 1e6 * budget[domain])
    for path in files:
        if left <= 0:
            break
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        try:
            text = open(path, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        if not text.strip():
            continue
        docs.append({"text": text, "meta": {"redpajama_set_name": domain, "path": path}})
        left -= len(text.encode())
# Interleave domains as SlimPajama's shuffled chunks do, deterministically.
docs.sort(key=lambda d: (len(d["text"]) * 2654435761) % 1000003)
outdir = os.path.join(args.out, "train", "chunk1")
os.makedirs(outdir, exist_ok=True)
per_file = 1000
for n in range(0, len(docs), per_file):
    path = os.path.join(outdir, f"demo_{n // per_file}.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for d in docs[n:n + per_file]:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    subprocess.run(["zstd", "-q", "-f", "--rm", path, "-o", path + ".zst"], check=True)
counts = {}
for d in docs:
    c = counts.setdefault(d["meta"]["redpajama_set_name"], [0, 0])
    c[0] += 1
    c[1] += len(d["text"].encode())
for k, (n, b) in sorted(counts.items()):
    print(f"  {k:<18} {n:6d} docs {b / 1e6:7.2f} MB")
