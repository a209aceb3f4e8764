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
    best_entry,
    rank_key,
)

BASELINE = BASELINE_ORIGIN
VALIDATION_FILE = "validation.json"


def main_task_and_steps(store: RunStore) -> tuple[str, int]:
    config = store.config
    task = config.get("task", DEFAULT_TASK)
    return task, steps_for(task, config.get("steps"), config.get("user_tasks"))


def run_tasks(store: RunStore) -> list[tuple[str, int, Metric]]:
    """(task, steps, metric) of every task the run scores on, the main task first."""
    config = store.config
    main = config.get("task", DEFAULT_TASK)
    tasks = [main, *[t for t in config.get("extra_tasks") or [] if t != main]]
    return [(t, steps_for(t, config.get("steps"), config.get("user_tasks")),
             task_metric(t, config.get("user_tasks"))) for t in tasks]


def run_aggregate(store: RunStore) -> str:
    """How the run ranks over its tasks (`SearchConfig.task_aggregate`; runs from before it
    existed read as the default)."""
    from afsearch.defaults import TASK_AGGREGATES
    from afsearch.errors import RunStoreError

    how = store.config.get("task_aggregate", TASK_AGGREGATES[0])
    if how not in TASK_AGGREGATES:
        raise RunStoreError(f"run {store.name!r}: config.toml is damaged: task_aggregate {how!r} is not one of "
                            f"{', '.join(TASK_AGGREGATES)}")
    return str(how)


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
    if rows and rows[0].get("tasks"):
        how, names = rows[0]["aggregate"]["how"], ", ".join(rows[0]["tasks"])
        score = f"the {how} over {names} of the relative delta to each task's best baseline (share of its errors removed)"
        if not validated:
            return f"ranked by {score} (search scores)"
        return (f"ranked by {score}: validated test deltas where validated on every task ({validated} "
                f"candidate{'s' if validated != 1 else ''}, listed first), else search deltas")
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


def _seed_count(metrics: dict[str, Any]) -> int:
    """Seeds in an evaluation's stored metrics (0 when they are missing or damaged)."""
    per_seed = metrics.get("per_seed")
    return len(per_seed) if isinstance(per_seed, list) else 0


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
    tasks = run_tasks(store)
    if len(tasks) > 1:
        rows = _multi_task_rows(store, tasks, entries, best_baseline)
        return (pareto_front(rows) if pareto else rows)[:top]
    rows = []
    for entry in entries:
        if entry.mean is None or not math.isfinite(entry.mean):
            continue
        metrics = _metrics_of(store, entry.candidate.id, task, steps)
        std = metrics.get(f"std_{metric.source}") if _seed_count(metrics) > 1 else entry.std
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
            "n": _seed_count(metrics) or entry.n,
            "activation_cost": cost if isinstance(cost, (int, float)) else None,
            "params": metrics.get("params"),
            "delta_to_best_baseline": None if best_baseline is None else metric.delta(entry.mean, best_baseline),
            "validation": None if entry.validated is None else validation_json(entry.validated),
            "ranked_by": "validated" if entry.validated is not None else "search",
        })
    if pareto:
        rows = pareto_front(rows)
    return rows[:top]


def _multi_task_rows(store: RunStore, tasks: list[tuple[str, int, Metric]],
                     main_entries: list[LeaderboardEntry], main_best: float | None) -> list[dict[str, Any]]:
    """The rows of a run that scores on several tasks: every candidate with a finite search
    score on each task, ranked by the run's aggregate (`run_aggregate`) of its per-task
    relative deltas to that task's best baseline (`Metric.relative_delta`, the score the
    strategy was told); candidates validated on every task first, by the same aggregate of
    their validated test deltas (each to the best baseline of its round). Each row keeps the
    per-task raw deltas too, in the metric's units, for display."""
    from afsearch.search.objectives import aggregate_deltas, task_delta

    how = run_aggregate(store)
    per_task: dict[str, dict[int, LeaderboardEntry]] = {}
    best: dict[str, float | None] = {}
    for task, steps, metric in tasks:
        entries = main_entries if task == tasks[0][0] else store.leaderboard(
            top=None, task=task, budget=steps, higher_is_better=metric.higher_is_better)
        per_task[task] = {e.candidate.id: e for e in entries if e.mean is not None and math.isfinite(e.mean)}
        best[task] = main_best if task == tasks[0][0] else best_baseline_of(entries, metric)
    round_best = _validated_baseline_bests(store, {t: m for t, _, m in tasks})
    main, main_steps, main_metric = tasks[0]
    rows = []
    for cid, entry in per_task[main].items():
        if any(cid not in per_task[t] for t, _, _ in tasks):
            continue
        by_task: dict[str, dict[str, Any]] = {}
        search_deltas, validated_deltas = [], []
        for task, _, metric in tasks:
            e = per_task[task][cid]
            assert e.mean is not None  # per_task holds finite means only
            b = best[task]
            delta = None if b is None else metric.delta(e.mean, b)
            search_deltas.append(task_delta(metric, e.mean, b))
            v = e.validated
            v_delta = v_relative = None
            if v is not None and v.result.mean is not None and (v.round, task) in round_best:
                v_delta = metric.delta(v.result.mean, round_best[(v.round, task)])
                v_relative = metric.relative_delta(v.result.mean, round_best[(v.round, task)])
                validated_deltas.append(v_relative)
            by_task[task] = {"mean": e.mean, "std": e.std, "n": e.n, "metric": metric.name,
                             "delta_to_best_baseline": delta, "relative_delta": search_deltas[-1],
                             "best_baseline": b, "validation": None if v is None else validation_json(v),
                             "validated_delta": v_delta, "validated_relative_delta": v_relative}
        validated = len(validated_deltas) == len(tasks)
        search_score = aggregate_deltas(search_deltas, how)
        metrics = _metrics_of(store, cid, main, main_steps)
        cost = metrics.get("activation_cost")
        rows.append({
            "id": cid, "formula": entry.candidate.formula, "simplified": shown(entry.candidate),
            "origin": entry.candidate.origin, "fingerprint": entry.candidate.fingerprint,
            "metric": main_metric.name, "mean": entry.mean, "std": entry.std,
            "n": _seed_count(metrics) or entry.n,
            "activation_cost": cost if isinstance(cost, (int, float)) else None, "params": metrics.get("params"),
            "delta_to_best_baseline": by_task[main]["delta_to_best_baseline"],
            "validation": by_task[main]["validation"],
            "tasks": by_task,
            "aggregate": {"how": how, "search": search_score,
                          "validated": aggregate_deltas(validated_deltas, how) if validated else None},
            "search_score": search_score,
            "ranked_by": "validated" if validated else "search",
        })
    rows.sort(key=lambda r: rank_key(r["search_score"], r["aggregate"]["validated"], r["id"]))
    return rows


def _validated_baseline_bests(store: RunStore, metrics: dict[str, Metric]) -> dict[tuple[int, str], float]:
    """(round, task) -> the best validated baseline mean of that round on that task."""
    values: dict[tuple[int, str], list[float]] = {}
    for record in store.validations():
        if record.result.baseline is not None and record.result.mean is not None and record.task in metrics:
            values.setdefault((record.round, record.task), []).append(record.result.mean)
    out = {}
    for (number, task), means in values.items():
        value = metrics[task].best(means)
        if value is not None:
            out[(number, task)] = value
    return out


def best_of_run(store: RunStore) -> LeaderboardEntry | None:
    """The run's best candidate, baselines excluded, as its leaderboard ranks it: on several
    tasks by the aggregate (its main-task entry is returned)."""
    if len(run_tasks(store)) < 2:
        return best_entry(store)
    task, steps = main_task_and_steps(store)
    metric = run_metric(store)
    entries = store.leaderboard(top=None, task=task, budget=steps, higher_is_better=metric.higher_is_better)
    by_id = {e.candidate.id: e for e in entries}
    rows = leaderboard_rows(store, top=10_000)
    return next((by_id[r["id"]] for r in rows if r["origin"] != BASELINE and r["id"] in by_id), None)


def search_order(rows: list[dict[str, Any]], higher_is_better: bool) -> list[dict[str, Any]]:
    """`rows` by search score alone (never by an earlier validation): what validation picks
    its winners by. A multi-task row's search score is its aggregate delta."""
    if rows and rows[0].get("tasks"):
        return sorted(rows, key=lambda r: rank_key(r["search_score"], None, r["id"]))
    return sorted(rows, key=lambda r: rank_key(r["mean"], None, r["id"], higher_is_better))


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
