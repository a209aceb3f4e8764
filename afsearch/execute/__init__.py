"""Executors run candidate evaluations and hand back results as they complete.

A strategy only sees the `Executor` interface: `submit(Job)`, `poll(timeout)` ->
[JobResult], `cancel(job_id)`, `shutdown()`, `capacity`, `pending`. Jobs are JSON-like
payloads for one module-level job function, so the executor knows nothing of strategies.

Backends: `ray` (default; embedded local cluster or `ray_address`) and `local` (in-process,
serial, exactly reproducible). Both run a job through the same code, so they give the same
scores for the same payloads."""

from __future__ import annotations

import sys
from typing import Any

from afsearch.defaults import BACKENDS
from afsearch.errors import ExecutorError
from afsearch.execute._base import (
    CANCELLED,
    CRASHED,
    DONE,
    FAILED,
    TIMEOUT,
    Executor,
    Job,
    JobFn,
    JobResult,
    Status,
    check_machine,
    check_resources,
)
from afsearch.execute._local import LocalExecutor
from afsearch.execute._worker_cache import per_worker, per_worker_builds

__all__ = [
    "BACKENDS",
    "CANCELLED",
    "CRASHED",
    "DONE",
    "FAILED",
    "TIMEOUT",
    "Executor",
    "Job",
    "JobFn",
    "JobResult",
    "LocalExecutor",
    "Status",
    "check_backend",
    "make_executor",
    "per_worker",
    "per_worker_builds",
]


def make_executor(
    backend: str = "ray",
    fn: JobFn | None = None,
    ray_address: str | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    num_workers: int | None = None,
    **ray_options: Any,
) -> Executor:
    """An executor for `backend`. fn defaults to `afsearch.evaluate.protocol.serve`.
    ray_options (node_retries, init_kwargs) go to the Ray backend."""
    if fn is None:
        from afsearch.evaluate.protocol import serve

        fn = serve
    check_backend(backend, ray_address, cpus_per_trial, gpus_per_trial, num_workers)
    if backend == "local":
        return LocalExecutor(fn, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
    from afsearch.execute._ray import RayExecutor

    return RayExecutor(
        fn,
        ray_address=ray_address,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        num_workers=num_workers,
        **ray_options,
    )


def check_backend(
    backend: str,
    ray_address: str | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    num_workers: int | None = None,
) -> None:
    """Every check of an executor request that needs no running cluster: a caller (the search
    engine) runs it before it writes anything, so a refused request leaves no run directory.
    Covers the flags, this machine's CPUs and GPUs when the trials run here (local backend or
    an embedded Ray cluster), and that the port of --ray-address answers. What only a joined
    cluster can tell (its nodes' resources) is still checked by `RayExecutor`."""
    if backend not in BACKENDS:
        raise ExecutorError(f"unknown --backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    check_resources(cpus_per_trial, gpus_per_trial)
    if backend == "local":
        if ray_address is not None:
            raise ExecutorError("--ray-address only applies to --backend ray")
        if num_workers not in (None, 1):
            raise ExecutorError("--backend local runs one candidate at a time; drop --workers")
        check_machine(cpus_per_trial, gpus_per_trial)
        return
    if num_workers is not None and num_workers < 1:
        raise ExecutorError(f"--workers must be >= 1, got {num_workers}")
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # the cluster this process already joined
        from afsearch.execute._ray import unsatisfiable

        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if not any(r.get("CPU", 0.0) >= cpus_per_trial and r.get("GPU", 0.0) >= gpus_per_trial
                   for r in nodes):
            biggest = {k: max((r.get(k, 0.0) for r in nodes), default=0.0) for k in ("CPU", "GPU")}
            raise unsatisfiable(cpus_per_trial, gpus_per_trial, biggest)
        return
    if ray_address is None:
        check_machine(cpus_per_trial, gpus_per_trial)  # the embedded cluster is this machine
        return
    from afsearch.execute._ray import check_reachable

    check_reachable(ray_address)
