"""Evaluate candidates: proxy tasks, a direct trainer, the early-rejection ladder, baselines.

    evaluate(candidate, task="mnist1d-mlp", budget=None, seed=0, seeds=1, ladder=True, ...)
    evaluate_multi(candidate, tasks, ...) -> {task: EvalResult}
    evaluate_payload(payload_dict) -> result_dict   (JSON in/out, for worker processes)
    baseline_results(task, budget, seeds) -> {name: EvalResult}
    successive_halving(candidates, task, budget, eta=3) -> [EvalResult]

This package is itself callable: `afsearch.evaluate(...)` is `evaluate(...)` above. Python sets
`afsearch.evaluate` to this subpackage as soon as anything imports it, so a function of that
name on `afsearch` could never be reached reliably; a callable package is the same object
whichever was imported first.
"""

import sys
import types

from afsearch.evaluate.baselines import DEFAULT_BASELINES, activation_time, baseline_results
from afsearch.evaluate.core import evaluate, evaluate_many, evaluate_multi, evaluate_payload
from afsearch.evaluate.cost import activation_cost
from afsearch.evaluate.ladder import LadderConfig, successive_halving
from afsearch.evaluate.result import EvalResult, SeedResult, StageRecord
from afsearch.evaluate.tasks import DEFAULT_TASK, TASKS, Task, get_task
from afsearch.evaluate.trainer import Data, Recipe, Split, TrainResult, train


class _CallablePackage(types.ModuleType):
    """`afsearch.evaluate(candidate, ...)` forwards to `afsearch.evaluate.core.evaluate`."""

    def __call__(self, *args, **kwargs) -> EvalResult:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

__all__ = [
    "DEFAULT_BASELINES",
    "DEFAULT_TASK",
    "TASKS",
    "Data",
    "EvalResult",
    "LadderConfig",
    "Recipe",
    "SeedResult",
    "Split",
    "StageRecord",
    "Task",
    "TrainResult",
    "activation_cost",
    "activation_time",
    "baseline_results",
    "evaluate",
    "evaluate_many",
    "evaluate_multi",
    "evaluate_payload",
    "get_task",
    "successive_halving",
    "train",
]
