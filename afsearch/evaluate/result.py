"""What an evaluation produces: plain records, JSON round-trippable."""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from afsearch.defaults import DONE, REJECTED
from afsearch.evaluate.metric import Metric, get_metric
from afsearch.jsonsafe import NON_FINITE, float_from_json, json_safe


@dataclass
class StageRecord:
    """One rung of the rejection ladder: did the candidate pass, why not, and what it cost."""

    name: str  # "screen" | "stability" | "quality" | "train", or the scheduler that stopped it ("median" | "asha")
    passed: bool
    reason: str | None = None
    seconds: float = 0.0
    steps: int = 0  # optimizer (or ascent) steps spent in this stage
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class SeedResult:
    seed: int
    val_accuracy: float
    val_loss: float
    test_accuracy: float
    test_loss: float
    steps: int
    seconds: float


@dataclass
class EvalResult:
    """One candidate on one task. Accuracies are fractions in [0, 1] (for regression tasks,
    R^2 clipped to [0, 1]); mean/std are over seeds. `e_param` = mean validation accuracy /
    log10(params), accuracy standing in for AUC. `activation_cost` = the counted cost relative to
    ReLU (BatchNorm+ReLU for layers): weighted elementwise operations, the same on every run
    (`afsearch.evaluate.cost`); `activation_time` = the measured forward+backward time relative
    to ReLU's on the same tensor (varies with the machine and its load).
    `metric` names the task's metric (`afsearch.evaluate.metric`); `value` is its raw mean
    over seeds on validation (accuracy or loss). `delta_to_best_baseline` = how much better
    `value` is than the best reference activation's (positive = better, whatever the
    metric's direction), when baselines were computed for this task, budget and seeds."""

    candidate: dict[str, str]
    task: str
    task_config: dict[str, Any]
    budget: int
    seeds: list[int]
    status: str = DONE  # "done" | "rejected" | "failed"
    stage: str | None = None  # the stage that rejected or failed it
    reason: str | None = None
    stages: list[StageRecord] = field(default_factory=list)
    per_seed: list[SeedResult] = field(default_factory=list)
    mean_accuracy: float = 0.0
    std_accuracy: float = 0.0
    mean_loss: float = math.inf
    std_loss: float = 0.0
    test_accuracy: float = 0.0
    test_std: float = 0.0
    params: int = 0
    e_param: float = 0.0
    activation_cost: float | None = None
    activation_time: float | None = None
    delta_to_best_baseline: float | None = None
    seconds: float = 0.0  # total compute, all stages
    steps: int = 0  # total optimizer steps, all stages
    error: str | None = None  # short traceback when status == "failed"
    metric: str = "accuracy"
    #: (step, raw validation value) of the first seed at the scheduler's milestones
    #: (`afsearch.evaluate.schedule`); what the search's scheduler learns from
    curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == DONE

    @property
    def metric_spec(self) -> Metric:
        return get_metric(self.metric)

    @property
    def value(self) -> float:
        """The raw mean validation metric (accuracy or loss, see `metric`)."""
        return self.mean_loss if self.metric_spec.source == "loss" else self.mean_accuracy

    def test_values(self) -> list[float]:
        """Per-seed test values of the metric."""
        loss = self.metric_spec.source == "loss"
        return [s.test_loss if loss else s.test_accuracy for s in self.per_seed]

    def val_values(self) -> list[float]:
        """Per-seed validation values of the metric (what selection may read)."""
        loss = self.metric_spec.source == "loss"
        return [s.val_loss if loss else s.val_accuracy for s in self.per_seed]

    @property
    def score(self) -> float:
        """Higher is better (the metric's value, negated for lower-is-better metrics: for
        strategies and sorting only, never shown); rejected and failed candidates score -inf."""
        return self.metric_spec.oriented(self.value) if self.ok else -math.inf

    def add_stage(self, record: StageRecord) -> StageRecord:
        self.stages.append(record)
        self.seconds += record.seconds
        self.steps += record.steps
        if not record.passed and self.status == DONE:
            self.status, self.stage, self.reason = REJECTED, record.name, record.reason
        return record

    def summarise(self) -> None:
        """Fill the mean/std fields and e_param from per_seed."""
        if not self.per_seed:
            return
        accs = [r.val_accuracy for r in self.per_seed]
        losses = [r.val_loss for r in self.per_seed]
        tests = [r.test_accuracy for r in self.per_seed]
        self.mean_accuracy, self.std_accuracy = _mean_std(accs)
        self.mean_loss, self.std_loss = _mean_std(losses)
        self.test_accuracy, self.test_std = _mean_std(tests)
        if self.params > 1:
            self.e_param = self.mean_accuracy / math.log10(self.params)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return json_safe(data)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalResult:
        data = _from_json_floats(dict(data))
        data["stages"] = [StageRecord(**s) for s in data.get("stages", [])]
        data["per_seed"] = [SeedResult(**s) for s in data.get("per_seed", [])]
        data["curve"] = [(int(step), float(value)) for step, value in data.get("curve", [])]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = statistics.stdev(values) if len(values) > 1 and math.isfinite(mean) else 0.0
    return mean, std


_FLOAT_FIELDS = {"mean_loss", "std_loss", "val_loss", "test_loss", "val_accuracy",
                 "test_accuracy", "mean_accuracy", "e_param"}


def _from_json_floats(value: Any, key: str | None = None) -> Any:
    if isinstance(value, str) and value in NON_FINITE and key in _FLOAT_FIELDS | {"_stat"}:
        return float_from_json(value)
    if isinstance(value, dict):
        inner = "_stat" if key == "stats" else None
        return {k: _from_json_floats(v, inner or k) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json_floats(v, key) for v in value]
    return value
