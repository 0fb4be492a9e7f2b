#!/usr/bin/env python3
"""Integration tests of `longmixd index` (issue #4): Megatron-LM input, --shard/--merge, kill -9 and
re-run, a flipped shard byte, bad input with --on-error=fail|skip.

  test_index.py [TEST...]      (ctest runs one test per process)"""
import glob, json, os, random, shutil, signal, struct, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmx_itest import LONGMIX, LONGMIXD, Daemon, check, main, make_corpus, run, write_config

BYTES_VOCAB = 258  # the bytes tokenizer: 0-255, BOS 256, EOS 257

# Megatron-LM DType codes (megatron/core/datasets/indexed_dataset.py) -> struct format, item size
MEGATRON_DTYPES = {1: ("B", 1), 2: ("b", 1), 3: ("h", 2), 4: ("i", 4), 5: ("q", 8), 8: ("H", 2)}


def write_megatron(prefix, docs, code=8, doc_indices=None, magic=b"MMIDIDX\x00\x00", version=1):
    """Writes PREFIX.bin and PREFIX.idx in Megatron's MMIDIDX layout: 9-byte magic, u64 version,
    u8 dtype code, u64 sequence count, u64 document count (= len(document_indices), which start
    with 0), i32 sequence lengths, i64 byte pointers into .bin, i64 document indices.
    docs: list of documents, each a list of sequences, each a list of token ids."""
    fmt, item = MEGATRON_DTYPES[code]
    lens, ptrs, didx, off = [], [], [0], 0
    with open(prefix + ".bin", "wb") as b:
        for d in docs:
            for seq in d:
                b.write(struct.pack(f"<{len(seq)}{fmt}", *seq))
                lens.append(len(seq))
                ptrs.append(off)
                off += len(seq) * item
            didx.append(len(lens))
    if doc_indices is not None:
        didx = doc_indices
    with open(prefix + ".idx", "wb") as f:
        f.write(magic + struct.pack("<Q", version) + struct.pack("<B", code))
        f.write(struct.pack("<QQ", len(lens), len(didx)))
        f.write(struct.pack(f"<{len(lens)}i", *lens))
        f.write(struct.pack(f"<{len(ptrs)}q", *ptrs))
        f.write(struct.pack(f"<{len(didx)}q", *didx))
    return [[t for seq in d for t in seq] for d in docs]


def random_docs(rng, n, max_seqs=3, max_len=300, vocab=256):
    return [[[rng.randrange(vocab) for _ in range(rng.randint(0, max_len))] for _ in range(rng.randint(1, max_seqs))]
            for _ in range(n)]


def fails(args, *needles):
    p = run(args, ok=False)
    msg = p.stderr.decode(errors="replace")
    for n in needles:
        check(n in msg, f"{args[:3]}: error {msg.strip()!r} does not name {n!r}")
    return msg


def no_leftovers(out):
    """After a failed run: no manifest and no temp files."""
    check(not os.path.exists(os.path.join(out, "manifest.json")), f"{out}: a failed run published a manifest")
    tmp = [p for p in glob.glob(os.path.join(out, "**", "*"), recursive=True) if ".tmp." in os.path.basename(p)]
    check(not tmp, f"temp files left behind: {tmp}")


def all_docs(index, tokens=False):
    st = json.loads(run([LONGMIXD, "stats", index, "--json"]).stdout)
    n = st["total_docs"]
    if n == 0:
        return st, []
    args = [LONGMIXD, "doc", index, *map(str, range(n)), "--json"] + (["--tokens"] if tokens else [])
    return st, [json.loads(l) for l in run(args).stdout.splitlines()]


def test_megatron_serve(wd):
    """A Megatron .bin/.idx pair (uint16 and int32) indexes and serves; spans carry the .bin tokens."""
    rng = random.Random(4)
    os.makedirs(wd("mega"))
    want = {wd("mega", "web.bin"): write_megatron(wd("mega", "web"), random_docs(rng, 40, max_len=900), code=8),
            wd("mega", "code.bin"): write_megatron(wd("mega", "code"), random_docs(rng, 25, max_len=700), code=4)}
    run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("index"), "Web=" + wd("mega", "web"),
         "Code=" + wd("mega", "code.idx")])
    st, docs = all_docs(wd("index"), tokens=True)
    check(st["domains"]["Web"]["docs"] == 40 and st["domains"]["Code"]["docs"] == 25, f"doc counts {st['domains']}")
    for name, src in (("Web", wd("mega", "web.bin")), ("Code", wd("mega", "code.bin"))):
        check(st["domains"][name]["tokens"] == sum(map(len, want[src])), f"{name}: token total")
    for d in docs:
        check(d["source"] in want, f"doc {d['id']}: source {d['source']} is not the .bin path")
        check(d["line"] >= 1, f"doc {d['id']}: line {d['line']} (want the 1-based document number)")
        check(d["ids"] == want[d["source"]][d["line"] - 1], f"doc {d['id']}: tokens differ from {d['source']}")
    run([LONGMIXD, "verify", wd("index")])
    p = run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("index"), "Web=" + wd("mega", "web"),
             "Code=" + wd("mega", "code.idx")])
    check(b"(2 unchanged)" in p.stderr, f"re-run re-indexed unchanged Megatron inputs: {p.stderr!r}")
    plans = {"orig": {"strategy": "original", "seq_len": 512, "global_batch": 4, "seed": 1}}
    daemon = Daemon(wd, write_config(wd, plans))
    try:
        n_spans = 0
        for step in range(4):
            bt = json.loads(run([LONGMIX, "fetch", "--url", daemon.url, "--plan", "orig", "--step", str(step),
                                 "--json"]).stdout)
            for q in bt["sequences"]:
                for s in q["spans"]:
                    d = docs[s["doc"]]
                    got = q["tokens"][s["start"]:s["start"] + s["length"]]
                    check(got == want[d["source"]][d["line"] - 1][s["offset"]:s["offset"] + s["length"]],
                          f"step {step}: span {s} differs from {d['source']} document {d['line']}")
                    n_spans += 1
        check(n_spans > 8, f"only {n_spans} spans")
    finally:
        daemon.stop()
    # Token ids are checked against the tokenizer's vocabulary: the error names the file and sequence.
    write_megatron(wd("mega", "big"), [[[1, 2, 3]], [[4], [5, 300, 6]], [[7]]], code=8)
    msg = fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("bad"), "X=" + wd("mega", "big")],
                "big.bin", "sequence 2", "300")
    check("vocab" in msg, f"error does not mention the vocabulary: {msg!r}")
    no_leftovers(wd("bad"))
    p = run([LONGMIXD, "index", "--tokenizer", "bytes", "--on-error", "skip", "--out", wd("skip"),
             "X=" + wd("mega", "big")])
    check(b"1 records skipped" in p.stderr, f"skip not counted: {p.stderr!r}")
    st, docs = all_docs(wd("skip"), tokens=True)
    check([d["ids"] for d in docs] == [[1, 2, 3], [7]] and [d["line"] for d in docs] == [1, 3],
          f"skipped the wrong document: {docs}")
    # A Megatron prefix without DOMAIN= is refused with the reason.
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("nodom"), wd("mega", "web")], "web", "domain")


def test_megatron_corrupt_idx(wd):
    """Corrupt .idx files are rejected with an error naming the .idx; nothing is published."""
    rng = random.Random(5)
    os.makedirs(wd("m"))
    docs = random_docs(rng, 6, max_len=50)
    cases = []

    def case(name, needle, **kw):
        write_megatron(wd("m", name), docs, **kw)
        cases.append((name, needle))

    case("magic", "magic", magic=b"MMIDIDX\x00\x01")
    case("version", "version", version=2)
    case("float", "dtype", code=8)
    with open(wd("m", "float.idx"), "r+b") as f:  # dtype code 7 = float32
        f.seek(17)
        f.write(b"\x07")
    case("nonmono", "document index", doc_indices=[0, 3, 2, 6, 9, 12, 14])
    case("firstdoc", "document index", doc_indices=[1, 3, 5])
    case("sizes", "bytes")
    with open(wd("m", "sizes.idx"), "r+b") as f:  # a sequence count far beyond the file
        f.seek(18)
        f.write(struct.pack("<Q", 1 << 40))
    case("truncated", "bytes")
    raw = open(wd("m", "truncated.idx"), "rb").read()
    open(wd("m", "truncated.idx"), "wb").write(raw[:len(raw) - 12])
    case("pointer", "outside")
    n_seqs = sum(len(d) for d in docs)
    with open(wd("m", "pointer.idx"), "r+b") as f:  # the last sequence pointer past the .bin's end
        f.seek(34 + 4 * n_seqs + 8 * (n_seqs - 1))
        f.write(struct.pack("<q", os.path.getsize(wd("m", "pointer.bin")) + 2))
    case("negative", "outside")
    with open(wd("m", "negative.idx"), "r+b") as f:  # a negative sequence length
        f.seek(34)
        f.write(struct.pack("<i", -3))
    for name, needle in cases:
        out = wd("out-" + name)
        msg = fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", out, "D=" + wd("m", name)],
                    name + ".idx", needle)
        check(len(msg.strip().splitlines()) == 1, f"{name}: not a one-line error: {msg!r}")
        no_leftovers(out)
    # The untouched pair indexes fine.
    write_megatron(wd("m", "good"), docs)
    run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("good"), "D=" + wd("m", "good")])


def corpus_with_more_files(wd):
    """The test corpus plus a few more .jsonl files and a Megatron pair: enough inputs to slice."""
    inputs = make_corpus(wd)
    rng = random.Random(9)
    os.makedirs(wd("corpus", "more"))
    for i in range(5):
        with open(wd("corpus", "more", f"extra{i}.jsonl"), "w") as f:
            for k in range(rng.randint(1, 20)):
                text = " ".join(rng.choice(["merge", "slice", "shard", "array", "ünï"]) for _ in range(rng.randint(1, 500)))
                f.write(json.dumps({"text": text, "meta": {"redpajama_set_name": f"M{k % 2}"}}) + "\n")
    os.makedirs(wd("corpus", "mega"))
    write_megatron(wd("corpus", "mega", "m"), random_docs(rng, 12))
    return inputs + [wd("corpus", "more"), "Mega=" + wd("corpus", "mega", "m")]


def test_shard_merge(wd):
    """3 slices (--shard I/3) merged equal one run over all inputs; mixed tokenizers are refused."""
    inputs = corpus_with_more_files(wd)
    run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("one")] + inputs)
    n_inputs = 0
    for i in range(3):
        p = run([LONGMIXD, "index", "--tokenizer", "bytes", "--threads", "1", "--shard", f"{i}/3", "--out",
                 wd(f"slice{i}")] + inputs)
        n_inputs += int(p.stderr.decode().split("longmixd index: ")[-1].split(" inputs")[0])
    whole = json.load(open(wd("one", "manifest.json")))
    check(n_inputs == len(whole["shards"]), f"slices hold {n_inputs} inputs, one run {len(whole['shards'])}")
    for i in range(3):
        check(0 < len(json.load(open(wd(f"slice{i}", "manifest.json")))["shards"]) < n_inputs, f"slice {i} size")
    run([LONGMIXD, "index", "--merge", "--out", wd("merged"), wd("slice2"), wd("slice0"), wd("slice1")])
    st1, d1 = all_docs(wd("one"), tokens=True)
    st2, d2 = all_docs(wd("merged"), tokens=True)
    check(st1 == st2, "merged statistics (or index identity) differ from one run")
    check(d1 == d2, "merged documents differ from one run (content or id order)")
    check(json.load(open(wd("merged", "manifest.json"))) == whole, "merged manifest differs from one run's")
    run([LONGMIXD, "verify", wd("merged")])
    # Merging again (the same slices, or the merged index with a slice) changes nothing.
    run([LONGMIXD, "index", "--merge", "--out", wd("merged"), wd("merged"), wd("slice1")])
    check(json.load(open(wd("merged", "manifest.json"))) == whole, "re-merge changed the manifest")
    # An existing index not listed as a source is not overwritten.
    fails([LONGMIXD, "index", "--merge", "--out", wd("merged"), wd("slice0")], "merged", "already")
    # Another tokenizer identity: refused with the reason, nothing published.
    m = json.load(open(wd("slice1", "manifest.json")))
    m["tokenizer"]["identity"] = "0" * 64
    os.makedirs(wd("other"))
    os.symlink(wd("slice1", "shards"), wd("other", "shards"))
    json.dump(m, open(wd("other", "manifest.json"), "w"))
    fails([LONGMIXD, "index", "--merge", "--out", wd("mixed"), wd("slice0"), wd("other")], "tokenizer", "other")
    no_leftovers(wd("mixed"))
    # One writer per index folder: a second run (or merge) into a folder being written is refused.
    import fcntl
    with open(wd("one", ".lock"), "a") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("one")] + inputs, "locked")
        fails([LONGMIXD, "index", "--merge", "--out", wd("one"), wd("one"), wd("slice0")], "locked")
    check(json.load(open(wd("one", "manifest.json"))) == whole, "a refused run changed the index")
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--shard", "3/3", "--out", wd("x")] + inputs, "--shard")
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--shard", "1", "--out", wd("x")] + inputs, "--shard")


def big_corpus(wd, files=24, docs=200):
    """~50 MB of generated SlimPajama-style .jsonl: about a second of indexing."""
    rng = random.Random(5)
    words = "alpha beta gamma delta long context data engineering ünïcödé 数据 token".split()
    base = " ".join(rng.choice(words) for _ in range(200000))
    os.makedirs(wd("big"))
    for f in range(files):
        with open(wd("big", f"p{f:02d}.jsonl"), "w", encoding="utf-8") as out:
            for i in range(docs):
                a = rng.randrange(len(base) - 20000)
                out.write(json.dumps({"text": base[a:a + rng.randint(100, 20000)],
                                      "meta": {"redpajama_set_name": f"D{f % 3}"}}, ensure_ascii=False) + "\n")
    return wd("big")


def test_kill9_resume(wd):
    """kill -9 at random moments, then re-run: the index equals an uninterrupted run; verify passes."""
    corpus = big_corpus(wd)
    t0 = time.monotonic()
    run([LONGMIXD, "index", "--tokenizer", "bytes", "--threads", "2", "--out", wd("ref"), corpus])
    took = time.monotonic() - t0
    ref = json.load(open(wd("ref", "manifest.json")))
    rng = random.Random(int(os.environ.get("LMX_TEST_SEED", "0")) or None)
    out = wd("idx")
    killed, attempts, max_delay = 0, 0, took * 0.6
    while killed < 4 and attempts < 30:
        attempts += 1
        log = open(wd("attempt.log"), "wb")
        p = subprocess.Popen([LONGMIXD, "index", "--tokenizer", "bytes", "--threads", "2", "--out", out, corpus],
                             stdout=subprocess.DEVNULL, stderr=log)
        time.sleep(rng.uniform(0.0, max_delay))
        finished = p.poll() is not None
        if not finished:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait()
        log.close()
        # Whatever is published at any moment is a complete, consistent index (or none yet).
        if os.path.exists(os.path.join(out, "manifest.json")):
            run([LONGMIXD, "verify", out])
        if finished:  # too late (this machine is faster now): start over, kill sooner
            check(p.returncode == 0, f"an uninterrupted run failed: exit {p.returncode}: "
                                     f"{open(wd('attempt.log'), 'rb').read().decode(errors='replace')}")
            shutil.rmtree(out)
            max_delay /= 2
    check(killed >= 1, f"the run finished before any of {attempts} kills (corpus too small?)")
    run([LONGMIXD, "index", "--tokenizer", "bytes", "--threads", "2", "--out", out, corpus])
    check(json.load(open(os.path.join(out, "manifest.json"))) == ref, "re-run after kill -9 differs from one run")
    check(sorted(os.listdir(os.path.join(out, "shards"))) == sorted(os.listdir(wd("ref", "shards"))),
          f"shard files differ: {sorted(os.listdir(os.path.join(out, 'shards')))}")
    for name in os.listdir(wd("ref", "shards")):
        check(open(os.path.join(out, "shards", name), "rb").read() == open(wd("ref", "shards", name), "rb").read(),
              f"shard {name} differs")
    run([LONGMIXD, "verify", out])
    st1, st2 = (json.loads(run([LONGMIXD, "stats", d, "--json"]).stdout) for d in (out, wd("ref")))
    check(st1 == st2, "stats differ")
    # Changed inputs: a run killed while re-indexing them leaves the published index intact.
    for k, path in enumerate(sorted(glob.glob(os.path.join(corpus, "*.jsonl")))):
        os.utime(path, ns=(time.time_ns(), time.time_ns() + k))
    p = subprocess.Popen([LONGMIXD, "index", "--tokenizer", "bytes", "--threads", "2", "--out", out, corpus],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(took * 0.4)
    finished = p.poll() is not None
    p.kill()
    p.wait()
    run([LONGMIXD, "verify", out])
    p = run([LONGMIXD, "index", "--tokenizer", "bytes", "--threads", "2", "--out", out, corpus])
    check(finished or b"(0 unchanged)" in p.stderr, f"touched inputs were not re-indexed: {p.stderr!r}")
    m = json.load(open(os.path.join(out, "manifest.json")))
    check(sorted(os.listdir(os.path.join(out, "shards"))) == sorted(e["file"] for e in m["shards"]),
          "shards of the earlier versions were not removed")
    check([e["blake2b"] for e in m["shards"]] == [e["blake2b"] for e in ref["shards"]], "re-indexed shards differ")
    run([LONGMIXD, "verify", out])


def test_flipped_byte(wd):
    """One flipped byte in a shard: verify fails naming the file; serve refuses to start naming it."""
    inputs = make_corpus(wd)
    run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("index")] + inputs)
    run([LONGMIXD, "verify", wd("index")])
    shard = sorted(glob.glob(wd("index", "shards", "*.lmxs")))[1]
    with open(shard, "r+b") as f:
        f.seek(200)  # inside the token array (after the 128-byte header)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 0x01]))
    name = os.path.basename(shard)
    msg = fails([LONGMIXD, "verify", wd("index")], name)
    check(sum(name in l for l in msg.splitlines()) >= 1, msg)
    cfg = write_config(wd, {"orig": {"strategy": "original", "seq_len": 256, "global_batch": 2}})
    p = run([LONGMIXD, "serve", "--config", cfg, "--port-file", wd("port")], ok=False, timeout=60)
    check(name.encode() in p.stderr, f"serve did not name {name}: {p.stderr!r}")
    check(not os.path.exists(wd("port")), "serve bound a port with a corrupt shard")


def test_bad_input(wd):
    """Missing domain field, non-UTF-8 text, empty file, unreadable file: a clear error with
    --on-error=fail (nothing published, no temp files), a counted skip with --on-error=skip."""
    os.makedirs(wd("in", "Notes"))
    good = wd("in", "good.jsonl")
    with open(good, "w") as f:
        f.write('{"text": "fine", "meta": {"redpajama_set_name": "A"}}\n')
    nodom = wd("in", "nodomain.jsonl")
    with open(nodom, "w") as f:
        f.write('{"text": "ok", "meta": {"redpajama_set_name": "A"}}\n{"text": "no domain", "meta": {}}\n')
    badutf = wd("in", "badutf8.jsonl")
    with open(badutf, "wb") as f:
        f.write(b'{"text": "ok", "meta": {"redpajama_set_name": "A"}}\n{"text": "bad \xff\xfe", "meta": '
                b'{"redpajama_set_name": "A"}}\n')
    badtxt = wd("in", "Notes", "latin1.txt")
    with open(badtxt, "wb") as f:
        f.write(b"caf\xe9 au lait")
    with open(wd("in", "Notes", "fine.txt"), "w") as f:
        f.write("fine text")
    empty = wd("in", "empty.jsonl")
    open(empty, "w").close()
    emptytxt = wd("in", "Notes", "empty.txt")
    cases = [(nodom, [nodom + ":2", "domain"]), (badutf, [badutf + ":2"]), (wd("in", "Notes"), [badtxt, "UTF-8"]),
             (empty, [empty, "empty"])]
    if os.geteuid() != 0:  # root reads anything: chmod 000 proves nothing there
        unreadable = wd("in", "secret.jsonl")
        with open(unreadable, "w") as f:
            f.write('{"text": "x", "meta": {"redpajama_set_name": "A"}}\n')
        os.chmod(unreadable, 0)
        cases.append((unreadable, [unreadable, "ermission"]))
    for k, (path, needles) in enumerate(cases):
        out = wd(f"fail{k}")
        msg = fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", out, good, path], *needles)
        check(len(msg.strip().splitlines()) == 1, f"not a one-line error: {msg!r}")
        check("--on-error=skip" in msg, f"the error does not say how to skip: {msg!r}")
        no_leftovers(out)
        out = wd(f"skip{k}")
        p = run([LONGMIXD, "index", "--tokenizer", "bytes", "--on-error", "skip", "--out", out, good, path])
        err = p.stderr.decode(errors="replace")
        check("skipped " + needles[0] in err, f"skip not reported for {path}: {err!r}")
        check(" 1 records skipped" in err, f"skip not counted for {path}: {err!r}")
        run([LONGMIXD, "verify", out])
        no_tmp = [p for p in glob.glob(os.path.join(out, "**", "*"), recursive=True) if ".tmp." in p]
        check(not no_tmp, f"temp files left behind: {no_tmp}")
    # An empty .txt file is an empty document: refused the same way.
    open(emptytxt, "w").close()
    os.unlink(badtxt)
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("etxt"), wd("in", "Notes")], emptytxt, "empty")
    no_leftovers(wd("etxt"))
    # Disk full, simulated with RLIMIT_FSIZE (writes past 1 MB fail with EFBIG; SIGXFSZ ignored):
    # a clear error naming the file being written; no manifest, no temp file, no partial shard.
    big = wd("in", "big.jsonl")
    with open(big, "w") as f:
        for i in range(40):
            f.write(json.dumps({"text": "x" * 100000, "meta": {"redpajama_set_name": "A"}}) + "\n")

    def small_disk():
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    p = subprocess.run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("disk"), good, big],
                       capture_output=True, preexec_fn=small_disk, timeout=120)
    msg = p.stderr.decode(errors="replace")
    check(p.returncode != 0 and "write" in msg and ".tmp." in msg and len(msg.strip().splitlines()) == 1,
          f"disk full: exit {p.returncode}, {msg!r}")
    no_leftovers(wd("disk"))
    check(not glob.glob(wd("disk", "shards", "*")), f"disk full left files: {glob.glob(wd('disk', 'shards', '*'))}")
    # The output cannot be written (a file where the shards folder goes): a clear error, no manifest.
    os.makedirs(wd("full"))
    open(wd("full", "shards"), "w").close()
    fails([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("full"), good], "full")
    check(not os.path.exists(wd("full", "manifest.json")), "published a manifest without shards")


def test_threads_identical(wd):
    """One large .jsonl.zst (~20 MB of JSON lines, generated) is tokenized by every thread
    (within-file parallelism): the shard, the manifest and the index identity are byte for byte
    the same for --threads 1, 2 and 4; with --on-error=fail the first bad record in input order is
    named whatever the thread count; with skip the same records are skipped and counted."""
    rng = random.Random(4)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 9))) for _ in range(3000)]
    words += ["Grüße", "naïve", "日本語", "emoji 🙂", "tab\there"]
    os.makedirs(wd("in"))
    plain = wd("in", "big.jsonl")
    bad_lines = {1001: "{not json", 4002: '{"text": "no domain", "meta": {}}', 7003: '["not", "an object"]'}
    n, size = 0, 0
    with open(plain, "w") as f:
        while size < 20_000_000:
            n += 1
            if n in bad_lines:
                line = bad_lines[n]
            elif n % 997 == 0:
                line = "   "  # blank: no document, line numbers still count
            else:
                k = rng.choice([5, 50, 300, 1000]) if n != 5000 else 400_000  # one line > 1 MiB
                line = json.dumps({"text": " ".join(rng.choice(words) for _ in range(k)),
                                   "meta": {"redpajama_set_name": rng.choice(["Web", "Books", "Code"])}})
            f.write(line + "\n")
            size += len(line) + 1
    run(["zstd", "-q", "-3", "--rm", plain, "-o", plain + ".zst"])
    src = plain + ".zst"
    for mode in ("fail", "skip"):
        outs, errs = [], []
        for t in (1, 2, 4):
            out = wd(f"{mode}{t}")
            p = run([LONGMIXD, "index", "--tokenizer", "bytes", "--threads", str(t), "--on-error", mode, "--no-progress",
                     "--out", out, src], ok=(mode == "skip"))
            errs.append([l for l in p.stderr.decode(errors="replace").splitlines() if " s -> " not in l])
            outs.append(out)
        check(errs[0] == errs[1] == errs[2], f"{mode}: stderr differs with the thread count: {errs}")
        if mode == "fail":
            check(len(errs[0]) == 1 and f"{src}:1001" in errs[0][0] and "invalid JSON" in errs[0][0],
                  f"fail: not the first bad record: {errs[0]}")
            for out in outs:
                no_leftovers(out)
            continue
        check(any(f"{src}:7003" in l for l in errs[0]), f"skip: not reported: {errs[0]}")
        files = [sorted(os.path.relpath(q, out) for q in glob.glob(os.path.join(out, "**", "*"), recursive=True)
                        if os.path.isfile(q)) for out in outs]
        check(files[0] == files[1] == files[2] and any(q.startswith("shards/") for q in files[0]),
              f"different files: {files}")
        for rel in files[0]:
            data = [open(os.path.join(out, rel), "rb").read() for out in outs]
            check(data[0] == data[1] == data[2], f"{rel} differs between --threads 1, 2 and 4")
        m = json.load(open(os.path.join(outs[0], "manifest.json")))
        check(m["shards"][0]["skipped"] == 3 and m["total_docs"] == n - 3 - n // 997,
              f"skipped {m['shards'][0]['skipped']}, docs {m['total_docs']} of {n} lines")
        ids = [json.loads(run([LONGMIXD, "stats", out, "--json"]).stdout).get("identity") for out in outs]
        check(ids[0] == ids[1] == ids[2], f"index identities differ: {ids}")
        # doc maps ids back to the right lines across batch boundaries
        total = m["total_docs"]
        want = {0: 1, 5000 - 1 - 2 - 5: 5000, total - 1: n}  # 2 bad and 5 blank lines before line 5000
        got = [json.loads(l) for l in run([LONGMIXD, "doc", outs[2], *map(str, want), "--json"]).stdout.splitlines()]
        check([g["line"] for g in got] == list(want.values()), f"doc lines {[g['line'] for g in got]} != {want}")
        run([LONGMIXD, "verify", outs[2]])


def test_reuse_rules(wd):
    """A re-run reuses a shard only when nothing that shapes it changed: a touched or copied input
    with the same bytes is reused (content hash), another --domain-field or DOMAIN= re-indexes."""
    inputs = make_corpus(wd)
    slim = wd("corpus", "slim")
    idx = wd("idx")

    def index(*extra, ins=None):
        p = run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", idx, *extra] + (ins or inputs))
        return p.stderr.decode()

    def stats():
        return json.loads(run([LONGMIXD, "stats", idx, "--json"]).stdout)

    index()
    first = stats()
    # Same bytes, new mtime (touched, or copied by rsync without -t): reused, not re-tokenized.
    for f in glob.glob(os.path.join(slim, "*")):
        os.utime(f, (time.time() + 100, time.time() + 100))
    out = index()
    check("(3 unchanged)" in out, f"touched inputs were re-indexed: {out!r}")
    check(stats() == first, "statistics changed after a touch")
    out = index()
    check("(3 unchanged)" in out, f"second re-run after the touch: {out!r}")
    # Another domain field: every JSON Lines input is re-indexed with the new labels.
    out = index("--domain-field", "meta.missing", "--on-error", "skip", ins=[slim])
    check("(0 unchanged)" in out, f"--domain-field change reused shards: {out!r}")
    # (inputs not named in a run keep their shards: only the .txt folder's Notes remain)
    check(list(stats()["domains"]) == ["Notes"], f"documents kept although their domain field is gone: "
          f"{list(stats()['domains'])}")
    # A forced domain: re-indexed, every document in that domain.
    out = index(ins=[f"Forced={slim}"])
    check("(0 unchanged)" in out, f"DOMAIN= change reused shards: {out!r}")
    check(sorted(stats()["domains"]) == ["Forced", "Notes"], f"domains {list(stats()['domains'])}")
    # Back to the original rule: re-indexed again, and equal to the first run.
    index(ins=[slim])
    index()
    check(stats() == first, "statistics differ from the first run")
    run([LONGMIXD, "verify", idx])


TESTS = {f.__name__[5:]: f for f in [test_megatron_serve, test_megatron_corrupt_idx, test_shard_merge,
                                      test_kill9_resume, test_flipped_byte, test_bad_input,
                                      test_threads_identical, test_reuse_rules]}

if __name__ == "__main__":
    sys.exit(main(TESTS))
