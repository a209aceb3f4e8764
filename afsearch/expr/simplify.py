"""Readable winners: the simplest formula found that computes the same function.

`simplify(expr)` returns a formula in the formula language (so it parses, compiles and
exports) that computes what `expr` computes under the guarded semantics:

1. constant sub-expressions are folded to their value, computed with the guards
   (``exp(sigmoid(0.241))`` is ``1.8034...``, ``x / 0`` divides by 1e-7 as compiled code does);
2. local rewrites: idempotent and absorbing operators (``abs(abs(u))``, ``relu(abs(u))``,
   ``abs(square(u))``, ``neg(neg(u))``), neutral elements (``u * 1``, ``u + 0``), ``u - u``,
   ``max(u, u)``, and products and sums flattened with their constants gathered into one
   leading factor or trailing term (``abs(x) * (1.8 * x)`` is ``1.8 * x * abs(x)``; ``x + x`` is
   ``2 * x``; ``u * u`` is ``u^2``);
3. sympy's ``simplify`` of the result, under a time limit (`afsearch.expr.canonical`), read
   back into the formula language where every function it uses has a primitive, kept only when
   it is smaller.

Every step is checked: a result is kept only if it computes the same values (relative 1e-9)
on the fingerprint's probe points, at the trainable constants' initial values and at a
perturbation of them, including where they are non-finite; a step that fails the check is
dropped and the previous form kept, so the answer is at worst `expr` itself.

`readable(expr)` prints it with constants rounded to `DISPLAY_DIGITS` significant digits:
that text is for reading only (the rounding changes the function slightly)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import sympy as sp

from afsearch.expr.fingerprint import perturbed, probe_points
from afsearch.expr.printers import evaluate_numpy, to_string
from afsearch.expr.tree import CONST, PARAM, Expr, X

DISPLAY_DIGITS = 4
DEFAULT_TIMEOUT_S = 0.2
_RTOL = 1e-9

#: f(f(u)) = f(u)
_IDEMPOTENT = frozenset({"abs", "relu"})
#: f(g(u)) = g(u) where g is never negative
_NON_NEGATIVE = frozenset({"abs", "relu", "square", "exp", "sigmoid", "softplus", "gauss", "cosh"})
#: f(neg(u)) = f(u)
_EVEN = frozenset({"abs", "square", "cos", "cosh", "gauss"})


def simplify(expr: Expr, timeout_s: float = DEFAULT_TIMEOUT_S) -> Expr:
    """The smallest equivalent formula found (see the module docstring); `timeout_s` bounds
    the sympy step (0: skip it)."""
    best = expr
    # folding and rewriting may keep the size (they reorder into one canonical order); sympy's
    # form must be smaller to replace ours
    for step, shrink in ((fold, 0), (rewrite, 0), (lambda e: _sympy_form(e, timeout_s), 1)):
        try:
            candidate = step(best)
        except (ValueError, TypeError, ArithmeticError, RecursionError):
            continue
        if candidate is not None and candidate.size <= best.size - shrink and candidate != best and \
                same_function(candidate, expr):
            best = candidate
    return best


def readable(expr: Expr, digits: int = DISPLAY_DIGITS) -> str:
    """`expr` printed with every constant rounded to `digits` significant digits."""
    return to_string(_map_constants(expr, lambda v: float(f"{v:.{digits}g}")))


def same_function(a: Expr, b: Expr) -> bool:
    """Equal values (relative `_RTOL`, scaled by the largest |value|) and equal non-finite
    positions on the probe points, at the initial and at perturbed trainable constants."""
    x = probe_points()
    settings = [None]
    params = {**b.params(), **a.params()}
    if params:
        settings.append(perturbed(params))
    for values in settings:
        ya, yb = evaluate_numpy(a, x, values), evaluate_numpy(b, x, values)
        fa, fb = np.isfinite(ya), np.isfinite(yb)
        if not np.array_equal(fa, fb) or not np.array_equal(ya[~fa], yb[~fb], equal_nan=True):
            return False
        if fa.any():
            scale = max(float(np.max(np.abs(yb[fb]))), 1e-12)
            if float(np.max(np.abs(ya[fa] - yb[fb]))) > _RTOL * scale:
                return False
    return True


# -- 1. constant folding -----------------------------------------------------------------------
def _is_constant(e: Expr) -> bool:
    return not any(n.op in (X, PARAM) for n in e.walk())


def fold(e: Expr) -> Expr:
    """Every sub-expression of constants replaced by its guarded value (when finite)."""
    if e.is_leaf:
        return e
    args = tuple(fold(a) for a in e.args)
    node = Expr(e.op, args)
    if all(a.op == CONST for a in args):
        value = float(evaluate_numpy(node, np.zeros(1))[0])
        if math.isfinite(value):
            return Expr.const(value)
    return node


def _map_constants(e: Expr, f: Callable[[float], float]) -> Expr:
    if e.op == CONST:
        return Expr.const(f(e.value))  # type: ignore[arg-type]
    if e.is_leaf:
        return e
    return Expr(e.op, tuple(_map_constants(a, f) for a in e.args))


# -- 2. local rewrites -----------------------------------------------------------------------------
def rewrite(e: Expr) -> Expr:
    """Bottom-up rewrites until nothing changes (at most 10 passes)."""
    for _ in range(10):
        new = _rewrite(e)
        if new == e:
            return new
        e = new
    return e


def _const(e: Expr, value: float | None = None) -> bool:
    return e.op == CONST and (value is None or e.value == value)


def _rewrite(e: Expr) -> Expr:
    if e.is_leaf:
        return e
    args = tuple(_rewrite(a) for a in e.args)
    e = fold(Expr(e.op, args))
    if e.is_leaf:
        return e
    op, args = e.op, e.args
    if len(args) == 1:
        (u,) = args
        if op in _IDEMPOTENT and u.op == op:
            return u
        if op in ("abs", "relu") and u.op in _NON_NEGATIVE:
            return u
        if op == "neg" and u.op == "neg":
            return u.args[0]
        if op in _EVEN and u.op == "neg":
            return Expr(op, (u.args[0],))
        return e
    a, b = args
    if op in ("max", "min") and a == b:
        return a
    if op in ("add", "sub", "neg"):
        return _sum(e)
    if op in ("mul", "div"):
        return _product(e)
    return e


def _terms(e: Expr, sign: float, out: list[tuple[float, Expr]]) -> None:
    if e.op == "add":
        _terms(e.args[0], sign, out)
        _terms(e.args[1], sign, out)
    elif e.op == "sub":
        _terms(e.args[0], sign, out)
        _terms(e.args[1], -sign, out)
    elif e.op == "neg":
        _terms(e.args[0], -sign, out)
    else:
        coefficient, rest = _split_coefficient(e)
        out.append((sign * coefficient, rest))


def _split_coefficient(e: Expr) -> tuple[float, Expr]:
    """(c, u) with e = c * u; u is the constant 1 for a constant e."""
    if e.op == CONST:
        return float(e.value), Expr.const(1.0)  # type: ignore[arg-type]
    if e.op == "mul" and _const(e.args[0]):
        return float(e.args[0].value), e.args[1]  # type: ignore[arg-type]
    if e.op == "mul" and _const(e.args[1]):
        return float(e.args[1].value), e.args[0]  # type: ignore[arg-type]
    return 1.0, e


def _sum(e: Expr) -> Expr:
    """A sum flattened: equal terms merged (their coefficients added), constants gathered in
    one trailing term, zero terms dropped."""
    terms: list[tuple[float, Expr]] = []
    _terms(e, 1.0, terms)
    merged: dict[Expr, float] = {}
    for coefficient, term in terms:
        merged[term] = merged.get(term, 0.0) + coefficient
    one = Expr.const(1.0)
    constant = merged.pop(one, 0.0)
    parts = [(c, t) for t, c in merged.items() if c != 0.0]
    parts.sort(key=lambda part: part[0] < 0)  # stable: a positive term leads where there is one
    if constant != 0.0 or not parts:
        parts.append((constant, one))
    c, term = parts[0]
    out = _scaled(c, term)
    for c, term in parts[1:]:
        out = Expr("add" if c >= 0 else "sub", (out, _scaled(abs(c), term)))
    return out


def _scaled(c: float, term: Expr) -> Expr:
    if term == Expr.const(1.0):
        return Expr.const(c)
    if c == 1.0:
        return term
    return Expr("neg", (term,)) if c == -1.0 else Expr("mul", (Expr.const(c), term))


def _factors(e: Expr, out: list[Expr], coefficient: list[float]) -> None:
    if e.op == "mul":
        _factors(e.args[0], out, coefficient)
        _factors(e.args[1], out, coefficient)
    elif e.op == "neg":
        coefficient[0] = -coefficient[0]
        _factors(e.args[0], out, coefficient)
    elif e.op == "div" and _const(e.args[1]):  # divides by the guarded constant, as compiled code does
        from afsearch.expr.constants import protected_denominator

        coefficient[0] /= protected_denominator(e.args[1].value)  # type: ignore[arg-type]
        _factors(e.args[0], out, coefficient)
    elif e.op == CONST:
        coefficient[0] *= float(e.value)  # type: ignore[arg-type]
    else:
        out.append(e)


def _product(e: Expr) -> Expr:
    """A product flattened: constants multiplied into one leading factor, a factor that
    appears twice written as a square, x first, then the rest in order of appearance."""
    factors: list[Expr] = []
    coefficient = [1.0]
    _factors(e, factors, coefficient)
    if len(factors) == 0:
        return Expr.const(coefficient[0])
    if coefficient[0] == 0.0:
        return e  # 0 * u is not 0 where u is not finite: leave it
    counts: dict[Expr, int] = {}
    for f in factors:
        counts[f] = counts.get(f, 0) + 1
    powered: list[Expr] = []
    for f, n in counts.items():
        powered.extend([Expr("square", (f,))] * (n // 2) + [f] * (n % 2))
    # stable: trainable constants, then x, then the rest as they came
    powered.sort(key=lambda f: 0 if f.op == PARAM else 1 if f.op == X else 2)
    c = coefficient[0]
    out = powered[0] if c in (1.0, -1.0) else Expr("mul", (Expr.const(c), powered[0]))
    for f in powered[1:]:
        out = Expr("mul", (out, f))  # left-associated: prints without parentheses
    return Expr("neg", (out,)) if c == -1.0 else out


# -- 3. sympy ----------------------------------------------------------------------------------
_SYMPY_UNARY: dict[type, str] = {
    sp.Abs: "abs", sp.exp: "exp", sp.sin: "sin", sp.cos: "cos", sp.tanh: "tanh", sp.sinh: "sinh",
    sp.cosh: "cosh", sp.atan: "atan", sp.asinh: "asinh", sp.erf: "erf", sp.erfc: "erfc",
}


def _sympy_form(e: Expr, timeout_s: float) -> Expr | None:
    from afsearch.expr.canonical import canonical_sympy

    if timeout_s <= 0:
        return None
    simplified = canonical_sympy(e, timeout_s)
    return None if simplified is None else rewrite(fold(from_sympy(simplified, e.params())))


def from_sympy(form: sp.Expr, params: dict[str, float]) -> Expr:
    """A sympy expression as a formula; ValueError for a function without a primitive."""
    if form.is_Symbol:
        name = str(form)
        if name == "x":
            return Expr.var()
        if name in params:
            return Expr.param(name, params[name])
        raise ValueError(f"unknown symbol {name}")
    if form.is_Number:
        value = float(form)
        if not math.isfinite(value):
            raise ValueError("non-finite number")
        return Expr.const(value)
    args = [from_sympy(a, params) for a in form.args] if not form.is_Pow else []
    if form.is_Add or form.is_Mul:
        op = "add" if form.is_Add else "mul"
        out = args[0]
        for a in args[1:]:
            out = Expr(op, (out, a))
        return out
    if form.is_Pow:
        base, exponent = form.args
        b = from_sympy(base, params)
        if exponent == 2:
            return Expr("square", (b,))
        if exponent == 3:
            return Expr("cube", (b,))
        if exponent == -1:
            return Expr("div", (Expr.const(1.0), b))
        if exponent == -2:
            return Expr("div", (Expr.const(1.0), Expr("square", (b,))))
        raise ValueError(f"power {exponent}")
    if isinstance(form, sp.Max | sp.Min):
        op = "max" if isinstance(form, sp.Max) else "min"
        out = args[0]
        for a in args[1:]:
            out = Expr(op, (out, a))
        return out
    for kind, op in _SYMPY_UNARY.items():
        if isinstance(form, kind):
            return Expr(op, (args[0],))
    raise ValueError(f"no primitive for {type(form).__name__}")
