"""Executor benchmark (issue 5). Prints:

1. per-candidate overhead of Ray vs in-process on trivial candidates (ms);
2. throughput on a real proxy task (MLP on MNIST-1D) with 1 vs 2 Ray workers (ratio);
3. packing on vs off: K candidates in one evaluation request (what `--pack K` sends) vs one
   request each (ratio).

Run: .venv/bin/python scripts/bench_executor.py [--quick] [--only 1|2|3 ...]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from typing import Any

import ray

from afsearch.candidate import Candidate
from afsearch.evaluate.protocol import EvalReply, EvalRequest, serve
from afsearch.execute import Executor, Job, make_executor

FORMULAS = ["relu(x)", "tanh(x)", "x * sigmoid(x)", "gelu(x)", "elu(x)", "softplus(x)", "sin(x)",
            "x * asinh(x) * asinh(x)"]


def echo(payload: dict[str, Any]) -> dict[str, Any]:
    """A trivial job (defined here: Ray ships a __main__ function by value)."""
    return {"x": payload.get("x"), "pid": os.getpid()}


def run(ex: Executor, jobs: list[Job]) -> float:
    """Seconds to push `jobs` through `ex`; every one must succeed."""
    start = time.perf_counter()
    results = list(ex.run_all(jobs, poll_s=0.5))
    seconds = time.perf_counter() - start
    bad = [r for r in results if not r.ok or r.value.get("status") == "error"]
    assert not bad and len(results) == len(jobs), bad[:1]
    return seconds


def jobs(prefix: str, payloads: list[dict[str, Any]]) -> list[Job]:
    return [Job(f"{prefix}{i}", p) for i, p in enumerate(payloads)]


def overhead(n: int) -> None:
    print(f"\n== 1. per-candidate overhead, trivial candidates (n={n}) ==")
    local = make_executor("local", fn=echo)
    run(local, jobs("w", [{}] * 10))
    t_local = run(local, jobs("l", [{"x": i} for i in range(n)]))
    with make_executor("ray", fn=echo) as ex:
        run(ex, jobs("w", [{}] * 4 * ex.capacity))  # warm workers
        t_batch = run(ex, jobs("b", [{"x": i} for i in range(n)]))
        trips = []
        for i in range(min(n, 50)):
            start = time.perf_counter()
            run(ex, [Job(f"r{i}", {"x": i})])
            trips.append(time.perf_counter() - start)
        capacity = ex.capacity
    print(f"in-process (local backend): {1e3 * t_local / n:8.3f} ms/candidate")
    print(f"ray, {n} submitted at once ({capacity} workers): {1e3 * t_batch / n:8.3f} ms/candidate")
    print(
        f"ray, one round trip at a time:        {1e3 * statistics.median(trips):8.3f} ms/candidate (median)"
    )


def requests(n: int, steps: int, pack: int = 1, first_seed: int = 0) -> list[dict[str, Any]]:
    """`n` real evaluation requests on mnist1d-mlp (ladder off, no cost timing), `pack`
    candidates per request: what `afsearch search --pack` sends."""
    cands = [Candidate.activation(FORMULAS[i % len(FORMULAS)]) for i in range(n)]
    return [EvalRequest(tuple(cands[i:i + pack]), "mnist1d-mlp", steps, (first_seed + i,), ladder=None,
                        measure_cost=False).to_json() for i in range(0, n, pack)]


def throughput(n: int, steps: int) -> None:
    print(f"\n== 2. throughput, mnist1d-mlp (40-100-100-10 MLP), {steps} steps, {n} candidates ==")
    rates = {}
    for workers in (1, 2):
        with make_executor("ray", fn=serve, num_workers=workers) as ex:
            run(ex, jobs("w", requests(2 * workers, 10)))  # build data, warm torch
            seconds = run(ex, jobs("t", requests(n, steps)))
        rates[workers] = n / seconds
        print(f"{workers} worker(s): {seconds:6.2f} s, {rates[workers]:5.2f} candidates/s")
    print(
        f"throughput 2 vs 1 workers: {rates[2] / rates[1]:.2f}x (target >= 1.7x); "
        f"load average now {os.getloadavg()[0]:.2f}"
    )


def packing(k: int, steps: int) -> None:
    print(f"\n== 3. packing (the --pack path: one request of {k} candidates), mnist1d-mlp, {steps} steps ==")
    local = make_executor("local", fn=serve)
    run(local, jobs("w", requests(2, 10)))  # data built, torch warm
    t_one = run(local, jobs("o", requests(k, steps)))
    t_packed = run(local, jobs("p", requests(k, steps, pack=k)))
    print("in-process, 1 thread:")
    print(f"  one request per candidate: {t_one:6.2f} s; one packed request: {t_packed:6.2f} s; "
          f"packing speed-up {t_one / t_packed:.2f}x")
    with make_executor("ray", fn=serve) as ex:
        run(ex, jobs("w", requests(2 * ex.capacity, 10)))
        t_one = run(ex, jobs("o", requests(2 * k, steps)))
        t_packed = run(ex, jobs("p", requests(2 * k, steps, pack=k)))
        capacity = ex.capacity
    print(f"ray, {capacity} workers, {2 * k} candidates:")
    print(f"  one job per candidate: {t_one:6.2f} s; 2 packed jobs of {k}: {t_packed:6.2f} s; "
          f"packing speed-up {t_one / t_packed:.2f}x")
    reply = EvalReply.decode(EvalRequest.from_json(requests(k, 10, pack=k)[0]),
                             serve(requests(k, 10, pack=k)[0]))
    assert all(r.ok for r in reply.results), [r.reason for r in reply.results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    parser.add_argument(
        "--only",
        type=int,
        choices=(1, 2, 3),
        action="append",
        help="run only this section (repeatable)",
    )
    args = parser.parse_args()
    only = set(args.only or (1, 2, 3))
    n_trivial, n_proxy, steps, k = (40, 6, 300, 4) if args.quick else (300, 16, 1200, 8)
    cpus = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(f"machine: {cpus} CPUs; ray {ray.__version__}; load average (1 min) {load:.2f}")
    if load > 0.5:
        print("WARNING: the machine is busy; parallel throughput figures will be low")
    ray.init(
        num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    try:
        if 1 in only:
            overhead(n_trivial)
        if 2 in only:
            throughput(n_proxy, steps)
        if 3 in only:
            packing(k, steps)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
