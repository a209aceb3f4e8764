"""Module-level job functions for executor tests and `scripts/bench_executor.py`: well-behaved,
failing, hanging and worker-killing candidates, and a small real proxy task (an MLP on
MNIST-1D or synthetic data, data built once per worker). They live in the package so Ray
workers and subprocesses can import them by name."""

from __future__ import annotations

import os
import random
import resource
import signal
import time
from typing import Any

import torch

from afsearch.execute._worker_cache import per_worker, per_worker_builds
from afsearch.execute.packing import train_packed

ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "silu": torch.nn.functional.silu,
    "gelu": torch.nn.functional.gelu,
    "elu": torch.nn.functional.elu,
    "softplus": torch.nn.functional.softplus,
    "sin": torch.sin,
    "xsig": lambda x: x * torch.sigmoid(x),
}


def echo(payload: dict[str, Any]) -> dict[str, Any]:
    """Trivial candidate: returns its input and what the worker looks like."""
    return {"x": payload.get("x"), "threads": torch.get_num_threads(), "pid": os.getpid()}


def raise_error(payload: dict[str, Any]) -> dict[str, Any]:
    raise ValueError(f"candidate {payload.get('x')!r} is broken")


def sleep(payload: dict[str, Any]) -> dict[str, Any]:
    """Sleeps payload["seconds"] (default: forever, i.e. a hanging candidate)."""
    time.sleep(float(payload.get("seconds", 1e9)))
    return {"slept": payload.get("seconds"), "pid": os.getpid()}


def exit_worker(payload: dict[str, Any]) -> dict[str, Any]:
    os._exit(1)


def allocate_huge(payload: dict[str, Any]) -> dict[str, Any]:
    """Allocates payload["gib"] (default 256) GiB. The address-space limit is lowered to the
    current size + 1 GiB first, so the allocation fails at once instead of eating the
    machine's memory; the limit is restored afterwards. With payload["die"] the process then
    SIGKILLs itself, which is what the kernel's OOM killer does to a real over-allocation."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_vm_size() + (1 << 30), hard))
    try:
        x = torch.empty(int(payload.get("gib", 256)) << 30, dtype=torch.uint8)
        x.fill_(1)
    except (RuntimeError, MemoryError):
        if payload.get("die"):
            os.kill(os.getpid(), signal.SIGKILL)
        raise
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return {"allocated": True}


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def cached_data(payload: dict[str, Any]) -> dict[str, Any]:
    """Reports how often this worker built its data (should be once, however many jobs)."""
    data = per_worker(("testing", "data"), lambda: torch.arange(1000.0))
    return {"sum": float(data.sum()), "builds": per_worker_builds(), "pid": os.getpid()}


# -- a real proxy task ----------------------------------------------------------------------


def _synthetic(seed: int = 0, n: int = 1200, dim: int = 20, classes: int = 5) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    w = torch.randn(dim, classes, generator=g)
    y = (torch.tanh(x @ w) + 0.3 * torch.randn(n, classes, generator=g)).argmax(1)
    cut = n * 3 // 4
    return {"x_train": x[:cut], "y_train": y[:cut], "x_test": x[cut:], "y_test": y[cut:]}


def _mnist1d() -> dict[str, Any]:
    from mnist1d.data import get_dataset_args, make_dataset

    state = random.getstate()
    np_state = __import__("numpy").random.get_state()
    try:
        d = make_dataset(get_dataset_args())  # offline; reseeds the global RNGs
    finally:
        random.setstate(state)
        __import__("numpy").random.set_state(np_state)
    x_train = torch.tensor(d["x"], dtype=torch.float32)
    x_test = torch.tensor(d["x_test"], dtype=torch.float32)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    return {
        "x_train": (x_train - mean) / std,
        "y_train": torch.tensor(d["y"], dtype=torch.long),
        "x_test": (x_test - mean) / std,
        "y_test": torch.tensor(d["y_test"], dtype=torch.long),
    }


def _data(name: str) -> dict[str, Any]:
    if name == "synthetic":
        return per_worker(("testing", "synthetic"), _synthetic)
    if name == "mnist1d":
        return per_worker(("testing", "mnist1d"), _mnist1d)
    raise ValueError(f"unknown data {name!r}")


def train_mlp(payload: dict[str, Any]) -> dict[str, Any]:
    """One candidate: payload {"activation", "seed", "data": "synthetic"|"mnist1d", "epochs",
    "hidden"} -> {"loss", "accuracy", "seconds", "builds"}."""
    out = train_mlp_packed(
        {**payload, "activations": [payload["activation"]], "seeds": [payload.get("seed", 0)]}
    )
    return {**out["results"][0], "builds": out["builds"]}


def train_mlp_packed(payload: dict[str, Any]) -> dict[str, Any]:
    """K candidates in one call: payload {"activations": [...], "seeds": [...], ...} ->
    {"results": [{"loss", "accuracy", "seconds"}, ...], "builds"}."""
    data = _data(payload.get("data", "synthetic"))
    results = train_packed(
        [ACTIVATIONS[name] for name in payload["activations"]],
        payload["seeds"],
        **data,
        hidden=int(payload.get("hidden", 64)),
        epochs=int(payload.get("epochs", 3)),
    )
    return {"results": results, "builds": per_worker_builds()}
