"""Module-level job functions for executor tests: well-behaved, failing, hanging and
worker-killing candidates. Ray workers import them by name (`tests` is on their PYTHONPATH,
see conftest.py)."""

from __future__ import annotations

import os
import resource
import signal
import time
from typing import Any

import torch

from afsearch.execute._worker_cache import per_worker, per_worker_builds


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

