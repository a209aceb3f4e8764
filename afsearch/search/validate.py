"""Validation of winners: retrain the top-k on fresh seeds beside the baselines.

Scores are *test* values of the task's metric (accuracy, or a loss where lower is better; the
search selected on validation, so the test split is the unbiased one), on seeds the search never used, with the ladder off. "Beats the best
baseline" means a one-sided Welch t-test (unequal variances) of the candidate's per-seed test
accuracies against the best baseline's gives p < 0.05 *and* its mean is higher. With few seeds
the test has little power: a candidate that is not significant is not shown to be worse."""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

from scipy import stats

from afsearch.evaluate.metric import Metric
from afsearch.evaluate.protocol import WORKER_STAGE, EvalReply, EvalRequest
from afsearch.execute import Executor, Job
from afsearch.reference import get_reference
from afsearch.report.runs import (
    BASELINE,
    VALIDATION_FILE,
    leaderboard_rows,
    main_task_and_steps,
    record_candidate,
    run_metric,
)
from afsearch.search.config import SearchConfig
from afsearch.search.events import SearchEvent
from afsearch.search.preflight import executor_for
from afsearch.search.seeding import derive_seed
from afsearch.store import RunStore, ValidationResult, rank_key, write_atomic

ALPHA = 0.05
TEST_NAME = "one-sided Welch t-test on per-seed test accuracy vs the best baseline, p < 0.05"


def test_name(metric: Metric) -> str:
    if metric.higher_is_better and metric.name == "accuracy":
        return TEST_NAME
    return (f"one-sided Welch t-test on per-seed test {metric.name} vs the best baseline "
            f"({'higher' if metric.higher_is_better else 'lower'} is better), p < 0.05")


def validate_run(store: RunStore, config: SearchConfig, executor: Executor | None = None,
                 on_event: Callable[[Any], None] | None = None) -> dict[str, Any]:
    import json

    task, search_steps = main_task_and_steps(store)
    _check_user_task(config, task)
    metric = run_metric(store)
    hib = metric.higher_is_better
    steps = config.validate_steps or search_steps
    seeds = [derive_seed(config.seed, "validate", i) for i in range(config.validate_seeds)]
    # chosen by search score, never by an earlier validation: validating again must not just
    # confirm the previous round's picks when the search has found better candidates since
    rows = sorted(leaderboard_rows(store, top=10_000), key=lambda r: rank_key(r["mean"], None, r["id"], hib))
    top = [r for r in rows if r["origin"] != BASELINE][: config.validate_top]
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

    own = executor is None
    if executor is None:
        executor = executor_for(config)
    started = time.time()
    task_config = config.task_config_for(task)
    requests = [EvalRequest((entry["candidate"],), task, steps, tuple(seeds), ladder=None, task_config=task_config,
                            device=None if config.device == "auto" else config.device) for entry in entries]
    try:
        for i, request in enumerate(requests):
            executor.submit(Job(f"v{i}", request.to_json(), config.timeout_s * len(seeds)))
        remaining = len(entries)
        while remaining:
            for job in executor.poll(timeout=1.0):
                i = int(job.job_id[1:])
                remaining -= 1
                (res,) = EvalReply.from_job(requests[i], job).results
                entries[i]["per_seed"] = res.test_values() if res.ok else []
                if not res.ok:
                    entries[i]["error"] = res.reason if res.stage == WORKER_STAGE else \
                        f"{res.status} at {res.stage}: {res.reason}"
    finally:
        if own:
            executor.shutdown()

    for entry in entries:
        values = [v for v in entry.get("per_seed", []) if math.isfinite(v)]
        entry["mean"] = statistics.fmean(values) if values else -math.inf
        entry["std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        entry.pop("candidate")
    baselines = [e for e in entries if e["baseline"] and e["per_seed"]]
    best = max(baselines, key=lambda e: metric.oriented(e["mean"])) if baselines else None
    for entry in entries:
        entry["p_value"] = entry["p_paired"] = None
        entry["beats_baseline"] = False
        if entry["baseline"] or best is None or len(entry["per_seed"]) < 2:
            continue
        # one-sided in the metric's direction: for a loss, "better" is "less"
        p = _welch_greater([metric.oriented(v) for v in entry["per_seed"]],
                           [metric.oriented(v) for v in best["per_seed"]])
        entry["p_value"] = p
        entry["beats_baseline"] = bool(p is not None and p < ALPHA and metric.better(entry["mean"], best["mean"]))
        # every entry ran on the same seeds: the paired test (same seed, same data order) is
        # reported beside the decision's Welch test, which assumes nothing about the pairing
        entry["p_paired"] = paired_greater([metric.oriented(v) for v in entry["per_seed"]],
                                           [metric.oriented(v) for v in best["per_seed"]])
    entries.sort(key=lambda e: rank_key(e["mean"], None, 0, hib))  # stable: ties keep their order
    number = store.add_validation_round(task, steps, seeds, [_result(e) for e in entries])
    report = {
        "round": number, "task": task, "steps": steps, "seeds": len(seeds), "seed_values": seeds,
        "metric": metric.name, "higher_is_better": hib, "test": test_name(metric),
        "best_baseline": None if best is None else {"name": best.get("name"), "mean": best["mean"], "std": best["std"]},
        "rows": [{**e, "mean": e["mean"] if math.isfinite(e["mean"]) else None} for e in entries],
        "seconds": time.time() - started,
    }
    write_atomic(store.path / VALIDATION_FILE, json.dumps(report, indent=2) + "\n")
    store.log(f"validation round {number}: top {len(top)} on {len(seeds)} fresh seeds ({steps} steps)")
    if on_event is not None:
        on_event(SearchEvent("validate", {"rows": report["rows"], "best_baseline": report["best_baseline"]}))
    return report


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
    if len(a) != len(b) or len(a) < 2:
        return None
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if statistics.pvariance(diffs) == 0:
        return 0.0 if diffs[0] > 0 else 1.0
    with warnings.catch_warnings():  # nearly equal samples: scipy warns, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_rel(a, b, alternative="greater").pvalue)
    return p if math.isfinite(p) else None


def _welch_greater(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2 or len(b) < 2:
        return None
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return 0.0 if statistics.fmean(a) > statistics.fmean(b) else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
    return p if math.isfinite(p) else None
