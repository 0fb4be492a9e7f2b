#!/usr/bin/env python3
"""Integration tests of Parquet inputs of `longmixd index` (issue #13) on files written by
independent writers (tests/unit/parquet/: DuckDB, arrow-rs via parquet-wasm, hyparquet-writer):
the same documents as JSON Lines index to the same documents and statistics with the same
defaults; provenance (file, row) and field options; reuse, --shard/--merge; corrupt, truncated and
unsupported files fail naming the file and the row group/column/page.

  test_parquet.py [TEST...]      (ctest runs one test per process)"""
import glob, json, os, shutil, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmx_itest import LONGMIX, LONGMIXD, Daemon, check, http, main, run, write_config

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
FIX = os.path.join(SRC, "tests", "unit", "parquet")
PARQUETS = sorted(f for f in glob.glob(os.path.join(FIX, "*.parquet")) if "lists" not in f)


def index(out, *args, ok=True):
    p = run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", out, *args], ok=ok)
    return p.stderr.decode(errors="replace")


def all_docs(idx):
    st = json.loads(run([LONGMIXD, "stats", idx, "--json"]).stdout)
    n = st["total_docs"]
    out = run([LONGMIXD, "doc", idx, *map(str, range(n)), "--json", "--tokens"]).stdout
    return st, [json.loads(l) for l in out.splitlines()]


def write_jsonl(path):
    """expected.jsonl (the documents every fixture holds) in the SlimPajama JSON Lines layout."""
    with open(path, "w") as f:
        for line in open(os.path.join(FIX, "expected.jsonl")):
            e = json.loads(line)
            f.write(json.dumps({"text": e["text"], "meta": {"redpajama_set_name": e["domain"]}, "id": e["id"]},
                               ensure_ascii=False) + "\n")


def test_same_as_jsonl(wd):
    """Every fixture indexes (defaults: text + meta.redpajama_set_name) to the documents, ids,
    statistics and skipped records of the same documents as JSON Lines; row = line."""
    os.makedirs(wd("j"))
    write_jsonl(wd("j", "docs.jsonl"))
    ref_err = index(wd("ref"), "--on-error", "skip", wd("j", "docs.jsonl"))
    sr, dr = all_docs(wd("ref"))
    check(sr["total_docs"] == 120 - 12, f"reference has {sr['total_docs']} documents")
    for f in PARQUETS:
        name = os.path.basename(f)
        err = index(wd("x-" + name), "--on-error", "skip", f)
        check("12 records skipped" in err and "12 records skipped" in ref_err, f"{name}: skipped {err!r}")
        s, d = all_docs(wd("x-" + name))
        check(s["domains"] == sr["domains"] and s["total_tokens"] == sr["total_tokens"], f"{name}: statistics differ")
        check([(x["id"], x["domain"], x["ids"], x["row"]) for x in d] == [(x["id"], x["domain"], x["ids"], x["line"])
                                                                           for x in dr], f"{name}: documents differ")
        check(all(x["source"] == f and x["line"] == x["row"] for x in d), f"{name}: provenance {d[0]}")
        kind = json.load(open(wd("x-" + name, "manifest.json")))["shards"][0]["kind"]
        check(kind == "parquet", f"{name}: kind {kind}")
    run([LONGMIXD, "verify", wd("x-" + os.path.basename(PARQUETS[0]))])


def test_fields(wd):
    """--id-field (an INT64 column) is kept as doc_id; --text-field/--domain-field name struct
    members; DOMAIN=PATH and --domain-from-path need no domain column."""
    f = os.path.join(FIX, "arrowrs-snappy-dict-v1.parquet")
    index(wd("a"), "--on-error", "skip", "--id-field", "id", f)
    _, d = all_docs(wd("a"))
    want = [str(i * 1000003 - 500000) for i in range(120) if i % 17 != 5 and i % 23 != 11]
    check([x["doc_id"] for x in d] == want, f"doc_id {[x['doc_id'] for x in d][:3]}")
    # the domain column as text, the text column as domain: both are plain column paths
    index(wd("b"), "--on-error", "skip", "--text-field", "meta.redpajama_set_name", "--domain-field", "text", f)
    s, d = all_docs(wd("b"))
    check(all(x["tokens"] in (11, 13, 14, 15) for x in d), "text from meta.redpajama_set_name")
    os.makedirs(wd("data", "books"))
    shutil.copy(os.path.join(FIX, "duckdb-lists.parquet"), wd("data", "books", "l.parquet"))
    index(wd("c"), "--domain-from-path", "data/{domain}/*.parquet", wd("data"))
    s, d = all_docs(wd("c"))
    check(list(s["domains"]) == ["books"] and d[0]["row"] == 1, f"domain from path: {s['domains']}")
    index(wd("e"), "web=" + wd("data", "books", "l.parquet"))
    check(list(all_docs(wd("e"))[0]["domains"]) == ["web"], "DOMAIN=PATH on a parquet file")


def test_refusals(wd):
    """Missing columns, maps, nested lists, lists of strings and integer text columns are errors
    naming the file and the column."""
    lists = os.path.join(FIX, "duckdb-lists.parquet")
    err = index(wd("a"), lists, ok=False)
    check("duckdb-lists.parquet" in err and "'meta.redpajama_set_name'" in err and "--domain-field" in err, err)
    err = index(wd("a"), "--text-field", "nested", "x=" + lists, ok=False)
    check("duckdb-lists.parquet" in err and "'nested' is a nested list" in err, err)
    err = index(wd("a"), "--text-field", "strs", "x=" + lists, ok=False)
    check("'strs' is a list of BYTE_ARRAY" in err, err)
    err = index(wd("a"), "--text-field", "m", "x=" + lists, ok=False)
    check("'m' is a map" in err, err)
    err = index(wd("a"), "--text-field", "n", "x=" + PARQUETS[0], ok=False)
    check("'n'" in err and "integers" in err, err)
    err = index(wd("a"), "--text-field", "meta", PARQUETS[0], ok=False)
    check("'meta' is a group" in err, err)
    check(not os.path.exists(wd("a", "manifest.json")), "a failed run published a manifest")


def test_reuse_shard_merge(wd):
    """A re-run reuses every Parquet shard (also after touch); --shard 0/2 + 1/2 + --merge equals
    one run over all inputs."""
    os.makedirs(wd("in"))
    for f in PARQUETS[:4]:
        shutil.copy(f, wd("in"))
    index(wd("all"), "--on-error", "skip", wd("in"))
    ident = json.loads(run([LONGMIXD, "stats", wd("all"), "--json"]).stdout)["index_id"]
    err = index(wd("all"), "--on-error", "skip", wd("in"))
    check("(4 unchanged)" in err, f"re-run re-indexed: {err!r}")
    os.utime(glob.glob(wd("in", "*.parquet"))[0], (1, 1))
    err = index(wd("all"), "--on-error", "skip", wd("in"))
    check("(4 unchanged)" in err, f"a touched file with the same bytes was re-indexed: {err!r}")
    for i in range(2):
        index(wd(f"s{i}"), "--on-error", "skip", "--shard", f"{i}/2", wd("in"))
    run([LONGMIXD, "index", "--merge", "--out", wd("m"), wd("s0"), wd("s1")])
    ident_m = json.loads(run([LONGMIXD, "stats", wd("m"), "--json"]).stdout)["index_id"]
    check(ident == ident_m, "--shard/--merge differs from one run")


def test_corrupt(wd):
    """Truncated and damaged files fail the run naming the file (and row group, column, page),
    publish nothing; with --on-error skip the input is counted and the others are indexed."""
    good = os.path.join(FIX, "duckdb-snappy-v1.parquet")
    data = open(good, "rb").read()
    flipped = bytearray(data)
    flipped[16] ^= 0xFF  # inside the first page of column 'text' (snappy data)
    cases = [("truncated.parquet", data[:len(data) * 2 // 3], "PAR1"),
             ("footer.parquet", data[:-20] + data[-8:], "corrupt footer"),
             ("page.parquet", bytes(flipped), "row group 0, column 'text', page 0"),
             ("empty.parquet", b"", "empty file")]
    os.makedirs(wd("in"))
    shutil.copy(PARQUETS[-1], wd("in", "good.parquet"))
    for name, blob, needle in cases:
        with open(wd(name), "wb") as f:
            f.write(blob)
        err = index(wd("x-" + name), wd(name), ok=False)
        check(name in err and needle in err, f"{name}: {err!r}")
        check(not os.path.exists(wd("x-" + name, "manifest.json")), f"{name}: a failed run published a manifest")
        err = index(wd("s-" + name), "--on-error", "skip", wd("in"), wd(name))
        check(name in err, f"{name}: skip not reported: {err!r}")
        st = json.loads(run([LONGMIXD, "stats", wd("s-" + name), "--json"]).stdout)
        check(st["total_docs"] == 108, f"{name}: the good input was not indexed with --on-error skip")


def test_tokens(wd):
    """--text-field naming a list of integers (`input_ids`) indexes pre-tokenized rows: every
    writer's file gives the expected ids per row; null lists and ids outside the tokenizer's
    vocabulary are bad records naming the row; a plain integer column is not token ids."""
    want = [json.loads(l) for l in open(os.path.join(FIX, "expected.jsonl"))]
    keep = [(i + 1, e["domain"], e["input_ids"]) for i, e in enumerate(want)
            if e["input_ids"] is not None and e["domain"] is not None]
    for f in PARQUETS:
        name = os.path.basename(f)
        index(wd("t-" + name), "--on-error", "skip", "--text-field", "input_ids", f)
        _, d = all_docs(wd("t-" + name))
        check([(x["row"], x["domain"], x["ids"]) for x in d] == keep, f"{name}: token rows differ")
    # the built-in byte tokenizer has 256 ids plus specials; [1, 2, 3] is inside, 1000 is not
    lists = os.path.join(FIX, "duckdb-lists.parquet")
    index(wd("l"), "--text-field", "input_ids", "web=" + lists)
    check(all_docs(wd("l"))[1][0]["ids"] == [1, 2, 3], "lists file ids")
    err = index(wd("b"), "--text-field", "big_ids", "web=" + lists, ok=False)
    check("duckdb-lists.parquet:1: column 'big_ids': token id 300000 at position 1 is outside the vocabulary" in err, err)
    err = index(wd("n"), "--text-field", "n", "x=" + PARQUETS[0], ok=False)
    check("column 'n' (--text-field) holds integers" in err, err)


def test_kill9_resume(wd):
    """longmixd index killed (-9) at moments spread over a run, then re-run, gives exactly the shards
    of one uninterrupted run; every manifest left behind verifies."""
    import random, signal, subprocess, time
    os.makedirs(wd("in"))
    for k in range(4):
        for f in PARQUETS:
            shutil.copy(f, wd("in", f"c{k}-" + os.path.basename(f)))
    args = ["--tokenizer", "bytes", "--threads", "1", "--on-error", "skip", "--no-progress"]
    t0 = time.monotonic()
    run([LONGMIXD, "index", *args, "--out", wd("one"), wd("in")])
    took = time.monotonic() - t0
    whole = json.load(open(wd("one", "manifest.json")))
    rnd = random.Random(13)
    killed = 0
    for attempt in range(6):
        p = subprocess.Popen([LONGMIXD, "index", *args, "--out", wd("k"), wd("in")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0, took))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait()
        if os.path.exists(wd("k", "manifest.json")):
            run([LONGMIXD, "verify", wd("k")])
    check(killed >= 1, "no run was killed")
    run([LONGMIXD, "index", *args, "--out", wd("k"), wd("in")])
    again = json.load(open(wd("k", "manifest.json")))
    check([e["blake2b"] for e in again["shards"]] == [e["blake2b"] for e in whole["shards"]],
          f"re-run after kill -9 ({killed} killed runs) differs from one run")
    run([LONGMIXD, "verify", wd("k")])



def test_show_names_row(wd):
    """The served text view and `longmix show` name a Parquet document's file and row, as
    `longmixd doc` does (and as they name a JSON Lines file and line)."""
    f = PARQUETS[0]
    index(wd("index"), "--on-error", "skip", f)
    d = Daemon(wd, write_config(wd, {"o": {"strategy": "original", "seq_len": 1024, "global_batch": 2, "seed": 1}}))
    try:
        tv = json.loads(http(d.url + "/v1/plans/o/sequences/0?format=text")[2])
        t = tv["spans"][0]
        doc = json.loads(run([LONGMIXD, "doc", wd("index"), str(t["doc"]), "--json"]).stdout)
        check((t.get("source"), t.get("row")) == (f, doc["row"]), f"text view span {t} vs doc {doc}")
        out = run([LONGMIX, "show", "--url", d.url, "--plan", "o", "--step", "0", "--seq", "0"]).stdout.decode()
        check(f"from {f} row {doc['row']} " in out, f"longmix show does not name {f} and the row: {out[:300]!r}")
    finally:
        d.stop()


TESTS = {f.__name__[5:]: f for f in [test_same_as_jsonl, test_fields, test_tokens, test_kill9_resume, test_refusals, test_reuse_shard_merge,
                                      test_corrupt, test_show_names_row]}

if __name__ == "__main__":
    sys.exit(main(TESTS))
