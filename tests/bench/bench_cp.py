#!/usr/bin/env python3
"""Server cost of context-parallel slices (issue #14): for 128K-token sequences, one sequence per
request (rank 0 of world 8), longmixd's CPU time and the bytes sent per request for the whole
sequence (wire v1, and wire v2 with cp_size 1) and for one CP slice (cp_size 2, 4, 8), with and
without zstd. The response cache is off (cache_mb 0), so every request builds its body; the
plan's block cache is warmed first. Modes are interleaved request by request so that load on the
machine hits them alike. CPU is the daemon's user+sys (/proc/PID/stat) around each request.

  tests/bench/bench_cp.py BUILD_DIR INDEX_DIR [--requests 40]

Prints a Markdown table: per request and per whole sequence (K slices) CPU and bytes."""
import argparse, json, os, signal, subprocess, tempfile, time, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("build")
ap.add_argument("index")
ap.add_argument("--requests", type=int, default=40)
args = ap.parse_args()
longmixd = os.path.join(args.build, "server", "longmixd")
work = tempfile.mkdtemp(prefix="lmx-bench-cp-")
cfg = os.path.join(work, "config.json")
world = 8
with open(cfg, "w") as f:
    json.dump({"listen": "127.0.0.1:0", "index": os.path.abspath(args.index), "threads": 1, "cache_mb": 0,
               "plans": {"p": {"strategy": "per_source", "seq_len": 131072, "global_batch": world, "seed": 1}}}, f)
port_file = os.path.join(work, "port")
daemon = subprocess.Popen([longmixd, "serve", "--config", cfg, "--port-file", port_file], stderr=subprocess.DEVNULL)
while not os.path.exists(port_file):
    time.sleep(0.05)
url = f"http://127.0.0.1:{int(open(port_file).read())}/v1/plans/p/batches"
tick = os.sysconf("SC_CLK_TCK")


def cpu():
    f = open(f"/proc/{daemon.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick


def get(step, cp, zstd):
    q = f"{url}/{step}?rank=0&world={world}" + (f"&cp_rank={cp[0]}&cp_size={cp[1]}" if cp else "")
    req = urllib.request.Request(q, headers={"Accept-Encoding": "zstd"} if zstd else {})
    with urllib.request.urlopen(req) as r:
        return len(r.read())


modes = [("whole, v1", None), ("whole, v2 (cp_size 1)", (0, 1))] + [(f"slice, cp_size {k}", (k - 1, k))
                                                                      for k in (2, 4, 8)]
stats = {(m, z): [0.0, 0] for m, _ in modes for z in (True, False)}
try:
    get(0, None, False)  # warm the plan's block cache
    # /proc CPU ticks are 10 ms: repeat each request enough times per sample to resolve it
    reps = 5
    for step in range(args.requests):
        for m, cp in modes:
            for z in (True, False):
                c0 = cpu()
                for _ in range(reps):
                    n = get(step, cp, z)
                c1 = cpu()
                s = stats[(m, z)]
                s[0] += (c1 - c0) / reps
                s[1] += n
finally:
    daemon.send_signal(signal.SIGTERM)
    daemon.wait()

print(f"{args.requests} steps x {reps} repetitions per mode; seq_len 131072\n")
print("| request | zstd | server CPU per request | bytes per request | CPU per whole sequence (K requests) | bytes per whole sequence |")
print("|---|---|---|---|---|---|")
for m, cp in modes:
    k = cp[1] if cp else 1
    for z in (True, False):
        c, n = stats[(m, z)]
        c /= args.requests
        n //= args.requests
        print(f"| {m} | {'yes' if z else 'no'} | {c * 1e3:.2f} ms | {n:,} | {k * c * 1e3:.2f} ms | {k * n:,} |")
