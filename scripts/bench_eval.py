"""Benchmark the evaluator on a fixed seeded sample of random GP-style formulas (mnist1d-mlp).

Prints: the fraction rejected at each ladder stage; total compute with the ladder vs the full
budget for every candidate; recall (how many of the top 10 under full training survive the
ladder); the same with the search schedulers asha and median in place of the quality gate
(candidates in sample order, each with the cutoffs of those before it); a sweep of the
quality-gate ratio replayed from the recorded gate statistics (the
trainer is deterministic, so a replay gives the decision a real run would take); and
candidates per minute at full budget: the default search path (packed), one by one, against
a plain preloaded loop with fused AdamW (the reference) and a DataLoader loop, for the default
MLP and a 4x wider one, with the matmul floor.

    .venv/bin/python scripts/bench_eval.py --n 200
    .venv/bin/python scripts/bench_eval.py --speed-only        # the throughput table only
    .venv/bin/python scripts/bench_eval.py --n 60 --no-speed   # ladder and schedulers only
"""

from __future__ import annotations

import argparse
import collections
import math
import random
import statistics
import time
from dataclasses import replace

import torch
from plain_loop import plain_steps  # a script beside this one
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from afsearch.candidate import Candidate
from afsearch.evaluate import (
    LadderConfig,
    Recipe,
    evaluate,
    evaluate_many,
    get_task,
)
from afsearch.evaluate import baselines as bl
from afsearch.expr import fingerprint, parse
from afsearch.search.schedulers import Finished, make_scheduler

UNARY = ["sin", "cos", "tanh", "sigmoid", "abs", "exp", "relu"]
BINARY = ["+", "-", "*"]
CONSTS = ["0.5", "1", "2", "-1", "3"]


def random_formula(rng: random.Random, depth: int = 3) -> str:
    """A random expression tree: unary/binary ops over x and small constants."""
    if depth == 0 or rng.random() < 0.25:
        return "x" if rng.random() < 0.8 else rng.choice(CONSTS)
    if rng.random() < 0.5:
        return f"{rng.choice(UNARY)}({random_formula(rng, depth - 1)})"
    return f"({random_formula(rng, depth - 1)} {rng.choice(BINARY)} {random_formula(rng, depth - 1)})"


def sample(n: int, seed: int) -> list[str]:
    """n functionally distinct formulas (deduplicated by numeric fingerprint)."""
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        text = random_formula(rng)
        try:
            fp = fingerprint(parse(text))
        except Exception:  # noqa: BLE001 - unparsable samples are skipped
            continue
        if fp not in seen:
            seen.add(fp)
            out.append(text)
    return out


def _cosine(step: int, steps: int, lr: float) -> float:
    return lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))


def plain_preloaded(formula: str, task, steps: int, seed: int = 0) -> float:  # noqa: ANN001
    """The reference a careful PyTorch user writes: tensors preloaded, batches by random
    permutation, fused AdamW, the same model, recipe (cosine schedule) and steps; the eager
    activation module (what `nn.Module` code has)."""
    torch.manual_seed(seed)
    model = task.model(Candidate.activation(formula).activation_factory())
    recipe = task.recipe
    plain_steps(model, task.data.train.x, task.data.train.y, steps, recipe.batch_size,
                lambda step: _cosine(step, steps, recipe.lr), recipe.weight_decay, seed)
    with torch.no_grad():
        return float((model(task.data.val.x).argmax(1) == task.data.val.y).float().mean())


def plain_loop(formula: str, task, steps: int, seed: int = 0) -> float:  # noqa: ANN001
    """For reference only: a DataLoader loop with the default (for-each) AdamW."""
    torch.manual_seed(seed)
    act = Candidate.activation(formula).activation_factory()
    model = task.model(act)
    opt = torch.optim.AdamW(model.parameters(), lr=task.recipe.lr,
                            weight_decay=task.recipe.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loader = DataLoader(TensorDataset(task.data.train.x, task.data.train.y),
                        batch_size=task.recipe.batch_size, shuffle=True)
    step = 0
    while step < steps:
        for xb, yb in loader:
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == steps:
                break
    with torch.no_grad():
        return float((model(task.data.val.x).argmax(1) == task.data.val.y).float().mean())


def matmul_floor(task, steps: int) -> float:  # noqa: ANN001
    """Seconds per candidate if only the model's matrix products ran (forward, and backward
    for inputs and weights), at this machine's speed for exactly those shapes."""
    model = task.model(nn.ReLU)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    bs = task.recipe.batch_size
    mats = [(torch.randn(bs, lin.in_features), torch.randn(lin.in_features, lin.out_features),
             torch.randn(bs, lin.out_features)) for lin in linears]
    for _ in range(20):
        for a, w, _g in mats:
            a @ w
    start = time.perf_counter()
    reps = 200
    for _ in range(reps):
        for i, (a, w, g) in enumerate(mats):
            a @ w  # forward
            a.t() @ g  # weight gradient
            if i:
                g @ w.t()  # input gradient (not for the first layer)
    return (time.perf_counter() - start) / reps * steps


def _timed(fn, items) -> tuple[float, list[float]]:  # noqa: ANN001
    start = time.perf_counter()
    accs = fn(items)
    return len(items) / (time.perf_counter() - start) * 60, accs


def throughput(speed: list[str], task, budget: int, packs: list[int]) -> float:  # noqa: ANN001
    """Candidates per minute at full budget, measured side by side in this process (1 thread,
    same seeds): the default search path (packed, `MLP_PACK`), larger packs, one by one,
    a plain preloaded fused-AdamW loop (the 1.00x reference), a DataLoader loop; with each
    path's mean validation accuracy (they must agree within seed noise). Returns the
    reference's rate."""
    import datetime
    import os

    from afsearch.evaluate.packed import MLP_PACK

    def ours(items: list[str]) -> list[float]:
        return [evaluate(f, task, budget=budget, ladder=False, measure_cost=False).mean_accuracy for f in items]

    def packed(k: int):  # noqa: ANN202
        def run(items: list[str]) -> list[float]:
            out = []
            for i in range(0, len(items), k):
                out += [r.mean_accuracy for r in evaluate_many(items[i:i + k], task, budget=budget, ladder=False,
                                                               measure_cost=False)]
            return out
        return run

    paths = {f"afsearch packed {k}{' (the default search path)' if k == MLP_PACK else ''}": packed(k)
             for k in packs}
    paths["afsearch one by one"] = ours
    paths["plain preloaded loop, fused AdamW (reference)"] = lambda items: [plain_preloaded(f, task, budget)
                                                                         for f in items]
    paths["plain DataLoader loop, default AdamW"] = lambda items: [plain_loop(f, task, budget) for f in items]
    evaluate_many(speed[:2], task, budget=20, ladder=False, measure_cost=False)  # warm-up: compile, fused library
    print(f"\nthroughput, {task.name}, {budget} steps, {len(speed)} formulas, 1 thread, "
          f"{datetime.date.today()}, load average {os.getloadavg()[0]:.2f} (figures are noise above ~0.3):")
    rates = {name: _timed(fn, speed) for name, fn in paths.items()}
    reference = rates["plain preloaded loop, fused AdamW (reference)"][0]
    floor = 60 / matmul_floor(task, budget)
    for name, (rate, accs) in rates.items():
        print(f"  {name:<52} {rate:7.1f} cand/min  {rate / reference:5.2f}x   "
              f"val accuracy {statistics.fmean(accs):.4f} ± {statistics.stdev(accs):.4f}")
    print(f"  {'matmul floor (only the matrix products)':<52} {floor:7.1f} cand/min  {floor / reference:5.2f}x")
    return reference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=None)
    ap.add_argument("--ratio", type=float, default=None,
                    help="the gate's main ratio (default: the task's calibration)")
    ap.add_argument("--speed-n", type=int, default=16, help="candidates timed in the speed test")
    ap.add_argument("--pack", type=int, action="append",
                    help="candidates per packed call in the speed test (repeatable; default 8 16)")
    ap.add_argument("--speed-only", action="store_true", help="only the throughput comparison")
    ap.add_argument("--no-speed", action="store_true", help="skip the throughput comparison")
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = get_task("mnist1d-mlp")
    budget = args.budget or task.recipe.steps
    formulas = sample(args.n, args.seed)
    ladder = LadderConfig(quality_ratio=args.ratio).for_task(task.spec.gate)
    gate_step = ladder.gate_step(budget)
    if args.speed_only:
        from afsearch.evaluate.screen import screen

        throughput([f for f in formulas if screen(parse(f)).passed][: args.speed_n], task, budget,
                   args.pack or [8, 16])
        wide = get_task("mnist1d-mlp", {"hidden": (400, 400)})
        throughput([f for f in formulas if screen(parse(f)).passed][: max(4, args.speed_n // 4)], wide, budget,
                   args.pack or [8])
        return
    print(f"{len(formulas)} formulas, mnist1d-mlp, budget {budget} steps, seed 0, 1 thread, "
          f"gate at step {gate_step}, ratio {ladder.quality_ratio}")

    t0 = time.perf_counter()
    recipe = Recipe(**{**task.recipe.__dict__, "steps": budget})
    relu_gate = bl.reference_value_at(task, recipe, 0, gate_step)
    gate_cost = time.perf_counter() - t0

    full, lad = {}, {}
    for i, f in enumerate(formulas):
        lad[f] = evaluate(f, task, budget=budget, ladder=ladder, measure_cost=False)
        full[f] = evaluate(f, task, budget=budget, ladder=False, measure_cost=False)
        if (i + 1) % 25 == 0:
            print(f"  {i + 1}/{len(formulas)} done", flush=True)

    by_stage = collections.Counter(r.stage if r.status != "done" else "survived"
                                   for r in lad.values())
    print("\nladder outcome (fraction of all candidates):")
    for stage in ["screen", "stability", "quality", "train", "survived"]:
        print(f"  {stage:10s} {by_stage.get(stage, 0) / len(formulas):6.1%}  ({by_stage.get(stage, 0)})")
    failed = [r for r in lad.values() if r.status == "failed"]
    if failed:
        print(f"  failed     {len(failed)}: e.g. {failed[0].reason}")

    full_s = sum(r.seconds for r in full.values())
    lad_s = sum(r.seconds for r in lad.values()) + gate_cost
    full_steps = sum(r.steps for r in full.values())
    lad_steps = sum(r.steps for r in lad.values()) + gate_step
    print(f"\ncompute: full budget for all {full_s:.1f} s / {full_steps} steps; with ladder "
          f"{lad_s:.1f} s / {lad_steps} steps (incl. ReLU gate baseline {gate_cost:.2f} s) -> "
          f"saved {1 - lad_s / full_s:.1%} of time, {1 - lad_steps / full_steps:.1%} of steps")

    def acc(r):  # noqa: ANN001, ANN202
        return r.mean_accuracy if r.ok and math.isfinite(r.mean_accuracy) else -1.0

    top = sorted(formulas, key=lambda f: -acc(full[f]))[:10]
    kept = [f for f in top if lad[f].ok]
    print(f"recall: {len(kept)}/10 of the top 10 under full training survive the ladder")
    for f in top:
        print(f"  {acc(full[f]):.3f}  {'kept ' if lad[f].ok else 'LOST '} "
              f"{lad[f].stage or ''} {f}")

    # the cross-candidate schedulers (afsearch.search.schedulers) instead of the quality gate,
    # measured for real: the candidates in order, each with the cutoffs of those before it, as
    # a serial search sends them (screen and stability stay on)
    scheduled_s: dict[str, float] = {}
    for name in ("asha", "median"):
        scheduler = make_scheduler(name)
        history: list[Finished] = []
        runs = {}
        for f in formulas:
            cutoffs = scheduler.cutoffs(budget, history, task.metric)
            runs[f] = r = evaluate(f, task, budget=budget, ladder=replace(ladder, quality=False),
                                   measure_cost=False, schedule=cutoffs)
            if r.curve and r.status in ("done", "rejected"):
                history.append(Finished(tuple(r.curve), r.ok))
        sched_s = scheduled_s[name] = sum(r.seconds for r in runs.values())
        sched_steps = sum(r.steps for r in runs.values())
        sched_kept = [f for f in top if runs[f].ok]
        by_stage = collections.Counter(r.stage if r.status != "done" else "survived" for r in runs.values())
        print(f"\nscheduler {name} (milestones {scheduler.milestones(budget)}) instead of the quality gate: "
              + ", ".join(f"{k} {v / len(formulas):.1%}" for k, v in sorted(by_stage.items())))
        print(f"  compute {sched_s:.1f} s / {sched_steps} steps -> saved {1 - sched_s / full_s:.1%} of time, "
              f"{1 - sched_steps / full_steps:.1%} of steps; recall {len(sched_kept)}/10 of the top 10 "
              "reach the full budget")
        print(f"  lost: {[f for f in top if f not in sched_kept]}")

    print("\nquality-gate ratio sweep (replayed from recorded gate accuracies; time of a "
          "passing candidate = its full-run time):")
    base_s = gate_cost + sum(s.seconds for r in lad.values() for s in r.stages
                             if s.name in ("screen", "stability"))
    for ratio in [0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9]:
        thr = ratio * (relu_gate - task.chance) + task.chance
        spent, keep = base_s, 0
        for f in formulas:
            gate = next((s for s in lad[f].stages if s.name == "quality"), None)
            if gate is None:
                continue  # rejected before the gate
            if gate.stats["val_accuracy"] >= thr:
                spent += full[f].seconds
                keep += f in top
            else:
                spent += full[f].seconds * gate_step / budget
        print(f"  ratio {ratio:4.2f} threshold {thr:.3f}: saved {1 - spent / full_s:6.1%}, "
              f"top-10 kept {keep}/10")

    if args.no_speed:
        print(f"total wall time {time.perf_counter() - t0:.0f} s")
        return
    plain = throughput([f for f in formulas if full[f].ok][: args.speed_n], task, budget, args.pack or [8])
    with_ladder = len(formulas) / lad_s * 60
    print(f"  ours with the ladder (a)-(c) over the whole sample {with_ladder:.1f} cand/min -> "
          f"{with_ladder / plain:.2f}x the plain loop at full budget")
    for name, seconds in scheduled_s.items():
        rate = len(formulas) / seconds * 60
        print(f"  ours with screen, stability and scheduler {name} over the whole sample {rate:.1f} cand/min -> "
              f"{rate / plain:.2f}x the plain loop at full budget")
    print(f"total wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
