"""Strict JSON for floats: JSON has no inf or NaN, so they travel as the strings "inf", "-inf"
and "nan" (one codec for results, strategy states and every other record that holds a score)."""

from __future__ import annotations

import math
from typing import Any

NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float (at any depth) replaced by its string."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan"
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def float_from_json(value: Any) -> float:
    """A float written by `json_safe`: a number or one of the non-finite strings."""
    if isinstance(value, str):
        if value not in NON_FINITE:
            raise ValueError(f"not a number: {value[:40]!r}")
        return NON_FINITE[value]
    return float(value)
