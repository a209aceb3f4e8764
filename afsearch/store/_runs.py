"""Finding runs by name and summarising every run in a runs directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from afsearch.errors import RunStoreError
from afsearch.store._records import BASELINE_ORIGIN, Counts, LeaderboardEntry
from afsearch.store._store import DB_FILE, RunStore


@dataclass(frozen=True)
class RunSummary:
    name: str
    path: Path
    state: str  # running, interrupted, created, finished, stopped, or "unreadable"
    counts: Counts | None
    best: LeaderboardEntry | None  # best non-baseline candidate (`best_entry`), if any is scored
    error: str | None = None  # why the run is unreadable


def resolve_run(run: str | os.PathLike[str], runs_dir: str | os.PathLike[str] = "runs") -> Path:
    """RUN as given on the command line: a run name under runs_dir, or a run directory's path.
    A bare name means the run of that name in runs_dir when there is one (a folder of the same
    name in the current directory does not shadow it)."""
    as_path = Path(run)
    in_runs = Path(runs_dir) / run
    if as_path.name == str(run) and in_runs.is_dir():
        return in_runs
    if as_path.is_dir():
        return as_path
    if in_runs.is_dir():
        return in_runs
    names = [p.name for p in _run_dirs(Path(runs_dir))]
    available = f"available runs: {', '.join(names)}" if names else f"{runs_dir} holds no runs"
    raise RunStoreError(
        f"no run {str(run)!r}: not a directory, nor a run name in {runs_dir} ({available})"
    )


def list_runs(runs_dir: str | os.PathLike[str] = "runs",
              best: Callable[[RunStore], LeaderboardEntry | None] | None = None) -> list[RunSummary]:
    """Every run in runs_dir, by name. Reads only, so it works while searches are running; a
    broken run is listed as "unreadable" with the reason instead of stopping the listing.
    `best` picks each run's best entry (default `best_entry`; the CLI passes the report
    layer's, which ranks a run on several tasks by its aggregate)."""
    summaries = []
    for path in _run_dirs(Path(runs_dir)):
        try:
            with RunStore.open(path, "ro") as store, store.reading():
                summaries.append(
                    RunSummary(path.name, path, store.state, store.counts(), (best or best_entry)(store))
                )
        except RunStoreError as e:
            summaries.append(RunSummary(path.name, path, "unreadable", None, None, str(e)))
    return summaries


def best_entry(store: RunStore) -> LeaderboardEntry | None:
    """The run's best candidate in leaderboard order, baselines excluded (they are references
    the search compares with, not its results)."""
    task = store.config.get("task")
    entries = store.leaderboard(top=None, task=task if isinstance(task, str) else None)
    return next((e for e in entries if e.candidate.origin != BASELINE_ORIGIN), None)


def _run_dirs(runs_dir: Path) -> list[Path]:
    if not runs_dir.is_dir():
        return []
    return sorted(
        p for p in runs_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / DB_FILE).exists()
    )  # fmt: skip
