"""The search configuration: defaults, a TOML file, CLI overrides, validation.

Precedence: defaults < ``--config run.toml`` < command-line flags. The resolved configuration
is saved as ``config.toml`` in the run directory; ``afsearch resume`` reads it back."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afsearch.defaults import BACKENDS, DEFAULT_TASK, TASK_AGGREGATES
from afsearch.errors import AfsearchError, ConfigError, plain_key, shorten
from afsearch.reference import DEFAULT_BASELINES, get_reference
from afsearch.search.schedulers import DEFAULT_SCHEDULER, SCHEDULERS

if TYPE_CHECKING:
    from afsearch.evaluate.metric import Metric

OBJECTIVES = ("accuracy", "cost", "params")


@dataclass
class SearchConfig:
    """Everything that defines a search. ``budget`` counts trained evaluations (cache hits
    are free); ``steps`` is the training budget of one evaluation (None: the task default)."""

    space: str = "swish"
    task: str = DEFAULT_TASK
    #: options of the main task, e.g. {planted = "sin(x)"} for teacher-student
    task_config: dict[str, Any] = field(default_factory=dict)
    #: extra tasks each candidate is also scored on; None: the main task's transfer tasks
    #: (`TaskSpec.transfer`: mnist1d-mlp adds mnist1d-cnn), resolved and recorded when the run
    #: is created; [] scores on the main task alone
    extra_tasks: list[str] | None = None
    #: how a search on several tasks ranks: the "worst" (default) or the "mean" of the per-task
    #: relative deltas to each task's best baseline (`afsearch.search.objectives`); measured
    #: by `scripts/bench_proxy.py --transfer` (README, "Winners that transfer")
    task_aggregate: str = "worst"
    strategy: str | None = None  # None: the space's default (`default_strategy_for`)
    strategy_options: dict[str, Any] = field(default_factory=dict)
    #: objectives for multi-objective strategies: accuracy (per task), cost (activation cost), params
    objectives: list[str] = field(default_factory=lambda: ["accuracy"])
    budget: int = 40
    time_limit_s: float | None = None
    steps: int | None = None
    seeds: int = 1
    seed: int = 0
    name: str | None = None
    backend: str = "ray"
    workers: int | None = None
    ray_address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    timeout_s: float = 600.0
    #: candidates trained together in one job (stacked weights for MLPs, grouped convolutions
    #: for plain CNNs; other models one by one). None: the tasks' default (16 for MLPs, 8 for
    #: CNNs, else 1; resolved, and recorded, when the run is created)
    pack: int | None = None
    ladder: bool = True
    #: what stops training runs early (`afsearch.search.schedulers`): gate, median, asha, none
    scheduler: str = DEFAULT_SCHEDULER
    #: reference activations trained beside the candidates; None: the main task's own list
    #: (lm-transformer: GELU, ReLU, SiLU, SwiGLU, GeGLU), else DEFAULT_BASELINES. `Search.create`
    #: writes the resolved list into the run's config.toml.
    baselines: list[str] | None = None
    seed_population: bool = True
    validate_top: int = 3
    validate_seeds: int = 5
    #: > validate_top: retrain the best `shortlist` by search score on `shortlist_seeds` seeds
    #: of their own and validate the best of them on those (`afsearch.search.validate`); 0: off
    shortlist: int = 0
    shortlist_seeds: int = 2
    validate_steps: int | None = None
    data_dir: str | None = None
    #: where candidates train: auto (cuda when the worker sees a GPU, else cpu), cpu, cuda, cuda:N
    device: str = "auto"
    #: what the run recorded about each user task (``file.py:NAME`` references) when it was
    #: created: file, sha256, default steps, metric. Read-only commands use it so they never
    #: import the task file; `resume` compares the hash. Filled by `Search.create`.
    user_tasks: dict[str, dict[str, Any]] = field(default_factory=dict)

    # -- (de)serialisation -------------------------------------------------------------------
    def to_toml_dict(self) -> dict[str, Any]:
        """For config.toml: TOML has no null, so unset values are left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> SearchConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(map(plain_key, unknown))}; allowed: {', '.join(sorted(names))}"
            )
        config = cls(**data)
        config.validate(source)
        return config

    @classmethod
    def load(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> SearchConfig:
        from afsearch.spaces.toml_schema import read_toml

        data = read_toml(path, ConfigError, "config file")
        if "search" in data and isinstance(data["search"], dict):
            data = data["search"]
        if "time" in data:  # the CLI spelling is accepted in files too
            data["time_limit_s"] = parse_duration(str(data.pop("time")))
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_dict(data, str(path))

    # -- validation ----------------------------------------------------------------------------
    def validate(self, source: str = "config") -> None:
        """Types, then ranges (`LIMITS`: every number finite and bounded, so that a flag such as
        --threads 100000 or --timeout 1e300 is refused here and not by a segfault, a
        MemoryError or an overflow deep in a worker), then names. The CLI flags and config
        files both end here."""

        def bad(key: str, problem: str) -> ConfigError:
            return ConfigError(f"{source}: {key}: {problem}")

        _expect_types(self, source)
        for key, (low, high) in LIMITS.items():
            value = getattr(self, key)
            if value is not None:
                check_range(value, low, high, f"{source}: {key}")
        if self.backend not in BACKENDS:
            raise bad("backend", f"unknown backend {shorten(self.backend)}; allowed: {', '.join(BACKENDS)}")
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown or not self.objectives:
            raise bad("objectives", f"unknown objective(s) {shorten(unknown)}; allowed: {', '.join(OBJECTIVES)}")
        if self.task_aggregate not in TASK_AGGREGATES:
            raise bad("task_aggregate", f"unknown aggregate {shorten(self.task_aggregate)}; allowed: "
                      f"{', '.join(TASK_AGGREGATES)}")
        if self.scheduler not in SCHEDULERS:
            raise bad("scheduler", f"unknown scheduler {shorten(self.scheduler)}; allowed: {', '.join(SCHEDULERS)}")
        if not self.ladder and SCHEDULERS[self.scheduler].across_candidates:
            raise bad("scheduler", f"{self.scheduler} stops runs early, but the ladder is off (--no-ladder "
                      "trains every candidate fully); use scheduler none or drop --no-ladder")
        for name in self.baselines or []:
            get_reference(name)  # raises with the allowed names
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", self.name):
            raise bad("name", f"{shorten(self.name)} is not a valid run name; use letters, digits, '_', '-', '.'")
        self._validate_device(source, bad)

    def _validate_device(self, source: str, bad: Callable[[str, str], ConfigError]) -> None:
        from afsearch.evaluate.trainer import check_device

        try:  # the GPUs of a joined cluster are the workers', not this machine's
            check_device(self.device, here=self.ray_address is None)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if self.device.startswith("cuda") and self.backend == "ray" and self.gpus_per_trial == 0:
            raise bad("device", f"{self.device} on the ray backend needs --gpus-per-trial > 0 "
                      "(Ray places and isolates GPU work only for trials that ask for a GPU share)")

    def baseline_names(self) -> list[str]:
        """`baselines`, or the main task's default list when None."""
        if self.baselines is not None:
            return list(self.baselines)
        from afsearch.evaluate.tasks import TASKS, make_config

        spec = TASKS.get(self.task)
        if spec is None or spec.baselines is None:
            return list(DEFAULT_BASELINES)
        return list(spec.baselines(make_config(self.task, self.task_config or None)))

    @property
    def tasks(self) -> list[str]:
        """The main task, then the extra ones (None before `resolve_extra_tasks`: none)."""
        return [self.task, *[t for t in self.extra_tasks or [] if t != self.task]]

    def resolve_extra_tasks(self) -> None:
        """None -> the main task's transfer tasks (a built-in task's `TaskSpec.transfer`; none
        for user tasks), so that config.toml records the list the run scores on."""
        if self.extra_tasks is None:
            from afsearch.evaluate.tasks import TASKS

            spec = TASKS.get(self.task)
            self.extra_tasks = list(spec.transfer) if spec is not None else []

    def steps_for(self, task: str) -> int:
        """Training steps of one evaluation on `task` (``steps`` or the task's default)."""
        return steps_for(task, self.steps, self.user_tasks)

    @property
    def metric(self) -> Metric:
        """The main task's metric (what the leaderboard ranks by)."""
        return task_metric(self.task, self.user_tasks)

    def task_config_for(self, task: str) -> dict[str, Any] | None:
        """The task config sent to workers: ``task_config`` applies to the main task;
        ``data_dir`` to CIFAR tasks."""
        config = dict(self.task_config) if task == self.task else {}
        if task.startswith("cifar10") and self.data_dir:
            config.setdefault("data_dir", self.data_dir)
        return config or None


def steps_for(task: str, steps: int | None, user_tasks: dict[str, dict[str, Any]] | None = None) -> int:
    from afsearch.evaluate import TASKS

    if steps:
        return int(steps)
    if task in (user_tasks or {}):
        return int(user_tasks[task]["steps"])  # type: ignore[index]
    return int(TASKS[task].recipe.steps)


def task_metric(task: str, user_tasks: dict[str, dict[str, Any]] | None = None) -> Metric:
    """A task's metric from what a run recorded (user tasks) or the built-in table; never
    imports a user's file."""
    from afsearch.evaluate import TASKS
    from afsearch.evaluate.metric import get_metric

    if task in (user_tasks or {}):
        return get_metric(user_tasks[task].get("metric"))  # type: ignore[index]
    return TASKS[task].metric if task in TASKS else get_metric(None)


#: inclusive bounds of every numeric setting (None: unbounded on that side). Generous, but
#: finite: they keep absurd values from reaching torch, setitimer or SQLite.
LIMITS: dict[str, tuple[float | None, float | None]] = {
    "budget": (1, 1_000_000),
    "time_limit_s": (1e-3, 366 * 86400.0),
    "steps": (1, 10_000_000),
    "seeds": (1, 1000),
    "seed": (0, 2**63 - 1),
    "workers": (1, 4096),
    "cpus_per_trial": (1e-3, 4096),  # the machine or cluster is checked when the executor is
    "gpus_per_trial": (0, 64),
    "timeout_s": (1e-3, 7 * 86400.0),
    "pack": (1, 1024),
    "validate_top": (0, 10_000),
    "validate_seeds": (1, 1000),
    "validate_steps": (1, 10_000_000),
    "shortlist": (0, 10_000),
    "shortlist_seeds": (1, 1000),
}

#: what a value inside strategy_options / task_config may be (TOML tables and lists of
#: tables are refused: no option takes one); task_config also takes lists of scalars (hidden)
_SCALARS = (str, int, float, bool)


def check_range(value: float, low: float | None, high: float | None, what: str,
                error: type[AfsearchError] = ConfigError) -> None:
    """Refuse nan, inf and values outside [low, high]; `what` starts the message."""
    if isinstance(value, float) and not math.isfinite(value):
        raise error(f"{what}: must be a finite number, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"between {_num(low)} and {_num(high)}" if low is not None and high is not None else \
            f">= {_num(low)}" if low is not None else f"<= {_num(high)}"
        raise error(f"{what}: must be {span}, got {shorten(value)}")


def _num(value: float | None) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _expect_types(config: SearchConfig, source: str) -> None:
    expected: dict[str, tuple[type, ...]] = {
        "space": (str,), "task": (str,), "task_config": (dict,), "extra_tasks": (list, type(None)), "strategy": (str, type(None)),
        "strategy_options": (dict,), "objectives": (list,), "budget": (int,),
        "time_limit_s": (int, float, type(None)), "steps": (int, type(None)), "seeds": (int,),
        "seed": (int,), "name": (str, type(None)), "backend": (str,), "workers": (int, type(None)),
        "ray_address": (str, type(None)), "cpus_per_trial": (int, float), "gpus_per_trial": (int, float),
        "timeout_s": (int, float), "pack": (int, type(None)), "ladder": (bool,), "scheduler": (str,), "task_aggregate": (str,), "baselines": (list, type(None)),
        "seed_population": (bool,),
        "validate_top": (int,), "validate_seeds": (int,), "validate_steps": (int, type(None)),
        "shortlist": (int,), "shortlist_seeds": (int,),
        "data_dir": (str, type(None)), "user_tasks": (dict,), "device": (str,),
    }
    for key, types in expected.items():
        value = getattr(config, key)
        if not _is(value, types):
            raise ConfigError(f"{source}: {key}: expected {_names(types)}, got {type(value).__name__} {shorten(value)}")
    for key in ("extra_tasks", "objectives", "baselines"):
        for i, item in enumerate(getattr(config, key) or []):
            if not isinstance(item, str):
                raise ConfigError(f"{source}: {key}[{i}]: expected a name (string), got "
                                  f"{type(item).__name__} {shorten(item)}")
    for key, lists in (("strategy_options", False), ("task_config", True)):
        for raw_name, value in getattr(config, key).items():
            name = plain_key(raw_name)
            items = value if lists and isinstance(value, list) else [value]
            if not all(_is(item, _SCALARS) for item in items) or (isinstance(value, list) and not value):
                kinds = "a string, number, boolean" + (" or a list of them" if lists else "")
                raise ConfigError(f"{source}: {key}.{name}: expected {kinds}, got "
                                  f"{type(value).__name__} {shorten(value)}")
            for item in items:
                if isinstance(item, float):
                    check_range(item, None, None, f"{source}: {key}.{name}")


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # bool is an int subclass; only a bool field takes one
        return bool in types
    return isinstance(value, types)


def _names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types if t is not type(None))


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def parse_duration(text: str) -> float:
    """'90', '90s', '30m', '1h', '1h30m' -> seconds (finite, positive, at most LIMITS)."""
    text = text.strip().lower()
    try:
        value = float(text)
    except ValueError:
        match = _DURATION.match(text)
        if not text or not match or not any(match.groups()):
            raise ConfigError(
                f"bad duration {shorten(text)}; write e.g. 90s, 30m, 1h or 1h30m"
            ) from None
        hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        value = hours * 3600 + minutes * 60 + seconds
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"bad duration {shorten(text)}: must be a positive, finite duration")
    check_range(value, *LIMITS["time_limit_s"], f"duration {shorten(text)} (seconds)")
    return value
