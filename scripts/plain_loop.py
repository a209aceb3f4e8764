"""The training loop a careful PyTorch user writes, the reference the speed benchmarks
(`bench_eval.py`, `bench_lm.py`) compare afsearch with: tensors preloaded, batches by random
permutation, fused AdamW, cross-entropy, no afsearch code in the loop."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.functional import cross_entropy


def plain_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch_size: int,
                lr_at: Callable[[int], float], weight_decay: float, seed: int) -> nn.Module:
    """Train `model` in place for `steps` steps on (x, y) with the learning rate `lr_at(step)`."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr_at(0), weight_decay=weight_decay, fused=True)
    gen = torch.Generator().manual_seed(seed)
    order, pos = torch.randperm(len(y), generator=gen), 0
    for step in range(steps):
        if pos + batch_size > len(y):
            order, pos = torch.randperm(len(y), generator=gen), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model
