"""What a running search tells its observers (the progress display, `--json` event lines, an
API user's `on_event`) and what it returns when it stops."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afsearch.store import LeaderboardEntry


@dataclass
class SearchEvent:
    """kind: start | baseline | result | cache | invalid | stop | finish | validate (the
    fields of each are listed in the README's library API section)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, "time": time.time(), **self.data}


@dataclass
class SearchSummary:
    run: Path
    state: str  # finished | stopped
    trained: int
    proposals: int
    cache_hits: int
    best: LeaderboardEntry | None
    best_baseline: float | None
    elapsed_s: float
    metric: str = "accuracy"  # what best.mean and best_baseline measure (a loss: lower is better)


def entry_json(entry: LeaderboardEntry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {"candidate_id": entry.candidate.id, "formula": entry.candidate.formula,
            "mean": entry.mean, "std": entry.std, "n": entry.n}
