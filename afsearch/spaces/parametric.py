"""Parametric families for continuous tuning (Optuna): one formula with named parameters, each
with a range, e.g. Swish ``x * sigmoid(beta * x)`` with beta in [0.1, 5].

Genotype: ``{"beta": 1.7}``, one number per parameter, each inside its range. ``continuous``
gives Optuna the ranges (and ``log_scale`` the ones to sample on a log scale); `from_params`
accepts a dict of suggested values. With ``trainable = true`` the values become the initial
values of trainable parameters (``beta[1.7]``); with ``false`` they are fixed numbers.
Trainable constants of the formula that are not listed as parameters stay trainable at their
written initial values."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afsearch.candidate import Candidate
from afsearch.errors import ExpressionError
from afsearch.expr.parser import parse, substitute_params
from afsearch.expr.printers import to_string
from afsearch.expr.tree import PARAM, Expr
from afsearch.reference import REFERENCES, get_reference
from afsearch.spaces.base import Genotype, SearchSpace
from afsearch.spaces.toml_schema import check_keys, load_toml, optional, require, space_error


@dataclass
class ParametricSpace(SearchSpace):
    name: str
    formula: str
    ranges: dict[str, tuple[float, float]]
    trainable: bool = True
    log_scale: frozenset[str] = frozenset()
    sigma: float = 0.1  # mutation step, relative to each range (in log space for log-scale ones)
    digits: int = 6
    continuous: dict[str, tuple[float, float]] = field(init=False)
    expr: Expr = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.continuous = dict(self.ranges)
        self.expr = parse(self.formula)

    def validate(self, genotype: Genotype) -> dict[str, float]:
        where = f"genotype (space {self.name!r})"
        if not isinstance(genotype, dict) or set(genotype) != set(self.ranges):
            raise space_error(
                where, "genotype", "expected one value per parameter", list(self.ranges)
            )
        for key, (lo, hi) in self.ranges.items():
            v = genotype[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
                raise space_error(
                    where, key, f"{v!r} is outside the range", f"number in [{lo:g}, {hi:g}]"
                )
        return {k: float(genotype[k]) for k in self.ranges}

    def to_expr(self, genotype: Genotype) -> Expr:
        values = self.validate(genotype)
        if self.trainable:
            return substitute_params(self.expr, values)
        return _fix_params(self.expr, values)

    def to_candidate(self, genotype: Genotype) -> Candidate:
        return Candidate.activation(to_string(self.to_expr(genotype)))

    def from_params(self, params: dict[str, float]) -> Genotype:
        """A genotype from Optuna-style suggested values, clipped to the ranges; a missing
        parameter takes the formula's written initial value."""
        init = self.expr.params()
        values = {
            k: params.get(k, init.get(k, (lo + hi) / 2)) for k, (lo, hi) in self.ranges.items()
        }
        return {k: float(min(max(values[k], lo), hi)) for k, (lo, hi) in self.ranges.items()}

    def seeds(self) -> list[Genotype]:
        """The formula's written initial values (e.g. PAU's ReLU fit, beta = 1 for Swish)."""
        return [self.default()]

    def default(self) -> Genotype:
        """The formula's written initial values (clipped to the ranges)."""
        return self.from_params({})

    def _to_unit(self, key: str, v: float) -> float:
        lo, hi = self.ranges[key]
        if key in self.log_scale:
            return (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return (v - lo) / (hi - lo)

    def _from_unit(self, key: str, u: float) -> float:
        lo, hi = self.ranges[key]
        u = min(max(u, 0.0), 1.0)
        v = (
            math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
            if key in self.log_scale
            else lo + u * (hi - lo)
        )
        return min(max(round(v, self.digits), lo), hi)

    def sample(self, rng: random.Random) -> Genotype:
        """Uniform in each range (log-uniform for log-scale parameters)."""
        return {k: self._from_unit(k, rng.random()) for k in self.ranges}

    def mutate(self, genotype: Genotype, rng: random.Random) -> Genotype:
        """Gaussian step on every parameter, clipped to its range."""
        values = self.validate(genotype)
        return {
            k: self._from_unit(k, self._to_unit(k, v) + rng.gauss(0.0, self.sigma))
            for k, v in values.items()
        }

    def crossover(self, a: Genotype, b: Genotype, rng: random.Random) -> tuple[Genotype, Genotype]:
        """Uniform crossover: each parameter from either parent."""
        va, vb = self.validate(a), self.validate(b)
        swap = {k: rng.random() < 0.5 for k in self.ranges}
        return (
            {k: vb[k] if swap[k] else va[k] for k in self.ranges},
            {k: va[k] if swap[k] else vb[k] for k in self.ranges},
        )

    def size(self) -> int | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "parametric",
            "size": None,
            "formula": self.formula,
            "primitives": sorted({n.op for n in self.expr.walk() if not n.is_leaf}),
            "parameters": {
                k: f"[{lo:g}, {hi:g}]"
                + (" log" if k in self.log_scale else "")
                + (", trainable" if self.trainable else "")
                for k, (lo, hi) in self.ranges.items()
            },
        }


def _fix_params(e: Expr, values: dict[str, float]) -> Expr:
    if e.op == PARAM and e.name in values:
        return Expr.const(values[e.name])  # type: ignore[index]
    if e.is_leaf:
        return e
    return Expr(e.op, tuple(_fix_params(a, values) for a in e.args))


def load_parametric_space(path: str | Path) -> ParametricSpace:
    """Read a parametric-family file (see `search_spaces/swish_beta.toml` for every key)."""
    doc = load_toml(path)
    check_keys(
        doc,
        "",
        ["name", "kind", "description", "formula", "reference", "trainable", "sigma", "parameters"],
        path,
    )
    name = require(doc, "name", str, path)
    require(doc, "kind", str, path, allowed=["parametric"])
    optional(doc, "description", str, path, default="")
    if ("formula" in doc) == ("reference" in doc):
        raise space_error(
            path,
            "formula",
            "give exactly one of formula and reference",
            "formula = '...' or reference = 'NAME'",
        )
    if "formula" in doc:
        formula = require(doc, "formula", str, path)
        try:
            expr = parse(formula)
        except ExpressionError as exc:
            raise space_error(
                path,
                "formula",
                f"invalid formula: {exc}",
                "a formula in x with named trainable constants",
            ) from None
    else:
        ref = require(doc, "reference", str, path, allowed=sorted(REFERENCES))
        formula = get_reference(ref).formula
        expr = parse(formula)
    trainable = optional(doc, "trainable", bool, path, default=True)
    sigma = optional(doc, "sigma", float, path, default=0.1, minimum=0.0)
    table = require(doc, "parameters", dict, path)
    names = list(expr.params())
    if not table:
        raise space_error(
            path, "parameters", "no parameters given", names or "trainable constants of the formula"
        )
    ranges: dict[str, tuple[float, float]] = {}
    log_scale = set()
    for key in table:
        if key not in names:
            raise space_error(
                path, f"parameters.{key}", "not a trainable constant of the formula", names
            )
        check_keys(doc, f"parameters.{key}", ["low", "high", "log"], path)
        low = require(doc, f"parameters.{key}.low", float, path)
        high = require(doc, f"parameters.{key}.high", float, path)
        if not low < high:
            raise space_error(
                path,
                f"parameters.{key}.high",
                f"{high} is not above low = {low}",
                f"number > {low}",
            )
        if optional(doc, f"parameters.{key}.log", bool, path, default=False):
            if low <= 0:
                raise space_error(
                    path, f"parameters.{key}.low", f"{low} with log = true", "number > 0"
                )
            log_scale.add(key)
        ranges[key] = (low, high)
    return ParametricSpace(
        name=name,
        formula=formula,
        ranges=ranges,
        trainable=trainable,
        log_scale=frozenset(log_scale),
        sigma=sigma,
    )


__all__ = ["ParametricSpace", "load_parametric_space"]
