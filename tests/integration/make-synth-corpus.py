#!/usr/bin/env python3
"""Writes a deterministic synthetic corpus (generated ASCII text, not real data) for the plan
tests and benchmarks: one .jsonl file per domain, `{"text": ...}` a line, to be indexed with the
`bytes` tokenizer as `DOMAIN=OUTDIR/DOMAIN.jsonl` (a token per byte, so a document's length in
tokens is its length in bytes).

  make-synth-corpus.py OUTDIR                    # mixture: ~26M tokens in 6 domains (see MIX)
  make-synth-corpus.py OUTDIR --bench N          # N short documents (16-96 tokens) in 4 domains

Prints the `longmixd index` inputs (DOMAIN=PATH ...) on stdout, one a line."""
import math, os, random, sys

# Domain -> (documents, length sampler). Lengths differ by domain; SynBook has a long tail of
# documents above 128K tokens (up to 600K), SynC4 is mostly short with a few long pages,
# SynGithub is log-normal (mixed short and long), SynShort is tiny documents only.
MIX = {
    "SynBook": (50, lambda r: int(math.exp(r.uniform(math.log(3000), math.log(600000))))),
    "SynArXiv": (400, lambda r: int(math.exp(r.uniform(math.log(1000), math.log(50000))))),
    "SynGithub": (1500, lambda r: min(150000, max(30, int(r.lognormvariate(math.log(1500), 1.3))))),
    "SynC4": (5000, lambda r: r.randint(4000, 16000) if r.random() < 0.03 else r.randint(50, 1500)),
    "SynWiki": (600, lambda r: int(math.exp(r.uniform(math.log(200), math.log(40000))))),
    "SynShort": (20000, lambda r: r.randint(8, 48)),  # tweet-like: separators are ~3% of its stream
}
BENCH_DOMAINS = ["BenchA", "BenchB", "BenchC", "BenchD"]


def text_pool(rng, size):
    """A pool of word-like ASCII (lower-case letters and spaces: nothing to escape in JSON)."""
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 9)))
             for _ in range(4000)]
    out, n = [], 0
    while n < size:
        w = rng.choice(words)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:size]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(20240527)
    pool = text_pool(rng, 1 << 21)
    pool2 = pool + pool  # slices wrap around

    def doc(n):  # every MIX length is below the pool size
        o = rng.randrange(len(pool))
        return pool2[o:o + n]

    inputs = []
    if len(sys.argv) > 3 and sys.argv[2] == "--bench":
        n = int(sys.argv[3])
        per = [n // len(BENCH_DOMAINS)] * len(BENCH_DOMAINS)
        per[0] += n - sum(per)
        for name, count in zip(BENCH_DOMAINS, per):
            path = os.path.join(out, name + ".jsonl")
            with open(path, "w") as f:
                buf = []
                for _ in range(count):
                    k = rng.randint(16, 96)
                    o = rng.randrange(len(pool))
                    buf.append('{"text":"' + pool2[o:o + k] + '"}\n')
                    if len(buf) >= 65536:
                        f.write("".join(buf))
                        buf = []
                f.write("".join(buf))
            inputs.append(f"{name}={path}")
    else:
        for name, (count, sampler) in MIX.items():
            path = os.path.join(out, name + ".jsonl")
            with open(path, "w") as f:
                for _ in range(count):
                    f.write('{"text":"' + doc(max(1, sampler(rng))) + '"}\n')
            inputs.append(f"{name}={path}")
    print("\n".join(inputs))


if __name__ == "__main__":
    main()
