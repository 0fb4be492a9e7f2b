#!/usr/bin/env python3
"""The README's Slurm array + merge, run on a real Slurm (issue #15): munged, slurmctld and slurmd
(Debian's slurm-wlm 22.05 and munge) started on this machine as one node with 2 CPUs, a private
config in a temp folder and loopback ports; the array job indexes slices (`longmixd index --shard
I/N`), a job with --dependency=afterok merges them (`--merge`) and verifies the result; the merged
index must equal one local run (same index id, same statistics).

  tests/soak/slurm_index.py [--slices N] [--keep]

Environment: LONGMIXD (default build/server/longmixd). Exit 0 = pass, 1 = fail, 77 = skipped
(not root, or slurm/munge not installed: deploy/install-deps.sh installs slurmctld, slurmd,
slurm-client and munge). ctest: integration.index.slurm_array_merge."""
import argparse, json, os, shutil, signal, socket, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
LONGMIXD = os.path.abspath(os.environ.get("LONGMIXD", os.path.join(SOURCE, "build", "server", "longmixd")))
SKIP = 77
TOOLS = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cluster:
    """munged + slurmctld + slurmd for one node, everything under `work`; stop() ends exactly the
    processes it started."""

    def __init__(self, work, cpus=2):
        self.work, self.procs = work, []
        self.node = socket.gethostname().split(".")[0]
        os.chmod(work, 0o700)
        mdir = os.path.join(work, "munge")
        os.makedirs(mdir, mode=0o700)
        key = os.path.join(mdir, "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        self.sock = os.path.join(mdir, "sock")
        for d in ("state", "spool", "jobs"):
            os.makedirs(os.path.join(work, d))
        open(os.path.join(work, "plugstack.conf"), "w").close()
        self.conf = os.path.join(work, "slurm.conf")
        with open(self.conf, "w") as f:
            f.write(f"""ClusterName=lmxtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.sock}
StateSaveLocation={work}/state
SlurmdSpoolDir={work}/spool
SlurmctldPidFile={work}/slurmctld.pid
SlurmdPidFile={work}/slurmd.pid
SlurmctldLogFile={work}/slurmctld.log
SlurmdLogFile={work}/slurmd.log
PlugStackConfig={work}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=600
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=lmx Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        self.start(["munged", "-F", "-f", f"--socket={self.sock}", f"--key-file={key}",
                    f"--log-file={mdir}/munged.log", f"--pid-file={mdir}/munged.pid", f"--seed-file={mdir}/seed"],
                   "munged")
        self.wait(lambda: os.path.exists(self.sock), "munged's socket")
        self.start(["slurmctld", "-D", "-i", "-f", self.conf], "slurmctld")
        self.start(["slurmd", "-D", "-N", self.node, "-f", self.conf], "slurmd")
        self.wait(lambda: self.sh(["sinfo", "-h", "-o", "%T"]).strip() in ("idle",), "the node to be idle")

    def start(self, args, name):
        log = open(os.path.join(self.work, name + ".out"), "wb")
        self.procs.append((name, subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env)))

    def sh(self, args, check=False):
        p = subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=30)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
        return p.stdout

    def wait(self, cond, what, seconds=30):
        deadline = time.monotonic() + seconds
        while not cond():
            for name, p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited {p.returncode} while waiting for {what}: {self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}: {self.logs()}")
            time.sleep(0.2)

    def logs(self):
        out = []
        for n in ("slurmctld.log", "slurmd.log", "munge/munged.log", "slurmctld.out", "slurmd.out", "munged.out"):
            p = os.path.join(self.work, n)
            if os.path.exists(p):
                out.append(f"--- {n}:\n" + "".join(open(p, errors="replace").readlines()[-15:]))
        return "\n".join(out)

    def job_state(self, jobid):
        """States of a job's tasks (array tasks each have one), from scontrol."""
        text = self.sh(["scontrol", "show", "job", "-o", str(jobid)])
        return [w.split("=", 1)[1] for line in text.splitlines() for w in line.split() if w.startswith("JobState=")]

    def stop(self):
        subprocess.run(["scontrol", "shutdown"], env=self.env, capture_output=True, timeout=30)
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def stats(idx):
    return json.loads(subprocess.run([LONGMIXD, "stats", idx, "--json"], capture_output=True, check=True).stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIP: slurmd and munged need root here (one-node test cluster)")
        return SKIP
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        print(f"SKIP: not installed: {', '.join(missing)} (Debian: slurmctld slurmd slurm-client munge)")
        return SKIP
    if not os.access(LONGMIXD, os.X_OK):
        print(f"FAIL: no longmixd at {LONGMIXD} (set LONGMIXD)")
        return 1
    t0 = time.monotonic()
    work = tempfile.mkdtemp(prefix="lmx-slurm-")
    cluster = None
    ok = False
    try:
        inputs = subprocess.run([sys.executable, os.path.join(SOURCE, "tests", "integration", "make-synth-corpus.py"),
                                 os.path.join(work, "corpus")], capture_output=True, text=True,
                                check=True).stdout.split()
        local = os.path.join(work, "local")
        subprocess.run([LONGMIXD, "index", "--tokenizer", "bytes", "--threads", "2", "--no-progress", "--out", local,
                        *inputs], check=True, capture_output=True, cwd=work)
        cluster = Cluster(work)
        t_up = time.monotonic() - t0
        # The README's two scripts, with this build's longmixd and this test's inputs.
        jobs = os.path.join(work, "jobs")
        index_sh, merge_sh = os.path.join(jobs, "index.sh"), os.path.join(jobs, "merge.sh")
        with open(index_sh, "w") as f:
            f.write(f"""#!/bin/sh
#SBATCH --array=0-{a.slices - 1} --cpus-per-task=1
cd {work}
{LONGMIXD} index --tokenizer bytes --threads 1 --no-progress \\
    --shard ${{SLURM_ARRAY_TASK_ID}}/${{SLURM_ARRAY_TASK_COUNT}} \\
    --out {work}/idx.part${{SLURM_ARRAY_TASK_ID}} {' '.join(inputs)}
""")
        with open(merge_sh, "w") as f:
            f.write(f"""#!/bin/sh
{LONGMIXD} index --merge --out {work}/idx {work}/idx.part* && {LONGMIXD} verify {work}/idx
""")
        arr = cluster.sh(["sbatch", "--parsable", "-o", os.path.join(jobs, "%x-%A_%a.out"), index_sh],
                         check=True).strip().split(";")[0]
        mrg = cluster.sh(["sbatch", "--parsable", "-o", os.path.join(jobs, "%x-%j.out"),
                          f"--dependency=afterok:{arr}", merge_sh],
                         check=True).strip().split(";")[0]
        print(f"cluster up in {t_up:.1f} s; array job {arr} ({a.slices} slices), merge job {mrg} after it")
        done = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
        cluster.wait(lambda: (lambda s: s and all(x in done for x in s))(cluster.job_state(mrg)),
                     "the merge job to finish", seconds=120)
        arr_states, mrg_states = cluster.job_state(arr), cluster.job_state(mrg)
        for n in sorted(os.listdir(jobs)):
            if n.endswith(".out"):
                print(f"--- {n}: " + open(os.path.join(jobs, n), errors="replace").read().strip())
        if arr_states != ["COMPLETED"] * a.slices or mrg_states != ["COMPLETED"]:
            raise RuntimeError(f"array job states {arr_states}, merge job {mrg_states}")
        got, want = stats(os.path.join(work, "idx")), stats(local)
        if got["index_id"] != want["index_id"] or got != want:
            raise RuntimeError(f"merged index {got['index_id']} differs from one local run {want['index_id']}")
        print(f"PASS: merged index {got['index_id'][:16]}... equals one local run ({got['total_docs']} documents, "
              f"{got['total_tokens']} tokens, {len(os.listdir(os.path.join(work, 'idx', 'shards')))} shards) "
              f"in {time.monotonic() - t0:.1f} s")
        ok = True
    except Exception as e:  # noqa: BLE001 - any failure is reported with the cluster's logs
        print(f"FAIL: {e}")
        if cluster:
            print(cluster.logs())
    finally:
        if cluster:
            cluster.stop()
        if ok and not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work folder kept: {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
