#!/usr/bin/env python3
"""Megatron-LM (megatron.core) glue: a longmixd item as the batch of a GPT forward step with
packed sequences (THD layout) and context parallelism.

Megatron-core's GPTModel takes `packed_seq_params=PackedSeqParams(qkv_format="thd", ...)` whose
cu_seqlens are those of the whole (un-split) sequences: exactly the item's cu_seq_lens_q/k.
With CP, each rank passes its zigzag slice (chunks cp_rank and 2*cp_size-1-cp_rank, the layout
Megatron's get_batch_on_this_cp_rank produces), which longmixd already serves: no splitting here,
and the labels / position ids were computed on the whole sequence by the server. Megatron's loss
wants a loss_mask: labels != ignore_index.

    batch = megatron_batch(item)
    output = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"],
                   packed_seq_params=batch["packed_seq_params"])

Needs megatron-core (not packaged in Debian); this file only builds the inputs."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import longmix  # noqa: E402,F401


def megatron_batch(item):
    import torch
    from megatron.core.packed_seq_params import PackedSeqParams

    cu = item["cu_seq_lens_q"]
    params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                             max_seqlen_q=item["max_length_q"], max_seqlen_kv=item["max_length_k"])
    labels = item["labels"]
    return {"tokens": item["input_ids"], "position_ids": item["position_ids"], "labels": labels,
            "loss_mask": (labels != item["ignore_index"]).to(torch.float32), "packed_seq_params": params}


if __name__ == "__main__":
    print(__doc__)
