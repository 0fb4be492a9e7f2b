#!/usr/bin/env python3
"""Bounded load test of longmixd serve on loopback: N concurrent keep-alive clients for T seconds.

  load.py [--clients N] [--seconds T] [--max-rss-mb M] [--workdir DIR] [--url URL --pid PID]

Without --url it builds the integration test index, starts longmixd ($LONGMIXD) on an ephemeral
loopback port and stops it with SIGTERM at the end (it must exit 0). Each client loops over
batch requests (plain and zstd, several plans, ranks and world sizes) with a few /healthz,
/v1/plans and /metrics requests mixed in, and checks every batch's digest header. One more
client adds, uses and deletes a runtime plan in a loop and SIGHUPs the daemon every second
(--no-churn turns that off; it is off with --url). Reports
requests, errors, throughput, latency percentiles and the daemon's RSS (VmRSS sampled from
/proc/PID/status, VmHWM at the end). Exit 1 on any error or when the peak RSS is above --max-rss-mb."""
import argparse, hashlib, http.client, os, random, sys, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

PLANS = {"orig": {"strategy": "original", "seq_len": 4096, "global_batch": 8, "seed": 7},
         "ps": {"strategy": "per_source", "seq_len": 8192, "global_batch": 8, "seed": 3},
         "glob": {"strategy": "global", "seq_len": 16384, "global_batch": 4, "seed": 5}}


def rss_kb(pid, key="VmRSS"):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def client(host, port, deadline, seed, stats, lock):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection(host, port, timeout=60)
    n = err = nbytes = 0
    lat, errs = [], []
    while time.monotonic() < deadline:
        x = rng.random()
        if x < 0.02:
            path, batch = "/healthz", False
        elif x < 0.03:
            path, batch = "/v1/plans", False
        elif x < 0.035:
            path, batch = "/metrics", False
        else:
            plan = rng.choice(sorted(PLANS))
            gb = PLANS[plan]["global_batch"]
            world = rng.choice([w for w in (1, 2, 4, 8) if gb % w == 0])
            path, batch = f"/v1/plans/{plan}/batches/{rng.randrange(64)}?rank={rng.randrange(world)}&world={world}", True
        zstd = batch and rng.random() < 0.3
        t0 = time.monotonic()
        try:
            conn.request("GET", path, headers={"Accept-Encoding": "zstd"} if zstd else {})
            r = conn.getresponse()
            body = r.read()
            ok = r.status == 200
            if ok and batch and not zstd:
                ok = r.getheader("X-Longmix-Digest") == "blake2b-256=" + hashlib.blake2b(body, digest_size=32).hexdigest()
            if not ok:
                errs.append(f"{path}: {r.status}")
            nbytes += len(body)
        except Exception as e:  # connection errors count as errors; reconnect
            ok = False
            errs.append(f"{path}: {e!r}")
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=60)
        lat.append(time.monotonic() - t0)
        n += 1
        err += not ok
    conn.close()
    with lock:
        stats["requests"] += n
        stats["errors"] += err
        stats["bytes"] += nbytes
        stats["lat"] += lat
        stats["errs"] += errs[:5]


def churn(host, port, deadline, pid, stats, lock):
    """Admin traffic during the load: add a runtime plan, fetch from it, delete it; SIGHUP the
    daemon about once a second. Runtime plans and reloads must not disturb the readers."""
    import json, signal
    conn = http.client.HTTPConnection(host, port, timeout=60)
    spec = json.dumps({"name": "churn", "spec": {"strategy": "cut", "cut_len": 1024, "seq_len": 4096,
                                                 "global_batch": 2}}).encode()
    n = err = 0
    errs = []
    last_hup = time.monotonic()
    while time.monotonic() < deadline:
        for method, path, body, want in [("POST", "/v1/plans", spec, 201), ("GET", "/v1/plans/churn/batches/1", None, 200),
                                         ("DELETE", "/v1/plans/churn", None, 200)]:
            try:
                conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
                r = conn.getresponse()
                r.read()
                ok = r.status == want
                if not ok:
                    errs.append(f"{method} {path}: {r.status}")
            except Exception as e:
                ok = False
                errs.append(f"{method} {path}: {e!r}")
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
            n += 1
            err += not ok
        if pid and time.monotonic() - last_hup > 1:
            os.kill(pid, signal.SIGHUP)
            last_hup = time.monotonic()
        time.sleep(0.01)
    conn.close()
    with lock:
        stats["admin"] += n
        stats["errors"] += err
        stats["errs"] += errs[:5]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-rss-mb", type=float, default=2048)
    ap.add_argument("--workdir")
    ap.add_argument("--url", help="an already running daemon (http://127.0.0.1:PORT); needs --pid")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--no-churn", action="store_true",
                    help="no admin traffic (POST/DELETE of a runtime plan, SIGHUP each second)")
    a = ap.parse_args()

    daemon = wd = None
    if a.url:
        host, port = a.url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
        port, pid = int(port), a.pid
    else:
        from lmx_itest import Daemon, Workdir, make_index, write_config
        wd = Workdir()
        if a.workdir:
            os.rmdir(wd.path)
            os.makedirs(a.workdir, exist_ok=True)
            wd.path = a.workdir
        make_index(wd)
        cfg = write_config(wd, PLANS, threads=4, connection_limit=max(1024, 2 * a.clients), state_dir=wd("state"))
        daemon = Daemon(wd, cfg)
        host, port, pid = "127.0.0.1", daemon.port, daemon.proc.pid
    stats = {"requests": 0, "errors": 0, "bytes": 0, "lat": [], "errs": [], "admin": 0}
    lock = threading.Lock()
    rss0 = rss_kb(pid) if pid else 0
    t0 = time.monotonic()
    deadline = t0 + a.seconds
    ts = [threading.Thread(target=client, args=(host, port, deadline, i, stats, lock), daemon=True)
          for i in range(a.clients)]
    if not a.no_churn and not a.url:
        ts.append(threading.Thread(target=churn, args=(host, port, deadline, pid, stats, lock), daemon=True))
    for t in ts:
        t.start()
    peak = rss0
    samples = []
    while any(t.is_alive() for t in ts):
        time.sleep(0.5)
        r = rss_kb(pid) if pid else 0
        samples.append(r)
        peak = max(peak, r)
    for t in ts:
        t.join()
    dt = time.monotonic() - t0
    hwm = rss_kb(pid, "VmHWM") if pid else 0
    rss_end = rss_kb(pid) if pid else 0
    exit_ok = True
    if daemon:
        try:
            daemon.stop()
        except Exception as e:
            print(f"daemon stop: {e}")
            exit_ok = False
        if exit_ok:
            wd.cleanup() if not a.workdir else None
    lat = sorted(stats["lat"]) or [0]
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3
    print(f"clients {a.clients} seconds {dt:.1f} requests {stats['requests']} errors {stats['errors']} "
          f"rps {stats['requests'] / dt:.0f} MiB/s {stats['bytes'] / dt / 2**20:.1f} admin-requests {stats['admin']}")
    print(f"latency ms p50 {pct(0.5):.1f} p99 {pct(0.99):.1f} max {lat[-1] * 1e3:.1f}")
    print(f"daemon rss MiB start {rss0 / 1024:.1f} peak-sampled {peak / 1024:.1f} end {rss_end / 1024:.1f} "
          f"VmHWM {hwm / 1024:.1f}")
    for e in stats["errs"][:10]:
        print("error:", e)
    bad = stats["errors"] > 0 or max(peak, hwm) / 1024 > a.max_rss_mb or not exit_ok or stats["requests"] == 0
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
