#!/usr/bin/env python3
"""Integration tests of longmixd serve as a service: runtime plans (POST/DELETE /v1/plans, state
directory), /metrics, the dashboard in headless Chromium, auth, listen policy, SIGHUP reload,
SIGTERM drain, sd_notify, size caps and a short load run.

  test_server.py [TEST...]      (ctest runs one test per process; exit 77 = skipped)"""
import http.client as httpc, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmx_itest import (LONGMIXD, Daemon, Skip, main, Failure, blake2b_256, check, http, make_index, run, write_config,
                       zstd_decompress)

HERE = os.path.dirname(os.path.abspath(__file__))
PLANS = {"orig": {"strategy": "original", "seq_len": 4096, "global_batch": 8, "seed": 7},
         "ps": {"strategy": "per_source", "seq_len": 2048, "global_batch": 4, "seed": 3}}
NEW_SPEC = {"strategy": "per_source", "seq_len": 1024, "global_batch": 4, "seed": 11, "short_keep": 0.5}


def jpost(url, obj, headers=None, raw=None):
    data = raw if raw is not None else json.dumps(obj).encode()
    return http(url, dict({"Content-Type": "application/json"}, **(headers or {})), method="POST", data=data)


def err_body(body):
    e = json.loads(body)
    check(isinstance(e.get("error"), str) and isinstance(e.get("detail"), str), f"error body {body!r}")
    return e


def wait_for(pred, what, timeout=15):
    deadline = time.monotonic() + timeout
    while not pred():
        check(time.monotonic() < deadline, f"timed out waiting for {what}")
        time.sleep(0.05)


def plans_of(d, headers=None):
    s, _, body = http(d.url + "/v1/plans", headers)
    check(s == 200, f"GET /v1/plans: {s}")
    return json.loads(body)["plans"]


# ---- runtime plans ----

def test_runtime_plans(wd):
    """POST adds a plan (persisted, restored on start), DELETE removes it; validation names the field."""
    make_index(wd)
    state = wd("state")
    cfg = write_config(wd, PLANS, state_dir=state)
    d = Daemon(wd, cfg)
    try:
        s, _, body = jpost(d.url + "/v1/plans", {"name": "extra", "spec": NEW_SPEC})
        check(s == 201, f"POST /v1/plans: {s} {body!r}")
        added = json.loads(body)
        check(added["name"] == "extra" and added["source"] == "runtime" and added["spec"]["seq_len"] == 1024,
              f"POST answer {added}")
        p = plans_of(d)
        check(set(p) == {"orig", "ps", "extra"}, f"plans after POST: {sorted(p)}")
        check(p["extra"]["plan_id"] == added["plan_id"] and p["orig"]["source"] == "config", "plan ids / sources")
        s, h, b1 = http(f"{d.url}/v1/plans/extra/batches/2?rank=1&world=2")
        check(s == 200 and h["x-longmix-digest"] == "blake2b-256=" + blake2b_256(b1), f"runtime plan batch: {s}")
        # The state file is complete JSON holding the posted spec, with no temp file left behind.
        st = json.load(open(os.path.join(state, "plans.json")))
        check(st["plans"] == {"extra": NEW_SPEC}, f"state file {st}")
        check(sorted(os.listdir(state)) == ["plans.json"], f"state dir {os.listdir(state)}")
        # One daemon per state directory.
        p = run([LONGMIXD, "serve", "--config", cfg, "--port-file", wd("pf2")], ok=False)
        check(b"another longmixd" in p.stderr and state.encode() in p.stderr, f"second daemon: {p.stderr!r}")
        # Idempotent re-POST; a different spec under a taken name; a config plan's name.
        s, _, _ = jpost(d.url + "/v1/plans", {"name": "extra", "spec": NEW_SPEC})
        check(s == 200, f"same plan again: {s}")
        s, _, body = jpost(d.url + "/v1/plans", {"name": "extra", "spec": dict(NEW_SPEC, seed=12)})
        check(s == 409 and err_body(body)["error"] == "plan_exists", f"different spec, same name: {s} {body!r}")
        s, _, body = jpost(d.url + "/v1/plans", {"name": "orig", "spec": NEW_SPEC})
        check(s == 409 and "config" in err_body(body)["detail"], f"config plan name: {s} {body!r}")
        # Validation: 400 with the field named.
        bad = [
            (None, b"{not json", "body"),
            (None, b"", "body"),
            (None, b"[1, 2]", "body"),
            ({"spec": NEW_SPEC}, None, "name"),
            ({"name": "../etc", "spec": NEW_SPEC}, None, "name"),
            ({"name": "x" * 65, "spec": NEW_SPEC}, None, "name"),
            ({"name": "ok", "spec": 3}, None, "spec"),
            ({"name": "ok", "spec": NEW_SPEC, "extra": 1}, None, "extra"),
            ({"name": "ok", "spec": dict(NEW_SPEC, seq_len=-1)}, None, "spec.seq_len"),
            ({"name": "ok", "spec": dict(NEW_SPEC, seq_len="big")}, None, "spec.seq_len"),
            ({"name": "ok", "spec": {"strategy": "nope"}}, None, "spec.strategy"),
            ({"name": "ok", "spec": {"strategy": "original", "colour": 1}}, None, "spec.colour"),
            ({"name": "ok", "spec": {"strategy": "per_source", "domain_weights": {"NoSuchDomain": 1}}}, None,
             "spec.domain_weights.NoSuchDomain"),
            ({"name": "ok", "spec": {"strategy": "per_source", "short_keep": 2}}, None, "spec.short_keep"),
        ]
        for obj, raw, field in bad:
            s, h, body = jpost(d.url + "/v1/plans", obj, raw=raw)
            check(s == 400 and h.get("content-type", "").startswith("application/json"),
                  f"POST {obj or raw!r}: {s}, want 400")
            e = err_body(body)
            check(e.get("field") == field and field in e["detail"], f"POST {obj or raw!r}: field {e}, want {field}")
        check("ok" not in plans_of(d), "a rejected plan was added")
        s, _, body = jpost(d.url + "/v1/plans", None, raw=b'{"name": "big", "spec": {"strategy": "original"}, "x": "'
                           + b"a" * 70000 + b'"}')
        check(s == 413, f"70 KB body: {s}")
        # DELETE: unknown 404, config plan 409, runtime plan 200.
        s, _, body = http(d.url + "/v1/plans/nope", method="DELETE")
        check(s == 404, f"DELETE unknown: {s}")
        s, _, body = http(d.url + "/v1/plans/orig", method="DELETE")
        check(s == 409 and err_body(body)["error"] == "config_plan", f"DELETE config plan: {s} {body!r}")
        # Restart: the runtime plan is back with the same id and the same bytes.
        d.stop()
        d = Daemon(wd, cfg)
        p = plans_of(d)
        check("extra" in p and p["extra"]["plan_id"] == added["plan_id"], f"after restart: {sorted(p)}")
        s, _, b2 = http(f"{d.url}/v1/plans/extra/batches/2?rank=1&world=2")
        check(s == 200 and b2 == b1, "restored plan serves different bytes")
        s, _, body = http(d.url + "/v1/plans/extra", method="DELETE")
        check(s == 200 and json.loads(body)["deleted"] == "extra", f"DELETE extra: {s} {body!r}")
        check(http(f"{d.url}/v1/plans/extra/batches/0")[0] == 404, "deleted plan still served")
        check(json.load(open(os.path.join(state, "plans.json")))["plans"] == {}, "state file after DELETE")
        d.stop()
        d = Daemon(wd, cfg)
        check(set(plans_of(d)) == {"orig", "ps"}, "deleted plan came back after restart")
        # Precedence: a runtime plan whose name the config later takes is dropped at reload.
        check(jpost(d.url + "/v1/plans", {"name": "later", "spec": NEW_SPEC})[0] == 201, "POST later")
        write_config(wd, dict(PLANS, later={"strategy": "original", "seq_len": 512, "global_batch": 2}),
                     os.path.basename(cfg), state_dir=state)
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: plans_of(d).get("later", {}).get("source") == "config", "the config plan to win")
        check(plans_of(d)["later"]["spec"]["seq_len"] == 512, "config plan spec")
        check(json.load(open(os.path.join(state, "plans.json")))["plans"] == {}, "shadowed plan kept in state")
        # A corrupt state file refuses the start with a reason naming it.
        d.stop()
        with open(os.path.join(state, "plans.json"), "w") as f:
            f.write("{broken")
        p = run([LONGMIXD, "serve", "--config", cfg, "--port-file", wd("pf")], ok=False)
        check(b"plans.json" in p.stderr, f"corrupt state: {p.stderr!r}")
    finally:
        d.stop()
    # Without state_dir runtime plans are refused (they would vanish at restart).
    d = Daemon(wd, write_config(wd, PLANS, "nostate.json"))
    try:
        s, _, body = jpost(d.url + "/v1/plans", {"name": "extra", "spec": NEW_SPEC})
        check(s == 409 and err_body(body)["error"] == "no_state_dir", f"no state_dir: {s} {body!r}")
    finally:
        d.stop()


# ---- metrics ----

def parse_metrics(text):
    """Returns ({(name, labels-tuple): value}, {family: type}); checks the exposition format."""
    samples, types, seen_fams = {}, {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, fam, typ = line.split(" ", 3)
            check(fam not in types, f"TYPE twice for {fam}")
            types[fam] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)', line)
        check(m, f"bad sample line {line!r}")
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        fam = re.sub(r"_(bucket|sum|count)$", "", name) if re.sub(r"_(bucket|sum|count)$", "", name) in types \
            else name
        check(fam in types, f"sample {name} without a TYPE line")
        lab = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels)))
        check((name, lab) not in samples, f"duplicate sample {name}{labels}")
        samples[(name, lab)] = value
    return samples, types


def settled_metrics(d, pred, timeout=10):
    """/metrics parsed, once pred(samples) holds (requests are counted at completion)."""
    deadline = time.monotonic() + timeout
    while True:
        m, types = parse_metrics(http(d.url + "/metrics")[2].decode())
        if pred(m) or time.monotonic() > deadline:
            return m, types
        time.sleep(0.05)


def check_histogram(samples, types, fam):
    check(types.get(fam) == "histogram", f"{fam} is not a histogram")
    buckets = sorted(((float("inf") if dict(l)["le"] == "+Inf" else float(dict(l)["le"])), v)
                     for (n, l), v in samples.items() if n == fam + "_bucket")
    check(len(buckets) >= 2 and buckets[-1][0] == float("inf"), f"{fam}: no +Inf bucket")
    for (_, a), (_, b) in zip(buckets, buckets[1:]):
        check(a <= b, f"{fam}: buckets not cumulative: {buckets}")
    count, total = samples[(fam + "_count", ())], samples[(fam + "_sum", ())]
    check(buckets[-1][1] == count, f"{fam}: +Inf bucket {buckets[-1][1]} != _count {count}")
    check(count > 0 and total > 0, f"{fam}: count {count} sum {total}")


def test_metrics(wd):
    """Per-plan highest step, lagging ranks, the latency histogram, errors by code, rank cap."""
    make_index(wd)
    plans = dict(PLANS, tiny={"strategy": "original", "seq_len": 16, "global_batch": 8192, "seed": 1})
    d = Daemon(wd, write_config(wd, plans))
    try:
        c = httpc.HTTPConnection("127.0.0.1", d.port, timeout=60)

        def get(path):
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            return r.status

        for step in range(6):
            for rank in range(3):
                check(get(f"/v1/plans/orig/batches/{step}?rank={rank}&world=4") == 200, "batch")
        for step in range(2):
            check(get(f"/v1/plans/orig/batches/{step}?rank=3&world=4") == 200, "batch")
        check(get("/v1/plans/orig/batches/1?rank=0&world=2") == 200, "batch")
        check(get("/v1/plans/nope/batches/0") == 404, "404")
        check(get("/v1/plans/orig/batches/x") == 400, "400")
        s, h, body = http(d.url + "/metrics")
        check(s == 200 and h["content-type"].startswith("text/plain; version=0.0.4"), f"/metrics {s} {h}")
        # A request is counted when its response is done, which can be just after the client has
        # read it: wait for the counters to settle.
        m, types = settled_metrics(d, lambda m: m.get(("longmix_errors_total", (("code", "400"),))) == 1)
        P = ("plan", "orig")
        check(m[("longmix_plan_max_step", (P,))] == 5, "max step")
        check(m[("longmix_plan_max_step", (("plan", "ps"),))] == -1, "max step of an unused plan")
        check(m[("longmix_plan_batches_total", (P,))] == 21, "batches")
        check(m[("longmix_plan_lagging_ranks", (P,))] == 1, "lagging ranks")
        check(m[("longmix_rank_steps_behind", (P, ("rank", "3"), ("world", "4")))] == 4, "steps behind")
        check(("longmix_rank_steps_behind", (P, ("rank", "0"), ("world", "4"))) not in m, "rank 0 lagging")
        check(m[("longmix_world_max_step", (P, ("world", "4")))] == 5, "world max step")
        check(m[("longmix_world_max_step", (P, ("world", "2")))] == 1, "world 2 max step")
        check(m[("longmix_world_ranks_seen", (P, ("world", "4")))] == 4, "ranks seen")
        check(m[("longmix_world_lagging_ranks", (P, ("world", "2")))] == 0, "world 2 lagging")
        check(m[("longmix_plan_tracked_ranks", (P,))] == 5, "tracked ranks")
        check(m[("longmix_errors_total", (("code", "404"),))] == 1, "errors by code 404")
        check(m[("longmix_errors_total", (("code", "400"),))] == 1, "errors by code 400")
        check(m[("longmix_responses_total", (("code", "200"),))] >= 21, "200s")
        check_histogram(m, types, "longmix_request_seconds")
        check(m[("longmix_request_seconds_count", ())] >= 23, "histogram count")
        # Lag clears once rank 3 catches up to within lag_steps.
        check(get("/v1/plans/orig/batches/3?rank=3&world=4") == 200, "batch")
        m, _ = parse_metrics(http(d.url + "/metrics")[2].decode())
        check(m[("longmix_plan_lagging_ranks", (P,))] == 0, "rank 3 still lagging after catching up")
        # Bounded memory: at most 4096 (world, rank) pairs per plan.
        errors = []

        def worker(lo, hi):
            cc = httpc.HTTPConnection("127.0.0.1", d.port, timeout=60)
            for r in range(lo, hi):
                cc.request("GET", f"/v1/plans/tiny/batches/0?rank={r}&world=8192")
                resp = cc.getresponse()
                resp.read()
                if resp.status != 200:
                    errors.append(resp.status)
            cc.close()

        ts = [threading.Thread(target=worker, args=(i * 1025, (i + 1) * 1025)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check(not errors, f"errors {errors[:5]}")
        m, types = parse_metrics(http(d.url + "/metrics")[2].decode())
        T = ("plan", "tiny")
        check(m[("longmix_plan_tracked_ranks", (T,))] == 4096, "tracked ranks not capped at 4096")
        check(m[("longmix_plan_untracked_batches_total", (T,))] == 4100 - 4096, "untracked batches")
        check(m[("longmix_plan_batches_total", (T,))] == 4100, "tiny batches")
        check_histogram(m, types, "longmix_request_seconds")
        # ETags: one per representation; If-None-Match answers 304.
        url = f"{d.url}/v1/plans/orig/batches/1?rank=1&world=2"
        s1, h1, _ = http(url)
        s2, h2, _ = http(url, {"Accept-Encoding": "zstd"})
        check(s1 == s2 == 200 and h1["etag"] != h2["etag"], f"ETags {h1.get('etag')} {h2.get('etag')}")
        check(http(url, {"If-None-Match": h1["etag"]})[0] == 304, "If-None-Match identity")
        check(http(url, {"If-None-Match": h2["etag"], "Accept-Encoding": "zstd"})[0] == 304, "If-None-Match zstd")
        check(http(url, {"If-None-Match": h2["etag"]})[0] == 200, "zstd ETag matched the identity body")
    finally:
        d.stop()


# ---- dashboard ----

def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def dump_dom(url):
    exe = chromium()
    if not exe:
        raise Skip("chromium is not installed (apt-get install -y chromium)")
    prof = tempfile.mkdtemp(prefix="lmx-chromium-")
    try:
        p = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                            "--disable-dev-shm-usage",  # small /dev/shm in containers; other tests use it
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            f"--user-data-dir={prof}", "--virtual-time-budget=10000", "--dump-dom", url],
                           capture_output=True, timeout=120)
    finally:
        shutil.rmtree(prof, ignore_errors=True)
    check(p.returncode == 0, f"chromium exited {p.returncode}: {p.stderr.decode(errors='replace')[-2000:]}")
    return p.stdout.decode()


def test_dashboard(wd):
    """GET / renders, in headless Chromium, one share chart and one bucket chart per plan."""
    if not chromium():
        raise Skip("chromium is not installed")
    index = make_index(wd)
    domains = sorted(json.loads(run([LONGMIXD, "stats", index, "--json"]).stdout)["domains"])
    d = Daemon(wd, write_config(wd, PLANS))
    try:
        s, h, body = http(d.url + "/")
        check(s == 200 and h["content-type"].startswith("text/html"), f"GET / {s}")
        check(b"http://" not in body.replace(b"http://www.w3.org/2000/svg", b"") and b"https://" not in body,
              "the page refers to another origin")
        dom = dump_dom(d.url + "/")
        check('data-rendered="1"' in dom, f"the page did not render: {dom[:2000]}")
        for plan in PLANS:
            for kind in ("shares", "buckets"):
                n = len(re.findall(rf'<svg[^>]*class="chart {kind}"[^>]*data-plan="{re.escape(plan)}"', dom))
                check(n == 1, f"{n} {kind} charts for plan {plan}, want 1")
            sec = re.search(rf'<svg[^>]*class="chart shares"[^>]*data-plan="{plan}".*?</svg>', dom, re.S).group(0)
            labels = sorted(re.findall(r'<text class="label"[^>]*>([^<]*)</text>', sec))
            check(labels == domains, f"{plan}: domain labels {labels}, want {domains}")
            bars = re.findall(r'<rect class="bar (target|realized)"', sec)
            check(bars.count("target") == len(domains) == bars.count("realized"), f"{plan}: bars {bars}")
            bsec = re.search(rf'<svg[^>]*class="chart buckets"[^>]*data-plan="{plan}".*?</svg>', dom, re.S).group(0)
            check("0-1K" in bsec and "128K+" in bsec, f"{plan}: bucket labels missing")
        check(len(re.findall(r'<svg[^>]*class="chart shares"', dom)) == len(PLANS), "one share chart per plan")
    finally:
        d.stop()


# ---- auth and listen policy ----

def keygen():
    return json.loads(run([LONGMIXD, "keygen", "--json"]).stdout)


def test_auth(wd):
    """401 without a valid token, 403 for a read token on admin routes, admin may add/delete plans."""
    make_index(wd)
    rd, ad = keygen(), keygen()
    check(rd["token"] != ad["token"] and rd["hash"].startswith("blake2b-256:"), "keygen output")
    cfg = write_config(wd, PLANS, state_dir=wd("state"), auth={"read": [rd["hash"]], "admin": [ad["hash"]]})
    d = Daemon(wd, cfg)
    R, A = {"Authorization": "Bearer " + rd["token"]}, {"Authorization": "Bearer " + ad["token"]}
    try:
        check(http(d.url + "/healthz")[0] == 200, "healthz needs no token")
        check(http(d.url + "/")[0] == 200, "the dashboard page needs no token (its data does)")
        for path in ["/v1/plans", "/v1/plans/orig/batches/0", "/v1/stats", "/metrics"]:
            for hdr in [None, {"Authorization": "Bearer wrong"}, {"Authorization": rd["token"]},
                        {"Authorization": "Basic " + rd["token"]}]:
                s, _, body = http(d.url + path, hdr)
                check(s == 401 and err_body(body)["error"] == "unauthorized", f"{path} {hdr}: {s}")
            check(http(d.url + path, R)[0] == 200, f"{path} with the read token")
            check(http(d.url + path, A)[0] == 200, f"{path} with the admin token")
        spec = {"name": "extra", "spec": NEW_SPEC}
        check(jpost(d.url + "/v1/plans", spec)[0] == 401, "POST without a token")
        s, _, body = jpost(d.url + "/v1/plans", spec, R)
        check(s == 403 and err_body(body)["error"] == "forbidden", f"POST with the read token: {s}")
        check("extra" not in plans_of(d, R), "a read token added a plan")
        check(jpost(d.url + "/v1/plans", spec, A)[0] == 201, "POST with the admin token")
        check(http(f"{d.url}/v1/plans/extra/batches/0", R)[0] == 200, "read token on the new plan")
        check(http(d.url + "/v1/plans/extra", R, method="DELETE")[0] == 403, "DELETE with the read token")
        check(http(d.url + "/v1/plans/extra", None, method="DELETE")[0] == 401, "DELETE without a token")
        check(http(d.url + "/v1/plans/extra", A, method="DELETE")[0] == 200, "DELETE with the admin token")
        # Token rotation by SIGHUP: the old read token stops working, the new one works; a
        # keep-alive connection opened before the reload stays usable.
        nr = keygen()
        c = httpc.HTTPConnection("127.0.0.1", d.port, timeout=60)
        c.request("GET", "/v1/plans", headers=R)
        r = c.getresponse()
        r.read()
        check(r.status == 200, "keep-alive before rotation")
        write_config(wd, PLANS, os.path.basename(cfg), state_dir=wd("state"),
                     auth={"read": [nr["hash"]], "admin": [ad["hash"]]})
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in d.log_text(), "the reload")
        c.request("GET", "/v1/plans", headers=R)
        r = c.getresponse()
        r.read()
        check(r.status == 401, f"old read token after rotation: {r.status}")
        c.request("GET", "/v1/plans", headers={"Authorization": "Bearer " + nr["token"]})
        r = c.getresponse()
        r.read()
        check(r.status == 200, f"new read token after rotation: {r.status}")
        c.close()
    finally:
        d.stop()
    # Auth off (loopback): no token needed for anything, admin routes included.
    d = Daemon(wd, write_config(wd, PLANS, "noauth.json", state_dir=wd("state2")))
    try:
        check(http(d.url + "/v1/plans/orig/batches/0")[0] == 200, "auth off: batch")
        check(jpost(d.url + "/v1/plans", {"name": "x", "spec": NEW_SPEC})[0] == 201, "auth off: POST")
    finally:
        d.stop()


def test_listen_policy(wd):
    """Without auth a non-loopback address is refused unless --insecure; with auth it is allowed."""
    make_index(wd)
    cfg = write_config(wd, PLANS, listen="0.0.0.0:0")
    p = run([LONGMIXD, "serve", "--config", cfg, "--port-file", wd("pf")], ok=False)
    msg = p.stderr.decode()
    check("0.0.0.0" in msg and "--insecure" in msg and len(msg.strip().splitlines()) == 1, f"refusal: {msg!r}")
    check(not os.path.exists(wd("pf")), "a refused daemon wrote its port")
    p = run([LONGMIXD, "serve", "--config", write_config(wd, PLANS, "c.json"), "--listen", "[::]:0",
             "--port-file", wd("pf")], ok=False)
    check(b"--insecure" in p.stderr, f"--listen [::]: {p.stderr!r}")
    d = Daemon(wd, cfg, ["--insecure"])
    try:
        check(http(d.url + "/healthz")[0] == 200, "--insecure")
    finally:
        d.stop()
    d = Daemon(wd, write_config(wd, PLANS, "auth.json", listen="0.0.0.0:0", auth={"read": [keygen()["hash"]]}))
    try:
        check(http(d.url + "/v1/plans")[0] == 401, "auth on 0.0.0.0")
        # A reload cannot drop auth on a non-loopback address either.
        write_config(wd, PLANS, "auth.json", listen="0.0.0.0:0")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in d.log_text(), "the reload")
        check("keeping the current tokens" in d.log_text(), "no log line for the refused auth removal")
        check(http(d.url + "/v1/plans")[0] == 401, "a reload turned auth off on 0.0.0.0")
    finally:
        d.stop()


# ---- signals, sd_notify ----

def test_reload_keepalive(wd):
    """SIGHUP adds a plan from the edited config; an open keep-alive connection and a client
    hammering the daemon during the reload see no error and no reconnect."""
    make_index(wd)
    cfg = write_config(wd, PLANS)
    d = Daemon(wd, cfg)
    try:
        c = httpc.HTTPConnection("127.0.0.1", d.port, timeout=60)
        c.request("GET", "/v1/plans/orig/batches/0")
        r = c.getresponse()
        body0 = r.read()
        check(r.status == 200, "first request")
        sock0 = c.sock
        port0 = sock0.getsockname()[1]
        stop, errors, count = threading.Event(), [], [0]

        def hammer():
            hc = httpc.HTTPConnection("127.0.0.1", d.port, timeout=60)
            hsock = None
            while not stop.is_set():
                try:
                    hc.request("GET", "/v1/plans/ps/batches/1?rank=1&world=2")
                    hr = hc.getresponse()
                    hr.read()
                    if hr.status != 200:
                        errors.append(hr.status)
                    if hsock is None:
                        hsock = hc.sock
                    elif hc.sock is not hsock:
                        errors.append("reconnected")
                    count[0] += 1
                except Exception as e:
                    errors.append(repr(e))
                    return
            hc.close()

        t = threading.Thread(target=hammer)
        t.start()
        time.sleep(0.3)
        write_config(wd, dict(PLANS, added={"strategy": "cut", "cut_len": 512, "seq_len": 2048, "global_batch": 2}),
                     os.path.basename(cfg))
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in d.log_text(), "the reload log line")
        time.sleep(0.3)
        stop.set()
        t.join()
        check(not errors and count[0] > 0, f"hammering client during reload: {count[0]} ok, errors {errors[:5]}")
        c.request("GET", "/v1/plans/added/batches/0")
        r = c.getresponse()
        r.read()
        check(r.status == 200, f"new plan after reload: {r.status}")
        check(c.sock is sock0 and c.sock.getsockname()[1] == port0, "the keep-alive connection was dropped")
        c.request("GET", "/v1/plans/orig/batches/0")
        r = c.getresponse()
        check(r.read() == body0, "an unchanged plan serves different bytes after reload")
        check(c.sock is sock0, "the keep-alive connection was dropped")
        # A broken config is refused at reload and the running plans stay.
        with open(cfg, "w") as f:
            f.write("{broken")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in d.log_text(), "the reload failure log line")
        check(set(plans_of(d)) == {"orig", "ps", "added"}, "plans changed after a failed reload")
        c.close()
    finally:
        d.stop()


def test_sigterm_drain(wd):
    """SIGTERM while a 16 MiB batch is being sent to a slow reader: the response completes, exit 0."""
    make_index(wd)
    big = {"big": {"strategy": "original", "seq_len": 131072, "global_batch": 32, "seed": 1}}
    d = Daemon(wd, write_config(wd, big))
    try:
        s = socket.create_connection(("127.0.0.1", d.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /v1/plans/big/batches/3 HTTP/1.1\r\nHost: x\r\n\r\n")
        first = s.recv(65536)
        check(first.startswith(b"HTTP/1.1 200"), f"response start {first[:40]!r}")
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        check(d.proc.poll() is None, "longmixd exited with a response still being sent")
        head, _, rest = first.partition(b"\r\n\r\n")
        hdrs = dict(l.split(": ", 1) for l in head.decode().split("\r\n")[1:])
        want = int(hdrs["Content-Length"])
        chunks = [rest]
        got = len(rest)
        while got < want:
            b = s.recv(1 << 20)
            check(b, f"connection closed after {got} of {want} bytes")
            chunks.append(b)
            got += len(b)
        body = b"".join(chunks)
        check(hdrs["X-Longmix-Digest"] == "blake2b-256=" + blake2b_256(body), "drained body digest")
        s.close()
        d.proc.wait(timeout=30)
        check(d.proc.returncode == 0, f"exit {d.proc.returncode}")
        check("draining" in d.log_text() and "stopped" in d.log_text(), "drain log lines")
    finally:
        d.stop()


def test_sd_notify(wd):
    """READY=1 at start, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM."""
    ldd = subprocess.run(["ldd", LONGMIXD], capture_output=True, text=True).stdout
    if "libsystemd" not in ldd:
        raise Skip("longmixd was built without libsystemd")
    make_index(wd)
    path = wd("notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(path)
    ns.settimeout(15)
    os.environ["NOTIFY_SOCKET"] = path
    try:
        d = Daemon(wd, write_config(wd, PLANS))
    finally:
        del os.environ["NOTIFY_SOCKET"]
    msgs = []

    def expect(state):
        while True:
            try:
                m = ns.recv(4096).decode()
            except socket.timeout:
                raise Failure(f"no {state} on NOTIFY_SOCKET; got {msgs}")
            msgs.append(m)
            if state in m.split("\n"):
                return

    try:
        expect("READY=1")
        d.proc.send_signal(signal.SIGHUP)
        expect("RELOADING=1")
        expect("READY=1")
    finally:
        d.stop()
    expect("STOPPING=1")
    ns.close()


# ---- size caps ----

def raw_request(port, data, read_all=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
            if not read_all and b"\r\n\r\n" in out:
                break
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return out


def status_of(resp):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
    check(m, f"no HTTP status in {resp[:80]!r}")
    return int(m.group(1))


def test_size_caps(wd):
    """Long URLs 414, huge headers 431, large bodies 413; the daemon keeps serving."""
    make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS, state_dir=wd("state")))
    try:
        s, h, body = http(d.url + "/v1/plans/" + "a" * 3000)
        check(s == 414 and err_body(body)["error"] == "uri_too_long", f"3000-byte path: {s}")
        r = raw_request(d.port, b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        check(status_of(r) == 414, f"100 KB request line: {r[:60]!r}")
        r = raw_request(d.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100000 + b"\r\n\r\n")
        check(status_of(r) == 431, f"100 KB header: {r[:60]!r}")
        hdrs = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(1000))
        r = raw_request(d.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + hdrs + b"\r\n")
        check(status_of(r) == 431, f"1000 headers: {r[:60]!r}")
        # Bodies: announced too large (refused before reading), chunked too large, and on a GET.
        r = raw_request(d.port, b"POST /v1/plans HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n{",
                        read_all=False)
        check(status_of(r) == 413, f"Content-Length 100 MB: {r[:60]!r}")
        chunk = b"a" * 8192
        r = raw_request(d.port, b"POST /v1/plans HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                        b"Connection: close\r\n\r\n" + (b"2000\r\n" + chunk + b"\r\n") * 10 + b"0\r\n\r\n")
        check(status_of(r) == 413, f"chunked 80 KB: {r[:60]!r}")
        r = raw_request(d.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 70000\r\n\r\n"
                        + b"x" * 70000)
        check(status_of(r) == 413, f"GET with a 70 KB body: {r[:60]!r}")
        check(http(d.url + "/v1/plans/orig/batches/0")[0] == 200, "daemon stopped serving")
        m, _ = settled_metrics(d, lambda m: m.get(("longmix_errors_total", (("code", "431"),))) == 2
                               and m.get(("longmix_errors_total", (("code", "413"),))) == 3)
        check(m[("longmix_errors_total", (("code", "431"),))] == 2, "431s not counted")
        check(m[("longmix_errors_total", (("code", "413"),))] == 3, "413s not counted")
    finally:
        d.stop()


def test_slow_clients(wd):
    """Clients that send half a request or nothing cannot pin the daemon: others are served, the
    connection timeout closes them, and SIGTERM does not wait for them."""
    make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS, connection_timeout=2))
    try:
        def half():
            s = socket.create_connection(("127.0.0.1", d.port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            return s

        stuck = [half() for _ in range(100)] + [socket.create_connection(("127.0.0.1", d.port)) for _ in range(20)]
        t0 = time.monotonic()
        for i in range(20):
            check(http(f"{d.url}/v1/plans/orig/batches/{i}")[0] == 200, "batch while slow clients hang")
        check(time.monotonic() - t0 < 5, f"20 batches took {time.monotonic() - t0:.1f} s next to slow clients")
        time.sleep(3.5)
        closed = 0
        for s in stuck:
            s.settimeout(3)
            try:
                while s.recv(4096):
                    pass
                closed += 1
            except ConnectionResetError:
                closed += 1
            except socket.timeout:
                pass
            s.close()
        check(closed == len(stuck), f"{len(stuck) - closed} stalled connections outlived connection_timeout")
        more = [half() for _ in range(20)]
        time.sleep(0.2)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)
        check(time.monotonic() - t0 < 1.5, f"SIGTERM waited {time.monotonic() - t0:.1f} s for clients still sending headers")
        check(d.proc.returncode == 0, f"exit {d.proc.returncode}")
        for s in more:
            s.close()
    finally:
        d.stop()


# ---- load ----

def test_load_short(wd):
    """tests/soak/load.py: 32 keep-alive clients for 5 s, 0 errors, bounded RSS."""
    load = os.path.join(HERE, "..", "soak", "load.py")
    p = run([sys.executable, load, "--clients", "32", "--seconds", "5", "--max-rss-mb", "1024", "--workdir",
             wd("load")], timeout=600)
    out = p.stdout.decode()
    print(out.strip())
    check("errors 0" in out, f"load run: {out}")


# ---- response cache ----

# One sequence per request; with the bytes tokenizer (u16 ids) a body is ~0.4 MiB.
CACHE_PLANS = dict(PLANS, big={"strategy": "per_source", "seq_len": 196608, "global_batch": 4, "seed": 5})


def cache_metrics(d, **want):
    """The longmix_cache_* samples as a dict (hits, misses, bytes, entries, ...), once the ones in
    want have those values (requests are counted at completion, just after the client has read)."""
    def get(m):
        return {k[0][len("longmix_cache_"):].replace("_total", ""): v for k, v in m.items()
                if k[0].startswith("longmix_cache_")}
    m, types = settled_metrics(d, lambda m: all(get(m).get(k) == v for k, v in want.items()))
    c = get(m)
    for fam, typ in [("hits_total", "counter"), ("misses_total", "counter"), ("bytes", "gauge"), ("entries", "gauge")]:
        check(types.get("longmix_cache_" + fam) == typ, f"longmix_cache_{fam} has type {types.get('longmix_cache_' + fam)}")
    for k, v in want.items():
        check(c.get(k) == v, f"cache metric {k} = {c.get(k)}, want {v} ({c})")
    return c


def test_cache_hits(wd):
    """A hit returns the miss's bytes, digest and ETag, as does a daemon with cache_mb 0; one miss,
    then hits; only binary batch/sequence bodies are cached."""
    make_index(wd)
    d = Daemon(wd, write_config(wd, CACHE_PLANS))
    nc = Daemon(wd, write_config(wd, CACHE_PLANS, "nocache.json", cache_mb=0))
    try:
        cache_metrics(d, hits=0, misses=0, entries=0, bytes=0)
        paths = ["/v1/plans/orig/batches/3?rank=1&world=2", "/v1/plans/big/batches/0?rank=2&world=4",
                 "/v1/plans/ps/sequences/5"]
        for i, path in enumerate(paths):
            for enc in ({}, {"Accept-Encoding": "zstd"}):
                got = [http(d.url + path, enc) for _ in range(3)] + [http(nc.url + path, enc)]
                for s, h, _ in got:
                    check(s == 200, f"{path} {enc}: {s}")
                s0, h0, b0 = got[0]
                plain = zstd_decompress(b0) if enc else b0
                check(h0["x-longmix-digest"] == "blake2b-256=" + blake2b_256(plain), f"{path} {enc}: digest")
                for s, h, b in got[1:]:
                    check(b == b0, f"{path} {enc}: a later answer has other bytes ({len(b)} vs {len(b0)})")
                    for k in ("x-longmix-digest", "etag", "x-longmix-plan-id", "content-type", "cache-control",
                              "content-length"):
                        check(h.get(k) == h0.get(k), f"{path} {enc}: {k} {h.get(k)!r} != {h0.get(k)!r}")
                    check(h.get("content-encoding") == h0.get("content-encoding"), f"{path} {enc}: encoding")
                # Per (path, encoding): one miss, then two hits.
                n = 2 * i + (2 if enc else 1)
                cache_metrics(d, misses=n, hits=2 * n, entries=n)
        c = cache_metrics(d, misses=6, hits=12, entries=6)
        check(0 < c["bytes"] <= 256 << 20 and c["budget_bytes"] == 256 << 20, f"cache bytes {c}")
        # Nothing but binary bodies: stats, plans, metrics, text and errors are not cached.
        for path in ["/v1/stats", "/v1/plans", "/v1/plans/orig", "/metrics", "/",
                     "/v1/plans/orig/sequences/1?format=text", "/v1/plans/orig/batches/0?rank=0&world=3"]:
            http(d.url + path)
        c = cache_metrics(d, entries=6)
        check(c["misses"] == 7, f"only the failed batch should count a miss: {c}")
        # An error is not cached: the same bad request misses again.
        check(http(d.url + "/v1/plans/orig/batches/0?rank=0&world=3")[0] == 400, "world 3 of 8")
        cache_metrics(d, misses=8, entries=6)
        # HEAD of a cached batch: same headers, no body, counted as a hit.
        s, h, b = http(d.url + paths[0], method="HEAD")
        check(s == 200 and b == b"" and h["etag"] == http(nc.url + paths[0])[1]["etag"], f"HEAD {s} {h}")
        cache_metrics(d, hits=13, misses=8)
        # Without a cache the counters stay at zero.
        cache_metrics(nc, hits=0, misses=0, entries=0, bytes=0, budget_bytes=0)
    finally:
        try:
            d.stop()
        finally:
            nc.stop()


def test_cache_variants(wd):
    """Identity and zstd bodies are distinct entries that decode to the same bytes; a plan changed
    under the same name (SIGHUP) never hits the old plan's entries."""
    make_index(wd)
    cfg = write_config(wd, CACHE_PLANS)
    d = Daemon(wd, cfg)
    try:
        url = d.url + "/v1/plans/big/batches/1?rank=0&world=4"
        s1, h1, plain = http(url)
        cache_metrics(d, misses=1, hits=0, entries=1)
        s2, h2, z = http(url, {"Accept-Encoding": "zstd"})
        c = cache_metrics(d, misses=2, hits=0, entries=2)
        check(s1 == s2 == 200 and h2.get("content-encoding") == "zstd" and "content-encoding" not in h1,
              f"encodings {h1.get('content-encoding')} {h2.get('content-encoding')}")
        check(zstd_decompress(z) == plain and len(z) < len(plain), "the zstd body does not decode to the plain one")
        check(h1["x-longmix-digest"] == h2["x-longmix-digest"] and h1["etag"] != h2["etag"], "digest/ETag per variant")
        check(c["bytes"] >= len(plain) + len(z), f"cache bytes {c['bytes']} < {len(plain)} + {len(z)}")
        # Hits keep the variants apart.
        for _ in range(2):
            check(http(url, {"Accept-Encoding": "gzip, zstd"})[2] == z, "zstd hit")
            check(http(url, {"Accept-Encoding": "gzip"})[2] == plain, "plain hit")
        cache_metrics(d, misses=2, hits=4, entries=2)
        # Sequence G vs batch (step G/4, rank G%4, world 4) hold different bytes and must not collide.
        check(http(d.url + "/v1/plans/big/sequences/4")[2] != plain, "sequence 4 vs batch 1 rank 0")
        cache_metrics(d, misses=3, hits=4, entries=3)
        # Change plan "big" under the same name: new plan id, new bytes, a miss.
        old_id = h1["x-longmix-plan-id"]
        write_config(wd, dict(CACHE_PLANS, big=dict(CACHE_PLANS["big"], seed=6)), os.path.basename(cfg))
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: plans_of(d)["big"]["plan_id"] != old_id, "the reload")
        s, h, b = http(url)
        check(s == 200 and h["x-longmix-plan-id"] != old_id and b != plain, "a changed plan served the old bytes")
        check(h["x-longmix-digest"] == "blake2b-256=" + blake2b_256(b), "digest after reload")
        cache_metrics(d, misses=4, hits=4, entries=4)
        # The same bytes as a fresh daemon started with the new config.
        fresh = Daemon(wd, cfg)
        try:
            check(http(fresh.url + "/v1/plans/big/batches/1?rank=0&world=4")[2] == b, "fresh daemon, other bytes")
        finally:
            fresh.stop()
        # An unchanged plan keeps its entries across the reload.
        http(d.url + "/v1/plans/orig/batches/0")
        cache_metrics(d, misses=5, hits=4)
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: d.log_text().count("reloaded") >= 2, "the second reload")
        http(d.url + "/v1/plans/orig/batches/0")
        cache_metrics(d, misses=5, hits=5)
    finally:
        d.stop()


def test_cache_eviction(wd):
    """cache_mb 1 with ~0.4 MiB bodies: the bytes gauge never passes the budget, old entries are
    evicted (a re-request misses), a body over the budget is served but not cached, and evictions
    under concurrent clients never corrupt a body being sent."""
    make_index(wd)
    plans = dict(CACHE_PLANS, huge={"strategy": "per_source", "seq_len": 131072, "global_batch": 4, "seed": 5})
    d = Daemon(wd, write_config(wd, plans, cache_mb=1))
    nc = Daemon(wd, write_config(wd, plans, "nocache.json", cache_mb=0))
    budget = 1 << 20
    try:
        url = lambda step, rank: f"/v1/plans/big/batches/{step}?rank={rank}&world=4"
        ref = {}
        for i in range(8):
            path = url(i // 4, i % 4)
            s, h, b = http(d.url + path)
            check(s == 200 and 300_000 < len(b) < 512 * 1024, f"{path}: {s}, {len(b)} bytes (want ~0.4 MiB)")
            ref[path] = b
            c = cache_metrics(d, misses=i + 1)
            check(c["bytes"] <= budget, f"cache bytes {c['bytes']} > budget {budget} after {i + 1} bodies")
            check(c["entries"] == min(i + 1, 2), f"entries {c['entries']} after {i + 1} bodies of ~0.4 MiB")
        c = cache_metrics(d, misses=8, hits=0, entries=2)
        check(c["evictions"] == 6, f"evictions {c}")
        # The two most recent are hits; the first one was evicted: a miss, then it is cached again.
        check(http(d.url + url(1, 3))[2] == ref[url(1, 3)], "hit bytes")
        cache_metrics(d, misses=8, hits=1)
        check(http(d.url + url(0, 0))[2] == ref[url(0, 0)], "evicted entry bytes")
        cache_metrics(d, misses=9, hits=1, entries=2)
        check(http(d.url + url(0, 0))[2] == ref[url(0, 0)], "re-cached entry bytes")
        cache_metrics(d, misses=9, hits=2, entries=2)
        # Larger than the whole budget (1 MiB): served, never cached, nothing evicted for it.
        huge = "/v1/plans/huge/batches/0"
        for k in range(2):
            s, h, b = http(d.url + huge)
            check(s == 200 and len(b) > budget and h["x-longmix-digest"] == "blake2b-256=" + blake2b_256(b),
                  f"huge body {s} {len(b)}")
            cache_metrics(d, misses=10 + k, entries=2)
        check(cache_metrics(d, evictions=7)["bytes"] <= budget, "budget")  # 6 + the re-cached one
        # Concurrent clients over more bodies than fit: every body equals the uncached daemon's.
        paths = [url(i // 4, i % 4) for i in range(12)]
        for p in paths:
            if p not in ref:
                ref[p] = http(nc.url + p)[2]
        errors, peak = [], [0]

        def worker(seed):
            cc = httpc.HTTPConnection("127.0.0.1", d.port, timeout=60)
            for j in range(40):
                p = paths[(seed * 7 + j * 5) % len(paths)]
                hdr = {"Accept-Encoding": "zstd"} if (seed + j) % 3 == 0 else {}
                cc.request("GET", p, headers=hdr)
                r = cc.getresponse()
                b = r.read()
                if r.getheader("Content-Encoding") == "zstd":
                    b = zstd_decompress(b)
                if r.status != 200 or b != ref[p]:
                    errors.append((p, r.status, len(b)))
            cc.close()

        def sampler(stop):
            while not stop.is_set():
                m, _ = parse_metrics(http(d.url + "/metrics")[2].decode())
                peak[0] = max(peak[0], m[("longmix_cache_bytes", ())])
                time.sleep(0.01)

        stop = threading.Event()
        smp = threading.Thread(target=sampler, args=(stop,))
        smp.start()
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        stop.set()
        smp.join()
        check(not errors, f"bodies differing from the uncached daemon's: {errors[:3]}")
        c = cache_metrics(d)
        check(0 < peak[0] <= budget and c["bytes"] <= budget, f"cache bytes peak {peak[0]} / now {c['bytes']} > {budget}")
        check(c["hits"] + c["misses"] == 2 + 11 + 240 and c["evictions"] > 7, f"counters after the run {c}")
    finally:
        try:
            d.stop()
        finally:
            nc.stop()
    # An entry evicted while its response is still being sent: 12 MiB bodies (more than the 4 MiB
    # socket send buffer) and a client with a tiny receive window stall the send of a cached body;
    # two other bodies evict it; then the rest must arrive intact (a freed buffer gives other
    # bytes, or an ASan abort of the daemon).
    d = Daemon(wd, write_config(wd, dict(PLANS, stall={"strategy": "per_source", "seq_len": 196608,
                                                       "global_batch": 32, "seed": 2}), "stall.json", cache_mb=32))
    try:
        s, _, body0 = http(d.url + "/v1/plans/stall/batches/0")
        check(s == 200 and len(body0) > 12 << 20, f"stall body {s} {len(body0)}")
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", d.port))
        slow.sendall(b"GET /v1/plans/stall/batches/0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = [slow.recv(1024)]
        check(got[0].startswith(b"HTTP/1.1 200"), f"slow client: {got[0][:40]!r}")
        cache_metrics(d, hits=1, misses=1, entries=1)
        for step in (1, 2):
            check(http(d.url + f"/v1/plans/stall/batches/{step}")[0] == 200, f"step {step}")
        c = cache_metrics(d, misses=3, entries=2)
        check(c["evictions"] == 1 and c["bytes"] <= 32 << 20, f"step 0 not evicted: {c}")
        m, _ = parse_metrics(http(d.url + "/metrics")[2].decode())
        check(m[("longmix_inflight_requests", ())] >= 2, "the slow response is no longer being sent (no stall)")
        while True:
            chunk = slow.recv(1 << 20)
            if not chunk:
                break
            got.append(chunk)
        slow.close()
        check(b"".join(got).split(b"\r\n\r\n", 1)[1] == body0, "an evicted entry's body changed while being sent")
        check(http(d.url + "/v1/plans/stall/batches/0")[2] == body0, "step 0 rebuilt")
        cache_metrics(d, hits=1, misses=4)
    finally:
        d.stop()


def test_cache_bad_config(wd):
    """cache_mb must be an integer in [0, 1048576]: anything else refuses the start naming the key."""
    make_index(wd)
    for i, bad in enumerate([-1, "64", 1.5, True, None, 2 ** 20 + 1, 2 ** 40, 2 ** 63 - 1]):
        cfg = write_config(wd, PLANS, f"bad{i}.json", cache_mb=bad)
        p = run([LONGMIXD, "serve", "--config", cfg, "--port-file", wd(f"pf{i}")], ok=False)
        msg = p.stderr.decode().strip()
        check("cache_mb" in msg and "integer" in msg and cfg in msg and len(msg.splitlines()) == 1,
              f"cache_mb {bad!r}: {msg!r}")
        check(not os.path.exists(wd(f"pf{i}")), f"cache_mb {bad!r}: started anyway")
    # Beyond 64 bits the JSON parser itself refuses the file (position given, not the key).
    cfg = wd("overflow.json")
    with open(cfg, "w") as f:
        f.write('{"listen": "127.0.0.1:0", "index": "%s", "plans": {"p": {"strategy": "original"}},\n'
                ' "cache_mb": 99999999999999999999999}' % wd("index"))
    p = run([LONGMIXD, "serve", "--config", cfg, "--port-file", wd("pfo")], ok=False)
    msg = p.stderr.decode().strip()
    check(cfg in msg and "too big" in msg and ":2:" in msg, f"overflowing cache_mb: {msg!r}")
    # The bounds themselves are accepted.
    for mb in (0, 1):
        d = Daemon(wd, write_config(wd, PLANS, f"ok{mb}.json", cache_mb=mb))
        try:
            check(cache_metrics(d)["budget_bytes"] == mb << 20, "budget gauge")
        finally:
            d.stop()


TESTS = {f.__name__[5:]: f for f in [test_runtime_plans, test_metrics, test_dashboard, test_auth,
                                      test_listen_policy, test_reload_keepalive, test_sigterm_drain, test_sd_notify,
                                      test_size_caps, test_slow_clients, test_load_short, test_cache_hits,
                                      test_cache_variants, test_cache_eviction, test_cache_bad_config]}



if __name__ == "__main__":
    sys.exit(main(TESTS))
