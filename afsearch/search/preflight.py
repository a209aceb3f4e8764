"""Checks a search runs before it writes anything (a refused command leaves no run directory
behind, so the corrected one does not fail with "already exists"), and the executor a run's
configuration asks for."""

from __future__ import annotations

import random
from pathlib import Path

from torch import nn

from afsearch.errors import ConfigError, TaskError, shorten
from afsearch.execute import Executor, make_executor
from afsearch.reference import get_reference
from afsearch.search.config import SearchConfig
from afsearch.spaces.base import SearchSpace


def check_runs_dir(runs_dir: Path) -> None:
    """--runs-dir must be a directory or creatable as one (not a file, not under a file)."""
    for folder in (runs_dir, *runs_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(f"--runs-dir {runs_dir}: {folder} is a file, not a directory")
            return


def check_executor(config: SearchConfig) -> None:
    """What the executor would refuse, without starting one (see `check_backend`)."""
    from afsearch.execute import check_backend

    check_backend(config.backend, config.ray_address, config.cpus_per_trial, config.gpus_per_trial,
                  config.workers)


def check_strategy_options(config: SearchConfig, space: SearchSpace) -> None:
    """Build the strategy once with its options and no storage (Optuna: in memory), so a bad
    option value (population=-5, population=abc, crossover_prob=2) is refused up front."""
    from afsearch.search.strategies import make_strategy

    options = {k: v for k, v in config.strategy_options.items() if k not in ("storage", "study_name")}
    try:
        make_strategy(config.strategy or "", space, random.Random(0), seeds=[], **options)
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. int("abc") inside the strategy
        raise ConfigError(f"strategy {config.strategy!r}: bad option value ({shorten(str(exc), 120)}); "
                          f"options given: {shorten(options, 120)}") from None


def executor_for(config: SearchConfig) -> Executor:
    """The executor a run's config asks for; a joined Ray cluster also gets the folder of the
    main user task's file (`afsearch.execute._ray.ship_env`)."""
    files = [r["file"] for r in config.user_tasks.values() if "file" in r]
    options = {"ship_dir": str(Path(files[0]).parent)} if files and config.backend == "ray" else {}
    return make_executor(config.backend, ray_address=config.ray_address, cpus_per_trial=config.cpus_per_trial,
                         gpus_per_trial=config.gpus_per_trial, num_workers=config.workers, **options)


def record_user_tasks(config: SearchConfig) -> None:
    """Import every user task (its errors are the user's, in one line), write its reference
    canonically (absolute file path) and record what read-only commands and `resume` need:
    `SearchConfig.user_tasks`. Packing needs an MLP the packed trainer can stack."""
    from afsearch.evaluate.custom import parse_reference, resolve_task, task_record
    from afsearch.evaluate.packed import packable
    from afsearch.evaluate.tasks import is_reference

    def canonical(task: str) -> str:
        return parse_reference(task).canonical if is_reference(task) else task

    config.task = canonical(config.task)
    config.resolve_extra_tasks()
    config.extra_tasks = [canonical(t) for t in config.extra_tasks or []]
    config.user_tasks = {t: task_record(t, config.task_config_for(t)) for t in config.tasks if is_reference(t)}
    if config.pack is not None and config.pack > 1:
        for ref in config.user_tasks:
            task = resolve_task(ref, config.task_config_for(ref))
            model = task.model(nn.ReLU)
            if not packable(model):
                raise ConfigError(f"--pack {config.pack}: the model of task {ref} ({type(model).__name__}) is "
                                  "neither an nn.Sequential MLP nor a plain convolutional nn.Sequential "
                                  "(Conv, BatchNorm, activations, pooling, then Flatten and Linear), which "
                                  "packed training stacks; drop --pack")


def check_user_tasks_unchanged(config: SearchConfig, allow_changed: bool) -> bool:
    """Refuse to resume when a user task's file changed or vanished; with `allow_changed`,
    record the new hash instead. True when the record changed."""
    from afsearch.evaluate.custom import check_unchanged, file_sha256

    updated = False
    for ref, record in config.user_tasks.items():
        check_unchanged(ref, record, allow_changed)
        path = Path(record.get("file", ""))
        if "sha256" in record and path.is_file() and file_sha256(path) != record["sha256"]:
            record["sha256"] = file_sha256(path)  # allowed: the next resume compares with this one
            updated = True
    return updated


def _task_options(task: str) -> set[str]:
    """The config fields of a built-in task (none for a user task)."""
    import dataclasses

    from afsearch.evaluate import TASKS

    return {f.name for f in dataclasses.fields(TASKS[task].config)} if task in TASKS else set()


def check_tasks(config: SearchConfig, space: SearchSpace) -> None:
    from afsearch.evaluate import TASKS
    from afsearch.evaluate.tasks import layer_tasks, resolve_task_config

    for task in config.tasks:
        try:  # names, keys and values of the task config, checked before any worker sees them
            resolve_task_config(task, config.task_config_for(task))
        except TaskError as exc:
            raise ConfigError(str(exc)) from exc
    for name in config.baseline_names():
        needs = get_reference(name).candidate().task_overrides()
        for task in config.tasks:
            missing = sorted(set(needs) - _task_options(task))
            if missing:
                raise ConfigError(f"baseline {name} fixes the task option(s) {', '.join(missing)}, which task "
                                  f"{task} does not have; drop it from --baselines (it is for lm-transformer)")
    probe = space.to_candidate(space.sample(random.Random(0)))
    if probe.is_layer:
        wrong = [t for t in config.tasks
                 if not (config.user_tasks[t]["layers"] if t in config.user_tasks else TASKS[t].layers)]
        if wrong:
            raise ConfigError(f"space {config.space!r} searches normalization-activation layers, which "
                              f"task(s) {', '.join(wrong)} cannot use; choose one of {', '.join(layer_tasks())}")


def resolve_pack(config: SearchConfig) -> None:
    """`config.pack` when it was left to the default: the smallest default pack size of the
    search's tasks (`afsearch.evaluate.packed.default_pack`: 16 for MLPs, 8 for plain CNNs, 1
    for anything packed training cannot stack; built-in tasks state theirs, user tasks were
    measured when recorded). Called before the configuration is recorded, so a run keeps its
    value."""
    if config.pack is not None:
        return
    from afsearch.evaluate.tasks import TASKS

    def pack(task: str) -> int:
        if task in config.user_tasks:
            return int(config.user_tasks[task].get("pack", 1))
        return TASKS[task].pack if task in TASKS else 1

    config.pack = min(pack(t) for t in config.tasks)
