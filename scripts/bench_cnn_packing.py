"""Would packing pay for the CNN tasks? Times training steps of K separate mnist1d-cnn models
one after another against one model that holds all K as grouped convolutions (`groups=K`:
every member keeps its own weights, BatchNorm statistics and batch), side by side in one run.

This is the measurement behind "CNN tasks train one candidate per job" in the README: packing
MLPs pays because a small matmul leaves the CPU idle between kernel launches; a grouped
convolution only pays if the same holds for convolutions at these sizes.

    python scripts/bench_cnn_packing.py            # K = 8 and 16, 200 steps, 1 thread
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

LENGTH, CHANNELS, BATCH, CLASSES = 40, 32, 100, 10  # mnist1d-cnn's defaults


def member_cnn(k: int = 1) -> nn.Sequential:
    """mnist1d-cnn's model (3 strided convs, BatchNorm + ReLU, pooled linear head), `k` of them
    side by side as grouped layers (k = 1: the task's own model)."""
    layers: list[nn.Module] = []
    c_in = 1
    for _ in range(3):
        layers += [nn.Conv1d(k * c_in, k * CHANNELS, 5, stride=2, padding=2, bias=False, groups=k),
                   nn.BatchNorm1d(k * CHANNELS), nn.ReLU()]
        c_in = CHANNELS
    # the head as a grouped 1x1 convolution over the 4 pooled positions flattened per member
    layers += [nn.AdaptiveAvgPool1d(4), nn.Unflatten(1, (k, CHANNELS)), nn.Flatten(2),
               nn.Flatten(1), nn.Unflatten(1, (k * CHANNELS * 4, 1)),
               nn.Conv1d(k * CHANNELS * 4, k * CLASSES, 1, groups=k), nn.Flatten(1)]
    return nn.Sequential(*layers)


def time_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        logits = model(x).view(BATCH, k, CLASSES).transpose(1, 2)  # (batch, classes, member)
        loss = loss_fn(logits, y) * k  # the sum of the members' mean losses
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pack", type=int, action="append", help="members per grouped model (default 8 16)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"mnist1d-cnn sized models, batch {BATCH}, {args.steps} steps, {args.threads} thread(s), "
          f"load average {os.getloadavg()[0]:.2f}")
    for k in args.pack or [8, 16]:
        x = torch.randn(BATCH, k, LENGTH)  # member i reads its own batch x[:, i]
        y = torch.randint(0, CLASSES, (BATCH, k))
        one_by_one = sum(time_steps(member_cnn(1), x[:, i:i + 1], y[:, i:i + 1], 1, args.steps)
                         for i in range(k))
        grouped = time_steps(member_cnn(k), x, y, k, args.steps)
        print(f"  K={k:<3} one by one {one_by_one:7.2f} s   grouped {grouped:7.2f} s   "
              f"packing speed-up {one_by_one / grouped:.2f}x")


if __name__ == "__main__":
    main()
