"""Generational evolution with DEAP: (mu + lambda) with tournament selection, and NSGA-II.

Both run generation by generation but hand out a generation's offspring one ask at a time, so
any number of workers can take them; once a generation is handed out, `ask` returns None until
all of its results are told (a lost evaluation must be told as failed, or the search waits).
Then parents and offspring are merged, syntactic duplicates dropped, and the survivors chosen:

- `MuPlusLambda` ("gp"): the best `mu` (DEAP `selBest`, elitist); each of the `lambda_`
  offspring is, with probability `cxpb`, the first child of crossing two tournament winners,
  with probability `mutpb` a mutation of one, otherwise a copy (DEAP's `varOr` scheme, with
  `selTournament(tournsize=tournament)` choosing the parents). With `prescreen` = N > 1, each
  offspring is the one of N so made that a surrogate model of all results so far predicts
  best (`_surrogate.Prescreen`; needs a space of formulas).
- `NSGA2` ("nsga2"): `selNSGA2` on `Outcome.objectives` (all maximised); parents by binary
  tournament on (front, crowding distance); each child is the first child of a crossover (with
  probability `cxpb`) or a copy of the first parent, then mutated with probability `mutpb`.
  `pareto_front()` lists the non-dominated results told so far.

The first generation is the seeds followed by random samples up to the population size (all
seeds are used even when there are more). Failed and non-finite results rank last (DEAP sees
them as a very low finite value)."""

from __future__ import annotations

import random
from typing import Any

from deap import tools

from afsearch.errors import ConfigError
from afsearch.search.strategies._deap import by_objectives, by_score, distinct
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


class Generational(Strategy):
    """Shared bookkeeping: `population` (survivors), `queue` (planned offspring not yet asked),
    `pending` (asked, not told) and `told` (this generation's results). Subclasses choose
    survivors (`survive`) and plan offspring (`breed`)."""

    def __init__(self, space: SearchSpace, rng: random.Random, seeds: list[Genotype] | None = None,
                 **options: Any) -> None:
        super().__init__(space, rng, seeds, **options)
        self.population: list[dict[str, Any]] = []
        self.generation = 0  # 0: the first generation is not planned yet
        self.queue: list[dict[str, Any]] = []  # {"genotype", "origin", "parents"}
        self.pending: dict[int, dict[str, Any]] = {}
        self.told: list[dict[str, Any]] = []

    @property
    def mu(self) -> int:
        raise NotImplementedError

    def survive(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def breed(self, parents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def ask(self) -> Proposal | None:
        if not self.queue and not self.pending:
            self._next_generation()
        if not self.queue:
            return None
        plan = self.queue.pop(0)
        proposal = Proposal(plan["genotype"], self.new_key(), plan["origin"], list(plan["parents"]),
                            {"generation": self.generation})
        self.pending[proposal.key] = plan
        return proposal

    def _next_generation(self) -> None:
        if self.generation == 0:
            plans = [{"genotype": g, "origin": "seed", "parents": []} for g in self.seeds]
            self.seeds = []
            while len(plans) < self.mu:
                plans.append({"genotype": self.space.sample(self.rng), "origin": "sample", "parents": []})
        else:
            self.population = self.survive(distinct(self.population + self.told))
            self.told = []
            plans = self.breed(self.population)
        self.queue = plans
        self.generation += 1

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        self.record(proposal, outcome)
        if self.pending.pop(proposal.key, None) is not None:  # a repeated tell changes nothing
            self.told.append(make_entry(proposal, outcome, self.generation))

    def state(self) -> dict[str, Any]:
        return {**super().state(), "population": entries_to_json(self.population),
                "generation": self.generation, "queue": self.queue,
                "pending": [[k, v] for k, v in self.pending.items()],
                "told": entries_to_json(self.told)}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.population = entries_from_json(state["population"])
        self.generation = int(state["generation"])
        self.queue = list(state["queue"])
        self.pending = {int(k): v for k, v in state["pending"]}
        self.told = entries_from_json(state["told"])


def _probabilities(name: str, space: SearchSpace, cxpb: float | None, mutpb: float | None,
                   default_cx: float, default_mut: float | None) -> tuple[float, float]:
    cx = (default_cx if space.has_crossover else 0.0) if cxpb is None else float(cxpb)
    if cx > 0 and not space.has_crossover:
        raise ConfigError(f"strategy {name!r}: cxpb = {cx} but space {space.name!r} has no crossover; use cxpb = 0")
    mut = (1.0 - cx if default_mut is None else default_mut) if mutpb is None else float(mutpb)
    if not (0.0 <= cx <= 1.0 and 0.0 <= mut <= 1.0):
        raise ConfigError(f"strategy {name!r}: cxpb and mutpb must be in [0, 1]; got {cx}, {mut}")
    return cx, mut


class MuPlusLambda(Generational):
    name = "gp"
    defaults = {"mu": 20, "lambda_": 20, "cxpb": None, "mutpb": None, "tournament": 3, "prescreen": 0}

    def __init__(self, space: SearchSpace, rng: random.Random, seeds: list[Genotype] | None = None,
                 **options: Any) -> None:
        super().__init__(space, rng, seeds, **options)
        opts = self.resolve_options(self.defaults)
        self._mu, self.lambda_, self.tournament = int(opts["mu"]), int(opts["lambda_"]), int(opts["tournament"])
        # default: half crossover, half mutation where the space crosses; all mutation otherwise
        self.cxpb, self.mutpb = _probabilities(self.name, space, opts["cxpb"], opts["mutpb"], 0.5, None)
        if self.cxpb + self.mutpb > 1.0 or min(self._mu, self.lambda_, self.tournament) < 1 or int(opts["prescreen"]) < 0:
            raise ConfigError(f"strategy 'gp': need mu, lambda_, tournament >= 1, prescreen >= 0 and cxpb + mutpb <= 1; "
                              f"got {opts}")
        self.prescreen = Prescreen(space, int(opts["prescreen"]), initial=self._mu)
        if self.prescreen.draws > 1:
            check_activation_space(space, self.name, space.sample(random.Random(0)))

    @property
    def mu(self) -> int:
        return self._mu

    def survive(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [ind.entry for ind in tools.selBest(by_score(entries), self._mu)]

    def breed(self, parents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        inds = by_score(parents)
        plans = []
        with deap_random(self.rng):
            for _ in range(self.lambda_):
                if not self.prescreen.active:
                    plans.append(self._plan(inds))
                    continue
                drawn = [self._plan(inds) for _ in range(self.prescreen.draws)]
                plan = drawn[self.prescreen.pick([p["genotype"] for p in drawn])]
                plans.append({**plan, "origin": plan["origin"] + "+prescreen"})
        return plans

    def _plan(self, inds: list[Any]) -> dict[str, Any]:
        """One offspring (DEAP's varOr): a crossover, a mutation or a copy of tournament winners."""
        r = random.random()
        if r < self.cxpb:
            a, b = (ind.entry for ind in tools.selTournament(inds, 2, self.tournament))
            child = self.space.crossover(a["genotype"], b["genotype"], self.rng)[0]
            return {"genotype": child, "origin": "crossover", "parents": [a["key"], b["key"]]}
        (a,) = (ind.entry for ind in tools.selTournament(inds, 1, self.tournament))
        if r < self.cxpb + self.mutpb:
            return {"genotype": self.space.mutate(a["genotype"], self.rng), "origin": "mutation", "parents": [a["key"]]}
        return {"genotype": a["genotype"], "origin": "copy", "parents": [a["key"]]}

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        if proposal.key in self.pending:
            self.prescreen.add(proposal.genotype, outcome.score)
        super().tell(proposal, outcome)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "prescreened": self.prescreen.state()}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.prescreen.restore(state.get("prescreened", []))


def dominates(a: list[float], b: list[float]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))


class NSGA2(Generational):
    name = "nsga2"
    multi_objective = True
    defaults = {"population": 20, "cxpb": None, "mutpb": None}

    def __init__(self, space: SearchSpace, rng: random.Random, seeds: list[Genotype] | None = None,
                 **options: Any) -> None:
        super().__init__(space, rng, seeds, **options)
        opts = self.resolve_options(self.defaults)
        self.population_size = int(opts["population"])
        self.cxpb, self.mutpb = _probabilities(self.name, space, opts["cxpb"], opts["mutpb"], 0.9, 1.0)
        if self.population_size < 1:
            raise ConfigError(f"strategy 'nsga2': population must be >= 1; got {self.population_size}")
        self.n_objectives = 1  # the most objectives any outcome had
        self.front: list[dict[str, Any]] = []  # non-dominated finite results told so far

    @property
    def mu(self) -> int:
        return self.population_size

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        self.n_objectives = max(self.n_objectives, len(outcome.objectives))
        super().tell(proposal, outcome)
        point = list(outcome.objectives)
        if outcome.status != "done" or len(point) < self.n_objectives or min(point) == float("-inf"):
            return
        if any(dominates(e["objectives"], point) or e["objectives"] == point for e in self.front):
            return
        self.front = [e for e in self.front if not dominates(point, e["objectives"])]
        self.front.append({"genotype": proposal.genotype, "key": proposal.key, "objectives": point})

    def pareto_front(self) -> list[dict[str, Any]]:
        """The non-dominated results told so far (finite in every objective), in the order they
        were told: [{"genotype", "key", "objectives"}]."""
        return [dict(e) for e in self.front if len(e["objectives"]) == self.n_objectives]

    def survive(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with deap_random(self.rng):
            chosen = tools.selNSGA2(by_objectives(entries, self.n_objectives), self.population_size)
        return [ind.entry for ind in chosen]

    def breed(self, parents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        inds = by_objectives(parents, self.n_objectives)
        rank: dict[int, tuple[int, float]] = {}
        for r, front in enumerate(tools.sortNondominated(inds, len(inds))):
            tools.emo.assignCrowdingDist(front)
            for ind in front:
                rank[id(ind)] = (-r, ind.fitness.crowding_dist)

        def pick() -> dict[str, Any]:
            a, b = random.choice(inds), random.choice(inds)
            return (a if rank[id(a)] >= rank[id(b)] else b).entry

        plans = []
        with deap_random(self.rng):
            for _ in range(self.population_size):
                a, b = pick(), pick()
                if random.random() < self.cxpb:
                    child = self.space.crossover(a["genotype"], b["genotype"], self.rng)[0]
                    plan = {"genotype": child, "origin": "crossover", "parents": [a["key"], b["key"]]}
                else:
                    plan = {"genotype": a["genotype"], "origin": "copy", "parents": [a["key"]]}
                if random.random() < self.mutpb:
                    plan = {**plan, "genotype": self.space.mutate(plan["genotype"], self.rng),
                            "origin": "mutation" if plan["origin"] == "copy" else "crossover+mutation"}
                plans.append(plan)
        return plans

    def state(self) -> dict[str, Any]:
        return {**super().state(), "n_objectives": self.n_objectives, "front": self.front}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.n_objectives = int(state["n_objectives"])
        self.front = [dict(e) for e in state["front"]]
