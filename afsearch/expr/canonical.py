"""Symbolic canonical form under a hard time limit.

``sympy.simplify`` takes ~0.2 s median on random trees but sometimes many seconds, and a few
trees make it raise. A search must never stall on it: the simplification runs under a
``SIGALRM`` timer when called from the main thread and falls back to the structural sympy form
(sympy's automatic canonicalisation only, e.g. argument ordering) on timeout, error, or when
called off the main thread, where signals cannot interrupt it."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass

import sympy as sp

from afsearch.expr.printers import to_sympy
from afsearch.expr.tree import CONST, PARAM, Expr, X

DEFAULT_TIMEOUT_S = 0.5


class _Timeout(Exception):
    pass


@dataclass(frozen=True)
class CanonicalForm:
    text: str
    simplified: bool  # False: the structural fallback was used
    note: str = ""


class _Alarm:
    """SIGALRM handler that keeps firing every `REPEAT_S` until disarmed: an alarm that lands in
    a context that swallows exceptions (a gc callback, a __del__) is followed by another."""

    REPEAT_S = 0.05

    def __init__(self) -> None:
        self.armed = True

    def __call__(self, signum: int, frame: object) -> None:
        # raise only inside sympy's own code: an alarm landing elsewhere (a warning being
        # formatted, an import, a __del__ or gc callback, where the exception would be swallowed
        # and reported as "Exception ignored") waits for the next repeat
        if self.armed and _in_sympy(frame):
            raise _Timeout


def _in_sympy(frame: object) -> bool:
    code = getattr(frame, "f_code", None)
    if code is None or code.co_name == "__del__":
        return False
    name = code.co_filename.replace("\\", "/")
    return "/sympy/" in name or "/mpmath/" in name


def canonical_form(expr: Expr, timeout_s: float = DEFAULT_TIMEOUT_S) -> CanonicalForm:
    """The sympy form of what `expr` computes. It follows the guarded semantics where they
    differ from plain algebra on constants (``x/0`` computes ``x / 1e-7``, so it reads
    ``10000000.0*x``, not sympy's ``zoo*x``); a form that still comes out undefined (zoo, nan,
    oo: a zero built from x, as in ``x/(x - x)``) is replaced by our own printing of the
    formula, unsimplified, with a note."""
    guarded = guarded_constants(expr)
    try:
        structural = to_sympy(guarded)
    except (RecursionError, ValueError, TypeError) as exc:  # pragma: no cover - defensive
        return CanonicalForm(str(expr), False, f"sympy conversion failed: {type(exc).__name__}")
    if _undefined(structural):
        return _printed(expr)
    fallback = sp.sstr(structural)
    if timeout_s <= 0 or threading.current_thread() is not threading.main_thread():
        return CanonicalForm(fallback, False, "structural form (no simplify off the main thread)")
    alarm = _Alarm()
    timed_out = CanonicalForm(fallback, False, f"simplify exceeded {timeout_s:g} s")
    try:
        return _simplify_with_alarm(structural, fallback, timeout_s, alarm, timed_out)
    except _Timeout:  # a repeat alarm that arrived while the inner handler was finishing
        return timed_out


def guarded_constants(expr: Expr) -> Expr:
    """`expr` with the constants on which plain algebra and the guarded numeric forms disagree
    replaced by what the activation computes: a constant denominator below the guard (``x/0``
    divides by 1e-7, as the compiled code does) and a constant subtree that sympy finds
    undefined (``log(0)`` is log(1e-7)). Other constants stay exact (``sqrt(2)``)."""
    from afsearch.expr.constants import fold_constants, protected_denominator

    def constant(e: Expr) -> bool:
        return not any(n.op in (X, PARAM) for n in e.walk())

    def guard(e: Expr) -> Expr:
        if e.is_leaf:
            return e
        e = Expr(e.op, tuple(guard(a) for a in e.args))
        if constant(e):
            return fold_constants(e) if _undefined(to_sympy(e)) else e
        if e.op == "div" and constant(e.args[1]):
            den = fold_constants(e.args[1])
            if den.op == CONST and den.value != protected_denominator(den.value):  # type: ignore[arg-type]
                return Expr("div", (e.args[0], Expr.const(protected_denominator(den.value))))  # type: ignore[arg-type]
        return e

    return guard(expr)


def _undefined(form: sp.Expr) -> bool:
    return bool(form.has(sp.zoo, sp.nan, sp.oo, -sp.oo))


def _printed(expr: Expr) -> CanonicalForm:
    from afsearch.expr.printers import to_string

    return CanonicalForm(to_string(expr), False,
                         "the algebraic form is undefined (a zero built from x divides); "
                         "the formula as written, computed with its guards")


def _simplify_with_alarm(structural: sp.Expr, fallback: str, timeout_s: float, alarm: _Alarm,
                         timed_out: CanonicalForm) -> CanonicalForm:
    simplified, note = _limited_simplify(structural, timeout_s, alarm)
    if simplified is None:
        return timed_out if note == "timeout" else CanonicalForm(fallback, False, note)
    return CanonicalForm(sp.sstr(simplified), True)


def canonical_sympy(expr: Expr, timeout_s: float = DEFAULT_TIMEOUT_S) -> sp.Expr | None:
    """``sympy.simplify`` of what `expr` computes (its guarded constants, as `canonical_form`),
    or None where `canonical_form` would fall back: a timeout, an error, an undefined form, or
    a call off the main thread."""
    if timeout_s <= 0 or threading.current_thread() is not threading.main_thread():
        return None
    try:
        structural = to_sympy(guarded_constants(expr))
    except (RecursionError, ValueError, TypeError):
        return None
    if _undefined(structural):
        return None
    try:
        return _limited_simplify(structural, timeout_s, _Alarm())[0]
    except _Timeout:
        return None


def _limited_simplify(structural: sp.Expr, timeout_s: float, alarm: _Alarm) -> tuple[sp.Expr | None, str]:
    """(simplified form, "") or (None, why): "timeout", or a note on what failed."""
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s, _Alarm.REPEAT_S)
    try:
        simplified = sp.simplify(structural)
        alarm.armed = False
        if _undefined(simplified):  # e.g. a limit sympy takes differently from the guards
            return None, "simplify gave an undefined form; structural form"
        return simplified, ""
    except _Timeout:
        alarm.armed = False
        return None, "timeout"
    except Exception as exc:  # sympy raises RecursionError, ValueError, TypeError, ... on some trees
        alarm.armed = False
        return None, f"simplify failed: {type(exc).__name__}"
    finally:
        alarm.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
