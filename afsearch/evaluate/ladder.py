"""The early-rejection ladder. Cheap tests run first so most bad candidates never train:

(a) screen: the static screen of the formula (`afsearch.expr.screen`); layers skip it;
(b) stability: a short burst of real training, the first `stability_steps` of the run the
    candidate would get (same recipe, seed and schedule, on the training device); reject if
    the training loss turns non-finite or the validation loss ends above `stability_bound`
    times the loss of a constant prediction, i.e. only what actually diverges in training.
    (An earlier probe, gradient *ascent* on the weights at initialisation, rejected some of the
    best functions on mnist1d-mlp, such as `max(softplus(x) + x^3, x^3)`; the bound below is
    set from scripts/bench_proxy.py, whose figures the README quotes.)
(c) quality: at an early checkpoint and after `quality_step` training steps, reject if the
    validation metric is worse than chance + `quality_ratio` * (the reference's value at the
    same task, seed and step - chance), in the metric's direction (for a loss: higher is
    worse); the reference is the task's (`TaskSpec.reference`: ReLU, GELU for the LM task);
    with no baseline, worse than chance + `quality_margin` (a loss: `quality_margin` of the way
    below chance). Where and how hard it checks is the task's `GateCalibration`
    (`TaskSpec.gate`) unless the config sets it: architectures differ in how late good
    functions start (on mnist1d-cnn even functions such as `abs(x)` sit at chance for the first
    2% of the run and end in the top quartile), so each task's checkpoints are measured on
    scripts/bench_proxy.py.

Stopping a run by comparing it with the other candidates of a search (median stopping,
asynchronous successive halving) is a search scheduler's job (`afsearch.search.schedulers`);
the quality gate is the default one. Each stage returns a `StageRecord` with its reason and
cost; the trainer knows none of this, the quality gate reaches it only through the `report`
callback."""

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
from afsearch.evaluate.trainer import Data, Recipe, train

MIN_EARLY_STEP = 10


@dataclass(frozen=True)
class GateCalibration:
    """Where a task's quality gate checks and how much of the reference's progress it demands
    there: an early checkpoint (`early_step`, 0: none) and the main one (`step`); a step is a
    fraction of the budget (< 1) or a step count (>= 1), a ratio is of the reference's
    above-chance progress at that step. Set per task from scripts/bench_proxy.py so that no
    candidate in the ground truth's top quartile is rejected."""

    early_step: float = 0.02
    early_ratio: float = 0.5
    step: float = 0.1
    ratio: float = 0.5


#: the calibration of a task that states none (measured on mnist1d-mlp)
DEFAULT_GATE = GateCalibration()


@dataclass(frozen=True)
class LadderConfig:
    screen: bool = True
    stability: bool = True
    stability_steps: float = 0.02  # < 1: fraction of the budget; >= 1: a step count
    stability_bound: float = 100.0  # validation loss / loss of a constant prediction
    quality: bool = True
    # the gate's checkpoints; None: the task's calibration (`for_task`, `TaskSpec.gate`)
    quality_step: float | None = None  # < 1: fraction of the budget; >= 1: a step count
    quality_ratio: float | None = None  # of ReLU's above-chance accuracy at that step
    #: an earlier checkpoint of the same gate (0: none), with its own ratio
    quality_early_step: float | None = None
    quality_early_ratio: float | None = None
    quality_margin: float = 0.05  # above chance, when there is no baseline
    quality_baseline: bool = True  # compare with ReLU (False: chance + margin)

    def calibration(self, gate: GateCalibration = DEFAULT_GATE) -> GateCalibration:
        """The gate's checkpoints: what this config sets, the rest from a task's calibration
        (the one place that fills them in)."""
        def pick(mine: float | None, theirs: float) -> float:
            return theirs if mine is None else mine

        return GateCalibration(early_step=pick(self.quality_early_step, gate.early_step),
                               early_ratio=pick(self.quality_early_ratio, gate.early_ratio),
                               step=pick(self.quality_step, gate.step), ratio=pick(self.quality_ratio, gate.ratio))

    def for_task(self, gate: GateCalibration = DEFAULT_GATE) -> LadderConfig:
        """This config with the checkpoints it leaves open taken from a task's calibration."""
        c = self.calibration(gate)
        return dataclasses.replace(self, quality_step=c.step, quality_ratio=c.ratio,
                                   quality_early_step=c.early_step, quality_early_ratio=c.early_ratio)

    def gate_step(self, budget: int) -> int:
        return _step(self.calibration().step, budget)

    def gate_checks(self, budget: int) -> list[tuple[int, float]]:
        """(step, ratio) of every checkpoint of the quality gate, earliest first (checkpoints
        left open: the default calibration; call `for_task` first for a task's). The earlier one
        is relative to ReLU's progress, so it needs the ReLU baseline (`quality_baseline`), and
        it comes no sooner than `MIN_EARLY_STEP` (before that ReLU has barely left chance)."""
        c = self.calibration()
        last = (_step(c.step, budget), c.ratio)
        early = (max(_step(c.early_step, budget), MIN_EARLY_STEP)
                 if c.early_step > 0 and self.quality_baseline else last[0])
        return [(early, c.early_ratio), last] if early < last[0] else [last]

    def burst_steps(self, budget: int) -> int:
        return _step(self.stability_steps, budget)

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


def _step(setting: float, budget: int) -> int:
    """A fraction of the budget (< 1) or a step count (>= 1), within 1 .. budget - 1."""
    k = int(setting) if setting >= 1 else round(setting * budget)
    return max(1, min(k, budget - 1)) if budget > 1 else 1


def screen_stage(formula: str) -> StageRecord:
    start = time.perf_counter()
    verdict = static_screen(formula)
    return StageRecord("screen", verdict.passed, verdict.reason, time.perf_counter() - start,
                       0, dict(verdict.stats))


def stability_stage(build_model: Callable[[], nn.Module], data: Data, recipe: Recipe,
                    cfg: LadderConfig, seed: int = 0, device: str | None = None,
                    threads: int | None = 1) -> StageRecord:
    """Train `cfg.burst_steps(recipe.steps)` steps exactly as the run itself would start and
    validate once: reject a non-finite training loss, or a validation loss above
    `cfg.stability_bound` times that of the best constant prediction."""
    start = time.perf_counter()
    steps = cfg.burst_steps(recipe.steps)
    out = train(build_model, data, recipe, seed, lambda step, acc, loss: step < steps, [steps],
                device, threads)
    chance = constant_loss(data)
    stats = {"val_loss": out.val_loss, "val_accuracy": out.val_accuracy, "constant_loss": chance,
             "step": float(out.steps)}
    reason = None
    if out.diverged or not math.isfinite(out.val_loss):
        reason = f"training loss non-finite by step {out.steps}"
    elif out.val_loss > cfg.stability_bound * chance:
        reason = (f"validation loss {out.val_loss:.3g} > {cfg.stability_bound:g} x constant-prediction "
                  f"loss {chance:.3g} after {out.steps} steps")
    return StageRecord("stability", reason is None, reason, time.perf_counter() - start, out.steps, stats)


def constant_loss(data: Data) -> float:
    """The validation loss of the best constant prediction: the label entropy (cross-entropy),
    or the targets' mean variance (squared error)."""
    y = data.val.y
    if data.regression:
        return float(y.float().var(0, unbiased=False).mean())
    y = y.reshape(-1)  # token targets (the LM task) are one class per position
    p = torch.bincount(y).float() / len(y)
    p = p[p > 0]
    return float(-(p * p.log()).sum())


class QualityGate:
    """A `report` callback: at each checkpoint step compare the validation metric (accuracy,
    or loss for loss-scored tasks) with that checkpoint's threshold, in the metric's direction;
    the first miss stops the run. `step`, `threshold` and `baseline` are the last checkpoint,
    `earlier` are (step, threshold, baseline) checkpoints before it. Later reports always
    pass; the decision is kept in `record` (the missed checkpoint, or the last one). A
    `baseline` is the value of the task's `reference` activation at the same step and seed
    (stats key ``{reference}_{source}``)."""

    def __init__(self, step: int, threshold: float, baseline: float | None,
                 metric: Metric = ACCURACY, reference: str = "relu",
                 earlier: Sequence[tuple[int, float, float | None]] = ()) -> None:
        self.step, self.threshold, self.baseline, self.metric = step, threshold, baseline, metric
        self.reference = reference
        self.checks = {s: (t, b) for s, t, b in earlier if s < step}
        self.checks[step] = (threshold, baseline)
        self.record: StageRecord | None = None

    @property
    def steps(self) -> list[int]:
        """The steps at which the gate needs a validation."""
        return sorted(self.checks)

    def __call__(self, step: int, val_accuracy: float, val_loss: float) -> bool:
        if step not in self.checks or self.record is not None:
            return True
        threshold, baseline = self.checks[step]
        m = self.metric
        value = val_loss if m.source == "loss" else val_accuracy
        passed = m.finite(value) and not m.better(threshold, value)
        if passed and step != self.step:
            return True
        label = "ReLU" if self.reference == "relu" else self.reference.upper()
        against = (f"{label} {baseline:.3f}" if baseline is not None else "chance + margin")
        worse = "<" if m.higher_is_better else ">"
        reason = None if passed else (f"validation {m.name} {value:.3f} {worse} {threshold:.3f}"
                                      f" at step {step} ({against})")
        stats = {"val_accuracy": val_accuracy, "val_loss": val_loss, "threshold": threshold,
                 "step": float(step)}
        if baseline is not None:
            stats[f"{self.reference}_{m.source}"] = baseline
        self.record = StageRecord("quality", passed, reason, 0.0, step, stats)
        return passed


def quality_threshold(cfg: LadderConfig, chance: float, baseline: float | None,
                      metric: Metric = ACCURACY, ratio: float | None = None) -> float:
    """The value a candidate must reach at a gate step: `ratio` (default `quality_ratio`) of
    the way from a constant prediction (`chance`) to the reference's value, in the metric's
    direction; without a baseline, `quality_margin` better than chance (for a loss: relative
    to it)."""
    if baseline is None:
        if metric.higher_is_better:
            return chance + cfg.quality_margin
        return chance - cfg.quality_margin * abs(chance)
    target = chance + (cfg.calibration().ratio if ratio is None else ratio) * (baseline - chance)
    # never demand more than the reference itself reached (early on it can be worse than chance)
    return target if metric.better(baseline, target) else baseline
