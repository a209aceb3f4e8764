"""The worker's side of a scheduler: the cutoffs a running evaluation must reach, and the
`report` callback that checks them beside the quality gate.

A scheduler (`afsearch.search.schedulers`) looks at the evaluations a search has finished and
sends, with each request, `Cutoffs`: the steps at which it wants the validation metric
recorded (its milestones) and, at some of them, the value the run must reach there. The
trainer knows none of this; `CutoffCheck` is one more `report(step, val_accuracy, val_loss)`
callback. Values are raw, in the metric's own units and direction (`afsearch.evaluate.metric`):
a loss-scored task is stopped when its loss is *above* the cutoff."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from afsearch.evaluate.metric import Metric
from afsearch.evaluate.result import StageRecord
from afsearch.evaluate.trainer import Report


@dataclass(frozen=True)
class Cutoff:
    """At `step` the run must not be worse than `value`; `basis` says where the value comes
    from, for the reason a stopped run records (e.g. "median of 5 finished runs")."""

    step: int
    value: float
    basis: str


@dataclass(frozen=True)
class Cutoffs:
    """What a scheduler asks of one evaluation (its first seed, which every candidate of a
    search shares): record the metric at `milestones`, stop at the first missed cutoff."""

    scheduler: str
    milestones: tuple[int, ...] = ()
    cutoffs: tuple[Cutoff, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler, "milestones": list(self.milestones),
                "cutoffs": [{"step": c.step, "value": c.value, "basis": c.basis} for c in self.cutoffs]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cutoffs:
        """Decode; KeyError/TypeError/ValueError when malformed (the protocol names it)."""
        if not isinstance(data, dict):
            raise TypeError(f"schedule must be an object, got {type(data).__name__}")
        cutoffs = tuple(Cutoff(int(c["step"]), float(c["value"]), str(c["basis"]))
                        for c in data.get("cutoffs", []))
        if not all(math.isfinite(c.value) for c in cutoffs):
            raise ValueError("a cutoff value must be finite")
        return cls(str(data["scheduler"]), tuple(int(s) for s in data.get("milestones", [])), cutoffs)

    @property
    def steps(self) -> list[int]:
        """Every step at which the run must validate."""
        return sorted(set(self.milestones) | {c.step for c in self.cutoffs})


class CutoffCheck:
    """A `report` callback: records the metric at the milestones (`curve`: (step, raw value))
    and returns False at the first cutoff the run misses; `record` then holds the rejection,
    as a stage named after the scheduler."""

    def __init__(self, cutoffs: Cutoffs, metric: Metric) -> None:
        self.cutoffs, self.metric = cutoffs, metric
        self._milestones = set(cutoffs.milestones)
        self._by_step = {c.step: c for c in cutoffs.cutoffs}
        self.curve: list[tuple[int, float]] = []
        self.record: StageRecord | None = None

    @property
    def steps(self) -> list[int]:
        return self.cutoffs.steps

    def __call__(self, step: int, val_accuracy: float, val_loss: float) -> bool:
        if self.record is not None:
            return False
        m = self.metric
        value = val_loss if m.source == "loss" else val_accuracy
        if step in self._milestones and m.finite(value):
            self.curve.append((step, value))
        cutoff = self._by_step.get(step)
        if cutoff is None or (m.finite(value) and not m.better(cutoff.value, value)):
            return True
        worse = "<" if m.higher_is_better else ">"
        reason = (f"validation {m.name} {value:.3f} {worse} {cutoff.value:.3f} at step {step} "
                  f"({self.cutoffs.scheduler}: {cutoff.basis})")
        self.record = StageRecord(self.cutoffs.scheduler, False, reason, 0.0, step,
                                  {"val_accuracy": val_accuracy, "val_loss": val_loss,
                                   "cutoff": cutoff.value, "step": float(step)})
        return False


def all_of(reports: Sequence[Report | None]) -> Report | None:
    """One callback that tells every report each validation (each keeps its own record) and
    continues only while all of them say so; None when there is none."""
    live = [r for r in reports if r is not None]
    if len(live) <= 1:
        return live[0] if live else None

    def report(step: int, val_accuracy: float, val_loss: float) -> bool:
        return all([r(step, val_accuracy, val_loss) for r in live])  # a list: every one is told

    return report
