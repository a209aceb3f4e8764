"""The EAFO family (Sun et al. 2024, REFERENCE §6): a base activation plus Gaussian-weighted
Hermite corrections,

    f(x) = base(x) + sum_k eps_k * He_k(x) * exp(-x^2 / 2),

with probabilists' Hermite polynomials He_1 = x, He_2 = x^2 - 1, He_3 = x^3 - 3x, ...
``relu`` with the single term k=1, eps_1 = 0.01 trainable, is CRReLU.

Genotype: ``{"base": "relu", "coeffs": [eps_1, ..., eps_K], "trainable": true}``. The
coefficients are the continuous search parameters (``continuous`` gives Optuna their ranges as
``eps1``..``epsK``; `from_params` builds a genotype from a dict of them). Trainable
coefficients become parameters ``eps1[value]``...; fixed ones are plain numbers, and a fixed zero
drops its term.

Entropy: `output_entropy` estimates the differential entropy of f(x) for x ~ N(0,1) two ways.
``jacobian`` is H(x) + E[log|f'(x)|], exact for an invertible f; it is -inf when f' vanishes on
a set of positive probability (ReLU's negative half: the output has a point mass), and it
overstates the entropy of a non-monotone f (folds merge probability). ``histogram`` is the
plug-in estimate from a histogram of f(x) (Freedman-Diaconis bins): always finite, but with a
point mass its value depends on the bin width. `candidate_info` reports both next to the base's;
with ``entropy_filter`` set, `sample` and `mutate` keep only candidates whose chosen estimate is
below the base's (REFERENCE §6)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from afsearch.candidate import Candidate
from afsearch.expr.parser import parse
from afsearch.expr.printers import evaluate_numpy, format_number, to_string
from afsearch.expr.tree import Expr
from afsearch.reference import REFERENCES, get_reference
from afsearch.spaces.base import Genotype, SearchSpace
from afsearch.spaces.toml_schema import check_keys, load_toml, optional, require, space_error

MAX_ORDER = 6
ESTIMATES = ("jacobian", "histogram")
TRAINABLE_MODES = ("yes", "no", "search")
GAUSSIAN_ENTROPY = 0.5 * math.log(2 * math.pi * math.e)
_ENTROPY_SAMPLES = 200_000
_TRIES = 200


def hermite_coefficients(k: int) -> list[int]:
    """Coefficients c_0..c_k of the probabilists' Hermite polynomial He_k (He_{n+1} = x He_n - n He_{n-1})."""
    prev, cur = [1], [0, 1]
    if k == 0:
        return prev
    for n in range(1, k):
        nxt = [0] + cur
        for i, c in enumerate(prev):
            nxt[i] -= n * c
        prev, cur = cur, nxt
    return cur


_POWERS = {1: "x", 2: "x^2", 3: "x^3", 4: "(x^2)^2", 5: "x * (x^2)^2", 6: "(x^3)^2"}


def hermite_text(k: int) -> str:
    """He_k as a formula, highest power first (powers written without `pow`, which guards |x|)."""
    terms = []
    for power, c in reversed(list(enumerate(hermite_coefficients(k)))):
        if c == 0:
            continue
        mono = _POWERS.get(power, "")
        body = mono if abs(c) == 1 and mono else (str(abs(c)) if not mono else f"{abs(c)} * {mono}")
        terms.append(("- " if c < 0 else "+ ") + body)
    text = " ".join(terms)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


def correction_text(k: int, coeff: float, trainable: bool) -> str:
    """The term eps_k * He_k(x) * exp(-x^2 / 2) as formula text."""
    name = f"eps{k}[{format_number(coeff)}]" if trainable else f"({format_number(coeff)})"
    he = hermite_text(k)
    he = he if k == 1 else f"({he})"
    return f"{name} * {he} * exp(-x^2 / 2)"


# -- entropy -------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _gaussian_samples() -> np.ndarray:
    return np.random.default_rng(12345).standard_normal(_ENTROPY_SAMPLES)


def output_entropy(expr: Expr | str) -> dict[str, float]:
    """Differential-entropy estimates (nats) of f(x), x ~ N(0,1), from 200k fixed samples:
    ``jacobian`` = H(x) + mean log|f'(x)| (central differences), ``histogram`` (plug-in),
    and ``flat_fraction``, the share of samples where |f'(x)| < 1e-12 (there ``jacobian`` is
    -inf)."""
    e = parse(expr) if isinstance(expr, str) else expr
    x = _gaussian_samples()
    h = 1e-4 * np.maximum(1.0, np.abs(x))
    y = evaluate_numpy(e, x)
    slope = (evaluate_numpy(e, x + h) - evaluate_numpy(e, x - h)) / (2 * h)
    flat = np.abs(slope) < 1e-12
    finite = np.isfinite(y) & np.isfinite(slope)
    if not finite.all():
        return {"jacobian": math.nan, "histogram": math.nan, "flat_fraction": float(flat.mean())}
    with np.errstate(divide="ignore"):
        jac = -math.inf if flat.any() else GAUSSIAN_ENTROPY + float(np.mean(np.log(np.abs(slope))))
    return {
        "jacobian": jac,
        "histogram": _histogram_entropy(y),
        "flat_fraction": float(flat.mean()),
    }


def _histogram_entropy(y: np.ndarray) -> float:
    lo, hi = np.quantile(y, [0.25, 0.75])
    width = 2 * (hi - lo) / len(y) ** (1 / 3)
    if not width > 0:  # more than half the mass in one point: use the spread of the rest
        width = max(float(np.ptp(y)) / 1000, 1e-12)
    bins = int(min(max(math.ceil(float(np.ptp(y)) / width), 1), 100_000))
    counts, edges = np.histogram(y, bins=bins)
    p = counts[counts > 0] / len(y)
    w = np.diff(edges)[counts > 0]
    return float(-np.sum(p * np.log(p / w)))


@dataclass
class EAFOSpace(SearchSpace):
    name: str
    bases: tuple[str, ...]
    max_order: int = 4
    coeff_range: tuple[float, float] = (-0.5, 0.5)
    trainable: str = "yes"  # "yes" | "no" | "search" (a genotype field the search sets)
    entropy_filter: bool = False
    entropy_estimate: str = "histogram"
    sigma: float = 0.1  # mutation step, relative to the coefficient range
    continuous: dict[str, tuple[float, float]] = field(init=False)

    choices: dict[str, list[Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.continuous = {f"eps{k}": self.coeff_range for k in range(1, self.max_order + 1)}
        self.choices = {"base": list(self.bases)}
        if self.trainable == "search":
            self.choices["trainable"] = [True, False]

    # -- genotype -> expression ----------------------------------------------------------------
    def validate(self, genotype: Genotype) -> tuple[str, list[float], bool]:
        where = f"genotype (space {self.name!r})"
        if not isinstance(genotype, dict) or set(genotype) != {"base", "coeffs", "trainable"}:
            raise space_error(
                where,
                "genotype",
                "expected an object with keys base, coeffs, trainable",
                "{'base': ..., 'coeffs': [...], 'trainable': bool}",
            )
        base, coeffs, trainable = genotype["base"], genotype["coeffs"], genotype["trainable"]
        if base not in self.bases:
            raise space_error(where, "base", f"unknown base {base!r}", self.bases)
        lo, hi = self.coeff_range
        if (
            not isinstance(coeffs, list)
            or len(coeffs) != self.max_order
            or not all(
                isinstance(c, int | float) and not isinstance(c, bool) and lo <= c <= hi
                for c in coeffs
            )
        ):
            raise space_error(
                where,
                "coeffs",
                "expected numbers within the range, one per order",
                f"{self.max_order} numbers in [{lo:g}, {hi:g}]",
            )
        allowed_trainable = {"yes": [True], "no": [False], "search": [True, False]}[self.trainable]
        if not isinstance(trainable, bool) or trainable not in allowed_trainable:
            raise space_error(
                where, "trainable", f"{trainable!r} is not allowed here", allowed_trainable
            )
        return base, [float(c) for c in coeffs], trainable

    def formula(self, genotype: Genotype) -> str:
        base, coeffs, trainable = self.validate(genotype)
        terms = [get_reference(base).formula]  # + binds loosest: no parentheses needed
        for k, c in enumerate(coeffs, start=1):
            if c != 0.0 or trainable:
                terms.append(correction_text(k, c, trainable))
        return " + ".join(terms)

    def to_expr(self, genotype: Genotype) -> Expr:
        return parse(self.formula(genotype))

    def to_candidate(self, genotype: Genotype) -> Candidate:
        return Candidate.activation(to_string(self.to_expr(genotype)))

    def from_params(self, params: dict[str, Any]) -> Genotype:
        """A genotype from Optuna-style values: ``eps1``..``epsK`` (missing ones are 0,
        values clipped to the range) and the `choices` ``base`` and ``trainable`` (defaults:
        the first base; trainable unless the space fixes coefficients)."""
        lo, hi = self.coeff_range
        return {
            "base": params.get("base", self.bases[0]),
            "coeffs": [
                min(max(float(params.get(f"eps{k}", 0.0)), lo), hi)
                for k in range(1, self.max_order + 1)
            ],
            "trainable": params.get("trainable", self.trainable != "no"),
        }

    def seeds(self) -> list[Genotype]:
        """CRReLU (relu with eps1 = 0.01) if relu is a base, then every base uncorrected."""
        first = [0.01] + [0.0] * (self.max_order - 1)
        trainable = self.trainable != "no"
        out = (
            [{"base": "relu", "coeffs": first, "trainable": trainable}]
            if "relu" in self.bases
            else []
        )
        out += [
            {"base": b, "coeffs": [0.0] * self.max_order, "trainable": trainable}
            for b in self.bases
        ]
        return [g for g in out if self._in_range(g)]

    def _in_range(self, genotype: Genotype) -> bool:
        lo, hi = self.coeff_range
        return all(lo <= c <= hi for c in genotype["coeffs"])

    # -- entropy -------------------------------------------------------------------------------
    def candidate_info(self, genotype: Genotype) -> dict[str, Any]:
        """The candidate's output-entropy estimates under N(0,1) input next to its base's."""
        base = self.validate(genotype)[0]
        mine = output_entropy(self.to_expr(genotype))
        ref = _base_entropy(base)
        return {
            "formula": to_string(self.to_expr(genotype)),
            "base": base,
            "entropy": mine,
            "base_entropy": ref,
            "entropy_decreases": bool(mine[self.entropy_estimate] < ref[self.entropy_estimate]),
            "estimate": self.entropy_estimate,
        }

    def _keep(self, genotype: Genotype) -> bool:
        return not self.entropy_filter or self.candidate_info(genotype)["entropy_decreases"]

    # -- sampling and variation ----------------------------------------------------------------
    def sample(self, rng: random.Random) -> Genotype:
        """Base uniform, coefficients uniform in range; with the entropy filter, redrawn until
        the entropy estimate goes down (the last draw is returned if none does in 200 tries)."""
        for _ in range(_TRIES):
            genotype = {
                "base": rng.choice(self.bases),
                "coeffs": [round(rng.uniform(*self.coeff_range), 6) for _ in range(self.max_order)],
                "trainable": self.trainable == "yes"
                or (self.trainable == "search" and rng.random() < 0.5),
            }
            if self._keep(genotype):
                break
        return genotype

    def mutate(self, genotype: Genotype, rng: random.Random) -> Genotype:
        """Gaussian step on one coefficient (clipped to range); or, 1 in 5 each where there is
        a choice, another base or the trainable flag flipped."""
        base, coeffs, trainable = self.validate(genotype)
        child = {"base": base, "coeffs": list(coeffs), "trainable": trainable}
        for _ in range(_TRIES):
            child = {"base": base, "coeffs": list(coeffs), "trainable": trainable}
            r = rng.random()
            if r < 0.2 and len(self.bases) > 1:
                child["base"] = rng.choice([b for b in self.bases if b != base])
            elif r < 0.4 and self.trainable == "search":
                child["trainable"] = not trainable
            else:
                lo, hi = self.coeff_range
                k = rng.randrange(self.max_order)
                step = rng.gauss(0.0, self.sigma * (hi - lo))
                child["coeffs"][k] = round(min(max(coeffs[k] + step, lo), hi), 6)
            if self._keep(child):
                break
        return child

    def crossover(self, a: Genotype, b: Genotype, rng: random.Random) -> tuple[Genotype, Genotype]:
        """Uniform crossover of coefficients; base and flag from either parent."""
        (ba, ca, ta), (bb, cb, tb) = self.validate(a), self.validate(b)
        swap = [rng.random() < 0.5 for _ in range(self.max_order)]
        c1 = [y if s else x for x, y, s in zip(ca, cb, swap, strict=True)]
        c2 = [x if s else y for x, y, s in zip(ca, cb, swap, strict=True)]
        if rng.random() < 0.5:
            ba, bb = bb, ba
        if rng.random() < 0.5:
            ta, tb = tb, ta
        return {"base": ba, "coeffs": c1, "trainable": ta}, {
            "base": bb,
            "coeffs": c2,
            "trainable": tb,
        }

    def size(self) -> int | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "eafo",
            "size": None,
            "primitives": [
                f"base: {', '.join(self.bases)}",
                *(f"He{k}(x)*exp(-x^2/2)" for k in range(1, self.max_order + 1)),
            ],
            "parameters": {
                k: f"[{lo:g}, {hi:g}]" + (", trainable" if self.trainable != "no" else "")
                for k, (lo, hi) in self.continuous.items()
            },
            "entropy_filter": self.entropy_filter,
        }


@lru_cache(maxsize=64)
def _base_entropy(base: str) -> dict[str, float]:
    return output_entropy(get_reference(base).formula)


def load_eafo_space(path: str | Path) -> EAFOSpace:
    """Read an EAFO space file (see `search_spaces/eafo.toml` for every key)."""
    doc = load_toml(path)
    check_keys(
        doc,
        "",
        ["name", "kind", "description", "bases", "max_order", "coefficients", "entropy"],
        path,
    )
    check_keys(doc, "coefficients", ["low", "high", "trainable", "sigma"], path)
    check_keys(doc, "entropy", ["filter", "estimate"], path)
    name = require(doc, "name", str, path)
    require(doc, "kind", str, path, allowed=["eafo"])
    optional(doc, "description", str, path, default="")
    usable = sorted(n for n, r in REFERENCES.items()
                    if r.kind == "activation" and r.ffn is None and "eps" not in parse(r.formula).params())
    bases = require(doc, "bases", list, path, items=str, allowed=usable)
    if not bases:
        raise space_error(path, "bases", "no bases given", usable)
    max_order = require(doc, "max_order", int, path, minimum=1)
    if max_order > MAX_ORDER:
        raise space_error(
            path, "max_order", f"{max_order} is above the maximum", f"integer 1..{MAX_ORDER}"
        )
    low = require(doc, "coefficients.low", float, path)
    high = require(doc, "coefficients.high", float, path)
    if not low < high:
        raise space_error(
            path, "coefficients.high", f"{high} is not above low = {low}", f"number > {low}"
        )
    trainable = optional(
        doc, "coefficients.trainable", str, path, default="yes", allowed=TRAINABLE_MODES
    )
    sigma = optional(doc, "coefficients.sigma", float, path, default=0.1, minimum=0.0)
    entropy_filter = optional(doc, "entropy.filter", bool, path, default=False)
    estimate = optional(doc, "entropy.estimate", str, path, default="histogram", allowed=ESTIMATES)
    return EAFOSpace(
        name=name,
        bases=tuple(dict.fromkeys(bases)),
        max_order=max_order,
        coeff_range=(low, high),
        trainable=trainable,
        entropy_filter=entropy_filter,
        entropy_estimate=estimate,
        sigma=sigma,
    )


__all__ = [
    "EAFOSpace",
    "correction_text",
    "hermite_coefficients",
    "hermite_text",
    "load_eafo_space",
    "output_entropy",
]
