"""The strategy interface: a strategy proposes genotypes and learns from their outcomes.

A strategy knows nothing of workers, tasks or the store. The search engine calls

    proposal = strategy.ask()          # None: nothing to propose until some results arrive
    ...train it somewhere...
    strategy.tell(proposal, outcome)   # in any order (asynchronous workers)

and snapshots ``strategy.state()`` (JSON only) after every ask and tell, so a resumed search
continues with exactly the same random stream and population. Outcomes of failed, rejected
and non-finite evaluations carry ``score = -inf``: they always rank worst, never "best"."""

from __future__ import annotations

import json
import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afsearch.errors import ConfigError
from afsearch.jsonsafe import float_from_json, json_safe
from afsearch.rng import seeded_global_random
from afsearch.spaces.base import Genotype, SearchSpace


@dataclass
class Proposal:
    """A genotype to evaluate. ``key`` identifies it within the strategy (e.g. an Optuna trial
    number); ``origin`` says how it was made (sample, mutation, crossover, seed, enumerate,
    tpe, ...); ``parents`` are keys of the parents. All fields are JSON values."""

    genotype: Genotype
    key: int
    origin: str = "sample"
    parents: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "genotype": self.genotype,
            "key": self.key,
            "origin": self.origin,
            "parents": list(self.parents),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Proposal:
        return cls(data["genotype"], int(data["key"]), data.get("origin", "sample"),
                   list(data.get("parents", [])), dict(data.get("extra", {})))


@dataclass
class Outcome:
    """What a strategy learns about one proposal.

    score: the main objective, higher is better; -inf for failed/rejected/non-finite.
    objectives: for multi-objective strategies (higher is better each), e.g. accuracy per task
    or (accuracy, -activation cost); failed ones are all -inf.
    status: "done" | "rejected" | "failed"; intermediate: [(step, value)] validation curve
    points (what Optuna studies record)."""

    score: float
    objectives: list[float] = field(default_factory=list)
    status: str = "done"
    intermediate: list[tuple[int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.score = finite_or_worst(self.score)
        self.objectives = [finite_or_worst(v) for v in self.objectives] or [self.score]
        if self.status != "done":  # whatever numbers came with it, a failure ranks worst
            self.score = -math.inf
            self.objectives = [-math.inf] * len(self.objectives)

    def to_json(self) -> dict[str, Any]:
        return {"score": json_safe(self.score), "objectives": [json_safe(v) for v in self.objectives],
                "status": self.status, "intermediate": [list(p) for p in self.intermediate]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        return cls(float_from_json(data["score"]), [float_from_json(v) for v in data.get("objectives", [])],
                   data.get("status", "done"), [(int(s), float(v)) for s, v in data.get("intermediate", [])])


def finite_or_worst(value: float | None) -> float:
    """NaN, None and +inf become -inf: a non-finite result is always the worst."""
    if value is None:
        return -math.inf
    value = float(value)
    return value if math.isfinite(value) else -math.inf


def genotype_id(genotype: Genotype) -> str:
    """A genotype as canonical JSON text: equal genotypes, equal text (for syntactic dedupe)."""
    return json.dumps(genotype, sort_keys=True, separators=(",", ":"))


#: DEAP draws from the global `random`; strategies wrap DEAP calls in this
deap_random = seeded_global_random


def make_entry(proposal: Proposal, outcome: Outcome, age: int) -> dict[str, Any]:
    """A population member: genotype, key, score, objectives, status and age (birth order or
    generation). Scores may be -inf; `entries_to_json` makes a list of them JSON."""
    return {"genotype": proposal.genotype, "key": proposal.key, "score": outcome.score,
            "objectives": list(outcome.objectives), "status": outcome.status, "age": age}


def entries_to_json(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "score": json_safe(e["score"]), "objectives": [json_safe(v) for v in e["objectives"]]}
            for e in entries]


def entries_from_json(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "score": float_from_json(e["score"]),
             "objectives": [float_from_json(v) for v in e["objectives"]]} for e in data]


def rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng: random.Random, state: list[Any]) -> None:
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


class Strategy(ABC):
    """Base class. Subclasses implement ask/tell and their own state (JSON)."""

    name: str = "strategy"
    #: True when the strategy ranks by several objectives (Outcome.objectives); a search with
    #: objectives besides accuracy needs one (checked when the run is created)
    multi_objective: bool = False

    def __init__(
        self,
        space: SearchSpace,
        rng: random.Random,
        seeds: list[Genotype] | None = None,
        **options: Any,
    ) -> None:
        self.space = space
        self.rng = rng
        #: genotypes proposed first (e.g. the reference activations expressed in the space)
        self.seeds = list(seeds or [])
        self.options = options
        self.next_key = 0
        #: the best finite result told so far: {"genotype", "key", "score"} (None before)
        self.best_entry: dict[str, Any] | None = None

    @classmethod
    def run_options(cls, run_dir: Path, run_name: str) -> dict[str, Any]:
        """Options this strategy takes from the run directory it searches for (e.g. where to
        keep a study); given before the user's options, which override them."""
        return {}

    def new_key(self) -> int:
        key = self.next_key
        self.next_key += 1
        return key

    @abstractmethod
    def ask(self) -> Proposal | None:
        """The next genotype to evaluate, or None when waiting for results / exhausted."""

    @abstractmethod
    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        """Record the outcome of an earlier proposal (any order)."""

    @property
    def exhausted(self) -> bool:
        """True when the strategy can never propose anything again (finite space done)."""
        return False

    def best(self) -> tuple[Genotype, float] | None:
        """The best genotype seen (never a non-finite one) and its score."""
        if self.best_entry is None:
            return None
        return self.best_entry["genotype"], self.best_entry["score"]

    # -- helpers for subclasses ----------------------------------------------------------------
    def resolve_options(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """`self.options` over `defaults`; an unknown option is a `ConfigError` naming the
        allowed ones."""
        unknown = sorted(set(self.options) - set(defaults))
        if unknown:
            raise ConfigError(
                f"strategy {self.name!r}: unknown option(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(defaults)) or '(none)'}"
            )
        return {**defaults, **self.options}

    def seed_proposal(self) -> Proposal | None:
        """The next seed (removed from `self.seeds`) as a proposal, or None when none is left."""
        if not self.seeds:
            return None
        return Proposal(self.seeds.pop(0), self.new_key(), "seed")

    def record(self, proposal: Proposal, outcome: Outcome) -> None:
        """Keep track of the best finite result (ties keep the earlier one)."""
        if math.isfinite(outcome.score) and (
            self.best_entry is None or outcome.score > self.best_entry["score"]
        ):
            self.best_entry = {"genotype": proposal.genotype, "key": proposal.key, "score": outcome.score}

    # -- persistence -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly: JSON values only."""
        return {"rng": rng_state(self.rng), "next_key": self.next_key, "seeds": self.seeds,
                "best": self.best_entry}

    def restore(self, state: dict[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
        self.next_key = int(state["next_key"])
        self.seeds = list(state.get("seeds", []))
        self.best_entry = state.get("best")
