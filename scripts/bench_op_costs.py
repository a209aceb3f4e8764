"""Measure the weight of every primitive for the deterministic `cost` objective.

A primitive's weight is the forward+backward time of its compiled form (its torch template with
its guard, applied to x; binary ones to x and x, `pow` to x and 1.5) relative to ReLU's, timed
alternately on the same float32 tensor of 256 x 1024 elements on one thread: the median over
`--rounds` passes through all primitives of each pass's median of `--reps` ratios (a pass
through the table takes seconds, so a burst of load elsewhere on a shared machine hits one
pass of each primitive, not all of them). That is how `afsearch.evaluate.baselines.activation_time` measures a whole
activation. It prints the weights as the `MEASURED_COST` table of
afsearch/expr/primitives.py (paste it there), then checks the additive model: for a set of
formulas, the counted cost (`afsearch.evaluate.cost.formula_cost` with the weights just
measured, relative to ReLU's) against the measured time of the whole activation, as a Spearman
rank correlation and the median and extreme ratios.

    flock /tmp/heavy.lock python scripts/bench_op_costs.py
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from afsearch.compile import CompileCache, compile_activation
from afsearch.evaluate.baselines import time_ratio
from afsearch.expr import PRIMITIVES
from afsearch.expr.tree import Expr

SHAPE = (256, 1024)
CHECK_FORMULAS = (
    "relu(x)", "x * sigmoid(x)", "0.5 * x * (1 + erf(x / 1.4142135623730951))", "tanh(x)",
    "max(x, 0) + min(exp(x) - 1, 0)", "x * tanh(softplus(x))", "x * abs(x)", "x * asinh(x)^2",
    "max(softplus(x) + x^3, x^3)", "sin(x) * exp(-x*x) + tanh(x)", "x * exp(-exp(-x))",
    "asinh(x) * asinh(x) * x", "cos(x) - x", "max(x, sigmoid(x))", "x / (1 + abs(x))",
    "log(abs(x) + 1) * x", "sinc(x) + x", "erf(x) * atan(x) * x", "x * sigmoid(beta * x)",
    "exp(-beta * abs(asinh(x) - erf(x))) * x", "pow(x, 1.5) * x", "relu(x)^2",
    "x * ((1 + 2 * alpha[0]) * sigmoid(x) - alpha[0])", "softsign(x) * x + gelu(x)",
)


def robust_ratios(modules: dict[str, nn.Module], ref: nn.Module, reps: int, rounds: int) -> dict[str, float]:
    """Per module, the median over `rounds` passes of `afsearch.evaluate.baselines.time_ratio` (see the module docstring)."""
    seen: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(rounds):
        for name, module in modules.items():
            seen[name].append(time_ratio(module, ref, SHAPE, reps))
    return {name: statistics.median(values) for name, values in seen.items()}


def primitive_module(name: str) -> nn.Module:
    """`name(x)`, or `name(x, x)` for a binary primitive (`pow(x, 1.5)`: exponents are
    constants or trainable scalars, and a tensor exponent adds a logarithm to the backward)."""
    prim = PRIMITIVES[name]
    args = [Expr.var(), Expr.const(1.5) if name == "pow" else Expr.var()][: prim.arity]
    return fresh_module(Expr.call(name, *args))


def fresh_module(formula: str | Expr) -> nn.Module:
    """A module generated from this very formula: the shared compile cache would hand back the
    class of an equivalent formula compiled earlier (`softsign(x)` for `x / (1 + abs(x))`)."""
    return compile_activation(formula, CompileCache()).new_module()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    relu = nn.ReLU()
    modules = {name: primitive_module(name) for name in PRIMITIVES}
    weights = robust_ratios(modules, relu, args.reps, args.rounds)
    print(f"forward+backward time relative to ReLU, {SHAPE[0]}x{SHAPE[1]} float32, 1 thread, "
          f"median over {args.rounds} rounds of medians of {args.reps}:")
    print("MEASURED_COST: dict[str, float] = {")
    names = list(PRIMITIVES)
    for i in range(0, len(names), 6):
        print("    " + " ".join(f'"{n}": {weights[n]:.1f},' for n in names[i:i + 6]))
    print("}")

    from scipy import stats

    from afsearch.evaluate.cost import formula_cost
    from afsearch.expr import parse

    counted, measured = [], []
    print("\nadditive model check (counted with the weights above vs measured):")
    times = robust_ratios({f: fresh_module(f) for f in CHECK_FORMULAS}, relu, args.reps, args.rounds)
    for formula in CHECK_FORMULAS:
        c = formula_cost(parse(formula), weights) / weights["relu"]
        counted.append(c)
        measured.append(times[formula])
        print(f"  counted {c:6.2f}  measured {times[formula]:6.2f}  {formula}")
    ratios = [c / m for c, m in zip(counted, measured, strict=True)]
    rho = stats.spearmanr(counted, measured).statistic
    print(f"Spearman {rho:.3f}; counted/measured median {statistics.median(ratios):.2f}, "
          f"range {min(ratios):.2f}-{max(ratios):.2f} over {len(ratios)} formulas")


if __name__ == "__main__":
    main()
