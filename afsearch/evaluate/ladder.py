"""The early-rejection ladder. Cheap tests run first so most bad candidates never train:

(a) screen: the static screen of the formula (`afsearch.expr.screen`); layers skip it;
(b) stability: EvoNorm-style probe at initialisation: a few steps of gradient ascent on the
    weights to maximise the gradient norm on one batch (on the CPU, float32, whatever the
    training device); reject if it turns non-finite or exceeds `stability_bound`;
(c) quality: after `quality_step` training steps, reject if the validation metric is worse
    than chance + `quality_ratio` * (the reference's value at the same task, seed and step -
    chance), in the metric's direction (for a loss: higher is worse); the reference is the
    task's (`TaskSpec.reference`: ReLU, GELU for the LM task); with no baseline, worse than
    chance + `quality_margin` (a loss: `quality_margin` of the way below chance);
(d) multi-fidelity: `successive_halving` trains all candidates at budget/eta and only the
    best 1/eta at the full budget.

Each stage returns a `StageRecord` with its reason and cost; the trainer knows none of this,
the quality gate reaches it only through the `report` callback."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from afsearch.errors import ConfigError
from afsearch.evaluate._formula import static_screen
from afsearch.evaluate.metric import ACCURACY, Metric
from afsearch.evaluate.result import StageRecord
from afsearch.evaluate.trainer import Data, loss_fn


@dataclass(frozen=True)
class LadderConfig:
    screen: bool = True
    stability: bool = True
    stability_steps: int = 5
    stability_lr: float = 0.2  # relative step per weight tensor: ||dW|| = lr * ||W||
    stability_bound: float = 1e8
    stability_batch: int = 256
    quality: bool = True
    quality_step: float = 0.1  # < 1: fraction of the budget; >= 1: a step count
    quality_ratio: float = 0.5  # of ReLU's above-chance accuracy at that step
    quality_margin: float = 0.05  # above chance, when there is no baseline
    quality_baseline: bool = True  # compare with ReLU (False: chance + margin)

    def gate_step(self, budget: int) -> int:
        k = int(self.quality_step) if self.quality_step >= 1 else round(self.quality_step * budget)
        return max(1, min(k, budget - 1)) if budget > 1 else 1

    @classmethod
    def from_option(cls, option: bool | dict[str, Any] | LadderConfig | None) -> LadderConfig | None:
        """True/None -> defaults, False -> no ladder, dict -> fields (for JSON payloads)."""
        if option is False:
            return None
        if option is True or option is None:
            return cls()
        if isinstance(option, cls):
            return option
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(option) - names)
        if unknown:
            raise ConfigError(f"unknown ladder option(s) {', '.join(unknown)}; "
                              f"allowed: {', '.join(sorted(names))}")
        return cls(**option)


def screen_stage(formula: str) -> StageRecord:
    start = time.perf_counter()
    verdict = static_screen(formula)
    return StageRecord("screen", verdict.passed, verdict.reason, time.perf_counter() - start,
                       0, dict(verdict.stats))


def stability_stage(build_model: Callable[[], nn.Module], data: Data, cfg: LadderConfig,
                    seed: int = 0) -> StageRecord:
    """Gradient ascent on the weights to maximise the gradient norm of the loss on one batch.
    Uses double backward; activations without a second derivative fall back to ascending the
    loss itself. Works on any model the task trains, e.g. the LM's integer token inputs (the
    weights are perturbed, never the inputs)."""
    # the probe differentiates twice: attention must use the composite (math) kernel, as the
    # fused CPU and CUDA kernels have no double backward
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        return _stability_probe(build_model, data, cfg, seed)


def _stability_probe(build_model: Callable[[], nn.Module], data: Data, cfg: LadderConfig,
                     seed: int) -> StageRecord:
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = build_model()
    model.train()
    gen = torch.Generator().manual_seed(seed)
    n = len(data.train)
    idx = torch.randperm(n, generator=gen)[: min(cfg.stability_batch, n)]
    x, y = data.train.x[idx], data.train.y[idx]
    criterion = loss_fn(data.regression)
    params = [p for p in model.parameters() if p.requires_grad]
    worst, steps = 0.0, 0
    for steps in range(1, cfg.stability_steps + 1):
        loss = criterion(model(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        sq = [g.pow(2).sum() for g in grads if g is not None]
        gnorm = torch.stack(sq).sum().sqrt() if sq else loss.new_zeros(())
        value = float(gnorm.detach())
        worst = max(worst, value) if math.isfinite(value) else math.inf
        if not math.isfinite(value) or not math.isfinite(float(loss.detach())):
            return _stability(False, f"gradient norm non-finite after {steps - 1} ascent steps",
                              start, steps, worst)
        if value > cfg.stability_bound:
            return _stability(False, f"gradient norm {value:.3g} > {cfg.stability_bound:g} after "
                              f"{steps - 1} ascent steps", start, steps, worst)
        if steps == cfg.stability_steps:
            break
        objective = gnorm if gnorm.requires_grad else loss
        ascent = torch.autograd.grad(objective, params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, ascent, strict=True):
                if g is not None and float(g.norm()) > 0:
                    p.add_(g, alpha=cfg.stability_lr * float(p.norm().clamp_min(1e-3))
                           / float(g.norm()))
    return _stability(True, None, start, steps, worst)


def _stability(passed: bool, reason: str | None, start: float, steps: int,
               worst: float) -> StageRecord:
    return StageRecord("stability", passed, reason, time.perf_counter() - start, steps,
                       {"max_grad_norm": worst})


class QualityGate:
    """A `report` callback: at `step` compare the validation metric (accuracy, or loss for
    loss-scored tasks) with `threshold`, in the metric's direction. Later reports always pass;
    the record of the decision is kept in `record`. `baseline` is the value of the task's
    `reference` activation at the same step and seed (stats key ``{reference}_{source}``)."""

    def __init__(self, step: int, threshold: float, baseline: float | None,
                 metric: Metric = ACCURACY, reference: str = "relu") -> None:
        self.step, self.threshold, self.baseline, self.metric = step, threshold, baseline, metric
        self.reference = reference
        self.record: StageRecord | None = None

    def __call__(self, step: int, val_accuracy: float, val_loss: float) -> bool:
        if step != self.step or self.record is not None:
            return True
        m = self.metric
        value = val_loss if m.source == "loss" else val_accuracy
        passed = m.finite(value) and not m.better(self.threshold, value)
        label = "ReLU" if self.reference == "relu" else self.reference.upper()
        against = (f"{label} {self.baseline:.3f}" if self.baseline is not None else "chance + margin")
        worse = "<" if m.higher_is_better else ">"
        reason = None if passed else (f"validation {m.name} {value:.3f} {worse} {self.threshold:.3f}"
                                      f" at step {step} ({against})")
        stats = {"val_accuracy": val_accuracy, "val_loss": val_loss, "threshold": self.threshold,
                 "step": float(step)}
        if self.baseline is not None:
            stats[f"{self.reference}_{m.source}"] = self.baseline
        self.record = StageRecord("quality", passed, reason, 0.0, step, stats)
        return passed


def quality_threshold(cfg: LadderConfig, chance: float, baseline: float | None,
                      metric: Metric = ACCURACY) -> float:
    """The value a candidate must reach at the gate step: `quality_ratio` of the way from a
    constant prediction (`chance`) to the reference's value, in the metric's direction; without
    a baseline, `quality_margin` better than chance (for a loss: relative to it)."""
    if baseline is None:
        if metric.higher_is_better:
            return chance + cfg.quality_margin
        return chance - cfg.quality_margin * abs(chance)
    target = chance + cfg.quality_ratio * (baseline - chance)
    # never demand more than the reference itself reached (early on it can be worse than chance)
    return target if metric.better(baseline, target) else baseline


def successive_halving(candidates: Sequence[Any], task: Any = None, budget: int | None = None,
                       eta: int = 3, evaluate_fn: Callable[..., Any] | None = None,
                       **kwargs: Any) -> list[Any]:
    """Stage (d): evaluate every candidate at budget // eta steps (the other stages apply
    there too); re-evaluate the best ceil(n / eta) finished ones at the full budget. Returns
    one EvalResult per candidate, in input order. Promoted candidates get their full-budget
    result with a passed "halving" stage holding the low-fidelity cost; the others keep
    their low-fidelity result, marked rejected at stage "halving" (`budget` says which)."""
    from afsearch.evaluate.core import evaluate
    from afsearch.evaluate.tasks import DEFAULT_TASK, get_task

    evaluate_fn = evaluate_fn or evaluate
    task_obj = get_task(task or DEFAULT_TASK, kwargs.pop("task_config", None))
    full = budget or task_obj.recipe.steps
    low = max(1, full // eta)
    results = [evaluate_fn(c, task_obj, budget=low, **kwargs) for c in candidates]
    ranked = sorted((i for i, r in enumerate(results) if r.ok), key=lambda i: -results[i].score)  # score: higher is better
    keep = math.ceil(len(candidates) / eta)
    for rank, i in enumerate(ranked):
        first = results[i]
        record = StageRecord("halving", rank < keep, None, first.seconds, first.steps,
                             {"low_budget": float(low), "low_accuracy": first.mean_accuracy, "low_value": first.value,
                              "rank": float(rank + 1)})
        if rank < keep:
            results[i] = evaluate_fn(candidates[i], task_obj, budget=full, **kwargs)
            results[i].stages.insert(0, record)
            results[i].seconds += record.seconds
            results[i].steps += record.steps
        else:
            record.seconds = record.steps = 0  # already counted in this result
            record.reason = f"rank {rank + 1} of {len(ranked)} at {low} steps; best {keep} go on"
            first.add_stage(record)
    return results
