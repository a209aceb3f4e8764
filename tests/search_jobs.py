"""Module-level job functions for engine tests: instant, crafted evaluation results."""

from __future__ import annotations

import math
from typing import Any

from afsearch.evaluate.result import EvalResult, SeedResult

CALLS: list[str] = []
PACKS: list[int] = []


def crafted(payload: dict[str, Any]) -> dict[str, Any]:
    """One candidate, or {"results": [...]} for a pack ("candidates"). Scores by formula: 'sin' -> NaN accuracy, 'cos' -> failed with a huge score, 'tanh' ->
    rejected, anything else -> a finite score from its length."""
    if "candidates" in payload:
        PACKS.append(len(payload["candidates"]))
        single = {k: v for k, v in payload.items() if k != "candidates"}
        return {"results": [crafted({**single, "candidate": c}) for c in payload["candidates"]]}
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
