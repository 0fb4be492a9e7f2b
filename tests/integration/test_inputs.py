#!/usr/bin/env python3
"""Integration tests of `longmixd index` input formats and field layouts (issue #13): --text-field,
--id-field, --domain-from-path, gzip / .jsonl.zstd, MDS folders; each new format through reuse,
--shard/--merge, kill -9 resume and corrupt input exactly like JSON Lines.

  test_inputs.py [TEST...]      (ctest runs one test per process)"""
import glob, gzip, json, os, shutil, signal, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmx_itest import LONGMIXD, Skip, check, main, run

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
    # --shard + --merge keep the ids (the shards carry them)
    for i in range(2):
        index(wd(f"sl{i}"), "--shard", f"{i}/2", "--text-field", "content", "--domain-field", "info.lang",
              "--id-field", "hexsha", wd("stack"))
    run([LONGMIXD, "index", "--merge", "--out", wd("mg"), wd("sl1"), wd("sl0")])
    check(all_docs(wd("mg"))[1] == db, "merged slices lost or changed the ids")
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
    # formats without fields (.txt folders) keep their shards whatever the field options
    os.makedirs(wd("txt", "Notes"))
    open(wd("txt", "Notes", "a.txt"), "w").write("plain text")
    index(wd("t"), wd("txt"))
    out = index(wd("t"), "--text-field", "content", "--id-field", "x", wd("txt"))
    check("(1 unchanged)" in out, f"field options re-indexed a .txt folder: {out!r}")
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
        check(all("row" not in d for d in docs), f"{name}: a JSON Lines document names a row")
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


def mds_fixture_rows():
    return [json.loads(l) for l in open(os.path.join(FIXTURES, "mds", "docs.jsonl"), encoding="utf-8")]


def test_mds_fixtures(wd):
    """MDS folders from the independent writer (tests/tools/mds/mds-writer.js: raw shards with the
    writer config, zstd shards, one gzip shard without it) index like the same text as JSON Lines:
    str text, every token column kind (ndarray:uint32, ndarray:uint16, bytes + --token-dtype,
    fixed-shape ndarray, dynamic-dtype 2-D ndarray); provenance = shard file + sample number."""
    fx = os.path.join(FIXTURES, "mds")
    rows = mds_fixture_rows()
    index(wd("ref"), os.path.join(fx, "docs.jsonl"))
    for name in ["plain", "zstd", "gz-noconfig"]:
        folder = os.path.join(fx, name)
        shards = json.load(open(os.path.join(folder, "index.json")))["shards"]
        idx = wd("ix-" + name)
        index(idx, "--domain-field", "source", "--id-field", "uid", folder)
        s1, d1 = all_docs(wd("ref"))
        s2, d2 = all_docs(idx)
        check(s1["domains"] == s2["domains"], f"{name}: statistics differ from the JSON Lines reference")
        check([(d["domain"], d["ids"]) for d in d1] == [(d["domain"], d["ids"]) for d in d2],
              f"{name}: documents differ from the JSON Lines reference")
        check([d["doc_id"] for d in d2] == [str(1000 + i) for i in range(len(rows))], f"{name}: doc_id")
        want = [(sh["zip_data"] or sh["raw_data"])["basename"] if not os.path.exists(
            os.path.join(folder, sh["raw_data"]["basename"])) else sh["raw_data"]["basename"] for sh in shards]
        prov = [(os.path.basename(d["source"]), d["line"]) for d in d2]
        check(prov == [(want[k], j + 1) for k, sh in enumerate(shards) for j in range(sh["samples"])],
              f"{name}: provenance {prov[:4]}")
        kind = json.load(open(os.path.join(idx, "manifest.json")))["shards"][0]["kind"]
        check(kind == "mds", f"{name}: kind {kind}")
        check(all(d["row"] == d["line"] for d in d2), f"{name}: doc --json does not name the row")
        for col, extra, fix in [("input_ids", [], None), ("ids16", [], None),
                                ("tok_bytes", ["--token-dtype", "int32"], None),
                                ("fixed", [], lambda ids: ids[:1] * 4), ("anyarr", [], None)]:
            ti = wd(f"tok-{name}-{col}")
            index(ti, "--text-field", col, "--domain-field", "source", *extra, folder)
            _, dt = all_docs(ti)
            got = [d["ids"] for d in dt]
            exp = [(fix or (lambda x: x))(r["input_ids"]) for r in rows]
            check(got == exp, f"{name}/{col}: token ids differ from what was written")
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("x"), "--text-field", "tok_bytes",
           "--domain-field", "source", os.path.join(fx, "plain")], "tok_bytes", "--token-dtype")
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("x"), "--text-field", "nope",
           "--domain-field", "source", os.path.join(fx, "plain")], "no column 'nope'")
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("x"), os.path.join(fx, "plain")],
          "for the domain", "DOMAIN=")
    # index.json itself as INPUT is the same job; DOMAIN= forces the domain
    index(wd("forced"), "Forced=" + os.path.join(fx, "zstd", "index.json"))
    st, _ = all_docs(wd("forced"), tokens=False)
    check(list(st["domains"]) == ["Forced"] and st["total_docs"] == len(rows), f"forced: {st['domains']}")


def copy_mds(wd, name="m"):
    dst = wd(name)
    shutil.copytree(os.path.join(FIXTURES, "mds", "plain"), dst)
    return dst


def test_mds_corrupt(wd):
    """Truncated or damaged shards and index.json: an error naming the shard file and the sample
    (nothing published), or with --bad-input skip a counted skip while other inputs are indexed;
    unsupported variants are refused with the reason."""
    good = copy_mds(wd, "good")
    base = ["--domain-field", "source"]

    def case(label, mutate, *needles):
        d = copy_mds(wd, label)
        mutate(d)
        fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("x-" + label), *base, good, d], *needles)
        check(not os.path.exists(wd("x-" + label, "manifest.json")), f"{label}: a failed run published a manifest")
        out = run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("s-" + label), "--bad-input", "skip",
                   *base, good, d]).stderr.decode()
        check("1 records skipped" in out, f"{label}: not skipped: {out!r}")
        st, _ = all_docs(wd("s-" + label), tokens=False)
        check(st["total_docs"] == 40, f"{label}: the good input was not indexed")

    def truncate(d, shard="shard.00003.mds", keep=0.6):
        p = os.path.join(d, shard)
        data = open(p, "rb").read()
        open(p, "wb").write(data[:int(len(data) * keep)])

    def poke(d, off, val, shard="shard.00002.mds"):
        p = os.path.join(d, shard)
        data = bytearray(open(p, "rb").read())
        data[off:off + 4] = val.to_bytes(4, "little")
        open(p, "wb").write(bytes(data))

    def edit_index(d, fn):
        p = os.path.join(d, "index.json")
        j = json.load(open(p))
        fn(j)
        json.dump(j, open(p, "w"))

    case("truncated", truncate, "shard.00003.mds", "sample index", "truncated")
    case("table", lambda d: truncate(d, keep=0.01), "shard.00003.mds", "truncated")
    case("count", lambda d: poke(d, 0, 7), "shard.00002.mds", "holds 7 samples")
    case("offsets", lambda d: poke(d, 12, 3), "shard.00002.mds", "sample index 2", "overlaps")
    # a sample whose variable column sizes exceed it: the first size field of sample 0
    def bad_sizes(d):
        p = os.path.join(d, "shard.00002.mds")
        data = bytearray(open(p, "rb").read())
        start = int.from_bytes(data[4:8], "little")
        data[start:start + 4] = (10 ** 6).to_bytes(4, "little")
        open(p, "wb").write(bytes(data))
    case("sizes", bad_sizes, "shard.00002.mds", "sample index 0", "runs past")
    case("missing", lambda d: os.unlink(os.path.join(d, "shard.00001.mds")), "shard.00001.mds")
    case("json", lambda d: open(os.path.join(d, "index.json"), "a").write("}"), "index.json", "invalid JSON")
    case("samples", lambda d: edit_index(d, lambda j: j["shards"][0].update(samples=99)), "shard.00000.mds",
         "index.json says 99")
    # compressed shards: truncated zstd, damaged gzip
    d = wd("z")
    shutil.copytree(os.path.join(FIXTURES, "mds", "zstd"), d)
    truncate(d, "shard.00001.mds.zstd", 0.5)
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("xz"), *base, d], "shard.00001.mds.zstd", "zstd")
    d = wd("g")
    shutil.copytree(os.path.join(FIXTURES, "mds", "gz-noconfig"), d)
    truncate(d, "shard.00000.mds.gz", 0.7)
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("xg"), *base, d], "shard.00000.mds.gz", "gzip")
    # unsupported: other compressions, versions, formats, merged indexes, unsafe encodings as text
    for label, fn, needle in [
            ("br", lambda j: j["shards"][0].update(compression="br", zip_data={"basename": "shard.00000.mds.br",
                                                                              "bytes": 1}), None),
            ("v1", lambda j: j.update(version=1), "index version 1"),
            ("fmt", lambda j: j["shards"][0].update(format="json"), "only MDS"),
            ("merged", lambda j: j["shards"][0]["raw_data"].update(basename="sub/shard.00000.mds"), "merged"),
            ("pkl", lambda j: [sh["column_encodings"].__setitem__(sh["column_names"].index("text"), "pkl")
                               for sh in j["shards"]], "encoding 'pkl'")]:
        d = copy_mds(wd, "u-" + label)
        edit_index(d, fn)
        if label == "br":
            os.unlink(os.path.join(d, "shard.00000.mds"))
            open(os.path.join(d, "shard.00000.mds.br"), "wb").write(b"x")
            needle = "compression 'br'"
        fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("x-" + label), *base, d], needle)
    # token ids outside the vocabulary: a bad record (fail, or skip and count)
    d = copy_mds(wd, "vocab")
    p = os.path.join(d, "shard.00000.mds")
    data = bytearray(open(p, "rb").read())
    shard = json.load(open(os.path.join(d, "index.json")))["shards"][0]
    names = shard["column_names"]
    # sample 0: its variable sizes, then columns in order; find input_ids (ndarray:uint32, 1-D, shape u8)
    start = int.from_bytes(data[8:12], "little") if False else int.from_bytes(data[4:8], "little")
    var = [i for i, sz in enumerate(shard["column_sizes"]) if sz is None]
    sizes = {}
    for k, ci in enumerate(var):
        sizes[ci] = int.from_bytes(data[start + 4 * k:start + 4 * k + 4], "little")
    pos = start + 4 * len(var)
    for ci, n in enumerate(names):
        sz = sizes.get(ci, shard["column_sizes"][ci])
        if n == "input_ids":
            data[pos + 2:pos + 6] = (5000).to_bytes(4, "little")  # past the 2-byte shape header
        pos += sz
    open(p, "wb").write(bytes(data))
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("xv"), *base, "--text-field", "input_ids", d],
          "shard.00000.mds:1", "token id 5000", "vocabulary")
    out = run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("sv"), *base, "--text-field", "input_ids",
               "--on-error", "skip", d]).stderr.decode()
    check("1 records skipped" in out, f"vocab skip: {out!r}")


MDS_WRITER = os.path.join(SRC, "tests", "tools", "mds", "mds-writer.js")


def have_node():
    return shutil.which("node") is not None


def write_mds(folder, rows, size_limit=1 << 20, compression=None):
    """rows: (domain, id, text) -> an MDS folder by the independent writer (node)."""
    samples = "".join(json.dumps({"text": t, "source": d, "uid": k}, ensure_ascii=False) + "\n"
                      for k, (d, _, t) in enumerate(rows))
    args = ["node", MDS_WRITER, folder, "--columns", "text:str,source:str,uid:int", "--size-limit", str(size_limit)]
    run(args + (["--compression", compression] if compression else []), input=samples.encode())


def write_format(fmt, folder, n_files, docs, maxlen, seed=5):
    """n_files inputs of fmt ("gzip" or "mds") under folder; returns the extra index options."""
    import random
    rng = random.Random(seed)
    words = "alpha beta gamma delta long context data engineering ünïcödé 数据 token".split()
    base = " ".join(rng.choice(words) for _ in range(200000))
    os.makedirs(folder)
    for f in range(n_files):
        rows = []
        for i in range(docs):
            a = rng.randrange(len(base) - maxlen)
            rows.append((f"D{f % 3}", f"{f}-{i}", base[a:a + rng.randint(1, maxlen)]))
        if fmt == "gzip":
            with gzip.open(os.path.join(folder, f"p{f:02d}.jsonl.gz"), "wt", encoding="utf-8", compresslevel=1) as out:
                for d, _, t in rows:
                    out.write(json.dumps({"text": t, "meta": {"redpajama_set_name": d}}, ensure_ascii=False) + "\n")
        else:
            write_mds(os.path.join(folder, f"p{f:02d}"), rows, size_limit=1 << 20,
                      compression="zstd" if f % 2 else None)
    return ["--domain-field", "source"] if fmt == "mds" else []


def workflow(wd, fmt):
    """Reuse (unchanged, touched), --shard I/3 + --merge, and kill -9 + re-run on inputs of fmt give
    exactly what one uninterrupted run gives, as for JSON Lines."""
    n = 16  # ~12 MB of text: a run takes long enough to be killed midway, also under ASan
    extra = write_format(fmt, wd("in"), n, 120, 12000)
    one = wd("one")
    t0 = time.monotonic()
    index(one, "--threads", "2", *extra, wd("in"))
    took = time.monotonic() - t0
    whole = json.load(open(os.path.join(one, "manifest.json")))
    check(len(whole["shards"]) == n, f"{len(whole['shards'])} shards for {n} inputs")
    # reuse: unchanged, then touched (same bytes: content hash)
    out = index(one, *extra, wd("in"))
    check(f"({n} unchanged)" in out, f"unchanged inputs re-indexed: {out!r}")
    for p in glob.glob(os.path.join(wd("in"), "**", "*"), recursive=True):
        if os.path.isfile(p):
            os.utime(p, (time.time() + 100, time.time() + 100))
    out = index(one, *extra, wd("in"))
    check(f"({n} unchanged)" in out, f"touched inputs re-indexed: {out!r}")
    # a changed input is re-indexed, alone
    victim = sorted(glob.glob(os.path.join(wd("in"), "p05*")))[0]
    saved = wd("saved")
    (shutil.copytree if os.path.isdir(victim) else shutil.copy2)(victim, saved)
    if os.path.isdir(victim):
        shutil.rmtree(victim)
        write_mds(victim, [("Dx", "x", "changed text")])
    else:
        with gzip.open(victim, "wt") as f:
            f.write(json.dumps({"text": "changed", "meta": {"redpajama_set_name": "Dx"}}) + "\n")
    out = index(one, *extra, wd("in"))
    check(f"({n - 1} unchanged)" in out, f"one changed input: {out!r}")
    check("Dx" in json.loads(run([LONGMIXD, "stats", one, "--json"]).stdout)["domains"], "change not indexed")
    if os.path.isdir(victim):
        shutil.rmtree(victim)
        shutil.copytree(saved, victim)
    else:
        shutil.copy2(saved, victim)
    index(one, *extra, wd("in"))
    now = json.load(open(os.path.join(one, "manifest.json")))
    check([e["blake2b"] for e in now["shards"]] == [e["blake2b"] for e in whole["shards"]],
          "restoring the input did not restore its shard")
    # --shard I/3 + --merge equals one run
    for i in range(3):
        index(wd(f"slice{i}"), "--threads", "1", "--shard", f"{i}/3", *extra, wd("in"))
    run([LONGMIXD, "index", "--merge", "--out", wd("merged"), wd("slice1"), wd("slice0"), wd("slice2")])
    s1, d1 = all_docs(one, tokens=False)
    s2, d2 = all_docs(wd("merged"), tokens=False)
    check(s1 == s2 and d1 == d2, "merged slices differ from one run")
    merged = json.load(open(wd("merged", "manifest.json")))
    check([e["blake2b"] for e in merged["shards"]] == [e["blake2b"] for e in whole["shards"]], "merged shards differ")
    # kill -9 at random moments, then re-run: the same shards as one run
    import random
    rng = random.Random(int(os.environ.get("LMX_TEST_SEED", "0")) or None)
    out_dir, killed, attempts, max_delay = wd("killed"), 0, 0, took * 0.6
    while killed < 3 and attempts < 20:
        attempts += 1
        p = subprocess.Popen([LONGMIXD, "index", "--tokenizer", "bytes", "--threads", "2", "--out", out_dir, *extra,
                              wd("in")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, max_delay))
        finished = p.poll() is not None
        if not finished:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait()
        if os.path.exists(os.path.join(out_dir, "manifest.json")):
            run([LONGMIXD, "verify", out_dir])
        if finished:
            shutil.rmtree(out_dir)
            max_delay /= 2
    check(killed >= 1, f"no run was killed in {attempts} attempts")
    index(out_dir, "--threads", "2", *extra, wd("in"))
    again = json.load(open(os.path.join(out_dir, "manifest.json")))
    check([e["blake2b"] for e in again["shards"]] == [e["blake2b"] for e in whole["shards"]],
          "re-run after kill -9 differs from one run")
    run([LONGMIXD, "verify", out_dir])


def test_gzip_workflow(wd):
    workflow(wd, "gzip")


def test_mds_workflow(wd):
    if not have_node():
        raise Skip("node not found (the MDS writer runs on node)")
    workflow(wd, "mds")


TESTS = {f.__name__[5:]: f for f in [test_field_layout, test_gzip_fixtures, test_gzip_corrupt, test_mds_fixtures,
                                      test_mds_corrupt, test_gzip_workflow, test_mds_workflow]}

if __name__ == "__main__":
    sys.exit(main(TESTS))
