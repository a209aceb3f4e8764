"""Baselines: random search and exhaustive enumeration.

`RandomSearch` proposes the seeds, then `space.sample(rng)` forever (duplicates included: the
engine answers those from its store). `Exhaustive` proposes the seeds, then walks
`space.enumerate()` in order, skipping genotypes equal to a seed, so every member of a finite
space is proposed exactly once; its position is part of its state. It is exhausted when the
enumeration ends."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

from afsearch.errors import ConfigError
from afsearch.search.strategies.base import Outcome, Proposal, Strategy, genotype_id
from afsearch.spaces.base import Genotype, SearchSpace


class RandomSearch(Strategy):
    name = "random"
    defaults: dict[str, Any] = {}

    def __init__(self, space: SearchSpace, rng: random.Random, seeds: list[Genotype] | None = None,
                 **options: Any) -> None:
        super().__init__(space, rng, seeds, **options)
        self.resolve_options(self.defaults)

    def ask(self) -> Proposal | None:
        return self.seed_proposal() or Proposal(self.space.sample(self.rng), self.new_key(), "sample")

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        self.record(proposal, outcome)


class Exhaustive(Strategy):
    name = "exhaustive"
    defaults: dict[str, Any] = {}

    def __init__(self, space: SearchSpace, rng: random.Random, seeds: list[Genotype] | None = None,
                 **options: Any) -> None:
        super().__init__(space, rng, seeds, **options)
        self.resolve_options(self.defaults)
        if not space.is_finite:
            raise ConfigError(f"strategy 'exhaustive' needs a finite space; {space.name!r} is not "
                              "(use evolution, gp, tpe or random)")
        self.position = 0  # genotypes taken from the enumeration so far
        self.seeded: list[str] = []  # genotype ids of the seeds proposed (skipped later)
        self.done = False
        self._walk: Iterator[Genotype] | None = None

    def ask(self) -> Proposal | None:
        seed = self.seed_proposal()
        if seed is not None:
            self.seeded.append(genotype_id(seed.genotype))
            return seed
        if self._walk is None:
            self._walk = itertools.islice(self.space.enumerate(), self.position, None)
        skip = set(self.seeded)
        for genotype in self._walk:
            self.position += 1
            if genotype_id(genotype) not in skip:
                return Proposal(genotype, self.new_key(), "enumerate", extra={"index": self.position - 1})
        self.done = True
        return None

    @property
    def exhausted(self) -> bool:
        size = self.space.size()
        return not self.seeds and (self.done or (size is not None and self.position >= size))

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        self.record(proposal, outcome)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "position": self.position, "seeded": self.seeded, "done": self.done}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.position = int(state["position"])
        self.seeded = list(state["seeded"])
        self.done = bool(state["done"])
        self._walk = None
