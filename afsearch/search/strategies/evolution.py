"""Regularized (aging) evolution, steady-state and asynchronous (Real et al., AutoML-Zero;
REFERENCE §3).

The population is a queue of the last `population` results. While it is being filled, asks
hand out the seeds and then random samples. After that every ask runs one tournament: DEAP's
`selTournament` draws `tournament` members (with replacement) and the best of them is mutated
(or, with probability `crossover_prob` in a space with crossover, two tournament winners are
crossed and the first child is taken). Every tell appends the result and drops the *oldest*
member, not the worst, so a lucky result cannot stay forever. Nothing waits for anything: any
number of proposals may be out at once, and results may come back in any order.

Failed and non-finite results (score -inf) join the queue like any other and age out; they
win a tournament only when every drawn member failed.

`prescreen` = N > 1 makes N children that way per ask and proposes the one a surrogate model
of all results so far predicts best (`_surrogate.Prescreen`; needs a space of formulas)."""

from __future__ import annotations

import random
from typing import Any

from deap import tools

from afsearch.errors import ConfigError
from afsearch.search.strategies._deap import by_score
from afsearch.search.strategies._surrogate import Prescreen, check_activation_space
from afsearch.search.strategies.base import (
    Outcome,
    Proposal,
    Strategy,
    deap_random,
    entries_from_json,
    entries_to_json,
    make_entry,
)
from afsearch.spaces.base import Genotype, SearchSpace


class RegularizedEvolution(Strategy):
    name = "evolution"
    defaults = {"population": 20, "tournament": 5, "crossover_prob": 0.0, "prescreen": 0}

    def __init__(self, space: SearchSpace, rng: random.Random, seeds: list[Genotype] | None = None,
                 **options: Any) -> None:
        super().__init__(space, rng, seeds, **options)
        opts = self.resolve_options(self.defaults)
        self.population_size = int(opts["population"])
        self.tournament = int(opts["tournament"])
        self.crossover_prob = float(opts["crossover_prob"]) if space.has_crossover else 0.0
        if self.population_size < 1 or self.tournament < 1 or not 0.0 <= self.crossover_prob <= 1.0 or \
                int(opts["prescreen"]) < 0:
            raise ConfigError(
                f"strategy 'evolution': population and tournament must be >= 1, prescreen >= 0 and crossover_prob "
                f"in [0, 1]; got {opts}"
            )
        self.prescreen = Prescreen(space, int(opts["prescreen"]), initial=self.population_size)
        if self.prescreen.draws > 1:
            check_activation_space(space, self.name, space.sample(random.Random(0)))
        self.population: list[dict[str, Any]] = []  # oldest first
        self.initial_asked = 0  # asks made while filling the population (seeds and samples)
        self.births = 0  # results told so far (the age of the next member)

    def ask(self) -> Proposal | None:
        if self.initial_asked < self.population_size or self.seeds:
            self.initial_asked += 1
            seed = self.seed_proposal()
            if seed is not None:
                return seed
            return Proposal(self.space.sample(self.rng), self.new_key(), "sample")
        if not self.population:
            return None  # every initial proposal is still out
        if not self.prescreen.active:
            child, origin, parents = self._offspring()
            return Proposal(child, self.new_key(), origin, parents)
        children = [self._offspring() for _ in range(self.prescreen.draws)]
        child, origin, parents = children[self.prescreen.pick([c[0] for c in children])]
        return Proposal(child, self.new_key(), origin + "+prescreen", parents)

    def _offspring(self) -> tuple[Genotype, str, list[int]]:
        """One child of tournament winners: (genotype, "mutation" | "crossover", parent keys)."""
        with deap_random(self.rng):
            if self.rng.random() < self.crossover_prob:
                a, b = (tools.selTournament(by_score(self.population), 1, self.tournament)[0].entry
                        for _ in range(2))
                child = self.space.crossover(a["genotype"], b["genotype"], self.rng)[0]
                return child, "crossover", [a["key"], b["key"]]
            parent = tools.selTournament(by_score(self.population), 1, self.tournament)[0].entry
        return self.space.mutate(parent["genotype"], self.rng), "mutation", [parent["key"]]

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        self.prescreen.add(proposal.genotype, outcome.score)
        self.record(proposal, outcome)
        self.population.append(make_entry(proposal, outcome, self.births))
        self.births += 1
        if len(self.population) > self.population_size:
            self.population.pop(0)  # the oldest, whatever its score

    def state(self) -> dict[str, Any]:
        return {**super().state(), "population": entries_to_json(self.population),
                "initial_asked": self.initial_asked, "births": self.births, "prescreened": self.prescreen.state()}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.population = entries_from_json(state["population"])
        self.initial_asked = int(state["initial_asked"])
        self.births = int(state["births"])
        self.prescreen.restore(state.get("prescreened", []))
