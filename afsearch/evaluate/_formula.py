"""The one place the evaluator touches the expression language: the static screen."""

from __future__ import annotations

from afsearch.expr import parse, screen
from afsearch.expr.screen import ScreenVerdict


def static_screen(text: str) -> ScreenVerdict:
    """`afsearch.expr.screen(parse(text))`; a parse error propagates (ExpressionError)."""
    return screen(parse(text))
