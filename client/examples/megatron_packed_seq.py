#!/usr/bin/env python3
"""Megatron-LM (megatron.core) glue: a longmixd item as the batch of a GPT forward step with
packed sequences (THD layout), with or without context parallelism.

Transformer Engine's THD path with CP splits *each document* into 2*cp_size chunks
(thd_get_partitioned_indices over cu_seqlens_padded; every document padded to a multiple of
2*cp_size). longmixd serves exactly that for a plan with `pad_multiple` (a multiple of
2*cp_size, e.g. 16 for cp_size <= 8) and `cp_layout="thd"`:

    plans.padded = {"strategy": "per_source", "seq_len": 131072, "pad_multiple": 16, ...}
    ds = longmix.LongmixDataset(url, "padded", rank=dp_rank, world=dp_size,
                                cp_rank=cp_rank, cp_size=cp_size, cp_layout="thd")
    batch = megatron_batch(next(iter(DataLoader(ds, batch_size=None))))
    output = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"],
                   packed_seq_params=batch["packed_seq_params"])

The item's tokens, labels and position ids are this CP rank's part already (do not call
get_batch_on_this_cp_rank again); PackedSeqParams gets the whole row's cu_seqlens (real
lengths) and cu_seqlens_padded (segments in the buffer), as TE's CP attention expects. Pads are
masked in the labels (loss_mask below). Unpadded plans: cu_seqlens only, cp_size 1 for THD (the
default zigzag slices are the BSHD/SBHD path's, get_batch_on_this_cp_rank).

Needs megatron-core (not packaged in Debian); this file only builds the inputs."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import longmix  # noqa: E402


def megatron_batch(item):
    import torch
    from megatron.core.packed_seq_params import PackedSeqParams

    if item.get("padded"):
        params = PackedSeqParams(**longmix.packed_seq_params(item))  # qkv_format="thd", *_padded
    else:
        cu = item["cu_seq_lens_q"]
        params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                                 max_seqlen_q=item["max_length_q"], max_seqlen_kv=item["max_length_k"])
    labels = item["labels"]
    return {"tokens": item["input_ids"], "position_ids": item["position_ids"], "labels": labels,
            "loss_mask": (labels != item["ignore_index"]).to(torch.float32), "packed_seq_params": params}


if __name__ == "__main__":
    print(__doc__)
