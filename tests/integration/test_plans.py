#!/usr/bin/env python3
"""Statistical and determinism conformance of the mixture plans (issue #5), against the real
longmixd: index -> serve -> HTTP batches decoded here (proto/WIRE.md).

  test_plans.py [TEST...]      (ctest runs one test per process; exit 77 = skipped)

Expected values come from `longmixd stats --json` with the issue's formulas (L_d / S_d the tokens
of domain d in documents at/above and below long_threshold, k = short_keep):
  per_source: share w_d (natural share, or domain_weights replacing it, normalized);
  global: share ∝ L_d + k·S_d;   original, cut: share ∝ L_d + S_d;
  long-token share inside d: L_d / (L_d + k·S_d)  (k = 1 for original and cut).
Realized values are computed from the served spans over the first WINDOW tokens of the stream."""
import collections, json, os, signal, struct, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmx_itest import (LONGMIXD, Skip, main, Daemon, Failure, blake2b_256, check, http, run,  # noqa: E402
                       write_config)

HERE = os.path.dirname(os.path.abspath(__file__))
SEQ_LEN, GB, STEPS = 131072, 32, 6
WINDOW = SEQ_LEN * GB * STEPS  # 25,165,824 tokens >= 25M
SHARE_TOL, LONG_TOL = 0.005, 0.02


# ---- wire format (proto/WIRE.md) ----

def align8(x):
    return (x + 7) & ~7


def decode(body):
    """Parses a batch body; returns dict with header fields and per-sequence tokens (raw bytes),
    next_token, spans [(doc, offset, start, length, domain name)] and cu (list or None)."""
    check(body[:8] == b"LMXBATCH", "bad magic")
    version, hsize, flags = struct.unpack_from("<HHI", body, 8)
    check(version == 1 and hsize == 96, f"version {version} header {hsize}")
    plan_id = body[16:32].hex()
    step, rank, world, seq_len, n, tb, n_dom, n_spans, n_cu, total = struct.unpack_from("<QIIIIIIIIQ", body, 32)
    check(total == len(body), f"total_size {total} != {len(body)}")
    off = 96
    tok_off = off
    off = align8(off + n * seq_len * tb)
    nexts = struct.unpack_from(f"<{n}I", body, off)
    off = align8(off + 4 * n)
    sidx = struct.unpack_from(f"<{n + 1}I", body, off)
    off = align8(off + 4 * (n + 1))
    spans_off = off
    off = align8(off + 32 * n_spans)
    cu_all = None
    if flags & 1:
        cidx = struct.unpack_from(f"<{n + 1}I", body, off)
        off = align8(off + 4 * (n + 1))
        cu_all = struct.unpack_from(f"<{n_cu}i", body, off)
        off = align8(off + 4 * n_cu)
    doff = struct.unpack_from(f"<{n_dom + 1}I", body, off)
    blob = off + 4 * (n_dom + 1)
    names = [body[blob + doff[i]:blob + doff[i + 1]].decode() for i in range(n_dom)]
    raw = list(struct.iter_unpack("<QQIII4x", body[spans_off:spans_off + 32 * n_spans]))
    seqs = []
    for s in range(n):
        sp = [(d, o, st, ln, names[dm]) for d, o, st, ln, dm in raw[sidx[s]:sidx[s + 1]]]
        cu = list(cu_all[cidx[s]:cidx[s + 1]]) if cu_all is not None else None
        t0 = tok_off + s * seq_len * tb
        seqs.append({"tokens": body[t0:t0 + seq_len * tb], "next": nexts[s], "spans": sp, "cu": cu})
    return {"plan_id": plan_id, "step": step, "rank": rank, "world": world, "seq_len": seq_len,
            "token_bytes": tb, "seqs": seqs}


def batch_url(d, plan, step, rank=0, world=1):
    return f"{d.url}/v1/plans/{plan}/batches/{step}?rank={rank}&world={world}"


def get_batch(d, plan, step, rank=0, world=1):
    s, h, body = http(batch_url(d, plan, step, rank, world))
    check(s == 200, f"{plan} step {step} rank {rank}/{world}: HTTP {s} {body[:200]!r}")
    check(h.get("x-longmix-digest") == "blake2b-256=" + blake2b_256(body), f"{plan} step {step}: digest")
    return body


# ---- indexes ----

def synth_index(wd):
    p = run([sys.executable, os.path.join(HERE, "make-synth-corpus.py"), wd("synth")])
    inputs = p.stdout.decode().split()
    run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("index")] + inputs)
    return wd("index")


def shared_index(wd):
    shared = os.environ.get("LMX_SHARED_DIR", "")
    script = os.path.join(shared, "corpus", "build-corpus.py")
    if not shared or not os.path.exists(script):
        raise Skip(f"no shared corpus ({script if shared else 'LMX_SHARED_DIR unset'})")
    p = subprocess.run([sys.executable, script, wd("shared-corpus"), "--mb", "20"], capture_output=True, timeout=300)
    if p.returncode != 0:  # it installs Debian packages when missing: an environment problem
        raise Skip(f"{script} failed ({p.returncode}): {p.stderr.decode(errors='replace').strip()[-300:]}")
    run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("index"), wd("shared-corpus")])
    return wd("index")


def index_stats(index):
    return json.loads(run([LONGMIXD, "stats", index, "--json"]).stdout)


def doc_lengths(index, n_docs):
    out = {}
    for lo in range(0, n_docs, 20000):
        ids = [str(i) for i in range(lo, min(n_docs, lo + 20000))]
        for line in run([LONGMIXD, "doc", index, *ids, "--json"]).stdout.splitlines():
            o = json.loads(line)
            out[o["id"]] = (o["tokens"], o["domain"])
    return out


# ---- expectations and measurements ----

def expected(st, spec):
    """Expected domain shares and long-token shares from the index stats (issue #5 formulas)."""
    doms = {n: d for n, d in st["domains"].items() if d["tokens"] > 0}
    strat = spec["strategy"]
    k = spec.get("short_keep", 0.1) if strat in ("per_source", "global") else 1.0
    L = {n: d["long_tokens"] for n, d in doms.items()}
    S = {n: d["tokens"] - d["long_tokens"] for n, d in doms.items()}
    total = sum(d["tokens"] for d in doms.values())
    if strat == "per_source":
        raw = {n: (L[n] + S[n]) / total for n in doms}
        raw.update(spec.get("domain_weights", {}))
    elif strat == "global":
        raw = {n: L[n] + k * S[n] for n in doms}
    else:
        raw = {n: L[n] + S[n] for n in doms}
    tot = sum(raw.values())
    share = {n: raw[n] / tot for n in doms}
    long_share = {n: L[n] / (L[n] + k * S[n]) for n in doms}
    rate = {n: L[n] + k * S[n] for n in doms}  # document tokens of one epoch
    return share, long_share, rate


def measure(d, plan, spec, lengths, steps=STEPS):
    """Realized per-domain values over batches 0..steps-1 (the stream's first steps*GB*SEQ_LEN
    tokens), from the spans of the served batches."""
    cut_len = spec.get("cut_len", 4096)
    thr = spec.get("long_threshold", 4096)
    m = {"tok": collections.Counter(), "long": collections.Counter(), "item_long": collections.Counter(),
         "maxdoc": collections.Counter(), "starts": {}, "runs": [], "n_seqs": 0}
    run_doc = None  # (doc, offset of the run start, length so far) of the open run (cut check)
    for step in range(steps):
        b = decode(get_batch(d, plan, step))
        check(b["seq_len"] == spec["seq_len"] and len(b["seqs"]) == spec["global_batch"], "batch shape")
        for q in b["seqs"]:
            m["n_seqs"] += 1
            for doc, off, start, ln, dom in q["spans"]:
                dl, ddom = lengths[doc]
                check(ddom == dom, f"span domain {dom} != document {doc}'s {ddom}")
                check(off + ln <= dl, f"span past the end of document {doc}")
                m["tok"][dom] += ln
                if dl >= thr:
                    m["long"][dom] += ln
                if spec["strategy"] == "cut":
                    piece_len = min(cut_len, dl - off // cut_len * cut_len)
                    if piece_len >= thr:
                        m["item_long"][dom] += ln
                elif dl >= thr:
                    m["item_long"][dom] += ln
                m["maxdoc"][dom] = max(m["maxdoc"][dom], dl)
                if off == 0:
                    m["starts"].setdefault(dom, []).append(doc)
                # runs of contiguous tokens of one document (continuing across sequences)
                if run_doc and start == 0 and run_doc[0] == doc and run_doc[1] + run_doc[2] == off:
                    run_doc = (doc, run_doc[1], run_doc[2] + ln)
                else:
                    if run_doc:
                        m["runs"].append(run_doc)
                    run_doc = (doc, off, ln)
                if start + ln < spec["seq_len"]:  # something (a separator or another item) follows
                    m["runs"].append(run_doc)
                    run_doc = None
    if run_doc:
        m["runs"].append(run_doc)
    return m


def sd_epochs(ps, dom):
    return ps["domains"][dom]["epochs"]


def check_plan(d, plan, spec, st, lengths, stats_json, report):
    share, long_share, rate = expected(st, spec)
    m = measure(d, plan, spec, lengths)
    total = sum(m["tok"].values())
    check(m["n_seqs"] * spec["seq_len"] >= 25_000_000, "window below 25M tokens")
    ps = stats_json["plans"][plan]
    check(ps["window_tokens"] == WINDOW, f"{plan}: /v1/stats window {ps['window_tokens']} != {WINDOW}")
    worst_share = worst_long = 0.0
    long_bad = []  # reported after the other checks of the plan, so the report line is printed
    lump = max(m["maxdoc"].values()) / total  # one longest document of the window
    for dom in share:
        real = m["tok"][dom] / total
        dev = real - share[dom]
        worst_share = max(worst_share, abs(dev))
        check(abs(dev) <= SHARE_TOL + lump,
              f"{plan}: {dom} share {real:.5f}, expected {share[dom]:.5f} (dev {dev:+.5f} > "
              f"{SHARE_TOL} + lumpiness {lump:.5f})")
        rl = m["long"][dom] / m["tok"][dom] if m["tok"][dom] else 0.0
        dl = rl - long_share[dom]
        worst_long = max(worst_long, abs(dl))
        if abs(dl) > LONG_TOL:
            dlump = m["maxdoc"][dom] / m["tok"][dom]
            long_bad.append(f"{plan}: {dom} long-token share {rl:.5f}, expected {long_share[dom]:.5f} "
                         f"(dev {dl:+.5f} > {LONG_TOL}; {sd_epochs(ps, dom):.3f} epochs of the domain in the "
                         f"window, its longest document {dlump:.3f} of its window tokens)")
        # /v1/stats over the same window (total_tokens = WINDOW) must report what we measured.
        sd = ps["domains"][dom]
        check(abs(sd["realized_share"] - real) < 1e-6,
              f"{plan}: {dom} /v1/stats realized_share {sd['realized_share']:.6f} != measured {real:.6f}")
        check(abs(sd["target_share"] - share[dom]) < 2e-3,
              f"{plan}: {dom} /v1/stats target_share {sd['target_share']:.6f} != expected {share[dom]:.6f}")
        check(sd["tokens"] == m["tok"][dom], f"{plan}: {dom} /v1/stats tokens {sd['tokens']} != {m['tok'][dom]}")
        ril = m["item_long"][dom] / m["tok"][dom] if m["tok"][dom] else 0.0
        check(abs(sd["realized_long_share"] - ril) < 1e-6,
              f"{plan}: {dom} /v1/stats realized_long_share {sd['realized_long_share']:.6f} != measured {ril:.6f}")
        if spec["strategy"] != "cut":
            check(abs(sd["expected_long_share"] - long_share[dom]) < 1e-6,
                  f"{plan}: {dom} /v1/stats expected_long_share {sd['expected_long_share']} != {long_share[dom]}")
        # epochs: document tokens served / document tokens of one epoch (separators make the
        # server's stream-token ratio differ slightly).
        ep = m["tok"][dom] / rate[dom]
        check(abs(sd["epochs"] - ep) <= 0.02 * ep + 1e-3,
              f"{plan}: {dom} /v1/stats epochs {sd['epochs']:.4f}, measured {ep:.4f}")
        if spec["strategy"] != "cut":
            # Long documents are always kept, so epoch e of the domain holds each of its n_long
            # long documents once: starts n_long*e ... n_long*(e+1)-1 of them are all distinct.
            n_long = sum(1 for ln, dm in lengths.values() if dm == dom and ln >= spec.get("long_threshold", 4096))
            seq = [doc for doc in m["starts"].get(dom, []) if lengths[doc][0] >= spec.get("long_threshold", 4096)]
            for e in range(0, len(seq), max(1, n_long)):
                chunk = seq[e:e + n_long]
                check(len(set(chunk)) == len(chunk),
                      f"{plan}: {dom} epoch {e // max(1, n_long)} repeats a long document (sampling with replacement)")
        report.append(f"{plan:>6} {dom:<24} share {real:.5f} exp {share[dom]:.5f} dev {dev:+.5f} "
                      f"(tol {SHARE_TOL + lump:.4f})  long {rl:.4f} exp {long_share[dom]:.4f} dev {dl:+.4f}  "
                      f"epochs {sd['epochs']:.3f}")
    if spec["strategy"] == "cut":
        cl = spec["cut_len"]
        for doc, off, ln in m["runs"]:
            check(off % cl == 0 and ln <= cl,
                  f"{plan}: document {doc} tokens [{off}, {off + ln}) run across a cut_len={cl} piece boundary")
        check(max(ln for _, _, ln in m["runs"]) <= cl, "cut: a span longer than cut_len")
    report.append(f"{plan:>6} worst |share dev| {worst_share:.5f}  worst |long dev| {worst_long:.5f}")
    check(not long_bad, "; ".join(long_bad))


def shares_plans(weights):
    base = {"seq_len": SEQ_LEN, "global_batch": GB, "total_tokens": WINDOW}
    return {
        "ps": dict(base, strategy="per_source", seed=1, short_keep=0.1),
        "psw": dict(base, strategy="per_source", seed=2, short_keep=0.1, domain_weights=weights),
        "gl": dict(base, strategy="global", seed=3, short_keep=0.1),
        "orig": dict(base, strategy="original", seed=4),
        "cut": dict(base, strategy="cut", seed=5, cut_len=4096),
    }


def check_long_window(plan, spec, st, ps, longest):
    """/v1/stats of the plan without total_tokens: realized shares over its default window
    (4 blocks, ~268M tokens, many epochs) against the issue's formulas, with the same tolerances
    (the lumpiness bound uses the longest document of the index)."""
    share, long_share, _ = expected(st, spec)
    win = ps["window_tokens"]
    check(win >= 4 * (1 << 26), f"{plan}: default stats window {win}")
    lump = longest / win
    long_bad = []
    for dom in share:
        sd = ps["domains"][dom]
        dev = sd["realized_share"] - share[dom]
        check(abs(dev) <= SHARE_TOL + lump,
              f"{plan} over {win} tokens: {dom} share {sd['realized_share']:.5f}, expected {share[dom]:.5f} "
              f"(dev {dev:+.5f} > {SHARE_TOL} + lumpiness {lump:.5f})")
        if spec["strategy"] != "cut":  # the server's long share of cut is per piece
            dl = sd["realized_long_share"] - long_share[dom]
            if abs(dl) > LONG_TOL:
                long_bad.append(f"{plan} over {win} tokens: {dom} long-token share {sd['realized_long_share']:.5f}, "
                             f"expected {long_share[dom]:.5f} (dev {dl:+.5f}, {sd['epochs']:.2f} epochs)")
        # The window is whole blocks, and quotas are exact at block boundaries: no lumpiness at
        # its end, so what is left is a systematic bias (e.g. separators counted as share).
        check(abs(dev) <= 0.002,
              f"{plan} over {win} tokens (whole blocks): {dom} share {sd['realized_share']:.5f}, expected "
              f"{share[dom]:.5f}: systematic deviation {dev:+.5f}")
    check(not long_bad, "; ".join(long_bad))
    worst = max(abs(ps["domains"][dom]["realized_share"] - share[dom]) for dom in share)
    return f"{plan:>6} over {win} tokens: worst |share dev| {worst:.5f} (tol {SHARE_TOL + lump:.5f})"


def run_shares(wd, index, weights):
    st = index_stats(index)
    lengths = doc_lengths(index, st.get("total_docs") or sum(x["docs"] for x in st["domains"].values()))
    plans = shares_plans(weights)
    endless = {n + "_all": {k: v for k, v in spec.items() if k != "total_tokens"} for n, spec in plans.items()}
    d = Daemon(wd, write_config(wd, dict(plans, **endless)))
    try:
        s, _, body = http(d.url + "/v1/stats")
        check(s == 200, f"/v1/stats {s}")
        stats_json = json.loads(body)
        report, failures = [], []
        for plan, spec in plans.items():
            try:
                check_plan(d, plan, spec, st, lengths, stats_json, report)
            except Failure as e:
                failures.append(str(e))
        longest = max(n for n, _ in lengths.values())
        for plan, spec in endless.items():
            try:
                report.append(check_long_window(plan, spec, st, stats_json["plans"][plan], longest))
            except Failure as e:
                failures.append(str(e))
        print("\n".join(report))
    finally:
        d.stop()
    check(not failures, "; ".join(failures))


def test_shares_synth(wd):
    """Domain and long-token shares on the synthetic index (long tail above 128K tokens)."""
    run_shares(wd, synth_index(wd), {"SynBook": 0.5, "SynC4": 0.05, "SynShort": 0.2})


def test_shares_shared(wd):
    """Domain and long-token shares on ../shared/corpus (--mb 20); skipped without it."""
    run_shares(wd, shared_index(wd), {"RedPajamaBook": 0.3, "RedPajamaArXiv": 0.05})


# ---- determinism ----

SMALL = {"orig": {"strategy": "original", "seq_len": 8192, "global_batch": 8, "seed": 11},
         "cut": {"strategy": "cut", "seq_len": 8192, "global_batch": 8, "seed": 12, "cut_len": 4096},
         "ps": {"strategy": "per_source", "seq_len": 8192, "global_batch": 8, "seed": 13},
         "psw": {"strategy": "per_source", "seq_len": 8192, "global_batch": 8, "seed": 14,
                 "domain_weights": {"SynBook": 2.0}, "eos": True},
         "gl": {"strategy": "global", "seq_len": 8192, "global_batch": 8, "seed": 15}}
PROBE_STEPS = (0, 1, 77, 4000, 1000000)


def test_same_bytes_restart(wd):
    """Batch STEP's bytes are identical across two daemon processes and across a restart."""
    synth_index(wd)
    cfg = write_config(wd, SMALL)
    a, b = Daemon(wd, cfg), Daemon(wd, cfg)
    first = {}
    try:
        for plan in SMALL:
            for step in PROBE_STEPS:
                x, y = get_batch(a, plan, step), get_batch(b, plan, step)
                check(x == y, f"{plan} step {step}: two daemons differ")
                first[plan, step] = x
    finally:
        a.stop()
    try:
        c = Daemon(wd, cfg)  # restart
        try:
            for (plan, step), x in sorted(first.items(), key=lambda kv: -kv[0][1]):  # far steps first
                check(get_batch(c, plan, step) == x, f"{plan} step {step}: differs after a restart")
        finally:
            c.stop()
    finally:
        b.stop()


def test_world_sizes(wd):
    """Ranks 0..W-1 concatenated equal the whole batch for W = 1, 2, 4, 8 (global_batch 8)."""
    synth_index(wd)
    d = Daemon(wd, write_config(wd, SMALL))
    try:
        for plan in SMALL:
            for step in (0, 5, 123457):
                whole = decode(get_batch(d, plan, step))
                for world in (1, 2, 4, 8):
                    parts = []
                    for rank in range(world):
                        bt = decode(get_batch(d, plan, step, rank, world))
                        check((bt["step"], bt["rank"], bt["world"]) == (step, rank, world), "header identity")
                        check(bt["plan_id"] == whole["plan_id"], "plan id differs between world sizes")
                        parts += bt["seqs"]
                    check(parts == whole["seqs"], f"{plan} step {step}: world {world} differs from world 1")
    finally:
        d.stop()


def test_total_tokens(wd):
    """With total_tokens, steps past the end get 416 and the JSON error body."""
    synth_index(wd)
    spec = {"strategy": "per_source", "seq_len": 4096, "global_batch": 8, "total_tokens": 3 * 8 * 4096 + 5}
    d = Daemon(wd, write_config(wd, {"tt": spec, "endless": {"strategy": "original", "seq_len": 4096,
                                                            "global_batch": 8}}))
    try:
        s, _, body = http(d.url + "/v1/plans")
        pj = json.loads(body)["plans"]["tt"]
        check(pj.get("max_steps") == 3 and pj["spec"].get("total_tokens") == spec["total_tokens"],
              f"/v1/plans tt: {pj}")
        for step in (0, 2):
            get_batch(d, "tt", step)
            get_batch(d, "tt", step, 3, 4)
        for step in (3, 4, 10 ** 9):
            s, h, body = http(batch_url(d, "tt", step))
            check(s == 416, f"step {step} past the end gave {s}")
            check(h.get("content-type", "").startswith("application/json"), "416 content-type")
            e = json.loads(body)
            check(e.get("error") == "step_out_of_range" and isinstance(e.get("detail"), str) and e["detail"],
                  f"416 body {body!r}")
        s, _, _ = http(batch_url(d, "tt", 3, 1, 2))
        check(s == 416, f"rank 1/2 past the end gave {s}")
        s, _, _ = http(f"{d.url}/v1/plans/tt/sequences/{3 * 8}")
        check(s == 416, f"sequence past the end gave {s}")
        s, _, _ = http(f"{d.url}/v1/plans/tt/sequences/{3 * 8 - 1}")
        check(s == 200, f"last sequence gave {s}")
        get_batch(d, "endless", 10 ** 9)
        s, _, body = http(d.url + "/v1/stats?plan=tt")
        ps = json.loads(body)["plans"]["tt"]
        check(ps["window_tokens"] == spec["total_tokens"], f"stats window {ps['window_tokens']}")
        for dom, o in ps["domains"].items():
            check("epochs_at_total_tokens" in o, f"stats: {dom} has no epochs_at_total_tokens")
            # A prediction for every domain that gets tokens (it was 0 for any total under one
            # 2^26-token block, which is most short runs).
            check(o["target_share"] <= 0 or o["epochs_at_total_tokens"] > 0,
                  f"stats: {dom} epochs_at_total_tokens {o['epochs_at_total_tokens']}")
    finally:
        d.stop()


def test_bad_config(wd):
    """Bad plan configs make the daemon refuse to start, naming the key; boundaries are accepted."""
    synth_index(wd)
    bad = [
        ({"strategy": "percent"}, "plans.x.strategy"),
        ({"strategy": "per_source", "domain_weights": {"NoSuchDomain": 1.0}}, "NoSuchDomain"),
        ({"strategy": "per_source", "domain_weights": {"SynBook": 0}}, "plans.x.domain_weights.SynBook"),
        ({"strategy": "per_source", "domain_weights": {"SynBook": -1.5}}, "plans.x.domain_weights.SynBook"),
        ({"strategy": "per_source", "domain_weights": {"SynBook": 0, "SynC4": 0.0}}, "plans.x.domain_weights"),
        ({"strategy": "per_source", "domain_weights": {}}, "plans.x.domain_weights"),
        ({"strategy": "per_source", "short_keep": 0}, "plans.x.short_keep"),
        ({"strategy": "global", "short_keep": 0.0}, "plans.x.short_keep"),
        ({"strategy": "per_source", "short_keep": 1.0001}, "plans.x.short_keep"),
        ({"strategy": "global", "short_keep": -0.1}, "plans.x.short_keep"),
        ({"strategy": "original", "seq_len": 1}, "plans.x.seq_len"),
        ({"strategy": "original", "seq_len": 0}, "plans.x.seq_len"),
        ({"strategy": "original", "seq_len": (1 << 24) + 1}, "plans.x.seq_len"),
        ({"strategy": "original", "global_batch": 0}, "plans.x.global_batch"),
    ]
    for i, (spec, needle) in enumerate(bad):
        cfg = write_config(wd, {"ok": {"strategy": "original"}, "x": spec}, f"bad{i}.json")
        p = subprocess.Popen([LONGMIXD, "serve", "--config", cfg, "--port-file", wd(f"bad{i}.port")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=20)
            raise Failure(f"{spec}: the daemon started")
        msg = err.decode(errors="replace").strip()
        check(p.returncode != 0, f"{spec}: exit 0")
        # the error is the last line, whole; lines before it are start-up log (e.g. shards verified)
        lines = msg.splitlines()
        check(lines and needle in lines[-1], f"{spec}: error {msg!r} does not name {needle!r} in its last line")
        check(not any(needle in l for l in lines[:-1]), f"{spec}: error is not one line: {msg!r}")
    good = {"k1": {"strategy": "per_source", "short_keep": 1}, "k1g": {"strategy": "global", "short_keep": 1.0},
            "s2": {"strategy": "original", "seq_len": 2, "global_batch": 1},
            "smax": {"strategy": "original", "seq_len": 1 << 24, "global_batch": 1},
            "w": {"strategy": "per_source", "domain_weights": {"SynBook": 1e-3, "SynC4": 100}}}
    d = Daemon(wd, write_config(wd, good, "good.json"))
    try:
        for plan in ("k1", "k1g", "s2", "w"):
            get_batch(d, plan, 3)
    finally:
        d.stop()


TESTS = {f.__name__[5:]: f for f in [test_shares_synth, test_shares_shared, test_same_bytes_restart,
                                      test_world_sizes, test_total_tokens, test_bad_config]}



if __name__ == "__main__":
    sys.exit(main(TESTS))
