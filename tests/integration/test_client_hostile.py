#!/usr/bin/env python3
"""The client against hostile or broken servers (issue #16, items 12-14): memory stays bounded
whatever a server announces or sends, a server that never answers costs at most --timeout /
--deadline, --out writes where it is pointed (stdout, FIFOs, symbolic links) and server-provided
error text reaches the terminal as one escaped line.

  test_client_hostile.py [TEST...]      (ctest runs one test per process; exit 77 = skipped)

A fake server (Python, 127.0.0.1) answers GET /v1/plans/P with a small plan (1024 x 4) and the
batch route according to its mode. `longmix fetch` runs as a child; its peak RSS comes from
wait4(). Environment as for test_client.py (LONGMIX, LONGMIXD, LONGMIX_LIBRARY, LMX_SANITIZE)."""
import http.server as httpserver, json, os, socket, stat, struct, subprocess, sys, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from lmx_itest import LONGMIX, Daemon, Failure, Skip, check, main, make_index, run, write_config

SANITIZE = os.environ.get("LMX_SANITIZE", "OFF").upper() in ("ON", "1", "TRUE", "YES")
RSS_LIMIT_MB = 250 if SANITIZE else 100  # the bombs below are 512 MiB; a bounded client stays far below
BOMB = 512 << 20
PLAN = {"name": "p", "plan_id": "0" * 32, "spec": {"strategy": "original", "seq_len": 1024, "global_batch": 4}}
DIGEST = "blake2b-256=" + "ab" * 32


def zstd_rle_frame(announced, actual):
    """A zstd frame (RFC 8878) of `actual` zero bytes in RLE blocks (4 bytes per 128 KiB) whose
    header announces `announced` bytes: single segment, 8-byte Frame_Content_Size, no checksum."""
    out = bytearray(struct.pack("<IB", 0xFD2FB528, 0xE0) + struct.pack("<Q", announced))
    left, block = actual, min(128 << 10, announced)
    while True:
        n = min(left, block)
        left -= n
        out += struct.pack("<I", (1 if left == 0 else 0) | (1 << 1) | (n << 3))[:3] + b"\0"
        if left == 0:
            return bytes(out)


class Hostile:
    """ThreadingHTTPServer on 127.0.0.1. Modes for the batch route:
    zbomb   200, zstd, a 72 KB frame that announces and expands to 512 MiB;
    zlie    200, zstd, a frame that announces 64 KiB and expands to 512 MiB;
    chunked 200, chunked transfer of 512 MiB without Content-Length;
    big500  500 with a JSON error followed by 256 MiB of padding (Content-Length announced);
    escape  400 whose error/detail hold ANSI escapes, newlines and C1 controls;
    silent  reads the request and never answers.
    `sent` counts body bytes the server managed to write per request."""

    def __init__(self, mode):
        self.mode, self.sent, self.requests = mode, [], 0
        self.lock = threading.Lock()
        srv = self

        class Handler(httpserver.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def body(self, status, headers, parts, chunked=False):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                n = 0
                try:
                    for p in parts:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p) if chunked else p)
                        n += len(p)
                    if chunked:
                        self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    self.close_connection = True
                with srv.lock:
                    srv.sent.append(n)

            def do_GET(self):
                if self.path == "/v1/plans/p":
                    b = json.dumps(PLAN).encode()
                    return self.body(200, {"Content-Type": "application/json", "Content-Length": str(len(b))}, [b])
                with srv.lock:
                    srv.requests += 1
                mode = srv.mode
                if mode == "silent":
                    time.sleep(30)
                    return
                if mode in ("zbomb", "zlie"):
                    f = zstd_rle_frame(BOMB if mode == "zbomb" else 64 << 10, BOMB)
                    return self.body(200, {"Content-Encoding": "zstd", "X-Longmix-Digest": DIGEST,
                                           "Content-Length": str(len(f))}, [f])
                if mode == "chunked":
                    chunk = b"\0" * (1 << 20)
                    return self.body(200, {"X-Longmix-Digest": DIGEST}, (chunk for _ in range(BOMB >> 20)), True)
                if mode == "big500":
                    head = json.dumps({"error": "internal", "detail": "disk on fire"}).encode()
                    pad = b" " * (1 << 20)
                    total = len(head) + (256 << 20)
                    return self.body(500, {"Content-Type": "application/json", "Content-Length": str(total)},
                                     [head] + [pad] * 256)
                if mode == "escape":
                    b = json.dumps({"error": "bad\x1b[31mred", "detail": "one\nFORGED LINE\r\x07bell \x9b2J c1"}).encode()
                    return self.body(400, {"Content-Type": "application/json", "Content-Length": str(len(b))}, [b])

        self.server = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *a: None  # clients hanging up on purpose are the point
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def fetch(url, *extra, timeout=120):
    """Runs `longmix fetch` for step 0 of plan p; returns (exit code, stderr, peak RSS in MiB, seconds)."""
    t0 = time.monotonic()
    p = subprocess.Popen([LONGMIX, "fetch", "--url", url, "--plan", "p", "--step", "0", "--json", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, err.decode(errors="replace"), ru.ru_maxrss / 1024, time.monotonic() - t0


def expect_bounded(mode, *needles, extra=()):
    h = Hostile(mode)
    try:
        rc, err, rss, dt = fetch(h.url, *extra)
    finally:
        h.close()
    print(f"{mode}: exit {rc}, peak RSS {rss:.0f} MiB, {dt:.1f} s, {h.requests} batch requests, "
          f"server wrote {sum(h.sent) >> 20} MiB; {err.strip()}")
    check(rc != 0, f"{mode}: fetch succeeded")
    check(rss < RSS_LIMIT_MB, f"{mode}: peak RSS {rss:.0f} MiB (limit {RSS_LIMIT_MB})")
    for n in needles:
        check(n in err, f"{mode}: error {err!r} does not name {n!r}")
    return h, err, dt


def test_zstd_bomb(wd):
    """A 72 KB zstd body announcing 512 MiB is refused from its frame header (the plan's shape
    gives a limit of a few MB); one announcing 64 KiB but expanding further stops at 64 KiB."""
    h, err, dt = expect_bounded("zbomb", "max_batch_bytes", "announces 536870912")
    check(dt < 20, f"zstd bomb took {dt:.1f} s")
    h, err, dt = expect_bounded("zlie", "zstd")
    check("expands beyond" in err or "Destination buffer is too small" in err, f"zlie: {err!r}")
    # an explicit limit (the C option through the CLI) is used as given
    expect_bounded("zbomb", "max_batch_bytes 1000", extra=["--max-batch-bytes", "1000"])


def test_chunked_flood(wd):
    """A 512 MiB chunked 200 without Content-Length: the client stops reading at its limit."""
    h, err, dt = expect_bounded("chunked", "larger than max_batch_bytes")
    per = max(h.sent) if h.sent else 0
    check(per < (64 << 20), f"the server could write {per >> 20} MiB into one request")


def test_error_body_flood(wd):
    """A 500 announcing 256 MiB: the first 4 KB give the error, the rest is never read."""
    h, err, dt = expect_bounded("big500", "HTTP 500", "disk on fire")
    per = max(h.sent) if h.sent else 0
    check(per < (64 << 20), f"the server could write {per >> 20} MiB of one error body")
    check(dt < 30, f"6 attempts on a flooding 500 took {dt:.1f} s")


def test_timeout_deadline(wd):
    """A server that never answers costs --timeout per attempt and --deadline in total."""
    h = Hostile("silent")
    try:
        rc, err, rss, dt = fetch(h.url, "--timeout", "0.3", "--deadline", "1.5", timeout=60)
        print(f"silent: exit {rc}, {dt:.2f} s: {err.strip()}")
        check(rc == 1 and ("timeout" in err.lower() or "deadline" in err), f"exit {rc}: {err!r}")
        check(dt < 4, f"--deadline 1.5 took {dt:.2f} s")
        rc, err, rss, dt = fetch(h.url, "--timeout", "0.3", timeout=60)
        check(rc == 1 and "timeout" in err.lower(), f"exit {rc}: {err!r}")
        check(dt < 8, f"6 attempts of --timeout 0.3 took {dt:.2f} s")
        p = run([LONGMIX, "fetch", "--url", h.url, "--plan", "p", "--step", "0", "--json", "--timeout", "0"], ok=False)
        check(p.returncode == 2 and b"--timeout" in p.stderr, f"--timeout 0: {p.stderr!r}")
    finally:
        h.close()


def test_error_text_escaped(wd):
    """Server-provided error/detail: one line on stderr, control characters escaped."""
    h = Hostile("escape")
    try:
        rc, err, rss, dt = fetch(h.url)
    finally:
        h.close()
    print(f"escape: exit {rc}: {err!r}")
    raw = err.encode()
    check(rc == 1 and raw.endswith(b"\n") and raw.count(b"\n") == 1, f"not one line: {err!r}")
    check(not any(c < 0x20 for c in raw[:-1]) and b"\x7f" not in raw, f"control bytes reach the terminal: {err!r}")
    check("\u009b" not in err, f"a C1 control reaches the terminal: {err!r}")
    for n in ("HTTP 400", "bad\\x1b[31mred", "one\\nFORGED LINE\\r\\x07bell \\u009b2J c1"):
        check(n in err, f"{err!r} lacks {n!r}")


def test_out_targets(wd):
    """--out - is stdout; /proc/self/fd/1, a symbolic link and a FIFO are written in place (not
    replaced by a regular file); a regular file is replaced atomically."""
    make_index(wd)
    plans = {"small": {"strategy": "original", "seq_len": 1024, "global_batch": 4, "seed": 5}}
    d = Daemon(wd, write_config(wd, plans))
    base = [LONGMIX, "fetch", "--url", d.url, "--plan", "small", "--step", "0"]
    try:
        ref = wd("ref.bin")
        with open(ref, "w") as f:
            f.write("old contents")
        run(base + ["--out", ref])
        want = open(ref, "rb").read()
        check(len(want) > 96 and want[:8] == b"LMXBATCH", "the regular file holds no batch")
        check(not [n for n in os.listdir(wd.path) if n.startswith("ref.bin.")], "a temporary file was left")
        got = run(base + ["--out", "-"]).stdout
        check(got == want, f"--out - wrote {len(got)} bytes to stdout, want {len(want)}")
        check(not os.path.exists("-") and not os.path.exists(wd("-")), "--out - created a file named '-'")
        got = run(base + ["--out", "/proc/self/fd/1"]).stdout
        check(got == want, f"--out /proc/self/fd/1 wrote {len(got)} bytes to stdout")
        target, link = wd("target.bin"), wd("link.bin")
        with open(target, "w") as f:
            f.write("x" * 100000)
        os.symlink(target, link)
        run(base + ["--out", link])
        check(os.path.islink(link), "the symbolic link was replaced")
        check(open(target, "rb").read() == want, "the link's target does not hold the batch")
        fifo = wd("fifo")
        os.mkfifo(fifo)
        got = []
        reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
        reader.start()
        p = run(base + ["--out", fifo], ok=None, timeout=30)
        reader.join(10)
        if reader.is_alive():  # the fetch never opened the FIFO: unblock the reader
            with open(fifo, "wb"):
                pass
            reader.join(5)
        check(p.returncode == 0, f"--out FIFO: {p.stderr!r}")
        check(stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced by a regular file")
        check(got and got[0] == want, f"the FIFO's reader got {len(got[0]) if got else 0} bytes")
        p = run(base + ["--out", wd.path], ok=False)
        check(b"directory" in p.stderr, f"--out DIR: {p.stderr!r}")
    finally:
        d.stop()


def test_python_option(wd):
    """The Python binding's max_batch_bytes (the C option, appended to lmx_client_options)."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        raise Skip(f"numpy is not importable by {sys.executable}")
    sys.path.insert(0, os.path.join(HERE, "..", "..", "client", "python"))
    import longmix
    h = Hostile("zbomb")
    try:
        with longmix.Client(h.url, "p", retries=2, prefetch=0, max_batch_bytes=4096) as c:
            try:
                c.fetch(0)
                raise Failure("a 512 MiB zstd bomb was accepted")
            except longmix.LongmixError as e:
                check(e.name == "LMX_EFORMAT" and "max_batch_bytes 4096" in e.message, e.message)
    finally:
        h.close()


TESTS = {t.__name__[5:]: t for t in [test_zstd_bomb, test_chunked_flood, test_error_body_flood, test_timeout_deadline,
                                      test_error_text_escaped, test_out_targets, test_python_option]}


def preload_asan():
    """An ASan-built liblongmix loads into python only with the ASan runtime first (as in test_client.py)."""
    if "python_option" not in sys.argv[1:] or not SANITIZE or os.environ.get("LMX_ASAN_PRELOADED"):
        return
    lib = subprocess.run([os.environ.get("CC", "cc"), "-print-file-name=libasan.so"], capture_output=True,
                         text=True).stdout.strip()
    if not lib or not os.path.exists(lib):
        return
    env = dict(os.environ, LD_PRELOAD=lib, LMX_ASAN_PRELOADED="1",
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


if __name__ == "__main__":
    preload_asan()
    sys.exit(main(TESTS))
