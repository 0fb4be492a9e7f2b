"""Helpers for attention with packed documents and context parallelism, in plain torch ops (works
with torch 1.13: no SDPA or FlexAttention needed). Mostly for tests, examples and small models; a
real run hands cu_seqlens to a varlen kernel instead of building a dense mask."""
import numpy as np


def zigzag_positions(seq_len, cp_rank, cp_size):
    """Whole-sequence positions of CP rank cp_rank's slice, in slice order (proto/WIRE.md): chunks
    cp_rank and 2*cp_size-1-cp_rank of 2*cp_size."""
    if cp_size == 1:
        return np.arange(seq_len)
    if seq_len % (2 * cp_size):
        raise ValueError(f"seq_len {seq_len} is not a multiple of 2*cp_size = {2 * cp_size}")
    c = seq_len // (2 * cp_size)
    a, b = cp_rank * c, (2 * cp_size - 1 - cp_rank) * c
    return np.concatenate([np.arange(a, a + c), np.arange(b, b + c)])


def thd_positions(cu_seqlens_padded, cp_rank, cp_size):
    """Whole-sequence positions of CP rank cp_rank's slice in the thd layout (Transformer Engine's
    per-document split): chunks cp_rank and 2*cp_size-1-cp_rank of every segment, in order."""
    cu = np.asarray(cu_seqlens_padded, dtype=np.int64)
    if cp_size == 1:
        return np.arange(int(cu[-1]))
    parts = []
    for a, b in zip(cu[:-1], cu[1:]):
        if (b - a) % (2 * cp_size):
            raise ValueError(f"segment of {b - a} positions is not a multiple of 2*cp_size = {2 * cp_size}")
        c = (b - a) // (2 * cp_size)
        parts += [np.arange(a + cp_rank * c, a + (cp_rank + 1) * c),
                  np.arange(a + (2 * cp_size - 1 - cp_rank) * c, a + (2 * cp_size - cp_rank) * c)]
    return np.concatenate(parts)


def document_causal_mask(cu_seqlens, q_positions=None):
    """Boolean mask [len(q_positions), seq_len]: query at whole position q may attend key k iff
    k <= q and both lie in the same cu_seqlens segment. q_positions defaults to every position
    (pass zigzag_positions(...) for a CP rank's queries against the whole sequence's keys)."""
    import torch
    cu = torch.as_tensor(np.asarray(cu_seqlens), dtype=torch.long)
    L = int(cu[-1])
    seg = torch.zeros(L, dtype=torch.long)
    seg[cu[1:-1]] = 1
    seg = torch.cumsum(seg, 0)
    q = torch.arange(L) if q_positions is None else torch.as_tensor(np.asarray(q_positions), dtype=torch.long)
    k = torch.arange(L)
    return (seg[q][:, None] == seg[k][None, :]) & (k[None, :] <= q[:, None])
