"""The executor interface every strategy uses, the job/result records, and the code that runs
one job inside a worker (shared by the Ray and local backends, so both score identically)."""

from __future__ import annotations

import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from afsearch.errors import ExecutorError, short_traceback

#: a job function: JSON-like payload in, JSON-like dict out; must be a module-level callable
#: (Ray sends it by reference: module and name)
JobFn = Callable[[dict[str, Any]], dict[str, Any]]

Status = Literal["done", "failed", "timeout", "crashed", "cancelled"]
DONE: Status = "done"  # fn returned a dict
FAILED: Status = "failed"  # fn raised (error = short traceback) or returned a non-dict
TIMEOUT: Status = "timeout"  # ran past the job's timeout_s and was killed
CRASHED: Status = "crashed"  # the worker process died (os._exit, OOM kill, lost node twice)
CANCELLED: Status = "cancelled"  # cancel() or shutdown() before it finished



@dataclass(frozen=True)
class Job:
    """One unit of work. `payload` must be JSON-like; `timeout_s` None means no limit."""

    id: str
    payload: dict[str, Any]
    timeout_s: float | None = None


@dataclass(frozen=True)
class JobResult:
    """Exactly one result is produced for every submitted job.

    elapsed_s: seconds the job function ran, measured in the worker when it returned (done,
    failed); otherwise seconds since the job was dispatched. attempts: how many times the job
    was started (a job whose node was lost is re-queued once)."""

    job_id: str
    status: Status
    value: dict[str, Any] | None = None
    error: str | None = None
    worker: str = ""
    elapsed_s: float = 0.0
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.status == DONE


class Executor(ABC):
    """Runs jobs and hands back their results as they complete.

    A strategy submits jobs, then calls `poll` repeatedly; each call returns whatever finished
    since the last one, so nothing waits for the slowest job of a batch. Every submitted job
    yields exactly one JobResult (possibly `cancelled`)."""

    @abstractmethod
    def submit(self, job: Job) -> None:
        """Queue a job; it starts as soon as a slot is free. Job ids must be unique."""

    @abstractmethod
    def poll(self, timeout: float = 0.0) -> list[JobResult]:
        """Results of jobs that completed, waiting up to `timeout` seconds for at least one."""

    @abstractmethod
    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job (its result is `cancelled`). False if it already
        finished or is unknown."""

    @abstractmethod
    def shutdown(self) -> None:
        """Cancel everything and release the workers (and Ray, if this executor started it).
        Idempotent."""

    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many jobs can run at once."""

    @property
    @abstractmethod
    def pending(self) -> int:
        """Submitted jobs whose result has not yet been returned by `poll`."""

    def run_all(self, jobs: Iterable[Job], poll_s: float = 1.0) -> Iterator[JobResult]:
        """Submit `jobs` and yield their results in completion order (a convenience for
        scripts and tests; strategies usually interleave submit and poll themselves)."""
        for job in jobs:
            self.submit(job)
        while self.pending:
            yield from self.poll(poll_s)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def check_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    """Reject per-trial resource requests that no backend can honour."""
    for flag, value in (("--cpus-per-trial", cpus_per_trial), ("--gpus-per-trial", gpus_per_trial)):
        if not math.isfinite(value):
            raise ExecutorError(f"{flag} must be a finite number, got {value}")
    if not cpus_per_trial > 0:
        raise ExecutorError(f"--cpus-per-trial must be > 0, got {cpus_per_trial}")
    if gpus_per_trial < 0:
        raise ExecutorError(f"--gpus-per-trial must be >= 0, got {gpus_per_trial}")
    if gpus_per_trial > 1 and gpus_per_trial != int(gpus_per_trial):
        raise ExecutorError(
            f"--gpus-per-trial {gpus_per_trial}: above 1 it must be a whole number "
            "(fractions such as 0.25 share one GPU)"
        )


def check_machine(cpus_per_trial: float, gpus_per_trial: float) -> None:
    """Reject a per-trial request that this machine cannot fit: a trial runs
    ``int(cpus_per_trial)`` torch threads (a million of them is a MemoryError) and needs
    ``ceil(gpus_per_trial)`` visible GPUs."""
    cpus = len(os.sched_getaffinity(0))
    if cpus_per_trial > cpus:
        raise ExecutorError(f"--cpus-per-trial {cpus_per_trial:g} but this machine has {cpus} CPUs; "
                            f"use at most {cpus}")
    if gpus_per_trial > 0:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus == 0:
            raise ExecutorError(f"--gpus-per-trial {gpus_per_trial:g} but torch sees no GPU on this "
                                "machine; use --gpus-per-trial 0")
        if math.ceil(gpus_per_trial) > gpus:
            raise ExecutorError(f"--gpus-per-trial {gpus_per_trial:g} but this machine has {gpus} GPU(s)")


def threads_for(cpus_per_trial: float) -> int:
    """Torch threads for a worker with this CPU share (at least one)."""
    return max(1, int(cpus_per_trial))


@dataclass(frozen=True)
class WorkerOutcome:
    """What `run_job` hands back from the worker process: the job function's value, or the
    short traceback of what it raised."""

    value: dict[str, Any] | None
    error: str | None
    elapsed_s: float
    pid: int
    node: str = ""  # the Ray node it ran on

    def result(self, job_id: str, worker: str, attempts: int) -> JobResult:
        status: Status = DONE if self.error is None else FAILED
        return JobResult(job_id, status, self.value, self.error, worker, self.elapsed_s, attempts)


def run_job(fn: JobFn, payload: dict[str, Any]) -> WorkerOutcome:
    """Run one job in this process: set torch's thread count from payload["threads"], call fn,
    and turn an exception into a short traceback. Never raises an Exception (BaseExceptions
    such as a timeout pass)."""
    threads = int(payload.get("threads", 1))
    _set_torch_threads(threads)
    start = time.perf_counter()
    try:
        value = fn(payload)
        if not isinstance(value, dict):
            raise TypeError(f"job function returned {type(value).__name__}, expected dict")
    except Exception as exc:  # noqa: BLE001 -- any failure of a candidate is a result
        # the job function's frames, not this one's
        frames = exc.with_traceback(exc.__traceback__.tb_next if exc.__traceback__ else None)
        return WorkerOutcome(None, short_traceback(frames), time.perf_counter() - start, os.getpid())
    return WorkerOutcome(value, None, time.perf_counter() - start, os.getpid())


def _set_torch_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@dataclass
class Running:
    """Book-keeping for a dispatched job (backend-private)."""

    job: Job
    attempts: int
    started: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float | None:
        return None if self.job.timeout_s is None else self.started + self.job.timeout_s

    def result(self, status: Status, error: str | None, worker: str = "") -> JobResult:
        return JobResult(
            job_id=self.job.id,
            status=status,
            error=error,
            worker=worker,
            elapsed_s=time.monotonic() - self.started,
            attempts=self.attempts,
        )
