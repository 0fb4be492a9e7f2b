"""LongmixDataset (a PyTorch IterableDataset) and model-ready items. torch is imported on first
use, so `import longmix` works without it."""
import os

import numpy as np

from ._lib import LMX_ERANGE, LongmixError
from .client import Client

# The keys of an item that a HuggingFace causal LM takes (model(**model_inputs(item))): the names
# and dtypes of transformers' DataCollatorWithFlattening(return_flash_attn_kwargs=True), plus
# shift_labels (see model_items).
MODEL_KEYS = ("input_ids", "labels", "shift_labels", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k",
              "max_length_q", "max_length_k")
# Padded plans only: the fields of Megatron-Core's PackedSeqParams (Transformer Engine, qkv_format
# "thd"): real cu_seqlens beside the padded ones (packed_seq_params()).
PACKED_SEQ_KEYS = ("cu_seqlens_q", "cu_seqlens_kv", "cu_seqlens_q_padded", "cu_seqlens_kv_padded", "max_seqlen_q",
                   "max_seqlen_kv")


def model_inputs(item):
    """The model keys of an item (drops longmix's own: step, spans, ...)."""
    return {k: item[k] for k in MODEL_KEYS if k in item}


def packed_seq_params(item):
    """Keyword arguments of Megatron-Core's PackedSeqParams for an item of a padded plan:
    PackedSeqParams(**longmix.packed_seq_params(item)) (qkv_format "thd")."""
    if "cu_seqlens_q_padded" not in item:
        raise ValueError("packed_seq_params: the plan does not pad documents (give it pad_multiple)")
    return dict({k: item[k] for k in PACKED_SEQ_KEYS}, qkv_format="thd")


def model_items(batch, torch):
    """Model-ready tensors of a Batch fetched with CP options (labels and position ids present).

    The batch's n sequences of slice_len positions are flattened into one row, as HF's
    DataCollatorWithFlattening does: input_ids, labels, position_ids int64 [1, n * slice_len];
    cu_seq_lens_q = cu_seq_lens_k int32 [documents + 1], every sequence's **whole** cu_seqlens
    offset by s * seq_len (with cp_size 1: exactly the collator's); max_length_q = max_length_k,
    the longest segment (int). labels are already shifted (labels[i] is the target of
    input_ids[i], -100 or the plan's ignore_index where masked: Megatron / torchtitan convention,
    the only one that works for a CP slice). HF models shift `labels` themselves unless
    `shift_labels` is given, so the item carries the same tensor as `shift_labels` too
    (transformers' ForCausalLMLoss uses shift_labels as is when present)."""
    if batch.labels is None:
        raise ValueError("model_items: the batch has no labels (open the Client with cp_size >= 1)")
    # A padded plan (wire v3) adds PACKED_SEQ_KEYS: cu_seqlens_q/kv = the cumulated real lengths
    # (pads left out), cu_seqlens_q/kv_padded = cu_seq_lens_q (the segments in the buffer), over
    # the flattened row; max_seqlen_q/kv = the longest padded segment. With cp_layout "thd" the
    # row is exactly TE's partition (thd_get_partitioned_indices) of the flattened whole row.
    n, S, L = batch.n_seqs, batch.slice_len, batch.seq_len
    ids = torch.from_numpy(batch.tokens.astype(np.int64)).reshape(1, n * S)
    labels = torch.from_numpy(batch.labels.astype(np.int64)).reshape(1, n * S)
    pos = torch.from_numpy(batch.position_ids.astype(np.int64)).reshape(1, n * S)
    cus = [batch.cu_seqlens[s][:-1].astype(np.int64) + s * L for s in range(n)] + [np.array([n * L], np.int64)]
    cu = np.concatenate(cus) if n else np.zeros(1, np.int64)
    cu_t = torch.from_numpy(cu.astype(np.int32))
    max_len = int(np.diff(cu).max()) if len(cu) > 1 else 0
    out = {"input_ids": ids, "labels": labels, "shift_labels": labels, "position_ids": pos,
           "cu_seq_lens_q": cu_t, "cu_seq_lens_k": cu_t, "max_length_q": max_len, "max_length_k": max_len}
    if batch.padded:
        reals, base = [], 0
        for s in range(n):
            r = batch.cu_seqlens_real[s].astype(np.int64)
            reals.append(r[:-1] + base)
            base += int(r[-1])
        real_t = torch.from_numpy(np.concatenate(reals + [np.array([base], np.int64)]).astype(np.int32))
        out.update({"cu_seqlens_q": real_t, "cu_seqlens_kv": real_t, "cu_seqlens_q_padded": cu_t,
                    "cu_seqlens_kv_padded": cu_t, "max_seqlen_q": max_len, "max_seqlen_kv": max_len})
    return out


def _group_rank_world(torch, group):
    return torch.distributed.get_rank(group), torch.distributed.get_world_size(group)


def _rank_world(torch):
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


_dataset_class = None


def make_dataset_class():
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

        Each item is a dict with the model inputs (model_items(): input_ids, labels, shift_labels,
        position_ids, cu_seq_lens_q/k, max_length_q/k; `model(**longmix.model_inputs(item))`; for a
        padded plan also PACKED_SEQ_KEYS, `PackedSeqParams(**longmix.packed_seq_params(item))`) and
        longmix's own keys: step, rank, world, cp_rank, cp_size, ignore_index, plan_id, tokens (LongTensor
        [n_seqs, slice_len], or `token_dtype`), next_tokens (LongTensor [n_seqs]), cu_seqlens
        (list of IntTensors, whole sequences), spans (per sequence a list of (domain, doc, offset,
        start, length) tuples, in slice positions).

        Data-parallel rank/world: the arguments, else `dp_group`'s rank and size, else
        torch.distributed's when it is initialized, else $RANK/$WORLD_SIZE (default 0/1). With
        context parallelism give cp_rank/cp_size or `cp_group` (a process group of the ranks that
        share one sequence) and the data-parallel rank/world (not the global ones: the CP ranks
        of a group read the same sequences). With DataLoader workers, worker w of W takes the
        steps s with (s - start) % W == w, start being the resume step; the DataLoader's
        round-robin then yields steps in order and nothing is fetched twice. Each worker opens its
        own Client (in its own process).

        model_inputs=False: whole sequences as served by wire v1 (tokens, next_tokens, cu_seqlens,
        spans; no labels or position ids, a body ~5x smaller), for trainers that build their own.

        Resumption: state_dict() holds the next step to read. Iterating in the main process
        (num_workers=0) advances it; with workers, report consumed items with
        `ds.mark_consumed(item)`. load_state_dict() before iterating resumes there.
        Iteration ends after `num_steps` steps, or when the plan's data ends.
        """

        def __init__(self, urls, plan, rank=None, world=None, token=None, start_step=0, num_steps=None,
                     prefetch=2, token_dtype=None, cp_rank=None, cp_size=None, cp_group=None, dp_group=None,
                     model_inputs=True, cp_layout="zigzag", **client_kw):
            super().__init__()
            if dp_group is not None:
                r, w = _group_rank_world(torch, dp_group)
            else:
                r, w = _rank_world(torch)
            cr, cs = _group_rank_world(torch, cp_group) if cp_group is not None else (0, 1)
            self.urls, self.plan, self.token = urls, plan, token
            self.rank = r if rank is None else rank
            self.world = w if world is None else world
            self.cp_rank = cr if cp_rank is None else cp_rank
            self.cp_size = cs if cp_size is None else cp_size
            if not 1 <= self.cp_size or not 0 <= self.cp_rank < self.cp_size:
                raise ValueError(f"cp_rank {self.cp_rank} of cp_size {self.cp_size}: want 0 <= cp_rank < cp_size")
            if not model_inputs and self.cp_size != 1:
                raise ValueError("model_inputs=False (whole sequences, wire v1) cannot be combined with cp_size > 1")
            self.model_inputs = model_inputs
            self.cp_layout = cp_layout
            self.start_step, self.num_steps, self.prefetch = start_step, num_steps, prefetch
            self.token_dtype = token_dtype if token_dtype is not None else torch.long
            self.client_kw = client_kw
            self._next_step = start_step
            self._plan_id = None

        def state_dict(self):
            return {"plan": self.plan, "rank": self.rank, "world": self.world, "cp_rank": self.cp_rank,
                    "cp_size": self.cp_size, "next_step": self._next_step, "plan_id": self._plan_id}

        def load_state_dict(self, state):
            if state.get("plan", self.plan) != self.plan:
                raise ValueError(f"state is for plan {state.get('plan')!r}, this dataset reads {self.plan!r}")
            if state.get("world", self.world) != self.world or state.get("rank", self.rank) != self.rank:
                raise ValueError(f"state is for rank {state.get('rank')}/{state.get('world')}, "
                                 f"this dataset is rank {self.rank}/{self.world}")
            if state.get("cp_size", self.cp_size) != self.cp_size or state.get("cp_rank", self.cp_rank) != self.cp_rank:
                raise ValueError(f"state is for cp rank {state.get('cp_rank')}/{state.get('cp_size')}, "
                                 f"this dataset is cp rank {self.cp_rank}/{self.cp_size}")
            self._next_step = int(state["next_step"])
            self._plan_id = state.get("plan_id")

        def mark_consumed(self, item):
            self._next_step = max(self._next_step, int(item["step"]) + 1)
            self._plan_id = item.get("plan_id", self._plan_id)

        def _item(self, b):
            tokens = torch.from_numpy(b.tokens.astype(np.int64 if self.token_dtype == torch.long else np.int32))
            if tokens.dtype != self.token_dtype:
                tokens = tokens.to(self.token_dtype)
            item = {"step": b.step, "rank": b.rank, "world": b.world, "cp_rank": b.cp_rank, "cp_size": b.cp_size,
                    "ignore_index": b.ignore_index, "plan_id": b.plan_id, "tokens": tokens,
                    "next_tokens": torch.from_numpy(b.next_tokens.astype(np.int64)),
                    "cu_seqlens": [torch.from_numpy(a) for a in b.cu_seqlens],
                    "padded": b.padded, "cp_layout": b.cp_layout,
                    "spans": [[tuple(s) for s in row] for row in b.spans]}
            if self.model_inputs:
                item.update(model_items(b, torch))
            return item

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
                        prefetch=self.prefetch if nw == 1 else 0, cp_rank=self.cp_rank,
                        cp_size=self.cp_size if self.model_inputs else 0,
                        cp_layout=self.cp_layout if self.model_inputs else "zigzag",
                        **self.client_kw) as c:
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

    LongmixDataset.__module__ = "longmix"
    LongmixDataset.__qualname__ = "LongmixDataset"  # picklable as longmix.LongmixDataset (module __getattr__)
    _dataset_class = LongmixDataset
    return LongmixDataset
