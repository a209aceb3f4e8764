"""Module-level job functions for engine tests: instant, crafted evaluation results."""

from __future__ import annotations

import math
from typing import Any

from afsearch.evaluate.result import EvalResult, SeedResult

CALLS: list[str] = []


def crafted(payload: dict[str, Any]) -> dict[str, Any]:
    """Scores by formula: 'sin' -> NaN accuracy, 'cos' -> failed with a huge score, 'tanh' ->
    rejected, anything else -> a finite score from its length."""
    spec = payload["candidate"]["spec"]
    CALLS.append(spec)
    result = EvalResult(payload["candidate"], payload["task"], {}, payload["budget"], list(payload["seed"]))
    if "cos" in spec:
        result.status, result.stage, result.reason = "failed", "train", "boom"
        result.mean_accuracy = 1e9
        return result.to_json()
    if "tanh" in spec:
        result.status, result.stage, result.reason = "rejected", "quality", "too slow"
        return result.to_json()
    acc = math.nan if "sin" in spec else 1.0 / (1 + len(spec))
    result.per_seed = [SeedResult(s, acc, 1.0, acc, 1.0, payload["budget"], 0.0) for s in payload["seed"]]
    result.summarise()
    return result.to_json()
