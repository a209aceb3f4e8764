"""The one place the evaluator touches the expression language: the static screen."""

from __future__ import annotations

from afsearch.evaluate.screen import ScreenVerdict, screen
from afsearch.expr import parse


def static_screen(text: str) -> ScreenVerdict:
    """`afsearch.expr.screen(parse(text))`; a parse error propagates (ExpressionError)."""
    return screen(parse(text))
