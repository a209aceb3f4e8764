"""Validation of winners: retrain the top-k on fresh seeds beside the baselines.

Scores are *test* values of the task's metric (accuracy, or a loss where lower is better; the
search selected on validation, so the test split is the unbiased one), on seeds the search never
used, with the ladder off. Every entry trains on the same seeds, so each winner is compared with
the best baseline seed by seed (`afsearch.search.stats`): the mean paired difference with its 95 %
t interval, the standardised effect d_z, and a one-sided paired t-test whose p-values are
Holm-corrected over the winners of the round. "Beats the best baseline" means a corrected
p < 0.05 *and* a better mean. With few seeds the test has little power: a candidate that is not
significant is not shown to be worse.

A shortlist (`SearchConfig.shortlist` > `validate_top`, off by default) fights the winner's curse
of picking by one noisy training seed: the best `shortlist` by search score are first retrained,
with the baselines, on `shortlist_seeds` seeds of their own (neither the search's nor
validation's), and the `validate_top` best by the run's aggregate of *validation* relative
deltas on those seeds go on to validation. Selection never reads a test split, so the test on
the fresh seeds stays as unbiased as without it."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from afsearch.evaluate.metric import Metric
from afsearch.evaluate.protocol import WORKER_STAGE, EvalReply, EvalRequest
from afsearch.execute import Executor, Job
from afsearch.reference import get_reference
from afsearch.report.runs import (
    BASELINE,
    VALIDATION_FILE,
    leaderboard_rows,
    record_candidate,
    run_aggregate,
    run_metric,
    run_tasks,
    search_order,
)
from afsearch.search.config import SearchConfig
from afsearch.search.events import SearchEvent
from afsearch.search.objectives import aggregate_deltas, task_delta
from afsearch.search.preflight import executor_for
from afsearch.search.seeding import derive_seed
from afsearch.search.stats import holm, paired_difference
from afsearch.store import RunStore, ValidationResult, rank_key, write_atomic

ALPHA = 0.05
TEST_NAME = ("paired one-sided t-test on per-seed test accuracy vs the best baseline, "
             "Holm-corrected over the winners, p < 0.05")


def test_name(metric: Metric) -> str:
    if metric.higher_is_better and metric.name == "accuracy":
        return TEST_NAME
    return (f"paired one-sided t-test on per-seed test {metric.name} vs the best baseline "
            f"({'higher' if metric.higher_is_better else 'lower'} is better), Holm-corrected over the "
            "winners, p < 0.05")


def validate_run(store: RunStore, config: SearchConfig, executor: Executor | None = None,
                 on_event: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Retrain the top `config.validate_top` by search score (or, with a shortlist, the best
    of the shortlist on its own seeds) beside the baselines on fresh seeds, on every task of
    the run (one round; all of its jobs run together). The report is
    the main task's, as it always was, plus "tasks": one such report per task, and
    "beats_every_task": the ids of the winners that beat the best baseline on each task, and
    "shortlist" (its seeds, aggregate, rows best first and the ids picked) when there was one."""
    import json

    tasks = run_tasks(store)
    for task, _, _ in tasks:
        _check_user_task(config, task)
    metric = run_metric(store)
    seeds = validation_seeds(config.seed, _next_round(store), config.validate_seeds)
    # chosen by search score, never by an earlier validation: validating again must not just
    # confirm the previous round's picks when the search has found better candidates since
    rows = search_order(leaderboard_rows(store, top=10_000), metric.higher_is_better)
    ranked = [r for r in rows if r["origin"] != BASELINE]
    top = ranked[: config.validate_top]
    shortlist: dict[str, Any] | None = None
    own = executor is None
    if executor is None:
        executor = executor_for(config)
    started = time.time()
    try:
        if 0 < config.validate_top < min(config.shortlist, len(ranked)):
            top, shortlist = _shortlisted(store, config, executor, tasks, ranked[: config.shortlist])
        plans = [(task, config.validate_steps or steps, task_metric_, _entries(store, config, top))
                 for task, steps, task_metric_ in tasks]
        _train(executor, config, plans, seeds, lambda res: res.test_values())
    finally:
        if own:
            executor.shutdown()

    number = None
    reports = []
    with store.transaction():  # a round on several tasks is recorded whole or not at all
        for task, steps, task_metric_, entries in plans:
            report = _task_report(task, steps, seeds, task_metric_, entries)
            number = store.add_validation_round(task, steps, seeds, [_result(e) for e in entries], number)
            reports.append({"round": number, **report})
    main = dict(reports[0])
    main["seconds"] = time.time() - started
    if shortlist is not None:
        main["shortlist"] = shortlist
    if len(reports) > 1:
        main["tasks"] = reports
        main["beats_every_task"] = [r["id"] for r in top if all(
            any(row["id"] == r["id"] and row["beats_baseline"] for row in rep["rows"]) for rep in reports)]
    write_atomic(store.path / VALIDATION_FILE, json.dumps(main, indent=2) + "\n")
    if shortlist is not None:
        store.log(f"validation round {number}: shortlist of {len(shortlist['rows'])} retrained on "
                  f"{len(shortlist['seeds'])} seeds; picked {', '.join(f'#{i}' for i in shortlist['picked'])}")
    store.log(f"validation round {number}: top {len(top)} on {len(seeds)} fresh seeds on "
              f"{', '.join(f'{t} ({s} steps)' for t, s, _, _ in plans)}")
    if on_event is not None:
        on_event(SearchEvent("validate", {"rows": main["rows"], "best_baseline": main["best_baseline"]}))
    return main


def _train(executor: Executor, config: SearchConfig, plans: list[tuple[str, int, Metric, list[dict[str, Any]]]],
           seeds: list[int], values: Callable[[Any], list[float]], prefix: str = "v") -> None:
    """Train every entry of every task's plan on `seeds` with the ladder off, all jobs at
    once (job ids start with `prefix`, unique per executor); each entry gets "per_seed"
    (`values` of its result: test or validation values) and, when it failed, "error"."""
    requests = {}
    for t, (task, steps, _, entries) in enumerate(plans):
        task_config = config.task_config_for(task)
        for i, entry in enumerate(entries):
            requests[f"{prefix}{t}_{i}"] = (entry, EvalRequest(
                (entry["candidate"],), task, steps, tuple(seeds), ladder=None, task_config=task_config,
                device=None if config.device == "auto" else config.device))
    for job_id, (_, request) in requests.items():
        executor.submit(Job(job_id, request.to_json(), config.timeout_s * len(seeds)))
    remaining = len(requests)
    while remaining:
        for job in executor.poll(timeout=1.0):
            remaining -= 1
            entry, request = requests[job.job_id]
            (res,) = EvalReply.from_job(request, job).results
            entry["per_seed"] = values(res) if res.ok else []
            if not res.ok:
                entry["error"] = res.reason if res.stage == WORKER_STAGE else \
                    f"{res.status} at {res.stage}: {res.reason}"


def shortlist_seeds(master: int, count: int) -> list[int]:
    """The seeds a shortlist retrains on: derived from the run's master seed, disjoint from
    the search's training seeds and from every validation round's."""
    return [derive_seed(master, "shortlist", i) for i in range(count)]


def _shortlisted(store: RunStore, config: SearchConfig, executor: Executor,
                 tasks: list[tuple[str, int, Metric]], pool: list[dict[str, Any]]
                 ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Retrain `pool` (rows in search order) and the baselines on the shortlist seeds at the
    search's steps; return the `validate_top` best by the run's aggregate of per-task relative
    deltas of the mean validation metric to that task's best baseline on the same seeds (a
    candidate that failed on a task ranks last; ties keep search order), and the record of it."""
    seeds = shortlist_seeds(config.seed, config.shortlist_seeds)
    plans = [(task, steps, metric, _entries(store, config, pool)) for task, steps, metric in tasks]
    _train(executor, config, plans, seeds, lambda res: res.val_values(), prefix="s")
    how = run_aggregate(store)
    deltas: dict[int, list[float]] = {row["id"]: [] for row in pool}
    means: dict[int, dict[str, float | None]] = {row["id"]: {} for row in pool}
    for task, _, metric, entries in plans:
        mean = {id(e): _mean_or_none(e["per_seed"]) for e in entries}
        best = metric.best([mean[id(e)] for e in entries if e["baseline"] and mean[id(e)] is not None])
        for e in entries:
            if not e["baseline"]:
                value = mean[id(e)]
                means[e["id"]][task] = value
                deltas[e["id"]].append(-math.inf if value is None else task_delta(metric, value, best))
    score = {cid: aggregate_deltas(d, how) for cid, d in deltas.items()}
    order = sorted(pool, key=lambda row: -score[row["id"]])  # stable: ties keep search order
    picked = order[: config.validate_top]
    record = {
        "seeds": seeds, "aggregate": how, "picked": [row["id"] for row in picked],
        "rows": [{"id": row["id"], "formula": row["formula"], "search_rank": pool.index(row) + 1,
                  "score": score[row["id"]] if math.isfinite(score[row["id"]]) else None,
                  "tasks": means[row["id"]]} for row in order],
    }
    return picked, record


def _mean_or_none(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if len(finite) == len(values) and finite else None


def _entries(store: RunStore, config: SearchConfig, top: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What one task's validation trains: the winners, then the baselines."""
    entries: list[dict[str, Any]] = []
    for row in top:
        record = store.candidate(row["id"])
        entries.append({"id": record.id, "formula": record.formula, "baseline": False,
                        "candidate": record_candidate(record)})
    for name in config.baseline_names():
        ref = get_reference(name)
        cand = ref.candidate()
        existing = store.candidate_by_fingerprint(cand.fingerprint())
        entries.append({"id": existing.id if existing else None, "formula": ref.formula, "baseline": True,
                        "name": ref.name, "candidate": cand})
    return entries


def _task_report(task: str, steps: int, seeds: list[int], metric: Metric,
                 entries: list[dict[str, Any]]) -> dict[str, Any]:
    """One task's part of a validation round: means, the paired comparison with the best
    baseline, rows best first (`entries` is sorted in place)."""
    for entry in entries:
        values = [v for v in entry.get("per_seed", []) if math.isfinite(v)]
        entry.setdefault("per_seed", [])
        entry["mean"] = statistics.fmean(values) if values else -math.inf
        entry["std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        entry.pop("candidate", None)
    baselines = [e for e in entries if e["baseline"] and e["per_seed"]]
    best = max(baselines, key=lambda e: metric.oriented(e["mean"])) if baselines else None
    _compare(entries, best, metric)
    hib = metric.higher_is_better
    entries.sort(key=lambda e: rank_key(e["mean"], None, 0, hib))  # stable: ties keep their order
    return {
        "task": task, "steps": steps, "seeds": len(seeds), "seed_values": seeds,
        "metric": metric.name, "higher_is_better": hib, "test": test_name(metric),
        "best_baseline": None if best is None else {"name": best.get("name"), "mean": best["mean"], "std": best["std"]},
        "rows": [{**e, "mean": e["mean"] if math.isfinite(e["mean"]) else None} for e in entries],
    }


def _compare(entries: list[dict[str, Any]], best: dict[str, Any] | None, metric: Metric) -> None:
    """Per winner: the paired difference to the best baseline (oriented: positive is better)
    with its 95 % interval and effect size, the raw one-sided p-value ("p_raw") and the
    Holm-corrected one ("p_value", what "beats_baseline" is decided on)."""
    winners = [e for e in entries if not e["baseline"]]
    for entry in entries:
        entry.update(p_value=None, p_raw=None, beats_baseline=False, difference=None, ci95=None, effect_size=None)
    tests = {}
    for entry in winners:
        if best is None or len(entry["per_seed"]) < 2:
            continue
        test = paired_difference([metric.oriented(v) for v in entry["per_seed"]],
                                 [metric.oriented(v) for v in best["per_seed"]])
        if test is not None:
            tests[id(entry)] = test
            entry.update(p_raw=test.p_value, difference=test.mean_difference,
                         ci95=[test.ci_low, test.ci_high], effect_size=_finite_or_none(test.effect_size))
    for entry, adjusted in zip(winners, holm([e["p_raw"] for e in winners]), strict=True):
        entry["p_value"] = adjusted
        entry["beats_baseline"] = bool(adjusted is not None and adjusted < ALPHA
                                       and metric.better(entry["mean"], best["mean"]))


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def validation_seeds(master: int, round_number: int, count: int) -> list[int]:
    """The fresh seeds of validation round `round_number` (1-based): derived from the run's
    master seed, never used by the search, and different in every round, so validating again
    adds independent evidence instead of repeating the same seeds."""
    labels: tuple[object, ...] = ("validate",) if round_number == 1 else ("validate", round_number)
    return [derive_seed(master, *labels, i) for i in range(count)]


def _next_round(store: RunStore) -> int:
    return 1 + max((v.round for v in store.validations()), default=0)


def _check_user_task(config: SearchConfig, task: str) -> None:
    """A user task must still be the file the search ran (same sha256) and import cleanly,
    before anything trains or is recorded."""
    if task not in config.user_tasks:
        return
    from afsearch.evaluate.custom import check_unchanged, resolve_task

    check_unchanged(task, config.user_tasks[task])
    resolve_task(task, config.task_config_for(task))


def _result(entry: dict[str, Any]) -> ValidationResult:
    return ValidationResult(
        candidate_id=entry["id"], formula=entry["formula"],
        baseline=entry.get("name") if entry["baseline"] else None, per_seed=tuple(entry["per_seed"]),
        mean=entry["mean"] if math.isfinite(entry["mean"]) else None, std=entry["std"],
        p_value=entry["p_value"], beats_baseline=entry["beats_baseline"], error=entry.get("error"),
    )


def paired_greater(a: list[float], b: list[float]) -> float | None:
    """One-sided paired t-test p-value that `a` is greater than `b` (pairs = the same seeds)."""
    test = paired_difference(a, b)
    return None if test is None else test.p_value
