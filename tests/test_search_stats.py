"""Validation statistics: the paired t-test and its interval agree with scipy; Holm's correction
matches R's p.adjust(method = "holm")."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats

from afsearch.search.stats import holm, paired_difference


@pytest.mark.parametrize("seed", range(5))
def test_paired_difference_matches_scipy(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(2, 12)
    b = [rng.gauss(0.6, 0.02) for _ in range(n)]
    a = [x + rng.gauss(0.01, 0.01) for x in b]  # a shares b's seed effect, plus a small gain
    test = paired_difference(a, b)
    ref = stats.ttest_rel(a, b, alternative="greater")
    interval = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert test is not None and test.n == n
    assert test.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert (test.ci_low, test.ci_high) == pytest.approx((interval.low, interval.high), rel=1e-9)
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    assert test.mean_difference == pytest.approx(sum(diffs) / n)
    assert test.effect_size == pytest.approx(test.mean_difference / stats.tstd(diffs))


def test_pairing_finds_what_an_unpaired_test_misses() -> None:
    # a large seed-to-seed spread shared by both candidates, a small consistent gain
    b = [0.50, 0.60, 0.70, 0.55, 0.65]
    a = [x + 0.01 for x in b]
    paired = paired_difference(a, b)
    assert paired is not None and paired.p_value == 0.0 and paired.ci_low == pytest.approx(0.01)
    assert stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue > 0.4


def test_degenerate_inputs() -> None:
    assert paired_difference([0.5], [0.4]) is None  # one pair: no variance
    assert paired_difference([0.5, 0.6], [0.4]) is None  # not paired
    assert paired_difference([0.5, math.nan], [0.4, 0.4]) is None
    worse = paired_difference([0.4, 0.5], [0.45, 0.55])
    assert worse is not None and worse.p_value == 1.0 and worse.ci_high == pytest.approx(-0.05)
    assert paired_difference([0.5, 0.5], [0.5, 0.5]).effect_size == 0.0


def test_holm_matches_r_p_adjust() -> None:
    # R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") -> 0.03 0.06 0.06 0.02
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # R: p.adjust(c(0.2, 0.5, 0.9), "holm") -> 0.6 1.0 1.0
    assert holm([0.2, 0.5, 0.9]) == pytest.approx([0.6, 1.0, 1.0])
    assert holm([0.01, None, 0.02]) == pytest.approx([0.02, None, 0.02])
    assert holm([]) == []


@pytest.mark.parametrize("seed", range(3))
def test_holm_between_raw_and_bonferroni(seed: int) -> None:
    rng = random.Random(seed)
    ps = [rng.random() ** 3 for _ in range(rng.randint(1, 8))]
    adjusted = holm(ps)
    for p, q in zip(ps, adjusted, strict=True):
        assert p <= q <= min(1.0, p * len(ps)) + 1e-15
    order = sorted(range(len(ps)), key=ps.__getitem__)
    assert [adjusted[i] for i in order] == sorted(adjusted)  # monotone in the raw p-values
