"""DEAP glue: population entries (plain dicts) wrapped as DEAP individuals for DEAP's selection
operators. Nothing is registered in `deap.creator` and nothing is pickled: the fitness classes
are built here, one per number of objectives, and the individuals live only for one call."""

from __future__ import annotations

from typing import Any

from deap import base

from afsearch.search.strategies.base import genotype_id

#: stands in for -inf inside DEAP (crowding distances divide by objective ranges: -inf would
#: turn them into NaN); every finite result is far above it, so failed results still rank last
WORST = -1e100

_FITNESS: dict[int, type[base.Fitness]] = {}


def fitness_class(n: int) -> type[base.Fitness]:
    """A maximising DEAP fitness class with `n` objectives."""
    if n not in _FITNESS:
        _FITNESS[n] = type(f"AfsStrategyFitness{n}", (base.Fitness,), {"weights": (1.0,) * n})
    return _FITNESS[n]


class Individual:
    """One population entry as DEAP sees it: `fitness` (score, or the objectives) and `entry`."""

    __slots__ = ("entry", "fitness")

    def __init__(self, entry: dict[str, Any], values: list[float]) -> None:
        self.entry = entry
        self.fitness = fitness_class(len(values))()
        self.fitness.values = tuple(max(v, WORST) for v in values)


def by_score(entries: list[dict[str, Any]]) -> list[Individual]:
    return [Individual(e, [e["score"]]) for e in entries]


def by_objectives(entries: list[dict[str, Any]], n: int) -> list[Individual]:
    """Individuals on `n` objectives; a shorter objective list (a failed result) is padded
    with the worst value."""
    return [Individual(e, (list(e["objectives"]) + [WORST] * n)[:n]) for e in entries]


def distinct(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries with syntactically equal genotypes reduced to the first of them."""
    seen: set[str] = set()
    out = []
    for e in entries:
        gid = genotype_id(e["genotype"])
        if gid not in seen:
            seen.add(gid)
            out.append(e)
    return out
