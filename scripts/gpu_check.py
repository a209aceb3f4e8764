"""The CUDA path, measured side by side on one GPU (run where one is lent; never in CI).

    python scripts/gpu_check.py [--device cuda] [--quick]

1. compiled (TorchScript) vs eager forward+backward of sampled formulas on 1M elements;
2. the trainer with bf16 autocast: scores of a few candidates on mnist1d-mlp, twice (repeatability);
3. packing: K candidates trained in one call vs one call each (candidates per minute);
4. fractional-GPU packing as Ray does it with --gpus-per-trial 1/N: N worker processes sharing
   the GPU, each training candidates with the real trainer, vs one process (candidates/min).
   Ray itself is not used here (the GPU machine has no Ray); the processes are what Ray's
   workers would be."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FORMULAS = ["relu(x)", "x * sigmoid(x)", "0.5 * x * (1 + erf(x / 1.4142135623730951))", "max(x, tanh(x))",
            "cos(x) - x", "x * tanh(softplus(x))", "relu(x) + eps[0.01] * x * exp(-x^2 / 2)", "sin(x) * x"]


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def compiled_vs_eager(device: str, n: int) -> None:
    from afsearch.compile import compile_activation
    from afsearch.evaluate.screen import screen
    from scripts.bench_compile import sample_formulas

    section(f"compiled vs eager, forward+backward on 1M elements ({device})")
    x = torch.randn(1_000_000, device=device)

    def once(m: torch.nn.Module) -> float:
        xi = x.detach().requires_grad_(True)
        torch.cuda.synchronize() if device == "cuda" else None
        t0 = time.perf_counter()
        m(xi).sum().backward()
        torch.cuda.synchronize() if device == "cuda" else None
        return time.perf_counter() - t0

    ratios, te, ts = [], 0.0, 0.0
    for expr in [e for e in sample_formulas(200, 0) if screen(e).passed][:n]:
        c = compile_activation(expr)
        eager, scripted = c.new_module().to(device), c.new_scripted().to(device)
        for _ in range(3):
            once(eager), once(scripted)
        be = min(once(eager) for _ in range(5))
        bs = min(once(scripted) for _ in range(5))
        te, ts = te + be, ts + bs
        ratios.append(be / bs)
    print(f"{len(ratios)} formulas: eager {te / len(ratios) * 1e3:.3f} ms, scripted {ts / len(ratios) * 1e3:.3f} ms per call; "
          f"scripted/eager throughput total {te / ts:.2f}x, median {statistics.median(ratios):.2f}x, min {min(ratios):.2f}x")


def trainer_bf16(device: str, budget: int) -> None:
    from afsearch.evaluate import evaluate

    section(f"trainer on {device} (bf16 autocast on CUDA), mnist1d-mlp, {budget} steps, seeds 0-2")
    for formula in FORMULAS[:4]:
        a = evaluate(formula, "mnist1d-mlp", budget=budget, seeds=3, device=device, ladder=False, measure_cost=False)
        b = evaluate(formula, "mnist1d-mlp", budget=budget, seeds=3, device=device, ladder=False, measure_cost=False)
        same = [x.val_accuracy == y.val_accuracy for x, y in zip(a.per_seed, b.per_seed, strict=True)]
        print(f"{formula:<48} acc {a.mean_accuracy:.4f} ± {a.std_accuracy:.4f}  {a.seconds:.2f} s  "
              f"repeat identical: {all(same)}", flush=True)


def packing(device: str, k: int, budget: int) -> None:
    """The --pack path (evaluate_many with stacked weights) against one evaluation at a time."""
    from afsearch.evaluate import evaluate, evaluate_many

    section(f"packing on {device}: {k} candidates trained together vs one at a time ({budget} steps)")
    formulas = (FORMULAS * (k // len(FORMULAS) + 1))[:k]
    common = {"budget": budget, "device": device, "ladder": False, "measure_cost": False}
    evaluate_many(formulas[:2], "mnist1d-mlp", **{**common, "budget": 20})  # warm-up
    t0 = time.perf_counter()
    for i, f in enumerate(formulas):
        evaluate(f, "mnist1d-mlp", seed=i, **common)
    single = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate_many(formulas, "mnist1d-mlp", pack=True, **common)
    packed = time.perf_counter() - t0
    print(f"one at a time {single:.2f} s ({k / single * 60:.0f}/min), packed {packed:.2f} s "
          f"({k / packed * 60:.0f}/min): packing {single / packed:.2f}x")


def _worker(args: tuple[str, list[str], int, mp.Queue]) -> None:
    device, formulas, budget, queue = args
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    from afsearch.evaluate import evaluate

    t0 = time.perf_counter()
    for f in formulas:
        evaluate(f, "mnist1d-mlp", budget=budget, device=device, ladder=False, measure_cost=False)
    queue.put(time.perf_counter() - t0)


def fractional(device: str, per_process: int, budget: int, counts: tuple[int, ...]) -> None:
    section(f"fractional GPU sharing (what --gpus-per-trial 1/N gives): N processes on one {device}")
    ctx = mp.get_context("spawn")
    base = None
    for n in counts:
        queue = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=((device, FORMULAS[:per_process], budget, queue),)) for _ in range(n)]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        wall = time.perf_counter() - t0
        rate = n * per_process / wall * 60
        base = base or rate
        print(f"N={n}: {n * per_process} candidates in {wall:.1f} s (incl. process start) = {rate:.0f}/min, "
              f"{rate / base:.2f}x N=1", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name(0)})" if args.device == "cuda" else ""), flush=True)
    q = args.quick
    compiled_vs_eager(args.device, 6 if q else 30)
    trainer_bf16(args.device, 200 if q else 1200)
    packing(args.device, 8 if q else 64, 200 if q else 1200)
    fractional(args.device, 2 if q else 6, 100 if q else 1200, (1, 2) if q else (1, 4, 8))


if __name__ == "__main__":
    main()
