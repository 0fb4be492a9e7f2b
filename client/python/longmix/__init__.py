"""longmix: Python package over liblongmix (ctypes; no build step beyond the C library).

    import longmix
    with longmix.Client("http://a:8470,http://b:8470", "per-source", rank=0, world=8) as c:
        b = c.next()                  # verified batch for step 0 (next K prefetched in the background)
        b.tokens                      # numpy [n_seqs, seq_len], uint16 or uint32 as served (zero copy)
        b.next_tokens                 # numpy [n_seqs]: the token after each sequence
        b.cu_seqlens                  # list of int32 arrays (FlashAttention varlen boundaries)
        b.spans                       # per sequence, a list of Span(domain, doc, offset, start, length)

    # context parallelism: rank C of K gets the zigzag slice, with labels and position ids
    c = longmix.Client(url, "per-source", rank=dp_rank, world=dp_size, cp_rank=C, cp_size=K)
    b = c.fetch(0); b.tokens, b.labels, b.position_ids   # [n_seqs, seq_len // K]
    # a plan with pad_multiple (a multiple of 2K): Transformer Engine's THD split per document
    c = longmix.Client(url, "padded", cp_rank=C, cp_size=K, cp_layout="thd")
    b = c.fetch(0); b.cu_seqlens, b.cu_seqlens_real      # cu_seqlens_padded, cu_seqlens

    ds = longmix.LongmixDataset(url, "per-source", cp_rank=C, cp_size=K)   # model-ready items
    out = model(**longmix.model_inputs(item))                               # HF names and dtypes

The library is found through $LONGMIX_LIBRARY (a path), then inside this package (pip install
copies it there), then the prefix `cmake --install` put this package under, then the loader's
path. Errors raise LongmixError with the C library's code and message. `LongmixDataset`
(PyTorch IterableDataset) imports torch on first use. `python3 -m longmix fetch|stats ...`.
"""
from ._lib import LMX_ERANGE, LongmixError, library, version
from .attention import document_causal_mask, thd_positions, zigzag_positions
from .client import Batch, Client, Span
from .dataset import MODEL_KEYS, PACKED_SEQ_KEYS, model_inputs, model_items, packed_seq_params

__all__ = ["Client", "Batch", "Span", "LongmixError", "LongmixDataset", "library", "version", "model_inputs",
           "model_items", "MODEL_KEYS", "PACKED_SEQ_KEYS", "packed_seq_params", "zigzag_positions", "thd_positions",
           "document_causal_mask", "LMX_ERANGE"]


def __getattr__(name):  # PEP 562: longmix.LongmixDataset imports torch only when asked for
    if name == "LongmixDataset":
        from .dataset import make_dataset_class
        return make_dataset_class()
    raise AttributeError(f"module 'longmix' has no attribute {name!r}")
