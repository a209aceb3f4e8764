"""Numeric fingerprints: two expressions with the same fingerprint compute the same function
(on the probe points, to ~6 significant digits) and are trained only once.

Probe points: 1,000 N(0,1) samples (seed 0) clipped to [-5, 5], plus edge points out to ±20.
When the expression has trainable constants it is evaluated twice, at the initial values and
at a fixed perturbation of them, so ``x*sigmoid(beta*x)`` (trainable) and ``x*sigmoid(x)``
(fixed) are different candidates while renaming a constant changes nothing."""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from afsearch.expr.printers import evaluate_numpy
from afsearch.expr.tree import Expr

EDGE_POINTS = (-20.0, -10.0, -5.0, -3.0, -2.0, -1.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0)
MANTISSA_BITS = 20  # ~6 significant decimal digits
ZERO_FLOOR = 1e-9


@lru_cache(maxsize=1)
def probe_points() -> np.ndarray:
    samples = np.clip(np.random.default_rng(0).standard_normal(1000), -5.0, 5.0)
    return np.concatenate([samples, np.asarray(EDGE_POINTS)])


def quantise(values: np.ndarray) -> np.ndarray:
    """Map float64 values to int64 codes: relative quantisation, tiny values to 0,
    NaN/±inf to reserved codes."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    safe = np.where(finite & (np.abs(v) >= ZERO_FLOOR), v, 0.0)
    mant, expo = np.frexp(safe)
    scale = 1 << MANTISSA_BITS
    q = np.round(mant * scale).astype(np.int64)
    carry = np.abs(q) == scale  # rounding up to 1.0 belongs to the next binade
    q = np.where(carry, q // 2, q)
    expo = np.where(carry, expo + 1, expo).astype(np.int64)
    codes = q * 4096 + expo
    codes = np.where(np.isnan(v), np.int64(-(1 << 62)), codes)
    codes = np.where(np.isposinf(v), np.int64(1 << 62), codes)
    codes = np.where(np.isneginf(v), np.int64(-(1 << 62) + 1), codes)
    return codes


def perturbed(params: dict[str, float]) -> dict[str, float]:
    return {k: v * 1.25 + 0.25 for k, v in params.items()}


def fingerprint(expr: Expr) -> str:
    """A 16-hex-digit hash of the quantised outputs on the probe points."""
    x = probe_points()
    params = expr.params()
    digest = hashlib.blake2b(digest_size=8)
    digest.update(quantise(evaluate_numpy(expr, x)).tobytes())
    if params:
        digest.update(b"|trainable|%d|" % len(params))
        digest.update(quantise(evaluate_numpy(expr, x, perturbed(params))).tobytes())
    return digest.hexdigest()


def functional_distance(a: Expr, b: Expr) -> float:
    """Root-mean-square difference on the N(0,1) probe points, relative to the RMS of ``b``
    (inf when either is non-finite there). Used to judge "close to a planted formula"."""
    x = probe_points()[:1000]
    ya, yb = evaluate_numpy(a, x), evaluate_numpy(b, x)
    if not (np.all(np.isfinite(ya)) and np.all(np.isfinite(yb))):
        return float("inf")
    scale = max(float(np.sqrt(np.mean(yb**2))), 1e-12)
    return float(np.sqrt(np.mean((ya - yb) ** 2)) / scale)
