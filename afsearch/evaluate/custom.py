"""User tasks: `CustomTask` (the user's data and model, built with keyword arguments) and
`resolve_task`, the one place a task reference (``path/to/file.py:NAME`` or
``package.module:NAME``) is turned into a `Task`.

    # mytask.py
    import afsearch
    def make_task(width=64):
        return afsearch.CustomTask(train=(x, y), val=(xv, yv), test=(xt, yt),
                                   build=lambda: MyNet(width), steps=300)

    afsearch search --task mytask.py:make_task --task-option width=32

Resolving a reference imports the user's file: it runs their code, which they asked for.
Nothing read from a run directory ever gets here (`show`, `leaderboard`, `plot`, ... read the
recorded metric and steps from config.toml instead)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from afsearch.errors import TaskError
from afsearch.evaluate.metric import get_metric
from afsearch.evaluate.models import ActFactory, NormActFactory
from afsearch.evaluate.tasks import Task, TaskSpec
from afsearch.evaluate.trainer import Data, Recipe, Split

KINDS = ("classification", "regression")
OPTIMIZERS = ("adamw", "sgd")
_DEFAULT = Recipe()
#: set in Ray workers whose working directory is the shipped folder of the task file(s)
SHIPPED_ENV = "AFSEARCH_SHIPPED_TASK_DIR"


@dataclass(frozen=True)
class UserTaskConfig:
    """The config of a user task: the keyword arguments its callable was given, as sorted JSON
    (hashable, so per-process caches can key on it)."""

    options: str = "{}"


def _split(value: Any, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """An `(x, y)` pair of tensors/arrays, or a dataset of `(x, y)` items, as two tensors."""
    if isinstance(value, tuple | list) and len(value) == 2 and not _is_dataset(value):
        x, y = value
        try:
            return torch.as_tensor(x), torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TaskError(f"CustomTask {which}: cannot make tensors of (x, y): {exc}") from None
    if _is_dataset(value):
        n = len(value)
        if n == 0:
            raise TaskError(f"CustomTask {which}: the dataset is empty")
        try:
            items = [value[i] for i in range(n)]
            xs = torch.stack([torch.as_tensor(item[0]) for item in items])
            ys = torch.stack([torch.as_tensor(item[1]) for item in items])
        except Exception as exc:  # noqa: BLE001 - the user's dataset: report what it raised
            raise TaskError(f"CustomTask {which}: reading the dataset failed: "
                            f"{type(exc).__name__}: {exc}") from None
        return xs, ys
    raise TaskError(f"CustomTask {which}: expected (x, y) tensors or a dataset of (x, y) items, "
                    f"got {type(value).__name__}")


def _is_dataset(value: Any) -> bool:
    if isinstance(value, str | bytes | dict) or not (hasattr(value, "__len__") and hasattr(value, "__getitem__")):
        return False
    if isinstance(value, tuple | list):  # a list of (x, y) pairs is a dataset; (x, y) is not
        return len(value) != 2 or all(isinstance(v, tuple | list) and len(v) == 2 for v in value)
    return not isinstance(value, torch.Tensor)


def _kind(y: torch.Tensor, kind: str | None) -> str:
    if kind is None:
        return "regression" if y.is_floating_point() else "classification"
    if kind not in KINDS:
        raise TaskError(f"CustomTask kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def _tensors(x: torch.Tensor, y: torch.Tensor, regression: bool, which: str) -> Split:
    if len(x) != len(y):
        raise TaskError(f"CustomTask {which}: x has {len(x)} rows but y has {len(y)}")
    if len(x) == 0:
        raise TaskError(f"CustomTask {which}: no rows")
    if regression:
        y = y.float()
        y = y[:, None] if y.ndim == 1 else y
    else:
        if y.is_floating_point() or y.ndim != 1:
            raise TaskError(f"CustomTask {which}: classification labels must be a 1-D integer "
                            f"tensor, got {y.dtype} of shape {tuple(y.shape)}")
        if int(y.min()) < 0:
            raise TaskError(f"CustomTask {which}: labels must be 0 .. classes-1, found {int(y.min())}")
        y = y.long()
    return Split(x.float().contiguous(), y.contiguous())


def _build_kind(build: Callable[..., nn.Module]) -> str:
    """"act" for build(act), "plain" for build() (activations patched afterwards)."""
    if not callable(build):
        raise TaskError(f"CustomTask build must be callable, got {type(build).__name__}")
    try:
        params = list(inspect.signature(build).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable: treat as build()
        return "plain"
    required = [p for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(required) == 0:
        return "plain"
    if len(required) == 1:
        return "act"
    raise TaskError("CustomTask build must take no argument (its nn.ReLU/GELU/... modules are "
                    "replaced) or one (a factory of fresh activation modules), "
                    f"got {len(required)} required arguments")


def _model_builder(build: Callable[..., nn.Module], norm_build: Callable[..., nn.Module] | None) -> Callable[..., nn.Module]:
    from afsearch.api import DEFAULT_REPLACE, patch_activations

    how = _build_kind(build)

    def model(_config: Any, _data: Data, act: ActFactory, norm_act: NormActFactory | None) -> nn.Module:
        if norm_act is not None:
            assert norm_build is not None  # Task.model refuses layers on tasks without the hook
            return _checked(norm_build(norm_act), "build_norm_act")
        if how == "act":
            return _checked(build(act), "build")
        net = _checked(build(), "build")
        with warnings.catch_warnings():  # nothing patched is an error here, with its own message
            warnings.simplefilter("ignore")
            patched = patch_activations(net, act)
        if patched == 0:
            names = ", ".join(t.__name__ for t in DEFAULT_REPLACE)
            raise TaskError(f"CustomTask build() made a {type(net).__name__} with no activation module "
                            f"to replace (looked for nn.{names.replace(', ', ', nn.')}); use modules, "
                            "not F.relu, or write build(act) and call act() where activations go")
        return net

    return model


def _checked(net: Any, what: str) -> nn.Module:
    if not isinstance(net, nn.Module):
        raise TaskError(f"CustomTask {what} returned {type(net).__name__}, expected an nn.Module")
    return net


class CustomTask(Task):
    """A task on the user's own data and model. Keywords:

    - ``train``, ``val``, ``test``: ``(x, y)`` tensors/arrays or datasets of ``(x, y)`` items
      (materialised to tensors once); ``test`` defaults to ``val``. Integer labels are
      classification (cross-entropy), float targets regression (MSE); or say ``kind=``.
    - ``build``: ``build(act)`` returning the model, calling ``act()`` for a fresh activation
      module wherever one goes; or ``build()`` returning an ordinary model whose ``nn.ReLU``,
      ``nn.GELU``, ... modules are replaced by the candidate (`afsearch.patch_activations`).
    - ``build_norm_act``: optional ``build_norm_act(norm_act)`` returning the model with
      ``norm_act(channels)`` in place of each normalisation+activation, for layer spaces.
    - ``metric``: ``"accuracy"`` (accuracy, or R^2 clipped to [0, 1] for regression; higher is
      better) or ``"loss"`` (the validation loss; lower is better).
    - recipe: ``steps``, ``batch_size``, ``lr``, ``optimizer`` ("adamw" or "sgd"),
      ``weight_decay``, ``warmup`` (linear warm-up steps before the cosine decay).

    Everything is checked here: a mistake raises `TaskError` with one line."""

    def __init__(self, *, train: Any, val: Any, build: Callable[..., nn.Module], test: Any = None,
                 build_norm_act: Callable[[NormActFactory], nn.Module] | None = None,
                 metric: str = "accuracy", kind: str | None = None, name: str = "custom",
                 steps: int = _DEFAULT.steps, batch_size: int = _DEFAULT.batch_size,
                 lr: float = _DEFAULT.lr, optimizer: str = _DEFAULT.optimizer,
                 weight_decay: float = _DEFAULT.weight_decay, warmup: int = _DEFAULT.warmup) -> None:
        metric_spec = get_metric(metric)
        recipe = _recipe(steps, batch_size, lr, optimizer, weight_decay, warmup)
        raw = {which: _split(value, which) for which, value in
               (("train", train), ("val", val), ("test", val if test is None else test))}
        task_kind = _kind(raw["train"][1], kind)
        regression = task_kind == "regression"
        splits = {which: _tensors(x, y, regression, which) for which, (x, y) in raw.items()}
        shapes = {which: tuple(s.x.shape[1:]) for which, s in splits.items()}
        if len(set(shapes.values())) != 1:
            raise TaskError("CustomTask: inputs of train/val/test differ in shape: "
                            + ", ".join(f"{k} {v}" for k, v in shapes.items()))
        data = Data(splits["train"], splits["val"], splits["test"], regression)
        n_classes = 0 if regression else int(max(int(s.y.max()) for s in splits.values())) + 1
        if build_norm_act is not None and not callable(build_norm_act):
            raise TaskError(f"CustomTask build_norm_act must be callable, got {type(build_norm_act).__name__}")
        spec = TaskSpec(UserTaskConfig, _no_loader, _model_builder(build, build_norm_act), recipe,
                        n_classes, layers=build_norm_act is not None,
                        doc=f"user task ({task_kind}, {len(data.train)} training rows)", metric=metric_spec)
        super().__init__(name, UserTaskConfig(), data, recipe, spec)
        self._check_model()

    def _check_model(self) -> None:
        """Build the model once with ReLU and run it on two training rows, so a broken model
        fails here with one line rather than in every candidate."""
        net = self.model(nn.ReLU)
        x, y = self.data.train.x[:2], self.data.train.y[:2]
        try:
            with torch.no_grad():
                out = net(x)
        except Exception as exc:  # noqa: BLE001 - the user's model: report what it raised
            raise TaskError(f"CustomTask model fails on a batch of training rows of shape "
                            f"{tuple(x.shape)}: {type(exc).__name__}: {exc}") from None
        if not isinstance(out, torch.Tensor):
            raise TaskError(f"CustomTask model returned {type(out).__name__}, expected a tensor")
        want = tuple(y.shape) if self.data.regression else None
        if want is not None and tuple(out.shape) != want:
            raise TaskError(f"CustomTask model outputs shape {tuple(out.shape)} for 2 rows; "
                            f"the regression targets have shape {want}")
        if want is None and (out.ndim != 2 or out.shape[1] < self.spec.n_classes):
            raise TaskError(f"CustomTask model outputs shape {tuple(out.shape)} for 2 rows; "
                            f"classification needs (2, {self.spec.n_classes}) logits")


def _no_loader(_config: Any) -> Data:
    raise TaskError("a user task holds its data; it has no loader")


def _recipe(steps: Any, batch_size: Any, lr: Any, optimizer: Any, weight_decay: Any, warmup: Any) -> Recipe:
    for key, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise TaskError(f"CustomTask {key} must be a positive integer, got {value!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup < steps:
        raise TaskError(f"CustomTask warmup must be an integer in [0, steps), got {warmup!r}")
    for key, value in (("lr", lr), ("weight_decay", weight_decay)):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != value:
            raise TaskError(f"CustomTask {key} must be a non-negative number, got {value!r}")
    if optimizer not in OPTIMIZERS:
        raise TaskError(f"CustomTask optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    return Recipe(steps=steps, batch_size=batch_size, lr=float(lr), optimizer=optimizer,
                  weight_decay=float(weight_decay), warmup=warmup)


# ---------------------------------------------------------------- references
@dataclass(frozen=True)
class TaskRef:
    target: str  # the file path or module name, as written
    attribute: str
    path: Path | None  # the file (for a file reference), resolved

    @property
    def canonical(self) -> str:
        """The reference recorded in the run: an absolute path for files."""
        return f"{self.path}:{self.attribute}" if self.path else f"{self.target}:{self.attribute}"


def parse_reference(ref: str) -> TaskRef:
    target, _, attribute = ref.rpartition(":")
    if not target or not attribute.isidentifier():
        raise TaskError(f"task reference {ref!r} must be path/to/file.py:NAME or package.module:NAME")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser()
        if not path.is_file() and os.environ.get(SHIPPED_ENV) and (Path.cwd() / path.name).is_file():
            # a Ray worker on another machine: the task file's folder was shipped as its
            # working directory (`afsearch.execute._ray`)
            path = Path.cwd() / path.name
        if not path.is_file():
            raise TaskError(f"task file {target} does not exist")
        return TaskRef(target, attribute, path.resolve())
    return TaskRef(target, attribute, None)


def task_file(ref: str) -> Path | None:
    """The file a reference's code lives in (for hashing), None when it has none."""
    parsed = parse_reference(ref)
    if parsed.path is not None:
        return parsed.path
    spec = importlib.util.find_spec(parsed.target)
    return Path(spec.origin) if spec is not None and spec.origin and spec.has_location else None


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _import(parsed: TaskRef) -> Any:
    if parsed.path is None:
        try:
            return importlib.import_module(parsed.target)
        except ModuleNotFoundError as exc:
            if exc.name and parsed.target.startswith(exc.name):
                raise TaskError(f"task module {parsed.target} is not importable (no module {exc.name!r})") from None
            raise TaskError(f"importing task module {parsed.target} failed: ModuleNotFoundError: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - the user's code: report what it raised
            raise TaskError(f"importing task module {parsed.target} failed: {type(exc).__name__}: {exc}") from None
    name = "afsearch_user_task_" + hashlib.sha256(str(parsed.path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, parsed.path)
    if spec is None or spec.loader is None:
        raise TaskError(f"task file {parsed.target} is not a loadable Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(parsed.path.parent)
    if folder not in sys.path:  # the task file may import its neighbours (the user's model code)
        sys.path.insert(0, folder)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's code: report what it raised
        del sys.modules[name]
        raise TaskError(f"importing task file {parsed.target} failed: {type(exc).__name__}: {exc}") from None
    return module


_RESOLVED: dict[tuple[str, str, str | None], Task] = {}


def resolve_task(ref: str, options: dict[str, Any] | None = None) -> Task:
    """The `Task` a reference names: the attribute is a task object, or a callable returning
    one, called with `options` as keyword arguments. The returned task's name is the canonical
    reference. Cached per process for the same reference, options and file content."""
    parsed = parse_reference(ref)
    options = dict(options or {})
    try:
        options_json = json.dumps(options, sort_keys=True)
    except (TypeError, ValueError):
        raise TaskError(f"task options of {ref} must be plain values (numbers, strings, lists)") from None
    file = task_file(ref)
    key = (parsed.canonical, options_json, file_sha256(file) if file else None)
    if key not in _RESOLVED:
        _RESOLVED[key] = _load(parsed, options, options_json)
    return _RESOLVED[key]


def _load(parsed: TaskRef, options: dict[str, Any], options_json: str) -> Task:
    module = _import(parsed)
    where = parsed.target
    if not hasattr(module, parsed.attribute):
        raise TaskError(f"{where} has no attribute {parsed.attribute!r}")
    obj = getattr(module, parsed.attribute)
    if isinstance(obj, Task):
        if options:
            raise TaskError(f"{where}:{parsed.attribute} is a task object, not a callable; it takes no "
                            f"task options (got {', '.join(sorted(options))})")
        task = obj
    elif callable(obj):
        try:
            task = obj(**options)
        except TaskError as exc:
            raise TaskError(f"{where}:{parsed.attribute}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - the user's code: report what it raised
            raise TaskError(f"{where}:{parsed.attribute}({_kwargs(options)}) raised "
                            f"{type(exc).__name__}: {exc}") from None
        if not isinstance(task, Task):
            raise TaskError(f"{where}:{parsed.attribute}() returned {type(task).__name__}, "
                            "expected an afsearch.CustomTask")
    else:
        raise TaskError(f"{where}:{parsed.attribute} is a {type(obj).__name__}, expected an "
                        "afsearch.CustomTask or a callable returning one")
    return Task(parsed.canonical, UserTaskConfig(options_json), task.data, task.recipe, task.spec)


def _kwargs(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items())


def task_record(ref: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a run records about a user task so that read-only commands never import it and
    `resume` can tell whether it changed: file, sha256, default steps and metric."""
    task = resolve_task(ref, options)
    file = task_file(ref)
    from afsearch.evaluate.packed import default_pack

    record: dict[str, Any] = {"steps": task.recipe.steps, "metric": task.metric.name,
                              "layers": task.spec.layers, "pack": default_pack(task.model(nn.ReLU))}
    if file is not None:
        record["file"] = str(file)
        record["sha256"] = file_sha256(file)
    return record


def check_unchanged(ref: str, record: dict[str, Any], allow_changed: bool = False) -> None:
    """Refuse (TaskError) to go on with a run whose task file vanished, or changed since it
    was recorded (unless `allow_changed`)."""
    if "sha256" not in record:
        return
    path = Path(record["file"])
    if not path.is_file():
        raise TaskError(f"task file {path} of this run no longer exists; restore it to go on with the run")
    if not allow_changed and file_sha256(path) != record["sha256"]:
        raise TaskError(f"task file {path} changed since the run was created (sha256 differs); "
                        "results would not be comparable. Restore it, or pass --allow-changed-task")


__all__: Sequence[str] = ["CustomTask", "UserTaskConfig", "check_unchanged", "parse_reference",
                          "resolve_task", "task_file", "task_record"]
