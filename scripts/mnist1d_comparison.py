"""`bench_search.py --mnist1d`: each strategy searches the default space on mnist1d-mlp alone
(the search a user gets from `afsearch search --budget N --strategy S --extra-task none`; by
default a search on mnist1d-mlp also scores on mnist1d-cnn), then the winners are retrained on
fresh seeds beside the space's seeded (published) formulas.

Searches are real runs (`runs-dir/<label>-s<seed>`, local backend, one CPU each, two side by
side with --workers 2) and resumable: each call runs them for at most --max-minutes and stops
them cleanly; the next call resumes them. Once every search has its budget, validation
retrains each strategy's top 3 (by search score) and every seeded formula on --validate-seeds
fresh seeds (`evaluate`, ladder off, the task's full recipe). A strategy's winner is the one of
its top 3 with the best mean *validation* accuracy over those seeds, and its *test* accuracy is
reported (choosing on test would flatter it); the best seeded formula is chosen the same way.
Per-formula validation results are cached in `runs-dir/validation.json`."""

from __future__ import annotations

import json
import math
import multiprocessing
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from afsearch.evaluate import evaluate
from afsearch.search.config import SearchConfig
from afsearch.search.engine import Search
from afsearch.search.seeding import derive_seed
from afsearch.spaces import load_space
from afsearch.store import RunStore

TASK = "mnist1d-mlp"


def run_name(label: str, seed: int) -> str:
    return f"{label.replace('+', '-')}-s{seed}"


def search_chunk(job: tuple[str, str, dict[str, Any], int, int, str, float]) -> tuple[str, int, bool]:
    """Create or resume one search and run it until its budget or `minutes` are up:
    (label, trained evaluations, finished)."""
    import torch

    torch.set_num_threads(1)
    label, strategy, options, seed, budget, runs_dir, minutes = job
    path = Path(runs_dir) / run_name(label, seed)
    if path.exists():
        search = Search.resume(path, runs_dir, overrides={"budget": budget})
    else:
        # one task, as measured before transfer became the default (issue 14's comparison is
        # on mnist1d-mlp alone; `afsearch search --extra-task none`)
        config = SearchConfig(space="swish", task=TASK, extra_tasks=[], strategy=strategy or None, strategy_options=options,
                              budget=budget, seed=seed, name=run_name(label, seed), backend="local",
                              validate_top=0)
        search = Search.create(config, runs_dir)
    timer = threading.Timer(60 * minutes, search.stop)
    timer.start()
    try:
        summary = search.run()
    finally:
        timer.cancel()
        search.close()
    return label, summary.trained, summary.state == "finished" and summary.trained >= budget


def top_formulas(runs_dir: str, label: str, seed: int, k: int = 3) -> list[str]:
    from afsearch.report.runs import leaderboard_rows

    with RunStore.open(Path(runs_dir) / run_name(label, seed), "ro") as store:
        rows = [r for r in leaderboard_rows(store, top=10_000) if r["origin"] != "baseline"]
    return [r["formula"] for r in rows[:k]]


def validation_seeds(n: int) -> list[int]:
    return [derive_seed(9_000, "bench-mnist1d-validate", i) for i in range(n)]


def validate_formula(job: tuple[str, int]) -> tuple[str, dict[str, list[float]]]:
    import torch

    torch.set_num_threads(1)
    formula, n = job
    result = evaluate(formula, TASK, seed=validation_seeds(n), seeds=n, ladder=False)
    return formula, {"val": [s.val_accuracy for s in result.per_seed],
                     "test": result.test_values() if result.ok else []}


def mean_se(values: list[float]) -> tuple[float, float]:
    if not values:
        return -math.inf, math.inf
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.inf
    return statistics.fmean(values), se


def gap(row: tuple[str, float, float], other: tuple[str, float, float]) -> str:
    """The difference of two test means in points, starred when above max(1 point, the
    standard error of the difference)."""
    diff = 100 * (row[1] - other[1])
    margin = max(1.0, 100 * math.sqrt(row[2] ** 2 + other[2] ** 2))
    return f"{diff:+.1f}{'*' if diff > margin else ' '}"


def compare(labels: list[tuple[str, str, dict[str, Any]]], seed: int, budget: int, runs_dir: str, workers: int,
            minutes: float, n_seeds: int) -> None:
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    started = time.time()
    with ProcessPoolExecutor(max(1, workers), mp_context=context) as pool:
        jobs = [(label, strategy, options, seed, budget, runs_dir, minutes) for label, strategy, options in labels]
        finished = {label: done for label, _, done in pool.map(search_chunk, jobs)}
    if not all(finished.values()):
        left = [label for label, done in finished.items() if not done]
        print(f"searches not finished after {time.time() - started:.0f} s: {', '.join(left)}; run again to resume")
        return
    cache_path = Path(runs_dir) / "validation.json"
    cache: dict[str, dict[str, list[float]]] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    tops = {label: top_formulas(runs_dir, label, seed) for label, _, _ in labels}
    space = load_space("swish")
    seeded = [space.to_candidate(g).spec for g in space.seeds()]
    todo = sorted(({f for fs in tops.values() for f in fs} | set(seeded)) - set(cache))
    deadline = time.time() + 60 * minutes
    with ProcessPoolExecutor(max(1, workers), mp_context=context) as pool:
        pending = list(todo)
        while pending and time.time() < deadline:
            batch, pending = pending[: 2 * max(1, workers)], pending[2 * max(1, workers):]
            for formula, values in pool.map(validate_formula, [(f, n_seeds) for f in batch]):
                cache[formula] = values
                cache_path.write_text(json.dumps(cache, indent=1))
    if pending:
        print(f"validation: {len(pending)} formulas left; run again to go on")
        return

    def winner(formulas: list[str]) -> tuple[str, float, float]:
        scored = [(mean_se(cache[f]["val"])[0], f) for f in formulas if cache[f]["test"]]
        best = max(scored)[1]
        mean, se = mean_se(cache[best]["test"])
        return best, mean, se

    seeded_best = winner(seeded)
    print(f"\nmnist1d-mlp, space swish, {budget} evaluations, master seed {seed}; winners retrained on "
          f"{n_seeds} fresh seeds (chosen by validation accuracy among each search's top 3, test accuracy shown)")
    print(f"{'strategy':<22} {'test acc':>9} {'± se':>7}  {'vs seeded':>10}  {'vs random':>10}  formula")
    results = {label: winner(tops[label]) for label, _, _ in labels}
    rows = [*results.items(), ("best seeded formula", seeded_best)]
    for label, row in rows:
        formula, mean, se = row
        versus_random = gap(row, results["random"]) if "random" in results else "-"
        print(f"{label:<22} {mean:9.4f} {se:7.4f}  {gap(row, seeded_best):>10}  {versus_random:>10}  {formula}")
    print("(points; * = ahead by more than max(1 point, the standard error of the difference))")
