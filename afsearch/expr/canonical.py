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


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout


def canonical_form(expr: Expr, timeout_s: float = DEFAULT_TIMEOUT_S) -> CanonicalForm:
    try:
        structural = to_sympy(expr)
    except (RecursionError, ValueError, TypeError) as exc:  # pragma: no cover - defensive
        return CanonicalForm(str(expr), False, f"sympy conversion failed: {type(exc).__name__}")
    if timeout_s <= 0 or threading.current_thread() is not threading.main_thread():
        return CanonicalForm(sp.sstr(structural), False, "structural form (no simplify off the main thread)")
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        simplified = sp.simplify(structural)
        return CanonicalForm(sp.sstr(simplified), True)
    except _Timeout:
        return CanonicalForm(sp.sstr(structural), False, f"simplify exceeded {timeout_s:g} s")
    except Exception as exc:  # sympy raises RecursionError, ValueError, TypeError, ... on some trees
        return CanonicalForm(sp.sstr(structural), False, f"simplify failed: {type(exc).__name__}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
