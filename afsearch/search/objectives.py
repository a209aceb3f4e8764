"""From per-task evaluation results to what a strategy learns (`Outcome`): the score it ranks
by and the objectives of multi-objective strategies."""

from __future__ import annotations

import math
from collections.abc import Sequence

from afsearch.defaults import FAILED, REJECTED, TASK_AGGREGATES
from afsearch.evaluate.metric import Metric
from afsearch.evaluate.result import EvalResult
from afsearch.search.strategies.base import Outcome


def aggregate_deltas(deltas: Sequence[float], how: str) -> float:
    """One score from each task's relative delta to its best baseline (`Metric.relative_delta`;
    positive: better than it): the worst of them, or their mean (`afsearch.defaults.TASK_AGGREGATES`)."""
    if how == "mean":
        return sum(deltas) / len(deltas)
    if how == "worst":
        return min(deltas)
    raise ValueError(f"unknown task aggregate {how!r}; allowed: {', '.join(TASK_AGGREGATES)}")


def task_delta(metric: Metric, value: float, best_baseline: float | None) -> float:
    """What one task contributes to the aggregate: the relative delta of `value` to the task's
    best baseline; without a baseline (none asked for, or all failed), the oriented value
    itself. The strategy's score and the leaderboard's both come from here."""
    if best_baseline is None:
        return metric.oriented(value)
    return metric.relative_delta(value, best_baseline)


def outcome_from_results(results: dict[str, EvalResult | None], objectives: list[str],
                         best_baselines: dict[str, float | None] | None = None,
                         aggregate: str = "worst") -> Outcome:
    """Aggregate per-task results into what a strategy learns (None = failed outright).
    Strategies maximise, so scores and objectives are the metric's value oriented higher-is-
    better (`EvalResult.score`: a loss is negated here and nowhere a user reads); the
    "accuracy" objective is each task's metric, whatever it is.

    On one task the score is that task's oriented value. On several it is `aggregate` over the
    tasks of `task_delta` to `best_baselines[task]` (each task's best baseline, raw), so that
    the search ranks as the leaderboard does."""
    ok = [r for r in results.values() if r is not None and r.ok and math.isfinite(r.score)]
    if len(ok) != len(results):
        statuses = [r.status if r is not None else "failed" for r in results.values()]
        status = FAILED if FAILED in statuses else REJECTED
        intermediate = intermediate_values(next((r for r in results.values() if r is not None), None))
        return Outcome(-math.inf, [-math.inf] * _n_objectives(objectives, len(results)), status, intermediate)
    if len(results) == 1:
        score = ok[0].score
    else:
        bests = best_baselines or {}
        score = aggregate_deltas([task_delta(r.metric_spec, r.value, bests.get(task)) for task, r in results.items()
                                  if r is not None], aggregate)
    objs: list[float] = []
    for objective in objectives:
        if objective == "accuracy":
            objs.extend(r.score for r in ok)
        elif objective == "cost":
            cost = ok[0].activation_cost
            objs.append(-cost if cost is not None and math.isfinite(cost) else -math.inf)
        elif objective == "params":
            objs.append(-float(ok[0].params))
    return Outcome(score, objs, "done", intermediate_values(ok[0]))


def _n_objectives(objectives: list[str], n_tasks: int) -> int:
    return sum(n_tasks if o == "accuracy" else 1 for o in objectives)


def intermediate_values(result: EvalResult | None) -> list[tuple[int, float]]:
    """(step, oriented value) points of the validation curve, for the strategy's record (an
    Optuna study keeps them as intermediate values): the quality gate's, the scheduler's
    milestones and the end's, one per step."""
    if result is None:
        return []
    metric = result.metric_spec  # strategies maximise: oriented values
    key = f"val_{metric.source}"
    points = {step: metric.oriented(value) for step, value in result.curve}
    for stage in result.stages:
        if stage.name == "quality" and key in stage.stats and "step" in stage.stats:
            points[int(stage.stats["step"])] = metric.oriented(float(stage.stats[key]))
    if result.ok and result.per_seed:
        points[result.budget] = result.score
    return sorted(points.items())
