#!/usr/bin/env python3
"""Measures what one longmixd node costs and delivers, for docs/SCALING.md.

  scaling.py [--workdir DIR] [--mb 40 | --corpus INPUT] [--tokenizer FILE|bytes] [--threads N] [--seconds 10]
             [--clients 8] [--batches 8]

1. Corpus: deploy/demo-corpus.py (real text from the Debian image, SlimPajama layout), --mb MB,
   indexed with --tokenizer (default: ../shared's llama2-sp-bpe tokenizer when present, a 32K
   vocabulary like the paper's LLaMA-2, else `bytes`). Reused when DIR already has them.
   --corpus INPUT indexes your own data instead (e.g. one SlimPajama chunk) for its zstd ratio.
2. longmixd serve with plan "ps": per_source, seq_len 131072, global_batch 32 (the paper's 4M
   tokens a step), threads N (default: all cores).
3. CPU time per 128K sequence: one client fetches --batches distinct steps, whole batches
   (world 1) and per-rank parts (world 8), plain and zstd; the daemon's CPU time (utime+stime
   from /proc/PID/stat) is divided by the sequences served. Also bytes per sequence on the wire.
4. Throughput: `longmix bench` (C, liblongmix, keep-alive) with --clients for --seconds, plain
   and zstd, world 8; MB/s of uncompressed batch bodies and tokens/s; daemon CPU use meanwhile.
Prints a Markdown table; the clients run on the same machine and take CPU from the daemon, so
the throughput figures are a lower bound for a node with its own cores. $LONGMIXD/$LONGMIX."""
import argparse, json, os, subprocess, sys, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from lmx_itest import LONGMIX, LONGMIXD, Daemon, Workdir, run  # noqa: E402

SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
LLAMA2 = os.path.join(SRC, "..", "shared", "fixtures", "tokenizers", "llama2-sp-bpe", "tokenizer.json")
SEQ, GB = 131072, 32


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def get(url, zstd):
    req = urllib.request.Request(url, headers={"Accept-Encoding": "zstd"} if zstd else {})
    with urllib.request.urlopen(req, timeout=300) as r:
        return r.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir")
    ap.add_argument("--mb", type=float, default=40)
    ap.add_argument("--corpus", help="index this INPUT (file or folder) instead of the demo corpus")
    ap.add_argument("--tokenizer", default=LLAMA2 if os.path.exists(LLAMA2) else "bytes")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--batches", type=int, default=8)
    a = ap.parse_args()
    wd = Workdir()
    if a.workdir:
        os.rmdir(wd.path)
        os.makedirs(a.workdir, exist_ok=True)
        wd.path = os.path.abspath(a.workdir)
    corpus = os.path.abspath(a.corpus) if a.corpus else wd("corpus", "train")
    if not a.corpus and not os.path.exists(corpus):
        run([sys.executable, os.path.join(SRC, "deploy", "demo-corpus.py"), wd("corpus"), "--mb", str(a.mb)], timeout=600)
    if not os.path.exists(wd("index", "manifest.json")):
        t0 = time.monotonic()
        run([LONGMIXD, "index", "--tokenizer", a.tokenizer, "--threads", str(os.cpu_count()), "--out", wd("index"),
             corpus], timeout=3600)
        print(f"indexed in {time.monotonic() - t0:.1f} s")
    st = json.loads(run([LONGMIXD, "stats", wd("index"), "--json"]).stdout)
    cfg = {"listen": "127.0.0.1:0", "index": wd("index"), "threads": a.threads, "connection_limit": 1024,
           "plans": {"ps": {"strategy": "per_source", "seq_len": SEQ, "global_batch": GB, "seed": 1}}}
    json.dump(cfg, open(wd("scaling.json"), "w"))
    load0 = open("/proc/loadavg").read().split()[:3]
    d = Daemon(wd, wd("scaling.json"))
    rows = []
    try:
        pid = d.proc.pid
        get(f"{d.url}/v1/plans/ps/batches/0", False)  # warm: plan set-up, page cache
        step = 100
        for world in (1, 8):
            for zstd in (False, True):
                seqs = nbytes = 0
                c0, t0 = cpu_s(pid), time.monotonic()
                for _ in range(a.batches):
                    step += 1
                    for r in range(world):
                        nbytes += len(get(f"{d.url}/v1/plans/ps/batches/{step}?rank={r}&world={world}", zstd))
                        seqs += GB // world
                cpu, wall = cpu_s(pid) - c0, time.monotonic() - t0
                rows.append(("CPU per sequence", f"world {world}, {'zstd' if zstd else 'plain'}",
                             f"{cpu / seqs * 1e3:.1f} ms CPU, {wall / seqs * 1e3:.1f} ms wall, "
                             f"{nbytes / seqs / 2**20:.2f} MiB/seq on the wire"))
        for zstd in (False, True):
            c0, t0 = cpu_s(pid), time.monotonic()
            p = run([LONGMIX, "bench", "--url", d.url, "--plan", "ps", "--clients", str(a.clients), "--seconds",
                     str(a.seconds), "--world", "8"] + ([] if zstd else ["--no-zstd"]), timeout=a.seconds + 300)
            cpu, wall = cpu_s(pid) - c0, time.monotonic() - t0
            b = json.loads(p.stdout)
            rows.append(("throughput", f"{a.clients} clients, world 8, {'zstd' if zstd else 'plain'}",
                         f"{b['MB_per_s']:.0f} MB/s of batch bodies, {b['seq_per_s'] * SEQ / 1e6:.1f} M tokens/s, "
                         f"{b['seq_per_s']:.1f} seq/s, p50 {b['p50_ms']:.0f} ms, p99 {b['p99_ms']:.0f} ms, "
                         f"daemon {cpu / wall * 100:.0f}% CPU, errors {b['errors']}"))
        # The same without verification on the client side: curl processes over keep-alive,
        # bodies to /dev/null (what the node can push when the receivers are cheap).
        for zstd in (False, True):
            n = max(1, a.clients // 2)
            per = 400
            c0, t0 = cpu_s(pid), time.monotonic()
            ps = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{http_code}\\n"] +
                                   (["-H", "Accept-Encoding: zstd"] if zstd else []) +
                                   [f"{d.url}/v1/plans/ps/batches/[{1000 + i * per}-{999 + (i + 1) * per}]"
                                    f"?rank={i % 8}&world=8"], stdout=subprocess.PIPE, text=True) for i in range(n)]
            outs = [p.communicate()[0].split() for p in ps]
            cpu, wall = cpu_s(pid) - c0, time.monotonic() - t0
            wire = sum(int(x) for o in outs for x in o[0::2])
            codes = {c for o in outs for c in o[1::2]}
            seqs = n * per * GB // 8
            rows.append(("throughput", f"{n} curl, world 8, {'zstd' if zstd else 'plain'}",
                         f"{wire / wall / 1e6:.0f} MB/s on the wire, {seqs * SEQ * 2 / wall / 1e6:.0f} MB/s of batch "
                         f"bodies, {seqs * SEQ / wall / 1e6:.1f} M tokens/s, {seqs / wall:.0f} seq/s, daemon "
                         f"{cpu / wall * 100:.0f}% CPU, HTTP {sorted(codes)}"))
    finally:
        d.stop()
    print(f"load average before/after: {load0} / {open('/proc/loadavg').read().split()[:3]}")
    print(f"machine: {os.cpu_count()} cores; index: {st['total_tokens'] / 1e6:.1f} M tokens "
          f"({os.path.basename(os.path.dirname(a.tokenizer)) if a.tokenizer != 'bytes' else 'bytes'} tokenizer); "
          f"plan per_source seq_len {SEQ} global_batch {GB}; daemon threads {a.threads}")
    print("| what | setting | result |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    if not a.workdir:
        wd.cleanup()


if __name__ == "__main__":
    main()
