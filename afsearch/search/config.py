"""The search configuration: defaults, a TOML file, CLI overrides, validation.

Precedence: defaults < ``--config run.toml`` < command-line flags. The resolved configuration
is saved as ``config.toml`` in the run directory; ``afsearch resume`` reads it back."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afsearch.errors import ConfigError
from afsearch.reference import DEFAULT_BASELINES, get_reference

BACKENDS = ("ray", "local")
OBJECTIVES = ("accuracy", "cost", "params")


@dataclass
class SearchConfig:
    """Everything that defines a search. ``budget`` counts trained evaluations (cache hits
    are free); ``steps`` is the training budget of one evaluation (None: the task default)."""

    space: str = "swish"
    task: str = "mnist1d-mlp"
    #: options of the main task, e.g. {planted = "sin(x)"} for teacher-student
    task_config: dict[str, Any] = field(default_factory=dict)
    #: extra tasks each candidate is also scored on (multi-task / NSGA-II objectives)
    extra_tasks: list[str] = field(default_factory=list)
    strategy: str | None = None  # None: the space's default (evolution for trees, tpe for parameters)
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
    #: candidates trained together in one job (stacked weights; MLP tasks, else one by one)
    pack: int = 1
    ladder: bool = True
    baselines: list[str] = field(default_factory=lambda: list(DEFAULT_BASELINES))
    seed_population: bool = True
    validate_top: int = 3
    validate_seeds: int = 3
    validate_steps: int | None = None
    data_dir: str | None = None

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
                f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}"
            )
        config = cls(**data)
        config.validate(source)
        return config

    @classmethod
    def load(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> SearchConfig:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        if "search" in data and isinstance(data["search"], dict):
            data = data["search"]
        if "time" in data:  # the CLI spelling is accepted in files too
            data["time_limit_s"] = parse_duration(str(data.pop("time")))
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_dict(data, str(path))

    # -- validation ----------------------------------------------------------------------------
    def validate(self, source: str = "config") -> None:
        def bad(key: str, problem: str) -> ConfigError:
            return ConfigError(f"{source}: {key}: {problem}")

        _expect_types(self, source)
        for key in ("budget", "seeds", "validate_seeds"):
            if getattr(self, key) <= 0:
                raise bad(key, f"must be a positive integer, got {getattr(self, key)}")
        if self.validate_top < 0:
            raise bad("validate_top", f"must be >= 0, got {self.validate_top}")
        for key in ("steps", "validate_steps"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise bad(key, f"must be a positive number of training steps, got {value}")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise bad("time", "must be a positive duration such as 90s, 30m or 1h")
        if self.backend not in BACKENDS:
            raise bad("backend", f"unknown backend {self.backend!r}; allowed: {', '.join(BACKENDS)}")
        if self.pack <= 0:
            raise bad("pack", f"must be a positive integer, got {self.pack}")
        if self.workers is not None and self.workers <= 0:
            raise bad("workers", f"must be a positive integer, got {self.workers}")
        if self.cpus_per_trial <= 0:
            raise bad("cpus_per_trial", f"must be > 0, got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise bad("gpus_per_trial", f"must be >= 0, got {self.gpus_per_trial}")
        if self.timeout_s <= 0:
            raise bad("timeout_s", f"must be > 0 seconds, got {self.timeout_s}")
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown or not self.objectives:
            raise bad("objectives", f"unknown objective(s) {unknown}; allowed: {', '.join(OBJECTIVES)}")
        for name in self.baselines:
            get_reference(name)  # raises with the allowed names
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", self.name):
            raise bad("name", f"{self.name!r} is not a valid run name; use letters, digits, '_', '-', '.'")

    @property
    def tasks(self) -> list[str]:
        return [self.task, *[t for t in self.extra_tasks if t != self.task]]

    def steps_for(self, task: str) -> int:
        """Training steps of one evaluation on `task` (``steps`` or the task's default)."""
        return steps_for(task, self.steps)

    def task_config_for(self, task: str) -> dict[str, Any] | None:
        """The task config sent to workers: ``task_config`` applies to the main task;
        ``data_dir`` to CIFAR tasks."""
        config = dict(self.task_config) if task == self.task else {}
        if task.startswith("cifar10") and self.data_dir:
            config.setdefault("data_dir", self.data_dir)
        return config or None


def steps_for(task: str, steps: int | None) -> int:
    from afsearch.evaluate import TASKS

    return int(steps or TASKS[task].recipe.steps)


def _expect_types(config: SearchConfig, source: str) -> None:
    expected: dict[str, tuple[type, ...]] = {
        "space": (str,), "task": (str,), "task_config": (dict,), "extra_tasks": (list,), "strategy": (str, type(None)),
        "strategy_options": (dict,), "objectives": (list,), "budget": (int,),
        "time_limit_s": (int, float, type(None)), "steps": (int, type(None)), "seeds": (int,),
        "seed": (int,), "name": (str, type(None)), "backend": (str,), "workers": (int, type(None)),
        "ray_address": (str, type(None)), "cpus_per_trial": (int, float), "gpus_per_trial": (int, float),
        "timeout_s": (int, float), "pack": (int,), "ladder": (bool,), "baselines": (list,), "seed_population": (bool,),
        "validate_top": (int,), "validate_seeds": (int,), "validate_steps": (int, type(None)),
        "data_dir": (str, type(None)),
    }
    for key, types in expected.items():
        value = getattr(config, key)
        if isinstance(value, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(value, types)
        if not ok:
            names = " or ".join(t.__name__ for t in types if t is not type(None))
            raise ConfigError(f"{source}: {key}: expected {names}, got {type(value).__name__} {value!r}")


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def parse_duration(text: str) -> float:
    """'90', '90s', '30m', '1h', '1h30m' -> seconds."""
    text = text.strip().lower()
    try:
        value = float(text)
    except ValueError:
        match = _DURATION.match(text)
        if not text or not match or not any(match.groups()):
            raise ConfigError(
                f"bad duration {text!r}; write e.g. 90s, 30m, 1h or 1h30m"
            ) from None
        hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        value = hours * 3600 + minutes * 60 + seconds
    if value <= 0:
        raise ConfigError(f"bad duration {text!r}: must be positive")
    return value
