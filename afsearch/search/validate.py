"""Validation of winners: retrain the top-k on fresh seeds beside the baselines.

Scores are *test* accuracies (the search selected on validation accuracy, so the test split is
the unbiased one), on seeds the search never used, with the ladder off. "Beats the best
baseline" means a one-sided Welch t-test (unequal variances) of the candidate's per-seed test
accuracies against the best baseline's gives p < 0.05 *and* its mean is higher. With few seeds
the test has little power: a candidate that is not significant is not shown to be worse."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from scipy import stats

from afsearch.candidate import Candidate
from afsearch.evaluate.result import EvalResult
from afsearch.execute import Executor, Job, make_executor
from afsearch.reference import get_reference
from afsearch.search.config import SearchConfig
from afsearch.search.report import BASELINE, VALIDATION_FILE, leaderboard_rows, main_task_and_steps
from afsearch.search.seeding import derive_seed
from afsearch.store import RunStore, write_atomic

ALPHA = 0.05
TEST_NAME = "one-sided Welch t-test on per-seed test accuracy vs the best baseline, p < 0.05"


def validate_run(store: RunStore, config: SearchConfig, executor: Executor | None = None,
                 on_event: Callable[[Any], None] | None = None) -> dict[str, Any]:
    import json

    task, search_steps = main_task_and_steps(store)
    steps = config.validate_steps or search_steps
    seeds = [derive_seed(config.seed, "validate", i) for i in range(config.validate_seeds)]
    top = [r for r in leaderboard_rows(store, top=10_000) if r["origin"] != BASELINE][: config.validate_top]
    entries: list[dict[str, Any]] = []
    for row in top:
        record = store.candidate(row["id"])
        spec = record.formula if record.kind == "activation" else json.dumps(record.genotype)
        entries.append({"id": record.id, "formula": record.formula, "baseline": False,
                        "candidate": Candidate(record.kind, spec or "").to_json()})
    for name in config.baselines:
        ref = get_reference(name)
        cand = Candidate.activation(ref.formula)
        existing = store.candidate_by_fingerprint(cand.fingerprint())
        entries.append({"id": existing.id if existing else None, "formula": ref.formula, "baseline": True,
                        "name": ref.name, "candidate": cand.to_json()})

    own = executor is None
    if executor is None:
        executor = make_executor(config.backend, ray_address=config.ray_address,
                                 cpus_per_trial=config.cpus_per_trial, gpus_per_trial=config.gpus_per_trial,
                                 num_workers=config.workers)
    started = time.time()
    try:
        task_config = config.task_config_for(task)
        for i, entry in enumerate(entries):
            payload = {"candidate": entry["candidate"], "task": task, "budget": steps, "seed": seeds,
                       "seeds": len(seeds), "ladder": False}
            if task_config:
                payload["task_config"] = task_config
            executor.submit(Job(f"v{i}", payload, config.timeout_s * len(seeds)))
        remaining = len(entries)
        while remaining:
            for result in executor.poll(timeout=1.0):
                entry = entries[int(result.job_id[1:])]
                remaining -= 1
                value = result.value if result.ok else None
                if value is None or value.get("status") == "error":
                    entry["error"] = (value or {}).get("error") or f"{result.status}: {result.error}"
                    entry["per_seed"] = []
                    continue
                res = EvalResult.from_json(value)
                entry["per_seed"] = [s.test_accuracy for s in res.per_seed] if res.ok else []
                if not res.ok:
                    entry["error"] = f"{res.status} at {res.stage}: {res.reason}"
    finally:
        if own:
            executor.shutdown()

    for entry in entries:
        values = [v for v in entry.get("per_seed", []) if math.isfinite(v)]
        entry["mean"] = statistics.fmean(values) if values else -math.inf
        entry["std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        entry.pop("candidate")
    baselines = [e for e in entries if e["baseline"] and e["per_seed"]]
    best = max(baselines, key=lambda e: e["mean"]) if baselines else None
    for entry in entries:
        entry["p_value"] = None
        entry["beats_baseline"] = False
        if entry["baseline"] or best is None or len(entry["per_seed"]) < 2:
            continue
        p = _welch_greater(entry["per_seed"], best["per_seed"])
        entry["p_value"] = p
        entry["beats_baseline"] = bool(p is not None and p < ALPHA and entry["mean"] > best["mean"])
    entries.sort(key=lambda e: -e["mean"] if math.isfinite(e["mean"]) else math.inf)
    report = {
        "task": task, "steps": steps, "seeds": len(seeds), "seed_values": seeds, "test": TEST_NAME,
        "best_baseline": None if best is None else {"name": best.get("name"), "mean": best["mean"], "std": best["std"]},
        "rows": [{**e, "mean": e["mean"] if math.isfinite(e["mean"]) else None} for e in entries],
        "seconds": time.time() - started,
    }
    write_atomic(store.path / VALIDATION_FILE, json.dumps(report, indent=2) + "\n")
    store.log(f"validated top {len(top)} on {len(seeds)} fresh seeds ({steps} steps)")
    if on_event is not None:
        from afsearch.search.engine import SearchEvent

        on_event(SearchEvent("validate", {"rows": report["rows"], "best_baseline": report["best_baseline"]}))
    return report


def _welch_greater(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2 or len(b) < 2:
        return None
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return 0.0 if statistics.fmean(a) > statistics.fmean(b) else 1.0
    result = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    p = float(result.pvalue)
    return p if math.isfinite(p) else None
