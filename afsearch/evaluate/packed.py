"""Packed training: K candidates trained in one loop as one model with stacked weights.

Every member is built exactly as `train` builds it (``torch.manual_seed(seed)`` then the task's
model), draws its batches from its own generator seeded like `train`'s, and follows the same
recipe (fused AdamW is element-wise, the loss is the sum of the members' losses, so each gets
exactly its own gradient). MLPs become one batched matmul per layer (``h = baddbmm(b, h, W)``);
convolutional stacks become grouped convolutions (`afsearch.evaluate.packed_conv`). Either way
a device stays busy with K candidates instead of idling between small kernels, and results
equal one-by-one training up to floating-point summation order. Members stopped by their
``report`` callback (the quality gate) or diverging are cut out of the pack, optimizer state
included, so they cost nothing afterwards.

Models that are neither (`packable`) train one by one."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from afsearch.evaluate.packed_base import StackedMembers, fused_site
from afsearch.evaluate.packed_conv import ConvPack, conv_stack
from afsearch.evaluate.trainer import (
    Data,
    Recipe,
    Report,
    TrainResult,
    cpu_threads,
    pick_device,
    train_members,
)


def linear_stack(model: nn.Module) -> tuple[list[nn.Linear], list[nn.Module]] | None:
    """(linears, activations) when the model is Linear, act, ..., Linear; else None."""
    if not isinstance(model, nn.Sequential):
        return None
    layers = list(model)
    linears, acts = layers[0::2], layers[1::2]
    if len(layers) % 2 == 0 or not all(isinstance(m, nn.Linear) for m in linears):
        return None
    if any(isinstance(m, nn.Linear) for m in acts):
        return None
    return linears, acts


#: members per packed job when a search leaves `--pack` to its default, by kind of model, as
#: measured: `scripts/bench_eval.py --speed-only` (MLPs), `scripts/bench_cnn_packing.py` (CNNs)
MLP_PACK = 16
CONV_PACK = 8


def packable(model: nn.Module) -> bool:
    """Whether packed training can stack K copies of this model: an MLP (`linear_stack`) or a
    plain convolutional stack (`afsearch.evaluate.packed_conv.conv_stack`)."""
    return default_pack(model) > 1


def default_pack(model: nn.Module) -> int:
    """Members per job that pay for this model (1: it trains one by one)."""
    if linear_stack(model) is not None:
        return MLP_PACK
    if conv_stack(model) is not None:
        return CONV_PACK
    return 1


class _MLPPack(StackedMembers):
    """K MLPs of one shape: layer i's weights stacked as [K, in, out], biases as [K, 1, out]."""

    def __init__(self, models: list[nn.Module], device: torch.device) -> None:
        stacks = [linear_stack(m) for m in models]
        shapes = {tuple((lin.in_features, lin.out_features) for lin in s[0]) for s in stacks if s}
        if None in stacks or len(shapes) != 1:
            raise ValueError("packed training needs MLPs of one shape (Linear, act, ..., Linear)")
        layers = range(len(stacks[0][0]))
        # a frozen layer (e.g. the teacher-student readout student's hidden layers) stays frozen
        trainable = [{s[0][i].weight.requires_grad for s in stacks} | {s[0][i].bias.requires_grad for s in stacks}
                     for i in layers]
        if any(len(t) != 1 for t in trainable):
            raise ValueError("packed training needs every member to freeze the same layers")
        self.stacked = []
        for i in layers:
            self.stacked.append(torch.stack([s[0][i].weight.detach().t() for s in stacks]).to(device)
                                .requires_grad_(trainable[i] == {True}))
            self.stacked.append(torch.stack([s[0][i].bias.detach().unsqueeze(0) for s in stacks]).to(device)
                                .requires_grad_(trainable[i] == {True}))
        self.buffers = []
        self.acts = [[a.to(device) for a in s[1]] for s in stacks]
        self.fused = [fused_site([member[i] for member in self.acts], device) for i in layers[:-1]]

    def features(self, x: torch.Tensor, training: bool = True) -> torch.Tensor:
        """x: [K, B, in] -> [K, B, hidden]."""
        h = x
        hidden = self.stacked[:-2]
        for site, (w, b) in enumerate(zip(hidden[0::2], hidden[1::2], strict=True)):
            h = self.activate(site, torch.baddbmm(b, h, w))
        return h


def make_pack(models: list[nn.Module], device: torch.device) -> StackedMembers:
    """The pack for these members: stacked MLPs or grouped convolutions."""
    if linear_stack(models[0]) is not None:
        return _MLPPack(models, device)
    return ConvPack(models, device)


def train_packed(build_models: Sequence[Callable[[], nn.Module]], data: Data, recipe: Recipe,
                 seeds: Sequence[int], reports: Sequence[Report | None] | None = None,
                 eval_steps: Sequence[int] = (), device: str | None = None,
                 threads: int | None = 1) -> list[TrainResult]:
    """Train member k = build_models[k]() with seed seeds[k]; like `train` for each, together.
    `seconds` of each result is its share of the pack's wall time."""
    k_total = len(build_models)
    if k_total != len(seeds) or not k_total:
        raise ValueError("need one seed per model, and at least one model")
    reports = list(reports or [None] * k_total)
    dev = pick_device(device)
    with cpu_threads(threads, dev):
        start = time.perf_counter()
        data = data.to(dev)
        models = []
        for build, seed in zip(build_models, seeds, strict=True):
            torch.manual_seed(seed)
            models.append(build())
        results = train_members(make_pack(models, dev), data, recipe, seeds, reports, eval_steps, dev)
        wall = time.perf_counter() - start
    total_steps = sum(r.steps for r in results) or 1
    for r in results:
        r.seconds = wall * r.steps / total_steps
    return results
