#!/usr/bin/env python3
"""Start-up at scale (issue #15). Verify once: shards verified by `serve` or `verify` are remembered in
INDEX/verified.json (or the state dir for a read-only index), keyed by size, inode, mtime and
ctime, so an unchanged index is not re-read at start; a changed shard is read again and refused;
`verify --changed`, `--threads`, `--scrub [--rate]`. Plan tables: each plan's items in a mapped
file (INDEX/plan-tables, or the state dir), built once, mapped at restart, rebuilt when damaged.

  test_verify.py [TEST...]      (ctest runs one test per process; exit 77 = skipped)"""
import json, os, re, subprocess, sys, time

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


TESTS = {t.__name__[5:]: t for t in [test_restart_remembers, test_scrub_finds_silent_rot,
                                      test_readonly_index_state_dir, test_plan_tables]}

if __name__ == "__main__":
    sys.exit(main(TESTS))
