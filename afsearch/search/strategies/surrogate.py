"""Surrogate-guided search: train the candidate a model of the results so far likes best.

After the seeds and `initial` random samples, every ask draws a pool of `pool` cheap
candidates: random samples (share `sample_share`), crossovers of two of the `parents` best
results so far (share `crossover_share`, where the space crosses) and mutations of one of them
(the rest); `rounds` times, each further round varying the most promising members of the
pool so far. A share `library_share` of the asks draws instead up to `library` of the space's
smallest members (`SearchSpace.smallest`: every one-unit Swish formula, every gp tree of up
to five nodes), `library_near` of them the nearest in shape to the parents and the rest at random:
simple formulas are where ordinary activations live, and a mutation of a good complicated
formula seldom reaches the simple one beside it. Each pool member is described by its shape
on the fingerprint probes (`afsearch.search.features`); members the screen would reject, and
members whose shape (up to the output's scale, shift and sign, which the next linear layer
absorbs) was already trained or is in flight, are dropped. A regressor (`model`: gp, knn or
forest; `_surrogate.py`), fitted to the ranks of all results so far on the members' `inputs`
(the shape, or the shape beside the shape less its linear part), predicts each member's rank
with an uncertainty, and the member with the best upper confidence bound (mean + `kappa` *
std) is proposed; with probability `explore`, the most uncertain member is proposed instead.
With `kappa` = 0 and `explore` = 0 the search is greedy.

State is JSON: the results told (genotype and score), the proposals in flight and the random
stream; the model is refitted from the results, so a restored strategy proposes exactly what
the uninterrupted one would."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from afsearch.errors import ConfigError
from afsearch.jsonsafe import float_from_json, json_safe
from afsearch.search.features import ShapeFeatures
from afsearch.search.strategies._surrogate import (
    INPUTS,
    MODELS,
    ShapeCache,
    ShapeLibrary,
    ShapeModel,
    check_activation_space,
    far_from,
    fitted_model,
)
from afsearch.search.strategies.base import (
    Outcome,
    Proposal,
    Strategy,
)
from afsearch.spaces.base import Genotype, SearchSpace


class SurrogateSearch(Strategy):
    name = "surrogate"
    # rounds 3 x pool 100: on the planted suite's tuning seeds 100-101 (14 formulas x 2 seeds,
    # budget 300) it found 17 of 28, 1 x 300 15 of 28, evolution and gp with the pre-screen 9 and
    # 10 of 24. The library asks (2000 drawn, 200 of them near the parents, 30% of the asks) with
    # the shape+residual inputs found 46 of 56 on seeds 100-103; 200 drawn (100 near) with the
    # shape alone 43 of 56; without the library 18 of 28 on seeds 100-101
    # (`scripts/bench_search.py --suite`; the README's Strategies section)
    defaults: dict[str, Any] = {"initial": 20, "pool": 100, "rounds": 3, "parents": 10, "sample_share": 0.2,
                                "crossover_share": 0.2, "model": "gp", "kappa": 1.0, "explore": 0.1,
                                "novelty": 0.02, "window": 400, "library": 2000, "library_near": 200, "library_share": 0.3,
                                "inputs": "shape+residual"}

    def __init__(self, space: SearchSpace, rng: random.Random, seeds: list[Genotype] | None = None,
                 **options: Any) -> None:
        super().__init__(space, rng, seeds, **options)
        opts = self.resolve_options(self.defaults)
        self.initial, self.pool_size, self.parents = int(opts["initial"]), int(opts["pool"]), int(opts["parents"])
        self.sample_share, self.kappa = float(opts["sample_share"]), float(opts["kappa"])
        self.crossover_share = float(opts["crossover_share"]) if space.has_crossover else 0.0
        self.explore, self.model_name, self.window = float(opts["explore"]), str(opts["model"]), int(opts["window"])
        self.rounds, self.novelty = int(opts["rounds"]), float(opts["novelty"])
        self.library_draws, self.library_share = int(opts["library"]), float(opts["library_share"])
        self.library_near = min(int(opts["library_near"]), self.library_draws)
        if min(self.initial, self.pool_size, self.parents, self.rounds) < 1 or \
                min(self.window, self.kappa, self.novelty, self.library_draws, self.library_near) < 0 or \
                not all(0 <= v <= 1 for v in (self.sample_share, self.crossover_share, self.explore, self.library_share)):
            raise ConfigError(f"strategy 'surrogate': initial, pool and parents must be >= 1, window, kappa "
                              f"library and library_near >= 0, sample_share, crossover_share, explore and library_share in [0, 1]; got {opts}")
        self.inputs = str(opts["inputs"])
        if self.inputs not in INPUTS:
            raise ConfigError(f"strategy 'surrogate': unknown inputs {self.inputs!r}; allowed: {', '.join(INPUTS)}")
        if self.model_name not in MODELS:
            raise ConfigError(f"strategy 'surrogate': unknown model {self.model_name!r}; allowed: {', '.join(MODELS)}")
        check_activation_space(space, self.name, space.sample(random.Random(0)))
        self.shapes = ShapeCache(space)
        self.results: list[dict[str, Any]] = []  # told: {"genotype", "key", "score"} in order
        self.in_flight: dict[int, Genotype] = {}  # asked, not told
        self.asked = 0  # proposals made (seeds included)
        self._model: ShapeModel | None = None  # rebuilt from `results`
        self._library: ShapeLibrary | None = None  # built on first use (a pure function of the space)

    # -- ask ------------------------------------------------------------------------------------
    def ask(self) -> Proposal | None:
        proposal = self.seed_proposal()
        if proposal is None and self.asked >= self.initial and any(math.isfinite(r["score"]) for r in self.results):
            proposal = self._from_pool()
        if proposal is None:
            proposal = Proposal(self.space.sample(self.rng), self.new_key(), "sample")
        self.asked += 1
        self.in_flight[proposal.key] = proposal.genotype
        return proposal

    def _from_pool(self) -> Proposal | None:
        model, known, parents = self._fitted(), self._known_vectors(), self._parents()
        members: list[tuple[Genotype, tuple[str, list[int]], ShapeFeatures]] = []
        means, stds = np.empty(0), np.empty(0)
        from_library = self.library_draws > 0 and self.rng.random() < self.library_share
        for _ in range(1 if from_library else self.rounds):
            drawn = self._from_library(parents, known) if from_library else self._draw(parents, known, members)
            if not drawn:
                break
            prediction = model.predict([features for _, _, features in drawn])
            members += drawn
            means, stds = np.concatenate([means, prediction.mean]), np.concatenate([stds, prediction.std])
            # a further round varies the pool's most promising members (their trained ancestor
            # stays the recorded parent)
            best = np.argsort(-(means + self.kappa * stds), kind="stable")[: self.parents]
            parents = [{"genotype": members[i][0], "key": (members[i][1][1] or [-1])[0]} for i in best]
        if not members:
            return None
        if self.rng.random() < self.explore:
            choice, origin = int(np.argmax(stds)), "surrogate-explore"
        else:
            choice, origin = int(np.argmax(means + self.kappa * stds)), "surrogate"
        genotype, how, _ = members[choice]
        return Proposal(genotype, self.new_key(), f"{origin}:{how[0]}", list(how[1]),
                        {"predicted": float(means[choice]), "uncertainty": float(stds[choice])})

    def _parents(self) -> list[dict[str, Any]]:
        """The best results, skipping any whose shape lies within `novelty` of a better one."""
        ranked = sorted((r for r in self.results if math.isfinite(r["score"])), key=lambda r: (-r["score"], r["key"]))
        chosen: list[dict[str, Any]] = []
        vectors: list[np.ndarray] = []
        for r in ranked:
            features = self.shapes(r["genotype"])
            if features is None:
                continue
            if vectors and float(np.min(np.linalg.norm(np.stack(vectors) - features.vector, axis=1))) < self.novelty:
                continue
            chosen.append(r)
            vectors.append(features.vector)
            if len(chosen) == self.parents:
                break
        return chosen or ranked[:1]

    def _draw(self, parents: list[dict[str, Any]], known: list[np.ndarray],
              members: list[tuple[Genotype, tuple[str, list[int]], ShapeFeatures]]
              ) -> list[tuple[Genotype, tuple[str, list[int]], ShapeFeatures]]:
        """Up to `pool` new members: samples, crossovers and mutations of `parents`, each valid,
        new in shape (at least `novelty` from every trained or in-flight shape) and not
        already in the pool."""
        picks: list[tuple[Genotype, tuple[str, list[int]]]] = []
        for _ in range(self.pool_size):
            r = self.rng.random()
            if r < self.sample_share:
                genotype, how = self.space.sample(self.rng), ("sample", [])
            elif r < self.sample_share + self.crossover_share and len(parents) > 1:
                a, b = self.rng.sample(parents, 2)
                genotype = self.space.crossover(a["genotype"], b["genotype"], self.rng)[0]
                how = ("crossover", [a["key"], b["key"]])
            else:
                a = self.rng.choice(parents)
                genotype, how = self.space.mutate(a["genotype"], self.rng), ("mutation", [a["key"]])
            picks.append((genotype, how))
        return self._new_shapes(picks, {f.key for _, _, f in members}, known)

    def _from_library(self, parents: list[dict[str, Any]], known: list[np.ndarray]
                      ) -> list[tuple[Genotype, tuple[str, list[int]], ShapeFeatures]]:
        """Up to `library` of the space's smallest members not yet trained: for each parent the
        nearest few in shape (a simple formula close to a good complicated one, which no
        mutation of the latter may reach), `library_near` in all, and the rest at random."""
        if self._library is None:
            self._library = ShapeLibrary(self.space, self.shapes)
        library = self._library
        if not len(library):
            return []
        near = self.library_near
        per_parent = near // max(1, len(parents)) or min(near, 1)
        picks: list[tuple[Genotype, tuple[str, list[int]]]] = []
        for parent in parents:
            features = self.shapes(parent["genotype"])
            if features is None or per_parent == 0:
                continue
            closest = library.nearest(features.vector, 4 * per_parent)
            fresh = closest[far_from(library.vectors[closest], known, self.novelty)][:per_parent]
            picks += [(library.genotypes[i], ("library-near", [parent["key"]])) for i in fresh]
        count = min(len(library), self.library_draws - near)
        picks += [(library.genotypes[i], ("library", [])) for i in self.rng.sample(range(len(library)), count)]
        return self._new_shapes(picks, set(), known)

    def _new_shapes(self, picks: list[tuple[Genotype, tuple[str, list[int]]]], seen: set[str],
                    known: list[np.ndarray]) -> list[tuple[Genotype, tuple[str, list[int]], ShapeFeatures]]:
        """`picks` with their shapes, first of each shape only, leaving out invalid ones, shapes
        in `seen` and shapes within `novelty` of a `known` one."""
        drawn: list[tuple[Genotype, tuple[str, list[int]], ShapeFeatures]] = []
        for genotype, how in picks:
            features = self.shapes(genotype)
            if features is not None and features.key not in seen:
                seen.add(features.key)
                drawn.append((genotype, how, features))
        if not drawn:
            return drawn
        novel = far_from(np.stack([f.vector for _, _, f in drawn]), known, self.novelty)
        return [m for m, keep in zip(drawn, novel, strict=True) if keep]

    def _known_vectors(self) -> list[np.ndarray]:
        """Shapes of the results and of the proposals in flight."""
        flying = [f.vector for f in (self.shapes(g) for g in self.in_flight.values()) if f is not None]
        return self._fitted().features + flying

    def _fitted(self) -> ShapeModel:
        if self._model is None:
            self._model = fitted_model(self.model_name, self.window, self.shapes, self.results, self.inputs)
        return self._model

    # -- tell -----------------------------------------------------------------------------------
    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        if self.in_flight.pop(proposal.key, None) is None:
            return  # a repeated or foreign tell changes nothing
        self.record(proposal, outcome)
        self.results.append({"genotype": proposal.genotype, "key": proposal.key, "score": outcome.score})
        if self._model is not None:
            features = self.shapes(proposal.genotype)
            self._model.add(features, outcome.score)

    # -- persistence ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {**super().state(), "asked": self.asked,
                "results": [{**r, "score": json_safe(r["score"])} for r in self.results],
                "in_flight": [[k, g] for k, g in self.in_flight.items()]}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.asked = int(state["asked"])
        self.results = [{**r, "score": float_from_json(r["score"])} for r in state["results"]]
        self.in_flight = {int(k): g for k, g in state["in_flight"]}
        self._model = None
