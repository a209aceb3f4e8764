"""Ray backend: one `ray.remote` task per job, at most `capacity` in flight.

Jobs wait in our own queue and are dispatched only when a slot is free, so a job's timeout
clock starts when it is handed to a worker (it includes the worker's start-up, ~1-3 s for a
fresh worker) and nothing sits pending inside Ray. Ray never retries a task (max_retries=0):
a task whose node is lost is re-queued here `node_retries` times; any other death is a
`crashed` result. Workers are reused between tasks (max_calls=0, also for GPU tasks), so data
cached with `per_worker` is built once per worker."""

from __future__ import annotations

import atexit
import dataclasses
import logging
import math
import os
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afsearch.errors import ExecutorError
from afsearch.execute._base import (
    CANCELLED,
    CRASHED,
    FAILED,
    TIMEOUT,
    Executor,
    Job,
    JobFn,
    JobResult,
    Running,
    WorkerOutcome,
    check_resources,
    run_job,
    threads_for,
)

#: seconds between re-reads of the cluster's nodes (capacity follows nodes joining/leaving)
_REFRESH_S = 5.0
#: seconds to wait for the head node's port before giving up on --ray-address
_CONNECT_TIMEOUT_S = 5.0
#: longest single ray.wait, so Ctrl-C and timeouts are noticed promptly
_WAIT_SLICE_S = 0.5


def _ray_task(fn: JobFn, payload: dict[str, Any]) -> WorkerOutcome:
    import ray

    return dataclasses.replace(run_job(fn, payload), node=ray.get_runtime_context().get_node_id())


@dataclass
class _InFlight(Running):
    nodes: frozenset[str] = field(default_factory=frozenset)  # alive nodes at dispatch


class RayExecutor(Executor):
    """Runs jobs as Ray tasks on an embedded local cluster (default) or an existing one.

    ray_address: None starts an embedded cluster (no dashboard, all CPUs of this machine)
    unless Ray is already initialised in this process, which is then used as is; "auto" or
    "HOST:PORT" joins a running cluster. Ray is shut down by `shutdown()`, at interpreter exit
    and after Ctrl-C (KeyboardInterrupt unwinds through `with` / atexit) only if this executor
    initialised it. num_workers caps how many jobs run at once (default: as many as the
    cluster's nodes fit). init_kwargs go to `ray.init` (e.g. `_temp_dir`). ship_dir: the folder
    of a user's task file, sent to the workers of a joined cluster (`ship_env`)."""

    def __init__(
        self,
        fn: JobFn,
        ray_address: str | None = None,
        cpus_per_trial: float = 1,
        gpus_per_trial: float = 0,
        num_workers: int | None = None,
        node_retries: int = 1,
        init_kwargs: dict[str, Any] | None = None,
        ship_dir: str | None = None,
    ) -> None:
        check_resources(cpus_per_trial, gpus_per_trial)
        if num_workers is not None and num_workers < 1:
            raise ExecutorError(f"--workers must be >= 1, got {num_workers}")
        import ray

        self._ray = ray
        self._fn = fn
        self._cpus = cpus_per_trial
        self._gpus = gpus_per_trial
        self._threads = threads_for(cpus_per_trial)
        self._num_workers = num_workers
        self._node_retries = node_retries
        self._owns_ray = False
        self._reaper: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._queue: deque[tuple[Job, int]] = deque()  # (job, attempts so far)
        self._running: dict[Any, _InFlight] = {}  # ObjectRef -> in-flight job
        self._ref_of: dict[str, Any] = {}  # job id -> ObjectRef
        self._ids: set[str] = set()
        self._ready: list[JobResult] = []
        if not ray.is_initialized():
            self._start_ray(ray_address, {**ship_env(ray_address, ship_dir), **(init_kwargs or {})})
        try:
            self._refresh_nodes()
            self._check_satisfiable()
            self._task = ray.remote(
                num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0, max_calls=0
            )(_ray_task)
        except BaseException:
            self.shutdown()
            raise

    # -- cluster --------------------------------------------------------------------------

    def _start_ray(self, address: str | None, init_kwargs: dict[str, Any]) -> None:
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.WARNING,
            "log_to_driver": False,
        }
        if address is None:
            kwargs["num_cpus"] = len(os.sched_getaffinity(0))
        else:
            kwargs["address"] = address
        kwargs.update(init_kwargs)
        _quiet_token_auth_notice()
        try:
            if address is not None:
                _check_reachable(address)
            self._ray.init(**kwargs)
        except Exception as exc:
            if address is None:
                raise
            raise ExecutorError(
                f"cannot join the Ray cluster at --ray-address {address}: {_first(exc)}; start "
                "one with `ray start --head`, or omit --ray-address to use a local cluster"
            ) from exc
        self._owns_ray = True
        atexit.register(self.shutdown)
        if address is None:
            self._reaper = _start_reaper()

    def _refresh_nodes(self) -> None:
        alive = [n for n in self._ray.nodes() if n.get("Alive")]
        self._alive = frozenset(n["NodeID"] for n in alive)
        slots = sum(self._slots_on(n.get("Resources", {})) for n in alive)
        self._slots = slots if self._num_workers is None else min(slots, self._num_workers)
        self._refreshed = time.monotonic()
        self._biggest = {
            key: max((n.get("Resources", {}).get(key, 0.0) for n in alive), default=0.0)
            for key in ("CPU", "GPU")
        }

    def _slots_on(self, resources: dict[str, float]) -> int:
        slots = math.floor(resources.get("CPU", 0.0) / self._cpus + 1e-9)
        if self._gpus > 0:
            slots = min(slots, math.floor(resources.get("GPU", 0.0) / self._gpus + 1e-9))
        return slots

    def _check_satisfiable(self) -> None:
        if self._slots > 0:
            return
        raise unsatisfiable(self._cpus, self._gpus, self._biggest)

    # -- Executor -------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._slots

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._running) + len(self._ready)

    @property
    def owns_ray(self) -> bool:
        return self._owns_ray

    def submit(self, job: Job) -> None:
        if self._closed:
            raise RuntimeError("executor is shut down")
        if job.id in self._ids:
            raise ValueError(f"duplicate job id {job.id!r}")
        self._ids.add(job.id)
        self._queue.append((job, 0))
        self._dispatch()

    def poll(self, timeout: float = 0.0) -> list[JobResult]:
        results, self._ready = self._ready, []
        if self._closed:
            return results
        end = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now - self._refreshed > _REFRESH_S:
                self._refresh_nodes()
            self._dispatch()
            if not self._running:
                return results + self._take_ready()
            wait = 0.0 if results else min(max(0.0, end - now), _WAIT_SLICE_S)
            deadlines = [r.deadline for r in self._running.values() if r.deadline is not None]
            if deadlines:
                wait = max(0.0, min(wait, min(deadlines) - now))
            refs = list(self._running)
            ready, _ = self._ray.wait(refs, num_returns=1, timeout=wait)
            if ready:
                ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                result = self._collect(ref)
                if result is not None:
                    results.append(result)
            results += self._expire()
            results += self._take_ready()
            if results or time.monotonic() >= end:
                self._dispatch()
                return results

    def cancel(self, job_id: str) -> bool:
        for job, attempts in self._queue:
            if job.id == job_id:
                self._queue.remove((job, attempts))
                self._ready.append(Running(job, attempts).result(CANCELLED, "cancelled"))
                return True
        ref = self._ref_of.pop(job_id, None)
        if ref is None:
            return False
        run = self._running.pop(ref)
        self._kill(ref)
        self._ready.append(run.result(CANCELLED, "cancelled while running"))
        return True

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        for job, attempts in self._queue:
            self._ready.append(Running(job, attempts).result(CANCELLED, "executor shut down"))
        for ref, run in self._running.items():
            self._kill(ref)
            self._ready.append(run.result(CANCELLED, "executor shut down"))
        self._queue.clear()
        self._running.clear()
        self._ref_of.clear()
        if self._owns_ray:
            atexit.unregister(self.shutdown)
            if self._ray.is_initialized():
                self._ray.shutdown()
            if self._reaper is not None:
                self._reaper.terminate()
                self._reaper.wait(timeout=10)

    # -- internals ------------------------------------------------------------------------

    def _take_ready(self) -> list[JobResult]:
        ready, self._ready = self._ready, []
        return ready

    def _dispatch(self) -> None:
        if not self._running and self._queue and self._slots == 0:
            self._refresh_nodes()
            self._check_satisfiable()  # every node that could run a trial is gone
        while self._queue and len(self._running) < self._slots:
            job, attempts = self._queue.popleft()
            payload = dict(job.payload)
            payload.setdefault("threads", self._threads)
            ref = self._task.remote(self._fn, payload)
            self._running[ref] = _InFlight(job, attempts + 1, nodes=self._alive)
            self._ref_of[job.id] = ref

    def _kill(self, ref: Any) -> None:
        try:
            self._ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001 -- already finished or its node is gone
            pass

    def _expire(self) -> list[JobResult]:
        now = time.monotonic()
        expired = [
            (ref, run)
            for ref, run in self._running.items()
            if run.deadline is not None and now >= run.deadline
        ]
        results = []
        for ref, run in expired:
            del self._running[ref]
            del self._ref_of[run.job.id]
            self._kill(ref)
            results.append(run.result(TIMEOUT, f"exceeded timeout of {run.job.timeout_s:g} s"))
        return results

    def _collect(self, ref: Any) -> JobResult | None:
        """The result of a finished task, or None when its job was re-queued."""
        exc_mod = self._ray.exceptions
        run = self._running.pop(ref)
        del self._ref_of[run.job.id]
        try:
            out = self._ray.get(ref)
        except (exc_mod.NodeDiedError, exc_mod.ObjectLostError) as exc:
            return self._node_lost(run, exc)
        except exc_mod.OutOfMemoryError as exc:
            return run.result(CRASHED, f"worker killed for using too much memory: {_first(exc)}")
        except exc_mod.WorkerCrashedError as exc:
            self._refresh_nodes()
            if run.nodes - self._alive:  # a node died while this job ran: likely its node
                return self._node_lost(run, exc)
            return run.result(CRASHED, f"worker died: {_first(exc)}")
        except exc_mod.TaskCancelledError:
            return run.result(CANCELLED, "cancelled by Ray")
        except exc_mod.RayTaskError as exc:  # e.g. fn not importable on the worker
            return run.result(FAILED, _last(exc))
        except exc_mod.RayError as exc:
            return run.result(CRASHED, f"{type(exc).__name__}: {_first(exc)}")
        return out.result(run.job.id, f"{out.node[:12]}:{out.pid}", run.attempts)

    def _node_lost(self, run: _InFlight, exc: Exception) -> JobResult | None:
        self._refresh_nodes()
        if run.attempts <= self._node_retries:
            self._queue.appendleft((run.job, run.attempts))
            return None
        return run.result(CRASHED, f"node lost {run.attempts} times: {_first(exc)}")


def _start_reaper() -> subprocess.Popen[bytes] | None:
    """The watchdog that ends this process's embedded Ray session if this process is killed
    without shutting it down (`afsearch.execute._reaper`); None where it cannot run."""
    try:
        node = _ray_node()
        stat = Path(f"/proc/{os.getpid()}/stat").read_text()
        started = stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, AttributeError):
        return None
    return subprocess.Popen([sys.executable, "-m", "afsearch.execute._reaper", str(os.getpid()), started,
                             node.get_session_dir_path()], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _ray_node() -> Any:
    """Ray's node object of this process (no public API names the session directory)."""
    import ray

    return ray._private.worker._global_node


def unsatisfiable(cpus: float, gpus: float, biggest: dict[str, float]) -> ExecutorError:
    """The error for a per-trial request that no node (`biggest`: the largest CPU and GPU
    counts of any alive node) can run."""
    if gpus > 0 and biggest["GPU"] == 0:
        return ExecutorError(
            f"--gpus-per-trial {gpus:g} but the Ray cluster has no GPUs; use "
            "--gpus-per-trial 0 or --ray-address of a cluster with GPUs"
        )
    return ExecutorError(
        f"no Ray node can run a trial needing {cpus:g} CPUs and {gpus:g} GPUs "
        f"(largest node: {biggest['CPU']:g} CPUs, {biggest['GPU']:g} GPUs); "
        "lower --cpus-per-trial / --gpus-per-trial"
    )


class _TokenAuthNotice(logging.Filter):
    """Drops the WARNING Ray 2.60 logs at every `ray.init` that it enabled token authentication
    by default: that is the secure default working, not something to act on, and it broke
    `--quiet`. Ray's other messages (the warning that authentication is *disabled* included)
    still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


def _quiet_token_auth_notice() -> None:
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _TokenAuthNotice) for f in logger.filters):
        logger.addFilter(_TokenAuthNotice())


#: never shipped with a task folder: version control, environments, run directories, caches
SHIP_EXCLUDES = [".git", ".venv", "venv", "runs", "__pycache__", "*.pt", "*.pt2", "*.ckpt", ".ray"]


def ship_env(address: str | None, folder: str | None) -> dict[str, Any]:
    """`ray.init` keywords that make a user's task file importable on every node: its folder
    becomes the job's working directory (Ray uploads it once per job; Ray refuses folders over
    its upload limit, hundreds of MiB, so keep task files beside code, not beside data), and
    workers look the file up there by name. An embedded cluster shares this machine's files,
    so nothing is shipped."""
    if address is None or folder is None:
        return {}
    from afsearch.evaluate.custom import SHIPPED_ENV

    return {"runtime_env": {"working_dir": folder, "excludes": SHIP_EXCLUDES,
                            "env_vars": {SHIPPED_ENV: "1"}}}


def _check_reachable(address: str) -> None:
    """Fail in seconds on a HOST:PORT nobody listens on (ray.init would retry for minutes)."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected auto or HOST:PORT")
    with socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT_S):
        pass


def check_reachable(address: str) -> None:
    """`_check_reachable` with the error a user sees (also used before a run is created)."""
    try:
        _check_reachable(address)
    except (OSError, ValueError) as exc:
        raise ExecutorError(
            f"cannot join the Ray cluster at --ray-address {address}: {_first(exc)}; start "
            "one with `ray start --head`, or omit --ray-address to use a local cluster"
        ) from exc


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _last(exc: BaseException) -> str:
    text = str(exc).strip()
    return text[-1500:] if text else type(exc).__name__
