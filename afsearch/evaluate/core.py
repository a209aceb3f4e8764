"""`evaluate`: screen, compile, probe and train one candidate on one task, with the ladder."""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Sequence
from typing import Any

from torch import nn

from afsearch.candidate import Candidate
from afsearch.errors import TaskError
from afsearch.evaluate import baselines as _baselines
from afsearch.evaluate.ladder import (
    LadderConfig,
    QualityGate,
    quality_threshold,
    screen_stage,
    stability_stage,
)
from afsearch.evaluate.result import FAILED, EvalResult, SeedResult, StageRecord
from afsearch.evaluate.tasks import DEFAULT_TASK, Task, config_to_json, get_task
from afsearch.evaluate.trainer import cpu_threads, pick_device, train


def _as_candidate(candidate: Candidate | str | dict[str, Any]) -> Candidate:
    if isinstance(candidate, Candidate):
        return candidate
    if isinstance(candidate, dict):
        return Candidate.from_json(candidate)
    return Candidate.activation(candidate)


def _check(budget: int | None, seeds: int) -> None:
    if budget is not None and budget <= 0:
        raise TaskError(f"budget must be a positive number of training steps, got {budget}")
    if seeds <= 0:
        raise TaskError(f"seeds must be a positive count, got {seeds}")


def _short_traceback(exc: BaseException, lines: int = 6) -> str:
    text = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join(text[-lines:])


def evaluate(candidate: Candidate | str, task: str | Task = DEFAULT_TASK,
             budget: int | None = None, seed: int | Sequence[int] = 0, seeds: int = 1,
             ladder: bool | dict[str, Any] | LadderConfig = True, *, task_config: Any = None,
             device: str | None = None, threads: int | None = 1, baselines: bool = False,
             measure_cost: bool = True) -> EvalResult:
    """Evaluate `candidate` (a Candidate, or a formula string) on `task` (name or Task) for
    `budget` steps (default: the task's) with seeds `seed .. seed+seeds-1` (or an explicit
    list). Returns a record with status "done", "rejected" (stage, reason, stats) or
    "failed" (message + short traceback); user errors in the task, budget or seeds raise
    TaskError. With `baselines=True` the reference activations are evaluated first (cached)
    and `delta_to_best_baseline` is filled; it is also filled whenever they were computed
    earlier in this process for the same conditions."""
    _check(budget, seeds)
    cand = _as_candidate(candidate)
    task_obj = get_task(task, task_config)
    budget = budget or task_obj.recipe.steps
    recipe = dataclasses.replace(task_obj.recipe, steps=budget)
    seed_ids = _baselines.seed_list(seed, seeds)
    cfg = LadderConfig.from_option(ladder)
    result = EvalResult(cand.to_json(), task_obj.name, config_to_json(task_obj.config), budget,
                        seed_ids)
    if baselines:
        _baselines.baseline_results(task_obj, budget, seed_ids, device=device, threads=threads)
    try:
        with cpu_threads(threads, pick_device(device)):
            _run(cand, task_obj, recipe, seed_ids, cfg, result, device, threads, measure_cost)
    except Exception as exc:  # a candidate's failure is a result, not a crash
        result.status, result.reason = FAILED, f"{type(exc).__name__}: {exc}"
        result.stage = result.stage or "train"
        result.error = _short_traceback(exc)
    result.summarise()
    best = _baselines.best_baseline(task_obj, budget, seed_ids)
    if best is not None and result.ok:
        result.delta_to_best_baseline = result.mean_accuracy - best
    return result


def _run(cand: Candidate, task: Task, recipe: Any, seed_ids: list[int],
         cfg: LadderConfig | None, result: EvalResult, device: str | None,
         threads: int | None, measure_cost: bool) -> None:
    if cfg and cfg.screen and not cand.is_layer:
        result.stage = "screen"
        if not result.add_stage(screen_stage(cand.spec)).passed:
            return
    result.stage = "compile"
    start = time.perf_counter()
    if cand.is_layer:
        layer = cand.layer_factory()

        def build() -> nn.Module:
            return task.model(nn.ReLU, layer)
    else:
        act = cand.activation_factory()

        def build() -> nn.Module:
            return task.model(act)
    result.params = sum(p.numel() for p in build().parameters())
    result.seconds += time.perf_counter() - start
    if cfg and cfg.stability:
        result.stage = "stability"
        if not result.add_stage(stability_stage(build, task.data, cfg, seed_ids[0])).passed:
            return
    if measure_cost:
        result.stage = "cost"
        result.activation_cost = _baselines.activation_cost(cand)
    result.stage = None
    for seed in seed_ids:
        gate = None
        if cfg and cfg.quality:
            step = cfg.gate_step(recipe.steps)
            base = (_baselines.relu_accuracy_at(task, recipe, seed, step, device, threads)
                    if cfg.quality_baseline else None)
            gate = QualityGate(step, quality_threshold(cfg, task.chance, base), base)
        out = train(build, task.data, recipe, seed, gate, [gate.step] if gate else (),
                    device, threads)
        if gate and gate.record:
            gate.record.seconds = out.seconds if not gate.record.passed else 0.0
            gate.record.steps = out.steps if not gate.record.passed else 0
            result.add_stage(gate.record)
            if not gate.record.passed:
                return
        if out.diverged:
            result.add_stage(StageRecord("train", False, f"training loss non-finite by step "
                                         f"{out.steps}", out.seconds, out.steps, {"seed": seed}))
            return
        result.seconds += out.seconds
        result.steps += out.steps
        result.per_seed.append(SeedResult(seed, out.val_accuracy, out.val_loss,
                                          out.test_accuracy, out.test_loss, out.steps,
                                          out.seconds))


def evaluate_multi(candidate: Candidate | str, tasks: Sequence[str | Task | tuple[str, Any]],
                   **kwargs: Any) -> dict[str, EvalResult]:
    """One result per task (keyed by task name) so a strategy can select over several tasks;
    a (name, config) pair selects a non-default config."""
    results: dict[str, EvalResult] = {}
    for item in tasks:
        name, config = item if isinstance(item, tuple) else (item, None)
        task_obj = get_task(name, config)
        results[task_obj.name] = evaluate(candidate, task_obj, **kwargs)
    return results


_PAYLOAD_KEYS = {"candidate", "task", "task_config", "budget", "seed", "seeds", "ladder",
                 "threads", "device", "baselines", "measure_cost"}


def evaluate_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """JSON in, JSON out (for worker processes). Keys: candidate ({"kind","spec"}), task,
    task_config (dict), budget, seed (int or list), seeds, ladder (bool or dict of
    LadderConfig fields), threads, device, baselines, measure_cost. A user error comes back
    as {"status": "error", "error": message} instead of raising across the process boundary."""
    unknown = sorted(set(payload) - _PAYLOAD_KEYS)
    if unknown:
        return {"status": "error", "error": f"unknown payload key(s) {', '.join(unknown)}"}
    args = dict(payload)
    try:
        candidate = Candidate.from_json(args.pop("candidate"))
        task = args.pop("task", DEFAULT_TASK)
        return evaluate(candidate, task, **args).to_json()
    except Exception as exc:  # noqa: BLE001 - report every error as data
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
