"""Constant handling shared by every compiled form: folding constant subtrees and the guard a
constant denominator gets, so that the generated module, the fused kernel and the canonical
form agree on what a formula computes."""

from __future__ import annotations

import numpy as np

from afsearch.expr.primitives import EPS
from afsearch.expr.printers import evaluate_numpy
from afsearch.expr.tree import CONST, Expr


def fold_constants(e: Expr) -> Expr:
    """Replace every subtree that depends on neither x nor a parameter by its value."""
    if e.is_leaf:
        return e
    args = tuple(fold_constants(a) for a in e.args)
    if all(a.op == CONST for a in args):
        value = float(evaluate_numpy(Expr(e.op, args), np.zeros(1))[0])
        if np.isfinite(value):
            return Expr.const(value)
    return Expr(e.op, args)


def protected_denominator(den: float) -> float:
    """A constant denominator with the division guard applied at generation time
    (|den| >= EPS, keeping its sign), as every compiled form must see it."""
    den = float(den)
    return (-EPS if den < 0 else EPS) if abs(den) < EPS else den
