"""longmix: Python binding of liblongmix (ctypes; no build step beyond the C library).

    import longmix
    with longmix.Client("http://a:8470,http://b:8470", "per-source", rank=0, world=8) as c:
        b = c.next()                  # verified batch for step 0 (next K prefetched in the background)
        b.tokens                      # numpy [n_seqs, seq_len], uint16 or uint32 as served (zero copy)
        b.next_tokens                 # numpy [n_seqs]: the token after each sequence
        b.cu_seqlens                  # list of int32 arrays (FlashAttention varlen boundaries)
        b.spans                       # per sequence, a list of Span(domain, doc, offset, start, length)

The library is found through $LONGMIX_LIBRARY (a path), then liblongmix.so next to this module,
then the default loader path (ldconfig, LD_LIBRARY_PATH). Errors raise LongmixError with the
C library's code and message. `LongmixDataset` (PyTorch IterableDataset) imports torch on first use.
"""
import collections
import ctypes
import ctypes.util
import os

import numpy as np

__all__ = ["Client", "Batch", "Span", "LongmixError", "LongmixDataset", "library", "version"]

LMX_ERANGE = -7
_ERROR_NAMES = {0: "LMX_OK", -1: "LMX_EINVAL", -2: "LMX_ENOMEM", -3: "LMX_EIO", -4: "LMX_EFORMAT",
                -5: "LMX_ECHECKSUM", -6: "LMX_ENOTFOUND", -7: "LMX_ERANGE", -8: "LMX_EUNSUPPORTED",
                -9: "LMX_ENETWORK", -10: "LMX_ETIMEOUT", -11: "LMX_EHTTP", -12: "LMX_EAUTH", -13: "LMX_EINTERNAL"}


class LongmixError(Exception):
    """An error from liblongmix: .code (negative LMX_E* value), .name ("LMX_ECHECKSUM"), .message."""

    def __init__(self, code, message):
        self.code = code
        self.name = _ERROR_NAMES.get(code, f"LMX_E{code}")
        self.message = message
        super().__init__(f"{message} [{self.name}]")

    def __reduce__(self):  # picklable, so it crosses from DataLoader workers intact
        return (LongmixError, (self.code, self.message))


class _Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 512)]


class _Options(ctypes.Structure):  # mirrors lmx_client_options in longmix.h
    _fields_ = [("urls", ctypes.c_char_p), ("plan", ctypes.c_char_p), ("rank", ctypes.c_uint32),
                ("world", ctypes.c_uint32), ("token", ctypes.c_char_p), ("start_step", ctypes.c_uint64),
                ("prefetch", ctypes.c_uint32), ("timeout_ms", ctypes.c_uint32), ("retries", ctypes.c_uint32),
                ("no_zstd", ctypes.c_int), ("deadline_ms", ctypes.c_uint32),
                ("max_batch_bytes", ctypes.c_uint64)]


class _SpanInfo(ctypes.Structure):
    _fields_ = [("doc", ctypes.c_uint64), ("offset", ctypes.c_uint64), ("start", ctypes.c_uint32),
                ("length", ctypes.c_uint32), ("domain", ctypes.c_char_p)]


def _load():
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = []
    if os.environ.get("LONGMIX_LIBRARY"):
        candidates.append(os.environ["LONGMIX_LIBRARY"])
    candidates += [os.path.join(here, "liblongmix.so"), os.path.join(here, "liblongmix.so.0"), "liblongmix.so.0",
                   "liblongmix.so"]
    found = ctypes.util.find_library("longmix")
    if found:
        candidates.append(found)
    errors = []
    for path in candidates:
        if os.sep in path and not os.path.exists(path):
            errors.append(f"{path}: no such file")
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(str(e))
    raise ImportError("longmix: cannot load liblongmix (set LONGMIX_LIBRARY to its path): " + "; ".join(errors))


library = _load()
_L = library
_P, _E = ctypes.c_void_p, ctypes.POINTER(_Error)
for _name, _res, _args in [
        ("lmx_version", ctypes.c_char_p, []),
        ("lmx_strerror", ctypes.c_char_p, [ctypes.c_int]),
        ("lmx_client_options_init", None, [ctypes.POINTER(_Options)]),
        ("lmx_client_open", ctypes.c_int, [ctypes.POINTER(_Options), ctypes.POINTER(_P), _E]),
        ("lmx_client_close", None, [_P]),
        ("lmx_client_next", ctypes.c_int, [_P, ctypes.POINTER(_P), _E]),
        ("lmx_client_fetch", ctypes.c_int, [_P, ctypes.c_uint64, ctypes.POINTER(_P), _E]),
        ("lmx_client_fetch_into", ctypes.c_int, [_P, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t,
                                                 ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(_P), _E]),
        ("lmx_client_seek", ctypes.c_int, [_P, ctypes.c_uint64]),
        ("lmx_client_position", ctypes.c_uint64, [_P]),
        ("lmx_batch_free", None, [_P]),
        ("lmx_batch_plan_id", ctypes.c_char_p, [_P]),
        ("lmx_batch_step", ctypes.c_uint64, [_P]),
        ("lmx_batch_rank", ctypes.c_uint32, [_P]),
        ("lmx_batch_world", ctypes.c_uint32, [_P]),
        ("lmx_batch_n_seqs", ctypes.c_uint32, [_P]),
        ("lmx_batch_seq_len", ctypes.c_uint32, [_P]),
        ("lmx_batch_token_bytes", ctypes.c_uint32, [_P]),
        ("lmx_batch_tokens", ctypes.c_void_p, [_P]),
        ("lmx_batch_next_token", ctypes.c_uint32, [_P, ctypes.c_uint32]),
        ("lmx_batch_n_spans", ctypes.c_uint32, [_P, ctypes.c_uint32]),
        ("lmx_batch_span", ctypes.c_int, [_P, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(_SpanInfo)]),
        ("lmx_batch_cu_seqlens", ctypes.c_uint32, [_P, ctypes.c_uint32, ctypes.POINTER(ctypes.c_int32),
                                                   ctypes.c_uint32]),
        ("lmx_batch_body", ctypes.c_void_p, [_P, ctypes.POINTER(ctypes.c_size_t)])]:
    _f = getattr(_L, _name)
    _f.restype = _res
    _f.argtypes = _args


def version():
    return _L.lmx_version().decode()


def _raise(rc, err):
    msg = err.message.decode("utf-8", "replace") or _L.lmx_strerror(rc).decode()
    raise LongmixError(rc, msg)


Span = collections.namedtuple("Span", "domain doc offset start length")


class Batch:
    """A verified batch. The numpy views (tokens, body) point into the C batch's buffer; each view
    keeps this Batch (and so the C memory) alive, so they stay valid after the Batch is dropped."""

    def __init__(self, handle):
        self._h = ctypes.c_void_p(handle)
        h = self._h
        self.plan_id = _L.lmx_batch_plan_id(h).decode()
        self.step = _L.lmx_batch_step(h)
        self.rank = _L.lmx_batch_rank(h)
        self.world = _L.lmx_batch_world(h)
        self.n_seqs = _L.lmx_batch_n_seqs(h)
        self.seq_len = _L.lmx_batch_seq_len(h)
        self.token_bytes = _L.lmx_batch_token_bytes(h)
        self._cu = self._spans = None

    def __del__(self):
        h = getattr(self, "_h", None)
        if h is not None and h.value:
            _L.lmx_batch_free(h)
            self._h = None

    def _view(self, ptr, ctype, count):
        """A numpy array over C memory that keeps this batch alive (through the ctypes array)."""
        arr = (ctype * count).from_address(ptr)
        arr._lmx_owner = self
        return np.ctypeslib.as_array(arr)

    @property
    def tokens(self):
        """numpy array [n_seqs, seq_len] of uint16 or uint32 (as served); read-only zero-copy view."""
        # A new view each time (cheap): caching it here would make a reference cycle
        # (batch -> view -> batch) that frees the C batch only when the cyclic GC runs.
        n = self.n_seqs * self.seq_len
        ctype = ctypes.c_uint16 if self.token_bytes == 2 else ctypes.c_uint32
        a = self._view(_L.lmx_batch_tokens(self._h), ctype, max(n, 1))[:n]
        a = a.view(np.dtype("<u2" if self.token_bytes == 2 else "<u4")).reshape(self.n_seqs, self.seq_len)
        a.flags.writeable = False
        return a

    @property
    def next_tokens(self):
        """numpy uint32 [n_seqs]: the token following each sequence in the plan's stream."""
        return np.array([_L.lmx_batch_next_token(self._h, s) for s in range(self.n_seqs)], dtype=np.uint32)

    @property
    def cu_seqlens(self):
        """list (one per sequence) of int32 arrays (0, ..., seq_len); empty arrays when the plan has them off."""
        if self._cu is None:
            out = []
            for s in range(self.n_seqs):
                n = _L.lmx_batch_cu_seqlens(self._h, s, None, 0)
                a = np.zeros(n, dtype=np.int32)
                if n:
                    _L.lmx_batch_cu_seqlens(self._h, s, a.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), n)
                out.append(a)
            self._cu = out
        return self._cu

    @property
    def spans(self):
        """list (one per sequence) of lists of Span(domain, doc, offset, start, length)."""
        if self._spans is None:
            out, info = [], _SpanInfo()
            for s in range(self.n_seqs):
                row = []
                for i in range(_L.lmx_batch_n_spans(self._h, s)):
                    _L.lmx_batch_span(self._h, s, i, ctypes.byref(info))
                    row.append(Span(info.domain.decode(), info.doc, info.offset, info.start, info.length))
                out.append(row)
            self._spans = out
        return self._spans

    @property
    def body(self):
        """The verified uncompressed wire body as a read-only uint8 numpy view (bytes(b.body) copies)."""
        n = ctypes.c_size_t()
        p = _L.lmx_batch_body(self._h, ctypes.byref(n))
        a = self._view(p, ctypes.c_uint8, max(n.value, 1))[:n.value]
        a.flags.writeable = False
        return a

    def __repr__(self):
        return (f"<longmix.Batch step {self.step} rank {self.rank}/{self.world} {self.n_seqs}x{self.seq_len} "
                f"u{8 * self.token_bytes} plan {self.plan_id}>")


class Client:
    """A liblongmix client: one plan, one rank of `world`. next() iterates from start_step with
    `prefetch` batches fetched ahead by a background thread; fetch(step) is random access.
    Thread-safe. A client belongs to the process that opened it: in a forked child (a DataLoader
    worker) it raises LongmixError and close() only drops it; open a new Client there."""

    def __init__(self, urls, plan, rank=0, world=1, token=None, start_step=0, prefetch=2, timeout_ms=60000,
                 retries=6, zstd=True, deadline_ms=0, max_batch_bytes=0):
        if isinstance(urls, (list, tuple)):
            urls = ",".join(urls)
        o = _Options()
        _L.lmx_client_options_init(ctypes.byref(o))
        o.urls, o.plan = urls.encode(), plan.encode()
        o.rank, o.world = rank, world
        o.token = token.encode() if token else None
        o.start_step, o.prefetch, o.timeout_ms, o.retries = start_step, prefetch, timeout_ms, retries
        o.no_zstd = 0 if zstd else 1
        o.deadline_ms = deadline_ms
        o.max_batch_bytes = max_batch_bytes
        self.plan, self.rank, self.world = plan, rank, world
        self._h = ctypes.c_void_p()
        err = _Error()
        rc = _L.lmx_client_open(ctypes.byref(o), ctypes.byref(self._h), ctypes.byref(err))
        if rc:
            self._h = None
            _raise(rc, err)

    def _handle(self):
        if not self._h:
            raise LongmixError(-1, "longmix.Client: used after close()")
        return self._h

    def next(self):
        """The batch at the position; advances the position. Raises LongmixError (position unchanged)."""
        out, err = ctypes.c_void_p(), _Error()
        rc = _L.lmx_client_next(self._handle(), ctypes.byref(out), ctypes.byref(err))
        if rc:
            _raise(rc, err)
        return Batch(out.value)

    def fetch(self, step):
        """Batch `step` for this rank (random access; position unchanged)."""
        out, err = ctypes.c_void_p(), _Error()
        rc = _L.lmx_client_fetch(self._handle(), step, ctypes.byref(out), ctypes.byref(err))
        if rc:
            _raise(rc, err)
        return Batch(out.value)

    def fetch_into(self, step, buf):
        """Like fetch(), but the batch is decoded into `buf`, a writable contiguous buffer (numpy
        array, bytearray, the numpy view of a pinned torch tensor); the Batch's arrays then view
        that memory, and the Batch keeps buf referenced. Do not write to buf while the Batch lives.
        A buffer that is too small raises LongmixError LMX_ENOMEM with the size needed in .needed."""
        a = np.frombuffer(buf, dtype=np.uint8)
        if not a.flags.writeable:
            raise LongmixError(-1, "fetch_into: the buffer is read-only")
        out, err, needed = ctypes.c_void_p(), _Error(), ctypes.c_size_t(0)
        rc = _L.lmx_client_fetch_into(self._handle(), step, a.ctypes.data, a.nbytes, ctypes.byref(needed),
                                      ctypes.byref(out), ctypes.byref(err))
        if rc:
            e = LongmixError(rc, err.message.decode("utf-8", "replace"))
            e.needed = needed.value
            raise e
        b = Batch(out.value)
        b._buf = buf
        return b

    def seek(self, step):
        _L.lmx_client_seek(self._handle(), step)

    @property
    def position(self):
        return _L.lmx_client_position(self._handle())

    def __iter__(self):
        """Batches from the position on, until the plan's data ends (LMX_ERANGE)."""
        while True:
            try:
                yield self.next()
            except LongmixError as e:
                if e.code == LMX_ERANGE:
                    return
                raise

    def close(self):
        """Stops the prefetch thread and frees the client; batches already returned stay valid."""
        if getattr(self, "_h", None):
            _L.lmx_client_close(self._h)  # in a forked child: a no-op (the library's rule)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _rank_world(torch):
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


_dataset_class = None


def _make_dataset_class():
    """Defines LongmixDataset on first use, so `import longmix` does not import torch."""
    global _dataset_class
    if _dataset_class is not None:
        return _dataset_class
    try:
        import torch
        import torch.utils.data as _tud
    except ImportError as e:
        raise ImportError("longmix.LongmixDataset needs PyTorch (Debian: apt-get install python3-torch)") from e

    class LongmixDataset(_tud.IterableDataset):
        """This rank's batches of a plan as a PyTorch IterableDataset; use DataLoader(ds, batch_size=None).

        Each item is a dict: step, rank, world, plan_id, tokens (LongTensor [n_seqs, seq_len], or
        `token_dtype`), next_tokens (LongTensor [n_seqs]), cu_seqlens (list of IntTensors), spans
        (per sequence a list of (domain, doc, offset, start, length) tuples).

        rank/world come from torch.distributed when it is initialized, else $RANK/$WORLD_SIZE
        (default 0/1), unless given. With DataLoader workers, worker w of W takes the steps s with
        (s - start) % W == w, start being the resume step (so s % W == w from step 0); the
        DataLoader's round-robin then yields steps in order and nothing is fetched twice.
        Each worker opens its own Client (in its own process).

        Resumption: state_dict() holds the next step to read. Iterating in the main process
        (num_workers=0) advances it; with workers, report consumed items with
        `ds.mark_consumed(item)`. load_state_dict() before iterating resumes there.
        Iteration ends after `num_steps` steps, or when the plan's data ends.
        """

        def __init__(self, urls, plan, rank=None, world=None, token=None, start_step=0, num_steps=None,
                     prefetch=2, token_dtype=None, **client_kw):
            super().__init__()
            r, w = _rank_world(torch)
            self.urls, self.plan, self.token = urls, plan, token
            self.rank = r if rank is None else rank
            self.world = w if world is None else world
            self.start_step, self.num_steps, self.prefetch = start_step, num_steps, prefetch
            self.token_dtype = token_dtype if token_dtype is not None else torch.long
            self.client_kw = client_kw
            self._next_step = start_step
            self._plan_id = None

        def state_dict(self):
            return {"plan": self.plan, "rank": self.rank, "world": self.world, "next_step": self._next_step,
                    "plan_id": self._plan_id}

        def load_state_dict(self, state):
            if state.get("plan", self.plan) != self.plan:
                raise ValueError(f"state is for plan {state.get('plan')!r}, this dataset reads {self.plan!r}")
            if state.get("world", self.world) != self.world or state.get("rank", self.rank) != self.rank:
                raise ValueError(f"state is for rank {state.get('rank')}/{state.get('world')}, "
                                 f"this dataset is rank {self.rank}/{self.world}")
            self._next_step = int(state["next_step"])
            self._plan_id = state.get("plan_id")

        def mark_consumed(self, item):
            self._next_step = max(self._next_step, int(item["step"]) + 1)
            self._plan_id = item.get("plan_id", self._plan_id)

        def _item(self, b):
            tokens = torch.from_numpy(b.tokens.astype(np.int64 if self.token_dtype == torch.long else np.int32))
            if tokens.dtype != self.token_dtype:
                tokens = tokens.to(self.token_dtype)
            return {"step": b.step, "rank": b.rank, "world": b.world, "plan_id": b.plan_id, "tokens": tokens,
                    "next_tokens": torch.from_numpy(b.next_tokens.astype(np.int64)),
                    "cu_seqlens": [torch.from_numpy(a) for a in b.cu_seqlens],
                    "spans": [[tuple(s) for s in row] for row in b.spans]}

        def __iter__(self):
            info = _tud.get_worker_info()
            wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
            begin = self._next_step
            end = None if self.num_steps is None else self.start_step + self.num_steps
            first = begin + wid
            if end is not None and first >= end:
                return
            in_process = info is None
            with Client(self.urls, self.plan, self.rank, self.world, token=self.token, start_step=first,
                        prefetch=self.prefetch if nw == 1 else 0, **self.client_kw) as c:
                step = first
                # One worker: the library's prefetch runs ahead on consecutive steps. Several
                # workers: each fetches its strided steps; the DataLoader overlaps the workers.
                while end is None or step < end:
                    try:
                        b = c.next() if nw == 1 else c.fetch(step)
                    except LongmixError as e:
                        if e.code == LMX_ERANGE:
                            return
                        raise
                    if self._plan_id is not None and b.plan_id != self._plan_id:
                        raise LongmixError(-11, f"plan {self.plan!r} changed: id {b.plan_id}, the saved state "
                                                f"was made with {self._plan_id}")
                    item = self._item(b)
                    if in_process:
                        self._next_step = step + 1
                        self._plan_id = b.plan_id
                    yield item
                    step += nw

    LongmixDataset.__qualname__ = "LongmixDataset"  # picklable as longmix.LongmixDataset (module __getattr__)
    _dataset_class = LongmixDataset
    return LongmixDataset


def __getattr__(name):  # PEP 562: longmix.LongmixDataset imports torch only when asked for
    if name == "LongmixDataset":
        return _make_dataset_class()
    raise AttributeError(f"module 'longmix' has no attribute {name!r}")
