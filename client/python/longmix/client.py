"""Client and Batch: verified batches of one plan for one rank, as zero-copy numpy views."""
import collections
import ctypes

import numpy as np

from ._lib import LMX_ERANGE, LongmixError, _Error, _L, _Options, _raise, _SpanInfo

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
        self.cp_rank = _L.lmx_batch_cp_rank(h)
        self.cp_size = _L.lmx_batch_cp_size(h)
        self.slice_len = _L.lmx_batch_slice_len(h)  # positions per sequence: seq_len / cp_size
        self.ignore_index = _L.lmx_batch_ignore_index(h)
        self.cp_layout = "thd" if _L.lmx_batch_cp_layout(h) == 1 else "zigzag"
        self.padded = bool(_L.lmx_batch_padded(h))  # the plan pads documents (pad_multiple; wire v3)
        self._cu = self._cu_real = self._spans = None

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

    def _matrix(self, ptr, ctype, dtype):
        n = self.n_seqs * self.slice_len
        a = self._view(ptr, ctype, max(n, 1))[:n]
        a = a.view(np.dtype(dtype)).reshape(self.n_seqs, self.slice_len)
        a.flags.writeable = False
        return a

    @property
    def tokens(self):
        """numpy array [n_seqs, slice_len] of uint16 or uint32 (as served; slice_len = seq_len
        without CP); read-only zero-copy view."""
        # A new view each time (cheap): caching it here would make a reference cycle
        # (batch -> view -> batch) that frees the C batch only when the cyclic GC runs.
        if self.token_bytes == 2:
            return self._matrix(_L.lmx_batch_tokens(self._h), ctypes.c_uint16, "<u2")
        return self._matrix(_L.lmx_batch_tokens(self._h), ctypes.c_uint32, "<u4")

    @property
    def labels(self):
        """numpy int32 [n_seqs, slice_len]: the next token of every position (already shifted),
        ignore_index where the plan masks it (and at pads); None without CP options (cp_size 0)
        unless the plan is padded."""
        p = _L.lmx_batch_labels(self._h)
        return None if not p else self._matrix(p, ctypes.c_int32, "<i4")

    @property
    def position_ids(self):
        """numpy uint32 [n_seqs, slice_len]: 0 at every cu_seqlens boundary; None without CP options."""
        p = _L.lmx_batch_position_ids(self._h)
        return None if not p else self._matrix(p, ctypes.c_uint32, "<u4")

    @property
    def next_tokens(self):
        """numpy uint32 [n_seqs]: the token following each sequence in the plan's stream."""
        return np.array([_L.lmx_batch_next_token(self._h, s) for s in range(self.n_seqs)], dtype=np.uint32)

    def _cu_lists(self, fn):
        out = []
        for s in range(self.n_seqs):
            n = fn(self._h, s, None, 0)
            a = np.zeros(n, dtype=np.int32)
            if n:
                fn(self._h, s, a.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), n)
            out.append(a)
        return out

    @property
    def cu_seqlens(self):
        """list (one per sequence) of int32 arrays (0, ..., seq_len) of the whole sequence (also
        with CP); empty arrays when the plan has them off (without CP). For a padded plan these
        are the segments in the buffer, pads included: Transformer Engine's cu_seqlens_padded."""
        if self._cu is None:
            self._cu = self._cu_lists(_L.lmx_batch_cu_seqlens)
        return self._cu

    @property
    def cu_seqlens_real(self):
        """Like cu_seqlens, the cumulated real lengths of the same segments (pads left out:
        Transformer Engine's cu_seqlens beside cu_seqlens_padded); equal to cu_seqlens when the
        plan does not pad."""
        if self._cu_real is None:
            self._cu_real = self._cu_lists(_L.lmx_batch_cu_seqlens_real)
        return self._cu_real

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
        cp = f" cp {self.cp_rank}/{self.cp_size} {self.cp_layout}" if self.cp_size > 1 else ""
        return (f"<longmix.Batch step {self.step} rank {self.rank}/{self.world}{cp} {self.n_seqs}x{self.slice_len} "
                f"u{8 * self.token_bytes} plan {self.plan_id}>")


class Client:
    """A liblongmix client: one plan, one rank of `world` (and with cp_size >= 1, context-parallel
    rank cp_rank's zigzag slice of every sequence, with labels and position ids: proto/WIRE.md
    "Wire v2"; cp_layout="thd" for Transformer Engine's per-document split of a padded plan,
    "Wire v3"). next() iterates from start_step with
    `prefetch` batches fetched ahead by a background thread; fetch(step) is random access.
    Thread-safe. A client belongs to the process that opened it: in a forked child (a DataLoader
    worker) it raises LongmixError and close() only drops it; open a new Client there."""

    def __init__(self, urls, plan, rank=0, world=1, token=None, start_step=0, prefetch=2, timeout_ms=60000,
                 retries=6, zstd=True, deadline_ms=0, max_batch_bytes=0, cp_rank=0, cp_size=0, cp_layout="zigzag"):
        if cp_layout not in ("zigzag", "thd"):
            raise ValueError(f"cp_layout {cp_layout!r}: want 'zigzag' or 'thd'")
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
        o.cp_rank, o.cp_size = cp_rank, cp_size
        o.cp_layout = 1 if cp_layout == "thd" else 0
        self.cp_layout = cp_layout
        self.plan, self.rank, self.world = plan, rank, world
        self.cp_rank, self.cp_size = cp_rank, cp_size
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
