"""Harness for the integration tests: builds a test index, starts the real longmixd on an
ephemeral loopback port, talks HTTP to it. Binaries come from $LONGMIXD / $LONGMIX (set by
ctest)."""
import faulthandler, hashlib, json, os, shutil, signal, subprocess, sys, tempfile, threading, time, urllib.error, urllib.request

LONGMIXD = os.environ.get("LONGMIXD", "longmixd")
LONGMIX = os.environ.get("LONGMIX", "longmix")
HERE = os.path.dirname(os.path.abspath(__file__))


class Failure(Exception):
    pass


class Skip(Exception):
    """Raised by a test that cannot run here (missing tool or package); the reason is printed."""


SKIP = 77  # ctest's SKIP_RETURN_CODE for every integration test


def check(cond, what):
    if not cond:
        raise Failure(what)


def run(args, ok=True, **kw):
    """Runs a command; returns CompletedProcess. ok=True demands exit 0, ok=False demands non-zero."""
    p = subprocess.run(args, capture_output=True, timeout=kw.pop("timeout", 120), **kw)
    if ok is True and p.returncode != 0:
        raise Failure(f"{args[:3]} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    if ok is False and p.returncode == 0:
        raise Failure(f"{args[:3]} succeeded but should have failed")
    return p


class Workdir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="lmx-itest-")

    def __call__(self, *parts):
        return os.path.join(self.path, *parts)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


def make_corpus(wd):
    run([sys.executable, os.path.join(HERE, "make-test-corpus.py"), wd("corpus")])
    return [wd("corpus", "slim"), wd("corpus", "txt")]


def make_index(wd, tokenizer="bytes"):
    inputs = make_corpus(wd)
    run([LONGMIXD, "index", "--tokenizer", tokenizer, "--out", wd("index")] + inputs)
    return wd("index")


def write_config(wd, plans, name="config.json", **extra):
    cfg = {"listen": "127.0.0.1:0", "index": wd("index"), "threads": 2, "plans": plans}
    cfg.update(extra)
    path = wd(name)
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


class Daemon:
    """longmixd serve on 127.0.0.1 with an ephemeral port (read from --port-file)."""
    running = []  # for the watchdog's report

    def __init__(self, wd, config, extra=()):
        self.port_file = wd(f"port.{time.monotonic_ns()}")
        self.log_path = self.port_file + ".log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([LONGMIXD, "serve", "--config", config, "--port-file", self.port_file, *extra],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None:
                raise Failure(f"longmixd exited {self.proc.returncode} at start: {self.log_text()}")
            check(time.monotonic() < deadline, "longmixd did not start within 30 s")
            time.sleep(0.02)
        self.port = int(open(self.port_file).read())
        self.url = f"http://127.0.0.1:{self.port}"
        Daemon.running.append(self)

    def log_text(self):
        self.log.flush()
        return open(self.log_path, "rb").read().decode(errors="replace")

    def stop(self):
        """SIGTERM; the daemon must drain and exit 0."""
        if self in Daemon.running:
            Daemon.running.remove(self)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise Failure("longmixd did not stop within 30 s of SIGTERM")
        self.log.close()
        check(self.proc.returncode == 0, f"longmixd exited {self.proc.returncode} after SIGTERM")


def http(url, headers=None, method="GET", data=None):
    """Returns (status, headers dict with lower-case names, body bytes); never raises on 4xx/5xx."""
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def blake2b_256(b):
    return hashlib.blake2b(b, digest_size=32).hexdigest()


def zstd_decompress(b):
    return subprocess.run(["zstd", "-dc"], input=b, capture_output=True, check=True).stdout


def shm_usage():
    """/dev/shm size and use: torch's DataLoader passes tensors through it, and when it is full
    a worker's item is dropped (the loader then waits) or the worker dies of SIGBUS."""
    try:
        st = os.statvfs("/dev/shm")
        return (f"/dev/shm: {st.f_blocks * st.f_frsize / 2**20:.0f} MiB, "
                f"{st.f_bavail * st.f_frsize / 2**20:.0f} MiB free")
    except OSError as e:
        return f"/dev/shm: {e}"


def _descendants(pid):
    """Process ids below pid, from /proc (children before grandchildren)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
                parent[int(d)] = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        kids = sorted(k for k, v in parent.items() if v == p)
        out += kids
        todo += kids
    return out


def _watchdog_report(name, seconds):
    """A test still running near ctest's timeout: print where everything waits, then fail it, so
    a hang leaves a diagnosis in the CI log instead of a bare 'Timeout'."""
    out = sys.stdout
    print(f"WATCHDOG: {name} still running after {seconds} s; stacks follow", file=out, flush=True)
    faulthandler.dump_traceback(file=out, all_threads=True)
    print(f"--- {shm_usage()}", file=out, flush=True)
    for d in list(Daemon.running):
        print(f"--- longmixd (pid {d.proc.pid}) log tail:\n{d.log_text()[-4000:]}", file=out, flush=True)
    gdb = shutil.which("gdb")
    for pid in _descendants(os.getpid()):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")[:200]
            state = [l for l in open(f"/proc/{pid}/status") if l.startswith("State:")]
            wchan = open(f"/proc/{pid}/wchan").read()
        except OSError:
            continue
        print(f"--- pid {pid}: {cmd} | {state[0].strip() if state else '?'} | wchan {wchan}", file=out, flush=True)
        if gdb:
            p = subprocess.run([gdb, "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt 25"],
                               capture_output=True, text=True, timeout=60)
            print("\n".join(l for l in p.stdout.splitlines() if l.startswith(("#", "Thread"))), file=out, flush=True)
    for pid in _descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    os._exit(1)


def main(tests):
    """Runs the tests named by argv[1:] (or all); returns a process exit code: 1 when one failed,
    SKIP when every test asked for was skipped, else 0."""
    names = sys.argv[1:] or list(tests)
    failed = skipped = 0
    watchdog_s = float(os.environ.get("LMX_TEST_WATCHDOG", "270"))  # ctest kills at 300 s
    for name in names:
        wd = Workdir()
        t0 = time.monotonic()
        dog = threading.Timer(watchdog_s, _watchdog_report, (name, watchdog_s))
        dog.daemon = True
        dog.start()
        try:
            tests[name](wd)
            print(f"ok   {name} ({time.monotonic() - t0:.1f} s)")
            wd.cleanup()
        except Skip as e:
            skipped += 1
            print(f"SKIP {name}: {e}")
            wd.cleanup()
        except Exception as e:  # a crash of the test itself is a failure too
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e} (files kept in {wd.path})")
        finally:
            dog.cancel()
    if failed:
        return 1
    return SKIP if skipped == len(names) else 0
