#!/usr/bin/env python3
"""Client-side cost of fetching 128K-token sequences: `longmix bench` (liblongmix: HTTP, zstd,
BLAKE2b check, wire parse) vs curl fetching the same URLs over one keep-alive connection (transfer
and decompression only, no checks). Same daemon, same machine, same run.

  tests/bench/bench_client.py BUILD_DIR INDEX_DIR [--seconds 10]

Prints seq/s for each and the client CPU time per sequence (user+sys of the client process)."""
import argparse, json, os, resource, signal, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("build")
ap.add_argument("index")
ap.add_argument("--seconds", type=float, default=10)
args = ap.parse_args()
longmixd = os.path.join(args.build, "server", "longmixd")
longmix = os.path.join(args.build, "client", "longmix")
work = tempfile.mkdtemp(prefix="lmx-bench-client-")
cfg = os.path.join(work, "config.json")
world = 8
with open(cfg, "w") as f:
    json.dump({"listen": "127.0.0.1:0", "index": os.path.abspath(args.index), "threads": 2,
               "plans": {"p": {"strategy": "per_source", "seq_len": 131072, "global_batch": world, "seed": 1}}}, f)
port_file = os.path.join(work, "port")
daemon = subprocess.Popen([longmixd, "serve", "--config", cfg, "--port-file", port_file], stderr=subprocess.DEVNULL)
while not os.path.exists(port_file):
    time.sleep(0.05)
url = f"http://127.0.0.1:{int(open(port_file).read())}"


def child_cpu(fn):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = fn()
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


rows = []
try:
    for zstd in (True, False):
        cmd = [longmix, "bench", "--url", url, "--plan", "p", "--clients", "1", "--seconds", str(args.seconds),
               "--world", str(world)] + ([] if zstd else ["--no-zstd"])
        out, wall, cpu = child_cpu(lambda: json.loads(subprocess.run(cmd, capture_output=True, check=True).stdout))
        n = out["seq_per_s"] * out["seconds"]
        rows.append(("longmix bench (liblongmix)", zstd, out["seq_per_s"], cpu / n * 1e3, out["errors"]))
        # curl: the same URLs bench fetched (one client is rank 0 of world, steps 0, 1, 2, ...).
        urls = [f"{url}/v1/plans/p/batches/{k}?rank=0&world={world}" for k in range(int(n))]
        conf = os.path.join(work, "curl.conf")
        with open(conf, "w") as f:
            for u in urls:
                f.write(f'url = "{u}"\noutput = "/dev/null"\n')
        curl = ["curl", "-s", "-K", conf] + (["--compressed"] if zstd else [])
        _, wall, cpu = child_cpu(lambda: subprocess.run(curl, check=True))
        rows.append(("curl, one keep-alive connection", zstd, len(urls) / wall, cpu / len(urls) * 1e3, 0))
finally:
    daemon.send_signal(signal.SIGTERM)
    daemon.wait()

print(f"{'client':34} {'zstd':5} {'seq/s':>8} {'client CPU ms/seq':>18} errors")
for name, z, sps, cpu, err in rows:
    print(f"{name:34} {'yes' if z else 'no':5} {sps:8.1f} {cpu:18.3f} {err}")
for z in (True, False):
    ours = [r for r in rows if r[1] == z and r[0].startswith("longmix")][0]
    peer = [r for r in rows if r[1] == z and r[0].startswith("curl")][0]
    print(f"zstd={'yes' if z else 'no'}: longmix/curl seq/s ratio {ours[2] / peer[2]:.2f}, CPU ratio {ours[3] / peer[3]:.2f}")
