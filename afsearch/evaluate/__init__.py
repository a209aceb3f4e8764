"""Evaluate candidates: proxy tasks, a direct trainer, the early-rejection ladder, baselines.

    evaluate(candidate, task="mnist1d-mlp", budget=None, seed=0, seeds=1, ladder=True, ...)
    evaluate_multi(candidate, tasks, ...) -> {task: EvalResult}
    serve(request_json) -> reply_json   (the worker side of the EvalRequest/EvalReply protocol)
    baseline_results(task, budget, seeds) -> {name: EvalResult}
    evaluate(..., schedule=Cutoffs(...))   (a search scheduler's cutoffs, checked while training)

This package is itself callable: `afsearch.evaluate(...)` is `evaluate(...)` above. Python sets
`afsearch.evaluate` to this subpackage as soon as anything imports it, so a function of that
name on `afsearch` could never be reached reliably; a callable package is the same object
whichever was imported first.
"""

import sys
import types

from afsearch.evaluate.baselines import activation_time
from afsearch.evaluate.core import baseline_results, evaluate, evaluate_many, evaluate_multi
from afsearch.evaluate.cost import activation_cost
from afsearch.evaluate.ladder import LadderConfig
from afsearch.evaluate.protocol import EvalReply, EvalRequest, serve
from afsearch.evaluate.result import EvalResult, SeedResult, StageRecord
from afsearch.evaluate.schedule import Cutoff, Cutoffs
from afsearch.evaluate.tasks import DEFAULT_TASK, TASKS, Task, get_task
from afsearch.evaluate.trainer import Data, Recipe, Split, TrainResult, train
from afsearch.reference import DEFAULT_BASELINES


class _CallablePackage(types.ModuleType):
    """`afsearch.evaluate(candidate, ...)` forwards to `afsearch.evaluate.core.evaluate`."""

    def __call__(self, *args, **kwargs) -> EvalResult:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

__all__ = [
    "DEFAULT_BASELINES",
    "DEFAULT_TASK",
    "TASKS",
    "Cutoff",
    "Cutoffs",
    "Data",
    "EvalReply",
    "EvalRequest",
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
    "get_task",
    "serve",
    "train",
]
