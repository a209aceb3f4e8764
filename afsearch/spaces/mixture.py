"""Learnable combinations of a dictionary of activations ("More Expressive Feedforward Layers"):

- kind ``la``: ``f(x) = sum_k a_k g_k(x)``, input-independent. A member is an ordinary formula
  with trainable constants, ``alpha1[0.5] * gelu(x) + alpha2[0.5] * silu(x)``, so every model
  layer gets its own ``a_k`` and fingerprinting, compilation, export and patching are those of
  any formula.
- kind ``moa``: the token-adaptive mixture, a token-wise module whose gate computes per-token
  softmax weights from the hidden vector (`afsearch.compile.token`); it starts as the LA of the
  same initial weights (normalised to sum 1).

The search chooses the dictionary subset and the initial weights. Genotype (JSON):
``{"type": "la" | "moa", "terms": [[formula, initial weight], ...]}``, terms in dictionary order;
for ``moa`` it is exactly the token-wise spec (what the store keeps as the genotype is what
rebuilds the candidate)."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afsearch.candidate import Candidate
from afsearch.errors import ExpressionError
from afsearch.expr import parse, to_string
from afsearch.spaces.base import Genotype, SearchSpace
from afsearch.spaces.toml_schema import check_keys, load_toml, optional, require, space_error

KINDS = ("la", "moa")


@dataclass
class MixtureSpace(SearchSpace):
    name: str
    kind: str  # "la" | "moa"
    dictionary: dict[str, str]  # name -> formula
    min_terms: int = 2
    max_terms: int = 4
    weight_range: tuple[float, float] = (0.1, 1.0)
    seed_terms: list[dict[str, float]] = field(default_factory=list)
    sigma: float = 0.3  # mutation step of a weight, in log space

    def __post_init__(self) -> None:
        self._order = {formula: i for i, formula in enumerate(self.dictionary.values())}

    # -- genotypes -------------------------------------------------------------------------
    def _genotype(self, terms: dict[str, float]) -> Genotype:
        """From formula -> weight to the JSON genotype (dictionary order, weights rounded)."""
        ordered = sorted(terms.items(), key=lambda kv: self._order[kv[0]])
        return {"type": self.kind, "terms": [[f, round(w, 4)] for f, w in ordered]}

    def terms(self, genotype: Genotype) -> dict[str, float]:
        where = f"genotype (space {self.name!r})"
        if not isinstance(genotype, dict) or genotype.get("type") != self.kind or not isinstance(genotype.get("terms"), list):
            raise space_error(where, "genotype", "expected {type, terms}", f'{{"type": "{self.kind}", "terms": [...]}}')
        out: dict[str, float] = {}
        low, high = self.weight_range
        for term in genotype["terms"]:
            if (not isinstance(term, list) or len(term) != 2 or term[0] not in self._order
                    or isinstance(term[1], bool) or not isinstance(term[1], int | float)
                    or not low <= term[1] <= high or term[0] in out):
                raise space_error(where, "terms", f"bad term {term!r}",
                                  f"[dictionary formula, weight in [{low:g}, {high:g}]], each formula once")
            out[term[0]] = float(term[1])
        if not self.min_terms <= len(out) <= self.max_terms:
            raise space_error(where, "terms", f"{len(out)} terms", f"{self.min_terms}..{self.max_terms}")
        return out

    def to_candidate(self, genotype: Genotype) -> Candidate:
        terms = self.terms(genotype)
        if self.kind == "moa":
            return Candidate.token(json.dumps(self._genotype(terms)))
        return Candidate.activation(la_formula(list(terms.items())))

    # -- operators ---------------------------------------------------------------------------
    def _weight(self, rng: random.Random) -> float:
        low, high = self.weight_range
        return round(math.exp(rng.uniform(math.log(low), math.log(high))), 4)

    def sample(self, rng: random.Random) -> Genotype:
        k = rng.randint(self.min_terms, min(self.max_terms, len(self.dictionary)))
        chosen = rng.sample(list(self.dictionary.values()), k)
        return self._genotype({f: self._weight(rng) for f in chosen})

    def mutate(self, genotype: Genotype, rng: random.Random) -> Genotype:
        """One of: rescale a weight (log-normal step), add a term, drop a term, swap a term for
        an unused one. Never returns the parent unchanged."""
        terms = self.terms(genotype)
        unused = [f for f in self.dictionary.values() if f not in terms]
        low, high = self.weight_range
        for _ in range(20):
            child = dict(terms)
            op = rng.choice(["weight", "add", "drop", "swap"])
            if op == "weight":
                f = rng.choice(list(child))
                child[f] = round(min(high, max(low, child[f] * math.exp(rng.gauss(0.0, self.sigma)))), 4)
            elif op == "add" and unused and len(child) < self.max_terms:
                child[rng.choice(unused)] = self._weight(rng)
            elif op == "drop" and len(child) > self.min_terms:
                del child[rng.choice(list(child))]
            elif op == "swap" and unused:
                old = rng.choice(list(child))
                child[rng.choice(unused)] = child.pop(old)
            if child != terms:
                return self._genotype(child)
        return self.sample(rng)

    def crossover(self, a: Genotype, b: Genotype, rng: random.Random) -> tuple[Genotype, Genotype]:
        """Each child draws its terms from the union of the parents' (weights from whichever
        parent had the term; from either when both had it)."""
        ta, tb = self.terms(a), self.terms(b)
        pool = {**ta, **tb}

        def child() -> Genotype:
            k = rng.randint(self.min_terms, min(self.max_terms, len(pool)))
            chosen = rng.sample(sorted(pool, key=self._order.__getitem__), k)
            return self._genotype({f: rng.choice([t[f] for t in (ta, tb) if f in t]) for f in chosen})

        return child(), child()

    def size(self) -> int | None:
        return None  # continuous initial weights

    def seeds(self) -> list[Genotype]:
        return [self._genotype({self.dictionary[n]: w for n, w in s.items()}) for s in self.seed_terms]

    def describe(self) -> dict[str, Any]:
        low, high = self.weight_range
        return {"name": self.name, "kind": self.kind, "size": None,
                "primitives": [f"{k} = {v}" for k, v in self.dictionary.items()],
                "parameters": f"{self.min_terms}..{self.max_terms} terms, initial weights in [{low:g}, {high:g}]"
                              + (", per-token softmax gate" if self.kind == "moa" else ", trainable per layer")}


def la_formula(terms: list[tuple[str, float]]) -> str:
    """``alpha1[w1] * (g1) + alpha2[w2] * (g2) + ...``: one trainable weight per term."""
    text = " + ".join(f"alpha{k}[{w!r}] * ({formula})" for k, (formula, w) in enumerate(terms, 1))
    return to_string(parse(text))


def _load(path: str | Path, kind: str) -> MixtureSpace:
    doc = load_toml(path)
    check_keys(doc, "", ["name", "kind", "description", "min_terms", "max_terms", "weight_low",
                         "weight_high", "sigma", "seeds", "dictionary"], path)
    name = require(doc, "name", str, path)
    require(doc, "kind", str, path, allowed=[kind])
    optional(doc, "description", str, path, default="")
    table = require(doc, "dictionary", dict, path)
    dictionary: dict[str, str] = {}
    for key, text in table.items():
        if not isinstance(text, str):
            raise space_error(path, f"dictionary.{key}", "expected a formula string", "a formula in x")
        try:
            expr = parse(text)
        except ExpressionError as exc:
            raise space_error(path, f"dictionary.{key}", f"invalid formula: {exc}", "a formula in x") from None
        if expr.params():
            raise space_error(path, f"dictionary.{key}", "has trainable constants", "a fixed formula (the weights are trainable)")
        dictionary[key] = to_string(expr)
    if len(set(dictionary.values())) != len(dictionary) or len(dictionary) < 2:
        raise space_error(path, "dictionary", "needs at least two different formulas", "name = formula pairs")
    min_terms = optional(doc, "min_terms", int, path, default=2, minimum=1)
    max_terms = optional(doc, "max_terms", int, path, default=4, minimum=min_terms)
    if min_terms > len(dictionary):
        raise space_error(path, "min_terms", f"{min_terms} exceeds the dictionary's {len(dictionary)} entries",
                          f"1..{len(dictionary)}")
    low = optional(doc, "weight_low", float, path, default=0.1, minimum=1e-6)
    high = optional(doc, "weight_high", float, path, default=1.0, minimum=low)
    sigma = optional(doc, "sigma", float, path, default=0.3, minimum=0.0)
    seeds = optional(doc, "seeds", list, path, default=[], items=dict)
    for i, seed in enumerate(seeds):
        for key, weight in seed.items():
            if key not in dictionary:
                raise space_error(path, f"seeds[{i}].{key}", "not in the dictionary", list(dictionary))
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not low <= weight <= high:
                raise space_error(path, f"seeds[{i}].{key}", f"weight {weight!r}", f"a number in [{low:g}, {high:g}]")
        if not min_terms <= len(seed) <= max_terms:
            raise space_error(path, f"seeds[{i}]", f"{len(seed)} terms", f"{min_terms}..{max_terms}")
    return MixtureSpace(name, kind, dictionary, min_terms, max_terms, (low, high),
                        [{k: float(v) for k, v in s.items()} for s in seeds], sigma)


def load_la_space(path: str | Path) -> MixtureSpace:
    return _load(path, "la")


def load_moa_space(path: str | Path) -> MixtureSpace:
    return _load(path, "moa")


__all__ = ["MixtureSpace", "la_formula", "load_la_space", "load_moa_space"]
