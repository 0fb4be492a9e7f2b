#!/usr/bin/env python3
"""Conformance of `longmixd index` with the reference tokenizer on the real corpus of ../shared:
per-domain document counts equal the input's, every document's ids (read back with `longmixd doc
--tokens`, located by its source file and line) equal HF's ids for that input line, and the
per-domain token totals of `stats --json` equal the sums of HF's counts.

Documents that contain an added-token string ("<s>", "<|begin_of_text|>", ...) are compared with
`longmixd tokenize` instead: the index treats such strings as plain text (proto/TOKENIZER.md),
HF's encode() matches them. Their number is printed.

Environment: LONGMIXD, LMX_SHARED_DIR, LMX_PEERS_DIR (default /tmp/lmx-peers), LMX_INDEXTEST_DIR
(work folder). Exit 77 (skip) without ../shared, node or the installed reference."""
import collections, glob, json, os, subprocess, sys

SKIP = 77


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


longmixd = os.environ["LONGMIXD"]
shared = os.environ.get("LMX_SHARED_DIR", "")
if not os.path.isdir(os.path.join(shared, "fixtures", "tokenizers")):
    skip(f"no shared dir with fixtures (LMX_SHARED_DIR={shared!r})")
peers = os.environ.get("LMX_PEERS_DIR") or "/tmp/lmx-peers"
if not os.path.isdir(os.path.join(peers, "node_modules")):
    peers = "/tmp/lmx-peers"
if not os.path.isdir(os.path.join(peers, "node_modules")):
    skip("reference tokenizer not installed (LMX_PEERS_DIR or /tmp/lmx-peers)")
if subprocess.run(["sh", "-c", "command -v node"], capture_output=True).returncode != 0:
    skip("node is not installed")

work = os.environ.get("LMX_INDEXTEST_DIR", "/tmp/lmx-index-conformance")
os.makedirs(work, exist_ok=True)
corpus = os.path.join(work, "corpus")
if not os.path.exists(os.path.join(corpus, "manifest.json")):
    subprocess.run([sys.executable, os.path.join(shared, "corpus", "build-corpus.py"), corpus, "--mb", "4"],
                   check=True, capture_output=True)

# Documents that contain added-token strings (real corpora do: Perl docs quote "<s>").
extra = os.path.join(corpus, "train", "added_tokens.jsonl")
if not os.path.exists(extra + ".zst"):
    with open(extra, "w") as f:
        for t in ["a <s> b </s> c <unk>", "<|begin_of_text|>Hello<|end_of_text|> world",
                  "x<s>y <|eot_id|>\n<s>", "no special tokens here"]:
            f.write(json.dumps({"text": t, "meta": {"redpajama_set_name": "RedPajamaStackExchange"}}) + "\n")
    subprocess.run(["zstd", "-q", "--rm", extra], check=True)

# The input, line by line, as the index will address it.
lines = {}  # (path, line) -> record
for path in sorted(glob.glob(os.path.join(corpus, "**", "*.jsonl.zst"), recursive=True)):
    raw = subprocess.run(["zstd", "-dcq", path], capture_output=True, check=True).stdout
    for i, line in enumerate(raw.split(b"\n")):
        if line.strip():
            lines[(path, i + 1)] = json.loads(line)
keys = sorted(lines)
texts = "".join(json.dumps({"text": lines[k]["text"]}) + "\n" for k in keys).encode()

failed = 0
for fx, matched in (("llama2-sp-bpe", False), ("llama3-bytelevel", False), ("llama2-sp-bpe", True),
                    ("llama3-bytelevel", True)):
    tj = os.path.join(shared, "fixtures", "tokenizers", fx, "tokenizer.json")
    # With --match-added-tokens every document must equal HF; without, added-token strings are text.
    added = [] if matched else [t["content"] for t in json.load(open(tj)).get("added_tokens", [])]
    out = os.path.join(work, f"index-{fx}{'-matched' if matched else ''}")
    subprocess.run(["rm", "-rf", out], check=True)
    subprocess.run([longmixd, "index", "--tokenizer", tj, "--out", out, corpus] +
                   (["--match-added-tokens"] if matched else []), check=True, capture_output=True)
    fx = fx + (" --match-added-tokens" if matched else "")
    hf = subprocess.run(["node", os.path.join(peers, "hf-tokenize.js"), tj], input=texts, capture_output=True,
                        check=True).stdout.decode().splitlines()
    ours = subprocess.run([longmixd, "tokenize", "--tokenizer", tj], input=texts, capture_output=True,
                          check=True).stdout.decode().splitlines() if added else hf
    want = {}
    n_added = 0
    for k, h, o in zip(keys, hf, ours):
        if any(a in lines[k]["text"] for a in added):
            n_added += 1
            want[k] = json.loads(o)
        else:
            want[k] = json.loads(h)
    stats = json.loads(subprocess.run([longmixd, "stats", out, "--json"], capture_output=True, check=True).stdout)
    n_docs = stats["total_docs"]
    docs = subprocess.run([longmixd, "doc", out, *map(str, range(n_docs)), "--json", "--tokens"],
                          capture_output=True, check=True).stdout.decode().splitlines()
    seen = set()
    dom_docs, dom_tokens = collections.Counter(), collections.Counter()
    bad = 0
    for line in docs:
        d = json.loads(line)
        k = (d["source"], d["line"])
        if k not in lines:
            print(f"FAIL {fx}: doc {d['id']} names {k}, not an input line")
            bad += 1
            continue
        seen.add(k)
        rec = lines[k]
        if d["domain"] != rec["meta"]["redpajama_set_name"]:
            print(f"FAIL {fx}: doc {d['id']} ({k[0]}:{k[1]}) domain {d['domain']}, input says "
                  f"{rec['meta']['redpajama_set_name']}")
            bad += 1
        if d["ids"] != want[k]:
            first = next((i for i, (a, b) in enumerate(zip(d["ids"], want[k])) if a != b),
                         min(len(d["ids"]), len(want[k])))
            print(f"FAIL {fx}: doc {d['id']} ({k[0]}:{k[1]}) ids differ from HF at position {first}")
            bad += 1
        dom_docs[rec["meta"]["redpajama_set_name"]] += 1
        dom_tokens[rec["meta"]["redpajama_set_name"]] += len(want[k])
    if seen != set(keys):
        print(f"FAIL {fx}: {len(set(keys) - seen)} input lines have no document")
        bad += 1
    for name, dom in stats["domains"].items():
        if dom["docs"] != dom_docs[name] or dom["tokens"] != dom_tokens[name]:
            print(f"FAIL {fx}: {name}: stats say {dom['docs']} docs / {dom['tokens']} tokens, the input and HF "
                  f"give {dom_docs[name]} / {dom_tokens[name]}")
            bad += 1
    print(f"{'ok  ' if not bad else 'FAIL'} {fx}: {len(docs)} documents in {len(stats['domains'])} domains, "
          f"{stats['total_tokens']} tokens; ids equal HF's ({n_added} documents with added-token strings "
          f"compared with `longmixd tokenize`)")
    failed += bad
sys.exit(1 if failed else 0)
