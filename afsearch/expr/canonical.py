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
from afsearch.expr.tree import Expr

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
        if self.armed:
            raise _Timeout


def canonical_form(expr: Expr, timeout_s: float = DEFAULT_TIMEOUT_S) -> CanonicalForm:
    try:
        structural = to_sympy(expr)
    except (RecursionError, ValueError, TypeError) as exc:  # pragma: no cover - defensive
        return CanonicalForm(str(expr), False, f"sympy conversion failed: {type(exc).__name__}")
    fallback = sp.sstr(structural)
    if timeout_s <= 0 or threading.current_thread() is not threading.main_thread():
        return CanonicalForm(fallback, False, "structural form (no simplify off the main thread)")
    alarm = _Alarm()
    timed_out = CanonicalForm(fallback, False, f"simplify exceeded {timeout_s:g} s")
    try:
        return _simplify_with_alarm(structural, fallback, timeout_s, alarm, timed_out)
    except _Timeout:  # a repeat alarm that arrived while the inner handler was finishing
        return timed_out


def _simplify_with_alarm(structural: sp.Expr, fallback: str, timeout_s: float, alarm: _Alarm,
                         timed_out: CanonicalForm) -> CanonicalForm:
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s, _Alarm.REPEAT_S)
    try:
        simplified = sp.simplify(structural)
        alarm.armed = False
        return CanonicalForm(sp.sstr(simplified), True)
    except _Timeout:
        alarm.armed = False
        return timed_out
    except Exception as exc:  # sympy raises RecursionError, ValueError, TypeError, ... on some trees
        alarm.armed = False
        return CanonicalForm(fallback, False, f"simplify failed: {type(exc).__name__}")
    finally:
        alarm.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
