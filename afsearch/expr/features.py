"""What a surrogate model sees of a formula: its shape on the fingerprint probes, with the
output's scale, shift and sign taken out.

A network's next linear layer absorbs an activation's output scale, shift and sign (a
least-squares readout does so exactly), so two formulas that differ only by ``a * f(x) + b``
score alike. `shape_features` therefore describes ``f`` by its outputs on `SHAPE_POINTS`
quantiles of the fingerprint's N(0,1) probes (distances between vectors are then distances in
L2 under N(0,1) inputs), standardised to mean 0 and standard deviation 1 and signed so that
the output grows with x on average. `ShapeFeatures.key` names that standardised shape, so
candidates equal up to an affine map of their output share a key (the strategy trains one of
them).

Formulas that the static screen would reject for sure (non-finite output on the probes,
constant output, exactly linear) have no features (None): a strategy never needs to train
them to learn that."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from afsearch.expr.fingerprint import probe_points, quantise
from afsearch.expr.printers import evaluate_numpy
from afsearch.expr.tree import Expr

#: probe quantiles per formula: enough to tell shapes apart at the tolerance a rediscovery
#: needs (a relative L2 distance of 0.02), few enough to evaluate thousands of formulas
SHAPE_POINTS = 96
#: |correlation with x| above which a shape is linear (the screen's R^2 >= 0.9999)
LINEAR_CORRELATION = 0.99995
_KEY_BITS = 1e4  # standardised outputs are rounded to 1e-4 for the key


@dataclass(frozen=True)
class ShapeFeatures:
    vector: np.ndarray  # standardised, signed outputs on `shape_points()`
    key: str  # equal for formulas equal up to a * f(x) + b
    log_scale: float  # log10 of the output's standard deviation on the probes


@lru_cache(maxsize=1)
def shape_points() -> np.ndarray:
    gaussian = np.sort(probe_points()[:1000])
    return gaussian[np.linspace(0, len(gaussian) - 1, SHAPE_POINTS).round().astype(int)]


def shape_features(expr: Expr) -> ShapeFeatures | None:
    """The standardised shape of `expr` (trainable constants at their initial values), or None
    when the screen would reject it for sure (see the module docstring)."""
    x = shape_points()
    y = evaluate_numpy(expr, x)
    if not np.all(np.isfinite(y)):
        return None
    std = float(y.std())
    if not std > 1e-6 * (1.0 + abs(float(y.mean()))) or not np.isfinite(std):
        return None
    z = (y - y.mean()) / std
    slope = float(z @ ((x - x.mean()) / x.std())) / len(x)
    if abs(slope) >= LINEAR_CORRELATION:
        return None
    if slope < 0 or (slope == 0 and z[-1] < z[0]):
        z = -z
    digest = hashlib.blake2b(quantise(np.round(z * _KEY_BITS) / _KEY_BITS).tobytes(), digest_size=8)
    return ShapeFeatures(z, digest.hexdigest(), float(np.log10(std)))
