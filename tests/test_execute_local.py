"""The in-process serial backend and the interface pieces that need no Ray."""

from __future__ import annotations

import pytest
import torch

from afsearch.errors import ExecutorError
from afsearch.execute import Job, LocalExecutor, make_executor
from afsearch.execute._base import short_traceback
from tests import executor_jobs as tj


def test_runs_jobs_serially_and_returns_each_result_once() -> None:
    with make_executor("local", fn=tj.echo) as ex:
        results = list(ex.run_all(Job(str(i), {"x": i}) for i in range(5)))
        assert ex.pending == 0
    assert [r.job_id for r in results] == ["0", "1", "2", "3", "4"]
    assert all(r.status == "done" and r.attempts == 1 for r in results)
    assert [r.value["x"] for r in results] == [0, 1, 2, 3, 4]
    assert ex.capacity == 1


def test_poll_runs_one_job_per_call() -> None:
    ex = LocalExecutor(tj.echo)
    ex.submit(Job("a", {}))
    ex.submit(Job("b", {}))
    assert ex.pending == 2
    assert [r.job_id for r in ex.poll()] == ["a"]
    assert ex.pending == 1
    assert [r.job_id for r in ex.poll()] == ["b"]
    assert ex.poll() == []


def test_exception_becomes_failed_with_short_traceback() -> None:
    (result,) = LocalExecutor(tj.raise_error).run_all([Job("bad", {"x": 7})])
    assert result.status == "failed"
    assert result.error.endswith("ValueError: candidate 7 is broken")
    assert "raise_error" in result.error
    assert "run_job" not in result.error  # executor frames are left out
    assert len(result.error) <= 1600


def test_hang_is_stopped_at_timeout_and_next_job_runs() -> None:
    ex = LocalExecutor(tj.sleep)
    results = list(ex.run_all([Job("hang", {}, timeout_s=0.3), Job("ok", {"seconds": 0.01})]))
    assert [(r.job_id, r.status) for r in results] == [("hang", "timeout"), ("ok", "done")]
    assert 0.3 <= results[0].elapsed_s < 2
    assert "timeout of 0.3 s" in results[0].error


def test_huge_allocation_fails_fast_and_is_recorded() -> None:
    (result,) = LocalExecutor(tj.allocate_huge).run_all([Job("big", {"gib": 512})])
    assert result.status == "failed"
    assert "allocate" in result.error


def test_cancel_queued_job_and_shutdown_accounts_for_all() -> None:
    ex = LocalExecutor(tj.echo)
    for i in range(3):
        ex.submit(Job(str(i), {}))
    assert ex.cancel("1") is True
    assert ex.cancel("nope") is False
    ex.shutdown()
    results = ex.poll()
    assert sorted((r.job_id, r.status) for r in results) == [
        ("0", "cancelled"),
        ("1", "cancelled"),
        ("2", "cancelled"),
    ]
    with pytest.raises(RuntimeError):
        ex.submit(Job("late", {}))


def test_torch_threads_follow_cpus_per_trial_and_are_restored() -> None:
    before = torch.get_num_threads()
    (result,) = LocalExecutor(tj.echo, cpus_per_trial=1).run_all([Job("t", {})])
    assert result.value["threads"] == 1
    assert torch.get_num_threads() == before


def test_duplicate_job_id_is_refused() -> None:
    ex = LocalExecutor(tj.echo)
    ex.submit(Job("a", {}))
    with pytest.raises(ValueError, match="duplicate"):
        ex.submit(Job("a", {}))


def test_non_dict_return_is_a_failure() -> None:
    (result,) = LocalExecutor(len).run_all([Job("n", {})])  # type: ignore[arg-type]
    assert result.status == "failed"
    assert "expected dict" in result.error


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "dask"}, "unknown --backend"),
        ({"backend": "local", "ray_address": "auto"}, "--ray-address only applies"),
        ({"backend": "local", "num_workers": 4}, "one candidate at a time"),
        ({"backend": "local", "cpus_per_trial": 0}, "--cpus-per-trial must be > 0"),
        ({"backend": "local", "gpus_per_trial": 1.5}, "whole number"),
    ],
)
def test_bad_arguments_raise_executor_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ExecutorError, match=message):
        make_executor(fn=tj.echo, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="machine has a GPU")
def test_local_gpu_request_without_gpu_is_refused() -> None:
    with pytest.raises(ExecutorError, match="no GPU"):
        make_executor("local", fn=tj.echo, gpus_per_trial=0.25)


def test_short_traceback_is_capped() -> None:
    try:
        raise RuntimeError("x" * 5000)
    except RuntimeError as exc:
        text = short_traceback(exc)
    assert len(text) <= 1503 and text.startswith("...")
