"""Executor benchmark (issue 5). Prints:

1. per-candidate overhead of Ray vs in-process on trivial candidates (ms);
2. throughput on a real proxy task (MLP on MNIST-1D) with 1 vs 2 Ray workers (ratio);
3. packing on vs off: K candidates trained in one call vs one call each (ratio).

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

from afsearch.execute import Executor, Job, make_executor
from afsearch.execute import testing_jobs as tj

ACTS = list(tj.ACTIVATIONS)


def run(ex: Executor, jobs: list[Job]) -> float:
    """Seconds to push `jobs` through `ex`; every one must succeed."""
    start = time.perf_counter()
    results = list(ex.run_all(jobs, poll_s=0.5))
    seconds = time.perf_counter() - start
    bad = [r for r in results if not r.ok]
    assert not bad and len(results) == len(jobs), bad[:1]
    return seconds


def jobs(prefix: str, payloads: list[dict[str, Any]]) -> list[Job]:
    return [Job(f"{prefix}{i}", p) for i, p in enumerate(payloads)]


def overhead(n: int) -> None:
    print(f"\n== 1. per-candidate overhead, trivial candidates (n={n}) ==")
    local = make_executor("local", fn=tj.echo)
    run(local, jobs("w", [{}] * 10))
    t_local = run(local, jobs("l", [{"x": i} for i in range(n)]))
    with make_executor("ray", fn=tj.echo) as ex:
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


def proxy_payloads(n: int, epochs: int) -> list[dict[str, Any]]:
    return [
        {
            "activation": ACTS[i % len(ACTS)],
            "seed": i,
            "data": "mnist1d",
            "epochs": epochs,
            "hidden": 100,
        }
        for i in range(n)
    ]


def throughput(n: int, epochs: int) -> None:
    print(f"\n== 2. throughput, MLP 40-100-100-10 on MNIST-1D, {epochs} epochs, {n} candidates ==")
    rates = {}
    for workers in (1, 2):
        with make_executor("ray", fn=tj.train_mlp, num_workers=workers) as ex:
            run(ex, jobs("w", proxy_payloads(2 * workers, 1)))  # build data, warm torch
            seconds = run(ex, jobs("t", proxy_payloads(n, epochs)))
        rates[workers] = n / seconds
        print(f"{workers} worker(s): {seconds:6.2f} s, {rates[workers]:5.2f} candidates/s")
    print(
        f"throughput 2 vs 1 workers: {rates[2] / rates[1]:.2f}x (target >= 1.7x); "
        f"load average now {os.getloadavg()[0]:.2f}"
    )


def packing(k: int, epochs: int) -> None:
    print(f"\n== 3. packing, {k} candidates, MNIST-1D MLP, {epochs} epochs ==")
    payloads = proxy_payloads(k, epochs)
    packed = {
        "activations": [p["activation"] for p in payloads],
        "seeds": [p["seed"] for p in payloads],
        "data": "mnist1d",
        "epochs": epochs,
        "hidden": 100,
    }
    local_one = make_executor("local", fn=tj.train_mlp)
    local_packed = make_executor("local", fn=tj.train_mlp_packed)
    run(local_one, jobs("w", proxy_payloads(1, 1)))  # data built, torch warm
    t_one = run(local_one, jobs("o", payloads))
    t_packed = run(local_packed, [Job("p", packed)])
    print("in-process, 1 thread:")
    print(
        f"  one call per candidate: {t_one:6.2f} s; one packed call: {t_packed:6.2f} s; "
        f"packing speed-up {t_one / t_packed:.2f}x"
    )
    with (
        make_executor("ray", fn=tj.train_mlp) as one,
        make_executor("ray", fn=tj.train_mlp_packed) as pk,
    ):
        run(one, jobs("w", proxy_payloads(2 * one.capacity, 1)))
        t_one = run(one, jobs("o", proxy_payloads(2 * k, epochs)))
        half = [dict(packed, seeds=[s + j * k for s in packed["seeds"]]) for j in range(2)]
        t_packed = run(pk, jobs("p", half))
    print(f"ray, {one.capacity} workers, {2 * k} candidates:")
    print(
        f"  one job per candidate: {t_one:6.2f} s; 2 packed jobs of {k}: {t_packed:6.2f} s; "
        f"packing speed-up {t_one / t_packed:.2f}x"
    )


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
    n_trivial, n_proxy, epochs, k = (40, 6, 3, 4) if args.quick else (300, 16, 10, 8)
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
            throughput(n_proxy, epochs)
        if 3 in only:
            packing(k, epochs)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
