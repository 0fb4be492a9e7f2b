#!/usr/bin/env python3
"""Into the trainer (issue #14) against the real longmixd: context-parallel slices (wire v2),
labels / position ids / cu_seqlens, the 400s, `longmix fetch --cp-*`, the Python package with
PyTorch (document-masked attention equals per-document attention), and `longmixd export`.

  test_trainer.py [TEST...]      (ctest runs one test per process; exit 77 = skipped)

The wire bodies are read here with an independent parser written from proto/WIRE.md (numpy),
not with liblongmix, so a bug shared by the C writer and reader cannot hide."""
import json, os, struct, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from lmx_itest import LONGMIX, LONGMIXD, Daemon, Failure, Skip, check, http, main, make_index, run, write_config

SOURCE = os.environ.get("LMX_SOURCE_DIR", os.path.normpath(os.path.join(HERE, "..", "..")))

try:
    import numpy as np
except ImportError:
    np = None

PLANS = {"orig": {"strategy": "original", "seq_len": 512, "global_batch": 4, "seed": 2},
         "eos": {"strategy": "original", "seq_len": 256, "global_batch": 4, "seed": 3, "eos": True},
         "cut": {"strategy": "cut", "cut_len": 48, "seq_len": 256, "global_batch": 2},
         "cross": {"strategy": "per_source", "seq_len": 512, "global_batch": 4, "bos": False,
                   "cross_doc_labels": True, "ignore_index": -1},
         "odd": {"strategy": "original", "seq_len": 300, "global_batch": 2}}


def need_numpy():
    if np is None:
        raise Skip(f"numpy is not importable by {sys.executable} (Debian: python3-numpy)")


def parse(body):
    """A wire v1/v2 body (proto/WIRE.md) -> dict; checks the sizes it relies on."""
    check(body[:8] == b"LMXBATCH", "magic")
    version, hsize, flags = struct.unpack_from("<HHI", body, 8)
    check(hsize == 96 and version in (1, 2), f"version {version} header {hsize}")
    step, rank, world, L, n, tb, nd, nsp, ncu, total = struct.unpack_from("<QIIIIIIIIQ", body, 32)
    check(total == len(body), "total_size")
    cp_rank, cp_size, ignore = (0, 1, 0) if version == 1 else struct.unpack_from("<IIi", body, 80)
    S = L // cp_size
    a8 = lambda x: (x + 7) & ~7
    off = 96
    dt = np.dtype("<u2" if tb == 2 else "<u4")
    tokens = np.frombuffer(body, dt, n * S, off).reshape(n, S)
    off = a8(off + n * S * tb)
    labels = positions = None
    if version == 2:
        labels = np.frombuffer(body, "<i4", n * S, off).reshape(n, S)
        off = a8(off + 4 * n * S)
        positions = np.frombuffer(body, "<u4", n * S, off).reshape(n, S)
        off = a8(off + 4 * n * S)
    nxt = np.frombuffer(body, "<u4", n, off)
    off = a8(off + 4 * n)
    sidx = np.frombuffer(body, "<u4", n + 1, off)
    off = a8(off + 4 * (n + 1))
    spans = [struct.unpack_from("<QQIII", body, off + 32 * i) for i in range(nsp)]
    off = a8(off + 32 * nsp)
    cus = [None] * n
    if flags & 1:
        cidx = np.frombuffer(body, "<u4", n + 1, off)
        off = a8(off + 4 * (n + 1))
        cu = np.frombuffer(body, "<i4", ncu, off)
        off = a8(off + 4 * ncu)
        cus = [cu[cidx[s]:cidx[s + 1]].copy() for s in range(n)]
    doff = np.frombuffer(body, "<u4", nd + 1, off)
    blob = off + 4 * (nd + 1)
    domains = [body[blob + doff[i]:blob + doff[i + 1]].decode() for i in range(nd)]
    seqs = []
    for s in range(n):
        sp = [dict(doc=d, offset=o, start=st, length=ln, domain=domains[dm])
              for d, o, st, ln, dm in spans[sidx[s]:sidx[s + 1]]]
        seqs.append(dict(tokens=tokens[s], labels=None if labels is None else labels[s],
                         position_ids=None if positions is None else positions[s], next_token=int(nxt[s]),
                         spans=sp, cu_seqlens=cus[s]))
    return dict(version=version, step=step, rank=rank, world=world, seq_len=L, cp_rank=cp_rank, cp_size=cp_size,
                ignore_index=ignore, seqs=seqs)


def get_body(d, plan, step, rank=0, world=1, cp=None):
    url = f"{d.url}/v1/plans/{plan}/batches/{step}?rank={rank}&world={world}"
    if cp is not None:
        url += f"&cp_rank={cp[0]}&cp_size={cp[1]}"
    st, hdr, body = http(url)
    check(st == 200, f"GET {url}: {st} {body[:200]!r}")
    return body


def slice_positions(L, C, K):
    """Whole-sequence positions of CP rank C's zigzag slice, in slice order."""
    if K == 1:
        return np.arange(L)
    c = L // (2 * K)
    return np.concatenate([np.arange(C * c, (C + 1) * c), np.arange((2 * K - 1 - C) * c, (2 * K - C) * c)])


def expected_fields(whole, nxt_whole_first_span, spec, bos_id=256):
    """Labels and position ids of one v1 sequence, computed here from its tokens, cu_seqlens,
    next token and spans (proto/WIRE.md, "Labels and position ids"). Returns (labels, positions,
    last_ambiguous): the last label is decided by whether the next sequence starts a new piece,
    which we infer from document continuity (ambiguous for `cut`, where two pieces of one document
    may be placed one after the other)."""
    toks = whole["tokens"].astype(np.int64)
    L = len(toks)
    cu = whole["cu_seqlens"]
    ignore = spec.get("ignore_index", -100)
    cross = spec.get("cross_doc_labels", False)
    labels = np.empty(L, np.int64)
    labels[:-1] = toks[1:]
    labels[-1] = whole["next_token"]
    pos = np.arange(L)
    starts = set(int(x) for x in cu[:-1])
    for a, b in zip(cu[:-1], cu[1:]):
        pos[a:b] = np.arange(b - a)
        if b < L and not cross:
            labels[b - 1] = ignore
    # the last position: does the document continue into the next sequence?
    last = [sp for sp in whole["spans"] if sp["start"] + sp["length"] == L]
    nsp = nxt_whole_first_span
    cont = False
    if last and nsp and nsp["start"] == 0:
        cont = last[0]["doc"] == nsp["doc"] and last[0]["offset"] + last[0]["length"] == nsp["offset"]
    elif not last and spec.get("bos", True) and toks[-1] == bos_id and nsp and nsp["start"] == 0 and nsp["offset"] == 0:
        cont = True  # the sequence ends on a BOS whose document starts the next sequence
    if not cont and not cross:
        labels[-1] = ignore
    return labels, pos, spec["strategy"] == "cut"


def start(wd, plans=PLANS):
    make_index(wd)
    return Daemon(wd, write_config(wd, plans))


def test_cp_reassembly(wd):
    """For several plans, steps, ranks, world sizes and K in {1,2,4,8}: the K slices equal the
    whole sequence, labels / position ids / cu_seqlens are what the whole sequence gives, spans
    are exact for the slice, the union of spans over the ranks is the whole sequence's."""
    need_numpy()
    d = start(wd)
    docs = {}

    def doc_tokens(doc):
        if doc not in docs:
            out = run([LONGMIXD, "doc", wd("index"), str(doc), "--json", "--tokens"]).stdout
            docs[doc] = json.loads(out)["ids"]
        return docs[doc]

    checked = masked = boundaries = 0
    for plan in ("orig", "eos", "cut", "cross"):
        spec = PLANS[plan]
        gb = spec["global_batch"]
        for step in (0, 3):
            for world in (1, 2):
                for rank in range(world):
                    whole = parse(get_body(d, plan, step, rank, world))
                    # the sequence after each one (its first span decides the last label)
                    after = parse(http(f"{d.url}/v1/plans/{plan}/sequences/"
                                       f"{step * gb + (rank + 1) * (gb // world)}")[2])
                    for K in (1, 2, 4, 8):
                        slices = [parse(get_body(d, plan, step, rank, world, cp=(C, K))) for C in range(K)]
                        for sl in slices:
                            check(sl["version"] == 2 and sl["cp_size"] == K and sl["seq_len"] == spec["seq_len"],
                                  f"{plan}: v2 header {sl['version']} {sl['cp_size']}")
                        for s, w in enumerate(whole["seqs"]):
                            L = spec["seq_len"]
                            if s + 1 < len(whole["seqs"]):
                                nxt_spans = whole["seqs"][s + 1]["spans"]
                            else:
                                nxt_spans = after["seqs"][0]["spans"]
                            want_lab, want_pos, amb = expected_fields(w, nxt_spans[0] if nxt_spans else None, spec)
                            tok = np.zeros(L, np.int64)
                            lab = np.zeros(L, np.int64)
                            pos = np.zeros(L, np.int64)
                            seen = np.zeros(L, np.int64)
                            covered = np.zeros(L, np.int64)
                            for C, sl in enumerate(slices):
                                q = slice_positions(L, C, K)
                                x = sl["seqs"][s]
                                check(len(x["tokens"]) == L // K, "slice length")
                                tok[q] = x["tokens"]
                                lab[q] = x["labels"]
                                pos[q] = x["position_ids"]
                                seen[q] += 1
                                check(np.array_equal(x["cu_seqlens"], w["cu_seqlens"]),
                                      f"{plan} step {step} K={K}: cu_seqlens of the slice are not the whole sequence's")
                                check(x["next_token"] == w["next_token"], "next_token")
                                for sp in x["spans"]:
                                    check(sp["start"] + sp["length"] <= L // K, "span past the slice")
                                    ids = doc_tokens(sp["doc"])[sp["offset"]:sp["offset"] + sp["length"]]
                                    check(list(x["tokens"][sp["start"]:sp["start"] + sp["length"]]) == ids,
                                          f"{plan} K={K} C={C}: span {sp} does not hold the document's tokens")
                                    covered[q[sp["start"]:sp["start"] + sp["length"]]] += 1
                            check((seen == 1).all(), "the slices do not partition the sequence")
                            check(np.array_equal(tok, w["tokens"]),
                                  f"{plan} step {step} {rank}/{world} K={K}: slices do not reassemble the sequence")
                            wcov = np.zeros(L, np.int64)
                            for sp in w["spans"]:
                                wcov[sp["start"]:sp["start"] + sp["length"]] += 1
                            check(np.array_equal(covered, wcov), "the slices' spans do not cover what the whole's do")
                            check(np.array_equal(pos, want_pos), f"{plan} K={K}: position ids differ")
                            bad = np.nonzero(lab[:-1] != want_lab[:-1])[0]
                            check(len(bad) == 0, f"{plan} step {step} K={K} seq {s}: labels differ at {bad[:5]}: "
                                                 f"{lab[bad[:5]]} vs {want_lab[bad[:5]]}")
                            if not amb:
                                check(lab[-1] == want_lab[-1], f"{plan} step {step} K={K} seq {s}: last label "
                                                               f"{lab[-1]}, want {want_lab[-1]}")
                            checked += 1
                            masked += int((lab == spec.get("ignore_index", -100)).sum())
                            boundaries += len(w["cu_seqlens"]) - 2
    # a document that continues into the next sequence keeps its last target, and the ignore
    # index is really used somewhere (so the checks above are not vacuous)
    check(masked > 100 and boundaries > 100, f"only {masked} masked labels, {boundaries} boundaries: vacuous")
    c = parse(get_body(d, "cross", 0, cp=(0, 1)))
    check(not any((x["labels"] == -1).any() for x in c["seqs"]), "cross_doc_labels: true still masks")
    print(f"  {checked} (sequence, K) combinations checked, {masked} masked labels, {boundaries} boundaries")
    d.stop()


def test_v1_unchanged(wd):
    """Without cp parameters the answer is wire v1, as before; cp_size=1 gives v2 with the same
    tokens; ETags differ; an odd seq_len works with K=1 only."""
    need_numpy()
    d = start(wd)
    st, h1, b1 = http(f"{d.url}/v1/plans/orig/batches/2?rank=1&world=2")
    st2, h2, b2 = http(f"{d.url}/v1/plans/orig/batches/2?rank=1&world=2&cp_size=1")
    check(st == 200 and st2 == 200, "status")
    v1, v2 = parse(b1), parse(b2)
    check(v1["version"] == 1 and v2["version"] == 2, "versions")
    check(h1["etag"] != h2["etag"], "the v1 and v2 answers share an ETag")
    for a, b in zip(v1["seqs"], v2["seqs"]):
        check(np.array_equal(a["tokens"], b["tokens"]) and np.array_equal(a["cu_seqlens"], b["cu_seqlens"]),
              "cp_size=1 tokens differ from v1")
    # the same request twice (and from the cache) is the same bytes
    check(get_body(d, "orig", 2, 1, 2, cp=(1, 4)) == get_body(d, "orig", 2, 1, 2, cp=(1, 4)), "not deterministic")
    odd = parse(get_body(d, "odd", 0, cp=(0, 1)))
    check(len(odd["seqs"][0]["tokens"]) == 300, "odd seq_len with K=1")
    d.stop()


def test_bad_parameters(wd):
    """cp_size not dividing, cp_rank >= cp_size, zero, huge values, junk: 400 naming the parameter."""
    d = start(wd)
    cases = [("cp_rank=0&cp_size=3", "cp_size"), ("cp_rank=2&cp_size=2", "cp_rank"), ("cp_size=0", "cp_size"),
             ("cp_rank=0&cp_size=99999999999", "cp_size"), ("cp_rank=-1&cp_size=2", "cp_rank"),
             ("cp_rank=x&cp_size=2", "cp_rank"), ("cp_rank=0&cp_size=65537", "cp_size"),
             ("cp_rank=5", "cp_rank"), ("cp_rank=0&cp_size=512", "cp_size")]
    for q, name in cases:
        st, _, body = http(f"{d.url}/v1/plans/orig/batches/0?{q}")
        check(st == 400, f"{q}: status {st}")
        e = json.loads(body)
        check(e["error"] == "bad_parameter" and name in e["detail"], f"{q}: {e} does not name {name}")
    st, _, body = http(f"{d.url}/v1/plans/odd/batches/0?cp_rank=0&cp_size=4")
    e = json.loads(body)
    check(st == 400 and "cp_size" in e["detail"] and "seq_len" in e["detail"], f"odd seq_len: {st} {e}")
    d.stop()


TESTS = {"cp_reassembly": test_cp_reassembly, "v1_unchanged": test_v1_unchanged,
         "bad_parameters": test_bad_parameters}

if __name__ == "__main__":
    sys.exit(main(TESTS))
