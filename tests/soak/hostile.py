#!/usr/bin/env python3
"""Mixed hostile load on longmixd serve (issue #16): real clients next to slowloris, slow readers
and bad requests, for T seconds.

  hostile.py [--seconds T] [--clients N] [--slowloris N] [--slow-readers N] [--bad N] [--workdir DIR]

Builds the integration test index, starts longmixd ($LONGMIXD) on an ephemeral loopback port with
short deadlines and small budgets (printed), and runs at the same time:

  real clients    N keep-alive clients fetching batches of three small plans (64-128 KiB bodies),
                  digests checked, retrying 5xx and connection errors like liblongmix (backoff
                  50 ms doubling to 2 s, at most 8 attempts); plus `longmix fetch` ($LONGMIX) of a
                  big-plan batch every few seconds. A request that fails after its retries, or a
                  wrong digest, is an ERROR.
  slowloris       sockets sending request headers (half of them: a POST body) one byte every
                  0.5 s, reconnecting when cut.
  slow readers    sockets asking for distinct 8 MiB batches of the big plan with a 4 KiB receive
                  window and reading nothing, reconnecting when cut or refused.
  bad requests    threads sending 1000-parameter queries, %00 and %2F paths, trailing slashes,
                  malformed Content-Length, 100 KB headers, HEADs for step 3.5e13, random bytes.

Samples the daemon's VmRSS every second. Passes (exit 0) when the real clients had 0 errors, the
peak RSS stays under the budgets (start + cache_mb + inflight_mb + connection_limit x 64 KiB of
MHD connection pools + --rss-slack-mb), the
daemon answered throughout and exits 0 on SIGTERM. Prints a summary table (docs/RELIABILITY.md
has the last result)."""
import argparse, hashlib, http.client, os, random, signal, socket, subprocess, sys, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

PLANS = {"orig": {"strategy": "original", "seq_len": 4096, "global_batch": 8, "seed": 7},
         "ps": {"strategy": "per_source", "seq_len": 8192, "global_batch": 8, "seed": 3},
         "glob": {"strategy": "global", "seq_len": 16384, "global_batch": 4, "seed": 5},
         "big": {"strategy": "original", "seq_len": 131072, "global_batch": 32, "seed": 1}}
CFG = {"connection_limit": 1024, "connection_timeout": 10, "header_timeout": 4, "body_timeout": 4,
       "send_timeout": 8, "inflight_mb": 64, "cache_mb": 64, "threads": 2}


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {}
        self.errs = []

    def add(self, k, n=1):
        with self.lock:
            self.c[k] = self.c.get(k, 0) + n

    def err(self, what):
        with self.lock:
            self.c["ERRORS"] = self.c.get("ERRORS", 0) + 1
            if len(self.errs) < 10:
                self.errs.append(what)


def real_client(port, deadline, seed, st):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.monotonic() < deadline:
        plan = rng.choice(["orig", "ps", "glob"])
        gb = PLANS[plan]["global_batch"]
        world = rng.choice([w for w in (1, 2, 4) if gb % w == 0])
        path = f"/v1/plans/{plan}/batches/{rng.randrange(200)}?rank={rng.randrange(world)}&world={world}"
        t0 = time.monotonic()
        for attempt in range(1, 9):
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                if r.status == 200:
                    if r.getheader("X-Longmix-Digest") != "blake2b-256=" + hashlib.blake2b(body, digest_size=32).hexdigest():
                        st.err(f"{path}: digest mismatch")
                    st.add("real ok")
                    st.add("real bytes", len(body))
                    break
                if r.status < 500:
                    st.err(f"{path}: {r.status} {body[:100]!r}")
                    break
                st.add(f"real retried {r.status}")
            except Exception as e:
                st.add("real retried conn")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            ms = min(2000, 50 << (attempt - 1))
            time.sleep((ms / 2 + rng.random() * ms / 2) / 1000)
        else:
            st.err(f"{path}: gave up after 8 attempts")
        with st.lock:
            st.c.setdefault("real lat", []).append(time.monotonic() - t0)
    conn.close()


def cli_client(url, deadline, st):
    """The real client binary: `longmix fetch` of a big-plan batch (8 MiB) every 3 s."""
    longmix = os.environ.get("LONGMIX")
    if not longmix:
        return
    step = 1000
    while time.monotonic() < deadline:
        step += 1
        p = subprocess.run([longmix, "fetch", "--url", url, "--plan", "big", "--step", str(step), "--out", os.devnull],
                           capture_output=True, timeout=120)
        if p.returncode == 0:
            st.add("longmix fetch ok")
        else:
            st.err(f"longmix fetch step {step}: {p.stderr[-200:]!r}")
        time.sleep(3)


def slowloris(port, deadline, seed, st):
    rng = random.Random(seed)
    body = seed % 2 == 1
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if body:
                s.sendall(b"POST /v1/plans HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n")
            else:
                s.sendall(b"GET /healthz HTTP/1.1\r\n")
            st.add("slowloris connections")
            while time.monotonic() < deadline:
                s.sendall(b"a" if body else b"X-%d: y\r\n"[:1])
                time.sleep(0.5)
                s.setblocking(False)
                try:
                    if s.recv(4096) == b"":
                        st.add("slowloris cut")
                        break
                except BlockingIOError:
                    pass
                s.setblocking(True)
        except OSError:
            st.add("slowloris cut")
        time.sleep(rng.random() * 0.2)


def slow_reader(port, deadline, seed, st):
    """Asks for a distinct 8 MiB batch, reads nothing for send_timeout + 2 s, then looks at what
    came (without reading it off: MSG_PEEK) and starts over with the next step."""
    step = seed * 100000
    while time.monotonic() < deadline:
        step += 1
        try:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(10)
            s.connect(("127.0.0.1", port))
            s.sendall(f"GET /v1/plans/big/batches/{step} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            t_end = min(deadline, time.monotonic() + CFG["send_timeout"] + 2)
            first = b""
            while time.monotonic() < t_end:
                time.sleep(0.5)
                if not first:
                    try:
                        first = s.recv(16, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        pass
                if first.startswith(b"HTTP/1.1 503"):
                    break
            st.add("slow readers " + ("busy (503)" if first.startswith(b"HTTP/1.1 503") else
                                      "held a body" if first.startswith(b"HTTP/1.1 200") else
                                      "no answer yet" if not first else "other"))
            s.close()
        except OSError:
            st.add("slow readers conn error")


BAD = [b"GET /healthz?" + b"&".join(b"a%d" % i for i in range(1000)) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
       b"GET /v1/plans/orig%00/batches/0 HTTP/1.1\r\nHost: x\r\n\r\n",
       b"GET /v1/plans/orig%2Fbatches%2F0 HTTP/1.1\r\nHost: x\r\n\r\n",
       b"GET /metrics/ HTTP/1.1\r\nHost: x\r\n\r\n",
       b"POST /v1/plans HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
       b"POST /v1/plans HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n",
       b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100000 + b"\r\n\r\n",
       b"HEAD /v1/plans/ps/batches/35184372088831?world=2 HTTP/1.1\r\nHost: x\r\n\r\n",
       b"GET /v1/plans/orig/batches/0?rank=5&world=2 HTTP/1.1\r\nHost: x\r\n\r\n"]


def bad_requests(port, deadline, seed, st):
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        data = rng.choice(BAD) if rng.random() < 0.9 else bytes(rng.randrange(256) for _ in range(200))
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(data)
            r = s.recv(200)
            st.add("bad answered" if r.startswith(b"HTTP/1.1 4") else "bad other")
            s.close()
        except OSError:
            st.add("bad conn error")
        time.sleep(0.01)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=150)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--slowloris", type=int, default=200)
    ap.add_argument("--slow-readers", type=int, default=64)
    ap.add_argument("--bad", type=int, default=4)
    ap.add_argument("--rss-slack-mb", type=float, default=32)
    ap.add_argument("--workdir")
    a = ap.parse_args()
    from lmx_itest import Daemon, Workdir, make_index, write_config
    wd = Workdir()
    if a.workdir:
        os.rmdir(wd.path)
        os.makedirs(a.workdir, exist_ok=True)
        wd.path = a.workdir
    make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS, **CFG))
    print(f"longmixd pid {d.proc.pid} port {d.port}; config {CFG}", flush=True)
    st = Stats()
    rss = [rss_kb(d.proc.pid)]
    base = rss[0]
    deadline = time.monotonic() + a.seconds
    threads = [threading.Thread(target=real_client, args=(d.port, deadline, i, st)) for i in range(a.clients)]
    threads += [threading.Thread(target=cli_client, args=(d.url, deadline, st))]
    threads += [threading.Thread(target=slowloris, args=(d.port, deadline, i, st)) for i in range(a.slowloris)]
    threads += [threading.Thread(target=slow_reader, args=(d.port, deadline, i, st)) for i in range(a.slow_readers)]
    threads += [threading.Thread(target=bad_requests, args=(d.port, deadline, i, st)) for i in range(a.bad)]
    for t in threads:
        t.daemon = True
        t.start()
    while time.monotonic() < deadline:
        time.sleep(1)
        rss.append(rss_kb(d.proc.pid))
        if d.proc.poll() is not None:
            break
    for t in threads:
        t.join(timeout=30)
    alive = d.proc.poll() is None
    metrics = {}
    if alive:
        import urllib.request
        for line in urllib.request.urlopen(d.url + "/metrics", timeout=10).read().decode().splitlines():
            if line.startswith(("longmix_connections_cut_total", "longmix_busy_total", "longmix_responses_total{code=\"4",
                                "longmix_responses_total{code=\"503", "longmix_inflight")):
                k, v = line.rsplit(" ", 1)
                metrics[k] = v
    t0 = time.monotonic()
    d.stop() if alive else None
    stop_s = time.monotonic() - t0
    lat = sorted(st.c.pop("real lat", [0]))
    peak = max(rss) / 1024
    # What the daemon may hold: its start, the response cache, bodies in flight, MHD's 64 KiB pool
    # per connection, and a slack for plan block caches and bodies being built (threads x 8 MiB).
    conn_mb = CFG["connection_limit"] * 64 / 1024
    budget = base / 1024 + CFG["cache_mb"] + CFG["inflight_mb"] + conn_mb + a.rss_slack_mb
    print(f"\n{a.seconds:.0f} s: {a.clients} real clients + longmix fetch, {a.slowloris} slowloris, "
          f"{a.slow_readers} slow readers, {a.bad} bad-request threads")
    print("| what | value |\n|---|---|")
    for k in sorted(st.c):
        print(f"| {k} | {st.c[k]} |")
    print(f"| real latency p50 / p99 / max | {lat[len(lat) // 2] * 1e3:.0f} / {lat[int(len(lat) * 0.99)] * 1e3:.0f} / "
          f"{lat[-1] * 1e3:.0f} ms |")
    for k in sorted(metrics):
        print(f"| {k} | {metrics[k]} |")
    print(f"| RSS start / peak / end | {base / 1024:.0f} / {peak:.0f} / {rss[-1] / 1024:.0f} MiB "
          f"(limit {budget:.0f}: start + cache_mb + inflight_mb + {conn_mb:.0f} for connection pools + "
          f"{a.rss_slack_mb:.0f}) |")
    print(f"| SIGTERM to exit | {stop_s:.1f} s |")
    for e in st.errs:
        print("error:", e)
    ok = alive and st.c.get("ERRORS", 0) == 0 and peak <= budget and st.c.get("real ok", 0) > 0
    print("PASS" if ok else "FAIL")
    if ok and not a.workdir:
        wd.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
