#!/usr/bin/env python3
"""Hostile clients and careless operators (issue #16): each test attacks the real longmixd the way
the adversarial pass did and checks the daemon answers, survives and keeps serving others.

  test_hostile.py [TEST...]      (ctest runs one test per process; exit 77 = skipped)

Deadlines in the test configs are short (1-3 s) so that every test stays well under 60 s."""
import contextlib, json, os, re, signal, socket, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmx_itest import LONGMIXD, Daemon, Failure, Skip, check, http, main, make_index, run, write_config

PLANS = {"orig": {"strategy": "original", "seq_len": 4096, "global_batch": 8, "seed": 7},
         "ps": {"strategy": "per_source", "seq_len": 2048, "global_batch": 4, "seed": 3}}


def raw(port, data, timeout=10, read_all=True):
    """Sends data on a fresh connection; returns what came back until close (or the first full
    header block when read_all is False), b"" when nothing came within timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    try:
        s.sendall(data)
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
            if not read_all and b"\r\n\r\n" in out:
                break
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        pass
    s.close()
    return out


@contextlib.contextmanager
def serving(wd, config, extra=()):
    """A daemon for the with-block: stopped with SIGTERM (must exit 0) when the block passes,
    killed when it fails, so the failure reported is the block's own."""
    d = Daemon(wd, config, extra)
    try:
        yield d
    except BaseException:
        d.proc.kill()
        d.proc.wait()
        Daemon.running.remove(d)
        d.log.close()
        raise
    d.stop()


def status_of(resp):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
    check(m, f"no HTTP status in {resp[:120]!r}")
    return int(m.group(1))


def json_body(resp):
    body = resp.split(b"\r\n\r\n", 1)[1]
    try:
        e = json.loads(body)
    except ValueError:
        raise Failure(f"not a JSON body: {resp[:300]!r}")
    check(isinstance(e.get("error"), str) and isinstance(e.get("detail"), str), f"error body {body!r}")
    return e


def metrics(d):
    s, _, body = http(d.url + "/metrics")
    check(s == 200, f"/metrics: {s}")
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def wait_metric(d, key, pred, what, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        v = metrics(d).get(key)
        if v is not None and pred(v):
            return v
        check(time.monotonic() < deadline, f"{what}: {key} = {v}")
        time.sleep(0.05)


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sanitized(pid):
    """The daemon runs under AddressSanitizer (its runtime is mapped)."""
    try:
        return "libasan" in open(f"/proc/{pid}/maps").read()
    except OSError:
        return False


# ---- 1: too many query parameters ----

def test_many_params(wd):
    """1000 query parameters (with and without a token), or a 5 KB query: one 414 JSON answer each,
    within a second; the connection stays usable; no leak: the in-flight gauge goes back to idle."""
    make_index(wd)
    with serving(wd, write_config(wd, PLANS)) as d:
        many = "&".join(f"a{i}" for i in range(1000))
        for path in ("/healthz?" + many, "/v1/plans/orig/batches/0?" + many, "/metrics?x=" + "y" * 5000,
                     "/v1/plans/orig/batches/0?rank=0&world=1&" + "&".join(f"a{i}=b" for i in range(40))):
            for auth in (b"", b"Authorization: Bearer nope\r\n"):
                t0 = time.monotonic()
                r = raw(d.port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth
                        + b"\r\n", timeout=5)
                check(r, f"no answer at all to {path[:60]}... ({len(path)} bytes)")
                check(status_of(r) == 414 and json_body(r)["error"] == "query_too_long", f"{path[:60]}: {r[:200]!r}")
                check(time.monotonic() - t0 < 2, f"answer took {time.monotonic() - t0:.1f} s")
        # Many of them, connections closed by the client right after sending: nothing stays counted.
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", d.port))
            s.sendall(b"GET /healthz?" + many.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            s.close()
        # A legitimate request with parameters still works.
        check(http(d.url + "/v1/plans/orig/batches/1?rank=1&world=2")[0] == 200, "normal request after the flood")
        wait_metric(d, "longmix_inflight_requests", lambda v: v == 1, "in-flight gauge after the flood")
        m = metrics(d)
        n414 = m['longmix_responses_total{code="414"}']
        check(n414 >= 16, f"414s not counted: {n414}")


# ---- 5: percent-encoded paths ----

def test_path_decoding(wd):
    """%00 and %2F (and any other escape) in the path: 400 bad_path naming the path; nothing served."""
    make_index(wd)
    with serving(wd, write_config(wd, PLANS)) as d:
        for path in ("/v1/plans/ps%00/batches/0", "/v1/plans/ps%00", "/v1/plans/ps%2Fbatches%2F0",
                     "/v1/plans/ps%2fbatches%2f0?rank=0&world=1", "/%6detrics", "/v1/plans/p%73/batches/0"):
            r = raw(d.port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            check(status_of(r) == 400, f"{path}: {r[:200]!r}")
            e = json_body(r)
            check(e["error"] == "bad_path" and path.split("?")[0] in e["detail"], f"{path}: {e}")
        check(http(d.url + "/v1/plans/ps/batches/0")[0] == 200, "the plain path still works")


# ---- 4: HEAD and metrics poisoning ----

def test_metrics_poisoning(wd):
    """One HEAD (or GET) for step 3.5e13 does not make real ranks lag; HEAD is not a served batch
    and sends no bytes; the poisoned rank comes back with its next real request."""
    make_index(wd)
    with serving(wd, write_config(wd, PLANS)) as d:
        def fetch(step, rank, method="GET"):
            s, _, _ = http(f"{d.url}/v1/plans/ps/batches/{step}?rank={rank}&world=2", method=method)
            check(s == 200, f"{method} step {step} rank {rank}: {s}")
        for step in range(6):
            fetch(step, 0)
            fetch(step, 1)
        before = metrics(d)
        fetch(35184372088831, 0, "HEAD")
        fetch(3, 1, "HEAD")
        m = metrics(d)
        for k in ('longmix_plan_batches_total{plan="ps"}', 'longmix_plan_bytes_total{plan="ps"}',
                  "longmix_response_bytes_total"):
            check(m[k] == before[k], f"HEAD counted: {k} {before[k]} -> {m[k]}")
        check(m['longmix_plan_lagging_ranks{plan="ps"}'] == 0, "a HEAD made ranks lag")
        check(m['longmix_plan_max_step{plan="ps"}'] == 5, "plan_max_step poisoned by a HEAD")
        # The same outlier as a GET (any reader may send one): only until rank 0 asks again.
        fetch(35184372088831, 0)
        fetch(6, 0)
        fetch(6, 1)
        fetch(5, 1)  # a retry arriving late does not move a rank back
        m = metrics(d)
        check(m['longmix_plan_lagging_ranks{plan="ps"}'] == 0, f"lagging after an outlier GET: {m}")
        check(m['longmix_world_max_step{plan="ps",world="2"}'] == 6, "world_max_step poisoned")
        check(m['longmix_plan_max_step{plan="ps"}'] == 6, "plan_max_step poisoned")
        # A real lag is still seen: rank 1 stays while rank 0 moves on.
        for step in range(7, 12):
            fetch(step, 0)
        m = metrics(d)
        check(m['longmix_world_lagging_ranks{plan="ps",world="2"}'] == 1
              and m['longmix_rank_steps_behind{plan="ps",world="2",rank="1"}'] == 5, "a real lag is not seen")


# ---- 2: slowloris ----

class Trickler(threading.Thread):
    """One connection sending data one byte at a time, every `every` seconds, until the daemon
    closes it; records when it was closed."""

    def __init__(self, port, data, every=0.3, prefix=b""):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        if prefix:
            self.sock.sendall(prefix)
        self.data, self.every, self.closed_at, self.sent = data, every, None, 0
        self.start()

    def run(self):
        try:
            for i in range(len(self.data)):
                self.sock.sendall(self.data[i:i + 1])
                self.sent += 1
                time.sleep(self.every)
                self.sock.setblocking(False)
                try:
                    if self.sock.recv(65536) == b"":
                        break
                except BlockingIOError:
                    pass
                finally:
                    self.sock.setblocking(True)
        except OSError:
            pass
        self.closed_at = time.monotonic()


def test_slowloris(wd):
    """connection_limit 16: 12 clients trickling header bytes and 8 trickling a POST body (one
    byte every 0.3 s, never idle) are cut at header_timeout / body_timeout (2 s), so /healthz gets
    through; the cuts are counted by phase."""
    make_index(wd)
    with serving(wd, write_config(wd, PLANS, connection_limit=16, connection_timeout=3, header_timeout=2,
                                  body_timeout=2)) as d:
        t0 = time.monotonic()
        head = [Trickler(d.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000)
                for _ in range(12)]
        body = [Trickler(d.port, b"{" + b" " * 1000, prefix=b"POST /v1/plans HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 1001\r\n\r\n") for _ in range(8)]
        ok_at = None
        while time.monotonic() - t0 < 8:
            try:
                s, _, _ = http(d.url + "/healthz")
                if s == 200:
                    ok_at = time.monotonic() - t0
                    break
            except OSError:
                pass
            time.sleep(0.2)
        check(ok_at is not None, "/healthz never got through the trickling clients within 8 s")
        for t in head:
            t.join(timeout=6)
            check(t.closed_at is not None and t.closed_at - t0 < 5, f"a header trickler outlived header_timeout "
                  f"({t.sent} bytes sent)")
        for t in body:
            t.join(timeout=6)
            check(t.closed_at is not None and t.closed_at - t0 < 5, f"a body trickler outlived body_timeout "
                  f"({t.sent} bytes sent)")
        wait_metric(d, 'longmix_connections_cut_total{phase="headers"}', lambda v: v >= 12, "header cuts")
        wait_metric(d, 'longmix_connections_cut_total{phase="body"}', lambda v: v >= 4, "body cuts")


def test_per_address_limit(wd):
    """per_address_limit 4: a fifth connection from the same address is closed at once; when one
    of the four goes, that address may connect again."""
    make_index(wd)
    with serving(wd, write_config(wd, PLANS, per_address_limit=4)) as d:
        held = [socket.create_connection(("127.0.0.1", d.port)) for _ in range(4)]
        time.sleep(0.2)
        r = raw(d.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
        check(r == b"", f"a fifth connection was served: {r[:80]!r}")
        held.pop().close()
        time.sleep(0.2)
        r = raw(d.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
        check(status_of(r) == 200, f"after one closed: {r[:80]!r}")
        for h in held:
            h.close()


# ---- 3: slow readers ----

def slow_reader(port, step):
    """Asks for a distinct big batch and reads nothing (a small receive window), so the daemon's
    body stays queued; returns the socket and the first bytes of the answer if any came."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET /v1/plans/big/batches/{step} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


def test_slow_readers(wd):
    """inflight_mb 24 with 8 MiB bodies, cache off: 16 slow readers get at most 3 bodies in
    flight, the others 503 + Retry-After; small batches are still served; the daemon's RSS stays within the budget; send_timeout
    (3 s) cuts the slow readers, the budget is free again and a normal client is served."""
    make_index(wd)
    plans = dict(PLANS, big={"strategy": "original", "seq_len": 131072, "global_batch": 32, "seed": 1})
    with serving(wd, write_config(wd, plans, cache_mb=0, inflight_mb=24, send_timeout=3, threads=2)) as d:
        s, h, body = http(d.url + "/v1/plans/big/batches/100")
        check(s == 200, f"big batch: {s}")
        size = len(body)
        check(size > 6 << 20, f"test needs bodies over the socket buffers: {size} bytes")
        rss0 = rss_kb(d.proc.pid)
        socks = [slow_reader(d.port, i) for i in range(16)]
        time.sleep(1.5)
        heads = []
        for s_ in socks:
            s_.settimeout(0.5)
            try:
                heads.append(s_.recv(2048))
            except socket.timeout:
                heads.append(b"")
        busy = [h for h in heads if h.startswith(b"HTTP/1.1 503")]
        served = [h for h in heads if h.startswith(b"HTTP/1.1 200")]
        check(len(served) <= 3 and len(busy) >= 16 - 3 - 2, f"{len(served)} served, {len(busy)} busy of 16")
        check(all(b"Retry-After: 1" in h for h in busy), f"503 without Retry-After: {busy[:1]!r}")
        # Small bodies keep their 1/8 of the budget: served while the slow readers hold the rest.
        for step in range(5):
            check(http(f"{d.url}/v1/plans/orig/batches/{step}")[0] == 200, "small batch next to the slow readers")
        m = metrics(d)
        check(m["longmix_inflight_body_bytes"] <= 24 << 20, f"in flight {m['longmix_inflight_body_bytes']}")
        check(m["longmix_busy_total"] == len(busy), f"busy_total {m['longmix_busy_total']} vs {len(busy)}")
        grown = (rss_kb(d.proc.pid) - rss0) / 1024
        # (Under ASan freed bodies sit in its quarantine: RSS says nothing about the budget there.)
        check(grown < 24 + 16 or sanitized(d.proc.pid), f"RSS grew {grown:.0f} MiB with inflight_mb 24")
        # send_timeout: the slow readers are cut, the budget comes back.
        wait_metric(d, 'longmix_connections_cut_total{phase="send"}', lambda v: v >= len(served), "send cuts", 8)
        wait_metric(d, "longmix_inflight_body_bytes", lambda v: v == 0, "budget back", 8)
        for s_ in socks:
            s_.close()
        s, _, body = http(d.url + "/v1/plans/big/batches/3")
        check(s == 200 and len(body) == size, f"after the slow readers: {s}")


# ---- 7: a shard truncated while served ----

def test_truncated_shard(wd):
    """`truncate -s 4096` on the live shards (cache off): the daemon survives SIGBUS; the request
    fails 503 index_damaged naming the shard; later body requests and /healthz say the same (a
    load balancer drains the node) while /metrics still answers; SIGTERM exits 0."""
    import glob
    make_index(wd)
    with serving(wd, write_config(wd, PLANS, cache_mb=0)) as d:
        check(http(d.url + "/v1/plans/orig/batches/0")[0] == 200, "batch before")
        shards = sorted(glob.glob(wd("index", "shards", "*")))
        check(shards, "no shard files")
        for sh in shards:
            os.truncate(sh, 4096)
        statuses = []
        for step in (40, 41, 42):
            s, _, body = http(f"{d.url}/v1/plans/orig/batches/{step}")
            statuses.append(s)
            check(d.proc.poll() is None, f"longmixd died: exit {d.proc.returncode}")
            if s != 200:
                e = json.loads(body)
                check(s == 503 and e["error"] == "index_damaged" and "/shards/" in e["detail"], f"{s} {body!r}")
        check(503 in statuses, f"no request noticed the truncated shards: {statuses}")
        s, _, body = http(d.url + "/healthz")
        check(s == 503 and b"index_damaged" in body, f"/healthz after the damage: {s} {body!r}")
        s, _, body = http(d.url + "/v1/plans/ps/sequences/3?format=text")
        check(s == 503, f"text after the damage: {s}")
        check(http(d.url + "/metrics")[0] == 200, "/metrics after the damage")
        check("SIGBUS reading the index" in d.log_text(), "no log line")


# ---- 8: auth off on reload ----

def keygen():
    return json.loads(run([LONGMIXD, "keygen", "--json"]).stdout)


def reloads_done(d):
    """Reloads that ended (applied or failed): a reload runs on its own thread after SIGHUP."""
    t = d.log_text()
    return t.count("reloaded ") + t.count("reload failed")


def reload_and_wait(d, what, timeout=10):
    n = reloads_done(d)
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while reloads_done(d) == n:
        check(time.monotonic() < deadline, f"no reload log line after SIGHUP ({what})")
        time.sleep(0.05)
    time.sleep(0.1)


def test_auth_reload(wd):
    """A reload of a config that lost its "auth" keeps the tokens (logged); "auth": "none" turns
    auth off (logged); a group-readable config with token hashes is warned about."""
    make_index(wd)
    tok = keygen()
    auth = {"read": [tok["hash"]], "admin": [tok["hash"]]}
    cfg = write_config(wd, PLANS, auth=auth)
    os.chmod(cfg, 0o644)
    url = "/v1/plans/orig/batches/0"
    with serving(wd, cfg) as d:
        check("readable by group or others" in d.log_text(), "no warning about a 0644 config with token hashes")
        check(http(d.url + url)[0] == 401, "no token, auth on")
        write_config(wd, PLANS)  # "auth" removed
        reload_and_wait(d, "auth removed")
        check(http(d.url + url)[0] == 401, "removing \"auth\" and SIGHUP turned authentication off")
        check("keeping the current tokens" in d.log_text(), f"not logged: {d.log_text()[-400:]}")
        check(http(d.url + url, {"Authorization": "Bearer " + tok["token"]})[0] == 200, "token after reload")
        write_config(wd, PLANS, auth="none")
        reload_and_wait(d, "auth none")
        check(http(d.url + url)[0] == 200, "\"auth\": \"none\" did not turn authentication off")
        check("authentication turned OFF" in d.log_text(), "turning auth off not logged")
        write_config(wd, PLANS, auth=auth)
        reload_and_wait(d, "auth back")
        check(http(d.url + url)[0] == 401, "auth back on")
        check("authentication turned ON" in d.log_text(), "turning auth on not logged")


# ---- 9: the state directory lock ----

def test_state_dir_lock(wd):
    """A second daemon on the same state_dir is refused, also after the operator deleted every
    file in it (the lock is on the directory itself)."""
    make_index(wd)
    state = wd("state")
    cfg = write_config(wd, PLANS, state_dir=state)
    with serving(wd, cfg) as d:
        for f in os.listdir(state):
            os.unlink(os.path.join(state, f))
        p = run([LONGMIXD, "serve", "--config", cfg, "--port-file", wd("pf2")], ok=False, timeout=30)
        check(b"another longmixd" in p.stderr, f"second daemon: {p.stderr[-300:]!r}")
        check(http(d.url + "/healthz")[0] == 200, "first daemon")


# ---- 10: the config is a FIFO ----

def test_config_fifo(wd):
    """The config path replaced by a FIFO: SIGHUP fails at once with "not a regular file" (it used
    to wait for a writer), serving goes on, SIGTERM stops within 2 s. A FIFO at start: refused."""
    make_index(wd)
    cfg = write_config(wd, PLANS)
    with serving(wd, cfg) as d:
        good = cfg + ".good"
        os.rename(cfg, good)
        os.mkfifo(cfg)
        reload_and_wait(d, "fifo", timeout=5)
        check("not a regular file" in d.log_text(), f"reload of a FIFO: {d.log_text()[-300:]}")
        check(http(d.url + "/healthz")[0] == 200, "serving after the failed reload")
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)
        check(time.monotonic() - t0 < 2, f"SIGTERM took {time.monotonic() - t0:.1f} s after a FIFO reload")
    p = run([LONGMIXD, "serve", "--config", cfg, "--port-file", wd("pf3")], ok=False, timeout=10)
    check(b"not a regular file" in p.stderr, f"FIFO at start: {p.stderr[-300:]!r}")


# ---- 11: nginx and the daemon agree on /metrics ----

def test_nginx_metrics(wd):
    """deploy/nginx/longmix.conf in front of a daemon: /metrics, /metrics/, /%6detrics, //metrics,
    /metrics?x and /metricsx never reach the daemon's metrics; /healthz does. The daemon itself
    answers only the exact /metrics."""
    from test_deploy import Nginx, find_nginx, nginx_site
    nginx = find_nginx()
    make_index(wd)
    with serving(wd, write_config(wd, PLANS)) as d:
        for path in ("/metrics/", "/%6detrics", "//metrics", "/metrics/x"):
            r = raw(d.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            check(status_of(r) in (400, 404) and b"longmix_" not in r, f"daemon {path}: {r[:100]!r}")
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        ng = Nginx(wd, nginx, nginx_site(port, [d.port, d.port, d.port]))
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    check(time.monotonic() < deadline, "nginx did not start")
                    time.sleep(0.1)
            for path in ("/metrics", "/metrics/", "/%6detrics", "/%6Detrics/", "//metrics", "/metrics?x=1",
                         "/metricsx", "/./metrics", "/v1/../metrics"):
                r = raw(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                check(r and b"longmix_requests_total" not in r and status_of(r) in (400, 404),
                      f"through nginx {path}: {r[:160]!r}")
            r = raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            check(status_of(r) == 200, f"/healthz through nginx: {r[:100]!r}")
        finally:
            ng.stop()


# ---- 6: malformed Content-Length (a libmicrohttpd limitation) ----

def test_bad_content_length(wd):
    """Content-Length -1, +5, 0x10 and 2^64 on a POST: the first status line is 400 (413 for 2^64),
    the connection is closed, nothing stays in flight, the daemon keeps serving. libmicrohttpd
    0.9.75 parses Content-Length before any application callback and then writes its status line
    and headers twice (its state machine overwrites the error state); longmixd cannot reach the
    request in between (docs/RELIABILITY.md, "Known limitations"). While that holds this test is
    reported as skipped with the evidence; it passes once libmicrohttpd answers once."""
    make_index(wd)
    doubled = []
    with serving(wd, write_config(wd, PLANS)) as d:
        for cl, want in ((b"-1", 400), (b"+5", 400), (b"0x10", 400), (b"18446744073709551616", 413)):
            r = raw(d.port, b"POST /v1/plans HTTP/1.1\r\nHost: x\r\nContent-Length: " + cl + b"\r\n\r\n{}", timeout=5)
            check(r and status_of(r) == want, f"Content-Length {cl!r}: {r[:120]!r}")
            if r.count(b"HTTP/1.1 ") > 1:
                doubled.append(cl.decode())
        check(http(d.url + "/healthz")[0] == 200, "serving after malformed Content-Length")
        wait_metric(d, "longmix_inflight_requests", lambda v: v == 1, "in flight after malformed Content-Length")
    if doubled:
        raise Skip(f"libmicrohttpd sent its status line and headers twice for Content-Length {', '.join(doubled)} "
                   "(MHD 0.9.75 limitation, docs/RELIABILITY.md)")


# ---- the smaller list ----

def test_smaller(wd):
    """Access log lines name client, method, path and status; 404, 401 and 414 answers keep the
    keep-alive connection; a domain_weights over the limit names the limit; a SIGHUP that changes
    listen or index says it needs a restart."""
    make_index(wd)
    tok = keygen()
    cfg = write_config(wd, PLANS, access_log=True, state_dir=wd("state"),
                       auth={"read": [tok["hash"]], "admin": [tok["hash"]]})
    with serving(wd, cfg) as d:
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        f = s.makefile("rb")
        for req, want in ((b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404),
                          (b"GET /v1/plans HTTP/1.1\r\nHost: x\r\n\r\n", 401),
                          (b"GET /healthz?" + b"&".join(b"a%d" % i for i in range(100)) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
                          (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200)):
            s.sendall(req)
            status = f.readline()
            check(status.startswith(b"HTTP/1.1 %d" % want), f"{req[:30]!r} on the kept connection: {status!r}")
            n = 0
            while True:
                line = f.readline()
                check(line != b"" and b"close" not in line.lower(), f"connection closed after {want}: {line!r}")
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
                if line == b"\r\n":
                    break
            f.read(n)
        s.close()
        http(d.url + "/v1/plans/orig/batches/0", {"Authorization": "Bearer " + tok["token"]})
        deadline = time.monotonic() + 5
        while '"GET /v1/plans/orig/batches/0" 200' not in d.log_text():
            check(time.monotonic() < deadline, f"no access line: {d.log_text()[-500:]}")
            time.sleep(0.05)
        check(re.search(r'access 127\.0\.0\.1 "GET /v1/plans/orig/batches/0" 200 [0-9.]+ ms', d.log_text()),
              "access line format")
        check('access 127.0.0.1 "GET /nope" 404' in d.log_text(), "404 not logged")
        spec = {"strategy": "per_source", "seq_len": 1024, "global_batch": 4,
                "domain_weights": {f"d{i}": 1 for i in range(300)}}
        st, _, body = http(d.url + "/v1/plans", {"Authorization": "Bearer " + tok["token"],
                                                 "Content-Type": "application/json"},
                           method="POST", data=json.dumps({"name": "w", "spec": spec}).encode())
        check(st == 400 and b"at most 256" in body, f"domain_weights over the limit: {st} {body!r}")
        write_config(wd, PLANS, listen="127.0.0.1:1", access_log=True, state_dir=wd("state"),
                     auth={"read": [tok["hash"]]})
        reload_and_wait(d, "listen changed")
        check("\"listen\" changed" in d.log_text() and "needs a restart" in d.log_text(),
              f"listen change not reported: {d.log_text()[-400:]}")


TESTS = {name[5:]: fn for name, fn in dict(globals()).items() if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS))
