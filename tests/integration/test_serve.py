#!/usr/bin/env python3
"""Integration tests against the real longmixd: corpus -> index -> serve -> HTTP / longmix CLI.

  test_serve.py [TEST...]      (ctest runs one test per process)"""
import collections, glob, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmx_itest import (LONGMIX, LONGMIXD, Daemon, blake2b_256, check, http, main, make_corpus, make_index, run,
                       write_config, zstd_decompress)

PLANS = {"orig": {"strategy": "original", "seq_len": 4096, "global_batch": 8, "seed": 7},
         "ps": {"strategy": "per_source", "seq_len": 2048, "global_batch": 4, "seed": 3}}
BOS = 256  # the bytes tokenizer's BOS (CONTRACT.md)


def batch_url(d, plan, step, rank=0, world=1):
    return f"{d.url}/v1/plans/{plan}/batches/{step}?rank={rank}&world={world}"


def fetch_json(d, plan, step, rank=0, world=1):
    p = run([LONGMIX, "fetch", "--url", d.url, "--plan", plan, "--step", str(step), "--rank", str(rank),
             "--world", str(world), "--json"])
    return json.loads(p.stdout)


def docs_with_tokens(index, ids):
    p = run([LONGMIXD, "doc", index, *map(str, sorted(ids)), "--json", "--tokens"])
    return {o["id"]: o for o in map(json.loads, p.stdout.splitlines())}


def source_record(doc, cache={}):
    """The input text of a document, read back from the source file and line it names."""
    path = doc["source"]
    if path not in cache:
        if path.endswith(".zst"):
            raw = zstd_decompress(open(path, "rb").read())
        else:
            raw = open(path, "rb").read()
        cache[path] = raw.split(b"\n") if path.endswith((".jsonl", ".jsonl.zst")) else [raw]
    lines = cache[path]
    if doc["line"] == 0:
        return lines[0]
    return json.loads(lines[doc["line"] - 1])["text"].encode()


def test_same_bytes(wd):
    """Same batch twice, from two daemon processes, compressed or not, via HTTP or the CLI."""
    make_index(wd)
    cfg = write_config(wd, PLANS)
    a, b = Daemon(wd, cfg), Daemon(wd, cfg)
    try:
        for plan, step, rank, world in [("orig", 0, 0, 1), ("orig", 5, 1, 2), ("ps", 3, 3, 4)]:
            s1, h1, body1 = http(batch_url(a, plan, step, rank, world))
            s2, _, body2 = http(batch_url(a, plan, step, rank, world))
            s3, h3, body3 = http(batch_url(b, plan, step, rank, world))
            check(s1 == s2 == s3 == 200, f"statuses {s1} {s2} {s3}")
            check(h1.get("content-type") == "application/x-longmix-batch", f"content-type {h1.get('content-type')}")
            check(body1 == body2 == body3, f"{plan} step {step} rank {rank}/{world}: bodies differ")
            check(body1[:8] == b"LMXBATCH", "body does not start with the wire magic")
            check(h1.get("x-longmix-digest") == "blake2b-256=" + blake2b_256(body1),
                  f"digest header {h1.get('x-longmix-digest')} != blake2b-256 of the body")
            check(h1.get("x-longmix-digest") == h3.get("x-longmix-digest"), "digests differ between daemons")
            sz, hz, bodyz = http(batch_url(b, plan, step, rank, world), {"Accept-Encoding": "zstd"})
            check(sz == 200 and hz.get("content-encoding") == "zstd", f"zstd not used: {sz} {hz}")
            check(len(bodyz) < len(body1), "zstd body is not smaller")
            check(zstd_decompress(bodyz) == body1, "zstd body does not decompress to the same bytes")
            out = wd(f"{plan}.{step}.{rank}.bin")
            run([LONGMIX, "fetch", "--url", f"{a.url},{b.url}", "--plan", plan, "--step", str(step), "--rank",
                 str(rank), "--world", str(world), "--out", out])
            check(open(out, "rb").read() == body1, "longmix fetch --out differs from the HTTP body")
        check(http(f"{a.url}/healthz")[0] == 200, "healthz")
    finally:
        a.stop()
        b.stop()


def test_spans_trace_to_documents(wd):
    """Every span's tokens are the document's tokens at its offset, and the source line's bytes."""
    index = make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS))
    try:
        for plan in ("orig", "ps"):
            seqs = []
            for step in range(3):
                bt = fetch_json(d, plan, step)
                check(bt["plan"] == plan and bt["step"] == step and bt["world"] == 1, f"identity {bt['plan']}")
                check(len(bt["sequences"]) == PLANS[plan]["global_batch"], "sequence count")
                seqs += bt["sequences"]
            ids = {s["doc"] for q in seqs for s in q["spans"]}
            docs = docs_with_tokens(index, ids)
            n_spans = 0
            for k, q in enumerate(seqs):
                toks = q["tokens"]
                check(len(toks) == PLANS[plan]["seq_len"], "sequence length")
                covered = [False] * len(toks)
                for s in q["spans"]:
                    doc = docs[s["doc"]]
                    check(s["domain"] == doc["domain"], f"span domain {s['domain']} != doc {doc['domain']}")
                    want = doc["ids"][s["offset"]:s["offset"] + s["length"]]
                    got = toks[s["start"]:s["start"] + s["length"]]
                    check(got == want, f"{plan} seq {k}: span {s} differs from document tokens")
                    src = source_record(doc)[s["offset"]:s["offset"] + s["length"]]
                    check(bytes(got) == src, f"{plan} seq {k}: span {s} differs from {doc['source']}:{doc['line']}")
                    for i in range(s["start"], s["start"] + s["length"]):
                        check(not covered[i], f"seq {k}: position {i} covered twice")
                        covered[i] = True
                    n_spans += 1
                for i, t in enumerate(toks):
                    check(covered[i] or t == BOS, f"seq {k}: uncovered token {t} at {i} is not BOS")
                if k + 1 < len(seqs):
                    check(q["next_token"] == seqs[k + 1]["tokens"][0], f"seq {k}: next_token is not the stream's next")
                cu = q.get("cu_seqlens")
                if cu is not None:
                    check(cu[0] == 0 and cu[-1] == len(toks) and cu == sorted(cu), f"seq {k}: cu_seqlens {cu[:5]}")
            check(n_spans >= len(seqs), f"{plan}: only {n_spans} spans")
    finally:
        d.stop()


def test_world_size_independence(wd):
    """The global order does not depend on the world size (elastic restarts)."""
    make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS))
    try:
        for step in (0, 2):
            whole = fetch_json(d, "orig", step)["sequences"]
            for world in (2, 4, 8):
                parts = []
                for rank in range(world):
                    bt = fetch_json(d, "orig", step, rank, world)
                    check(bt["rank"] == rank and bt["world"] == world, "identity")
                    parts += bt["sequences"]
                check(parts == whole, f"step {step}: world {world} slices differ from world 1")
    finally:
        d.stop()


def test_index_matches_input(wd):
    """Per-domain document counts and token totals equal what the corpus holds (bytes tokenizer)."""
    inputs = make_corpus(wd)
    run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("index")] + inputs)
    want_docs, want_tokens = collections.Counter(), collections.Counter()
    for path in glob.glob(wd("corpus", "slim", "*")):
        raw = zstd_decompress(open(path, "rb").read()) if path.endswith(".zst") else open(path, "rb").read()
        for line in raw.splitlines():
            r = json.loads(line)
            want_docs[r["meta"]["redpajama_set_name"]] += 1
            want_tokens[r["meta"]["redpajama_set_name"]] += len(r["text"].encode())
    for path in glob.glob(wd("corpus", "txt", "Notes", "*.txt")):
        want_docs["Notes"] += 1
        want_tokens["Notes"] += os.path.getsize(path)
    st = json.loads(run([LONGMIXD, "stats", wd("index"), "--json"]).stdout)
    check(set(st["domains"]) == set(want_docs), f"domains {sorted(st['domains'])}")
    for name, dom in st["domains"].items():
        check(dom["docs"] == want_docs[name], f"{name}: {dom['docs']} docs, input has {want_docs[name]}")
        check(dom["tokens"] == want_tokens[name], f"{name}: {dom['tokens']} tokens, input has {want_tokens[name]}")
        check(sum(dom["buckets"].values()) == dom["tokens"], f"{name}: buckets do not sum to tokens")
        check(0 <= dom["long_tokens"] <= dom["tokens"], f"{name}: long_tokens")
    check(st["total_tokens"] == sum(want_tokens.values()), "total_tokens")
    run([LONGMIXD, "verify", wd("index")])
    # A re-run over the same inputs does no work and keeps the index identity.
    p = run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("index")] + inputs)
    check(b"(3 unchanged)" in p.stderr, f"re-run re-indexed: {p.stderr!r}")
    st2 = json.loads(run([LONGMIXD, "stats", wd("index"), "--json"]).stdout)
    check(st2 == st, "re-run changed the statistics")


def test_http_errors(wd):
    """Each bad request gets its 4xx and the JSON error body; the daemon keeps serving."""
    make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS))
    try:
        cases = [
            ("/v1/plans/nope/batches/0", 404, "unknown plan"),
            ("/v1/plans/orig/batches/0?rank=2&world=2", 400, "rank >= world"),
            ("/v1/plans/orig/batches/0?rank=0&world=3", 400, "world does not divide global_batch"),
            ("/v1/plans/orig/batches/0?rank=0&world=0", 400, "world 0"),
            ("/v1/plans/orig/batches/abc", 400, "junk step"),
            ("/v1/plans/orig/batches/-1", 400, "negative step"),
            ("/v1/plans/orig/batches/99999999999999999999999", 400, "overflowing step"),
            ("/v1/plans/orig/batches/0?rank=x", 400, "junk rank"),
            ("/v1/nothing", 404, "unknown path"),
        ]
        for path, status, what in cases:
            s, h, body = http(d.url + path)
            check(s == status, f"{what}: {path} gave {s}, want {status}")
            check(h.get("content-type", "").startswith("application/json"), f"{what}: content-type")
            err = json.loads(body)
            check(isinstance(err.get("error"), str) and isinstance(err.get("detail"), str) and err["detail"],
                  f"{what}: error body {body!r}")
        s, _, body = http(d.url + "/v1/plans/nope/batches/0")
        check("nope" in json.loads(body)["detail"], "the 404 detail does not name the plan")
        p = run([LONGMIX, "fetch", "--url", d.url, "--plan", "nope", "--step", "0", "--json"], ok=False)
        check(b"nope" in p.stderr and len(p.stderr.strip().splitlines()) == 1, f"CLI error: {p.stderr!r}")
        check(http(batch_url(d, "orig", 0))[0] == 200, "daemon stopped serving after errors")
    finally:
        d.stop()


def test_bad_input_errors(wd):
    """Bad configs and corpora are refused with a one-line reason naming the file/line/field."""
    make_index(wd)

    def fails(args, *needles):
        p = run(args, ok=False)
        msg = p.stderr.decode(errors="replace")
        for n in needles:
            check(n in msg, f"{args[:2]}: error {msg.strip()!r} does not name {n!r}")

    fails([LONGMIXD, "serve", "--config", wd("missing.json")], "missing.json")
    with open(wd("broken.json"), "w") as f:
        f.write('{"index": "x",\n "plans": {"a": {"strategy": "original",}}}')
    fails([LONGMIXD, "serve", "--config", wd("broken.json")], "broken.json", ":2")
    fails([LONGMIXD, "serve", "--config", write_config(wd, {"a": {"strategy": "orig"}}, "c1.json")],
          "c1.json", "plans.a.strategy")
    fails([LONGMIXD, "serve", "--config", write_config(wd, {"a": {"strategy": "original", "seq_len": -4}},
                                                        "c2.json")], "plans.a.seq_len")
    fails([LONGMIXD, "serve", "--config", write_config(wd, {"a": {"strategy": "per_source", "short_keep": 2}},
                                                        "c3.json")], "plans.a.short_keep")
    # A truncated .jsonl.zst names the file and the line it ends in; nothing is published.
    z = open(wd("corpus", "slim", "part0.jsonl.zst"), "rb").read()
    os.makedirs(wd("trunc"))
    with open(wd("trunc", "cut.jsonl.zst"), "wb") as f:
        f.write(z[:len(z) // 2])
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("tidx"), wd("trunc", "cut.jsonl.zst")],
          "cut.jsonl.zst", "line")
    check(not os.path.exists(wd("tidx", "manifest.json")), "a failed index run published a manifest")
    with open(wd("trunc", "bad.jsonl"), "w") as f:
        f.write('{"text": "ok", "meta": {"redpajama_set_name": "X"}}\n{"text": oops}\n')
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("bidx"), wd("trunc", "bad.jsonl")],
          "bad.jsonl:2")
    fails([LONGMIXD, "index", "--tokenizer", wd("nonexistent-tokenizer.json"), "--out", wd("nidx"),
           wd("trunc", "bad.jsonl")], "nonexistent-tokenizer.json")
    fails([LONGMIX, "fetch", "--url", "http://127.0.0.1:1", "--plan", "a", "--step", "0", "--json"], "127.0.0.1:1")


def test_text_view(wd):
    """?format=text decodes each span with the index's tokenizer; `longmix show` prints it."""
    index = make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS))
    try:
        for step, rank, world, seq in [(0, 0, 1, 0), (2, 1, 2, 3), (1, 3, 4, 1)]:
            bt = fetch_json(d, "orig", step, rank, world)
            n = len(bt["sequences"])
            g = step * PLANS["orig"]["global_batch"] + rank * n + seq
            s, _, body = http(f"{d.url}/v1/plans/orig/sequences/{g}?format=text")
            check(s == 200, f"format=text gave {s}: {body[:200]!r}")
            tv = json.loads(body)
            spans = bt["sequences"][seq]["spans"]
            check(len(tv["spans"]) == len(spans), "text view and batch disagree on the spans")
            docs = docs_with_tokens(index, {sp["doc"] for sp in spans})
            for sp, t in zip(spans, tv["spans"]):
                check((t["doc"], t["offset"], t["start"], t["length"]) ==
                      (sp["doc"], sp["offset"], sp["start"], sp["length"]), f"span {t} != {sp}")
                raw = source_record(docs[sp["doc"]])[sp["offset"]:sp["offset"] + sp["length"]]
                check(t["text"] == raw.decode("utf-8", errors="replace"), f"decoded text of doc {sp['doc']} differs")
                dd = docs[sp["doc"]]
                check((t.get("source"), t.get("line")) == (dd["source"], dd["line"]), f"span provenance {t} != doc {dd}")
            p = run([LONGMIX, "show", "--url", d.url, "--plan", "orig", "--step", str(step), "--seq", str(seq),
                     "--rank", str(rank), "--world", str(world)])
            out = p.stdout.decode("utf-8", errors="replace")
            check(tv["spans"][0]["text"][:40] in out, "longmix show does not print the decoded text")
            check(f"doc {spans[0]['doc']} " in out and spans[0]["domain"] in out, "show misses the span header")
            t0 = tv["spans"][0]
            check(f"from {t0['source']} line {t0['line']} " in out, "show does not name the source file and line")
        s, _, body = http(f"{d.url}/v1/plans/orig/sequences/0?format=xml")
        check(s == 400, f"format=xml gave {s}")
    finally:
        d.stop()
    # With a real tokenizer.json (copied into the index by `longmixd index`), when ../shared is here.
    tj = os.path.join(os.environ.get("LMX_SHARED_DIR", "/nonexistent"), "fixtures/tokenizers/llama2-sp-bpe/tokenizer.json")
    if not os.path.exists(tj):
        print("  (real-tokenizer part skipped: no ../shared fixtures)")
        return
    run([LONGMIXD, "index", "--tokenizer", tj, "--out", wd("index-sp"), wd("corpus", "slim")])
    check(open(wd("index-sp", "tokenizer.json"), "rb").read() == open(tj, "rb").read(), "tokenizer.json not copied")
    d = Daemon(wd, write_config(wd, PLANS, "config-sp.json", index=wd("index-sp")))
    try:
        tv = json.loads(http(f"{d.url}/v1/plans/orig/sequences/5?format=text")[2])
        docs = docs_with_tokens(wd("index-sp"), {t["doc"] for t in tv["spans"]})
        starts = [t for t in tv["spans"] if t["offset"] == 0]
        check(starts, "no document starts in sequence 5")
        for t in starts:
            original = source_record(docs[t["doc"]]).decode()
            check(original.startswith(t["text"].rstrip("\ufffd")), f"doc {t['doc']}: decoded text is not its start")
    finally:
        d.stop()


def test_cu_seqlens_match_spans(wd):
    """Each cu_seqlens segment holds at most one document piece (plus its separators), also
    right after a 2^26-token block boundary where documents cut by the block continue."""
    make_index(wd)
    plans = {"mix": {"strategy": "per_source", "seq_len": 4096, "global_batch": 8, "seed": 5, "eos": True}}
    d = Daemon(wd, write_config(wd, plans))
    try:
        first_block_end = (1 << 26) // 4096 // 8  # step whose sequences start block 1
        checked = 0
        for step in (0, 1, first_block_end - 1, first_block_end, first_block_end + 1):
            for k, q in enumerate(fetch_json(d, "mix", step)["sequences"]):
                cu = q["cu_seqlens"]
                seg_of = [max(i for i in range(len(cu) - 1) if cu[i] <= sp["start"]) for sp in q["spans"]]
                for sp, i in zip(q["spans"], seg_of):
                    check(sp["start"] + sp["length"] <= cu[i + 1], f"step {step} seq {k}: span {sp['start']}+"
                          f"{sp['length']} crosses the segment [{cu[i]}, {cu[i + 1]})")
                check(len(set(seg_of)) == len(seg_of), f"step {step} seq {k}: two documents in one segment: "
                      f"cu {cu[:8]} spans {[(s['start'], s['length']) for s in q['spans']][:8]}")
                checked += 1
        check(checked == 40, f"checked {checked} sequences")
    finally:
        d.stop()


TESTS = {f.__name__[5:]: f for f in [test_same_bytes, test_spans_trace_to_documents, test_world_size_independence,
                                      test_index_matches_input, test_http_errors, test_bad_input_errors,
                                      test_text_view, test_cu_seqlens_match_spans]}

if __name__ == "__main__":
    sys.exit(main(TESTS))
