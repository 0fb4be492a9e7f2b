#!/usr/bin/env python3
"""Integration tests of `longmixd index` input formats and field layouts (issue #13): --text-field,
--id-field, --domain-from-path, gzip / .jsonl.zstd, MDS folders; each new format through reuse,
--shard/--merge, kill -9 resume and corrupt input exactly like JSON Lines.

  test_inputs.py [TEST...]      (ctest runs one test per process)"""
import glob, gzip, json, os, shutil, signal, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmx_itest import LONGMIXD, check, main, run

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(SRC, "tests", "fixtures", "inputs")


def fails(args, *needles):
    p = run(args, ok=False)
    msg = p.stderr.decode(errors="replace")
    for n in needles:
        check(n in msg, f"{args[:3]}: error {msg.strip()!r} does not name {n!r}")
    return msg


def index(out, *args):
    return run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", out, *args]).stderr.decode()


def all_docs(idx, tokens=True):
    st = json.loads(run([LONGMIXD, "stats", idx, "--json"]).stdout)
    n = st["total_docs"]
    args = [LONGMIXD, "doc", idx, *map(str, range(n)), "--json"] + (["--tokens"] if tokens else [])
    return st, [json.loads(l) for l in run(args).stdout.splitlines()] if n else []


def corpus(n_files=3, docs=40, seed=13):
    """Deterministic documents: (domain, id, text) per file; texts of mixed length and script."""
    words = ["long", "context", "数据", "ünïcödé", "needle", "haystack", "🙂", "tab\there", "line\nbreak"]
    files = []
    for f in range(n_files):
        rows = []
        for d in range(docs):
            k = (f * 7919 + d * 104729 + seed) % 1000
            n = 1 + (k * 37) % 400
            text = " ".join(words[(k + i * i) % len(words)] for i in range(n))
            rows.append((["arxiv", "web", "code"][(f + d) % 3], f"f{f}-d{d}", text))
        files.append(rows)
    return files


def write_jsonl(path, rows, layout="slim"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for dom, did, text in rows:
            if layout == "slim":
                o = {"text": text, "meta": {"redpajama_set_name": dom}}
            else:  # The Stack-like: text in "content", id and domain elsewhere
                o = {"content": text, "hexsha": did, "info": {"lang": dom}}
            f.write(json.dumps(o, ensure_ascii=False) + "\n")


def docs_key(docs):
    """What must be equal across layouts/formats: domain, token ids and line/row of each document."""
    return [(d["domain"], d["ids"], d["line"]) for d in docs]


def test_field_layout(wd):
    """--text-field/--domain-field/--id-field on another JSON layout give the same documents as the
    SlimPajama layout; --id-field is shown by `doc` as doc_id; --domain-from-path labels by folder;
    each option is part of the reuse key."""
    files = corpus()
    for i, rows in enumerate(files):
        write_jsonl(wd("slim", f"p{i}.jsonl"), rows)
        write_jsonl(wd("stack", f"p{i}.jsonl"), rows, layout="stack")
    index(wd("a"), wd("slim"))
    index(wd("b"), "--text-field", "content", "--domain-field", "info.lang", "--id-field", "hexsha", wd("stack"))
    sa, da = all_docs(wd("a"))
    sb, db = all_docs(wd("b"))
    check(sa["domains"] == sb["domains"] and sa["total_tokens"] == sb["total_tokens"], "statistics differ by layout")
    check(docs_key(da) == docs_key(db), "documents differ by layout")
    want_ids = [r[1] for rows in files for r in rows]
    check([d.get("doc_id") for d in db] == want_ids, f"doc_id provenance wrong: {[d.get('doc_id') for d in db][:3]}")
    check(all("doc_id" not in d for d in da), "doc_id shown without --id-field")
    run([LONGMIXD, "verify", wd("b")])
    # The default layout keeps failing on the other one, naming the field.
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("c"), wd("stack")], "field 'text' missing")
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("c"), "--text-field", "info.nope",
           "--domain-field", "info.lang", wd("stack")], "field 'info.nope' missing", "p0.jsonl:1")
    # Reuse: the same options reuse every shard; another --id-field or --text-field re-indexes.
    out = index(wd("b"), "--text-field", "content", "--domain-field", "info.lang", "--id-field", "hexsha", wd("stack"))
    check("(3 unchanged)" in out, f"same options re-indexed: {out!r}")
    out = index(wd("b"), "--text-field", "content", "--domain-field", "info.lang", wd("stack"))
    check("(0 unchanged)" in out, f"dropping --id-field reused shards: {out!r}")
    check(all("doc_id" not in d for d in all_docs(wd("b"))[1]), "doc_id kept after re-index without --id-field")
    # --domain-from-path: data/{domain}/*.jsonl, relative pattern under an absolute INPUT.
    for i, rows in enumerate(files):
        write_jsonl(wd("data", ["books", "news", "books"][i], f"p{i}.jsonl"), rows)
    index(wd("d"), "--domain-from-path", "data/{domain}/*.jsonl", wd("data"))
    sd, dd = all_docs(wd("d"), tokens=False)
    check({k: v["docs"] for k, v in sd["domains"].items()} == {"books": 80, "news": 40}, f"domains {sd['domains']}")
    check(all(f"/{d['domain']}/" in d["source"] for d in dd), "domain does not come from the path")
    # DOMAIN=PATH wins over the pattern; a path that does not match is an error naming it.
    index(wd("e"), "--domain-from-path", "data/{domain}/*.jsonl", "Forced=" + wd("data", "news"))
    check(list(all_docs(wd("e"), tokens=False)[0]["domains"]) == ["Forced"], "DOMAIN= did not win")
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("f"), "--domain-from-path", "x/{domain}/*.jsonl",
           wd("data")], "does not match --domain-from-path", "p0.jsonl")
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("f"), "--domain-from-path", "data/*.jsonl",
           wd("data")], "{domain}")


def same_docs(ref, idx, what, source_map=None):
    """idx holds the same documents (domain, ids, line) and statistics as the index ref."""
    s1, d1 = all_docs(ref)
    s2, d2 = all_docs(idx)
    check(s1["domains"] == s2["domains"], f"{what}: statistics differ from the reference")
    check(docs_key(d1) == docs_key(d2), f"{what}: documents differ from the reference")
    return d2


def test_gzip_fixtures(wd):
    """gzip from GNU gzip (one and several members) and Python's gzip module, .jsonl.zstd from the
    zstd CLI and gzip under a .jsonl name (magic bytes decide) index like the plain file."""
    fx = os.path.join(FIXTURES, "gzip")
    index(wd("ref"), os.path.join(fx, "docs.jsonl"))
    for name in ["docs.gzip-cli.jsonl.gz", "docs.multi-member.jsonl.gz", "docs.python.json.gz", "docs.jsonl.zstd",
                 "docs-named-plain.jsonl"]:
        idx = wd("ix-" + name)
        index(idx, "--id-field", "id", os.path.join(fx, name))
        docs = same_docs(wd("ref"), idx, name)
        check(all(d["source"].endswith(name) for d in docs), f"{name}: provenance {docs[0]['source']}")
        check([d["doc_id"] for d in docs] == [f"doc-{i}" for i in range(30)], f"{name}: doc_id wrong")
        check(docs[8]["line"] == 10, f"{name}: line numbers do not count the blank line")
        kind = json.load(open(os.path.join(idx, "manifest.json")))["shards"][0]["kind"]
        want = "jsonl.zst" if name.endswith("zstd") else "jsonl.gz"
        check(kind == want, f"{name}: kind {kind}, want {want}")


def corrupt_gzip_cases(wd, good):
    """(file name, bytes, what the error must say) for damaged copies of the gzip file good."""
    data = open(good, "rb").read()
    crc = bytearray(data)
    crc[-6] ^= 0xFF  # the CRC32 of the last member
    body = bytearray(data)
    body[len(body) // 2] ^= 0x55
    return [("truncated.jsonl.gz", data[:len(data) * 2 // 3], "truncated gzip"),
            ("crc.jsonl.gz", bytes(crc), "incorrect data check"),
            ("garbage.jsonl.gz", data + b"garbage\n", "not gzip"),
            ("header.jsonl.gz", data[:5], "truncated gzip"),
            ("flipped.jsonl.gz", bytes(body), "gzip"),
            ("plain.jsonl.gz", b'{"text": "x", "meta": {"redpajama_set_name": "a"}}\n', "not gzip data")]


def test_gzip_corrupt(wd):
    """A truncated or damaged gzip file fails the run naming the file (nothing published), or with
    --bad-input skip is counted as skipped while the other inputs are indexed."""
    fx = os.path.join(FIXTURES, "gzip")
    os.makedirs(wd("in"))
    shutil.copy(os.path.join(fx, "docs.multi-member.jsonl.gz"), wd("in", "a-good.jsonl.gz"))
    for name, data, needle in corrupt_gzip_cases(wd, os.path.join(fx, "docs.multi-member.jsonl.gz")):
        with open(wd(name), "wb") as f:
            f.write(data)
        msg = fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("x-" + name), wd("in"), wd(name)],
                    name, needle)
        check(not os.path.exists(wd("x-" + name, "manifest.json")), f"{name}: a failed run published a manifest")
        out = run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("s-" + name), "--bad-input", "skip",
                   wd("in"), wd(name)]).stderr.decode()
        check("1 records skipped" in out and name in out, f"{name}: skip not reported: {out!r} ({msg!r})")
        st, _ = all_docs(wd("s-" + name), tokens=False)
        check(st["total_docs"] == 30, f"{name}: the good input was not indexed with --bad-input skip")


TESTS = {f.__name__[5:]: f for f in [test_field_layout, test_gzip_fixtures, test_gzip_corrupt]}

if __name__ == "__main__":
    sys.exit(main(TESTS))
