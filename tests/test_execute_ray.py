"""The Ray backend on the session's local Ray (2 CPUs): results as they complete, cancel,
every fault of issue 5 recorded as a result, and the same scores as the local backend."""

from __future__ import annotations

import time
from typing import Any

import pytest

from afsearch.candidate import Candidate
from afsearch.errors import ExecutorError
from afsearch.evaluate.protocol import EvalRequest, serve
from afsearch.execute import Executor, Job, JobResult, make_executor
from tests import executor_jobs as tj


def drain(ex: Executor, limit_s: float = 60.0) -> list[JobResult]:
    results: list[JobResult] = []
    end = time.monotonic() + limit_s
    while ex.pending:
        assert time.monotonic() < end, f"jobs still pending after {limit_s} s"
        results += ex.poll(0.5)
    return results


def by_id(results: list[JobResult]) -> dict[str, JobResult]:
    ids = [r.job_id for r in results]
    assert len(ids) == len(set(ids)), f"a job was reported twice: {ids}"
    return {r.job_id: r for r in results}


def test_runs_jobs_and_leaves_the_shared_ray_running(ray_session: Any) -> None:
    with make_executor("ray", fn=tj.echo) as ex:
        assert ex.capacity == 2
        assert not ex.owns_ray
        results = by_id(list(ex.run_all(Job(str(i), {"x": i}) for i in range(6))))
    assert ray_session.is_initialized()
    assert sorted(results) == [str(i) for i in range(6)]
    assert all(r.status == "done" and r.value["x"] == int(r.job_id) for r in results.values())
    assert all(r.value["threads"] == 1 for r in results.values())  # matches cpus_per_trial=1
    assert all(":" in r.worker for r in results.values())


def test_results_arrive_as_they_complete(ray_session: Any) -> None:
    with make_executor("ray", fn=tj.sleep) as ex:
        ex.submit(Job("slow", {"seconds": 4}))
        ex.submit(Job("fast", {"seconds": 0.05}))
        first: list[JobResult] = []
        end = time.monotonic() + 30
        while not first and time.monotonic() < end:
            first = ex.poll(0.5)
        assert [r.job_id for r in first] == ["fast"]
        assert ex.pending == 1  # the slow one is still running: nobody waited for it
        assert [r.job_id for r in drain(ex)] == ["slow"]


def test_queue_beyond_capacity_and_cancel(ray_session: Any) -> None:
    with make_executor("ray", fn=tj.sleep, num_workers=1) as ex:
        assert ex.capacity == 1
        ex.submit(Job("running", {}))  # sleeps forever
        ex.submit(Job("queued", {"seconds": 0.01}))
        ex.submit(Job("after", {"seconds": 0.01}))
        assert ex.poll(0.5) == []
        assert ex.cancel("queued") and ex.cancel("running")
        assert not ex.cancel("running")
        results = by_id(drain(ex))
    assert {k: r.status for k, r in results.items()} == {
        "running": "cancelled",
        "queued": "cancelled",
        "after": "done",
    }


def test_raising_candidate_is_failed_with_short_traceback(ray_session: Any) -> None:
    with make_executor("ray", fn=tj.raise_error) as ex:
        (result,) = list(ex.run_all([Job("bad", {"x": 3})]))
    assert result.status == "failed"
    assert result.error.endswith("ValueError: candidate 3 is broken")
    assert "raise_error" in result.error and len(result.error) < 1600


def test_hanging_candidate_is_killed_at_timeout(ray_session: Any) -> None:
    with make_executor("ray", fn=tj.sleep) as ex:
        ex.submit(Job("hang", {}, timeout_s=2))
        ex.submit(Job("ok", {"seconds": 0.1}, timeout_s=30))
        results = by_id(drain(ex))
        assert results["hang"].status == "timeout"
        assert 2 <= results["hang"].elapsed_s < 10
        assert results["ok"].status == "done"
        after = by_id(list(ex.run_all([Job("after", {"seconds": 0.01}, timeout_s=30)])))
    assert after["after"].status == "done"  # the killed worker was replaced


def test_candidate_that_exits_its_worker_is_recorded(ray_session: Any) -> None:
    with make_executor("ray", fn=tj.exit_worker) as ex:
        (result,) = list(ex.run_all([Job("exit", {})]))
    assert result.status == "crashed"
    assert "worker died" in result.error and result.attempts == 1
    with make_executor("ray", fn=tj.echo) as ex:  # the search continues on a new worker
        assert [r.status for r in ex.run_all([Job("next", {})])] == ["done"]


def test_huge_allocation_is_recorded(ray_session: Any) -> None:
    with make_executor("ray", fn=tj.allocate_huge) as ex:
        results = by_id(list(ex.run_all([Job("fails", {"gib": 512}), Job("dies", {"die": True})])))
        survivor = list(ex.run_all([Job("small", {"gib": 0})]))
    assert results["fails"].status == "failed" and "allocate" in results["fails"].error
    assert results["dies"].status == "crashed" and "worker died" in results["dies"].error
    assert survivor[0].status == "done"  # address-space limit restored, worker replaced


def test_data_is_built_once_per_worker(ray_session: Any) -> None:
    with make_executor("ray", fn=tj.cached_data) as ex:
        results = list(ex.run_all(Job(str(i), {}) for i in range(12)))
    pids = {r.value["pid"] for r in results}
    per_pid_max = {p: max(r.value["builds"] for r in results if r.value["pid"] == p) for p in pids}
    assert all(b == 1 for b in per_pid_max.values()), per_pid_max


def test_ray_and_local_give_the_same_scores(ray_session: Any) -> None:
    jobs = [
        Job(f"{formula}-{seed}", EvalRequest((Candidate.activation(formula),), "breast-cancer-mlp", 60, (seed,),
                                             ladder=None, measure_cost=False).to_json())
        for formula in ("relu(x)", "tanh(x)", "x * sigmoid(x)")
        for seed in (0, 1)
    ]
    with make_executor("ray", fn=serve) as ex:
        remote = by_id(list(ex.run_all(jobs)))
    local = by_id(list(make_executor("local", fn=serve).run_all(jobs)))
    for job in jobs:
        assert remote[job.id].status == local[job.id].status == "done"
        assert remote[job.id].value["status"] == "done"
        for key in ("mean_loss", "mean_accuracy", "test_accuracy"):
            assert remote[job.id].value[key] == local[job.id].value[key], job.id


def test_gpu_request_on_gpu_less_cluster_is_refused_up_front(ray_session: Any) -> None:
    if ray_session.cluster_resources().get("GPU"):
        pytest.skip("cluster has GPUs")
    with pytest.raises(
        ExecutorError, match="--gpus-per-trial 0.25 but the Ray cluster has no GPUs"
    ):
        make_executor("ray", fn=tj.echo, gpus_per_trial=0.25)
    assert ray_session.is_initialized()


def test_cpu_request_larger_than_any_node_is_refused(ray_session: Any) -> None:
    with pytest.raises(ExecutorError, match="no Ray node can run a trial needing 8 CPUs"):
        make_executor("ray", fn=tj.echo, cpus_per_trial=8)


def test_fractional_cpus_pack_more_trials(ray_session: Any) -> None:
    with make_executor("ray", fn=tj.echo, cpus_per_trial=0.5) as ex:
        assert ex.capacity == 4
        results = list(ex.run_all(Job(str(i), {}) for i in range(4)))
    assert all(r.status == "done" and r.value["threads"] == 1 for r in results)


def test_shutdown_cancels_running_and_queued(ray_session: Any) -> None:
    ex = make_executor("ray", fn=tj.sleep, num_workers=1)
    ex.submit(Job("running", {}))
    ex.submit(Job("queued", {}))
    ex.poll(0.2)
    ex.shutdown()
    ex.shutdown()  # idempotent
    results = by_id(ex.poll())
    assert {k: r.status for k, r in results.items()} == {
        "running": "cancelled",
        "queued": "cancelled",
    }
    assert ray_session.is_initialized()


def test_job_whose_node_is_lost_twice_is_crashed_not_requeued_again(ray_session: Any) -> None:
    from afsearch.execute._ray import _InFlight

    with make_executor("ray", fn=tj.echo) as ex:
        first = ex._node_lost(_InFlight(Job("j", {}), attempts=1), RuntimeError("node gone"))
        assert first is None and ex.pending == 1  # re-queued once
        ex.cancel("j")
        second = ex._node_lost(_InFlight(Job("k", {}), attempts=2), RuntimeError("node gone"))
    assert second is not None and second.status == "crashed"
    assert second.error == "node lost 2 times: node gone"
