"""Proxy tasks: a name, a frozen config dataclass, data held as tensors (built once per process
and config) and a model builder taking the activation as a factory.

Add a task by writing a config dataclass, a loader and a builder, and one `TaskSpec` line in
`TASKS`."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from afsearch.candidate import Candidate
from afsearch.defaults import DEFAULT_TASK
from afsearch.errors import AfsearchError, TaskError, plain_key, shorten
from afsearch.evaluate import models
from afsearch.evaluate.ladder import DEFAULT_GATE, GateCalibration
from afsearch.evaluate.lm import LMConfig, build_lm, complete_config, load_lm_data
from afsearch.evaluate.metric import ACCURACY, LOSS, Metric
from afsearch.evaluate.models import ActFactory, NormActFactory
from afsearch.evaluate.packed import CONV_PACK, MLP_PACK
from afsearch.evaluate.trainer import Data, Recipe, Split


# ---------------------------------------------------------------- configs
@dataclass(frozen=True)
class MNIST1DConfig:
    hidden: tuple[int, ...] = (100, 100)  # MLP widths (mnist1d-mlp)
    channels: int = 32  # conv width (mnist1d-cnn)
    val_fraction: float = 0.2
    split_seed: int = 0


@dataclass(frozen=True)
class DigitsConfig:
    """Half of the 1,797 images are the test split: with 20 % (the earlier default) the conv net
    reached ~98.5 % with most activations and only 4 of 11 differed from the best default
    baseline on 5 seeds; with 30 % for training and 50 % for testing, 8 of 11 did
    (scripts/bench_task_separation.py)."""

    channels: int = 32
    val_fraction: float = 0.2
    test_fraction: float = 0.5
    split_seed: int = 0


@dataclass(frozen=True)
class TabularConfig:
    hidden: tuple[int, ...] = (32, 32)
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0


@dataclass(frozen=True)
class TeacherStudentConfig:
    """A random teacher MLP whose hidden activation is `planted` labels Gaussian inputs with
    `n_out` real targets (regression, accuracy = R^2 clipped to [0, 1]); the student has the
    same architecture and is trained with the candidate activation.

    `student = "full"` trains every layer from a random initialisation (the real use case, but
    its score mixes the activation's fit with how well 1000 steps of optimisation recover the
    teacher's weights). `"readout"` gives the student the teacher's hidden layers, frozen, and
    trains only the output layer (and the activation's trainable constants); at the start and
    before every validation the output layer is refit by least squares
    (`Recipe.refit_readout`). That is a
    random-features model whose score depends only on how well the candidate's features span
    the planted ones, so it falls smoothly with functional distance and peaks at the planted
    formula (R^2 = 1 up to an affine map), which is what a rediscovery benchmark needs. Without
    the refit, 1000 Adam steps stop short of the best readout by more than the gap between
    near misses: planted `max(x, tanh(x))` scored R^2 0.9957, below `max(x, -0.76)` at 0.9959
    (least squares: 1.0 vs 0.9977)."""

    planted: str = "sin(x)"
    n_in: int = 4
    hidden: tuple[int, ...] = (16,)
    n_out: int = 2
    gain: float = 2.0  # teacher weight std * sqrt(fan_in): pre-activations of std ~gain
    n_train: int = 3000
    n_val: int = 1000
    n_test: int = 1000
    teacher_seed: int = 0
    student: str = "full"  # "full" | "readout" (see above)

    def __post_init__(self) -> None:
        if self.student not in STUDENT_MODES:
            raise TaskError(f"teacher-student: student must be one of {', '.join(STUDENT_MODES)}, "
                            f"got {self.student!r}")


STUDENT_MODES = ("full", "readout")


@dataclass(frozen=True)
class CifarConfig:
    data_dir: str | None = None
    blocks: int = 1  # basic blocks per stage (3 = ResNet-20)
    width: int = 16
    n_train: int | None = None  # use a subset of the 45k training images (None: all)
    val_size: int = 5000
    split_seed: int = 0


# ---------------------------------------------------------------- data loaders
def _split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int):  # noqa: ANN202
    """Deterministic (rest, held-out) split; held-out has round(len*fraction) rows."""
    perm = np.random.default_rng(seed).permutation(len(x))
    k = int(round(len(x) * fraction))
    return (x[perm[k:]], y[perm[k:]]), (x[perm[:k]], y[perm[:k]])


def _tensors(xy: tuple[np.ndarray, np.ndarray], regression: bool = False) -> Split:
    x, y = xy
    y_t = torch.as_tensor(y, dtype=torch.float32 if regression else torch.long)
    return Split(torch.as_tensor(x, dtype=torch.float32).contiguous(), y_t)


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(0), train.std(0) + 1e-8
    return [(a - mean) / std for a in (train, *others)]


def _load_mnist1d(cfg: MNIST1DConfig) -> Data:
    from mnist1d.data import get_dataset_args, make_dataset

    py_state, np_state = random.getstate(), np.random.get_state()
    try:  # make_dataset reseeds the global RNGs; never call get_dataset() (it downloads)
        raw = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    train, val = _split(raw["x"], raw["y"], cfg.val_fraction, cfg.split_seed)
    return Data(_tensors(train), _tensors(val), _tensors((raw["x_test"], raw["y_test"])))


def _three_way(x: np.ndarray, y: np.ndarray, cfg: Any) -> Data:
    rest, test = _split(x, y, cfg.test_fraction, cfg.split_seed)
    train, val = _split(*rest, cfg.val_fraction / (1 - cfg.test_fraction), cfg.split_seed + 1)
    xs = _standardise(train[0], val[0], test[0])
    return Data(_tensors((xs[0], train[1])), _tensors((xs[1], val[1])),
                _tensors((xs[2], test[1])))


def _load_digits(cfg: DigitsConfig) -> Data:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # N x 1 x 8 x 8 in [0, 1]
    rest, test = _split(x, d.target, cfg.test_fraction, cfg.split_seed)
    train, val = _split(*rest, cfg.val_fraction / (1 - cfg.test_fraction), cfg.split_seed + 1)
    return Data(_tensors(train), _tensors(val), _tensors(test))


def _load_breast_cancer(cfg: TabularConfig) -> Data:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return _three_way(d.data.astype(np.float64), d.target, cfg)


def teacher(cfg: TeacherStudentConfig) -> nn.Module:
    """The teacher network (deterministic in cfg.teacher_seed)."""
    gen = torch.Generator().manual_seed(cfg.teacher_seed)
    act = Candidate.activation(cfg.planted).activation_factory()
    net = models.mlp([cfg.n_in, *cfg.hidden, cfg.n_out], act)
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.Linear):
                std = cfg.gain / layer.in_features ** 0.5
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * std)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 0.5)
    return net.eval()


def _load_teacher_student(cfg: TeacherStudentConfig) -> Data:
    net = teacher(cfg)
    gen = torch.Generator().manual_seed(cfg.teacher_seed + 1)
    n = cfg.n_train + cfg.n_val + cfg.n_test
    x = torch.randn(n, cfg.n_in, generator=gen)
    with torch.no_grad():
        y = net(x)
    if not bool(torch.isfinite(y).all()):
        raise TaskError(f"teacher with planted formula {cfg.planted!r} produces non-finite "
                        "targets; choose a bounded or slower-growing formula or a lower gain")
    y = (y - y[: cfg.n_train].mean(0)) / (y[: cfg.n_train].std(0) + 1e-8)
    a, b = cfg.n_train, cfg.n_train + cfg.n_val
    return Data(Split(x[:a], y[:a]), Split(x[a:b], y[a:b]), Split(x[b:], y[b:]),
                regression=True)


def _student(cfg: TeacherStudentConfig, act: ActFactory) -> nn.Module:
    net = models.mlp([cfg.n_in, *cfg.hidden, cfg.n_out], act)
    if cfg.student == "readout":
        hidden = [m for m in teacher(cfg) if isinstance(m, nn.Linear)][:-1]
        mine = [m for m in net if isinstance(m, nn.Linear)][:-1]
        with torch.no_grad():
            for src, dst in zip(hidden, mine, strict=True):
                dst.weight.copy_(src.weight)
                dst.bias.copy_(src.bias)
                dst.weight.requires_grad_(False)
                dst.bias.requires_grad_(False)
    return net


def _load_cifar(cfg: CifarConfig) -> Data:
    from afsearch.evaluate._cifar import load_cifar10

    (x, y), (xt, yt) = load_cifar10(cfg.data_dir)
    val_fraction = min(cfg.val_size, len(x) // 5) / len(x)
    (xtr, ytr), (xv, yv) = _split(x, y, val_fraction, cfg.split_seed)
    if cfg.n_train:
        xtr, ytr = xtr[: cfg.n_train], ytr[: cfg.n_train]
    mean = xtr.reshape(len(xtr), 3, -1).mean((0, 2)).reshape(1, 3, 1, 1) / 255.0
    std = xtr.reshape(len(xtr), 3, -1).std((0, 2)).reshape(1, 3, 1, 1) / 255.0 + 1e-8

    def norm(a: np.ndarray) -> np.ndarray:
        return ((a / 255.0 - mean) / std).astype(np.float32)

    return Data(_tensors((norm(xtr), ytr)), _tensors((norm(xv), yv)),
                _tensors((norm(xt), yt)))


# ---------------------------------------------------------------- registry
Builder = Callable[[Any, Data, ActFactory, NormActFactory | None], nn.Module]


@dataclass(frozen=True)
class TaskSpec:
    config: type
    load: Callable[[Any], Data]
    build: Builder
    recipe: Recipe  # default training recipe; `budget` overrides recipe.steps
    n_classes: int  # 0 for regression
    layers: bool = False  # accepts norm_act (BatchNorm+activation replacements)
    doc: str = ""
    #: the recipe for a given config, when the config changes it
    recipe_for: Callable[[Any, Recipe], Recipe] | None = None
    #: cheap checks of a config that would otherwise fail every evaluation (a formula that
    #: does not parse, a missing data directory); raises TaskError. Run by
    #: `resolve_task_config`, i.e. before a search writes anything.
    check: Callable[[Any], None] | None = None
    metric: Metric = ACCURACY
    #: members per packed job by default (`afsearch.evaluate.packed.default_pack` of its model,
    #: stated here so that choosing it needs no data); 1: it trains one by one
    pack: int = 1
    #: the reference activation the quality gate compares with (a name in afsearch.reference)
    reference: str = "relu"
    #: the baselines a search compares with when it names none (None: DEFAULT_BASELINES); may
    #: depend on the config (e.g. the LM task's FFN form)
    baselines: Callable[[Any], tuple[str, ...]] | None = None
    #: the config completed with facts of this machine (e.g. a corpus hash), or a TaskError
    complete: Callable[[Any], Any] | None = None
    #: the score is a cross-entropy in nats per byte: displays add bits per byte (loss / ln 2)
    bits_per_byte: bool = False
    #: tasks of other architectures a search on this task also scores every candidate on when
    #: it names no extra tasks (`SearchConfig.extra_tasks` None), so that its winners transfer
    transfer: tuple[str, ...] = ()
    #: where the quality gate checks and how hard (`afsearch.evaluate.ladder`), measured on
    #: scripts/bench_proxy.py; a ladder config that sets the checkpoints overrides it
    gate: GateCalibration = DEFAULT_GATE


def _n_in(data: Data) -> int:
    return int(data.train.x.shape[1])


def _n_out(data: Data) -> int:
    if data.regression:
        return int(data.train.y.shape[1])
    return int(data.train.y.max()) + 1


TASKS: dict[str, TaskSpec] = {
    "mnist1d-mlp": TaskSpec(
        MNIST1DConfig, _load_mnist1d,
        lambda c, d, act, na: models.mlp([_n_in(d), *c.hidden, 10], act),
        Recipe(steps=1200, batch_size=100, lr=3e-3), 10,
        doc="MNIST-1D (offline generator), 40-100-100-10 MLP", pack=MLP_PACK, transfer=("mnist1d-cnn",)),
    "mnist1d-cnn": TaskSpec(
        MNIST1DConfig, _load_mnist1d,
        lambda c, d, act, na: models.cnn1d(_n_in(d), 10, act, na, c.channels),
        Recipe(steps=600, batch_size=100, lr=3e-3), 10, layers=True, pack=CONV_PACK,
        doc="MNIST-1D, 3-layer 1-D conv net with BatchNorm",
        # functions that end in the long-budget top quartile here can sit near chance for the
        # first tenth of the proxy run (bumps, cos, abs: README, "How far to trust the proxy"),
        # so the gate only stops what has not left chance at 7.5% of it
        gate=GateCalibration(early_step=0, early_ratio=0.05, step=0.075, ratio=0.05)),
    "digits-cnn": TaskSpec(
        DigitsConfig, _load_digits,
        lambda c, d, act, na: models.cnn2d(10, act, na, c.channels),
        Recipe(steps=300, batch_size=64, lr=3e-3), 10, layers=True, pack=CONV_PACK,
        doc="scikit-learn 8x8 digits (539 training, 898 test images), small 2-D conv net with BatchNorm"),
    "breast-cancer-mlp": TaskSpec(
        TabularConfig, _load_breast_cancer,
        lambda c, d, act, na: models.mlp([_n_in(d), *c.hidden, 2], act),
        Recipe(steps=300, batch_size=64, lr=3e-3), 2,
        doc="scikit-learn breast cancer (standardised), 30-32-32-2 MLP", pack=MLP_PACK),
    "teacher-student": TaskSpec(
        TeacherStudentConfig, _load_teacher_student,
        lambda c, d, act, na: _student(c, act),
        Recipe(steps=1000, batch_size=100, lr=1e-2, weight_decay=0.0), 0,
        doc="regression on a random teacher MLP whose activation is the planted formula",
        recipe_for=lambda c, r: dataclasses.replace(r, refit_readout=c.student == "readout"),
        check=lambda c: _check_teacher_student(c), pack=MLP_PACK),
    "cifar10-resnet": TaskSpec(
        CifarConfig, _load_cifar,
        lambda c, d, act, na: models.resnet20(act, na, c.blocks, 10, c.width),
        Recipe(steps=500, batch_size=128, lr=3e-3, warmup=50), 10, layers=True,
        doc="CIFAR-10 from local python batches (config data_dir), ResNet-20-style",
        check=lambda c: _check_cifar(c)),
    "lm-transformer": TaskSpec(
        LMConfig, load_lm_data,
        lambda c, d, act, na: build_lm(c, act),
        Recipe(steps=400, batch_size=32, lr=3e-3, warmup=40, grad_clip=1.0), 256,
        doc="byte-level language model: nanoGPT-style transformer on Python standard-library source "
            "(ffn=plain|glu; the candidate is the FFN activation; validation loss, lower is better)",
        recipe_for=lambda c, r: dataclasses.replace(r, batch_size=c.batch_size, lr=c.lr),
        metric=LOSS, reference="gelu", baselines=lambda c: _lm_baselines(c),
        complete=lambda c: complete_config(c), bits_per_byte=True),
}


def _lm_baselines(cfg: LMConfig) -> tuple[str, ...]:
    """GELU, ReLU and SiLU in the run's FFN form, plus the other form's standard at equal
    parameter count: SwiGLU and GeGLU beside a plain run, GELU-plain beside a gated one."""
    if cfg.ffn == "glu":
        return ("gelu", "relu", "silu", "gelu@plain")
    return ("gelu", "relu", "silu", "swiglu", "geglu")


@dataclass(frozen=True)
class Task:
    """A task ready to train on: its name (a built-in name, or the reference of a user task),
    config, data, recipe and spec (builder, metric, ...)."""

    name: str
    config: Any
    data: Data
    recipe: Recipe
    spec: TaskSpec

    @property
    def metric(self) -> Metric:
        return self.spec.metric

    @property
    def chance(self) -> float:
        """The metric for a constant prediction: accuracy 1/classes (0 for regression's
        clipped R^2); loss log(classes) (uniform probabilities) or the validation targets'
        variance (predicting their mean)."""
        n = self.spec.n_classes
        if self.metric.source == "loss":
            if self.data.regression:
                return float(self.data.val.y.float().var(0, unbiased=False).mean())
            return math.log(n) if n else 0.0
        return 1.0 / n if n else 0.0

    def with_config(self, overrides: dict[str, Any]) -> Task:
        """This task with config fields replaced (a candidate that fixes its FFN form); the data
        stays the same, so an override must not change what the loader builds."""
        if not overrides:
            return self
        fields = {f.name for f in dataclasses.fields(self.config)} if dataclasses.is_dataclass(self.config) else set()
        missing = sorted(set(overrides) - fields)
        if missing:
            raise TaskError(f"task {self.name} has no option {', '.join(missing)}; this candidate needs a task "
                            f"that has (e.g. lm-transformer)")
        return dataclasses.replace(self, config=dataclasses.replace(self.config, **overrides))

    def model(self, act: ActFactory, norm_act: NormActFactory | None = None) -> nn.Module:
        if norm_act is not None and not self.spec.layers:
            raise TaskError(f"task {self.name} has no normalisation layers to replace; "
                            f"layer candidates need one of {', '.join(layer_tasks())}")
        return self.spec.build(self.config, self.data, act, norm_act)


def layer_tasks() -> list[str]:
    return [name for name, spec in TASKS.items() if spec.layers]


def make_config(name: str, config: Any = None) -> Any:
    """The task's config dataclass from None, a dict (keys checked, values converted to the
    field's type and range-checked, see `_coerce`) or an instance."""
    spec = _spec(name)
    if config is None:
        return spec.config()
    if isinstance(config, spec.config):
        return config
    if not isinstance(config, dict):
        raise TaskError(f"task {name} config must be a dict or {spec.config.__name__}")
    fields = {f.name: f for f in dataclasses.fields(spec.config)}
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise TaskError(f"task {name} config has unknown key(s) {', '.join(map(plain_key, unknown))}; "
                        f"allowed: {', '.join(fields)}")
    values = {k: _coerce(name, k, str(fields[k].type), v) for k, v in config.items()}
    try:
        return spec.config(**values)
    except (TypeError, ValueError) as exc:
        raise TaskError(f"task {name} config: {exc}") from None


def resolve_task_config(name: str, options: Any = None) -> Any:
    """The checked config of task `name`: `make_config` and then the task's own cheap checks
    (`TaskSpec.check`). The one entry point for validating a task before anything runs;
    unknown names raise TaskError naming the allowed ones. A user task reference is imported
    and built (`afsearch.evaluate.custom.resolve_task`), which checks it."""
    if is_reference(name):
        from afsearch.evaluate.custom import resolve_task

        return resolve_task(name, options).config
    cfg = make_config(name, options)
    spec = _spec(name)
    if spec.check is not None:
        spec.check(cfg)
    if spec.complete is not None:
        cfg = spec.complete(cfg)
    return cfg


#: bounds of task config numbers: sizes are positive, seeds non-negative; widths are capped
#: so a typo cannot ask for a model of billions of weights
MAX_TASK_INT = 10_000_000
MAX_WIDTH = 4096
MAX_LAYERS = 16


def _coerce(task: str, key: str, annotation: str, value: Any) -> Any:
    """A config value of a --task-option or a TOML file as the dataclass field expects it:
    ``hidden=400``, ``hidden=400,400`` and ``hidden=[400, 400]`` all become a tuple of ints.
    Types are read from the field annotation (a string under postponed evaluation)."""
    where = f"task {task}: {key}"
    optional = annotation.endswith("| None")
    base = annotation.removesuffix("| None").strip()
    if value is None and optional:
        return None
    if base == "tuple[int, ...]":
        if isinstance(value, str):
            parts = [p.strip() for p in value.strip("()[] ").split(",") if p.strip()]
            try:
                value = [int(p) for p in parts]
            except ValueError:
                raise TaskError(f"{where}: expected comma-separated widths such as 100,100, "
                                f"got {shorten(value)}") from None
        items = list(value) if isinstance(value, list | tuple) else [value]
        if not 1 <= len(items) <= MAX_LAYERS:
            raise TaskError(f"{where}: expected 1 to {MAX_LAYERS} layer widths, got {len(items)}")
        return tuple(_integer(where, item, 1, MAX_WIDTH) for item in items)
    if base == "int":
        low = 0 if key.endswith("seed") else 1
        return _integer(where, value, low, MAX_WIDTH if key in ("channels", "width") else MAX_TASK_INT)
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TaskError(f"{where}: expected a number, got {shorten(value)}")
        value = float(value)
        bounded = key.endswith("fraction")
        if not math.isfinite(value) or (bounded and not 0 < value < 1) or (not bounded and value <= 0):
            span = "between 0 and 1 (exclusive)" if bounded else "a positive, finite number"
            raise TaskError(f"{where}: must be {span}, got {shorten(value)}")
        return value
    if base == "str":
        if not isinstance(value, str):
            raise TaskError(f"{where}: expected a string, got {shorten(value)}")
        return value
    return value  # a field type this function does not know: the dataclass checks it


def _integer(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TaskError(f"{where}: expected an integer, got {shorten(value)}")
    if not low <= value <= high:
        raise TaskError(f"{where}: must be between {low} and {high}, got {shorten(value)}")
    return value


def _check_teacher_student(cfg: TeacherStudentConfig) -> None:
    from afsearch.expr import parse

    try:
        parse(cfg.planted)
    except AfsearchError as exc:
        raise TaskError(f"task teacher-student: planted formula {shorten(cfg.planted)}: {exc}") from None
    _load_teacher_student(cfg)  # milliseconds; refuses a teacher with non-finite targets


def _check_cifar(cfg: CifarConfig) -> None:
    from afsearch.evaluate._cifar import check_data_dir

    check_data_dir(cfg.data_dir)


def config_to_json(config: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(config).items()}


def _spec(name: str) -> TaskSpec:
    if name not in TASKS:
        raise TaskError(f"unknown task {shorten(name)}; choose one of {', '.join(TASKS)}, "
                        "or a task of your own as path/to/file.py:NAME")
    return TASKS[name]


_DATA_CACHE: dict[tuple[Any, Any], Data] = {}


def get_task(task: str | Task = DEFAULT_TASK, config: Any = None) -> Task:
    """Resolve a task name (plus optional config) to a Task; data is built once per process
    for each (name, config)."""
    if isinstance(task, Task):
        return task
    if is_reference(task):
        from afsearch.evaluate.custom import resolve_task

        return resolve_task(task, config)
    spec = _spec(task)
    cfg = resolve_task_config(task, config)
    key = (spec.load, cfg)  # tasks sharing a loader and config share the data
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = spec.load(cfg)
    recipe = spec.recipe if spec.recipe_for is None else spec.recipe_for(cfg, spec.recipe)
    return Task(task, cfg, _DATA_CACHE[key], recipe, spec)


def is_reference(task: str) -> bool:
    """A user task reference (``path/to/file.py:NAME`` or ``package.module:NAME``) rather than
    a built-in task name (built-in names never contain a colon)."""
    return ":" in task
