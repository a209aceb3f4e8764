"""Immutable expression trees.

A node is one of
- the input variable ``x`` (``op == "x"``),
- a literal constant (``op == "const"``, ``value``),
- a named trainable constant (``op == "param"``, ``name``, ``value`` = initial value),
- a primitive application (``op`` = primitive name, ``args``).

Depth and size are computed once at construction, so limits are checked in O(1) per node and
no walker ever recurses deeper than ``MAX_DEPTH``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from afsearch.errors import ExpressionError
from afsearch.expr.primitives import PRIMITIVES

MAX_DEPTH = 48
MAX_SIZE = 400

X = "x"
CONST = "const"
PARAM = "param"
LEAVES = (X, CONST, PARAM)


@dataclass(frozen=True, slots=True)
class Expr:
    op: str
    args: tuple[Expr, ...] = ()
    value: float | None = None
    name: str | None = None
    depth: int = field(init=False, compare=False, repr=False)
    size: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op in LEAVES:
            if self.args:
                raise ExpressionError(f"leaf {self.op!r} takes no arguments")
            if self.op in (CONST, PARAM) and (self.value is None or not math.isfinite(self.value)):
                raise ExpressionError(f"{self.op} needs a finite value, got {self.value!r}")
            if self.op == PARAM and not self.name:
                raise ExpressionError("a trainable constant needs a name")
            depth, size = 1, 1
        else:
            prim = PRIMITIVES.get(self.op)
            if prim is None:
                raise ExpressionError(f"unknown primitive {self.op!r}")
            if len(self.args) != prim.arity:
                raise ExpressionError(
                    f"{self.op} takes {prim.arity} argument(s), got {len(self.args)}"
                )
            depth = 1 + max(a.depth for a in self.args)
            size = 1 + sum(a.size for a in self.args)
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "size", size)

    # -- constructors --------------------------------------------------------------------------
    @staticmethod
    def var() -> Expr:
        return _X

    @staticmethod
    def const(value: float) -> Expr:
        return Expr(CONST, value=float(value))

    @staticmethod
    def param(name: str, init: float = 1.0) -> Expr:
        return Expr(PARAM, value=float(init), name=name)

    @staticmethod
    def call(op: str, *args: Expr) -> Expr:
        return Expr(op, tuple(args))

    # -- queries -------------------------------------------------------------------------------
    @property
    def is_leaf(self) -> bool:
        return self.op in LEAVES

    def walk(self) -> Iterator[Expr]:
        """Pre-order traversal (iterative: safe for any depth)."""
        stack: list[Expr] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.args))

    def params(self) -> dict[str, float]:
        """Trainable constants in order of first appearance, with their initial values."""
        found: dict[str, float] = {}
        for node in self.walk():
            if node.op == PARAM and node.name not in found:
                found[node.name] = node.value  # type: ignore[index,assignment]
        return found

    def uses_x(self) -> bool:
        return any(node.op == X for node in self.walk())

    def check_limits(self, max_depth: int = MAX_DEPTH, max_size: int = MAX_SIZE) -> Expr:
        if self.depth > max_depth:
            raise ExpressionError(f"expression depth {self.depth} exceeds the limit {max_depth}")
        if self.size > max_size:
            raise ExpressionError(f"expression size {self.size} nodes exceeds the limit {max_size}")
        return self

    def __str__(self) -> str:
        from afsearch.expr.printers import to_string

        return to_string(self)


_X = Expr(X)
