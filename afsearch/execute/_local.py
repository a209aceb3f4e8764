"""In-process serial backend, for debugging and exactly reproducible runs.

Each `poll` runs the next queued job to completion in the calling thread (whatever `timeout`
says) and returns its result. Timeouts are best effort: they use SIGALRM
(`signal.setitimer`), so they only work when the executor is driven from the main thread, and
a job stuck inside one long C call (a huge matmul) is only interrupted when that call
returns. A job that kills its process (os._exit, an OOM kill) takes the caller with it: use
the Ray backend for untrusted candidates."""

from __future__ import annotations

import os
import signal
import threading
from collections import deque
from typing import Any

from afsearch.execute._base import (
    CANCELLED,
    TIMEOUT,
    Executor,
    Job,
    JobFn,
    JobResult,
    Running,
    check_machine,
    check_resources,
    run_job,
    threads_for,
)


class _JobTimeout(BaseException):
    """Raised by SIGALRM inside a job; a BaseException so `except Exception` in a candidate
    cannot swallow it."""


class LocalExecutor(Executor):
    def __init__(self, fn: JobFn, cpus_per_trial: float = 1, gpus_per_trial: float = 0) -> None:
        check_resources(cpus_per_trial, gpus_per_trial)
        check_machine(cpus_per_trial, gpus_per_trial)
        self._fn = fn
        self._threads = threads_for(cpus_per_trial)
        self._queue: deque[Job] = deque()
        self._ids: set[str] = set()
        self._ready: list[JobResult] = []
        self._closed = False

    @property
    def capacity(self) -> int:
        return 1

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._ready)

    def submit(self, job: Job) -> None:
        if self._closed:
            raise RuntimeError("executor is shut down")
        if job.id in self._ids:
            raise ValueError(f"duplicate job id {job.id!r}")
        self._ids.add(job.id)
        self._queue.append(job)

    def poll(self, timeout: float = 0.0) -> list[JobResult]:
        results, self._ready = self._ready, []
        if not results and self._queue:
            results.append(self._run(self._queue.popleft()))
        return results

    def cancel(self, job_id: str) -> bool:
        for job in self._queue:
            if job.id == job_id:
                self._queue.remove(job)
                self._ready.append(Running(job, attempts=0).result(CANCELLED, "cancelled"))
                return True
        return False

    def shutdown(self) -> None:
        for job in list(self._queue):
            self.cancel(job.id)
        self._closed = True

    def _run(self, job: Job) -> JobResult:
        import torch

        run = Running(job, attempts=1)
        payload = dict(job.payload)
        payload.setdefault("threads", self._threads)
        threads_before = torch.get_num_threads()
        try:
            with _alarm(job.timeout_s):
                out = run_job(self._fn, payload)
        except _JobTimeout:
            return run.result(TIMEOUT, f"exceeded timeout of {job.timeout_s:g} s")
        finally:
            torch.set_num_threads(threads_before)
        return out.result(job.id, f"local:{os.getpid()}", 1)


class _alarm:
    """SIGALRM after `seconds` raises _JobTimeout; a no-op off the main thread or for None."""

    def __init__(self, seconds: float | None) -> None:
        self.active = seconds is not None and threading.current_thread() is threading.main_thread()
        self.seconds = seconds
        self.previous: Any = None

    def __enter__(self) -> None:
        if self.active:
            self.previous = signal.signal(signal.SIGALRM, _raise_timeout)
            signal.setitimer(signal.ITIMER_REAL, max(self.seconds or 0.0, 1e-3))

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)


def _raise_timeout(signum: int, frame: object) -> None:
    raise _JobTimeout
