"""How a run shows a candidate's formula: simplified (`afsearch.expr.simplify`), constants
rounded for reading. The one helper every read-side view (leaderboard, show, status, runs,
validate, the search summary) and `export` use.

New runs store the simplified formula beside the formula as proposed (the candidate's
``canonical`` text, written by `Candidate.describe`). A stored text is trusted only when it
parses and computes the candidate's own function (same fingerprint), so a run directory
written by an older afsearch (which stored sympy's text there) or edited by hand shows the
formula as proposed, simplified here instead."""

from __future__ import annotations

from functools import lru_cache

from afsearch.errors import AfsearchError
from afsearch.expr import fingerprint as fingerprint_of
from afsearch.expr import parse
from afsearch.expr.simplify import readable, simplify
from afsearch.expr.tree import Expr
from afsearch.store import CandidateRecord

#: the sympy step's limit when a view has to simplify (an older run): a leaderboard of ten
#: rows stays under a few seconds
VIEW_TIMEOUT_S = 0.1


def simplified_expr(formula: str, canonical: str | None = None, fingerprint: str | None = None) -> Expr:
    """The simplified formula of a candidate: its stored `canonical` text when that parses and
    has the candidate's `fingerprint`, else `formula` simplified now. ExpressionError when
    `formula` does not parse."""
    proposed = parse(formula)
    if canonical and fingerprint:
        try:
            stored = parse(canonical)
            if stored.size <= proposed.size and fingerprint_of(stored) == fingerprint:
                return stored
        except (AfsearchError, ValueError, ArithmeticError, RecursionError):
            pass
    return _simplified(formula)


def shown_formula(formula: str | None, canonical: str | None = None, fingerprint: str | None = None,
                  kind: str = "activation") -> str:
    """The text a user reads for a candidate's formula (see the module docstring); a layer
    graph's formula, or a formula that does not parse, as it is."""
    if not formula or kind != "activation":
        return formula or ""
    try:
        return readable(simplified_expr(formula, canonical, fingerprint))
    except (AfsearchError, ValueError, ArithmeticError, RecursionError):
        return formula


@lru_cache(maxsize=4096)
def _simplified(formula: str) -> Expr:
    return simplify(parse(formula), VIEW_TIMEOUT_S)


def shown(record: CandidateRecord) -> str:
    """`shown_formula` of a stored candidate."""
    return shown_formula(record.formula, record.canonical, record.fingerprint, record.kind)


def exported_expr(record: CandidateRecord) -> Expr:
    """What `export` writes for an activation candidate: the simplified formula at full
    precision (it computes the candidate's function; see `simplified_expr`)."""
    return simplified_expr(record.formula or "", record.canonical, record.fingerprint)
