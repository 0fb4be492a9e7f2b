#!/usr/bin/env python3
"""HuggingFace Trainer fed by longmixd: packed sequences with FlashAttention varlen boundaries.

    python3 hf_trainer.py --url http://127.0.0.1:8470 --plan per-source --model PATH_OR_NAME

Each LongmixDataset item carries what transformers' DataCollatorWithFlattening(
return_flash_attn_kwargs=True) would emit for the documents of the batch: input_ids,
position_ids (0 at every document start), cu_seq_lens_q/k (int32), max_length_q/k, plus labels.
Our labels are already shifted (labels[i] is the target of input_ids[i]); the item carries the
same tensor as `shift_labels`, which transformers' causal-LM loss uses as is (so it does not
shift again). Use attn_implementation="flash_attention_2" so the varlen kwargs are honoured.
Needs transformers (not packaged in Debian 12) and a CUDA build of torch with flash-attn."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import longmix  # noqa: E402


def collate(items):
    """batch_size=1 of already-packed items: hand the model keys through unchanged."""
    (item,) = items
    return longmix.model_inputs(item)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--steps", type=int, default=100)
    a = p.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.bfloat16,
                                                 attn_implementation="flash_attention_2")
    # rank/world: torch.distributed (set up by the Trainer's launcher) or $RANK/$WORLD_SIZE.
    ds = longmix.LongmixDataset(a.url, a.plan, cp_size=1, num_steps=a.steps)
    args = TrainingArguments(output_dir="out", per_device_train_batch_size=1, max_steps=a.steps,
                             dataloader_num_workers=2, remove_unused_columns=False, logging_steps=1)
    Trainer(model=model, args=args, train_dataset=ds, data_collator=collate).train()


if __name__ == "__main__":
    main()
