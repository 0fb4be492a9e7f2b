#!/usr/bin/env python3
"""Soak: a long bounded load on one longmixd with its RSS and fd count sampled; both must be flat.

  soak.py [--minutes 30] [--clients 64] [--interval 5] [--hup 10] [--workdir DIR]
          [--max-rss-growth-mb 32] [--max-fd-growth 16]

Builds the integration test index, starts longmixd ($LONGMIXD) on an ephemeral loopback port
with tests/soak/load.py's plans, and runs tests/soak/load.py --url ... --pid ... (the load: N
keep-alive clients over plans, ranks, world sizes, plain and zstd, digests checked) for the whole
time. Meanwhile it SIGHUPs the daemon every --hup seconds (reload under load) and samples, every
--interval seconds, from /proc/PID: VmRSS, VmHWM, open fds, threads; it prints one table row a
sample. Pass/fail (exit 0/1):
  - load.py reports no error;
  - RSS minus the response cache (longmix_cache_bytes, bounded by cache_mb) at the end is at most
    --max-rss-growth-mb above the same after warm-up (the first 10%);
  - open fds at the end are at most --max-fd-growth above the warm-up maximum;
  - the daemon exits 0 on SIGTERM at the end.
The CI-sized run is integration.server.load_short (5 s); this is the manual 30-minute run:
    LONGMIXD=build/server/longmixd python3 tests/soak/soak.py --minutes 30 --clients 64"""
import argparse, os, signal, subprocess, sys, threading, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from lmx_itest import Daemon, Workdir, make_index, write_config  # noqa: E402
from load import PLANS  # noqa: E402  (the same plans load.py requests)


def cache_kib(url):
    """longmix_cache_bytes from /metrics, in KiB (the response cache fills up to cache_mb by
    design, so it is taken out of the RSS that must stay flat)."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("longmix_cache_bytes "):
                    return int(float(line.split()[1])) // 1024
    except OSError:
        pass
    return 0


def sample(pid, url):
    st = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                st[k] = int(v.split()[0])
        st["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    st["cache"] = cache_kib(url)
    st["base"] = st["VmRSS"] - st["cache"]
    return st


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--interval", type=float, default=5)
    ap.add_argument("--hup", type=float, default=10, help="SIGHUP period in seconds (0: none)")
    ap.add_argument("--workdir")
    ap.add_argument("--max-rss-growth-mb", type=float, default=32)
    ap.add_argument("--max-fd-growth", type=int, default=16)
    a = ap.parse_args()
    wd = Workdir()
    if a.workdir:
        os.rmdir(wd.path)
        os.makedirs(a.workdir, exist_ok=True)
        wd.path = os.path.abspath(a.workdir)
    if not os.path.exists(wd("index", "manifest.json")):
        make_index(wd)
    cfg = write_config(wd, PLANS, threads=4, connection_limit=max(1024, 2 * a.clients))
    d = Daemon(wd, cfg)
    pid = d.proc.pid
    seconds = a.minutes * 60
    load = subprocess.Popen([sys.executable, os.path.join(HERE, "load.py"), "--url", d.url, "--pid", str(pid),
                             "--clients", str(a.clients), "--seconds", str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    reader = threading.Thread(target=lambda: out.extend(load.stdout), daemon=True)
    reader.start()
    t0 = time.monotonic()
    rows, hups, last_hup = [], 0, t0
    print(f"{'t_s':>7} {'rss_MiB':>8} {'cache_MiB':>9} {'hwm_MiB':>8} {'fds':>5} {'threads':>7} {'hups':>5}",
          flush=True)
    while load.poll() is None:
        time.sleep(min(a.interval, 1.0) if a.hup else a.interval)
        now = time.monotonic()
        if a.hup and now - last_hup >= a.hup and now - t0 < seconds:
            os.kill(pid, signal.SIGHUP)
            hups += 1
            last_hup = now
        if not rows or now - t0 - rows[-1][0] >= a.interval:
            s = sample(pid, d.url)
            if s is None:
                break
            rows.append((now - t0, s))
            print(f"{now - t0:7.0f} {s['VmRSS'] / 1024:8.1f} {s['cache'] / 1024:9.1f} {s['VmHWM'] / 1024:8.1f} {s['fds']:5d} "
                  f"{s['Threads']:7d} {hups:5d}", flush=True)
    load.wait()
    reader.join(timeout=10)
    print("".join(out).rstrip())
    ok = load.returncode == 0
    try:
        d.stop()
    except Exception as e:
        print(f"daemon stop: {e}")
        ok = False
    if len(rows) >= 3:
        # warm-up: the first 10%; the end: the last sample taken while the load still ran
        warm = [s for t, s in rows if t >= 0.1 * seconds] or [rows[-1][1]]
        last = ([s for t, s in rows if t <= 0.97 * seconds] or [rows[-1][1]])[-1]
        rss_warm, rss_end = warm[0]["base"] / 1024, last["base"] / 1024
        early = [s for t, s in rows if t <= 0.1 * seconds] or [rows[0][1]]
        fd_warm, fd_end = max(s["fds"] for s in early), last["fds"]
        rss_ok = rss_end - rss_warm <= a.max_rss_growth_mb
        fd_ok = fd_end - fd_warm <= a.max_fd_growth
        print(f"RSS without the response cache after warm-up {rss_warm:.1f} MiB, at the end {rss_end:.1f} MiB "
              f"(growth {rss_end - rss_warm:+.1f}, limit {a.max_rss_growth_mb}): {'flat' if rss_ok else 'GROWING'}")
        print(f"fds after warm-up <= {fd_warm}, at the end {fd_end} (limit +{a.max_fd_growth}): "
              f"{'flat' if fd_ok else 'GROWING'}; {hups} SIGHUP reloads")
        ok = ok and rss_ok and fd_ok
    else:
        print("too few samples to judge (run longer or sample more often)")
    print("soak:", "PASS" if ok else "FAIL")
    if ok and not a.workdir:
        wd.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
