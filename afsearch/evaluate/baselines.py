"""Reference activations under identical conditions, and the measured time of an activation.

Everything here is cached per process: the ReLU accuracy the quality gate compares with and
the baseline results `delta_to_best_baseline` refers to."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from afsearch.candidate import Candidate
from afsearch.evaluate.result import EvalResult
from afsearch.evaluate.tasks import Task
from afsearch.evaluate.trainer import Recipe, train
from afsearch.reference import DEFAULT_BASELINES, reference_candidate

_GATE_CACHE: dict[tuple[Any, ...], float] = {}
_BASELINE_CACHE: dict[tuple[Any, ...], dict[str, EvalResult]] = {}


def task_baselines(task: Task) -> tuple[str, ...]:
    """The reference activations a task is compared with when none are named: the task's own
    list (lm-transformer: GELU, ReLU, SiLU, SwiGLU, GeGLU) or DEFAULT_BASELINES."""
    spec = task.spec
    return tuple(spec.baselines(task.config)) if spec.baselines is not None else DEFAULT_BASELINES


def reference_value_at(task: Task, recipe: Recipe, seed: int, step: int,
                       device: str | None = None, threads: int | None = 1) -> float:
    """The task's validation metric (accuracy or loss) for its reference activation
    (`TaskSpec.reference`: ReLU by default, GELU for the LM task) after `step` of
    `recipe.steps` steps, same seed; the run stops right after `step`, so this costs `step`
    steps once."""
    key = (task.name, task.config, recipe, seed, step, device)
    loss = task.metric.source == "loss"
    if key not in _GATE_CACHE:
        seen: dict[int, float] = {}

        def report(s: int, acc: float, val_loss: float) -> bool:
            seen[s] = val_loss if loss else acc
            return s < step

        name = task.spec.reference
        act = nn.ReLU if name == "relu" else reference_candidate(name).activation_factory()
        train(lambda: task.model(act), task.data, recipe, seed, report, [step], device, threads)
        _GATE_CACHE[key] = seen[step]
    return _GATE_CACHE[key]


def seed_list(seed: int | Sequence[int], seeds: int = 1) -> list[int]:
    if isinstance(seed, int):
        return [seed + i for i in range(seeds)]
    return list(seed)


def _key(task: Task, budget: int, seeds: list[int]) -> tuple[Any, ...]:
    return (task.name, task.config, budget, tuple(seeds))


def best_baseline(task: Task, budget: int, seeds: list[int]) -> float | None:
    """Best mean metric value (by the task's metric direction) among baselines computed so far
    for these conditions, if any."""
    done = [r.value for r in cached_baselines(task, budget, seeds).values() if r.ok]
    return task.metric.best(done)


def cached_baselines(task: Task, budget: int, seeds: list[int]) -> dict[str, EvalResult]:
    """The per-process store of reference results for these conditions (filled by
    `afsearch.evaluate.core.baseline_results`)."""
    return _BASELINE_CACHE.setdefault(_key(task, budget, seeds), {})


def fill_delta(result: EvalResult, best: float | None) -> None:
    """`delta_to_best_baseline`: positive = better than the best baseline."""
    if best is not None and result.ok:
        result.delta_to_best_baseline = result.metric_spec.delta(result.value, best)


# ---------------------------------------------------------------- activation time
def time_ratio(module: nn.Module, ref: nn.Module, shape: tuple[int, ...], reps: int = 10) -> float:
    """Median of per-repetition time ratios module/ref, the two timed alternately on the same
    tensor so machine noise hits both alike."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).requires_grad_(True)
    grad = torch.ones(shape)

    def once(m: nn.Module) -> float:
        start = time.perf_counter()
        m(x).backward(grad)
        x.grad = None
        return time.perf_counter() - start

    ratios = []
    for i in range(reps + 3):
        t_module, t_ref = once(module), once(ref)
        if i >= 3:  # warm-up
            ratios.append(t_module / max(t_ref, 1e-9))
    return sorted(ratios)[len(ratios) // 2]


def activation_time(candidate: Candidate, factory: Callable[..., nn.Module] | None = None) -> float:
    """Forward+backward time of the activation (or layer, on NCHW) relative to ReLU's
    (BatchNorm2d+ReLU's for layers), measured side by side on the same tensor. It varies from
    run to run; the `cost` objective uses the counted `afsearch.evaluate.cost.activation_cost`."""
    if candidate.is_layer:
        shape: tuple[int, ...] = (32, 16, 16, 16)
        module = (factory or candidate.layer_factory())(16)
        ref: nn.Module = nn.Sequential(nn.BatchNorm2d(16), nn.ReLU())
    else:
        shape = (256, 1024)
        module = (factory or candidate.activation_factory())()
        ref = nn.ReLU()
    return time_ratio(module, ref, shape)
