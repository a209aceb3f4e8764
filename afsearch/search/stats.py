"""Statistics for validating winners: every candidate is retrained on the same fresh seeds as the
baselines, so a comparison is *paired*: the per-seed differences carry the signal and the
seed-to-seed variation both share cancels.

    paired_difference(a, b) -> PairedTest   mean difference a - b with a 95 % t interval, the
                                            standardised effect d_z, one-sided p (a greater)
    holm(p_values) -> adjusted p-values      Holm's step-down correction for testing several
                                            winners against the same baseline

Values must already be oriented higher-is-better (a loss negated), so "greater" is "better"."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as _scipy_stats


@dataclass(frozen=True)
class PairedTest:
    """Paired t-test of a against b over n matched seeds."""

    n: int
    mean_difference: float  # mean of a_i - b_i (the effect, in the metric's units)
    ci_low: float  # two-sided `confidence` interval of the mean difference
    ci_high: float
    effect_size: float  # d_z = mean difference / sd of the differences (inf when sd is 0)
    p_value: float  # one-sided: H1 "a is greater than b"
    confidence: float = 0.95


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedTest | None:
    """The paired t-test of `a` against `b` (pairs = the same seeds); None with fewer than two
    pairs, unequal lengths or non-finite values. Identical differences (sd 0) give a zero-width
    interval and p = 0 if they are positive, else 1."""
    if len(a) != len(b) or len(a) < 2 or not 0 < confidence < 1:
        return None
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if not all(math.isfinite(d) for d in diffs):
        return None
    n = len(diffs)
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs)
    if sd <= 1e-12 * abs(mean) or sd == 0:  # equal differences, up to float rounding
        return PairedTest(n, mean, mean, mean, math.copysign(math.inf, mean) if mean else 0.0,
                          0.0 if mean > 0 else 1.0, confidence)
    se = sd / math.sqrt(n)
    t = mean / se
    half = float(_scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    p = float(_scipy_stats.t.sf(t, n - 1))
    return PairedTest(n, mean, mean - half, mean + half, mean / sd, p, confidence)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (same order; None stays None and is not counted):
    the i-th smallest of m p-values is multiplied by m - i + 1, made monotone and capped at 1.
    Rejecting where the adjusted value is below alpha controls the family-wise error at alpha."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
