"""Search strategies: what to evaluate next.

    strategy = make_strategy("evolution", space, random.Random(0), seeds=space.seeds())
    proposal = strategy.ask()                   # None: wait for results (or exhausted)
    strategy.tell(proposal, Outcome(score=0.93))
    snapshot = strategy.state()                 # JSON; restore() continues exactly

Names: evolution (regularized/aging, the default for tree spaces), gp (mu + lambda), nsga2
(multi-objective), surrogate (model-based: a GP over formula shapes), tpe and cmaes (Optuna; the default for parametric spaces), random and
exhaustive (baselines). See each module for the algorithm and its options."""

from __future__ import annotations

import random
from typing import Any

from afsearch.errors import ConfigError
from afsearch.search.strategies.base import (
    Outcome,
    Proposal,
    Strategy,
    deap_random,
    finite_or_worst,
    genotype_id,
)
from afsearch.search.strategies.baselines import Exhaustive, RandomSearch
from afsearch.search.strategies.evolution import RegularizedEvolution
from afsearch.search.strategies.generational import NSGA2, MuPlusLambda
from afsearch.search.strategies.surrogate import SurrogateSearch
from afsearch.search.strategies.tuning import CmaEsStrategy, OptunaStrategy
from afsearch.spaces.base import Genotype, SearchSpace

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (RegularizedEvolution, MuPlusLambda, NSGA2, SurrogateSearch, OptunaStrategy, CmaEsStrategy,
                RandomSearch, Exhaustive)
}


def make_strategy(name: str, space: SearchSpace, rng: random.Random,
                  seeds: list[Genotype] | None = None, **options: Any) -> Strategy:
    """A strategy by name; unknown names and options raise `ConfigError` naming the allowed ones."""
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; allowed: {', '.join(STRATEGIES)}")
    return STRATEGIES[name](space, rng, seeds, **options)


def strategy_options(name: str) -> dict[str, Any]:
    """The options of a strategy and their defaults (None: chosen from the space)."""
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; allowed: {', '.join(STRATEGIES)}")
    return dict(getattr(STRATEGIES[name], "defaults", {}))


def default_strategy_for(space: SearchSpace) -> str:
    """tpe for spaces described by parameters (parametric, EAFO, or any space exposing
    `choices`); evolution for structural ones (Swish units, GP trees, EvoNorm graphs)."""
    if space.continuous or space.choices:
        return "tpe"
    return "evolution"


__all__ = [
    "NSGA2",
    "STRATEGIES",
    "CmaEsStrategy",
    "Exhaustive",
    "MuPlusLambda",
    "OptunaStrategy",
    "Outcome",
    "Proposal",
    "RandomSearch",
    "RegularizedEvolution",
    "SurrogateSearch",
    "Strategy",
    "deap_random",
    "default_strategy_for",
    "finite_or_worst",
    "genotype_id",
    "make_strategy",
    "strategy_options",
]
