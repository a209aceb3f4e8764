"""Search strategies: what to evaluate next.

    strategy = make_strategy("evolution", space, random.Random(0), seeds=space.seeds())
    proposal = strategy.ask()                   # None: wait for results (or exhausted)
    strategy.tell(proposal, Outcome(score=0.93))
    snapshot = strategy.state()                 # JSON; restore() continues exactly

Names: evolution (regularized/aging, the default for layer and mixture spaces), gp (mu + lambda),
nsga2 (multi-objective), surrogate (model-based: a GP over formula shapes; the default for formula
tree spaces), tpe and cmaes (Optuna; the default for parametric spaces), random and exhaustive
(baselines). See each module for the algorithm and its options."""

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


def default_strategy_for(space: SearchSpace, objectives: int = 1) -> str:
    """nsga2 when several objectives are asked (the others rank by one score and would ignore
    the rest); else tpe for spaces described by parameters (parametric, EAFO, or any space
    exposing `choices`); surrogate for element-wise formula trees (gp, swish), where it
    rediscovered planted formulas most often (`scripts/bench_search.py --suite`); evolution for
    the other structural spaces (EvoNorm layer graphs, which have no shape on the probes;
    mixtures)."""
    if objectives > 1:
        return "nsga2"
    if space.continuous or space.choices:
        return "tpe"
    if space.formula_trees:
        return "surrogate"
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
