"""Does packing pay for the CNN tasks? Candidates per minute of the real paths, side by side in
one process (1 thread, same seeds, no ladder): `evaluate_many` in packs of K (grouped
convolutions, `afsearch.evaluate.packed_conv`, what a search runs) against `evaluate` one
candidate at a time, with each path's mean validation accuracy (they must agree: packing
changes only the floating-point summation order).

    python scripts/bench_cnn_packing.py                    # mnist1d-cnn and digits-cnn, K = 8 and 16
    python scripts/bench_cnn_packing.py --steps 200 --pack 8 --task digits-cnn

Activation candidates are 16 formulas of mixed cost (a trainable constant included); digits-cnn
also times 8 EvoNorm layer candidates (each member's layer runs on its own channel block)."""

from __future__ import annotations

import argparse
import datetime
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from afsearch.candidate import Candidate
from afsearch.evaluate import evaluate, evaluate_many
from afsearch.spaces import load_space

FORMULAS = ["relu(x)", "x * sigmoid(x)", "tanh(x)", "x * asinh(x)^2", "gelu(x)", "max(x, 0.1 * x)",
            "x * tanh(softplus(x))", "abs(x) * x", "sin(x) + x", "x * erf(x)", "softplus(x)", "elu(x)",
            "x * sigmoid(beta * x)", "x^3 + x", "min(x, 1) * sigmoid(x)", "cos(x) * x"]


def _rate(paths: dict[str, Callable[[], list[float]]], n: int) -> dict[str, tuple[float, float]]:
    """(candidates per minute, mean validation accuracy) of each path."""
    out = {}
    for name, run in paths.items():
        start = time.perf_counter()
        accs = run()
        out[name] = (n / (time.perf_counter() - start) * 60, statistics.fmean(accs))
    return out


def compare(task: str, candidates: Sequence[str | Candidate], steps: int | None, packs: list[int], label: str) -> None:
    kw = dict(budget=steps, seed=0, ladder=False, measure_cost=False)

    def packed(k: int) -> Callable[[], list[float]]:
        def run() -> list[float]:
            accs = []
            for i in range(0, len(candidates), k):
                accs += [r.mean_accuracy for r in evaluate_many(candidates[i:i + k], task, **kw)]
            return accs
        return run

    def one_by_one() -> list[float]:
        return [evaluate(c, task, pack=False, **kw).mean_accuracy for c in candidates]

    evaluate_many(candidates[:2], task, budget=5, seed=0, ladder=False, measure_cost=False)  # warm-up
    paths = {"one by one": one_by_one, **{f"packs of {k}": packed(k) for k in packs}}
    rates = _rate(paths, len(candidates))
    base = rates["one by one"][0]
    print(f"\n{task}, {label}, {steps or 'default'} steps:")
    for name, (rate, acc) in rates.items():
        print(f"  {name:<12} {rate:7.1f} candidates/min  {rate / base:5.2f}x   mean val accuracy {acc:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", action="append", help="mnist1d-cnn and/or digits-cnn (default both)")
    ap.add_argument("--pack", type=int, action="append", help="members per pack (default 8 and 16)")
    ap.add_argument("--steps", type=int, help="training steps (default: each task's proxy budget)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    packs = args.pack or [8, 16]
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {args.threads} thread(s), "
          f"load average {os.getloadavg()[0]:.2f} (figures are noise above ~0.3)")
    for task in args.task or ["mnist1d-cnn", "digits-cnn"]:
        compare(task, FORMULAS, args.steps, packs, f"{len(FORMULAS)} activation formulas")
        if task == "digits-cnn":
            space = load_space("evonorm")
            layers = [space.to_candidate(space.sample(random.Random(i))) for i in range(8)]
            compare(task, layers, args.steps, [k for k in packs if k <= len(layers)], "8 EvoNorm layers")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
