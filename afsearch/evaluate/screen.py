"""Static screening: reject hopeless candidates before any training, with a reason and the
statistics that justify it.

The candidate is run in float32 (what training uses) with autograd on the fingerprint probe
points (N(0,1) samples clipped to ±5 plus edge points out to ±20). Checks, in order:
non-finite output or gradient anywhere on the probes; constant; (near-)linear; exploding or
vanishing gain under N(0,1) input (second moments of the output and of the derivative)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from afsearch.compile import compile_activation
from afsearch.expr.fingerprint import probe_points
from afsearch.expr.tree import Expr


@dataclass(frozen=True)
class ScreenThresholds:
    constant_std: float = 1e-6
    #: R^2 of the best affine fit on [-5, 5] above which a function counts as linear
    linear_r2: float = 0.9999
    max_output_rms: float = 1e3
    max_gain: float = 1e2
    min_gain: float = 1e-2


@dataclass(frozen=True)
class ScreenVerdict:
    passed: bool
    reason: str | None
    stats: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"passed": self.passed, "reason": self.reason, "stats": self.stats}


def screen(expr: Expr, thresholds: ScreenThresholds | None = None) -> ScreenVerdict:
    t = thresholds or ScreenThresholds()
    module = compile_activation(expr).new_module()
    x = torch.tensor(probe_points(), dtype=torch.float32, requires_grad=True)
    with torch.enable_grad():
        y = module(x)
        if y.requires_grad:
            (grad,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
        else:  # a constant formula: no graph at all
            grad = None
    grad = torch.zeros_like(x) if grad is None else grad
    xs, ys, gs = x.detach().double().numpy(), y.detach().double().numpy(), grad.double().numpy()

    stats: dict[str, float] = {}
    bad_y, bad_g = ~np.isfinite(ys), ~np.isfinite(gs)
    stats["nonfinite_output_fraction"] = float(bad_y.mean())
    stats["nonfinite_gradient_fraction"] = float(bad_g.mean())
    if bad_y.any():
        at = float(xs[bad_y][np.argmax(np.abs(xs[bad_y]))])
        return ScreenVerdict(False, f"non-finite output (e.g. at x={at:g})", stats)
    if bad_g.any():
        at = float(xs[bad_g][np.argmax(np.abs(xs[bad_g]))])
        return ScreenVerdict(False, f"non-finite gradient (e.g. at x={at:g})", stats)

    gauss = slice(0, 1000)  # the N(0,1) probe samples
    y_g, g_g = ys[gauss], gs[gauss]
    stats["output_mean"] = float(y_g.mean())
    stats["output_std"] = float(y_g.std())
    stats["output_rms"] = float(np.sqrt(np.mean(y_g**2)))
    stats["gain"] = float(np.sqrt(np.mean(g_g**2)))
    stats["gradient_std"] = float(g_g.std())
    if stats["output_std"] <= t.constant_std * (1.0 + abs(stats["output_mean"])):
        return ScreenVerdict(False, "constant output", stats)

    in_range = np.abs(xs) <= 5.0
    design = np.stack([xs[in_range], np.ones(in_range.sum())], axis=1)
    coef, *_ = np.linalg.lstsq(design, ys[in_range], rcond=None)
    resid = ys[in_range] - design @ coef
    total = np.sum((ys[in_range] - ys[in_range].mean()) ** 2)
    r2 = 1.0 - float(np.sum(resid**2) / total) if total > 0 else 1.0
    stats["linear_r2"] = r2
    stats["linear_slope"] = float(coef[0])
    if r2 >= t.linear_r2:
        return ScreenVerdict(False, f"linear (R^2={r2:.6f} against a*x+b on [-5, 5])", stats)

    if stats["output_rms"] > t.max_output_rms:
        return ScreenVerdict(False, f"exploding output (RMS {stats['output_rms']:.3g} under N(0,1))", stats)
    if stats["gain"] > t.max_gain:
        return ScreenVerdict(False, f"exploding gain (RMS derivative {stats['gain']:.3g} under N(0,1))", stats)
    if stats["gain"] < t.min_gain:
        return ScreenVerdict(False, f"vanishing gain (RMS derivative {stats['gain']:.3g} under N(0,1))", stats)
    return ScreenVerdict(True, None, stats)
