"""Printers and evaluators of expression trees: canonical string, sympy, LaTeX, numpy.

The string form round-trips: ``parse(to_string(t)) == t`` for every tree the parser can
produce (and for any tree up to constant/negation folding, which keeps the function)."""

from __future__ import annotations

import numpy as np
import sympy as sp

from afsearch.expr.primitives import PRIMITIVES
from afsearch.expr.tree import CONST, PARAM, Expr, X

_INFIX = {"add": ("+", 1), "sub": ("-", 1), "mul": ("*", 2), "div": ("/", 2)}
_ATOM = 5


def format_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _prec(e: Expr) -> int:
    if e.op in _INFIX:
        return _INFIX[e.op][1]
    if e.op == "neg" or (e.op == CONST and (e.value or 0.0) < 0):
        return 3
    if e.op in ("square", "cube") or (e.op == "pow" and not _pow_as_call(e)):
        return 4
    return _ATOM


def _pow_as_call(e: Expr) -> bool:
    # pow(a, 2) must not print as a^2, which parses to square(a)
    b = e.args[1]
    return b.op == CONST and b.value in (2.0, 3.0)


def to_string(e: Expr) -> str:
    """Canonical string in the formula language (minimal parentheses)."""
    if e.op == X:
        return "x"
    if e.op == CONST:
        return format_number(e.value)  # type: ignore[arg-type]
    if e.op == PARAM:
        return e.name if e.value == 1.0 else f"{e.name}[{format_number(e.value)}]"  # type: ignore[return-value,arg-type]
    if e.op in _INFIX:
        sym, p = _INFIX[e.op]
        left = _wrap(e.args[0], _prec(e.args[0]) < p)
        right = _wrap(e.args[1], _prec(e.args[1]) <= p)
        return f"{left} {sym} {right}"
    if e.op == "neg":
        return "-" + _wrap(e.args[0], _prec(e.args[0]) < 3)
    if e.op in ("square", "cube"):
        return _wrap(e.args[0], _prec(e.args[0]) < _ATOM) + ("^2" if e.op == "square" else "^3")
    if e.op == "pow" and not _pow_as_call(e):
        base = _wrap(e.args[0], _prec(e.args[0]) < _ATOM)
        return f"{base}^{_wrap(e.args[1], _prec(e.args[1]) < 3)}"
    return f"{e.op}({', '.join(to_string(a) for a in e.args)})"


def _wrap(e: Expr, parens: bool) -> str:
    s = to_string(e)
    return f"({s})" if parens else s


# -- sympy ---------------------------------------------------------------------------------------
X_SYMBOL = sp.Symbol("x", real=True)


def _sympy_number(value: float) -> sp.Expr:
    if value == int(value) and abs(value) < 1e15:
        return sp.Integer(int(value))
    return sp.Float(value, 15)


def to_sympy(e: Expr) -> sp.Expr:
    if e.op == X:
        return X_SYMBOL
    if e.op == CONST:
        return _sympy_number(e.value)  # type: ignore[arg-type]
    if e.op == PARAM:
        return sp.Symbol(e.name, real=True)  # type: ignore[arg-type]
    return PRIMITIVES[e.op].sympy(*(to_sympy(a) for a in e.args))


# -- LaTeX ---------------------------------------------------------------------------------------
_GREEK = {"lam": r"\lambda", "eps": r"\epsilon"}


def _latex_param(name: str) -> str:
    base, _, suffix = name.partition("_")
    digits = ""
    while base and base[-1].isdigit():
        digits = base[-1] + digits
        base = base[:-1]
    sym = _GREEK.get(base, "\\" + base)
    sub = suffix or digits
    return f"{sym}_{{{sub}}}" if sub else sym


def to_latex(e: Expr) -> str:
    if e.op == X:
        return "x"
    if e.op == CONST:
        return format_number(e.value)  # type: ignore[arg-type]
    if e.op == PARAM:
        return _latex_param(e.name)  # type: ignore[arg-type]
    prim = PRIMITIVES[e.op]
    if e.op in ("add", "sub", "mul"):
        p = _INFIX[e.op][1]
        left = _latex_wrap(e.args[0], _prec(e.args[0]) < p)
        right = _latex_wrap(e.args[1], _prec(e.args[1]) <= p)
        return prim.latex_source(left, right)
    if e.op == "neg":
        return prim.latex_source(_latex_wrap(e.args[0], _prec(e.args[0]) < 3))
    return prim.latex_source(*(to_latex(a) for a in e.args))


def _latex_wrap(e: Expr, parens: bool) -> str:
    s = to_latex(e)
    return rf"\left({s}\right)" if parens else s


# -- numpy ---------------------------------------------------------------------------------------
def evaluate_numpy(e: Expr, x: np.ndarray, params: dict[str, float] | None = None) -> np.ndarray:
    """Evaluate in float64 with the same numeric guards as the torch code."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        return np.broadcast_to(_eval_np(e, x, params or {}), x.shape).astype(np.float64)


def _eval_np(e: Expr, x: np.ndarray, params: dict[str, float]) -> np.ndarray:
    if e.op == X:
        return x
    if e.op == CONST:
        return np.float64(e.value)
    if e.op == PARAM:
        return np.float64(params.get(e.name, e.value))  # type: ignore[arg-type]
    return PRIMITIVES[e.op].numpy(*(_eval_np(a, x, params) for a in e.args))
