"""From per-task evaluation results to what a strategy learns (`Outcome`): the score it ranks
by and the objectives of multi-objective strategies."""

from __future__ import annotations

import math

from afsearch.defaults import FAILED, REJECTED
from afsearch.evaluate.result import EvalResult
from afsearch.search.strategies.base import Outcome


def outcome_from_results(results: dict[str, EvalResult | None], objectives: list[str]) -> Outcome:
    """Aggregate per-task results into what a strategy learns (None = failed outright).
    Strategies maximise, so scores and objectives are the metric's value oriented higher-is-
    better (`EvalResult.score`: a loss is negated here and nowhere a user reads); the
    "accuracy" objective is each task's metric, whatever it is."""
    ok = [r for r in results.values() if r is not None and r.ok and math.isfinite(r.score)]
    if len(ok) != len(results):
        statuses = [r.status if r is not None else "failed" for r in results.values()]
        status = FAILED if FAILED in statuses else REJECTED
        intermediate = intermediate_values(next((r for r in results.values() if r is not None), None))
        return Outcome(-math.inf, [-math.inf] * _n_objectives(objectives, len(results)), status, intermediate)
    score = sum(r.score for r in ok) / len(ok)
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
