#!/usr/bin/env python3
"""Start-up at scale (issue #15). Verify once: shards verified by `serve` or `verify` are remembered in
INDEX/verified.json (or the state dir for a read-only index), keyed by size, inode, mtime and
ctime, so an unchanged index is not re-read at start; a changed shard is read again and refused;
`verify --changed`, `--threads`, `--scrub [--rate]`. Plan tables: each plan's items in a mapped
file (INDEX/plan-tables, or the state dir), built once, mapped at restart, rebuilt when damaged.

  test_verify.py [TEST...]      (ctest runs one test per process; exit 77 = skipped)"""
import json, os, re, signal, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from lmx_itest import LONGMIXD, Daemon, Failure, Skip, check, http, main, make_index, run, write_config

PLANS = {"o": {"strategy": "original", "seq_len": 1024, "global_batch": 2}}


def shards(idx):
    return sorted(os.path.join(idx, "shards", n) for n in os.listdir(os.path.join(idx, "shards")))


def log(d):
    return open(d.log_path, "rb").read().decode(errors="replace")


def start_line(d):
    """The daemon's verification log line: (read, remembered)."""
    m = re.search(r"(\d+) shard\(s\) verified: (\d+) read .*?, (\d+) remembered", log(d))
    check(m, f"no verification line in the log: {log(d)!r}")
    return int(m.group(2)), int(m.group(3))


def verify(idx, *extra, ok=True):
    p = run([LONGMIXD, "verify", idx, *extra], ok=ok)
    err = p.stderr.decode()
    m = re.search(r"(\d+) shard\(s\): (\d+) read .*?, (\d+) remembered, (\d+) bad", err)
    check(m, f"no summary line: {err!r}")
    return int(m.group(2)), int(m.group(3)), int(m.group(4)), err


def flip_keep_mtime(path, at):
    """Flips one byte and puts mtime back (what a careless `touch -r` would hide); ctime moves."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    check(os.stat(path).st_mtime_ns == st.st_mtime_ns and os.stat(path).st_size == st.st_size, "utime")


def serve_fails(wd, cfg, *needles):
    p = subprocess.run([LONGMIXD, "serve", "--config", cfg, "--port-file", wd("never")], capture_output=True,
                       timeout=60)
    err = p.stderr.decode() + p.stdout.decode()
    check(p.returncode != 0, "serve started on a changed shard")
    for n in needles:
        check(n in err, f"serve's error {err!r} does not name {n!r}")
    return err


def test_restart_remembers(wd):
    """First start reads every shard; the second reads none; a shard flipped with its mtime
    restored is read again and refused; verify --changed reads only that one."""
    idx = make_index(wd)
    cfg = write_config(wd, PLANS)
    n = len(shards(idx))
    d = Daemon(wd, cfg)
    d.stop()
    check(start_line(d) == (n, 0), f"first start: {start_line(d)}, want ({n}, 0)")
    check(os.path.exists(os.path.join(idx, "verified.json")), "no verified.json in the index")
    d = Daemon(wd, cfg)
    try:
        st, _, _ = http(d.url + "/v1/plans/o/batches/0")
        check(st == 200, f"batch {st}")
    finally:
        d.stop()
    check(start_line(d) == (0, n), f"restart: {start_line(d)}, want (0, {n})")
    bad = shards(idx)[1]
    flip_keep_mtime(bad, os.path.getsize(bad) // 2)
    serve_fails(wd, cfg, os.path.basename(bad), "failed verification")
    read, remembered, nbad, err = verify(idx, "--changed", ok=False)
    check((read, remembered, nbad) == (1, n - 1, 1), f"verify --changed: {read} read, {remembered}, {nbad} bad")
    check(f"BAD {bad}" in err, f"{err!r}")
    flip_keep_mtime(bad, os.path.getsize(bad) // 2)  # flipped back: the bytes hold again
    read, remembered, nbad, _ = verify(idx, "--changed")
    check((read, remembered, nbad) == (1, n - 1, 0), f"after the repair: {read} read, {remembered} remembered")
    read, remembered, nbad, _ = verify(idx)
    check((read, remembered) == (n, 0), "plain verify must read everything")
    # a deleted record only costs a re-read
    os.unlink(os.path.join(idx, "verified.json"))
    read, remembered, nbad, _ = verify(idx, "--changed", "--threads", "1")
    check((read, remembered) == (n, 0), f"without a record: {read} read")


def test_scrub_finds_silent_rot(wd):
    """Bytes that change with no metadata change (simulated: the record is rewritten to match the
    flipped file, as if the disk had rotted under an unchanged inode) pass a restart: that is the
    documented cost. `verify --scrub` reads everything, finds it, drops it from the record, and
    the next start refuses it."""
    idx = make_index(wd)
    cfg = write_config(wd, PLANS)
    verify(idx)
    bad = shards(idx)[0]
    flip_keep_mtime(bad, os.path.getsize(bad) - 9)
    rec_path = os.path.join(idx, "verified.json")
    rec = json.load(open(rec_path))
    st = os.stat(bad)
    rec["shards"][os.path.basename(bad)]["ctime_ns"] = st.st_ctime_ns
    json.dump(rec, open(rec_path, "w"))
    d = Daemon(wd, cfg)
    d.stop()
    check(start_line(d)[0] == 0, "the forged record was not trusted (test setup)")
    read, remembered, nbad, err = verify(idx, "--scrub", "--rate", "0", ok=False)
    check(nbad == 1 and f"BAD {bad}" in err, f"scrub: {err!r}")
    check(os.path.basename(bad) not in json.load(open(rec_path))["shards"], "scrub kept the bad shard's record")
    serve_fails(wd, cfg, os.path.basename(bad))
    # --rate bounds the read rate: ~3.8 MB at 8 MB/s takes about half a second
    flip_keep_mtime(bad, os.path.getsize(bad) - 9)
    total = sum(os.path.getsize(s) for s in shards(idx))
    t0 = time.monotonic()
    read, remembered, nbad, _ = verify(idx, "--scrub", "--rate", "8")
    dt = time.monotonic() - t0
    print(f"scrub of {total / 1e6:.1f} MB at --rate 8: {dt:.2f} s")
    check(nbad == 0 and read == len(shards(idx)), "scrub after the repair")
    # each chunk waits for the bytes before it: all but the last shard's bytes are paced
    paced = total - max(os.path.getsize(s) for s in shards(idx))
    check(dt >= 0.9 * paced / 8e6, f"--rate 8 read {total / 1e6:.1f} MB in {dt:.2f} s")
    p = run([LONGMIXD, "verify", idx, "--rate", "5"], ok=False)
    check(p.returncode == 2 and b"--scrub" in p.stderr, f"--rate without --scrub: {p.stderr!r}")


def mount(args, what):
    p = subprocess.run(["mount", *args], capture_output=True)
    if p.returncode != 0:
        raise Skip(f"cannot {what} (needs root and mount(2)): {p.stderr.decode().strip()}")


def test_readonly_index_state_dir(wd):
    """An index on a read-only mount: the record goes to the config's state_dir and the second
    start reads nothing; without a state_dir the log says the result is not remembered."""
    if os.geteuid() != 0:
        raise Skip("a read-only bind mount needs root")
    idx = make_index(wd)
    n = len(shards(idx))
    mount(["--bind", idx, idx], "bind-mount the index")
    try:
        mount(["-o", "remount,ro,bind", idx], "remount the index read-only")
        cfg = write_config(wd, PLANS)
        d = Daemon(wd, cfg)
        d.stop()
        check("not remembered" in log(d), f"no note about the record: {log(d)!r}")
        cfg = write_config(wd, PLANS, "c2.json", state_dir=wd("state"))
        d = Daemon(wd, cfg)
        d.stop()
        check(start_line(d) == (n, 0), f"first start {start_line(d)}")
        recs = [f for f in os.listdir(wd("state")) if f.startswith("verified-")]
        check(len(recs) == 1, f"state dir {os.listdir(wd('state'))}")
        tabs = os.listdir(wd("state", "plan-tables"))
        check(len([f for f in tabs if f.endswith(".items")]) == 1, f"state_dir/plan-tables: {tabs}")
        d = Daemon(wd, cfg)
        d.stop()
        check(start_line(d) == (0, n), f"restart from a read-only index: {start_line(d)}")
        read, remembered, _, _ = verify(idx, "--changed", "--state-dir", wd("state"))
        check((read, remembered) == (0, n), "verify --state-dir did not use the record")
    finally:
        subprocess.run(["umount", idx])


def batches(d, plans, steps=(0, 1, 5, 1000)):
    out = []
    for name in plans:
        for step in steps:
            st, h, body = http(f"{d.url}/v1/plans/{name}/batches/{step}")
            check(st == 200, f"{name} batch {step}: {st}")
            out.append(body)
    return out


def test_plan_tables(wd):
    """Plan item tables: built into INDEX/plan-tables at the first start, mapped (same files) at
    the next, rebuilt when one fails its checksum; the batches are the same bytes each time."""
    idx = make_index(wd)
    plans = {"o": PLANS["o"], "ps": {"strategy": "per_source", "seq_len": 2048, "global_batch": 4, "seed": 3},
             "cut": {"strategy": "cut", "cut_len": 100, "seq_len": 1024, "global_batch": 4}}
    cfg = write_config(wd, plans)
    tdir = os.path.join(idx, "plan-tables")
    d = Daemon(wd, cfg)
    try:
        want = batches(d, plans)
    finally:
        d.stop()
    tables = sorted(f for f in os.listdir(tdir) if f.endswith(".items"))
    check(len(tables) == 3 and len([f for f in os.listdir(tdir) if f.endswith(".items.ok")]) == 3,
          f"plan-tables: {os.listdir(tdir)}")
    inodes = [os.stat(os.path.join(tdir, f)).st_ino for f in tables]
    d = Daemon(wd, cfg)
    try:
        check(batches(d, plans) == want, "batches from mapped tables differ")
    finally:
        d.stop()
    check([os.stat(os.path.join(tdir, f)).st_ino for f in tables] == inodes, "the tables were rebuilt at restart")
    for f in tables:  # damage every table; without its .ok the checksum is read, fails, table rebuilt
        p = os.path.join(tdir, f)
        os.unlink(p + ".ok")
        with open(p, "r+b") as fh:
            fh.seek(-3, 2)
            b = fh.read(1)
            fh.seek(-3, 2)
            fh.write(bytes([b[0] ^ 0x10]))
    d = Daemon(wd, cfg)
    try:
        check(batches(d, plans) == want, "batches after rebuilding damaged tables differ")
    finally:
        d.stop()
    check(all(os.stat(os.path.join(tdir, f)).st_ino != i for f, i in zip(tables, inodes)), "damaged tables kept")


def daemon_env(wd, cfg, **env):
    """A Daemon started with extra environment variables (the test-only hold file)."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return Daemon(wd, cfg)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def verify_stats(d):
    st, _, body = http(d.url + "/v1/stats")
    check(st == 200, f"stats {st}")
    return json.loads(body)["verify"]


def metric(d, name):
    _, _, body = http(d.url + "/metrics")
    m = re.search(rb"^" + re.escape(name).encode() + rb" (\S+)$", body, re.M)
    check(m, f"/metrics has no {name}")
    return float(m.group(1))


def wait_verified(d, seconds=60):
    deadline = time.monotonic() + seconds
    while not verify_stats(d)["done"]:
        check(time.monotonic() < deadline, f"background verification not done in {seconds} s")
        time.sleep(0.05)
    return verify_stats(d)


def test_background_waits(wd):
    """verify: background: the daemon serves before its shards are verified (held back by the
    test-only LMX_TEST_VERIFY_HOLD file, so nothing depends on timing); a batch then waits
    verify_wait seconds and answers 503 index_verifying with Retry-After, naming a shard; once
    verification runs, a waiting batch is answered with the same bytes as in foreground mode."""
    idx = make_index(wd)
    plans = {"o": PLANS["o"]}
    cfg = write_config(wd, plans)
    d = Daemon(wd, cfg)  # foreground: the reference bytes (and the plan table)
    try:
        want = batches(d, plans)
        check(verify_stats(d) == {"mode": "foreground", "shards": len(shards(idx)), "verified": len(shards(idx)),
                                  "bad": 0, "done": True}, f"foreground stats: {verify_stats(d)}")
    finally:
        d.stop()
    os.unlink(os.path.join(idx, "verified.json"))  # every shard is new to the next start
    hold = wd("hold")
    open(hold, "w").close()
    bg = write_config(wd, plans, name="bg.json", verify="background", verify_wait=1)
    d = daemon_env(wd, bg, LMX_TEST_VERIFY_HOLD=hold)
    try:
        n = len(shards(idx))
        check(verify_stats(d) == {"mode": "background", "shards": n, "verified": 0, "bad": 0, "done": False},
              f"stats while held: {verify_stats(d)}")
        check(metric(d, "longmix_index_shards_verified") == 0 and metric(d, "longmix_index_shards") == n, "metrics")
        st, _, _ = http(d.url + "/healthz")
        check(st == 200, f"/healthz while verifying: {st}")
        t0 = time.monotonic()
        st, h, body = http(d.url + "/v1/plans/o/batches/0")
        waited = time.monotonic() - t0
        e = json.loads(body)
        check(st == 503 and e["error"] == "index_verifying" and h.get("retry-after") == "1",
              f"batch while verifying: {st} {h} {body!r}")
        check(".lmxs" in e["detail"] and "being verified" in e["detail"], f"detail names no shard: {e}")
        check(waited >= 0.9, f"answered after {waited:.2f} s: did not wait verify_wait (1 s)")
        st, _, body = http(d.url + "/v1/plans/o/sequences/0?format=text")
        check(st == 503 and json.loads(body)["error"] == "index_verifying", f"text view while verifying: {st}")
    finally:
        d.stop()
    check("background verification stopped" in log(d), f"stop during verification: {log(d)!r}")
    bg = write_config(wd, plans, name="bg2.json", verify="background", verify_wait=60)
    d = daemon_env(wd, bg, LMX_TEST_VERIFY_HOLD=hold)
    try:
        import threading
        got = {}
        t = threading.Thread(target=lambda: got.update(r=http(d.url + "/v1/plans/o/batches/0")))
        t.start()
        time.sleep(0.3)
        check(t.is_alive(), "the batch was answered while verification was held")
        os.unlink(hold)  # verification starts; the waiting batch gets its bytes
        t.join(60)
        check(got.get("r") and got["r"][0] == 200 and got["r"][2] == want[0], f"waiting batch: {got.get('r', '')!s:.200}")
        v = wait_verified(d)
        check(v["verified"] == n and v["bad"] == 0, f"after verification: {v}")
        check(metric(d, "longmix_index_verify_done") == 1, "metric done")
        check(batches(d, plans) == want, "background batches differ from foreground ones")
    finally:
        d.stop()
    check(re.search(r"%d shard\(s\) verified in the background: %d read" % (n, n), log(d)), f"log: {log(d)!r}")
    d = Daemon(wd, bg)  # the record was written: a restart reads nothing
    try:
        v = wait_verified(d)
        check(v["verified"] == n and v["bytes_read"] == 0, f"restart after background verification: {v}")
    finally:
        d.stop()


def test_background_bad_shard(wd):
    """A shard changed on disk (a byte flipped, mtime restored) is verified again in the
    background and found bad: requests that read it answer 503 index_damaged naming it, requests
    that do not are served the foreground bytes; /healthz stays 200; stats and metrics count it.
    In foreground mode the same index does not start at all."""
    idx = make_index(wd)
    plans = {"o": {"strategy": "original", "seq_len": 1024, "global_batch": 1}}
    cfg = write_config(wd, plans)
    man = json.load(open(os.path.join(idx, "manifest.json")))
    bad = [e for e in man["shards"] if e["input"].endswith("part1.jsonl")][0]
    bad_path = os.path.join(idx, "shards", bad["file"])
    touches, want = {}, {}
    d = Daemon(wd, cfg)
    try:
        for g in range(60):  # which sequences read the part1 shard (source of every span)
            st, _, body = http(f"{d.url}/v1/plans/o/sequences/{g}?format=text")
            check(st == 200, f"text {g}: {st}")
            touches[g] = any(sp["source"].startswith(bad["input"]) for sp in json.loads(body)["spans"])
            st, _, want[g] = http(f"{d.url}/v1/plans/o/sequences/{g}")
    finally:
        d.stop()
    hit = [g for g in touches if touches[g]]
    miss = [g for g in touches if not touches[g]]
    check(hit and miss, f"test setup: sequences reading {bad['input']}: {hit}")
    flip_keep_mtime(bad_path, 200)  # in the token section
    serve_fails(wd, cfg, bad["file"])
    bg = write_config(wd, plans, name="bg.json", verify="background", verify_wait=5)
    d = Daemon(wd, bg)
    try:
        v = wait_verified(d)
        check(v["bad"] == 1 and v["verified"] == len(man["shards"]) - 1 and v["first_bad"] == bad_path,
              f"stats: {v}")
        check(metric(d, "longmix_index_shards_bad") == 1, "metric bad")
        for g in hit[:3]:
            st, _, body = http(f"{d.url}/v1/plans/o/sequences/{g}")
            e = json.loads(body)
            check(st == 503 and e["error"] == "index_damaged" and bad["file"] in e["detail"],
                  f"sequence {g} reads the bad shard: {st} {body!r}")
        for g in miss[:10]:
            st, _, body = http(f"{d.url}/v1/plans/o/sequences/{g}")
            check(st == 200 and body == want[g], f"sequence {g} does not read the bad shard: {st}")
        st, _, _ = http(d.url + "/healthz")
        check(st == 200, f"/healthz: {st}")
    finally:
        d.stop()
    check(f"shard {bad_path} is bad" in log(d), f"log names no bad shard: {log(d)!r}")
    # Without a plan table the start builds one from every shard's records: it waits for them,
    # fails on the bad one, and keeps no table built from it.
    import shutil
    shutil.rmtree(os.path.join(idx, "plan-tables"))
    serve_fails(wd, bg, bad["file"], "failed verification")
    left = [f for f in os.listdir(os.path.join(idx, "plan-tables")) if ".items" in f]
    check(not left, f"a table built from the bad shard was kept: {left}")


def test_stale_plan_tables(wd):
    """Tables of plans no longer served are removed at start and reload once unused for
    plan_table_grace seconds (default 7 days: kept; mtime moved back: removed), but never while
    another daemon (same index, other config) has them mapped."""
    idx = make_index(wd)
    tdir = os.path.join(idx, "plan-tables")
    ps = {"strategy": "per_source", "seq_len": 2048, "global_batch": 4, "seed": 3}
    tables = lambda: sorted(f[:-6] for f in os.listdir(tdir) if f.endswith(".items"))
    d = Daemon(wd, write_config(wd, {"o": PLANS["o"], "ps": ps}))
    d.stop()
    both = tables()
    check(len(both) == 2, f"tables: {os.listdir(tdir)}")
    d = Daemon(wd, write_config(wd, {"o": PLANS["o"]}, name="o.json"))  # default grace: kept
    d.stop()
    check(tables() == both, f"a table unused for less than the grace period was removed: {tables()}")
    a = Daemon(wd, write_config(wd, {"ps": ps}, name="ps.json"))  # another daemon maps the ps table
    try:
        ocfg = write_config(wd, {"o": PLANS["o"]}, name="o0.json", plan_table_grace=0)
        b = Daemon(wd, ocfg)
        check(tables() == both, f"a table mapped by another daemon was removed: {tables()}")
    finally:
        a.stop()
    try:
        b.proc.send_signal(signal.SIGHUP)  # reload: the ps table is free now
        deadline = time.monotonic() + 30
        while len(tables()) != 1:
            check(time.monotonic() < deadline, f"reload did not remove the stale table: {tables()}")
            time.sleep(0.05)
        st, _, _ = http(b.url + "/v1/plans/o/batches/0")
        check(st == 200, f"batch after the clean-up: {st}")
    finally:
        b.stop()
    gone = [t for t in both if t not in tables()]
    check(len(gone) == 1 and not os.path.exists(os.path.join(tdir, gone[0] + ".items.ok")), f"left: {os.listdir(tdir)}")
    check("removed 1 plan table(s)" in log(b), f"log: {log(b)!r}")
    d = Daemon(wd, write_config(wd, {"o": PLANS["o"], "ps": ps}))  # rebuilt; then 8 days unused
    d.stop()
    old = time.time() - 8 * 86400
    for f in os.listdir(tdir):
        os.utime(os.path.join(tdir, f), (old, old))
    d = Daemon(wd, write_config(wd, {"o": PLANS["o"]}, name="o.json"))  # maps o: touches its .ok
    d.stop()
    check(len(tables()) == 1 and os.path.exists(os.path.join(tdir, tables()[0] + ".items.ok")),
          f"after 8 days unused: {os.listdir(tdir)}")




def wait_log(d, pred, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not pred(log(d)):
        check(time.monotonic() < deadline, f"timed out waiting for {what}: {log(d)[-600:]!r}")
        time.sleep(0.05)


def reload_stats(d):
    st, _, body = http(d.url + "/v1/stats")
    check(st == 200, f"stats {st}")
    return json.loads(body)["reload"]


def forget_shard(idx, file):
    """Drops one shard from verified.json: the next start reads it again (the others are vouched for)."""
    rec_path = os.path.join(idx, "verified.json")
    rec = json.load(open(rec_path))
    rec["shards"].pop(file)
    json.dump(rec, open(rec_path, "w"))


def test_background_reload(wd):
    """A SIGHUP adding a plan while a shard is still being verified (held back by the test-only
    LMX_TEST_VERIFY_HOLD file; the other shards are vouched for by the record): the new plan's
    table scan waits for that shard, on the reload's own thread. Meanwhile /healthz, /v1/stats and
    the running plan's sequences that do not read the held shard answer with the foreground bytes,
    the new plan is not listed, and a second SIGHUP is coalesced into one more reload. Once the
    shard is verified the new plan appears and serves; a config error on a later reload keeps the
    running plans. A SIGTERM during a reload that waits for verification stops the daemon (the old
    daemon waited on its main thread for the reload and never took the SIGTERM)."""
    idx = make_index(wd)
    plans = {"o": {"strategy": "original", "seq_len": 1024, "global_batch": 1}}
    new = {"strategy": "per_source", "seq_len": 2048, "global_batch": 2, "seed": 7}
    man = json.load(open(os.path.join(idx, "manifest.json")))
    held = [e for e in man["shards"] if e["input"].endswith("part1.jsonl")][0]
    touches, want = {}, {}
    d = Daemon(wd, write_config(wd, plans))  # foreground: reference bytes, o's table, the record
    try:
        for g in range(40):
            st, _, body = http(f"{d.url}/v1/plans/o/sequences/{g}?format=text")
            check(st == 200, f"text {g}: {st}")
            touches[g] = any(sp["source"].startswith(held["input"]) for sp in json.loads(body)["spans"])
            st, _, want[g] = http(f"{d.url}/v1/plans/o/sequences/{g}")
    finally:
        d.stop()
    miss = [g for g in touches if not touches[g]]
    check(miss and len(miss) < len(touches), f"test setup: sequences not reading {held['input']}: {miss}")
    forget_shard(idx, held["file"])
    hold = wd("hold")
    open(hold, "w").close()
    bg = write_config(wd, plans, name="bg.json", verify="background", verify_wait=1)
    d = daemon_env(wd, bg, LMX_TEST_VERIFY_HOLD=hold)
    try:
        n = len(man["shards"])
        v = verify_stats(d)
        check(v["verified"] == n - 1 and not v["done"], f"stats while held: {v}")
        write_config(wd, {**plans, "new": new}, name="bg.json", verify="background", verify_wait=1)
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, lambda t: "reload: reading" in t, "the reload to start")
        for _ in range(5):  # the reload is pending throughout: its build waits for the held shard
            check(http(d.url + "/healthz")[0] == 200, "/healthz during the reload")
            check(verify_stats(d)["verified"] == n - 1, "the held shard was verified (test setup)")
            check(reload_stats(d) == {"running": True, "queued": False, "ok": 0, "failed": 0},
                  f"/v1/stats reload during the reload: {reload_stats(d)}")
            check(metric(d, "longmix_reload_running") == 1, "metric longmix_reload_running")
            for g in miss[:4]:
                st, _, body = http(f"{d.url}/v1/plans/o/sequences/{g}")
                check(st == 200 and body == want[g], f"running plan, sequence {g}, during the reload: {st}")
            check(http(d.url + "/v1/plans/new")[0] == 404, "the new plan is listed before it is built")
            time.sleep(0.1)
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, lambda t: "SIGHUP during a reload" in t, "the second SIGHUP's log line")
        d.proc.send_signal(signal.SIGHUP)  # coalesced with the previous one
        check("reloaded" not in log(d), f"a reload ended while the shard was held: {log(d)!r}")
        check(reload_stats(d)["queued"], f"the second SIGHUP is not queued: {reload_stats(d)}")
        os.unlink(hold)  # the shard is verified; the build ends, then the coalesced reload runs
        wait_log(d, lambda t: t.count("reloaded ") >= 2, "the reload and the coalesced one")
        time.sleep(0.5)
        check(log(d).count("reloaded ") == 2 and log(d).count("SIGHUP during a reload") == 1,
              f"three SIGHUPs make two reloads: {log(d)!r}")
        check(reload_stats(d) == {"running": False, "queued": False, "ok": 2, "failed": 0},
              f"/v1/stats reload after the reloads: {reload_stats(d)}")
        check(http(d.url + "/v1/plans/new")[0] == 200, "the new plan after the reload")
        st, _, _ = http(d.url + "/v1/plans/new/batches/0")
        check(st == 200, f"new plan batch: {st}")
        with open(bg, "w") as f:  # a broken config: logged, the running plans stay
            f.write('{"listen": "127.0.0.1:0", "index": "%s", "plans": {"x": {"strategy": "nope"}}}' % idx)
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, lambda t: "reload failed" in t, "the failed reload")
        check(reload_stats(d)["failed"] == 1 and metric(d, 'longmix_reloads_total{result="failed"}') == 1,
              f"the failed reload is not counted: {reload_stats(d)}")
        check(http(d.url + "/v1/plans/new")[0] == 200 and http(f"{d.url}/v1/plans/o/sequences/{miss[0]}")[0] == 200,
              "a failed reload dropped the running plans")
    finally:
        if os.path.exists(hold):
            os.unlink(hold)
        d.stop()
    # SIGTERM while a reload waits for verification: the daemon stops (within Daemon.stop's 30 s).
    forget_shard(idx, held["file"])
    open(hold, "w").close()
    bg = write_config(wd, plans, name="bg2.json", verify="background", verify_wait=1)
    d = daemon_env(wd, bg, LMX_TEST_VERIFY_HOLD=hold)
    try:
        write_config(wd, {**plans, "other": {**new, "seed": 8}}, name="bg2.json", verify="background", verify_wait=1)
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, lambda t: "reload: reading" in t, "the reload to start")
        time.sleep(0.3)
        check("reloaded" not in log(d), "the reload ended while the shard was held (test setup)")
        d.stop()
    finally:
        if os.path.exists(hold):
            os.unlink(hold)
        if d.proc.poll() is None:
            d.proc.kill()
    check("reload abandoned: stopping" in log(d), f"stop during a reload: {log(d)[-600:]!r}")


def test_damaged_record(wd):
    """A document record pointing outside its shard (token start past the token section), served
    with --skip-verify so nothing hashes the shard first: the daemon starts (opening reads no
    record), sequences that read that document answer 503 index_damaged naming the shard and the
    document, the others the same bytes as before; `doc` and `verify` name it; a plan whose table
    must be built from the records fails naming it. (The old reader refused the whole index at
    open, so `serve --skip-verify` did not start.)"""
    idx = make_index(wd)
    plans = {"o": {"strategy": "original", "seq_len": 1024, "global_batch": 1}}
    cfg = write_config(wd, plans)
    seqs = {}
    d = Daemon(wd, cfg)
    try:
        for g in range(30):
            st, _, body = http(f"{d.url}/v1/plans/o/sequences/{g}?format=text")
            check(st == 200, f"text {g}: {st}")
            st, _, raw = http(f"{d.url}/v1/plans/o/sequences/{g}")
            seqs[g] = ({sp["doc"] for sp in json.loads(body)["spans"]}, raw)
    finally:
        d.stop()
    doc = sorted(seqs[0][0])[0]
    man = json.load(open(os.path.join(idx, "manifest.json")))
    base = 0
    for e in man["shards"]:
        if base + e["docs"] > doc:
            break
        base += e["docs"]
    path = os.path.join(idx, "shards", e["file"])
    with open(path, "r+b") as f:
        hdr = f.read(128)
        n_tokens = int.from_bytes(hdr[24:32], "little")
        docs_off = int.from_bytes(hdr[40:48], "little")
        f.seek(docs_off + 32 * (doc - base))
        f.write((n_tokens + 5).to_bytes(8, "little"))  # token_start past the token section
    want = f"document {doc} (record {doc - base} of the shard) is damaged"
    d = Daemon(wd, cfg, extra=("--skip-verify",))
    try:
        hit = [g for g in seqs if doc in seqs[g][0]]
        for g in hit[:3]:
            st, _, body = http(f"{d.url}/v1/plans/o/sequences/{g}")
            e = json.loads(body)
            check(st == 503 and e["error"] == "index_damaged" and path in e["detail"] and want in e["detail"],
                  f"sequence {g} reads the damaged record: {st} {body!r}")
        miss = [g for g in seqs if doc not in seqs[g][0]]
        check(miss, "test setup: every sequence reads the document")
        for g in miss[:5]:
            st, _, body = http(f"{d.url}/v1/plans/o/sequences/{g}")
            check(st == 200 and body == seqs[g][1], f"sequence {g} does not read it: {st}")
        check(http(d.url + "/healthz")[0] == 200, "/healthz")
    finally:
        d.stop()
    check(want in log(d), f"the damaged record is not logged: {log(d)[-500:]!r}")
    p = run([LONGMIXD, "doc", idx, str(doc)], ok=False)
    check(p.returncode != 0 and want in p.stderr.decode(), f"doc: {p.stderr!r}")
    p = run([LONGMIXD, "verify", idx], ok=False)
    check(p.returncode != 0 and want in p.stderr.decode(), f"verify: {p.stderr!r}")
    import shutil
    shutil.rmtree(os.path.join(idx, "plan-tables"))  # the table is built from every record
    p = subprocess.run([LONGMIXD, "serve", "--skip-verify", "--config", cfg, "--port-file", wd("never")],
                       capture_output=True, timeout=60)
    err = p.stderr.decode()
    check(p.returncode != 0 and want in err and "plan o" in err, f"serve without the table: {err!r}")
    left = [f for f in os.listdir(os.path.join(idx, "plan-tables")) if ".items" in f]
    check(not left, f"a table built over the damaged record was kept: {left}")


def test_epoch_files(wd):
    """Epoch index files beside the plan tables (a domain of >= 2^16 items): epoch 0's written when
    the table is built, the epochs a run uses after; a restart reads them (same bytes); a damaged
    one is detected, walked again and rewritten (same bytes); removed with their table."""
    corpus = os.path.join(os.path.dirname(HERE), "bench", "make-tiny-corpus.py")
    inputs = run([sys.executable, corpus, wd("tiny"), "70000", "1"]).stdout.decode().split()
    run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("index")] + inputs)
    plans = {"gl": {"strategy": "global", "seq_len": 1024, "global_batch": 4, "seed": 2, "long_threshold": 4}}
    cfg = write_config(wd, plans)
    tdir = os.path.join(wd("index"), "plan-tables")
    epochs = lambda: sorted(f for f in os.listdir(tdir) if ".epoch." in f)
    d = Daemon(wd, cfg)
    d.stop()
    check(len(epochs()) == 1 and epochs()[0].endswith(".epoch.0.0"), f"after the build: {os.listdir(tdir)}")
    steps = (0, 1, 300, 100000)
    d = Daemon(wd, cfg)
    try:
        want = batches(d, plans, steps)
    finally:
        d.stop()
    written = epochs()
    check(len(written) > 1, f"no epoch files for the epochs used: {written}")
    d = Daemon(wd, cfg)
    try:
        check(batches(d, plans, steps) == want, "batches with epoch files read back differ")
    finally:
        d.stop()
    import hashlib
    valid = lambda f: (lambda b: hashlib.blake2b(b[:-32], digest_size=32).digest() == b[-32:])(
        open(os.path.join(tdir, f), "rb").read())
    check(all(valid(f) for f in epochs()), "an epoch file fails its checksum")
    for f in epochs():
        flip_keep_mtime(os.path.join(tdir, f), 200)
    d = Daemon(wd, cfg)
    try:
        check(batches(d, plans, steps) == want, "batches with damaged epoch files differ")
    finally:
        d.stop()
    # the damaged ones this run needed were detected and written again (others wait for their use)
    check(any(valid(f) for f in epochs()), f"no damaged epoch file was rewritten: {epochs()}")
    gl = written[0][:32]
    d = Daemon(wd, write_config(wd, {"o": PLANS["o"]}, name="o.json", plan_table_grace=0))
    d.stop()
    check(not [f for f in os.listdir(tdir) if f.startswith(gl)], f"gl's files outlived its table: {os.listdir(tdir)}")


TESTS = {t.__name__[5:]: t for t in [test_restart_remembers, test_scrub_finds_silent_rot,
                                      test_readonly_index_state_dir, test_plan_tables, test_background_waits,
                                      test_background_bad_shard, test_stale_plan_tables, test_background_reload,
                                      test_damaged_record, test_epoch_files]}

if __name__ == "__main__":
    sys.exit(main(TESTS))
