#!/usr/bin/env python3
"""Fault tests (issue #8): what a data node does when things break.

  test_faults.py [TEST...]      (ctest runs one test per process; exit 77 = skipped)

  kill9_restart     clients (`longmix fetch` with both replica URLs, and a single-URL client that
                    re-runs a failed fetch like a trainer's retry loop) run while each daemon in
                    turn is killed with SIGKILL and restarted on the same port: every client
                    finishes, every batch is byte-identical to an undisturbed run.
  corrupt_shard     a truncated shard, an emptied shard, a missing shard and a truncated manifest:
                    `longmixd serve` refuses to start (also with --skip-verify for the sizes),
                    names the file, binds no port; `verify` names the file too.
  readonly_index    the index folder on a read-only mount (bind mount, remount ro): re-indexing
                    with a new input fails with a one-line error naming the path, the published
                    index stays byte-identical and verifies; `serve` runs from the read-only index
                    (what the systemd unit's ProtectSystem=strict gives it).
  disk_full         the index folder on a 2 MB tmpfs: a first run too big for it fails with a
                    one-line "No space left" error and leaves nothing (no manifest, no temp file,
                    no shard); a run that fits publishes; a later run that overflows leaves that
                    index byte-identical and verifying, without temp files.
  clock_jump        the daemon and a client run under libfaketime (Debian package faketime) with
                    the wall clock stepped back 5 years, forward 20 years and past 2038 mid-run,
                    as an NTP step would (CLOCK_MONOTONIC untouched): same bytes, idle keep-alive
                    connections survive, uptime stays small. Skip 77 without libfaketime.
The mount tests need root and mount(2) (skip 77 otherwise, with the reason)."""
import glob, json, os, random, shutil, signal, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmx_itest import (LONGMIX, LONGMIXD, Daemon, Failure, Skip, blake2b_256, check, http, main, make_corpus,
                       make_index, run, write_config)

PLANS = {"ps": {"strategy": "per_source", "seq_len": 16384, "global_batch": 8, "seed": 3},
         "cut": {"strategy": "cut", "cut_len": 1024, "seq_len": 8192, "global_batch": 4, "seed": 1}}



def one_line(p):
    msg = p.stderr.decode(errors="replace").strip()
    check(p.returncode != 0, "succeeded but should have failed")
    lines = [l for l in msg.splitlines() if l.strip()]
    check(lines, "failed without a message on stderr")
    return msg


# ---- kill -9 and restart on the same port ----

def test_kill9_restart(wd):
    make_index(wd)
    cfg = write_config(wd, PLANS)
    world = 2
    jobs = [(p, s, r) for p in PLANS for s in range(30) for r in range(world)]
    ref = {}
    d = Daemon(wd, cfg)
    try:
        for p, s, r in jobs:
            st, h, body = http(f"{d.url}/v1/plans/{p}/batches/{s}?rank={r}&world={world}")
            check(st == 200 and h.get("x-longmix-digest") == "blake2b-256=" + blake2b_256(body), f"ref {p}/{s}/{r}")
            ref[p, s, r] = body
    finally:
        d.stop()
    a, b = Daemon(wd, cfg), Daemon(wd, cfg)
    ports = [a.port, b.port]
    both = f"{a.url},{b.url}"
    outs = wd("out")
    os.makedirs(outs)
    done = [0]
    errors, retried = [], [0]
    lock = threading.Lock()
    stop = threading.Event()  # set when the test fails: the clients stop instead of retrying for minutes

    def client(i, urls, retry):
        rng = random.Random(i)
        mine = jobs[:]
        rng.shuffle(mine)
        for p, s, r in mine:
            if stop.is_set():
                return
            out = os.path.join(outs, f"c{i}-{p}-{s}-{r}")
            args = [LONGMIX, "fetch", "--url", urls, "--plan", p, "--step", str(s), "--rank", str(r), "--world",
                    str(world), "--out", out] + (["--no-zstd"] if i % 2 else [])
            deadline = time.monotonic() + 60
            while True:
                pr = subprocess.run(args, capture_output=True, timeout=120)
                if pr.returncode == 0 or not retry or time.monotonic() > deadline or stop.is_set():
                    break
                with lock:
                    retried[0] += 1
                time.sleep(0.2)  # a trainer's retry loop around its data loader
            with lock:
                done[0] += 1
                if pr.returncode != 0:
                    errors.append(f"client {i} ({urls}) {p}/{s}/{r}: exit {pr.returncode}: {pr.stderr.decode()[:300]}")
                elif open(out, "rb").read() != ref[p, s, r]:
                    errors.append(f"client {i} {p}/{s}/{r}: bytes differ from the undisturbed run")

    # Clients 0-3 list both replicas (liblongmix fails over); clients 4-5 know only the first
    # and retry a failed fetch themselves.
    ts = [threading.Thread(target=client, args=(i, both, False)) for i in range(4)]
    ts += [threading.Thread(target=client, args=(i, a.url, True)) for i in range(4, 6)]
    total = len(ts) * len(jobs)
    restarts = []
    daemons = [a, b]
    try:
        try:
            t0 = time.monotonic()
            for t in ts:
                t.start()
            for k, frac in [(0, 0.2), (1, 0.45), (0, 0.7)]:
                while done[0] < total * frac and any(t.is_alive() for t in ts):
                    time.sleep(0.005)
                if not any(t.is_alive() for t in ts):
                    break
                victim = daemons[k]
                at = done[0]
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait()
                victim.log.close()
                tk = time.monotonic()
                # Same config, same port: what systemd's Restart=on-failure does.
                daemons[k] = Daemon(wd, cfg, extra=["--listen", f"127.0.0.1:{ports[k]}"])
                check(daemons[k].port == ports[k], f"restarted on {daemons[k].port}, not {ports[k]}")
                restarts.append(f"{'ab'[k]} killed after {at} fetches, serving again in {time.monotonic() - tk:.2f} s")
            for t in ts:
                t.join()
            dt = time.monotonic() - t0
        except BaseException:
            stop.set()
            raise
        finally:
            for t in ts:
                if t.ident is not None:
                    t.join(timeout=300)
        check(len(restarts) == 3, f"the run finished before all kills ({restarts})")
        check(not errors, f"{len(errors)} failed fetches, first: {errors[:3]}")
        print(f"{total} fetches by {len(ts)} clients in {dt:.1f} s; " + "; ".join(restarts) +
              f"; single-URL clients re-ran {retried[0]} fetches; all bytes identical")
    finally:
        for d in daemons:
            if d.proc.poll() is None:
                d.stop()


# ---- corrupt or truncated index files ----

def serve_refuses(wd, cfg, needle, extra=()):
    pf = wd(f"port.{time.monotonic_ns()}")
    p = run([LONGMIXD, "serve", "--config", cfg, "--port-file", pf, *extra], ok=False, timeout=120)
    msg = p.stderr.decode(errors="replace")
    check(needle in msg, f"serve {' '.join(extra)} did not name {needle}: {msg!r}")
    check(not os.path.exists(pf), "serve bound a port with a broken index")
    return msg


def test_corrupt_shard(wd):
    make_index(wd)
    cfg = write_config(wd, {"o": {"strategy": "original", "seq_len": 1024, "global_batch": 2}})
    pristine = wd("pristine")
    shutil.copytree(wd("index"), pristine)
    shards = sorted(glob.glob(wd("index", "shards", "*.lmxs")))

    def restore():
        shutil.rmtree(wd("index"))
        shutil.copytree(pristine, wd("index"))

    cases = [("truncated by 1000 bytes", lambda f: os.truncate(f, os.path.getsize(f) - 1000)),
             ("truncated to the header", lambda f: os.truncate(f, 64)),
             ("emptied", lambda f: os.truncate(f, 0)),
             ("missing", os.unlink)]
    for what, damage in cases:
        for shard in (shards[0], shards[-1]):
            damage(shard)
            name = os.path.basename(shard)
            serve_refuses(wd, cfg, name)
            serve_refuses(wd, cfg, name, ["--skip-verify"])
            p = run([LONGMIXD, "verify", wd("index")], ok=False)
            check(name.encode() in p.stdout + p.stderr, f"verify did not name {name} ({what})")
            restore()
    # A truncated manifest: named too.
    m = wd("index", "manifest.json")
    os.truncate(m, os.path.getsize(m) // 2)
    serve_refuses(wd, cfg, "manifest.json")
    restore()
    # And the restored index serves (the damage, not something else, was refused).
    d = Daemon(wd, cfg)
    d.stop()


# ---- mounts: read-only index folder, full disk ----

def mount(args, what):
    if os.geteuid() != 0:
        raise Skip(f"{what} needs root (mount)")
    p = subprocess.run(["mount", *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise Skip(f"cannot {what} here: mount {' '.join(args)}: {p.stderr.strip()}")


def umount(path):
    for _ in range(50):
        if subprocess.run(["umount", path], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["umount", "-l", path], capture_output=True)


def snapshot(d):
    """Every file under d with its bytes' hash."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, d)] = blake2b_256(open(p, "rb").read())
    return out


def no_temp(d):
    left = [p for p in glob.glob(os.path.join(d, "**", "*"), recursive=True) if ".tmp" in os.path.basename(p)]
    check(not left, f"temp files left behind: {left}")


def extra_input(wd, name, mb):
    path = wd("more", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = random.Random(name)
    words = "long context mixture shard merge replica batch".split()
    line_text = " ".join(rng.choice(words) for _ in range(20000))
    with open(path, "w") as f:
        n = 0
        while n < mb * 2**20:
            s = json.dumps({"text": line_text[rng.randrange(1000):], "meta": {"redpajama_set_name": "Extra"}}) + "\n"
            f.write(s)
            n += len(s)
    return path


def test_readonly_index(wd):
    inputs = make_corpus(wd)
    os.makedirs(wd("ro"))
    run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("ro", "index")] + inputs)
    before = snapshot(wd("ro"))
    more = extra_input(wd, "more.jsonl", 1)
    mount(["--bind", wd("ro"), wd("ro")], "bind-mount the index folder")
    try:
        mount(["-o", "remount,ro,bind", wd("ro")], "remount the index folder read-only")
        p = subprocess.run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", wd("ro", "index")] + inputs + [more],
                           capture_output=True, timeout=120)
        msg = one_line(p)
        check(len(msg.splitlines()) == 1, f"not a one-line error: {msg!r}")
        check("Read-only" in msg and wd("ro", "index") in msg, f"the error does not say what and where: {msg!r}")
        check(snapshot(wd("ro")) == before, "the published index changed")
        run([LONGMIXD, "verify", wd("ro", "index")])
        # The daemon only reads its index: it serves from a read-only mount.
        cfg = write_config(wd, {"o": {"strategy": "original", "seq_len": 1024, "global_batch": 2}})
        cfg_j = json.load(open(cfg))
        cfg_j["index"] = wd("ro", "index")
        json.dump(cfg_j, open(cfg, "w"))
        d = Daemon(wd, cfg)
        try:
            st, h, body = http(d.url + "/v1/plans/o/batches/3")
            check(st == 200 and h.get("x-longmix-digest") == "blake2b-256=" + blake2b_256(body), f"batch {st}")
        finally:
            d.stop()
        print(f"read-only index: {msg}")
    finally:
        umount(wd("ro"))
    check(snapshot(wd("ro")) == before, "the index changed")


def test_disk_full(wd):
    inputs = make_corpus(wd)  # ~1.9 MB of tokens -> ~3.7 MB of index with 2-byte ids: over 2 MB
    small = [i for i in inputs if i.endswith("txt")]
    disk = wd("disk")
    os.makedirs(disk)
    mount(["-t", "tmpfs", "-o", "size=2m", "tmpfs", disk], "mount a 2 MB tmpfs")
    try:
        out = os.path.join(disk, "index")
        # 1. The first run does not fit: a clear error, nothing published, nothing left over.
        p = subprocess.run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", out] + inputs,
                           capture_output=True, timeout=120)
        msg = one_line(p)
        check(len(msg.splitlines()) == 1 and "No space left" in msg, f"disk full: unclear error {msg!r}")
        check(not os.path.exists(os.path.join(out, "manifest.json")), "a manifest was published")
        no_temp(disk)
        check(not glob.glob(os.path.join(out, "shards", "*")), f"partial shards: {glob.glob(os.path.join(out, 'shards', '*'))}")
        print(f"disk full on the first run: {msg}")
        # 2. What fits is published; 3. a later run that overflows leaves it as it was.
        run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", out] + small)
        run([LONGMIXD, "verify", out])
        before = snapshot(out)
        stats = run([LONGMIXD, "stats", out, "--json"]).stdout
        more = extra_input(wd, "big.jsonl", 3)
        p = subprocess.run([LONGMIXD, "index", "--tokenizer", "bytes", "--out", out] + small + [more],
                           capture_output=True, timeout=120)
        msg = one_line(p)
        check(len(msg.splitlines()) == 1 and "No space left" in msg, f"disk full: unclear error {msg!r}")
        check(snapshot(out) == before, "the published index changed")
        no_temp(disk)
        run([LONGMIXD, "verify", out])
        check(run([LONGMIXD, "stats", out, "--json"]).stdout == stats, "stats changed")
        print(f"disk full on an update: {msg}")
    finally:
        umount(disk)


# ---- wall-clock jumps ----

def find_faketime():
    for c in glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1") + glob.glob("/usr/lib/faketime/libfaketimeMT.so.1"):
        return c
    raise Skip("libfaketime is not installed (Debian package faketime)")


def test_clock_jump(wd):
    import http.client as httpc
    lib = find_faketime()
    make_index(wd)
    cfg = write_config(wd, PLANS)
    world = 2
    jobs = [(p, s, r) for p in PLANS for s in range(12) for r in range(world)]
    ref = {}
    d = Daemon(wd, cfg)
    try:
        for p, s, r in jobs:
            ref[p, s, r] = http(f"{d.url}/v1/plans/{p}/batches/{s}?rank={r}&world={world}")[2]
    finally:
        d.stop()
    clock = wd("faketime")
    with open(clock, "w") as f:
        f.write("+0\n")
    fake = {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": clock, "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            # an ASan build wants its runtime first in the library list; libfaketime only wraps libc
            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    saved = dict(os.environ)
    os.environ.update(fake)
    try:
        d = Daemon(wd, cfg)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        conn = httpc.HTTPConnection("127.0.0.1", d.port, timeout=30)
        reconnects = 0

        def get(path, headers=None):
            nonlocal conn, reconnects
            for attempt in range(2):
                try:
                    conn.request("GET", path, headers=headers or {})
                    r = conn.getresponse()
                    return r.status, r.read(), r
                except (httpc.HTTPException, OSError):
                    reconnects += 1
                    conn.close()
                    conn = httpc.HTTPConnection("127.0.0.1", d.port, timeout=30)
            raise Failure(f"{path}: the connection failed twice")

        def sweep(label):
            dates = set()
            for p, s, r in jobs:
                st, body, resp = get(f"/v1/plans/{p}/batches/{s}?rank={r}&world={world}")
                check(st == 200 and body == ref[p, s, r], f"{label}: {p}/{s}/{r}: {st}, bytes differ")
                date = (resp.getheader("Date") or "").split()  # "Tue, 01 Jan 2030 00:00:00 GMT"
                dates.add(date[3] if len(date) > 3 else "")
            return dates
            k = random.Random(label).choice(jobs)
            pr = subprocess.run([LONGMIX, "fetch", "--url", d.url, "--plan", k[0], "--step", str(k[1]), "--rank",
                                 str(k[2]), "--world", str(world), "--out", wd("cli.out")], capture_output=True,
                                env=dict(os.environ, **fake), timeout=120)
            check(pr.returncode == 0 and open(wd("cli.out"), "rb").read() == ref[k],
                  f"{label}: longmix fetch under the same clock: {pr.stderr[:300]!r}")

        now = sweep("+0")
        years = {}
        for jump in ["-5y", "+20y", "@2038-01-19 03:14:00", "@2038-01-19 03:15:00", "-1d"]:
            with open(clock + ".new", "w") as f:
                f.write(jump + "\n")
            os.replace(clock + ".new", clock)
            time.sleep(1.5)  # idle keep-alive connection across the jump
            years[jump] = sweep(jump)
        # The daemon did see the jumps (its Date header follows the wall clock), if it sends one.
        if now != {""} and now:
            y0 = int(min(now))
            check(years["+20y"] == {str(y0 + 20)} and years["-5y"] == {str(y0 - 5)} and
                  years["@2038-01-19 03:15:00"] == {"2038"}, f"the daemon's clock did not jump: {now} {years}")
        st, body, _ = get("/metrics")
        up = [float(l.split()[1]) for l in body.decode().splitlines() if l.startswith("longmix_uptime_seconds ")]
        check(st == 200 and up and 0 < up[0] < 3600, f"uptime after the jumps: {up}")
        check(reconnects == 0, f"{reconnects} keep-alive connection(s) dropped across clock jumps")
        print(f"{6 * (len(jobs) + 1)} fetches across wall-clock jumps -5y, +20y, 2038, -1d (Date header years "
              f"{sorted(now)} -> {[sorted(v) for v in years.values()]}): same bytes, no dropped keep-alive "
              f"connection, uptime {up[0]:.1f} s")
        conn.close()
    finally:
        d.stop()


TESTS = {f.__name__[5:]: f for f in [test_kill9_restart, test_corrupt_shard, test_readonly_index, test_disk_full,
                                      test_clock_jump]}


if __name__ == "__main__":
    sys.exit(main(TESTS))
