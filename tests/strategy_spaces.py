"""Small real search spaces and drivers shared by the strategy tests."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

from afsearch.candidate import Candidate
from afsearch.search.strategies import Outcome, Proposal, Strategy
from afsearch.spaces.base import Genotype, SearchSpace


class DigitSpace(SearchSpace):
    """Genotype: a list of `length` digits in 0..base-1. Finite, with mutation, one-point
    crossover, enumeration and a categorical description (`choices`) (one parameter per position)."""

    name = "digits"

    def __init__(self, length: int = 6, base: int = 4) -> None:
        self.length, self.base = length, base
        self.choices = {f"d{i}": list(range(base)) for i in range(length)}

    def sample(self, rng: random.Random) -> Genotype:
        return [rng.randrange(self.base) for _ in range(self.length)]

    def mutate(self, genotype: Genotype, rng: random.Random) -> Genotype:
        child = list(genotype)
        i = rng.randrange(self.length)
        child[i] = rng.choice([d for d in range(self.base) if d != child[i]])
        return child

    def crossover(self, a: Genotype, b: Genotype, rng: random.Random) -> tuple[Genotype, Genotype]:
        cut = rng.randrange(1, self.length)
        return a[:cut] + b[cut:], b[:cut] + a[cut:]

    def enumerate(self) -> Iterator[Genotype]:
        for digits in itertools.product(range(self.base), repeat=self.length):
            yield list(digits)

    def size(self) -> int:
        return self.base**self.length

    def from_params(self, params: dict[str, Any]) -> Genotype:
        return [int(params[f"d{i}"]) for i in range(self.length)]

    def to_candidate(self, genotype: Genotype) -> Candidate:
        return Candidate.activation("x")


class IndexOnlySpace(DigitSpace):
    """The same space without a categorical description (`choices`): Optuna falls back to one index."""

    name = "digits-index"

    def __init__(self, length: int = 3, base: int = 4) -> None:
        super().__init__(length, base)
        del self.choices


def matches(target: list[int]) -> Callable[[Genotype], Outcome]:
    return lambda g: Outcome(float(sum(a == b for a, b in zip(g, target, strict=True))))


def drive(strategy: Strategy, objective: Callable[[Genotype], Outcome], tells: int,
          batch: int = 1) -> list[Proposal]:
    """Ask up to `batch` proposals, tell them newest first (out of order), until `tells`
    results were told. Returns every proposal in ask order."""
    asked: list[Proposal] = []
    told = 0
    while told < tells:
        out = []
        while len(out) < min(batch, tells - told):
            p = strategy.ask()
            if p is None:
                break
            out.append(p)
        if not out:
            break
        asked.extend(out)
        for p in reversed(out):
            strategy.tell(p, objective(p.genotype))
            told += 1
    return asked


def signature(proposals: list[Proposal]) -> list[str]:
    return [json.dumps([p.genotype, p.key, p.origin, p.parents], sort_keys=True) for p in proposals]


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint goes through: strict JSON text and back."""
    return json.loads(json.dumps(state, allow_nan=False))
