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

Formulas that the static screen would reject (non-finite output, also in float32; constant,
linear, exploding or vanishing output or gain, by the screen's thresholds, judged on these
points with a finite-difference gain) have no features (None): a strategy need not train them
to learn that. The screen itself looks at more points, so a formula with features can still be
rejected."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from afsearch.evaluate.screen import ScreenThresholds
from afsearch.expr.fingerprint import probe_points
from afsearch.expr.printers import evaluate_numpy
from afsearch.expr.tree import Expr

#: probe quantiles per formula: enough to tell shapes apart at the tolerance a rediscovery
#: needs (a relative L2 distance of 0.02), few enough to evaluate thousands of formulas
SHAPE_POINTS = 96
#: |correlation with x| above which a shape is linear (the screen's R^2 >= 0.9999)
LINEAR_CORRELATION = 0.99995
_KEY_BITS = 1e4  # standardised outputs are rounded to 1e-4 for the key
FLOAT32_MAX = 3.4e38


@dataclass(frozen=True)
class ShapeFeatures:
    #: standardised, signed outputs on `shape_points()`, divided by sqrt(SHAPE_POINTS): unit
    #: length, so the distance of two shapes is sqrt(2 (1 - r)) with r their correlation
    vector: np.ndarray
    key: str  # equal for formulas equal up to a * f(x) + b
    log_scale: float  # log10 of the output's standard deviation on the probes
    #: `vector` less its component along x, at unit length: the shape up to a * f(x) + b + c * x,
    #: under which a bump and the bump plus x coincide (a network scores them alike more often
    #: than their shapes' distance suggests)
    residual: np.ndarray


_LIMITS = ScreenThresholds()


@lru_cache(maxsize=1)
def shape_points() -> np.ndarray:
    gaussian = np.sort(probe_points()[:1000])
    return gaussian[np.linspace(0, len(gaussian) - 1, SHAPE_POINTS).round().astype(int)]


@lru_cache(maxsize=1)
def _geometry() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The points, their spacing and the points standardised."""
    x = shape_points()
    return x, np.diff(x), (x - x.mean()) / x.std()


def shape_features(expr: Expr) -> ShapeFeatures | None:
    """The standardised shape of `expr` (trainable constants at their initial values), or None
    when the screen would reject it for sure (see the module docstring)."""
    x, spacing, standardised = _geometry()
    y = evaluate_numpy(expr, x)
    if not np.all(np.isfinite(y)) or float(np.max(np.abs(y))) > FLOAT32_MAX:
        return None
    gain = float(np.sqrt(np.mean((np.diff(y) / spacing) ** 2)))
    if float(np.sqrt(np.mean(y**2))) > _LIMITS.max_output_rms or not _LIMITS.min_gain <= gain <= _LIMITS.max_gain:
        return None
    std = float(y.std())
    if not std > 1e-6 * (1.0 + abs(float(y.mean()))) or not np.isfinite(std):
        return None
    z = (y - y.mean()) / std
    slope = float(z @ standardised) / len(x)
    if abs(slope) >= LINEAR_CORRELATION:
        return None
    if slope < 0 or (slope == 0 and z[-1] < z[0]):
        z = -z
    digest = hashlib.blake2b(np.round(z * _KEY_BITS).astype(np.int64).tobytes(), digest_size=8)
    residual = z - abs(slope) * standardised
    return ShapeFeatures(z / np.sqrt(len(z)), digest.hexdigest(), float(np.log10(std)),
                         residual / float(np.linalg.norm(residual)))
