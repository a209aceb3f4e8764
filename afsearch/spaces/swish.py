"""The Swish-paper search space (Ramachandran, Zoph & Le 2017): core units ``b(u1(.), u2(.))``
composed 1..N times.

Genotype: ``{"units": [[b, u1, u2], [b, u1, u2, src], ...]}`` with op *names* from the space
file. The first unit computes ``b(u1(x), u2(x))``; each further unit computes
``b(u1(prev), u2(src))`` where ``prev`` is the previous unit's output and ``src`` is ``"x"`` or
``"prev"``. Every use of an op containing ``beta`` gets its own trainable constant (init 1):
``beta`` when the function has only one, ``beta1``, ``beta2``, ... otherwise.

The space is finite: `enumerate` walks it (lazily; `units=1` for the one-unit space) and
`distinct` deduplicates by functional fingerprint. `find` locates a formula in the space:
exactly (by fingerprint against the enumeration) for one unit, and for more units by
decomposing the formula's tree along the composition rule and confirming by fingerprint, so it
never reports a false member but can miss one written in an unusual form."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afsearch.candidate import Candidate
from afsearch.expr.fingerprint import fingerprint
from afsearch.expr.parser import parse
from afsearch.expr.printers import to_string
from afsearch.expr.tree import PARAM, Expr
from afsearch.spaces.base import Genotype, SearchSpace
from afsearch.spaces.templates import Template, match, parse_template, rename_params, slot
from afsearch.spaces.toml_schema import check_keys, load_toml, optional, require, space_error

SOURCES = ("x", "prev")
#: the Swish paper's top eight functions (REFERENCE §1)
TOP_EIGHT = (
    "x * sigmoid(beta * x)",
    "max(x, sigmoid(x))",
    "cos(x) - x",
    "min(x, sin(x))",
    "atan(x)^2 - x",
    "max(x, tanh(x))",
    "sinc(x) + x",
    "x * asinh(x)^2",
)
#: proposed first where the space contains them: common references and the top eight
SEED_FORMULAS = ("relu(x)", "x * sigmoid(x)", *TOP_EIGHT)


@dataclass
class SwishSpace(SearchSpace):
    name: str
    formula_trees = True
    unary: dict[str, Template]
    binary: dict[str, Template]
    min_units: int = 1
    max_units: int = 3
    _index: dict[str, list[Any]] | None = field(default=None, repr=False, compare=False)
    _found: dict[tuple[str, int], list[list[str]] | None] = field(
        default_factory=dict, repr=False, compare=False
    )

    # -- genotype -> expression ----------------------------------------------------------------
    def to_expr(self, genotype: Genotype, *, any_length: bool = False) -> Expr:
        """The function of a genotype; `any_length` admits unit counts outside the limits
        (used to enumerate or search sub-chains)."""
        units = self.validate(genotype, any_length=any_length)
        counter = itertools.count(1)

        def apply(op: Template, *args: Expr) -> Expr:
            return op.fill(*args, beta=f"beta{next(counter)}") if op.uses_beta else op.fill(*args)

        x = Expr.var()
        prev = x
        for k, unit in enumerate(units):
            b, u1, u2 = unit[:3]
            second = x if k == 0 or unit[3] == "x" else prev
            left = apply(self.unary[u1], prev)
            right = apply(self.unary[u2], second)
            prev = apply(self.binary[b], left, right)
        used = list(prev.params())
        if len(used) == 1:
            prev = rename_params(prev, {used[0]: "beta"})
        return prev

    def to_candidate(self, genotype: Genotype) -> Candidate:
        return Candidate.activation(to_string(self.to_expr(genotype)))

    def validate(self, genotype: Genotype, *, any_length: bool = False) -> list[list[str]]:
        """The genotype's units; `SpaceError` if malformed or outside this space."""
        where = f"genotype (space {self.name!r})"
        if not isinstance(genotype, dict) or set(genotype) != {"units"}:
            raise space_error(
                where, "units", "expected an object with only the key 'units'", "{'units': [...]}"
            )
        units = genotype["units"]
        lo, hi = (1, None) if any_length else (self.min_units, self.max_units)
        if not isinstance(units, list) or len(units) < lo or (hi is not None and len(units) > hi):
            raise space_error(
                where,
                "units",
                "expected a list of units within the limits",
                f"{self.min_units}..{self.max_units} units",
            )
        for k, unit in enumerate(units):
            want = 3 if k == 0 else 4
            if not isinstance(unit, list) or len(unit) != want:
                form = (
                    "[binary, unary1, unary2]"
                    if k == 0
                    else "[binary, unary1, unary2, 'x' | 'prev']"
                )
                raise space_error(where, f"units[{k}]", "wrong shape", form)
            if unit[0] not in self.binary:
                raise space_error(
                    where, f"units[{k}][0]", f"unknown binary op {unit[0]!r}", list(self.binary)
                )
            for j in (1, 2):
                if unit[j] not in self.unary:
                    raise space_error(
                        where, f"units[{k}][{j}]", f"unknown unary op {unit[j]!r}", list(self.unary)
                    )
            if k > 0 and unit[3] not in SOURCES:
                raise space_error(where, f"units[{k}][3]", f"unknown source {unit[3]!r}", SOURCES)
        return units

    # -- sampling and variation ----------------------------------------------------------------
    def _random_unit(self, rng: random.Random, first: bool) -> list[str]:
        unit = [
            rng.choice(list(self.binary)),
            rng.choice(list(self.unary)),
            rng.choice(list(self.unary)),
        ]
        return unit if first else [*unit, rng.choice(SOURCES)]

    def sample(self, rng: random.Random) -> Genotype:
        n = rng.randint(self.min_units, self.max_units)
        return {"units": [self._random_unit(rng, k == 0) for k in range(n)]}

    def mutate(self, genotype: Genotype, rng: random.Random) -> Genotype:
        """Change one field of one unit to a different value; or (1 in 5 each, where the
        limits allow) append a random unit or drop the last one."""
        units = [list(u) for u in self.validate(genotype)]
        r = rng.random()
        if r < 0.2 and len(units) < self.max_units:
            return {"units": [*units, self._random_unit(rng, False)]}
        if r < 0.4 and len(units) > self.min_units:
            return {"units": units[:-1]}
        choices = {0: list(self.binary), 1: list(self.unary), 2: list(self.unary), 3: list(SOURCES)}
        fields = [(k, j) for k, u in enumerate(units) for j in range(len(u)) if len(choices[j]) > 1]
        if not fields:
            return {"units": units}  # a degenerate space with a single member per unit count
        k, j = rng.choice(fields)
        units[k][j] = rng.choice([v for v in choices[j] if v != units[k][j]])
        return {"units": units}

    def crossover(self, a: Genotype, b: Genotype, rng: random.Random) -> tuple[Genotype, Genotype]:
        """One-point crossover on the unit chains (a[:i] + b[j:] and b[:j] + a[i:], both within
        the unit limits); when only the trivial cut fits, the first units swap fields."""
        ua, ub = self.validate(a), self.validate(b)
        cuts = [
            (i, j)
            for i in range(1, len(ua) + 1)
            for j in range(1, len(ub) + 1)
            if (i, j) != (len(ua), len(ub))
            and self.min_units <= i + len(ub) - j <= self.max_units
            and self.min_units <= j + len(ua) - i <= self.max_units
        ]
        if cuts:
            i, j = rng.choice(cuts)
            return {"units": [list(u) for u in ua[:i] + ub[j:]]}, {
                "units": [list(u) for u in ub[:j] + ua[i:]]
            }
        ca, cb = [list(u) for u in ua], [list(u) for u in ub]
        for f in range(3):
            if rng.random() < 0.5:
                ca[0][f], cb[0][f] = cb[0][f], ca[0][f]
        return {"units": ca}, {"units": cb}

    # -- the finite space ----------------------------------------------------------------------
    def size(self, units: int | None = None) -> int:
        one = len(self.binary) * len(self.unary) ** 2
        each = one * len(SOURCES)
        counts = [units] if units is not None else range(self.min_units, self.max_units + 1)
        return sum(one * each ** (n - 1) for n in counts)

    def enumerate(self, units: int | None = None) -> Iterator[Genotype]:
        """Every genotype (lazily), by unit count; `units` restricts to one count."""
        counts = [units] if units is not None else range(self.min_units, self.max_units + 1)
        first = list(itertools.product(self.binary, self.unary, self.unary))
        later = list(itertools.product(self.binary, self.unary, self.unary, SOURCES))
        for n in counts:
            for combo in itertools.product(first, *([later] * (n - 1))):
                yield {"units": [list(u) for u in combo]}

    def smallest(self) -> list[Genotype]:
        """Every genotype of the fewest units the space allows (one, by default), one per
        function (`distinct`)."""
        return list(self.distinct(self.min_units).values())

    def distinct(self, units: int = 1) -> dict[str, Genotype]:
        """fingerprint -> the first genotype (in enumeration order) computing that function."""
        seen: dict[str, Genotype] = {}
        for genotype in self.enumerate(units):
            seen.setdefault(fingerprint(self.to_expr(genotype, any_length=True)), genotype)
        return seen

    # -- membership ----------------------------------------------------------------------------
    def find(self, formula: str | Expr) -> Genotype | None:
        """A genotype computing the same function as `formula` (same fingerprint), or None."""
        target = parse(formula) if isinstance(formula, str) else formula
        for n in range(self.min_units, self.max_units + 1):
            units = self._find(target, n)
            if units is not None:
                return {"units": [list(u) for u in units]}
        return None

    def contains(self, formula: str | Expr) -> bool:
        return self.find(formula) is not None

    def _find(self, target: Expr, n: int) -> list[list[str]] | None:
        fp = fingerprint(target)
        key = (fp, n)
        if key not in self._found:
            self._found[key] = self._search(target, fp, n)
        return self._found[key]

    def _search(self, target: Expr, fp: str, n: int) -> list[list[str]] | None:
        if n == 1:
            if self._index is None:
                self._index = {f: g["units"] for f, g in self.distinct(1).items()}
            return self._index.get(fp)
        x_fp = fingerprint(Expr.var())
        for b, btemp in self.binary.items():
            slots: dict[str, Expr] = {}
            if not match(btemp.tree, target, slots) or slot(0) not in slots or slot(1) not in slots:
                continue
            for first, second in (
                (slots[slot(0)], slots[slot(1)]),
                (slots[slot(1)], slots[slot(0)]),
            ):
                for u1, t1 in self.unary.items():
                    s1: dict[str, Expr] = {}
                    if not match(t1.tree, first, s1) or slot(0) not in s1:
                        continue
                    prev = self._find(s1[slot(0)], n - 1)
                    if prev is None:
                        continue
                    prev_fp = fingerprint(s1[slot(0)])
                    for u2, t2 in self.unary.items():
                        s2: dict[str, Expr] = {}
                        if not match(t2.tree, second, s2):
                            continue
                        arg = s2.get(slot(0))
                        srcs = (
                            ["x"]
                            if arg is None
                            else [
                                s
                                for s, f in (("x", x_fp), ("prev", prev_fp))
                                if fingerprint(arg) == f
                            ]
                        )
                        for src in srcs:
                            units = [*prev, [b, u1, u2, src]]
                            if fingerprint(self.to_expr({"units": units}, any_length=True)) == fp:
                                return units
        return None

    # -- categorical description (Optuna), one-unit spaces only -------------------------------
    @property
    def choices(self) -> dict[str, list[Any]]:  # type: ignore[override]
        """For a one-unit space: the binary op and both unary ops as categoricals."""
        if self.max_units != 1:
            return {}
        return {"binary": list(self.binary), "u1": list(self.unary), "u2": list(self.unary)}

    def from_params(self, params: dict[str, Any]) -> Genotype:
        if self.max_units != 1:
            raise NotImplementedError(f"space {self.name!r} has more than one unit; no categorical form")
        return {"units": [[params["binary"], params["u1"], params["u2"]]]}

    def to_params(self, genotype: Genotype) -> dict[str, Any]:
        b, u1, u2 = self.validate(genotype)[0][:3]
        return {"binary": b, "u1": u1, "u2": u2}

    def seeds(self) -> list[Genotype]:
        """The members among `SEED_FORMULAS` (ReLU, SiLU, Swish, the paper's top eight)."""
        found = (self.find(f) for f in SEED_FORMULAS)
        unique = {json.dumps(g): g for g in found if g is not None}
        return list(unique.values())

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "swish",
            "size": self.size(),
            "units": f"{self.min_units}..{self.max_units}",
            "primitives": {
                "unary": {k: t.text for k, t in self.unary.items()},
                "binary": {k: t.text for k, t in self.binary.items()},
            },
            "parameters": {"beta": "trainable, init 1 (one per op use)"},
        }


def load_swish_space(path: str | Path) -> SwishSpace:
    """Read a Swish-style space file (see `search_spaces/swish.toml` for every key)."""
    doc = load_toml(path)
    check_keys(doc, "", ["name", "kind", "description", "limits", "unary", "binary"], path)
    check_keys(doc, "limits", ["min_units", "max_units"], path)
    name = require(doc, "name", str, path)
    require(doc, "kind", str, path, allowed=["swish"])
    optional(doc, "description", str, path, default="")
    min_units = optional(doc, "limits.min_units", int, path, default=1, minimum=1)
    max_units = require(doc, "limits.max_units", int, path, minimum=min_units)
    if max_units > 8:
        raise space_error(
            path, "limits.max_units", f"{max_units} is above the maximum", "integer 1..8"
        )
    unary = _ops(doc, "unary", ("u",), path)
    binary = _ops(doc, "binary", ("a", "b"), path)
    return SwishSpace(
        name=name, unary=unary, binary=binary, min_units=min_units, max_units=max_units
    )


def _ops(
    doc: dict[str, Any], key: str, placeholders: tuple[str, ...], path: str | Path
) -> dict[str, Template]:
    table = require(doc, key, dict, path)
    if not table:
        raise space_error(
            path, key, "no ops given", f"a table of name = formula in {', '.join(placeholders)}"
        )
    ops = {}
    for op_name in table:
        text = require(doc, f"{key}.{op_name}", str, path)
        ops[op_name] = parse_template(text, placeholders, path, f"{key}.{op_name}")
        if key == "binary":
            used = {n.name for n in ops[op_name].tree.walk() if n.op == PARAM}
            if not {slot(0), slot(1)} <= used:
                raise space_error(
                    path,
                    f"{key}.{op_name}",
                    f"wrong arity: {text!r} must use both a and b",
                    "a formula in a and b, e.g. 'a + b'",
                )
    return ops


__all__ = ["SEED_FORMULAS", "TOP_EIGHT", "SwishSpace", "load_swish_space"]
