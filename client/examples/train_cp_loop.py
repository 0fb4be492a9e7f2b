#!/usr/bin/env python3
"""A minimal torchtitan-style training loop with context parallelism (CP) fed by longmixd.

    python3 train_cp_loop.py --url http://127.0.0.1:8470 --plan per-source --cp-size 2 --steps 3

Starts cp_size processes (torch.distributed, gloo, CPU). Each is one CP rank of one data-parallel
rank: it reads only its zigzag slice of every sequence (`LongmixDataset(cp_rank=, cp_size=)`),
with labels and position ids computed by the server on the whole sequence and the whole
sequence's cu_seqlens. The tiny model's attention gathers keys and values from all CP ranks (the
all-gather flavour of CP; ring attention exchanges the same blocks in turns) and masks with the
documents of cu_seqlens, so a token never attends across a document boundary, on whichever rank
its keys live. The loss is the sum over the ranks' slices divided by the number of targets, which
equals the loss on whole sequences: the printed losses are the same for every --cp-size. (The
tiny model takes plans with seq_len <= 4096.)

Glue to copy into a real trainer: the dataset arguments, `longmix.zigzag_positions` (where the
slice sits in the sequence) and the cu_seqlens handed to the attention kernel (FlashAttention
varlen / Transformer Engine THD take them instead of the dense mask built here)."""
import argparse
import os
import sys

import torch
import torch.distributed as dist
import torch.distributed.nn  # noqa: F401  (autograd-aware all_gather)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import longmix  # noqa: E402


class TinyLM(torch.nn.Module):
    def __init__(self, vocab, d=64, heads=4, layers=2, max_pos=4096):
        super().__init__()
        self.h = heads
        self.emb = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Embedding(max_pos, d)
        self.blocks = torch.nn.ModuleList(
            torch.nn.ModuleDict(dict(ln1=torch.nn.LayerNorm(d), qkv=torch.nn.Linear(d, 3 * d), o=torch.nn.Linear(d, d),
                                     ln2=torch.nn.LayerNorm(d), ff=torch.nn.Sequential(
                                         torch.nn.Linear(d, 4 * d), torch.nn.GELU(), torch.nn.Linear(4 * d, d))))
            for _ in range(layers))
        self.ln = torch.nn.LayerNorm(d)
        self.out = torch.nn.Linear(d, vocab)

    def forward(self, ids, pos, mask, order, group):
        """ids, pos: [S] this rank's slice; mask: [S, L] bool (query may attend key); order: the
        whole positions of every rank's slice, concatenated in rank order (to put gathered keys
        back in sequence order)."""
        x = self.emb(ids) + self.pos(pos)
        S, d = x.shape
        hd = d // self.h
        for b in self.blocks:
            q, k, v = b["qkv"](b["ln1"](x)).chunk(3, -1)
            if group is not None and dist.get_world_size(group) > 1:
                k = torch.cat(dist.nn.all_gather(k.contiguous(), group=group))[order.argsort()]
                v = torch.cat(dist.nn.all_gather(v.contiguous(), group=group))[order.argsort()]
            L = k.shape[0]
            q = q.view(S, self.h, hd).transpose(0, 1)
            k = k.view(L, self.h, hd).transpose(0, 1)
            v = v.view(L, self.h, hd).transpose(0, 1)
            att = (q @ k.transpose(1, 2)) / hd ** 0.5
            att = att.masked_fill(~mask[None], float("-inf")).softmax(-1)
            x = x + b["o"]((att @ v).transpose(0, 1).reshape(S, d))
            x = x + b["ff"](b["ln2"](x))
        return self.out(self.ln(x))


def run(cp_rank, args):
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(args.port))
    torch.set_num_threads(1)  # K processes share the cores
    dist.init_process_group("gloo", rank=cp_rank, world_size=args.cp_size)
    group = dist.new_group(list(range(args.cp_size)))  # the CP group (here: every process)
    torch.manual_seed(0)  # the same initial weights on every CP rank
    model = TinyLM(args.vocab).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # Data parallelism is rank 0 of 1 here; with DP x CP pass the DP rank/world (or dp_group).
    ds = longmix.LongmixDataset(args.url, args.plan, rank=0, world=1, cp_group=group, num_steps=args.steps)
    for item in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0):
        K, C, ign = item["cp_size"], item["cp_rank"], item["ignore_index"]
        n = len(item["cu_seqlens"])
        S = item["input_ids"].shape[1] // n
        L = S * K
        ids = item["input_ids"].view(n, S) % args.vocab
        pos, labels = item["position_ids"].view(n, S), item["labels"].view(n, S)
        order = torch.cat([torch.as_tensor(longmix.zigzag_positions(L, c, K)) for c in range(K)])
        mine = torch.as_tensor(longmix.zigzag_positions(L, C, K))
        loss_sum = torch.zeros((), dtype=torch.float64)
        for s in range(n):
            mask = longmix.document_causal_mask(item["cu_seqlens"][s], mine)
            logits = model(ids[s], pos[s], mask, order, group)
            target = torch.where(labels[s] == ign, labels[s], labels[s] % args.vocab)
            loss_sum = loss_sum + torch.nn.functional.cross_entropy(logits, target, ignore_index=ign, reduction="sum")
        targets = (labels != ign).sum().double()
        dist.all_reduce(targets, group=group)
        loss = loss_sum / targets
        opt.zero_grad()
        loss.backward()
        for p in model.parameters():  # the CP ranks hold one model: sum their gradient parts
            dist.all_reduce(p.grad, group=group)
        opt.step()
        total = loss.detach().clone()
        dist.all_reduce(total, group=group)
        if C == 0:
            print(f"step {item['step']} loss {total.item():.12f}", flush=True)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("--cp-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--vocab", type=int, default=512, help="token ids are taken modulo this (a tiny model)")
    p.add_argument("--port", type=int, default=29517)
    args = p.parse_args()
    # fork: the children inherit the imported torch (nothing distributed exists before this)
    torch.multiprocessing.start_processes(run, args=(args,), nprocs=args.cp_size, join=True, start_method="fork")


if __name__ == "__main__":
    main()
