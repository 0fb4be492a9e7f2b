#!/usr/bin/env python3
"""Deployment tests (issue #8): the installed systemd unit, the example config, and three
longmixd replicas behind nginx with deploy/nginx/longmix.conf.

  test_deploy.py [TEST...]      (ctest runs one test per process; exit 77 = skipped)

  systemd_unit     `cmake --install` into a temporary prefix writes the unit with that prefix's
                   paths; `systemd-analyze verify` accepts it; `systemd-analyze security
                   --offline=true` exposure is printed and must stay <= 2.0; under strace (when
                   present, release builds) the daemon's system calls through start, sd_notify,
                   batches, SIGHUP and SIGTERM all lie within the unit's SystemCallFilter= and its
                   socket families within RestrictAddressFamilies=.
  example_config   deploy/longmixd.example.json with real keygen hashes and a test index: the
                   daemon starts, refuses requests without a token, serves with one, and a token
                   rotated in the config with SIGHUP (what `systemctl reload` sends) takes effect.
  nginx_failover   nginx (installed from Debian when missing and possible) with the repo's
                   config, ports substituted, in front of three daemons; several concurrent
                   `longmix fetch` clients over a range of steps; one daemon is killed with
                   SIGKILL mid-run: every client finishes and every batch is byte-identical to the
                   one a single daemon served."""
import json, os, random, re, shutil, signal, socket, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmx_itest import (LONGMIX, LONGMIXD, Daemon, Failure, Skip, blake2b_256, check, http, main, make_index, run,
                       write_config)

SOURCE = os.environ.get("LMX_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.environ.get("LMX_BUILD_DIR")
PLANS = {"ps": {"strategy": "per_source", "seq_len": 16384, "global_batch": 8, "seed": 3},
         "orig": {"strategy": "original", "seq_len": 8192, "global_batch": 4, "seed": 7}}



def keygen():
    return json.loads(run([LONGMIXD, "keygen", "--json"]).stdout)


# ---- systemd unit ----

def install_prefix(wd):
    check(BUILD, "LMX_BUILD_DIR is not set (run through ctest)")
    prefix = wd("prefix")
    run([os.environ.get("CMAKE_COMMAND", "cmake"), "--install", BUILD, "--prefix", prefix], timeout=300)
    return prefix


def test_systemd_unit(wd):
    sa = shutil.which("systemd-analyze")
    if not sa:
        raise Skip("systemd-analyze is not installed (Debian package systemd)")
    prefix = install_prefix(wd)
    unit = os.path.join(prefix, "lib", "systemd", "system", "longmixd.service")
    check(os.path.exists(unit), f"cmake --install did not write {unit}")
    for f in ["share/longmix/longmixd.example.json", "share/longmix/nginx/longmix.conf",
              "share/doc/longmix/OPERATIONS.md", "share/doc/longmix/RELIABILITY.md", "share/doc/longmix/SCALING.md"]:
        check(os.path.exists(os.path.join(prefix, f)), f"cmake --install did not write {f}")
    text = open(unit).read()
    keys = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys.setdefault(k.strip(), []).append(v.strip())
    want_exec = f"{prefix}/bin/longmixd serve --config {prefix}/etc/longmix/longmixd.json"
    check(keys.get("ExecStart") == [want_exec], f"ExecStart {keys.get('ExecStart')} != {want_exec!r}")
    check(os.access(f"{prefix}/bin/longmixd", os.X_OK), "the unit's binary is not installed")
    for k, v in {"Type": "notify", "ExecReload": "/bin/kill -HUP $MAINPID", "DynamicUser": "yes",
                 "StateDirectory": "longmix", "ProtectSystem": "strict", "ProtectHome": "yes",
                 "NoNewPrivileges": "yes", "PrivateTmp": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
                 "CapabilityBoundingSet": "", "LimitNOFILE": "65536", "SystemCallArchitectures": "native"}.items():
        check(v in keys.get(k, []), f"{k}={v} missing from the unit ({keys.get(k)})")
    check("@system-service" in keys.get("SystemCallFilter", []), "SystemCallFilter=@system-service missing")
    # `verify` loads the unit as systemd would (unknown keys, bad values, missing ExecStart binary);
    # it needs no running systemd. It prints warnings for problems but may still exit 0: any
    # output about our unit is a failure.
    p = subprocess.run([sa, "verify", unit], capture_output=True, text=True, timeout=120, cwd=wd.path)
    out = (p.stdout + p.stderr).strip()
    mine = [l for l in out.splitlines() if "longmixd" in l]
    if p.returncode != 0 and not mine and ("bus" in out.lower() or "not been booted" in out):
        raise Skip(f"systemd-analyze verify cannot run here: {out[:200]}")
    check(p.returncode == 0 and not mine, f"systemd-analyze verify: exit {p.returncode}: {out}")
    p = subprocess.run([sa, "security", "--offline=true", unit], capture_output=True, text=True, timeout=120,
                       cwd=wd.path)
    m = re.search(r"Overall exposure level for longmixd.service: ([0-9.]+) (\w+)", p.stdout)
    if not m:
        print(f"note: systemd-analyze security --offline unavailable here ({p.stderr.strip()[:200]})")
    else:
        print(f"systemd-analyze security: exposure {m.group(1)} {m.group(2)}")
        check(float(m.group(1)) <= 2.0, f"exposure {m.group(1)} > 2.0:\n{p.stdout}")
    syscalls_within_filter(wd, sa, keys)


def expand_group(sa, name, memo):
    """The system calls of a systemd-analyze syscall-filter group, nested groups expanded."""
    if name not in memo:
        memo[name] = set()
        p = subprocess.run([sa, "syscall-filter", name], capture_output=True, text=True, timeout=60)
        for line in p.stdout.splitlines()[1:]:
            w = line.strip()
            if not w or w.startswith("#"):
                continue
            memo[name] |= expand_group(sa, w, memo) if w.startswith("@") else {w}
    return memo[name]


def syscalls_within_filter(wd, sa, keys):
    """Runs the daemon under strace through start, batches (plain, zstd), /metrics, SIGHUP and
    SIGTERM, and checks every system call it made is allowed by the unit's SystemCallFilter= lines
    and every socket family by RestrictAddressFamilies= (a call outside the filter would fail with
    EPERM under systemd)."""
    strace = shutil.which("strace")
    if not strace:
        print("note: strace missing: the daemon's system calls were not checked against the filter")
        return
    if "asan" in subprocess.run(["ldd", LONGMIXD], capture_output=True, text=True).stdout:
        print("note: sanitizer build: its runtime's system calls are not the daemon's; filter check skipped")
        return
    memo, allowed = {}, set()
    for line in keys["SystemCallFilter"]:
        deny = line.startswith("~")
        names = set()
        for w in line.lstrip("~").split():
            names |= expand_group(sa, w, memo) if w.startswith("@") else {w}
        allowed = allowed - names if deny else allowed | names
    check(len(allowed) > 100, f"could not expand the filter ({len(allowed)} calls)")
    make_index(wd)
    cfg = write_config(wd, PLANS)
    trace = wd("strace.txt")
    pf = wd("strace.port")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # as systemd's NOTIFY_SOCKET: sd_notify is traced too
    notify.bind(wd("notify.sock"))
    notify.settimeout(10)
    proc = subprocess.Popen([strace, "-f", "-qq", "-o", trace, LONGMIXD, "serve", "--config", cfg, "--port-file", pf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, NOTIFY_SOCKET=wd("notify.sock")))
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(pf):
            if proc.poll() is not None:
                print(f"note: strace cannot trace here (exit {proc.returncode}): filter check skipped")
                return
            check(time.monotonic() < deadline, "longmixd under strace did not start")
            time.sleep(0.05)
        time.sleep(0.1)
        # Signals go to the daemon itself (strace would only detach on them): the first pid traced.
        pid = int(open(trace).readline().split()[0])
        url = f"http://127.0.0.1:{int(open(pf).read())}"
        for path, h in [("/v1/plans/ps/batches/1?rank=1&world=2", {}), ("/v1/plans/ps/batches/2", {"Accept-Encoding": "zstd"}),
                        ("/metrics", {}), ("/v1/stats", {}), ("/", {})]:
            st, _, _ = http(url + path, h)
            check(st == 200, f"{path} under strace: {st}")
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.5)
        check(http(url + "/v1/plans/orig/batches/3")[0] == 200, "batch after SIGHUP")
        os.kill(pid, signal.SIGTERM)
        check(proc.wait(timeout=60) == 0, f"longmixd under strace exited {proc.returncode}")
        msgs = []
        notify.settimeout(0.5)
        try:
            while True:
                msgs.append(notify.recv(4096).decode())
        except OSError:
            pass
        check(any("READY=1" in m for m in msgs) and any("STOPPING=1" in m for m in msgs), f"sd_notify: {msgs}")
    finally:
        notify.close()
        if proc.poll() is None:
            try:
                os.kill(int(open(trace).readline().split()[0]), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
            proc.kill()
            proc.wait()
    used, families = set(), set()
    for line in open(trace):
        m = re.match(r"\d+\s+([a-z0-9_]+)\(", line)
        if m:
            used.add(m.group(1))
        m = re.search(r"\bsocket\((AF_[A-Z0-9]+)", line)
        if m:
            families.add(m.group(1))
    used.discard("execve")  # systemd execs the daemon before the filter applies to it
    outside = sorted(used - allowed)
    check(not outside, f"system calls outside the unit's SystemCallFilter: {outside}")
    want_fam = set(keys["RestrictAddressFamilies"][0].split())
    check(families <= want_fam, f"socket families {sorted(families - want_fam)} not in RestrictAddressFamilies")
    print(f"daemon under strace: {len(used)} distinct system calls, all within the filter; socket families "
          f"{sorted(families)}")


# ---- example config ----

def test_example_config(wd):
    make_index(wd)
    cfg = json.load(open(os.path.join(SOURCE, "deploy", "longmixd.example.json")))
    for k in ["listen", "index", "auth", "plans", "state_dir"]:
        check(k in cfg, f"example config lacks {k!r}")
    check(cfg["listen"].endswith(":8470"), "example listens elsewhere than the documented port 8470")
    for name, want in [("per-source", "per_source"), ("global", "global"), ("original", "original"),
                       ("cut4k", "cut")]:
        check(cfg["plans"].get(name, {}).get("strategy") == want, f"plan {name} missing or not {want}")
    # Unedited, it refuses to start and says what to do.
    raw = dict(cfg, index=wd("index"), state_dir=wd("state"))
    json.dump(raw, open(wd("raw.json"), "w"))
    p = run([LONGMIXD, "serve", "--config", wd("raw.json"), "--listen", "127.0.0.1:0", "--port-file", wd("p0")],
            ok=False, timeout=60)
    check(b"keygen" in p.stderr, f"unedited example config: unclear error {p.stderr!r}")
    # Edited as OPERATIONS.md says: real hashes, the index, the state directory.
    rd, adm, rd2 = keygen(), keygen(), keygen()
    cfg.update(index=wd("index"), state_dir=wd("state"), threads=2)
    cfg["auth"] = {"read": [rd["hash"]], "admin": [adm["hash"]]}
    # seq_len 131072 plans need a corpus that fills them; the test index has ~1.9M tokens: fine.
    path = wd("longmixd.json")
    json.dump(cfg, open(path, "w"))
    d = Daemon(wd, path, extra=["--listen", "127.0.0.1:0"])
    try:
        st, _, _ = http(d.url + "/healthz")
        check(st == 200, f"/healthz {st}")
        st, _, body = http(d.url + "/v1/plans")
        check(st == 401, f"no token: {st} {body[:200]!r}")
        bearer = lambda t: {"Authorization": "Bearer " + t["token"]}
        st, _, body = http(d.url + "/v1/plans", bearer(rd))
        check(st == 200 and set(json.loads(body)["plans"]) == set(cfg["plans"]), f"/v1/plans {st} {body[:300]!r}")
        st, h, body = http(d.url + "/v1/plans/cut4k/batches/0?rank=1&world=8", bearer(rd))
        check(st == 200 and h.get("x-longmix-digest") == "blake2b-256=" + blake2b_256(body), f"batch {st}")
        st, _, body = http(d.url + "/v1/stats", bearer(rd))
        check(st == 200 and "per-source" in json.loads(body)["plans"], f"/v1/stats {st}")
        # Token rotation: add the new token, reload, move the trainers, drop the old one, reload.
        cfg["auth"]["read"] = [rd["hash"], rd2["hash"]]
        json.dump(cfg, open(path + ".new", "w"))
        os.replace(path + ".new", path)
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while http(d.url + "/v1/plans", bearer(rd2))[0] != 200:
            check(time.monotonic() < deadline, "the new token was not accepted after SIGHUP")
            time.sleep(0.05)
        check(http(d.url + "/v1/plans", bearer(rd))[0] == 200, "old token refused during the overlap")
        cfg["auth"]["read"] = [rd2["hash"]]
        json.dump(cfg, open(path + ".new", "w"))
        os.replace(path + ".new", path)
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while http(d.url + "/v1/plans", bearer(rd))[0] != 401:
            check(time.monotonic() < deadline, "the old token still works after its removal and SIGHUP")
            time.sleep(0.05)
        check(http(d.url + "/v1/plans", bearer(rd2))[0] == 200, "new token refused after the rotation")
    finally:
        d.stop()


# ---- nginx ----

def find_nginx():
    for c in [shutil.which("nginx"), "/usr/sbin/nginx"]:
        if c and os.access(c, os.X_OK):
            return c
    if os.geteuid() == 0 and shutil.which("apt-get") and not os.environ.get("LMX_NO_APT"):
        print("nginx missing: apt-get install -y nginx-light (deploy/install-deps.sh lists it)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", RUNLEVEL="1")  # RUNLEVEL: no service start
        for args in (["apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx-light"],
                     ["apt-get", "update", "-q"],
                     ["apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx-light"]):
            try:
                p = subprocess.run(args, capture_output=True, env=env, timeout=300)
            except subprocess.TimeoutExpired:
                break
            if args[1] == "install" and p.returncode == 0:
                break
        if os.access("/usr/sbin/nginx", os.X_OK):
            return "/usr/sbin/nginx"
    raise Skip("nginx is not installed and could not be installed (apt-get install nginx-light)")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def nginx_site(listen_port, upstream_ports):
    """deploy/nginx/longmix.conf with the three upstream servers and the listen port replaced."""
    text = open(os.path.join(SOURCE, "deploy", "nginx", "longmix.conf")).read()
    ports = iter(upstream_ports)
    text, n = re.subn(r"^(\s*server\s+)[^\s;{]+:\d+", lambda m: f"{m.group(1)}127.0.0.1:{next(ports)}", text,
                      flags=re.M)
    check(n == len(upstream_ports), f"expected {len(upstream_ports)} upstream servers in longmix.conf, found {n}")
    text, n = re.subn(r"^(\s*listen\s+)8470;", rf"\g<1>127.0.0.1:{listen_port};", text, flags=re.M)
    check(n == 1, f"expected one `listen 8470;` in longmix.conf, found {n}")
    return text


class Nginx:
    def __init__(self, wd, nginx, site):
        d = wd("nginx")
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        with open(os.path.join(d, "longmix.conf"), "w") as f:
            f.write(site)
        v = subprocess.run([nginx, "-V"], capture_output=True, text=True).stderr
        temps = "".join(f"    {m}_temp_path {d}/tmp/{m};\n" for m in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
                        if m in ("client_body", "proxy") or f"--without-http_{m}_module" not in v)
        self.error_log = os.path.join(d, "error.log")
        conf = (f"daemon off;\nmaster_process on;\nworker_processes 2;\npid {d}/nginx.pid;\n"
                f"error_log {self.error_log} warn;\n" + ("user root;\n" if os.geteuid() == 0 else "") +
                "events { worker_connections 1024; }\n"
                f"http {{\n    access_log {d}/access.log;\n{temps}    include {d}/longmix.conf;\n}}\n")
        self.conf = os.path.join(d, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        p = subprocess.run([nginx, "-t", "-p", d, "-c", self.conf, "-e", self.error_log], capture_output=True, text=True)
        check(p.returncode == 0, f"nginx -t rejects the generated config: {p.stderr}")
        self.log = open(os.path.join(d, "stderr.log"), "wb")
        self.proc = subprocess.Popen([nginx, "-p", d, "-c", self.conf, "-e", self.error_log],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful shutdown of master and workers
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def test_nginx_failover(wd):
    nginx = find_nginx()
    make_index(wd)
    tok = keygen()
    cfg = write_config(wd, PLANS, auth={"read": [tok["hash"]]})
    hdr = {"Authorization": "Bearer " + tok["token"]}
    world = 2
    jobs = [(p, s, r) for p in PLANS for s in range(24) for r in range(world)]
    # The reference: one daemon, plain GETs.
    ref = {}
    d = Daemon(wd, cfg)
    try:
        for p, s, r in jobs:
            st, h, body = http(f"{d.url}/v1/plans/{p}/batches/{s}?rank={r}&world={world}", hdr)
            check(st == 200 and h.get("x-longmix-digest") == "blake2b-256=" + blake2b_256(body), f"ref {p}/{s}/{r}: {st}")
            ref[p, s, r] = body
    finally:
        d.stop()
    daemons = []
    try:
        for _ in range(3):
            daemons.append(Daemon(wd, cfg))
        lb_port = free_port()
        lb = Nginx(wd, nginx, nginx_site(lb_port, [x.port for x in daemons]))
    except BaseException:
        for d in daemons:
            d.proc.kill()
        raise
    lb_url = f"http://127.0.0.1:{lb_port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if http(lb_url + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            check(lb.proc.poll() is None, f"nginx exited {lb.proc.returncode}: {open(lb.error_log).read()[-2000:]}")
            check(time.monotonic() < deadline, "nginx did not answer /healthz within 20 s")
            time.sleep(0.05)
        # Through nginx: Authorization and Accept-Encoding reach the daemon, the digest comes back.
        st, _, _ = http(f"{lb_url}/v1/plans/ps/batches/0")
        check(st == 401, f"no token through nginx: {st}")
        st, h, body = http(f"{lb_url}/v1/plans/ps/batches/0?rank=1&world=2", dict(hdr, **{"Accept-Encoding": "zstd"}))
        check(st == 200 and h.get("content-encoding") == "zstd", f"zstd through nginx: {st} {h}")
        check(h.get("x-longmix-digest") == "blake2b-256=" + blake2b_256(ref["ps", 0, 1]), "digest through nginx")
        from lmx_itest import zstd_decompress
        check(zstd_decompress(body) == ref["ps", 0, 1], "zstd body through nginx differs")

        n_clients = 6
        done = [0]
        errors = []
        lock = threading.Lock()
        outs = wd("out")
        os.makedirs(outs)

        def client(i):
            rng = random.Random(i)
            mine = jobs[:]
            rng.shuffle(mine)
            for p, s, r in mine:
                out = os.path.join(outs, f"c{i}-{p}-{s}-{r}")
                args = [LONGMIX, "fetch", "--url", lb_url, "--plan", p, "--step", str(s), "--rank", str(r),
                        "--world", str(world), "--token", tok["token"], "--out", out]
                if i % 2:
                    args.append("--no-zstd")
                pr = subprocess.run(args, capture_output=True, timeout=120)
                with lock:
                    done[0] += 1
                    if pr.returncode != 0:
                        errors.append(f"client {i} {p}/{s}/{r}: exit {pr.returncode}: {pr.stderr.decode()[:300]}")
                    elif open(out, "rb").read() != ref[p, s, r]:
                        errors.append(f"client {i} {p}/{s}/{r}: bytes differ from the single-daemon run")

        ts = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        total = n_clients * len(jobs)
        victim = daemons[1]
        while done[0] < total // 3 and any(t.is_alive() for t in ts):
            time.sleep(0.01)
        at = done[0]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        for t in ts:
            t.join()
        dt = time.monotonic() - t0
        check(at < total, "the run finished before the kill")
        check(not errors, f"{len(errors)} failed fetches, first: {errors[:3]}")
        log = open(lb.error_log).read()
        kinds = {}
        for m in re.finditer(r"\[(?:error|warn)\] [^:]*: \*\d+ ([^,(]*)", log):
            kinds[m.group(1).strip()] = kinds.get(m.group(1).strip(), 0) + 1
        upstream_errors = sum(kinds.values())
        print(f"{total} fetches by {n_clients} clients in {dt:.1f} s; daemon on port {victim.port} killed "
              f"(SIGKILL) after {at}; nginx logged {kinds}; all bytes identical")
        check(upstream_errors >= 1, "nginx never saw the killed replica fail (the kill did not hit traffic?)")
        st, _, _ = http(lb_url + "/healthz")
        check(st == 200, f"/healthz through nginx after the kill: {st}")
    finally:
        lb.stop()
        daemons[1].proc.kill()
        daemons[1].proc.wait()
        daemons[1].log.close()
        for d in (daemons[0], daemons[2]):
            d.stop()


TESTS = {f.__name__[5:]: f for f in [test_systemd_unit, test_example_config, test_nginx_failover]}


if __name__ == "__main__":
    sys.exit(main(TESTS))
