#!/usr/bin/env python3
"""Plan benchmark (issue #5): random access cost of deep steps, time to first batch, daemon memory.

  bench_plans.py --longmixd BUILD/server/longmixd [--workdir DIR] [--docs 10000000] [--reps 15]
                 [--cold 3] [--plans per_source,global,original,cut]

Builds (once; reused when DIR/index exists) a synthetic index of --docs short documents (bytes
tokenizer, 16-96 tokens each, 4 domains; tests/integration/make-synth-corpus.py --bench), then for
each plan (per_source, global, original, cut with the contract defaults seq_len 131072,
global_batch 32):
  - starts `longmixd serve` and measures the time until it listens and until batch 0 arrives;
  - cold latency: the first request of a fresh daemon for step 0, and for step 10^6 (median of
    --cold daemons each);
  - warm latency: the median over --reps distinct steps of block 0 (steps 1..) and of step 10^6's
    block (10^6+1..), each after one warm-up request of that block; the ratio deep/first;
  - the first request of the next block (step 10^6 + 16) on the warm daemon;
  - RSS of the daemon (VmRSS, RssAnon = heap incl. the plan machinery, RssFile = mapped index)
    after start, after step 0 and after step 10^6.
Prints a Markdown table and a JSON line per plan."""
import argparse, json, os, statistics, subprocess, sys, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DEEP = 10 ** 6
PLANS = {"per_source": {"strategy": "per_source"}, "global": {"strategy": "global"},
         "original": {"strategy": "original"}, "cut": {"strategy": "cut", "cut_len": 4096}}


def mem(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0]) // 1024  # MiB
    return out


class Daemon:
    def __init__(self, longmixd, cfg, wd):
        self.port_file = os.path.join(wd, f"port.{time.monotonic_ns()}")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([longmixd, "serve", "--config", cfg, "--port-file", self.port_file],
                                     stdout=subprocess.DEVNULL, stderr=open(self.port_file + ".log", "wb"))
        while not os.path.exists(self.port_file) or not open(self.port_file).read().strip():
            if self.proc.poll() is not None:
                sys.exit(f"longmixd exited {self.proc.returncode}: {open(self.port_file + '.log').read()}")
            time.sleep(0.002)
        self.listen_s = time.monotonic() - self.t0
        self.url = f"http://127.0.0.1:{int(open(self.port_file).read())}"

    def get(self, plan, step):
        t = time.monotonic()
        with urllib.request.urlopen(f"{self.url}/v1/plans/{plan}/batches/{step}", timeout=600) as r:
            body = r.read()
            assert r.status == 200 and body[:8] == b"LMXBATCH"
        return time.monotonic() - t

    def cpu(self):
        """CPU seconds (user + system) the daemon used so far: less sensitive to a loaded host."""
        f = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        for f in (self.port_file, self.port_file + ".log"):
            os.remove(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longmixd", required=True)
    ap.add_argument("--workdir", default="/tmp/lmx-bench-plans")
    ap.add_argument("--docs", type=int, default=10_000_000)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--cold", type=int, default=3)
    ap.add_argument("--plans", default=",".join(PLANS))
    a = ap.parse_args()
    wd = a.workdir
    os.makedirs(wd, exist_ok=True)
    index = os.path.join(wd, "index")
    if not os.path.exists(os.path.join(index, "manifest.json")):
        t = time.monotonic()
        inputs = subprocess.run([sys.executable, os.path.join(HERE, "..", "integration", "make-synth-corpus.py"),
                                 os.path.join(wd, "corpus"), "--bench", str(a.docs)],
                                check=True, capture_output=True, text=True).stdout.split()
        print(f"corpus: {time.monotonic() - t:.1f} s", file=sys.stderr)
        t = time.monotonic()
        subprocess.run([a.longmixd, "index", "--tokenizer", "bytes", "--out", index, *inputs], check=True)
        print(f"index: {time.monotonic() - t:.1f} s", file=sys.stderr)
    st = json.loads(subprocess.run([a.longmixd, "stats", index, "--json"], check=True, capture_output=True).stdout)
    n_docs = sum(d["docs"] for d in st["domains"].values())
    print(f"index: {n_docs} documents, {st['total_tokens']} tokens, {len(st['domains'])} domains", file=sys.stderr)
    rows = []
    for name in a.plans.split(","):
        cfg = os.path.join(wd, f"config-{name}.json")
        with open(cfg, "w") as f:
            json.dump({"listen": "127.0.0.1:0", "index": index, "threads": 2, "plans": {name: PLANS[name]}}, f)
        r = {"plan": name, "docs": n_docs}
        # warm: one daemon, distinct steps of block 0 and of step 10^6's block after a warm-up each
        d = Daemon(a.longmixd, cfg, wd)
        r["mem_start"] = mem(d.proc.pid)
        d.get(name, 0)
        r["mem_step0"] = mem(d.proc.pid)
        c = d.cpu()
        first = [d.get(name, s) for s in range(1, 1 + a.reps)]
        r["warm_step0_cpu_ms"] = 1000 * (d.cpu() - c) / a.reps
        d.get(name, DEEP)
        c = d.cpu()
        deep = [d.get(name, s) for s in range(DEEP + 1, DEEP + 1 + a.reps)]
        r["warm_deep_cpu_ms"] = 1000 * (d.cpu() - c) / a.reps
        # the first request of the next block (2^26 tokens = 16 steps of 32 x 131072 later)
        r["next_block_s"] = d.get(name, DEEP + (1 << 26) // (131072 * 32))
        r["mem_deep"] = mem(d.proc.pid)
        d.stop()
        # cold: the first request of a fresh daemon, step 0 and step 10^6 alternately, --cold times
        listen, fb, c0, cd, u0, ud = [], [], [], [], [], []
        for _ in range(a.cold):
            d = Daemon(a.longmixd, cfg, wd)
            listen.append(d.listen_s)
            time.sleep(0.5)  # let start-up work settle, so the CPU delta is the request's
            c = d.cpu()
            c0.append(d.get(name, 0))
            u0.append(d.cpu() - c)
            fb.append(time.monotonic() - d.t0 - 0.5)
            d.stop()
            d = Daemon(a.longmixd, cfg, wd)
            time.sleep(0.5)
            c = d.cpu()
            cd.append(d.get(name, DEEP))
            ud.append(d.cpu() - c)
            d.stop()
        r["cold_step0_cpu_s"], r["cold_deep_cpu_s"] = statistics.median(u0), statistics.median(ud)
        r["cold_cpu_ratio"] = r["cold_deep_cpu_s"] / max(r["cold_step0_cpu_s"], 1e-3)
        r["warm_cpu_ratio"] = r["warm_deep_cpu_ms"] / max(r["warm_step0_cpu_ms"], 1e-3)
        r["listen_s"], r["first_batch_s"] = statistics.median(listen), statistics.median(fb)
        r["cold_step0_s"], r["cold_deep_s"] = statistics.median(c0), statistics.median(cd)
        r["warm_step0_ms"] = 1000 * statistics.median(first)
        r["warm_deep_ms"] = 1000 * statistics.median(deep)
        r["warm_ratio"] = r["warm_deep_ms"] / r["warm_step0_ms"]
        r["cold_ratio"] = r["cold_deep_s"] / r["cold_step0_s"]
        rows.append(r)
        print(json.dumps(r), flush=True)
    print("\n| plan | listen (s) | first batch (s) | cold step 0: wall / CPU (s) | cold step 10^6: wall / CPU (s) | "
          "cold ratio wall / CPU | warm step 0: wall / CPU (ms) | warm step 10^6: wall / CPU (ms) | "
          "warm ratio wall / CPU | next block (s) | RSS start / after (MiB) | anon start / after (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['plan']} | {r['listen_s']:.2f} | {r['first_batch_s']:.2f} | "
              f"{r['cold_step0_s']:.2f} / {r['cold_step0_cpu_s']:.2f} | {r['cold_deep_s']:.2f} / {r['cold_deep_cpu_s']:.2f} | "
              f"{r['cold_ratio']:.2f} / {r['cold_cpu_ratio']:.2f} | "
              f"{r['warm_step0_ms']:.0f} / {r['warm_step0_cpu_ms']:.0f} | {r['warm_deep_ms']:.0f} / {r['warm_deep_cpu_ms']:.0f} | "
              f"{r['warm_ratio']:.2f} / {r['warm_cpu_ratio']:.2f} | {r['next_block_s']:.2f} | "
              f"{r['mem_start']['VmRSS']} / {r['mem_deep']['VmRSS']} | {r['mem_start']['RssAnon']} / {r['mem_deep']['RssAnon']} |")

if __name__ == "__main__":
    main()
