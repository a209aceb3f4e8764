"""The metric a task is scored by and its direction: the one place that knows whether a bigger
number is better.

Every comparison a user reads (leaderboard order, deltas to baselines, the quality gate, the
validation test, plots, multi-objective fitness) goes through a `Metric`, so a loss-scored task
ranks lowest loss first without any sign flipped in what is stored or printed. Values are kept
raw everywhere; `oriented` (higher is better) exists only for strategies that maximise."""

from __future__ import annotations

import math
from dataclasses import dataclass

from afsearch.errors import TaskError


@dataclass(frozen=True)
class Metric:
    name: str  # what the user reads: "accuracy", "loss", ...
    higher_is_better: bool
    #: the EvalResult / TrainResult quantity it is read from: "accuracy" (accuracy, or R^2
    #: clipped to [0, 1] for regression) or "loss" (the training criterion on a split)
    source: str = "accuracy"
    #: the best value the metric can take (accuracy 1, a loss 0): what a relative delta
    #: measures the room for improvement against
    ideal: float = 1.0

    @property
    def worst(self) -> float:
        return -math.inf if self.higher_is_better else math.inf

    def finite(self, value: float | None) -> bool:
        return value is not None and math.isfinite(value)

    def oriented(self, value: float | None) -> float:
        """`value` as a higher-is-better number, for maximising strategies only; non-finite
        or missing values are -inf."""
        if not self.finite(value):
            return -math.inf
        return value if self.higher_is_better else -value  # type: ignore[operator]

    def better(self, a: float | None, b: float | None) -> bool:
        """Is `a` strictly better than `b`? Non-finite is worse than anything finite."""
        return self.oriented(a) > self.oriented(b)

    def best(self, values: list[float]) -> float | None:
        finite = [v for v in values if self.finite(v)]
        if not finite:
            return None
        return max(finite) if self.higher_is_better else min(finite)

    def delta(self, value: float, baseline: float) -> float:
        """How much better `value` is than `baseline`: positive = better, in the metric's
        own units (for a loss, baseline - value)."""
        return value - baseline if self.higher_is_better else baseline - value

    def relative_delta(self, value: float, baseline: float) -> float:
        """`delta` as a share of the baseline's room for improvement (its distance to `ideal`,
        at least 0.001): the share of its errors removed, for accuracy. Scale-free, so tasks
        with different ceilings can be aggregated (`afsearch.search.objectives`)."""
        return self.delta(value, baseline) / max(abs(self.ideal - baseline), 1e-3)

    def sort_key(self, value: float | None) -> tuple[int, float]:
        """Ascending sort key: best first, non-finite / missing last."""
        if not self.finite(value):
            return (1, 0.0)
        return (0, -self.oriented(value))

    def label(self, split: str = "validation") -> str:
        arrow = "higher is better" if self.higher_is_better else "lower is better"
        return f"{split} {self.name} ({arrow})"


def compared_with_best_baseline(delta: float) -> str:
    """A delta to the best baseline (`Metric.delta`: positive = better) in words."""
    verdict = "better" if delta > 0 else "worse" if delta < 0 else "no better"
    return f"{delta:+.4f}: {verdict} than the best baseline"


ACCURACY = Metric("accuracy", True, "accuracy", ideal=1.0)
LOSS = Metric("loss", False, "loss", ideal=0.0)
#: the registry a task's metric name is resolved against (the LM task adds "perplexity"-style
#: lower-is-better entries here)
METRICS: dict[str, Metric] = {m.name: m for m in (ACCURACY, LOSS)}


def get_metric(name: str | Metric | None) -> Metric:
    if name is None:
        return ACCURACY
    if isinstance(name, Metric):
        return name
    if name not in METRICS:
        raise TaskError(f"unknown metric {name!r}; allowed: {', '.join(METRICS)}")
    return METRICS[name]
