"""The one interface every search space offers to every strategy.

Genotypes are JSON values (str, int, float, bool, None, list, dict) so checkpoints load in a
fresh process without pickled classes."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

from afsearch.candidate import Candidate

Genotype = Any  # a JSON-serialisable value


class SearchSpace(ABC):
    name: str
    #: names of continuous parameters (for Optuna); empty for purely structural spaces
    continuous: dict[str, tuple[float, float]] = {}
    #: categorical parameters (for Optuna) next to the continuous ones, name -> choices
    choices: dict[str, list[Any]] = {}
    #: True when genotypes are element-wise formula trees (gp, swish): the default strategy is
    #: then the surrogate, which models a formula by its shape on the fingerprint probes
    formula_trees: ClassVar[bool] = False

    @abstractmethod
    def sample(self, rng: random.Random) -> Genotype: ...

    @abstractmethod
    def mutate(self, genotype: Genotype, rng: random.Random) -> Genotype: ...

    def crossover(
        self, a: Genotype, b: Genotype, rng: random.Random
    ) -> tuple[Genotype, Genotype]:
        raise NotImplementedError(f"space {self.name!r} has no crossover")

    @property
    def has_crossover(self) -> bool:
        return type(self).crossover is not SearchSpace.crossover

    def enumerate(self) -> Iterator[Genotype]:
        raise NotImplementedError(f"space {self.name!r} is not finite")

    @property
    def is_finite(self) -> bool:
        return type(self).enumerate is not SearchSpace.enumerate

    @abstractmethod
    def size(self) -> int | None:
        """Number of genotypes, or None when unbounded."""

    @abstractmethod
    def to_candidate(self, genotype: Genotype) -> Candidate: ...

    def seeds(self) -> list[Genotype]:
        """Genotypes of well-known members (e.g. reference activations expressed in this
        space) that a strategy may evaluate first. Empty by default."""
        return []

    def smallest(self) -> list[Genotype]:
        """The space's smallest members, one per function, for a strategy to look among beside
        its random draws (the surrogate does): simple formulas are where ordinary activations
        live, yet a random tree of the space is rarely one. Empty by default."""
        return []

    def from_params(self, params: dict[str, Any]) -> Genotype:
        """The genotype for a dict of values of `continuous` (and `choices`) parameters, as an
        Optuna trial suggests them; only spaces with continuous parameters implement it."""
        raise NotImplementedError(f"space {self.name!r} has no continuous parameters")

    def describe(self) -> dict[str, Any]:
        """Summary for `afsearch spaces`: size, primitives, parameters."""
        return {"name": self.name, "size": self.size()}
