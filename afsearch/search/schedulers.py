"""Schedulers: the one place that decides which training runs of a search stop early (Ray
Tune's `TrialScheduler` is the model). The engine keeps what its finished evaluations recorded
at the scheduler's milestones (`Finished`) and, for every evaluation it sends, asks the
scheduler for `Cutoffs` (`afsearch.evaluate.schedule`): the worker checks them in its `report`
callback beside the quality gate, and a run that misses one is recorded as rejected at a stage
named after the scheduler, with its reason and the compute it spent.

- ``gate`` (default): the ladder's quality gate only: at two early checkpoints, a share of the
  task's reference activation's progress on the same seed and step (`LadderConfig`);
- ``median``: the median stopping rule: from a quarter of the budget, every eighth of it, stop a
  run that is worse than the median of the finished runs at the same step, once
  `min_completed` (5) have finished;
- ``asha``: asynchronous successive halving: rungs at budget / eta^k (eta 3, k = 1..3); a run
  goes on past a rung only while it is in the top 1/eta of every value seen at that rung,
  itself included (judged once `min_seen` (eta) runs have reached it);
- ``none``: nothing beyond the screen and the stability burst.

The values compared are each task's metric in its own direction (`Metric`), on the first
training seed, which every candidate of a search shares. The cutoffs of an evaluation depend
only on the results recorded before it is sent, as a set (a median and a rank do not depend
on order): with the serial local backend that set is the same on every run and after every
resume, so a run's stops repeat exactly."""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from afsearch.errors import ConfigError
from afsearch.evaluate.metric import Metric
from afsearch.evaluate.schedule import Cutoff, Cutoffs

#: no rung or milestone earlier than this many steps: before it every activation is near chance
MIN_MILESTONE_STEP = 10


@dataclass(frozen=True)
class Finished:
    """A finished evaluation as a scheduler sees it: its raw metric at the milestones it
    reached, and whether it trained to the end (`completed`) or was stopped."""

    curve: tuple[tuple[int, float], ...]
    completed: bool

    def value_at(self, step: int) -> float | None:
        return next((v for s, v in self.curve if s == step), None)


class Scheduler(ABC):
    name: str = "scheduler"
    #: whether the ladder's quality gate (against the task's reference) watches each run
    quality_gate: bool = False
    #: whether it compares runs with each other (and so stops runs beyond the ladder's rungs)
    across_candidates: bool = False

    def milestones(self, budget: int) -> tuple[int, ...]:
        """The steps at which every run records its metric for the scheduler."""
        return ()

    @abstractmethod
    def cutoffs(self, budget: int, history: Sequence[Finished], metric: Metric) -> Cutoffs | None:
        """What the next run of `budget` steps must reach, given the finished runs on the same
        task (None: nothing to check or record)."""


class QualityGateOnly(Scheduler):
    name = "gate"
    quality_gate = True

    def cutoffs(self, budget: int, history: Sequence[Finished], metric: Metric) -> Cutoffs | None:
        return None


class NoScheduler(Scheduler):
    name = "none"

    def cutoffs(self, budget: int, history: Sequence[Finished], metric: Metric) -> Cutoffs | None:
        return None


class MedianStopping(Scheduler):
    name = "median"
    across_candidates = True

    def __init__(self, min_completed: int = 5, grace: float = 0.25, every: float = 0.125) -> None:
        if min_completed < 1 or not 0 < grace < 1 or not 0 < every < 1:
            raise ConfigError("median scheduler: min_completed >= 1, grace and every in (0, 1)")
        self.min_completed, self.grace, self.every = min_completed, grace, every

    def milestones(self, budget: int) -> tuple[int, ...]:
        """From `grace` of the budget (earlier, the ranks of runs are mostly noise) every
        `every` of it."""
        count = math.ceil((1 - self.grace) / self.every)
        steps = {round(budget * (self.grace + k * self.every)) for k in range(count)}
        return tuple(sorted(s for s in steps if MIN_MILESTONE_STEP <= s < budget))

    def cutoffs(self, budget: int, history: Sequence[Finished], metric: Metric) -> Cutoffs:
        steps = self.milestones(budget)
        completed = [h for h in history if h.completed]
        cuts = []
        for step in steps:
            values = [metric.oriented(v) for h in completed if (v := h.value_at(step)) is not None]
            values = [v for v in values if math.isfinite(v)]
            if len(values) >= self.min_completed:
                median = metric.oriented(statistics.median(values))  # oriented twice: raw again
                cuts.append(Cutoff(step, median, f"median of {len(values)} finished runs"))
        return Cutoffs(self.name, steps, tuple(cuts))


class AsyncSuccessiveHalving(Scheduler):
    name = "asha"
    across_candidates = True

    def __init__(self, eta: int = 3, rungs: int = 3, min_seen: int | None = None) -> None:
        if eta < 2 or rungs < 1:
            raise ConfigError("asha scheduler: eta must be >= 2 and rungs >= 1")
        self.eta, self.rungs = eta, rungs
        self.min_seen = eta if min_seen is None else min_seen

    def milestones(self, budget: int) -> tuple[int, ...]:
        steps = {budget // self.eta ** k for k in range(1, self.rungs + 1)}
        return tuple(sorted(s for s in steps if MIN_MILESTONE_STEP <= s < budget))

    def cutoffs(self, budget: int, history: Sequence[Finished], metric: Metric) -> Cutoffs:
        steps = self.milestones(budget)
        cuts = []
        for step in steps:
            seen = sorted((o for h in history if (v := h.value_at(step)) is not None
                           and math.isfinite(o := metric.oriented(v))), reverse=True)
            if len(seen) < self.min_seen:
                continue
            # in the top 1/eta of the n seen plus itself: no worse than the k-th best seen
            k = math.ceil((len(seen) + 1) / self.eta)
            cuts.append(Cutoff(step, metric.oriented(seen[k - 1]),
                               f"top 1/{self.eta} of {len(seen) + 1} runs at rung {step}"))
        return Cutoffs(self.name, steps, tuple(cuts))


SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.name: cls for cls in (QualityGateOnly, MedianStopping, AsyncSuccessiveHalving, NoScheduler)
}
DEFAULT_SCHEDULER = QualityGateOnly.name


def make_scheduler(name: str) -> Scheduler:
    if name not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {name!r}; allowed: {', '.join(SCHEDULERS)}")
    return SCHEDULERS[name]()


__all__ = ["DEFAULT_SCHEDULER", "SCHEDULERS", "AsyncSuccessiveHalving", "Finished", "MedianStopping",
           "NoScheduler", "QualityGateOnly", "Scheduler", "make_scheduler"]
