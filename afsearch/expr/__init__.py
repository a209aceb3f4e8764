"""Expression core: primitives, trees, the safe parser, printers, constants and equivalence.
Screening a formula by running it is a rung of the ladder: `afsearch.evaluate.screen`."""

from afsearch.expr.canonical import CanonicalForm, canonical_form
from afsearch.expr.fingerprint import fingerprint, functional_distance, probe_points
from afsearch.expr.parser import parse
from afsearch.expr.primitives import BINARY, PRIMITIVES, UNARY, Primitive, get_primitive
from afsearch.expr.printers import evaluate_numpy, to_latex, to_string, to_sympy
from afsearch.expr.tree import MAX_DEPTH, MAX_SIZE, Expr

__all__ = [
    "BINARY",
    "MAX_DEPTH",
    "MAX_SIZE",
    "PRIMITIVES",
    "UNARY",
    "CanonicalForm",
    "Expr",
    "Primitive",
    "canonical_form",
    "evaluate_numpy",
    "fingerprint",
    "functional_distance",
    "get_primitive",
    "parse",
    "probe_points",
    "to_latex",
    "to_string",
    "to_sympy",
]
