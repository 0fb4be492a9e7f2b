#!/usr/bin/env python3
"""Megatron-LM (megatron.core) glue: a longmixd item as the batch of a GPT forward step with
packed sequences (THD layout).

Megatron-core's GPTModel takes `packed_seq_params=PackedSeqParams(qkv_format="thd", ...)` whose
cu_seqlens are those of the whole sequences: exactly the item's cu_seq_lens_q/k, and the labels
and position ids were computed on the whole sequence by the server. Megatron's loss wants a
loss_mask: labels != ignore_index.

Context parallelism: longmixd's slices are the whole-sequence zigzag of Megatron's
get_batch_on_this_cp_rank (the BSHD/SBHD path) and of torchtitan's head-tail load balancer.
Transformer Engine's THD path with CP > 1 instead splits *each document* into 2*cp_size chunks
(thd_get_partitioned_indices over cu_seqlens_padded, every document padded to a multiple of
2*cp_size): that per-document layout is not served yet (issue #14's padding item), so use this
glue with cp_size 1 (fetch cp_size=1) for THD, or the BSHD path with an attention mask built
from cu_seqlens for CP > 1.

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
