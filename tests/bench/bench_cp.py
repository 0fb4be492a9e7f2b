#!/usr/bin/env python3
"""Server cost of context-parallel slices (issue #14): for 128K-token sequences, one sequence per
request (rank 0 of world 8), longmixd's CPU time and the bytes sent per request for the whole
sequence (wire v1, and wire v2 with cp_size 1) and for one CP slice (cp_size 2, 4, 8), with and
without zstd; then the same plan with pad_multiple 16 (wire v3): the whole padded sequence, its
thd slices (Transformer Engine's per-document split, cp_size 2, 4, 8) and one zigzag slice. The response cache is off (cache_mb 0), so every request builds its body; the
plan's block cache is warmed first. Modes are interleaved request by request so that load on the
machine hits them alike. CPU is the daemon's user+sys (/proc/PID/stat) around each request.

  tests/bench/bench_cp.py BUILD_DIR INDEX_DIR [--requests 40]

Prints a Markdown table: per request and per whole sequence (K slices) CPU and bytes, and the
share of pad positions in the padded plan's sequences."""
import argparse, json, os, signal, struct, subprocess, tempfile, time, urllib.request

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
               "plans": {"p": {"strategy": "per_source", "seq_len": 131072, "global_batch": world, "seed": 1},
                         "pd": {"strategy": "per_source", "seq_len": 131072, "global_batch": world, "seed": 1,
                                "pad_multiple": 16}}}, f)
port_file = os.path.join(work, "port")
daemon = subprocess.Popen([longmixd, "serve", "--config", cfg, "--port-file", port_file], stderr=subprocess.DEVNULL)
while not os.path.exists(port_file):
    time.sleep(0.05)
url = f"http://127.0.0.1:{int(open(port_file).read())}/v1/plans"
tick = os.sysconf("SC_CLK_TCK")


def cpu():
    f = open(f"/proc/{daemon.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick


def get(step, plan, cp, layout, zstd, body=False):
    q = f"{url}/{plan}/batches/{step}?rank=0&world={world}" + (f"&cp_rank={cp[0]}&cp_size={cp[1]}" if cp else "")
    q += f"&cp_layout={layout}" if layout else ""
    req = urllib.request.Request(q, headers={"Accept-Encoding": "zstd"} if zstd else {})
    with urllib.request.urlopen(req) as r:
        b = r.read()
        return b if body else len(b)


def pad_share(b):
    """1 - real / all positions of a wire v3 body (proto/WIRE.md): the cu_real section's last
    entries per sequence."""
    L, n, tb, nd, nsp, ncu = struct.unpack_from("<IIIIII", b, 48)
    S = L // struct.unpack_from("<I", b, 84)[0]
    a8 = lambda x: (x + 7) & ~7
    off = a8(a8(a8(96 + n * S * tb) + 4 * n * S) + 4 * n * S)  # after tokens, labels, positions
    off = a8(a8(a8(off + 4 * n) + 4 * (n + 1)) + 32 * nsp)       # next_tokens, span_index, spans
    cidx = struct.unpack_from(f"<{n + 1}I", b, off)
    real_at = a8(a8(off + 4 * (n + 1)) + 4 * ncu)
    real = sum(struct.unpack_from("<i", b, real_at + 4 * (cidx[s + 1] - 1))[0] for s in range(n))
    return 1 - real / (n * L)


modes = [("whole, v1", "p", None, None), ("whole, v2 (cp_size 1)", "p", (0, 1), None)] + \
        [(f"slice, cp_size {k}", "p", (k - 1, k), None) for k in (2, 4, 8)] + \
        [("padded whole, v3", "pd", None, None)] + \
        [(f"padded thd slice, cp_size {k}", "pd", (k - 1, k), "thd") for k in (2, 4, 8)] + \
        [("padded zigzag slice, cp_size 8", "pd", (7, 8), None)]
stats = {(m, z): [0.0, 0] for m, *_ in modes for z in (True, False)}
pads = []
try:
    get(0, "p", None, None, False)  # warm the plans' block caches
    get(0, "pd", None, None, False)
    # /proc CPU ticks are 10 ms: repeat each request enough times per sample to resolve it
    reps = 5
    for step in range(args.requests):
        pads.append(pad_share(get(step, "pd", None, None, False, body=True)))
        for m, plan, cp, layout in modes:
            for z in (True, False):
                c0 = cpu()
                for _ in range(reps):
                    n = get(step, plan, cp, layout, z)
                c1 = cpu()
                s = stats[(m, z)]
                s[0] += (c1 - c0) / reps
                s[1] += n
finally:
    daemon.send_signal(signal.SIGTERM)
    daemon.wait()

print(f"{args.requests} steps x {reps} repetitions per mode; seq_len 131072; pad positions in the padded plan "
      f"(pad_multiple 16): {100 * sum(pads) / len(pads):.2f}%\n")
print("| request | zstd | server CPU per request | bytes per request | CPU per whole sequence (K requests) | bytes per whole sequence |")
print("|---|---|---|---|---|---|")
for m, plan, cp, layout in modes:
    k = cp[1] if cp else 1
    for z in (True, False):
        c, n = stats[(m, z)]
        c /= args.requests
        n //= args.requests
        print(f"| {m} | {'yes' if z else 'no'} | {c * 1e3:.2f} ms | {n:,} | {k * c * 1e3:.2f} ms | {k * n:,} |")
