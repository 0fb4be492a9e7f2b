"""python3 -m longmix fetch|stats: the longmix CLI's fetch --json and stats --json through the
Python package (handy where only the wheel is installed)."""
import argparse
import ctypes
import json
import os
import sys

from . import _lib
from .client import Client


def _fetch(a):
    c = Client(a.url, a.plan, rank=a.rank, world=a.world, token=a.token, prefetch=0,
               cp_rank=a.cp_rank, cp_size=a.cp_size, cp_layout=a.cp_layout)
    with c:
        b = c.fetch(a.step)
        seqs = []
        for s in range(b.n_seqs):
            seqs.append({"tokens": b.tokens[s].tolist(), "labels": b.labels[s].tolist(),
                         "position_ids": b.position_ids[s].tolist(), "next_token": int(b.next_tokens[s]),
                         "spans": [sp._asdict() for sp in b.spans[s]], "cu_seqlens": b.cu_seqlens[s].tolist()})
            if b.padded:
                seqs[-1]["cu_seqlens_real"] = b.cu_seqlens_real[s].tolist()
        out = {"plan": a.plan, "plan_id": b.plan_id, "step": b.step, "rank": b.rank, "world": b.world,
               "seq_len": b.seq_len, "token_bytes": b.token_bytes, "cp_rank": b.cp_rank, "cp_size": b.cp_size,
               "ignore_index": b.ignore_index, "cp_layout": b.cp_layout, "sequences": seqs}
        if b.padded:
            out["padded"] = True
    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


def _stats(a):
    path = "/v1/stats" + (f"?plan={a.plan}" if a.plan else "")
    body, n, err = ctypes.c_void_p(), ctypes.c_size_t(), _lib._Error()
    rc = _lib._L.lmx_get(a.url.encode(), a.token.encode() if a.token else None, path.encode(), 0,
                         ctypes.byref(body), ctypes.byref(n), ctypes.byref(err))
    if rc:
        _lib._raise(rc, err)
    try:
        sys.stdout.write(ctypes.string_at(body, n.value).decode())
    finally:
        _lib._L.lmx_free(body)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m longmix")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="one batch as JSON (with labels and position_ids)")
    f.add_argument("--url", required=True)
    f.add_argument("--plan", required=True)
    f.add_argument("--step", type=int, required=True)
    f.add_argument("--rank", type=int, default=0)
    f.add_argument("--world", type=int, default=1)
    f.add_argument("--cp-rank", type=int, default=0)
    f.add_argument("--cp-size", type=int, default=1)
    f.add_argument("--cp-layout", choices=("zigzag", "thd"), default="zigzag")
    f.add_argument("--token", default=os.environ.get("LONGMIX_TOKEN"))
    f.add_argument("--json", action="store_true", help="accepted for symmetry with longmix fetch (always JSON)")
    s = sub.add_parser("stats", help="mixture statistics (JSON)")
    s.add_argument("--url", required=True)
    s.add_argument("--plan")
    s.add_argument("--token", default=os.environ.get("LONGMIX_TOKEN"))
    s.add_argument("--json", action="store_true", help="accepted for symmetry (always JSON)")
    a = p.parse_args(argv)
    try:
        (_fetch if a.cmd == "fetch" else _stats)(a)
    except _lib.LongmixError as e:
        print(f"longmix {a.cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
