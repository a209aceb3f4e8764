"""Read-side views of a run: leaderboard rows (with Pareto front and validation), one
candidate's details, exporting layer candidates. Read-only: works while a search runs."""

from __future__ import annotations

import json
import math
from typing import Any

from afsearch.candidate import Candidate
from afsearch.defaults import DEFAULT_TASK
from afsearch.evaluate.metric import Metric, get_metric
from afsearch.report.readable import shown, shown_formula
from afsearch.search.config import steps_for, task_metric
from afsearch.store import (
    BASELINE_ORIGIN,
    CandidateRecord,
    LeaderboardEntry,
    RunStore,
    ValidationRecord,
)

BASELINE = BASELINE_ORIGIN
VALIDATION_FILE = "validation.json"


def main_task_and_steps(store: RunStore) -> tuple[str, int]:
    config = store.config
    task = config.get("task", DEFAULT_TASK)
    return task, steps_for(task, config.get("steps"), config.get("user_tasks"))


def run_metric(store: RunStore) -> Metric:
    """The metric the run's main task is scored by, from config.toml (never imports a user
    task file)."""
    config = store.config
    return task_metric(config.get("task", DEFAULT_TASK), config.get("user_tasks"))


def validation_json(record: ValidationRecord) -> dict[str, Any]:
    """A stored validation result as the JSON the CLI and validation.json show."""
    r = record.result
    return {
        "round": record.round, "task": record.task, "steps": record.steps, "seeds": len(record.seeds),
        "id": r.candidate_id, "formula": r.formula, "simplified": shown_formula(r.formula),
        "baseline": r.baseline is not None, "name": r.baseline,
        "per_seed": list(r.per_seed), "mean": r.mean, "std": r.std, "p_value": r.p_value,
        "beats_baseline": r.beats_baseline, "error": r.error,
    }


def ranking_note(rows: list[dict[str, Any]]) -> str:
    """Which score orders `rows`, in words (the leaderboard's header line)."""
    validated = sum(1 for row in rows if row["ranked_by"] == "validated")
    metric = get_metric(rows[0].get("metric")) if rows else get_metric(None)
    order = "" if metric.higher_is_better else ", lowest first"
    if not validated:
        return f"ranked by search score (mean validation {metric.name} over the training seeds{order})"
    return (f"ranked by validated test score where validated ({validated} candidate"
            f"{'s' if validated != 1 else ''}, listed first), else by search score")


def _metrics_of(store: RunStore, candidate_id: int, task: str, steps: int) -> dict[str, Any]:
    for ev in store.evaluations_for(candidate_id):
        if ev.task == task and ev.budget == steps and ev.status == "done":
            return ev.metrics
    return {}


def leaderboard_rows(store: RunStore, top: int = 10, pareto: bool = False) -> list[dict[str, Any]]:
    """Best first, in the store's one order (`afsearch.store.rank_key`): validated candidates by
    their latest validated test score, then the others by search score = mean validation
    accuracy over the training seeds of the main task; std over those seeds; failed/rejected/
    non-finite never appear above a finite score. Each row's "ranked_by" says which score.
    Scores are the raw values of the run's metric ("metric" in each row: accuracy, or a loss
    ranked lowest first); "delta_to_best_baseline" is positive when better than the best
    baseline, whatever the direction."""
    task, steps = main_task_and_steps(store)
    metric = run_metric(store)
    entries = store.leaderboard(top=None, task=task, budget=steps, higher_is_better=metric.higher_is_better)
    best_baseline = best_baseline_of(entries, metric)
    rows = []
    for entry in entries:
        if entry.mean is None or not math.isfinite(entry.mean):
            continue
        metrics = _metrics_of(store, entry.candidate.id, task, steps)
        std = metrics.get(f"std_{metric.source}") if len(metrics.get("per_seed", [])) > 1 else entry.std
        cost = metrics.get("activation_cost")
        rows.append({
            "id": entry.candidate.id,
            "formula": entry.candidate.formula,
            "simplified": shown(entry.candidate),
            "origin": entry.candidate.origin,
            "fingerprint": entry.candidate.fingerprint,
            "metric": metric.name,
            "mean": entry.mean,
            "std": float(std) if isinstance(std, (int, float)) and math.isfinite(std) else None,
            "n": len(metrics.get("per_seed", [])) or entry.n,
            "activation_cost": cost if isinstance(cost, (int, float)) else None,
            "params": metrics.get("params"),
            "delta_to_best_baseline": None if best_baseline is None else metric.delta(entry.mean, best_baseline),
            "validation": None if entry.validated is None else validation_json(entry.validated),
            "ranked_by": "validated" if entry.validated is not None else "search",
        })
    if pareto:
        rows = pareto_front(rows)
    return rows[:top]


def best_baseline_of(entries: list[LeaderboardEntry], metric: Metric) -> float | None:
    """The best search score of the baselines among leaderboard `entries`, in the metric's
    direction (None without one): what every delta to the best baseline of a run refers to."""
    return metric.best([e.mean for e in entries if e.candidate.origin == BASELINE and e.mean is not None])


def pareto_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Non-dominated rows under (accuracy up, activation cost down); rows without a measured
    cost are compared on accuracy alone."""
    def objectives(row: dict[str, Any]) -> tuple[float, float]:
        cost = row.get("activation_cost")
        score = get_metric(row.get("metric")).oriented(row["mean"])  # both maximised
        return score, -(cost if cost is not None and math.isfinite(cost) else math.inf)

    front = []
    for row in rows:
        a = objectives(row)
        dominated = any(
            (b[0] >= a[0] and b[1] >= a[1]) and (b[0] > a[0] or b[1] > a[1])
            for other in rows if other is not row for b in [objectives(other)]
        )
        if not dominated:
            front.append(row)
    return front


def candidate_details(store: RunStore, candidate_id: int) -> dict[str, Any]:
    from afsearch.errors import ConfigError

    try:
        record = store.candidate(candidate_id)
    except KeyError:
        raise ConfigError(
            f"run {store.name} has no candidate {candidate_id}; see `afsearch leaderboard {store.path}`"
        ) from None
    info: dict[str, Any] = {
        "id": record.id, "origin": record.origin, "kind": record.kind, "fingerprint": record.fingerprint,
        "formula": record.formula, "simplified": shown(record), "canonical": record.canonical,
        "genotype": record.genotype,
        "parents": list(record.parents), "latex": None, "evaluations": [],
    }
    if record.kind == "activation" and record.formula:
        from afsearch.expr import parse, to_latex

        info["latex"] = to_latex(parse(info["simplified"]))
    for ev in store.evaluations_for(candidate_id):
        metrics = ev.metrics or {}
        info["evaluations"].append({
            "id": ev.id, "task": ev.task, "seed": ev.seed, "budget": ev.budget, "status": ev.status,
            "stage": ev.stage, "reason": ev.reason, "score": ev.score, "cost_s": ev.cost_s, "worker": ev.worker,
            "per_seed": metrics.get("per_seed", []), "stages": metrics.get("stages", []),
            "metric": metrics.get("metric", "accuracy"),
            "mean_accuracy": metrics.get("mean_accuracy"), "std_accuracy": metrics.get("std_accuracy"),
            "test_accuracy": metrics.get("test_accuracy"), "activation_cost": metrics.get("activation_cost"),
            "activation_time": metrics.get("activation_time"),
            "params": metrics.get("params"), "delta_to_best_baseline": metrics.get("delta_to_best_baseline"),
        })
    info["validations"] = [validation_json(v) for v in store.validations(candidate_id)]
    info["validation"] = info["validations"][-1] if info["validations"] else None
    info["parent_ids"] = _parent_ids(store, record.parents)
    return info


def _parent_ids(store: RunStore, fingerprints: tuple[str, ...]) -> list[int | None]:
    # the store records parents by fingerprint; a parent that never became a candidate of this
    # run (e.g. a space member used only as a seed) has no id
    ids = []
    for fp in fingerprints:
        parent = store.candidate_by_fingerprint(fp)
        ids.append(None if parent is None else parent.id)
    return ids


def record_candidate(record: CandidateRecord) -> Candidate:
    """The candidate a stored record describes: a formula, the JSON genotype of a layer or
    token-wise candidate, or (baselines) the reference it names."""
    genotype = record.genotype
    if isinstance(genotype, dict) and set(genotype) == {"reference"}:
        from afsearch.reference import get_reference

        return get_reference(str(genotype["reference"])).candidate()
    if record.kind == "activation":
        return Candidate.activation(record.formula or "")
    return Candidate(record.kind, json.dumps(genotype))


def run_ffn_form(store: RunStore) -> str | None:
    """The FFN form of a run on a task with an `ffn` option (lm-transformer), else None."""
    import dataclasses

    from afsearch.evaluate.tasks import TASKS

    config = store.config
    spec = TASKS.get(config.get("task", DEFAULT_TASK))
    if spec is None or "ffn" not in {f.name for f in dataclasses.fields(spec.config)}:
        return None
    return str((config.get("task_config") or {}).get("ffn", "plain"))
