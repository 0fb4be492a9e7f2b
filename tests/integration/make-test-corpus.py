#!/usr/bin/env python3
"""Writes a small deterministic corpus for the integration tests (generated text, not real data).

  make-test-corpus.py OUTDIR

OUTDIR/slim/part0.jsonl.zst and part1.jsonl: SlimPajama-style records in four domains whose
document lengths span the paper's buckets (a few bytes to ~40K), including non-ASCII text.
OUTDIR/txt/Notes/*.txt: one document a file (domain = folder name).
Needs the zstd command line tool."""
import json, os, random, subprocess, sys

out = sys.argv[1]
rng = random.Random(1234)
words = ("data engineering long context retrieval needle haystack token sequence "
         "ünïcödé 数据 长上下文 emoji 🙂 tab\there line\nbreak").split(" ")
domains = {"RedPajamaBook": (2000, 40000), "RedPajamaC4": (20, 3000),
           "RedPajamaGithub": (100, 12000), "RedPajamaArXiv": (1000, 20000)}

def text(lo, hi):
    n = rng.randint(lo, hi)
    parts, size = [], 0
    while size < n:
        w = rng.choice(words)
        parts.append(w)
        size += len(w.encode()) + 1
    return " ".join(parts)

def records(n):
    for i in range(n):
        d = rng.choice(sorted(domains))
        yield {"text": text(*domains[d]), "meta": {"redpajama_set_name": d}, "i": i}

os.makedirs(f"{out}/slim", exist_ok=True)
os.makedirs(f"{out}/txt/Notes", exist_ok=True)
with open(f"{out}/slim/part0.jsonl", "w", encoding="utf-8") as f:
    for r in records(120):
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
subprocess.run(["zstd", "-q", "-f", "--rm", f"{out}/slim/part0.jsonl", "-o", f"{out}/slim/part0.jsonl.zst"], check=True)
with open(f"{out}/slim/part1.jsonl", "w", encoding="utf-8") as f:
    for r in records(60):
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
for i in range(5):
    with open(f"{out}/txt/Notes/note{i}.txt", "w", encoding="utf-8") as f:
        f.write(text(50, 9000))
