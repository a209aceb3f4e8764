"""Compile latency and compiled-vs-eager throughput on a fixed seeded sample of formulas.

    python scripts/bench_compile.py [--n 200] [--seed 0] [--elements 1000000] [--reps 5]

Prints: TorchScript compile latency per candidate (parse + codegen + load + torch.jit.script,
cold cache; target <= 10 ms median) and forward+backward throughput of the scripted module
and of the fused-kernel module (afsearch.compile.fused, default "auto" policy: formulas eager
runs as one torch kernel, e.g. silu(x), stay eager) vs the eager module on a 1M-element float32
tensor, each pair measured side by side (target >= 1x)."""

from __future__ import annotations

import argparse
import random
import statistics
import time
import warnings
from collections.abc import Callable

import torch

from afsearch.compile import CompileCache, CompiledActivation
from afsearch.compile.fused import fused_status, to_program
from afsearch.evaluate.screen import screen
from afsearch.expr import BINARY, UNARY, Expr, to_string


def random_formula(rng: random.Random, depth: int) -> Expr:
    if depth == 0 or rng.random() < 0.25:
        roll = rng.random()
        if roll < 0.7:
            return Expr.var()
        if roll < 0.85:
            return Expr.param("beta")
        return Expr.const(round(rng.uniform(-2, 2), 2))
    if rng.random() < 0.55:
        return Expr.call(rng.choice(UNARY), random_formula(rng, depth - 1))
    return Expr.call(rng.choice(BINARY), random_formula(rng, depth - 1), random_formula(rng, depth - 1))


def sample_formulas(n: int, seed: int) -> list[Expr]:
    rng = random.Random(seed)
    out: list[Expr] = []
    seen: set[str] = set()
    while len(out) < n:
        e = random_formula(rng, rng.randint(2, 5))
        if e.uses_x() and to_string(e) not in seen:
            seen.add(to_string(e))
            out.append(e)
    return out


class PlainExecutor(torch.nn.Module):
    """Runs a scripted module with TorchScript's graph optimisations off (no profiling or
    autodiff-graph specialisation): on CPU, where nothing gets fused, those cost more than
    they save for these element-wise chains; on CUDA they fuse kernels and pay."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.jit.optimized_execution(False):
            return self.inner(x)


def _once(module: torch.nn.Module, x: torch.Tensor) -> float:
    xi = x.detach().requires_grad_(True)
    t0 = time.perf_counter()
    module(xi).sum().backward()
    return time.perf_counter() - t0


def fwd_bwd_seconds(eager: torch.nn.Module, scripted: torch.nn.Module, x: torch.Tensor, reps: int) -> tuple[float, float]:
    """Best-of-reps seconds for each, measured interleaved so machine noise hits both alike."""
    for _ in range(3):  # warm-up: the profiling executor specialises during the first calls
        _once(eager, x)
        _once(scripted, x)
    best_e = best_s = float("inf")
    for _ in range(reps):
        best_e = min(best_e, _once(eager, x))
        best_s = min(best_s, _once(scripted, x))
    return best_e, best_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--throughput-sample", type=int, default=40, help="formulas timed for throughput")
    parser.add_argument("--only", choices=("all", "scripted", "fused"), default="all",
                        help="which compiled modules to time against eager")
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    torch.manual_seed(0)
    formulas = sample_formulas(args.n, args.seed)

    cache = CompileCache()
    latencies = []
    for expr in formulas:
        t0 = time.perf_counter()
        compiled = cache.compile(to_string(expr))
        compiled.new_scripted()
        latencies.append((time.perf_counter() - t0) * 1e3)
    latencies.sort()
    print(f"formulas: {len(formulas)} (seed {args.seed}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(
        f"compile latency (parse+codegen+load+script, cold): median {statistics.median(latencies):.2f} ms, "
        f"p90 {latencies[int(0.9 * len(latencies))]:.2f} ms, max {latencies[-1]:.2f} ms  (target: median <= 10 ms)"
    )

    lowering = []
    for expr in formulas:
        t0 = time.perf_counter()
        to_program(expr)
        lowering.append((time.perf_counter() - t0) * 1e3)
    print(f"fused-kernel program lowering per candidate: median {statistics.median(lowering):.3f} ms, "
          f"max {max(lowering):.3f} ms (the kernel library itself is built once per machine)")

    x = torch.randn(args.elements)
    usable = [e for e in formulas if screen(e).passed][: args.throughput_sample]
    print(f"forward+backward on {args.elements:,} elements, {len(usable)} screened formulas, "
          "each pair timed interleaved (best of reps):")
    status = fused_status()
    print(f"fused kernels: {'available' if status.available else 'UNAVAILABLE'} ({status.reason})")
    variants: list[tuple[str, str, Callable[[CompiledActivation], torch.nn.Module]]] = [
        ("scripted (default executor)", "scripted", lambda c: c.new_scripted()),
        ("scripted (plain executor)", "scripted", lambda c: PlainExecutor(c.new_scripted())),
        ("fused kernel", "fused", lambda c: c.new_fused()),
    ]
    for label, short, make in variants:
        if args.only not in ("all", short):
            continue
        ratios = []
        eager_total = other_total = 0.0
        for expr in usable:
            compiled = cache.compile(expr)
            t_eager, t_other = fwd_bwd_seconds(compiled.new_module(), make(compiled), x, args.reps)
            eager_total += t_eager
            other_total += t_other
            ratios.append(t_eager / t_other)
        print(
            f"  {label}: eager {eager_total / len(usable) * 1e3:.2f} ms, {short} "
            f"{other_total / len(usable) * 1e3:.2f} ms per call; throughput {short}/eager: total "
            f"{eager_total / other_total:.2f}x, median {statistics.median(ratios):.2f}x, "
            f"min {min(ratios):.2f}x  (target >= 1x)"
        )


if __name__ == "__main__":
    main()
