"""Executors run candidate evaluations and hand back results as they complete.

A strategy only sees the `Executor` interface: `submit(Job)`, `poll(timeout)` ->
[JobResult], `cancel(job_id)`, `shutdown()`, `capacity`, `pending`. Jobs are JSON-like
payloads for one module-level job function, so the executor knows nothing of strategies.

Backends: `ray` (default; embedded local cluster or `ray_address`) and `local` (in-process,
serial, exactly reproducible). Both run a job through the same code, so they give the same
scores for the same payloads."""

from __future__ import annotations

from typing import Any

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
)
from afsearch.execute._local import LocalExecutor
from afsearch.execute._worker_cache import per_worker, per_worker_builds

BACKENDS = ("ray", "local")

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
    """An executor for `backend`. fn defaults to `afsearch.evaluate.evaluate_payload`.
    ray_options (node_retries, init_kwargs) go to the Ray backend."""
    if fn is None:
        from afsearch.evaluate import evaluate_payload

        fn = evaluate_payload
    if backend == "local":
        if ray_address is not None:
            raise ExecutorError("--ray-address only applies to --backend ray")
        if num_workers not in (None, 1):
            raise ExecutorError("--backend local runs one candidate at a time; drop --workers")
        return LocalExecutor(fn, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
    if backend == "ray":
        from afsearch.execute._ray import RayExecutor

        return RayExecutor(
            fn,
            ray_address=ray_address,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            num_workers=num_workers,
            **ray_options,
        )
    raise ExecutorError(f"unknown --backend {backend!r}; choose one of {', '.join(BACKENDS)}")
