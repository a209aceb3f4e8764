"""Free-form expression trees evolved with DEAP genetic programming.

The primitive set is built from our registry (ops listed in the space file), with the
argument renamed to ``x``, named trainable-constant terminals (``beta`` ...; every occurrence
of a name is the same parameter) and one ephemeral constant ``const`` drawn uniformly from a
range and rounded (a `functools.partial` of a module-level function, so it pickles).

Genotype: the tree in prefix order as a flat JSON list, e.g. ``["mul", "x", "sigmoid", "mul",
"beta", "x"]``: op names, ``"x"``, trainable-constant names, and numbers for constants. It is
rebuilt into a DEAP tree by lookup in the primitive set and converted to our `Expr` by walking
the prefix list; nothing is ever evaluated (DEAP's own ``PrimitiveTree.from_string`` calls
``eval`` on unknown tokens, so it is not used).

Variation: uniform-subtree, node-replacement, shrink, insert, ephemeral-redraw and Gaussian
constant-perturbation mutation, and one-point crossover, every one wrapped in
`deap.gp.staticLimit` on height and on size; a child over a limit is replaced by its parent.
Heights are DEAP's: a lone terminal has height 0 (our `Expr.depth` is height + 1).

Reproducibility: DEAP draws from Python's global `random` module. `sample`, `mutate` and
`crossover` reseed the global generator from the `rng` argument for the duration of the call
and restore its previous state afterwards, so a run driven by one master `random.Random` is
reproducible. This is not thread-safe: do not call them concurrently from threads of one
process (processes are fine).
"""

from __future__ import annotations

import math
import operator
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from deap import base, creator, gp

from afsearch.candidate import Candidate
from afsearch.errors import SpaceError
from afsearch.expr.fingerprint import probe_points
from afsearch.expr.parser import is_parameter_name, parse
from afsearch.expr.primitives import PRIMITIVES
from afsearch.expr.printers import to_string
from afsearch.expr.tree import CONST, MAX_DEPTH, MAX_SIZE, PARAM, Expr, X
from afsearch.reference import get_reference
from afsearch.rng import seeded_global_random
from afsearch.spaces.base import Genotype, SearchSpace
from afsearch.spaces.toml_schema import check_keys, load_toml, optional, require, space_error

# DEAP creator classes: created once, at import, never inside functions.
if not hasattr(creator, "AfsFitnessMax"):
    creator.create("AfsFitnessMax", base.Fitness, weights=(1.0,))
if not hasattr(creator, "AfsIndividual"):
    creator.create("AfsIndividual", gp.PrimitiveTree, fitness=creator.AfsFitnessMax)

#: proposed first where the space can express them (REFERENCE §7 found cos(x) * x)
SEED_REFERENCES = ("relu", "silu", "swish", "gelu", "elu", "tanh")
SEED_FORMULAS = ("cos(x) * x",)
MUTATIONS = ("uniform", "node_replacement", "shrink", "insert", "ephemeral", "perturb")
CONSTANT = "const"  # name of the ephemeral-constant terminal in the primitive set
_TRIES = 100
#: `GPSpace.smallest` enumerates trees of up to this many nodes (over the default ops about
#: 21,000 functions, 17,000 shapes up to an affine map; 6 nodes would be ten times as many)
SMALLEST_NODES = 5


def _symbolic(name: str, *args: Any) -> Any:
    """Stands in for a primitive's function in the DEAP set; trees are never compiled by DEAP."""
    raise TypeError(f"GP primitive {name!r} is symbolic; compile the candidate's formula instead")


def _uniform_constant(low: float, high: float, digits: int) -> float:
    return round(random.uniform(low, high), digits)


def _significant(value: float, digits: int) -> float:
    """`value` rounded to `digits` significant digits."""
    return float(f"{value:.{max(1, digits)}g}")




@dataclass
class GPSpace(SearchSpace):
    name: str
    formula_trees = True
    ops: tuple[str, ...]
    trainable: dict[str, float]  # terminal name -> initial value
    const_range: tuple[float, float] | None = (-2.0, 2.0)
    const_digits: int = 3
    max_height: int = 6
    max_size: int = 40
    init_height: tuple[int, int] = (1, 3)
    mutations: tuple[str, ...] = MUTATIONS
    perturb_sigma: float = 0.1
    #: "additive": Gaussian noise of sigma `perturb_sigma` * (high - low), rounded to `const_digits`
    #: decimals and clipped to the range; "multiplicative": the constant times exp(N(0,
    #: `perturb_sigma`)) (an additive step where |c| < 0.01), rounded to `const_digits`
    #: significant digits, within +-1000
    perturb: str = "additive"
    #: replace constant sub-expressions of a child (``exp(sigmoid(0.241))``) by their value
    fold_constants: bool = False
    pset: gp.PrimitiveSet = field(init=False, repr=False)
    _mutators: dict[str, Callable[..., list[Any]]] = field(init=False, repr=False)
    _crossover: Callable[..., list[Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pset = gp.PrimitiveSet("MAIN", 1)
        pset.renameArguments(ARG0="x")
        for op in self.ops:
            pset.addPrimitive(partial(_symbolic, op), PRIMITIVES[op].arity, name=op)
        for term, init in self.trainable.items():
            pset.addTerminal(init, name=term)
        if self.const_range is not None:
            low, high = self.const_range
            pset.addEphemeralConstant(
                CONSTANT, partial(_uniform_constant, low, high, self.const_digits)
            )
        self.pset = pset
        subtree = partial(gp.genGrow, min_=0, max_=2)
        raw: dict[str, Callable[..., Any]] = {
            "uniform": partial(gp.mutUniform, expr=subtree, pset=pset),
            "node_replacement": partial(gp.mutNodeReplacement, pset=pset),
            "shrink": gp.mutShrink,
            "insert": partial(gp.mutInsert, pset=pset),
            "ephemeral": partial(gp.mutEphemeral, mode="one"),
            "perturb": self._perturb,
        }
        self._mutators = {name: self._limited(raw[name]) for name in self.mutations}
        self._crossover = self._limited(gp.cxOnePoint)

    def _limited(self, op: Callable[..., Any]) -> Callable[..., list[Any]]:
        # individuals are passed positionally and everything else by keyword: staticLimit
        # copies the positional arguments as the parents to fall back on
        op = gp.staticLimit(key=operator.attrgetter("height"), max_value=self.max_height)(op)
        return gp.staticLimit(key=len, max_value=self.max_size)(op)

    def _perturb(self, individual: Any) -> tuple[Any]:
        """Gaussian perturbation of one constant (sigma relative to the constant range),
        rounded and clipped to the range."""
        consts = [
            i for i, node in enumerate(individual) if isinstance(type(node), gp.MetaEphemeral)
        ]
        if consts and self.const_range is not None:
            i = random.choice(consts)
            low, high = self.const_range
            value = individual[i].value
            if self.perturb == "multiplicative" and abs(value) >= 0.01:
                # a folded constant may lie outside the range: steps keep it within 1000
                value = _significant(value * math.exp(random.gauss(0.0, self.perturb_sigma)), self.const_digits)
                value = min(max(value, -1e3), 1e3)
            else:
                value = min(max(round(value + random.gauss(0.0, self.perturb_sigma * (high - low)),
                                      self.const_digits), low), high)
            individual[i] = self._constant(value)
        return (individual,)

    def _constant(self, value: float) -> Any:
        cls = self.pset.mapping[CONSTANT]
        node = cls.__new__(cls)  # not cls(): that would draw a fresh random value
        node.value = float(value)
        return node

    # -- genotype <-> tree <-> expression --------------------------------------------------------
    def to_tree(self, genotype: Genotype) -> Any:
        """The DEAP individual for a genotype; `SpaceError` if malformed or over the limits."""
        where = f"genotype (space {self.name!r})"
        if not isinstance(genotype, list) or not genotype:
            raise space_error(
                where,
                "prefix",
                "expected a non-empty list of tokens",
                "op names, 'x', trainable names, numbers",
            )
        nodes = []
        open_slots = 1
        for i, token in enumerate(genotype):
            if open_slots == 0:
                raise space_error(
                    where,
                    f"prefix[{i}]",
                    "tokens after a complete tree",
                    "a single tree in prefix order",
                )
            if isinstance(token, bool) or not isinstance(token, str | int | float):
                raise space_error(
                    where, f"prefix[{i}]", f"unexpected token {token!r}", "strings and numbers"
                )
            if isinstance(token, str):
                node = self.pset.mapping.get(token)
                if node is None or token == CONSTANT:
                    allowed = [*self.ops, "x", *self.trainable]
                    raise space_error(where, f"prefix[{i}]", f"unknown token {token!r}", allowed)
            else:
                if self.const_range is None:
                    raise space_error(
                        where,
                        f"prefix[{i}]",
                        "this space has no constants",
                        "op names, 'x', trainable names",
                    )
                node = self._constant(token)
            nodes.append(node)
            open_slots += node.arity - 1
        if open_slots != 0:
            raise space_error(
                where,
                "prefix",
                "incomplete tree (an op lacks arguments)",
                "a complete tree in prefix order",
            )
        tree = creator.AfsIndividual(nodes)
        if tree.height > self.max_height or len(tree) > self.max_size:
            raise space_error(
                where,
                "prefix",
                f"tree of height {tree.height} and size {len(tree)} is over the limits",
                f"height <= {self.max_height}, size <= {self.max_size}",
            )
        return tree

    @staticmethod
    def from_tree(tree: Any) -> Genotype:
        # a renamed argument keeps its old `name` ("ARG0"); its `value` is the new one ("x")
        return [
            node.name
            if isinstance(node, gp.Primitive)
            else float(node.value)
            if isinstance(type(node), gp.MetaEphemeral)
            else node.value
            for node in tree
        ]

    def to_expr(self, genotype: Genotype) -> Expr:
        tree = self.to_tree(genotype)
        stack: list[Expr] = []
        for node, token in zip(reversed(tree), reversed(genotype), strict=True):
            if isinstance(type(node), gp.MetaEphemeral):
                stack.append(Expr.const(node.value))
            elif token == "x":
                stack.append(Expr.var())
            elif token in self.trainable:
                stack.append(Expr.param(token, self.trainable[token]))
            else:
                args = [stack.pop() for _ in range(node.arity)]
                stack.append(Expr.call(token, *args))
        return stack.pop()

    def to_candidate(self, genotype: Genotype) -> Candidate:
        return Candidate.activation(to_string(self.to_expr(genotype)))

    def from_expr(self, expr: Expr | str) -> Genotype | None:
        """The genotype of a formula, or None when it uses an op, trainable constant or
        constant this space lacks, or exceeds its limits."""
        e = parse(expr) if isinstance(expr, str) else expr
        genotype: list[Any] = []
        for node in e.walk():
            if node.op == X:
                genotype.append("x")
            elif node.op == CONST and self.const_range is not None:
                genotype.append(float(node.value))  # type: ignore[arg-type]
            elif node.op == PARAM and node.name in self.trainable:
                genotype.append(node.name)
            elif node.op in self.ops:
                genotype.append(node.op)
            else:
                return None
        try:
            self.to_tree(genotype)
        except SpaceError:
            return None
        return genotype

    def smallest(self, max_nodes: int = SMALLEST_NODES) -> list[Genotype]:
        """Every tree of at most `max_nodes` nodes over x and the trainable constants that uses
        x, one per function: built bottom-up by size, a tree whose outputs on the probe points
        equal (in float32) those of a tree found before is dropped with everything that would
        be built on it, as are trees over the height limit or with a non-finite output. No
        random constants: the search's constant mutations tune those."""
        points = probe_points()
        # (prefix tokens, outputs, height, uses x) of every kept tree, by node count
        by_size: list[list[tuple[list[Any], np.ndarray, int, bool]]] = [[] for _ in range(max_nodes + 1)]
        seen: set[bytes] = set()

        def keep(tokens: list[Any], values: np.ndarray, height: int, uses_x: bool) -> None:
            values = np.broadcast_to(values, points.shape)
            if height > self.max_height or len(tokens) > self.max_size or not np.all(np.isfinite(values)):
                return
            key = values.astype(np.float32).tobytes()
            if key not in seen:
                seen.add(key)
                by_size[len(tokens)].append((tokens, values, height, uses_x))

        keep(["x"], points, 0, True)
        for name, init in self.trainable.items():
            keep([name], np.full_like(points, init), 0, False)
        unary = [op for op in self.ops if PRIMITIVES[op].arity == 1]
        binary = [op for op in self.ops if PRIMITIVES[op].arity == 2]
        with np.errstate(all="ignore"):
            for size in range(2, max_nodes + 1):
                for tokens, values, height, uses_x in by_size[size - 1]:
                    if uses_x:  # a constant sub-tree is only ever a lone trainable constant
                        for op in unary:
                            keep([op, *tokens], PRIMITIVES[op].numpy(values), height + 1, True)
                for left in range(1, size - 1):
                    for a in by_size[left]:
                        for b in by_size[size - 1 - left]:
                            if a[3] or b[3]:
                                for op in binary:
                                    keep([op, *a[0], *b[0]], PRIMITIVES[op].numpy(a[1], b[1]),
                                         max(a[2], b[2]) + 1, True)
        return [tokens for level in by_size for tokens, _, _, uses_x in level if uses_x and len(tokens) > 1]

    def seeds(self) -> list[Genotype]:
        formulas = [get_reference(n).formula for n in SEED_REFERENCES] + list(SEED_FORMULAS)
        return [g for g in map(self.from_expr, formulas) if g is not None]

    # -- sampling and variation ----------------------------------------------------------------
    def sample(self, rng: random.Random) -> Genotype:
        """Ramped half-and-half within the initial height range, redrawn until the tree uses x
        and fits the size limit."""
        low, high = self.init_height
        with seeded_global_random(rng):
            tree = None
            for _ in range(_TRIES):
                tree = creator.AfsIndividual(gp.genHalfAndHalf(self.pset, min_=low, max_=high))
                if len(tree) <= self.max_size and "x" in self.from_tree(tree):
                    break
        genotype = self.from_tree(tree)
        self.to_tree(genotype)  # assert the limits
        return genotype

    def mutate(self, genotype: Genotype, rng: random.Random) -> Genotype:
        """One mutation drawn uniformly from the space's list, drawn again (up to 100 times)
        while the child equals the parent: a mutation that does not apply (constant
        perturbation on a tree without constants, shrinking a tree without a subtree to
        shrink to) or a child over the limits (replaced by its parent) would otherwise hand the
        search a copy of the parent, which costs no training but takes a place in the
        population. A third of single draws are such copies in the gp space."""
        child = genotype
        with seeded_global_random(rng):
            for _ in range(_TRIES):
                name = random.choice(self.mutations)
                (tree,) = self._mutators[name](self.to_tree(genotype))
                child = self._checked(tree, genotype)
                if child != genotype:
                    break
        return child

    def crossover(self, a: Genotype, b: Genotype, rng: random.Random) -> tuple[Genotype, Genotype]:
        ta, tb = self.to_tree(a), self.to_tree(b)
        with seeded_global_random(rng):
            ca, cb = self._crossover(ta, tb)
        return self._checked(ca, a), self._checked(cb, b)

    def _checked(self, child: Any, parent: Genotype) -> Genotype:
        if child.height > self.max_height or len(child) > self.max_size:  # staticLimit prevents it
            return list(parent)
        genotype = self.from_tree(child)
        return self._folded(genotype) if self.fold_constants else genotype

    def _folded(self, genotype: Genotype) -> Genotype:
        """`genotype` with every constant sub-expression replaced by its value (rounded to 6
        significant digits); as it is where a value is not finite or has no constant in this
        space."""
        from afsearch.expr.simplify import fold

        if self.const_range is None or not any(isinstance(t, float) for t in genotype):
            return genotype
        folded = fold(self.to_expr(genotype))
        tokens: list[Any] = []
        for node in folded.walk():
            if node.op == X:
                tokens.append("x")
            elif node.op == CONST:
                tokens.append(_significant(float(node.value), 6))  # type: ignore[arg-type]
            elif node.op == PARAM:
                tokens.append(node.name)
            else:
                tokens.append(node.op)
        return tokens

    def size(self) -> int | None:
        return None

    def describe(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            name: f"trainable, init {init:g}" for name, init in self.trainable.items()
        }
        if self.const_range is not None:
            params[CONSTANT] = (
                f"ephemeral constant in [{self.const_range[0]:g}, {self.const_range[1]:g}]"
            )
        return {
            "name": self.name,
            "kind": "gp",
            "size": None,
            "limits": {"max_height": self.max_height, "max_size": self.max_size},
            "primitives": list(self.ops),
            "parameters": params,
            "mutations": list(self.mutations),
        }


def load_gp_space(path: str | Path) -> GPSpace:
    """Read a GP space file (see `search_spaces/gp.toml` for every key)."""
    doc = load_toml(path)
    check_keys(
        doc,
        "",
        ["name", "kind", "description", "limits", "primitives", "terminals", "variation"],
        path,
    )
    check_keys(
        doc, "limits", ["max_height", "max_size", "init_min_height", "init_max_height"], path
    )
    check_keys(doc, "primitives", ["ops"], path)
    check_keys(doc, "terminals", ["trainable", "constants"], path)
    check_keys(doc, "terminals.constants", ["low", "high", "digits"], path)
    check_keys(doc, "variation", ["mutations", "perturb_sigma", "perturb", "fold_constants"], path)
    name = require(doc, "name", str, path)
    require(doc, "kind", str, path, allowed=["gp"])
    optional(doc, "description", str, path, default="")
    max_height = require(doc, "limits.max_height", int, path, minimum=1)
    max_size = require(doc, "limits.max_size", int, path, minimum=3)
    if max_height > MAX_DEPTH - 1:
        raise space_error(
            path,
            "limits.max_height",
            f"{max_height} is above the maximum",
            f"integer 1..{MAX_DEPTH - 1}",
        )
    if max_size > MAX_SIZE:
        raise space_error(
            path, "limits.max_size", f"{max_size} is above the maximum", f"integer 3..{MAX_SIZE}"
        )
    init_min = optional(doc, "limits.init_min_height", int, path, default=1, minimum=0)
    init_max = optional(
        doc, "limits.init_max_height", int, path, default=min(3, max_height), minimum=init_min
    )
    if init_max > max_height:
        raise space_error(
            path,
            "limits.init_max_height",
            f"{init_max} is above limits.max_height",
            f"integer {init_min}..{max_height}",
        )
    ops = require(doc, "primitives.ops", list, path, items=str, allowed=sorted(PRIMITIVES))
    if not ops:
        raise space_error(path, "primitives.ops", "no ops given", sorted(PRIMITIVES))
    trainable_doc = optional(doc, "terminals.trainable", dict, path, default={})
    trainable = {}
    for term in trainable_doc:
        if not is_parameter_name(term):
            raise space_error(
                path,
                f"terminals.trainable.{term}",
                "not a trainable-constant name",
                "alpha, beta, ... omega, eps, lam (optionally with digits or _suffix)",
            )
        trainable[term] = require(doc, f"terminals.trainable.{term}", float, path)
    const_range = None
    digits = 3
    if "constants" in doc.get("terminals", {}):
        low = require(doc, "terminals.constants.low", float, path)
        high = require(doc, "terminals.constants.high", float, path)
        if not low < high:
            raise space_error(
                path,
                "terminals.constants.high",
                f"{high} is not above low = {low}",
                f"number > {low}",
            )
        const_range = (low, high)
        digits = optional(doc, "terminals.constants.digits", int, path, default=3, minimum=0)
    mutations = optional(
        doc,
        "variation.mutations",
        list,
        path,
        default=list(MUTATIONS),
        items=str,
        allowed=MUTATIONS,
    )
    if not mutations:
        raise space_error(path, "variation.mutations", "no mutations given", MUTATIONS)
    sigma = optional(doc, "variation.perturb_sigma", float, path, default=0.1, minimum=0.0)
    perturb = optional(doc, "variation.perturb", str, path, default="additive",
                       allowed=["additive", "multiplicative"])
    fold_constants = optional(doc, "variation.fold_constants", bool, path, default=False)
    return GPSpace(
        name=name,
        ops=tuple(dict.fromkeys(ops)),
        trainable=trainable,
        const_range=const_range,
        const_digits=digits,
        max_height=max_height,
        max_size=max_size,
        init_height=(init_min, init_max),
        mutations=tuple(dict.fromkeys(mutations)),
        perturb_sigma=sigma,
        perturb=perturb,
        fold_constants=fold_constants,
    )


__all__ = ["GPSpace", "MUTATIONS", "load_gp_space", "seeded_global_random"]
