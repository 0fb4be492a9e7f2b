#!/usr/bin/env python3
"""Integration tests of liblongmix, its example program and its Python binding against the real
longmixd: failover, corrupted and garbage answers, prefetch, the ctypes binding, the PyTorch
dataset, and error paths.

  test_client.py [TEST...]      (ctest runs one test per process; exit 77 = skipped)

Environment (set by ctest): LONGMIXD, LONGMIX, LONGMIX_LIBRARY (liblongmix.so), LMX_BUILD_DIR,
LMX_SOURCE_DIR, CMAKE_COMMAND, CC, LMX_SANITIZE (ON when the build uses ASan/UBSan)."""
import collections, glob, hashlib, http.server as httpserver, json, os, shutil, signal, socket, subprocess, sys, threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from lmx_itest import LONGMIX, LONGMIXD, SKIP, Daemon, Failure, Skip, check, http, main, make_index, run, shm_usage, write_config

SOURCE = os.environ.get("LMX_SOURCE_DIR", os.path.normpath(os.path.join(HERE, "..", "..")))
BUILD = os.environ.get("LMX_BUILD_DIR", "")
SANITIZE = os.environ.get("LMX_SANITIZE", "OFF").upper() in ("ON", "1", "TRUE", "YES")

# Small sequences so a plan has many steps.
PLANS = {"small": {"strategy": "original", "seq_len": 1024, "global_batch": 4, "seed": 5},
         "ps": {"strategy": "per_source", "seq_len": 2048, "global_batch": 4, "seed": 3},
         "short": {"strategy": "original", "seq_len": 1024, "global_batch": 4, "total_tokens": 5 * 4096}}


def binding():
    """Imports the package client/python/longmix (numpy needed); Skip when that is impossible here."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        raise Skip(f"numpy is not importable by {sys.executable} (Debian: python3-numpy; run with /usr/bin/python3)")
    sys.path.insert(0, os.path.join(SOURCE, "client", "python"))
    import longmix
    return longmix


def torch_or_skip():
    try:
        import torch
        return torch
    except ImportError:
        raise Skip(f"PyTorch is not importable by {sys.executable} (Debian: python3-torch)")


def cli_json(url, plan, step, rank=0, world=1, token=None):
    args = [LONGMIX, "fetch", "--url", url, "--plan", plan, "--step", str(step), "--rank", str(rank), "--world",
            str(world), "--json"]
    if token:
        args += ["--token", token]
    return json.loads(run(args).stdout)


def cli_body(wd, url, plan, step, rank=0, world=1):
    out = wd(f"cli.{plan}.{step}.{rank}.{world}.bin")
    run([LONGMIX, "fetch", "--url", url, "--plan", plan, "--step", str(step), "--rank", str(rank), "--world",
         str(world), "--out", out])
    return open(out, "rb").read()


class Proxy:
    """An HTTP proxy on 127.0.0.1 in front of `upstream` that misbehaves on purpose.

    mode "flip":       forwards (without Accept-Encoding) and flips one body byte of the first
                       `corrupt` 200 answers (-1 = all of them), keeping the server's digest header;
    mode "junk":       answers 200 with a junk body and no digest header;
    mode "junkdigest": answers 200 with a junk body and a correct digest of that junk;
    mode "truncate":   answers 200 announcing more bytes than it sends, then closes;
    mode "count":      forwards unchanged (counts requests);
    mode "hang_after_first": forwards the first request, then answers nothing for 30 s.
    Only batch requests count and misbehave; other paths (the client's GET /v1/plans/NAME for
    its max_batch_bytes) are forwarded unchanged."""

    def __init__(self, upstream, mode="flip", corrupt=0):
        self.upstream, self.mode, self.corrupt, self.requests = upstream, mode, corrupt, 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(httpserver.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if "/batches/" not in self.path:
                    return self.forward(proxy.upstream, "count")
                with proxy.lock:
                    proxy.requests += 1
                    mode = proxy.mode
                    n = proxy.requests
                if mode == "hang_after_first" and n > 1:
                    time.sleep(30)
                    return
                if mode in ("junk", "junkdigest", "truncate"):
                    body = b"<html>this is not a batch</html>\n" * 20
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    if mode == "junkdigest":
                        self.send_header("X-Longmix-Digest",
                                         "blake2b-256=" + hashlib.blake2b(body, digest_size=32).hexdigest())
                    self.send_header("Content-Length", str(len(body) * (3 if mode == "truncate" else 1)))
                    self.end_headers()
                    self.wfile.write(body)
                    if mode == "truncate":
                        self.wfile.flush()
                        self.close_connection = True
                    return
                self.forward(proxy.upstream, mode)

            def forward(self, upstream, mode):
                hdrs = {k: v for k, v in self.headers.items() if k.lower() == "authorization"}
                status, h, body = http(upstream + self.path, hdrs)
                if mode == "flip" and status == 200:
                    with proxy.lock:
                        flip = proxy.corrupt != 0
                        if proxy.corrupt > 0:
                            proxy.corrupt -= 1
                    if flip:
                        body = bytearray(body)
                        body[len(body) // 2] ^= 0x40
                        body = bytes(body)
                self.send_response(status)
                for k in ("content-type", "x-longmix-digest", "x-longmix-plan-id"):
                    if k in h:
                        self.send_header(k, h[k])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class RawServer:
    """A TCP server on 127.0.0.1: mode "silent" accepts nothing (requests hang until the client's
    timeout); mode "garbage" answers every connection with bytes that are not HTTP and closes."""

    def __init__(self, mode):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = False
        if mode == "garbage":
            threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            try:
                conn.recv(65536)
                conn.sendall(b"\x00\x17GARBAGE \xff\xfe not http at all\r\n\r\n" * 8)
            except OSError:
                pass
            conn.close()

    def close(self):
        self.stop = True
        self.sock.close()


def expect_error(fn, code_name, *needles):
    """Calls fn, which must raise LongmixError with code_name and a message holding each needle."""
    longmix = binding()
    try:
        fn()
    except longmix.LongmixError as e:
        check(e.name == code_name, f"error {e.name}, want {code_name}: {e.message}")
        for n in needles:
            check(n in e.message, f"error message {e.message!r} does not name {n!r}")
        return e
    raise Failure(f"no error, want {code_name}")


def bodies(client, n, how="next"):
    out = []
    for i in range(n):
        b = client.next() if how == "next" else client.fetch(i)
        out.append(bytes(b.body))
    return out


# ---- the C example, built against an installed prefix both ways ----

def test_c_example(wd):
    """cmake --install into a temp prefix; fetch_example.c built with pkg-config and with
    find_package(longmix); both run against a real daemon and agree with the CLI's tokens."""
    cmake = os.environ.get("CMAKE_COMMAND", "cmake")
    cc = os.environ.get("CC", "cc")
    check(BUILD and os.path.isdir(BUILD), "LMX_BUILD_DIR is not set to the build directory")
    prefix = wd("prefix")
    run([cmake, "--install", BUILD, "--prefix", prefix], timeout=300)
    libdir = next(d for d in (os.path.join(prefix, "lib"), *glob.glob(os.path.join(prefix, "lib", "*-linux-gnu")))
                  if os.path.exists(os.path.join(d, "pkgconfig", "longmix.pc")))
    example = os.path.join(SOURCE, "client", "examples", "fetch_example.c")
    san = ["-fsanitize=address,undefined"] if SANITIZE else []
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"))
    # 1. pkg-config (the README's first command)
    flags = run(["pkg-config", "--cflags", "--libs", "longmix"], env=env).stdout.decode().split()
    check(any(f.startswith("-I" + prefix) for f in flags), f"pkg-config flags {flags} do not point into the prefix")
    exe1 = wd("fetch_example_pc")
    run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", *san, example, *flags, f"-Wl,-rpath,{libdir}", "-o", exe1],
        env=env)
    # 2. CMake find_package (the README's second command)
    proj = wd("proj")
    os.makedirs(proj)
    with open(os.path.join(proj, "CMakeLists.txt"), "w") as f:
        f.write("cmake_minimum_required(VERSION 3.16)\nproject(fetch_example C)\n"
                "find_package(longmix 0.1 REQUIRED)\n"
                f"add_executable(fetch_example {example})\n"
                "target_link_libraries(fetch_example PRIVATE longmix::longmix)\n")
    cfg = [cmake, "-S", proj, "-B", wd("proj-build"), f"-DCMAKE_PREFIX_PATH={prefix}", f"-DCMAKE_C_COMPILER={cc}"]
    if san:
        cfg.append("-DCMAKE_C_FLAGS=" + " ".join(san))
        cfg.append("-DCMAKE_EXE_LINKER_FLAGS=" + " ".join(san))
    run(cfg, timeout=300)
    run([cmake, "--build", wd("proj-build")], timeout=300)
    exe2 = wd("proj-build", "fetch_example")
    check(os.path.exists(exe2), "the CMake build made no fetch_example")
    needed = run(["ldd", exe2]).stdout.decode()
    check(prefix in needed, f"the find_package build does not use the installed liblongmix: {needed}")

    make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS))
    try:
        outs = []
        for exe in (exe1, exe2):
            p = run([exe, d.url, "small", "3", "1", "2"])
            outs.append(p.stdout.decode())
        check(outs[0] == outs[1], f"the two builds print different output:\n{outs[0]}\n{outs[1]}")
        check(outs[0].count("\nstep ") == 3 and "rank 1 of 2" in outs[0], f"unexpected output:\n{outs[0]}")
        # the token checksum equals the CLI's tokens for the same steps
        h = 0
        for step in range(3):
            for q in cli_json(d.url, "small", step, 1, 2)["sequences"]:
                for t in q["tokens"]:
                    h = ((h ^ t) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
        check(f"token checksum {h:016x}" in outs[0], f"checksum differs from longmix fetch --json: {outs[0]}")
        p = run([exe1, "http://127.0.0.1:1", "small", "1"], ok=False)
        check(b"127.0.0.1:1" in p.stderr, f"example error does not name the URL: {p.stderr!r}")
    finally:
        d.stop()
    print(outs[0], end="")


# ---- failover, corruption, prefetch ----

def test_failover(wd):
    """Two daemons; the first replica is SIGKILLed mid-run: the client finishes on the second with
    bytes identical to a run against a single daemon (with and without prefetch)."""
    longmix = binding()
    make_index(wd)
    cfg = write_config(wd, PLANS)
    ref = Daemon(wd, cfg)
    try:
        with longmix.Client(ref.url, "small", rank=1, world=2, prefetch=0) as c:
            want = bodies(c, 24)
    finally:
        ref.stop()
    for prefetch in (0, 3):
        a, b = Daemon(wd, cfg), Daemon(wd, cfg)
        try:
            got = []
            with longmix.Client([a.url, b.url], "small", rank=1, world=2, prefetch=prefetch, timeout_ms=5000) as c:
                for i in range(24):
                    got.append(bytes(c.next().body))
                    if i == 7:
                        a.proc.send_signal(signal.SIGKILL)
                        a.proc.wait(timeout=30)
            check(got == want, f"prefetch {prefetch}: bytes after failover differ from the single-daemon run")
            check(a.proc.returncode == -signal.SIGKILL, "the first daemon was not killed")
        finally:
            a.log.close()
            b.stop()
    # The CLI with a dead replica first also fails over.
    d = Daemon(wd, cfg)
    try:
        dead = RawServer("silent")
        dead_url = dead.url
        dead.close()  # nothing listens there now
        run([LONGMIX, "fetch", "--url", f"{dead_url},{d.url}", "--plan", "small", "--step", "3", "--out", wd("f.bin")])
        check(open(wd("f.bin"), "rb").read() == cli_body(wd, d.url, "small", 3), "CLI failover bytes differ")
    finally:
        d.stop()


def test_corrupt_retry(wd):
    """A proxy flips a body byte: the digest check catches it, the client retries and returns the
    right bytes; with only an always-corrupting proxy the answer is a digest error, never a batch."""
    longmix = binding()
    make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS))
    px = Proxy(d.url, "flip", corrupt=2)
    try:
        want = [cli_body(wd, d.url, "small", s) for s in range(4)]
        with longmix.Client(px.url, "small", prefetch=0, retries=4) as c:
            got = bodies(c, 4)
        check(got == want, "bytes through the corrupting proxy differ")
        check(px.requests == 4 + 2, f"{px.requests} requests, want 6 (2 corrupted answers retried)")
        # corrupting always: digest error after the retry budget, from the library and the CLI
        px.corrupt, px.requests = -1, 0
        with longmix.Client(px.url, "small", prefetch=2, retries=3) as c:
            e = expect_error(c.next, "LMX_ECHECKSUM", "digest mismatch", px.url, "gave up after 3 attempts")
            check(px.requests >= 3, f"only {px.requests} requests for 3 attempts")
            expect_error(lambda: c.fetch(1), "LMX_ECHECKSUM", "digest")
        p = run([LONGMIX, "fetch", "--url", px.url, "--plan", "small", "--step", "0", "--json"], ok=False)
        err = p.stderr.decode()
        check("digest mismatch" in err and len(err.strip().splitlines()) == 1, f"CLI error {err!r}")
        print(e.message)
        # a corrupting replica first, a good one second: right bytes, every time
        with longmix.Client([px.url, d.url], "small", prefetch=2) as c:
            check(bodies(c, 4) == want, "bytes with a corrupting first replica differ")
    finally:
        px.close()
        d.stop()


def test_prefetch_same_results(wd):
    """Prefetch 0 and 4 return the same bytes; seek drops prefetched batches; concurrent next()
    callers get distinct consecutive steps; the C example prints the same with prefetch 0 and 4."""
    longmix = binding()
    make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS))
    try:
        with longmix.Client(d.url, "ps", rank=1, world=2, prefetch=0) as c:
            want = bodies(c, 20)
        for zstd in (True, False):
            with longmix.Client(d.url, "ps", rank=1, world=2, prefetch=4, zstd=zstd) as c:
                got = bodies(c, 20)
                check(c.position == 20, f"position {c.position}")
            check(got == want, f"prefetch 4 (zstd {zstd}) differs from prefetch 0")
        with longmix.Client(d.url, "ps", rank=1, world=2, prefetch=4, start_step=3) as c:
            check(c.next().step == 3 and c.next().step == 4, "start_step")
            time.sleep(0.2)  # let the worker fill its queue, then seek away from it
            c.seek(12)
            b = c.next()
            check(b.step == 12 and bytes(b.body) == want[12], "seek did not drop the prefetched batches")
            check(c.fetch(2).step == 2 and c.next().step == 13, "fetch moved the position")
        # four threads sharing one handle
        with longmix.Client(d.url, "ps", rank=1, world=2, prefetch=3) as c:
            seen, lock = {}, threading.Lock()

            def worker():
                for _ in range(5):
                    b = c.next()
                    with lock:
                        check(b.step not in seen, f"step {b.step} returned twice")
                        seen[b.step] = bytes(b.body)

            ts = [threading.Thread(target=worker) for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            check(sorted(seen) == list(range(20)), f"steps {sorted(seen)}")
            check([seen[s] for s in range(20)] == want, "threaded bytes differ")
        example = os.path.join(BUILD, "client", "longmix_fetch_example")
        if os.path.exists(example):
            outs = [run([example, d.url, "ps", "6", "1", "2"], env=dict(os.environ, LONGMIX_PREFETCH=str(k))).stdout
                    for k in (0, 4)]
            check(outs[0] == outs[1], "the C example prints different results with prefetch 0 and 4")
    finally:
        d.stop()


# ---- the Python binding ----

def test_python_matches_cli(wd):
    """Client.next()/fetch() give the same tokens, next tokens, spans and cu_seqlens as
    `longmix fetch --json`; tokens are a zero-copy view that outlives the Batch object."""
    longmix = binding()
    import gc
    import weakref
    import numpy as np
    make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS))
    try:
        for plan, rank, world in (("small", 0, 1), ("ps", 3, 4)):
            with longmix.Client(d.url, plan, rank=rank, world=world, start_step=1) as c:
                for step in (1, 2, 3):
                    b = c.next() if step < 3 else c.fetch(3)
                    j = cli_json(d.url, plan, step, rank, world)
                    check((b.step, b.rank, b.world, b.plan_id) == (step, rank, world, j["plan_id"]), f"identity {b}")
                    check(b.tokens.shape == (len(j["sequences"]), j["seq_len"]), f"shape {b.tokens.shape}")
                    check(b.tokens.dtype == (np.uint16 if j["token_bytes"] == 2 else np.uint32),
                          f"dtype {b.tokens.dtype} for token_bytes {j['token_bytes']}")
                    check(b.tokens.tolist() == [q["tokens"] for q in j["sequences"]], f"{plan} {step}: tokens differ")
                    check(b.next_tokens.tolist() == [q["next_token"] for q in j["sequences"]], "next tokens differ")
                    check([a.tolist() for a in b.cu_seqlens] == [q.get("cu_seqlens", []) for q in j["sequences"]],
                          "cu_seqlens differ")
                    check(all(a.dtype == np.int32 for a in b.cu_seqlens), "cu_seqlens dtype")
                    check([[s._asdict() for s in row] for row in b.spans] == [q["spans"] for q in j["sequences"]],
                          "spans differ")
            # zero copy: the array points into the C batch, and keeps it alive after the Batch is gone
            with longmix.Client(d.url, plan, rank=rank, world=world) as c:
                b = c.fetch(0)
                ptr = longmix.library.lmx_batch_tokens(b._h)
                toks = b.tokens
                check(toks.ctypes.data == ptr, "tokens are a copy, not a view of the batch")
                check(not toks.flags.writeable, "the tokens view is writable")
                ref = toks.tolist()
                freed = []
                weakref.finalize(b, freed.append, 1)
                del b
                check(not freed, "the Batch was freed while a view of its tokens lives")
                gc.collect()
                junk = [bytearray(1 << 16) for _ in range(64)]  # reuse freed memory if the batch were freed
                check(toks.tolist() == ref, "the tokens view changed after the Batch object was dropped")
                del junk
                gc.disable()  # no reference cycle: dropping the last view frees the C batch at once
                try:
                    del toks
                    check(freed == [1], "dropping the last view did not free the batch (reference cycle?)")
                finally:
                    gc.enable()
        # decoding into the caller's buffer (e.g. pinned memory)
        with longmix.Client(d.url, "ps", rank=1, world=2) as c:
            want = bytes(c.fetch(4).body)
            e = expect_error(lambda: c.fetch_into(4, bytearray(100)), "LMX_ENOMEM", "does not fit")
            check(e.needed == len(want), f"needed {e.needed}, body is {len(want)} bytes")
            buf = np.zeros(e.needed + 64, dtype=np.uint8)
            b = c.fetch_into(4, buf)
            check(bytes(b.body) == want and bytes(buf[:len(want)]) == want, "fetch_into bytes differ")
            check(buf.ctypes.data <= b.tokens.ctypes.data < buf.ctypes.data + buf.nbytes,
                  "fetch_into tokens do not point into the caller's buffer")
        # iteration ends at the end of the plan's data (ERANGE), which fetch reports as an error
        with longmix.Client(d.url, "short", prefetch=2) as c:
            n = sum(1 for _ in c)
            check(n == 5, f"{n} batches in a plan of 5 steps")
            expect_error(lambda: c.fetch(n), "LMX_ERANGE", "416")
    finally:
        d.stop()


BOUNDED = {"timeout_ms": 20000, "deadline_ms": 90000}  # a stalled request fails the test with a message


def _worker_watchdog(_worker_id):
    """A DataLoader worker that hangs prints its stack before the loader's timeout fires."""
    import faulthandler
    faulthandler.dump_traceback_later(100, exit=True)


def test_dataloader_two_ranks_two_workers(wd):
    try:
        dataloader_two_ranks_two_workers(wd)
    except RuntimeError as e:  # the loader's own errors (timeout, a dead worker): say where shm stands
        raise Failure(f"{e} ({shm_usage()})") from e


def dataloader_two_ranks_two_workers(wd):
    """LongmixDataset on 2 ranks x DataLoader(num_workers=2) covers each global sequence of the
    first N steps exactly once, with the tokens of the world-1 batches; state_dict resumes."""
    torch = torch_or_skip()
    longmix = binding()
    make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS))
    n_steps, gb = 7, PLANS["small"]["global_batch"]
    try:
        whole = {}
        for step in range(n_steps):
            for k, q in enumerate(cli_json(d.url, "small", step)["sequences"]):
                whole[step * gb + k] = q["tokens"]
        seen = collections.Counter()
        for rank in (0, 1):
            os.environ["RANK"], os.environ["WORLD_SIZE"] = str(rank), "2"  # how the dataset learns rank/world
            ds = longmix.LongmixDataset(d.url, "small", num_steps=n_steps, **BOUNDED)
            check((ds.rank, ds.world) == (rank, 2), f"rank/world from the environment: {ds.rank}/{ds.world}")
            dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, timeout=120,
                                             worker_init_fn=_worker_watchdog)
            steps = []
            for item in dl:
                check(item["tokens"].dtype == torch.int64 and item["tokens"].shape == (gb // 2, 1024),
                      f"tokens {item['tokens'].dtype} {tuple(item['tokens'].shape)}")
                check(item["rank"] == rank and item["world"] == 2, "identity")
                steps.append(item["step"])
                for k in range(gb // 2):
                    g = item["step"] * gb + rank * (gb // 2) + k
                    seen[g] += 1
                    check(item["tokens"][k].tolist() == whole[g], f"global sequence {g}: tokens differ")
                ds.mark_consumed(item)
            check(steps == list(range(n_steps)), f"rank {rank}: steps in order {steps}")
            check(ds.state_dict()["next_step"] == n_steps, f"state {ds.state_dict()}")
        check(sorted(seen) == list(range(n_steps * gb)) and set(seen.values()) == {1},
              f"coverage: {sorted(g for g, n in seen.items() if n != 1)} seen twice, "
              f"{sorted(set(range(n_steps * gb)) - set(seen))} missing")
        # resumption in-process: read 3, save, a new dataset continues at step 3
        os.environ["RANK"], os.environ["WORLD_SIZE"] = "0", "1"
        ds = longmix.LongmixDataset(d.url, "small", num_steps=n_steps)
        it = iter(ds)
        first = [next(it)["step"] for _ in range(3)]
        state = ds.state_dict()
        check(first == [0, 1, 2] and state["next_step"] == 3, f"state {state}")
        ds2 = longmix.LongmixDataset(d.url, "small", num_steps=n_steps)
        ds2.load_state_dict(json.loads(json.dumps(state)))
        rest = [x["step"] for x in torch.utils.data.DataLoader(ds2, batch_size=None, num_workers=2)]
        check(rest == list(range(3, n_steps)), f"resumed steps {rest}")
        try:
            longmix.LongmixDataset(d.url, "small", world=2, rank=0).load_state_dict(state)
            raise Failure("a state for world 1 was accepted by a world-2 dataset")
        except ValueError:
            pass
    finally:
        d.stop()


def _gdb_stacks(pid):
    gdb = shutil.which("gdb")
    if not gdb:
        return "(no gdb)"
    p = subprocess.run([gdb, "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt 30"],
                       capture_output=True, text=True, timeout=60)
    return "\n".join(l for l in p.stdout.splitlines() if l.startswith(("#", "Thread")))


def test_fork_inherited_client(wd):
    """A child forked while the parent's client prefetches: using the inherited client fails at
    once with an error naming fork, closing it returns at once; the parent's client goes on."""
    longmix = binding()
    make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS))
    try:
        c = longmix.Client(d.url, "small", prefetch=4, **BOUNDED)
        first = c.next()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: report on the pipe, never return into the harness
            os.close(r)
            msg = "no error"
            try:
                c.fetch(1)
            except longmix.LongmixError as e:
                msg = f"{e.name} {e.message}"
            c.close()
            try:  # bounded well inside the parent's 60 s: a stalled request reports, a lock hangs
                fresh = longmix.Client(d.url, "small", prefetch=0, timeout_ms=10000, deadline_ms=30000)
                msg += f" | fresh client step {fresh.fetch(1).step}"
                fresh.close()
            except longmix.LongmixError as e:
                msg += f" | fresh client failed: {e.name} {e.message}"
            os.write(w, msg.encode())
            os._exit(0)
        os.close(w)
        deadline = time.monotonic() + 60
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                stacks = _gdb_stacks(pid)  # where it waits: the diagnosis for a hang seen once in CI
                os.kill(pid, signal.SIGKILL)
                raise Failure(f"the forked child hung using or closing the inherited client; its stacks:\n{stacks}")
            time.sleep(0.05)
        msg = os.read(r, 4096).decode()
        os.close(r)
        check(msg.startswith("LMX_EINVAL ") and "fork" in msg, f"child's error: {msg}")
        check(msg.endswith("fresh client step 1"), f"a new client in the child: {msg}")
        steps = [first.step] + [c.next().step for _ in range(3)]
        check(steps == [0, 1, 2, 3], f"the parent's client after the fork: steps {steps}")
        c.close()
    finally:
        d.stop()


# ---- bad input ----

def test_unreachable_and_timeouts(wd):
    """Nothing listening: a network error naming the URL, fast. A server that never answers: a
    timeout within the configured bounds (per request, and the total deadline). No hang."""
    longmix = binding()
    t0 = time.monotonic()
    with longmix.Client("http://127.0.0.1:1", "small", retries=3, prefetch=2) as c:
        expect_error(c.next, "LMX_ENETWORK", "127.0.0.1:1", "gave up after 3 attempts")
    check(time.monotonic() - t0 < 3, f"connection refused took {time.monotonic() - t0:.1f} s")
    silent = RawServer("silent")
    try:
        t0 = time.monotonic()
        with longmix.Client(silent.url, "small", timeout_ms=300, retries=2, prefetch=0) as c:
            expect_error(lambda: c.fetch(0), "LMX_ETIMEOUT", silent.url)
        dt = time.monotonic() - t0
        check(0.5 < dt < 3.0, f"2 attempts of 300 ms took {dt:.2f} s")
        t0 = time.monotonic()
        with longmix.Client(silent.url, "small", timeout_ms=300, retries=100, deadline_ms=800, prefetch=2) as c:
            expect_error(c.next, "LMX_ETIMEOUT")
        dt = time.monotonic() - t0
        check(dt < 3.0, f"a deadline of 800 ms took {dt:.2f} s")
    finally:
        silent.close()
    # close() while the prefetch worker waits on a server that stopped answering returns promptly
    make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS))
    px = Proxy(d.url, "hang_after_first")
    try:
        c = longmix.Client(px.url, "small", timeout_ms=60000, prefetch=2)
        check(c.next().step == 0, "first batch")
        time.sleep(0.3)  # the worker is now inside the request for step 1
        t0 = time.monotonic()
        c.close()
        check(time.monotonic() - t0 < 3, f"close() with a request in flight took {time.monotonic() - t0:.1f} s")
    finally:
        px.close()
        d.stop()
    p = run([LONGMIX, "fetch", "--url", "http://127.0.0.1:1", "--plan", "small", "--step", "0", "--json"], ok=False,
            timeout=60)
    check(b"127.0.0.1:1" in p.stderr, f"CLI error {p.stderr!r}")


def test_http_4xx_not_retried(wd):
    """A 4xx is returned at once (one request, no retry) with the URL and the server's error/detail;
    a plan removed (SIGHUP reload) or changed mid-run is a clear error."""
    longmix = binding()
    make_index(wd)
    cfg = write_config(wd, PLANS)
    d = Daemon(wd, cfg)
    px = Proxy(d.url, "count")
    try:
        with longmix.Client(px.url, "nope", retries=5) as c:
            e = expect_error(c.next, "LMX_ENOTFOUND", px.url + "/v1/plans/nope/batches/0", "HTTP 404", "nope")
        check(px.requests == 1, f"a 404 was retried: {px.requests} requests")
        print(e.message)
        px.requests = 0
        with longmix.Client(px.url, "small", rank=0, world=3, retries=5) as c:  # 3 does not divide 4
            expect_error(lambda: c.fetch(0), "LMX_EHTTP", "HTTP 400")
        check(px.requests == 1, f"a 400 was retried: {px.requests} requests")
        # the plan is removed while a run reads it
        with longmix.Client(px.url, "small", prefetch=0) as c:
            c.next()
            with open(cfg) as f:
                conf = json.load(f)
            del conf["plans"]["small"]
            with open(cfg, "w") as f:
                json.dump(conf, f)
            d.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while "small" in json.loads(http(d.url + "/v1/plans")[2])["plans"]:
                check(time.monotonic() < deadline, "SIGHUP did not reload the plans")
                time.sleep(0.1)
            expect_error(c.next, "LMX_ENOTFOUND", "small")
            check(c.position == 1, "the position moved on an error")
    finally:
        px.close()
        d.stop()
    # a plan whose definition differs on a replica: the run refuses to mix two plans
    plans2 = {"small": dict(PLANS["small"], seed=99)}
    d1, d2 = Daemon(wd, write_config(wd, PLANS, "c1.json")), Daemon(wd, write_config(wd, plans2, "c2.json"))
    px = Proxy(d1.url, "count")
    try:
        with longmix.Client(px.url, "small", prefetch=0) as c:
            c.next()
            px.upstream = d2.url
            expect_error(c.next, "LMX_EHTTP", "changed on the server")
    finally:
        px.close()
        d1.stop()
        d2.stop()


def test_auth_wrong_token(wd):
    """With auth configured: no token or a wrong one is LMX_EAUTH (401, not retried), the right
    one works, from the library and the CLI."""
    longmix = binding()
    make_index(wd)
    key = json.loads(run([LONGMIXD, "keygen", "--json"]).stdout)
    d = Daemon(wd, write_config(wd, PLANS, auth={"read": [key["hash"]]}))
    px = Proxy(d.url, "count")
    try:
        for token in (None, "lmx_" + "0" * 64):
            px.requests = 0
            with longmix.Client(px.url, "small", token=token, retries=4) as c:
                expect_error(c.next, "LMX_EAUTH", "HTTP 401", "token")
            check(px.requests == 1, f"a 401 was retried ({px.requests} requests)")
        with longmix.Client(px.url, "small", token=key["token"]) as c:
            check(c.next().step == 0, "the right token did not work")
        p = run([LONGMIX, "fetch", "--url", d.url, "--plan", "small", "--step", "0", "--json", "--token", "wrong"],
                ok=False)
        check(b"401" in p.stderr, f"CLI error {p.stderr!r}")
        check(cli_json(d.url, "small", 0, token=key["token"])["step"] == 0, "CLI with the right token")
        expect_error(lambda: longmix.Client(d.url, "small", token="bad token\n"), "LMX_EINVAL", "token")
    finally:
        px.close()
        d.stop()


def test_garbage_answers(wd):
    """Answers that are not batches (junk 200 bodies, a junk body with a matching digest, a
    truncated body, bytes that are not HTTP) give a clear error, no crash, no hang; with a good
    replica behind them the client gets the right batch."""
    longmix = binding()
    make_index(wd)
    d = Daemon(wd, write_config(wd, PLANS))
    raw = RawServer("garbage")
    pxs = {m: Proxy(d.url, m) for m in ("junk", "junkdigest", "truncate")}
    try:
        want = cli_body(wd, d.url, "small", 2)
        cases = [(pxs["junk"].url, "LMX_EFORMAT", "X-Longmix-Digest"),
                 (pxs["junkdigest"].url, "LMX_EFORMAT", "magic"),
                 (pxs["truncate"].url, "LMX_ENETWORK", pxs["truncate"].url),
                 (raw.url, "LMX_EFORMAT", "not HTTP")]
        for url, code, needle in cases:
            t0 = time.monotonic()
            with longmix.Client(url, "small", retries=2, timeout_ms=3000, prefetch=1) as c:
                e = expect_error(c.next, code, url, needle)
            check(time.monotonic() - t0 < 8, f"{url}: took {time.monotonic() - t0:.1f} s")
            print(e.message)
            with longmix.Client([url, d.url], "small", timeout_ms=3000) as c:
                check(bytes(c.fetch(2).body) == want, f"failover past {url}: bytes differ")
        check(d.proc.poll() is None, "the daemon died")
    finally:
        for p in pxs.values():
            p.close()
        raw.close()
        d.stop()


def test_bad_options(wd):
    """Options the library refuses at open, with a message naming the option."""
    longmix = binding()
    expect_error(lambda: longmix.Client("", "p"), "LMX_EINVAL", "URL")
    expect_error(lambda: longmix.Client("ftp://x", "p"), "LMX_EINVAL", "ftp://x")
    expect_error(lambda: longmix.Client("http://x", "a/b"), "LMX_EINVAL", "a/b")
    expect_error(lambda: longmix.Client("http://x", "p", rank=2, world=2), "LMX_EINVAL", "rank 2")
    expect_error(lambda: longmix.Client("http://x", "p", prefetch=100000), "LMX_EINVAL", "prefetch")


TESTS = {f.__name__[5:]: f for f in [
    test_c_example, test_failover, test_corrupt_retry, test_prefetch_same_results, test_python_matches_cli,
    test_dataloader_two_ranks_two_workers, test_fork_inherited_client, test_unreachable_and_timeouts, test_http_4xx_not_retried,
    test_auth_wrong_token, test_garbage_answers, test_bad_options]}


def preload_asan():
    """An ASan-built liblongmix can only be loaded into a process that has the ASan runtime first:
    re-executes this script with LD_PRELOAD=libasan (leak checks off: CPython itself leaks by
    design). The re-executed process drops LD_PRELOAD again so the daemons and tools it starts
    run as built."""
    if os.environ.pop("LMX_ASAN_PRELOADED", None):
        os.environ.pop("LD_PRELOAD", None)
        orig = os.environ.pop("LMX_ASAN_OPTIONS_ORIG", None)
        if orig is None:
            os.environ.pop("ASAN_OPTIONS", None)
        else:
            os.environ["ASAN_OPTIONS"] = orig
        return
    if not SANITIZE or sys.argv[1:] == ["c_example"]:
        return
    p = subprocess.run([os.environ.get("CC", "cc"), "-print-file-name=libasan.so"], capture_output=True, text=True)
    lib = p.stdout.strip()
    if p.returncode != 0 or not os.path.isabs(lib) or not os.path.exists(lib):
        print(f"skip: the library is built with sanitizers and libasan.so was not found to preload ({lib!r})")
        sys.exit(SKIP)
    env = dict(os.environ, LD_PRELOAD=lib, LMX_ASAN_PRELOADED="1",
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")  # the last setting wins
    if "ASAN_OPTIONS" in os.environ:
        env["LMX_ASAN_OPTIONS_ORIG"] = os.environ["ASAN_OPTIONS"]
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


if __name__ == "__main__":
    preload_asan()
    sys.exit(main(TESTS))
