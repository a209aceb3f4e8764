"""Would packing pay for the transformer task? Packing K models into one saves per-operator
overhead (dispatch, autograd bookkeeping, kernel launches), not arithmetic. This profiles
training steps of lm-transformer (GELU, the task's default sizes, 1 thread) and prints how a
step's time splits between matrix products and operators so short that their fixed overhead
dominates (under --short-us microseconds per call: the most that packing
could remove). For comparison it profiles mnist1d-mlp, where packing 16 candidates measured
2.5x (README), and then the default packed path itself (16 mnist1d-mlp members): the share of
the loss (log-softmax, NLL) there bounds what a cheaper loss path could save.

    python scripts/lm_step_profile.py              # 30 steps each, after 5 warm-up steps
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os

import torch
from bench_cnn_packing import FORMULAS  # a script beside this one
from torch.profiler import ProfilerActivity, profile

from afsearch.candidate import Candidate
from afsearch.evaluate import get_task, train
from afsearch.reference import reference_candidate

MATMUL = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul",
          "aten::_scaled_dot_product_flash_attention_for_cpu",
          "aten::_scaled_dot_product_flash_attention_for_cpu_backward"}


def split(task_name: str, steps: int, short_us: float) -> None:
    task = get_task(task_name)
    act = reference_candidate("gelu").activation_factory()
    recipe = dataclasses.replace(task.recipe, steps=5)
    train(lambda: task.model(act), task.data, recipe, seed=0)  # warm-up
    def seconds(n: int) -> float:
        return train(lambda: task.model(act), task.data, dataclasses.replace(task.recipe, steps=n), seed=0).seconds

    per_step = (seconds(2 * steps) - seconds(steps)) / steps  # the validation at the end cancels
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(lambda: task.model(act), task.data, dataclasses.replace(task.recipe, steps=steps), seed=0)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::") or "Fused" in e.key]
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL)
    short = sum(e.self_cpu_time_total for e in events if e.key not in MATMUL and e.count
                and e.self_cpu_time_total / e.count < short_us)
    print(f"{task_name}: {per_step * 1e3:.1f} ms per training step; "
          f"operator time: matrix products {matmul / total:.0%}, "
          f"operators under {short_us:.0f} us per call {short / total:.0%} (profiled: {steps} steps and the final "
          "validation)")


def packed_loss_share(steps: int) -> None:
    from afsearch.evaluate.packed import MLP_PACK, train_packed

    formulas = FORMULAS[:MLP_PACK]  # the 16 mixed-cost formulas bench_cnn_packing times
    task = get_task("mnist1d-mlp")
    factories = [Candidate.activation(f).activation_factory() for f in formulas]
    builds = [lambda f=f: task.model(f) for f in factories]
    train_packed(builds, task.data, dataclasses.replace(task.recipe, steps=5), [0] * len(builds))  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_packed(builds, task.data, dataclasses.replace(task.recipe, steps=steps * 5), [0] * len(builds))
    events = [e for e in prof.key_averages() if e.key.startswith("aten::") or "Fused" in e.key]
    total = sum(e.self_cpu_time_total for e in events)
    loss = sum(e.self_cpu_time_total for e in events if "log_softmax" in e.key or "nll_loss" in e.key)
    fused = sum(e.self_cpu_time_total for e in events if "Fused" in e.key)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL)
    print(f"mnist1d-mlp packed ({len(builds)} members): operator time: matrix products {matmul / total:.0%}, "
          f"fused activations {fused / total:.0%}, loss (log-softmax, NLL) {loss / total:.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--short-us", type=float, default=20.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, 1 thread, load average {os.getloadavg()[0]:.2f}")
    for task in ("lm-transformer", "mnist1d-mlp"):
        split(task, args.steps, args.short_us)
    packed_loss_share(args.steps)


if __name__ == "__main__":
    main()
