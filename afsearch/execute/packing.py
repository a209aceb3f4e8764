"""Packing: train K small MLPs with different activations in one call.

The K models' weights are stacked ([K, in, out]) and every layer is one `torch.baddbmm`, so
one worker call keeps a device busy with K candidates; each candidate's activation is applied
to its own slice. Each candidate keeps its own generator (initial weights, batch order), so a
candidate trained in a pack of K follows the same recipe as alone (K=1); results differ from
K=1 only by floating-point summation order. Adam is element-wise, so one Adam over the stacked
tensors equals K separate ones; the loss is the sum of the K mean losses, so each model gets
exactly its own gradient.

Whether packing pays depends on the device: `scripts/bench_executor.py` measures it on CPU."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

Activation = Callable[[Tensor], Tensor]


def _init(gens: Sequence[torch.Generator], fan_in: int, fan_out: int) -> tuple[Tensor, Tensor]:
    """nn.Linear-style uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) init, one generator each."""
    bound = 1.0 / math.sqrt(fan_in)
    w = torch.stack([torch.rand(fan_in, fan_out, generator=g) for g in gens])
    b = torch.stack([torch.rand(1, fan_out, generator=g) for g in gens])
    return ((w * 2 - 1) * bound).requires_grad_(), ((b * 2 - 1) * bound).requires_grad_()


def train_packed(
    activations: Sequence[Activation],
    seeds: Sequence[int],
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    hidden: int = 100,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-2,
    device: str | torch.device = "cpu",
) -> list[dict[str, float]]:
    """Train one in-h-h-classes MLP per (activation, seed) together; returns, per candidate,
    {"loss": test cross-entropy, "accuracy": test accuracy, "seconds": shared wall time}.
    Tensors may live anywhere; the pack trains on `device`."""
    if len(activations) != len(seeds) or not activations:
        raise ValueError("need one seed per activation, and at least one")
    start = time.perf_counter()
    k = len(activations)
    classes = int(y_train.max()) + 1
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    sizes = [x_train.shape[1], hidden, hidden, classes]
    params = [p for a, b in zip(sizes, sizes[1:], strict=False) for p in _init(gens, a, b)]
    # initialised on the CPU from per-candidate generators (same weights on any device)
    params = [p.detach().to(device).requires_grad_() for p in params]
    x_train, y_train = x_train.to(device), y_train.to(device)
    x_test, y_test = x_test.to(device), y_test.to(device)
    opt = torch.optim.Adam(params, lr=lr)

    def forward(x: Tensor) -> Tensor:  # x: [K, B, in] -> logits [K, B, classes]
        h = x
        for i in range(0, len(params), 2):
            h = torch.baddbmm(params[i + 1], h, params[i])
            if i + 2 < len(params):
                h = torch.stack([act(h[j]) for j, act in enumerate(activations)])
        return h

    n = x_train.shape[0]
    for _ in range(epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)  # [K, n]
        for lo in range(0, n, batch_size):
            idx = order[:, lo : lo + batch_size]
            logits = forward(x_train[idx])
            loss = F.cross_entropy(logits.flatten(0, 1), y_train[idx].flatten(), reduction="sum")
            opt.zero_grad(set_to_none=True)
            (loss / idx.shape[1]).backward()
            opt.step()

    with torch.no_grad():
        logits = forward(x_test.expand(k, *x_test.shape))
        losses = [F.cross_entropy(logits[j], y_test).item() for j in range(k)]
        accs = [(logits[j].argmax(1) == y_test).float().mean().item() for j in range(k)]
    seconds = time.perf_counter() - start
    return [
        {"loss": lo, "accuracy": ac, "seconds": seconds}
        for lo, ac in zip(losses, accs, strict=True)
    ]
