"""`evaluate`: screen, compile, probe and train one candidate on one task, with the ladder."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from afsearch.candidate import ACTIVATION, LAYER, Candidate
from afsearch.compile.token import materialise
from afsearch.defaults import FAILED
from afsearch.errors import TaskError, short_traceback
from afsearch.evaluate import baselines as _baselines
from afsearch.evaluate.cost import activation_cost
from afsearch.evaluate.ladder import (
    LadderConfig,
    QualityGate,
    quality_threshold,
    screen_stage,
    stability_stage,
)
from afsearch.evaluate.packed import packable, train_packed
from afsearch.evaluate.result import EvalResult, SeedResult, StageRecord
from afsearch.evaluate.schedule import CutoffCheck, Cutoffs, all_of
from afsearch.evaluate.tasks import DEFAULT_TASK, Task, config_to_json, get_task
from afsearch.evaluate.trainer import cpu_threads, pick_device, train
from afsearch.reference import reference_candidate


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


def evaluate(candidate: Candidate | str, task: str | Task = DEFAULT_TASK,
             budget: int | None = None, seed: int | Sequence[int] = 0, seeds: int = 1,
             ladder: bool | dict[str, Any] | LadderConfig = True, *, task_config: Any = None,
             device: str | None = None, threads: int | None = 1, baselines: bool = False,
             measure_cost: bool = True, pack: bool = True, schedule: Cutoffs | None = None) -> EvalResult:
    """Evaluate `candidate` (a Candidate, or a formula string) on `task` (name or Task) for
    `budget` steps (default: the task's) with seeds `seed .. seed+seeds-1` (or an explicit
    list). Returns a record with status "done", "rejected" (stage, reason, stats) or
    "failed" (message + short traceback); user errors in the task, budget or seeds raise
    TaskError. With `baselines=True` the reference activations are evaluated first (cached)
    and `delta_to_best_baseline` is filled; it is also filled whenever they were computed
    earlier in this process for the same conditions. With several seeds on an MLP task (and
    `pack`), the seeds train together as one pack (`afsearch.evaluate.packed`). `schedule`:
    a search scheduler's cutoffs for the first seed (`afsearch.evaluate.schedule`)."""
    _check(budget, seeds)
    cand = _as_candidate(candidate)
    task_obj = get_task(task, task_config)
    budget = budget or task_obj.recipe.steps
    recipe = dataclasses.replace(task_obj.recipe, steps=budget)
    seed_ids = _baselines.seed_list(seed, seeds)
    cfg = LadderConfig.from_option(ladder)
    result = _new_result(cand, task_obj, budget, seed_ids)
    if baselines:
        baseline_results(task_obj, budget, seed_ids, device=device, threads=threads)
    try:
        with cpu_threads(threads, pick_device(device)):
            _run(cand, task_obj, recipe, seed_ids, cfg, result, device, threads, measure_cost, pack,
                 schedule)
    except Exception as exc:  # a candidate's failure is a result, not a crash
        result.status, result.reason = FAILED, f"{type(exc).__name__}: {exc}"
        result.stage = result.stage or "train"
        result.error = short_traceback(exc)
    result.summarise()
    _baselines.fill_delta(result, _baselines.best_baseline(task_obj, budget, seed_ids))
    return result


def baseline_results(task: str | Task = DEFAULT_TASK, budget: int | None = None,
                     seeds: int | Sequence[int] = 1, names: Sequence[str] | None = None,
                     task_config: Any = None, **kwargs: Any) -> dict[str, EvalResult]:
    """Evaluate reference activations (no ladder) with the same budget and seeds as the
    candidates; `seeds` is a count (seeds 0..n-1) or a list; `names` default to the task's
    (`afsearch.evaluate.baselines.task_baselines`). Cached per process."""
    task_obj = get_task(task, task_config)
    names = _baselines.task_baselines(task_obj) if names is None else names
    budget = budget or task_obj.recipe.steps
    seed_ids = _baselines.seed_list(0, seeds) if isinstance(seeds, int) else list(seeds)
    cache = _baselines.cached_baselines(task_obj, budget, seed_ids)
    for name in names:
        if name not in cache:
            cand = reference_candidate(name)
            cache[name] = evaluate(cand, task_obj, budget=budget, seed=seed_ids, ladder=False,
                                   **kwargs)
    best = _baselines.best_baseline(task_obj, budget, seed_ids)
    for r in cache.values():
        _baselines.fill_delta(r, best)
    return {name: cache[name] for name in names}


def _new_result(cand: Candidate, task: Task, budget: int, seed_ids: list[int]) -> EvalResult:
    return EvalResult(cand.to_json(), task.name, config_to_json(task.config), budget, seed_ids,
                      metric=task.metric.name)


def _run(cand: Candidate, task: Task, recipe: Any, seed_ids: list[int],
         cfg: LadderConfig | None, result: EvalResult, device: str | None,
         threads: int | None, measure_cost: bool, pack: bool, schedule: Cutoffs | None) -> None:
    build = _prepare(cand, task, recipe, seed_ids, cfg, result, measure_cost, device, threads)
    if build is None:
        return
    if pack and len(seed_ids) > 1 and cand.kind in (ACTIVATION, LAYER) and packable(build()):
        watches = [_Watch(_gate(cfg, task, recipe, s, device, threads), schedule if k == 0 else None, task)
                   for k, s in enumerate(seed_ids)]
        outs = train_packed([build] * len(seed_ids), task.data, recipe, seed_ids,
                            [w.report for w in watches], _steps(watches), device, threads)
        for seed, watch, out in zip(seed_ids, watches, outs, strict=True):
            if not _absorb(result, watch, out, seed):
                return
        return
    for k, seed in enumerate(seed_ids):
        watch = _Watch(_gate(cfg, task, recipe, seed, device, threads), schedule if k == 0 else None, task)
        out = train(build, task.data, recipe, seed, watch.report, watch.steps, device, threads)
        if not _absorb(result, watch, out, seed):
            return


def _prepare(cand: Candidate, task: Task, recipe: Any, seed_ids: list[int], cfg: LadderConfig | None,
             result: EvalResult, measure_cost: bool, device: str | None = None,
             threads: int | None = 1) -> Callable[[], nn.Module] | None:
    """The ladder before training: screen, compile, stability probe, cost. Returns the model
    builder, or None when the candidate was rejected."""
    formula = cand.screen_formula
    if cfg and cfg.screen and formula is not None:
        result.stage = "screen"
        if not result.add_stage(screen_stage(formula)).passed:
            return None
    result.stage = "compile"
    start = time.perf_counter()
    if cand.is_layer:
        layer = cand.layer_factory()

        def build() -> nn.Module:
            return task.model(nn.ReLU, layer)
    else:
        act = cand.activation_factory()
        model_task = task.with_config(cand.task_overrides())
        example = task.data.train.x[:2]

        def build() -> nn.Module:
            # an MoA gate is sized by its first call: before the optimizer sees the parameters
            return materialise(model_task.model(act), example)
    result.params = sum(p.numel() for p in build().parameters())
    result.seconds += time.perf_counter() - start
    if cfg and cfg.stability:
        result.stage = "stability"
        stage = stability_stage(build, task.data, recipe, cfg, seed_ids[0], device, threads)
        if not result.add_stage(stage).passed:
            return None
    result.activation_cost = activation_cost(cand)  # a count: the same on every run
    if measure_cost:
        result.stage = "cost"
        result.activation_time = _baselines.activation_time(cand)
    result.stage = None
    return build


def _gate(cfg: LadderConfig | None, task: Task, recipe: Any, seed: int, device: str | None,
          threads: int | None) -> QualityGate | None:
    if not (cfg and cfg.quality):
        return None
    cfg = cfg.for_task(task.spec.gate)
    checks = []
    for step, ratio in cfg.gate_checks(recipe.steps):
        base = (_baselines.reference_value_at(task, recipe, seed, step, device, threads)
                if cfg.quality_baseline else None)
        checks.append((step, quality_threshold(cfg, task.chance, base, task.metric, ratio), base))
    *earlier, (step, threshold, base) = checks
    return QualityGate(step, threshold, base, task.metric, task.spec.reference, earlier)


class _Watch:
    """What watches one seed's training: the quality gate and the scheduler's cutoffs, as one
    `report` callback (the trainer knows only that)."""

    def __init__(self, gate: QualityGate | None, schedule: Cutoffs | None, task: Task) -> None:
        self.gate = gate
        self.check = CutoffCheck(schedule, task.metric) if schedule is not None else None
        self.report = all_of([gate, self.check])
        self.steps = sorted(set(gate.steps if gate else ()) | set(self.check.steps if self.check else ()))


def _steps(watches: Sequence[_Watch]) -> list[int]:
    return sorted({s for w in watches for s in w.steps})


def _absorb(result: EvalResult, watch: _Watch, out: Any, seed: int) -> bool:
    """Fold one seed's training into the result; False when the candidate is out. A run that
    was stopped counts its compute at the stage that stopped it."""
    if watch.check is not None:
        result.curve = list(watch.check.curve)
    for record in (watch.gate.record if watch.gate else None,
                   watch.check.record if watch.check else None):
        if record is None:
            continue
        record.seconds = out.seconds if not record.passed else 0.0
        record.steps = out.steps if not record.passed else 0
        result.add_stage(record)
        if not record.passed:
            return False
    if out.diverged:
        result.add_stage(StageRecord("train", False, f"training loss non-finite by step "
                                     f"{out.steps}", out.seconds, out.steps, {"seed": seed}))
        return False
    result.seconds += out.seconds
    result.steps += out.steps
    result.per_seed.append(SeedResult(seed, out.val_accuracy, out.val_loss,
                                      out.test_accuracy, out.test_loss, out.steps,
                                      out.seconds))
    return True


def evaluate_many(candidates: Sequence[Candidate | str], task: str | Task = DEFAULT_TASK,
                  budget: int | None = None, seed: int | Sequence[int] = 0, seeds: int = 1,
                  ladder: bool | dict[str, Any] | LadderConfig = True, *, task_config: Any = None,
                  device: str | None = None, threads: int | None = 1, measure_cost: bool = True,
                  pack: bool = True, schedule: Cutoffs | None = None) -> list[EvalResult]:
    """`evaluate` for several candidates at once, same conditions. On MLP tasks (and with
    `pack`) the survivors of the pre-training ladder are trained together with stacked weights
    (`afsearch.evaluate.packed`), each with its own quality gate; elsewhere one by one. Scores
    equal one-by-one evaluation up to floating-point summation order."""
    _check(budget, seeds)
    cands = [_as_candidate(c) for c in candidates]
    task_obj = get_task(task, task_config)
    budget = budget or task_obj.recipe.steps
    recipe = dataclasses.replace(task_obj.recipe, steps=budget)
    seed_ids = _baselines.seed_list(seed, seeds)
    cfg = LadderConfig.from_option(ladder)
    results = [_new_result(c, task_obj, budget, seed_ids) for c in cands]
    builds: dict[int, Callable[[], nn.Module]] = {}
    for i, cand in enumerate(cands):
        try:
            build = _prepare(cand, task_obj, recipe, seed_ids, cfg, results[i], measure_cost, device, threads)
        except Exception as exc:  # a candidate's failure is a result, not a crash
            _fail(results[i], exc)
            continue
        if build is not None:
            builds[i] = build
    can_pack = (pack and len(builds) > 1 and all(cands[i].kind in (ACTIVATION, LAYER) for i in builds)
                and all(packable(b()) for b in list(builds.values())[:1]))
    if can_pack:
        active = list(builds)
        for s in seed_ids:
            if not active:
                break
            first = schedule if s == seed_ids[0] else None
            watches = [_Watch(_gate(cfg, task_obj, recipe, s, device, threads), first, task_obj) for _ in active]
            try:
                outs = train_packed([builds[i] for i in active], task_obj.data, recipe, [s] * len(active),
                                    [w.report for w in watches], _steps(watches), device, threads)
            except Exception as exc:
                for i in active:
                    _fail(results[i], exc)
                break
            active = [i for i, w, o in zip(active, watches, outs, strict=True) if _absorb(results[i], w, o, s)]
    else:
        for i, build in builds.items():
            try:
                for k, s in enumerate(seed_ids):
                    watch = _Watch(_gate(cfg, task_obj, recipe, s, device, threads),
                                   schedule if k == 0 else None, task_obj)
                    out = train(build, task_obj.data, recipe, s, watch.report, watch.steps, device, threads)
                    if not _absorb(results[i], watch, out, s):
                        break
            except Exception as exc:
                _fail(results[i], exc)
    best = _baselines.best_baseline(task_obj, budget, seed_ids)
    for result in results:
        result.summarise()
        _baselines.fill_delta(result, best)
    return results


def _fail(result: EvalResult, exc: BaseException) -> None:
    result.status, result.reason = FAILED, f"{type(exc).__name__}: {exc}"
    result.stage = result.stage or "train"
    result.error = short_traceback(exc)


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
