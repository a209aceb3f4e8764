"""Packed training: K MLP candidates trained in one loop with stacked weights.

Every member is built exactly as `train` builds it (``torch.manual_seed(seed)`` then the task's
model), draws its batches from its own generator seeded like `train`'s, and follows the same
recipe (fused AdamW is element-wise, the loss is the sum of the members' losses, so each gets
exactly its own gradient). The stacked layer ``h = baddbmm(b, h, W)`` replaces K small
matmuls by one, so a device stays busy with K candidates; results equal one-by-one training up
to floating-point summation order. Members stopped by their ``report`` callback (the quality
gate) or diverging are cut out of the pack, optimizer state included, so they cost nothing
afterwards.

Only models that are a plain ``Linear, act, Linear, act, ..., Linear`` stack can be packed
(`packable`); everything else trains one by one."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
from torch import nn

from afsearch.compile.fused import FusedActivation, fused_packed, fused_status, to_program
from afsearch.errors import AfsearchError
from afsearch.evaluate.trainer import (
    Data,
    Recipe,
    Report,
    TrainResult,
    check_refit,
    cpu_threads,
    least_squares_readout,
    loss_fn,
    lr_at,
    pick_device,
)
from afsearch.expr.parser import parse


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


def packable(model: nn.Module) -> bool:
    return linear_stack(model) is not None


class _Pack:
    """The stacked parameters of the live members and their activation modules."""

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
        self.weights = [torch.stack([s[0][i].weight.detach().t() for s in stacks]).to(device)
                        .requires_grad_(trainable[i] == {True}) for i in layers]
        self.biases = [torch.stack([s[0][i].bias.detach().unsqueeze(0) for s in stacks]).to(device)
                       .requires_grad_(trainable[i] == {True}) for i in layers]
        self.acts = [[a.to(device) for a in s[1]] for s in stacks]
        self.fused = [_fused_layer([member[i] for member in self.acts], device) for i in layers[:-1]]

    def params(self) -> list[torch.Tensor]:
        act_params = [p for member in self.acts for a in member for p in a.parameters() if p.requires_grad]
        return [p for p in (*self.weights, *self.biases) if p.requires_grad] + act_params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [K, B, in] -> [K, B, out]."""
        return torch.baddbmm(self.biases[-1], self.features(x), self.weights[-1])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [K, B, in] -> [K, B, hidden]: what feeds the output layer."""
        h = x
        for i, (w, b) in enumerate(zip(self.weights[:-1], self.biases[:-1], strict=True)):
            h = torch.baddbmm(b, h, w)
            fused = self.fused[i]
            h = fused_packed(fused, h) if fused is not None else \
                torch.stack([member[i](h[k]) for k, member in enumerate(self.acts)])
        return h

    @torch.no_grad()
    def refit_readout(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Each member's output layer set to its least-squares readout (`Recipe.refit_readout`);
        a member whose features are not finite keeps its own."""
        features = self.features(x.expand(len(self.acts), *x.shape)).float()
        for k in range(features.shape[0]):
            fit = least_squares_readout(features[k], y)
            if fit is not None:
                self.weights[-1][k].copy_(fit[0].t())
                self.biases[-1][k, 0].copy_(fit[1])

    def keep(self, rows: list[int], optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Cut the pack down to `rows`, carrying the optimizer state of the survivors."""
        old_state = {id(p): optimizer.state.get(p, {}) for p in self.params()}
        index = torch.tensor(rows, device=self.weights[0].device)

        def take(t: torch.Tensor) -> torch.Tensor:
            return t.detach().index_select(0, index).clone().requires_grad_(t.requires_grad)

        new_w = [take(w) for w in self.weights]
        new_b = [take(b) for b in self.biases]
        carried: dict[int, dict[str, torch.Tensor]] = {}
        for old, new in zip([*self.weights, *self.biases], [*new_w, *new_b], strict=True):
            state = old_state.get(id(old), {})
            carried[id(new)] = {k: (v.index_select(0, index).clone() if v.dim() > 0 else v.clone())
                                for k, v in state.items()}
        self.weights, self.biases = new_w, new_b
        self.acts = [self.acts[r] for r in rows]
        self.fused = [None if f is None else [f[r] for r in rows] for f in self.fused]
        for p in (q for member in self.acts for a in member for q in a.parameters()):
            if id(p) in old_state and old_state[id(p)]:
                carried[id(p)] = old_state[id(p)]
        # same optimizer, same hyper-parameters: swap its parameters and their state in place
        optimizer.param_groups[0]["params"] = self.params()
        optimizer.state.clear()
        for p in self.params():
            if carried.get(id(p)):
                optimizer.state[p] = carried[id(p)]
        return optimizer

    @torch.no_grad()
    def measure(self, x: torch.Tensor, y: torch.Tensor, regression: bool, autocast) -> list[tuple[float, float]]:
        with autocast():
            out = self.forward(x.expand(len(self.acts), *x.shape)).float()
        results = []
        for k in range(out.shape[0]):
            o = out[k]
            if not bool(torch.isfinite(o).all()):
                results.append((0.0, math.inf))
                continue
            loss = float(loss_fn(regression)(o, y))
            if regression:
                var = float(y.var(unbiased=False))
                acc = min(1.0, max(0.0, 1.0 - loss / var)) if var > 0 else 0.0
            else:
                acc = float((o.argmax(1) == y).float().mean())
            results.append((acc, loss))
        return results


def _fused_layer(acts: list[nn.Module], device: torch.device) -> list[FusedActivation] | None:
    """The members' activations at one layer as fused-kernel modules sharing their parameters,
    so that one kernel call applies all of them (forward and backward); None when any member
    is not a generated formula module or the kernel cannot run here (then they run one by
    one, eagerly)."""
    if device.type != "cpu" or not fused_status().available:
        return None
    fused = []
    for act in acts:
        formula = getattr(type(act), "formula", None)
        if not isinstance(formula, str) or isinstance(act, FusedActivation):
            return None
        try:
            fused.append(FusedActivation(act, _program(formula), policy="always"))
        except (ValueError, AfsearchError):
            return None
    return fused


@functools.lru_cache(maxsize=4096)
def _program(formula: str):  # noqa: ANN202
    return to_program(parse(formula))


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
    check_refit(recipe, data)
    if recipe.grad_clip:  # one norm per member would be needed; no packable task clips
        raise ValueError("packed training does not clip gradients (Recipe.grad_clip)")
    dev = pick_device(device)
    autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if dev.type == "cuda" else nullcontext)
    with cpu_threads(threads, dev):
        start = time.perf_counter()
        data = data.to(dev)
        models = []
        for build, seed in zip(build_models, seeds, strict=True):
            torch.manual_seed(seed)
            models.append(build())
        pack = _Pack(models, dev)
        if recipe.refit_readout:
            pack.refit_readout(data.train.x, data.train.y)
        opt = torch.optim.AdamW(pack.params(), lr=recipe.lr, weight_decay=recipe.weight_decay, fused=True) \
            if recipe.optimizer == "adamw" else torch.optim.SGD(pack.params(), lr=recipe.lr, momentum=0.9,
                                                                 nesterov=True, weight_decay=recipe.weight_decay)
        gens = [torch.Generator(device=dev).manual_seed(s) for s in seeds]
        checks = {s for s in eval_steps if 0 < s < recipe.steps}
        if recipe.eval_every:
            checks |= set(range(recipe.eval_every, recipe.steps, recipe.eval_every))
        n, bs = len(data.train), min(recipe.batch_size, len(data.train))
        live = list(range(k_total))  # member index of each pack row
        orders = [torch.empty(0, dtype=torch.long, device=dev)] * k_total
        positions = [n] * k_total
        histories: list[list[tuple[int, float, float]]] = [[] for _ in range(k_total)]
        finished: dict[int, TrainResult] = {}
        flags = {k: (False, False) for k in range(k_total)}  # (stopped, diverged)
        ended_at = dict.fromkeys(range(k_total), 0)
        step = 0
        while step < recipe.steps and live:
            rows = []
            for k in live:
                if positions[k] + bs > n:
                    orders[k], positions[k] = torch.randperm(n, generator=gens[k], device=dev), 0
                rows.append(orders[k][positions[k]:positions[k] + bs])
                positions[k] += bs
            idx = torch.stack(rows)  # [K, B]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, recipe)
            with autocast():
                out = pack.forward(data.train.x[idx]).float()
            losses = _member_losses(out, data.train.y[idx], data.regression)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            step += 1
            if step in checks or step == recipe.steps:
                if recipe.refit_readout:
                    pack.refit_readout(data.train.x, data.train.y)
                measured = pack.measure(data.val.x, data.val.y, data.regression, autocast)
                drop = []
                for r, k in enumerate(live):
                    if not math.isfinite(float(losses[r].detach())):
                        histories[k].append((step, 0.0, math.inf))
                        if reports[k] is not None:
                            reports[k](step, 0.0, math.inf)
                        flags[k] = (False, True)
                        drop.append(r)
                        continue
                    acc, vloss = measured[r]
                    histories[k].append((step, acc, vloss))
                    report = reports[k]
                    if report is not None and not report(step, acc, vloss) and step < recipe.steps:
                        flags[k] = (True, False)
                        drop.append(r)
                if drop or step == recipe.steps:
                    tests = pack.measure(data.test.x, data.test.y, data.regression, autocast)
                    for r, k in enumerate(live):
                        if r in drop or step == recipe.steps:
                            ended_at[k] = step
                            finished[k] = _result(histories[k], tests[r], step, flags[k])
                if drop and step < recipe.steps:
                    keep = [r for r in range(len(live)) if r not in drop]
                    live = [live[r] for r in keep]
                    if live:
                        opt = pack.keep(keep, opt)
        wall = time.perf_counter() - start
    total_steps = sum(ended_at.values()) or 1
    results = []
    for k in range(k_total):
        res = finished[k]
        res.seconds = wall * ended_at[k] / total_steps
        results.append(res)
    return results


def _member_losses(out: torch.Tensor, y: torch.Tensor, regression: bool) -> torch.Tensor:
    """Each member's mean loss, [K], in one call: out [K, B, C], y [K, B] (or [K, B, C])."""
    k, b = out.shape[:2]
    if regression:
        return nn.functional.mse_loss(out, y, reduction="none").reshape(k, -1).mean(1)
    return nn.functional.cross_entropy(out.reshape(k * b, -1), y.reshape(-1), reduction="none").reshape(k, b).mean(1)


def _result(history: list[tuple[int, float, float]], test: tuple[float, float], step: int,
            flags: tuple[bool, bool]) -> TrainResult:
    val_acc, val_loss = history[-1][1:] if history else (0.0, math.inf)
    return TrainResult(val_acc, val_loss, test[0], test[1], step, 0.0, flags[0], flags[1], list(history))
