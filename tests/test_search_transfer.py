"""Searches that score every candidate on several tasks (issue 15, transfer by default): the
default's second task, the aggregate of per-task deltas the strategy and the leaderboard rank
by, validation on every task."""

import json
import math
import subprocess
import sys

import pytest

from afsearch.errors import ConfigError
from afsearch.evaluate.metric import ACCURACY, LOSS
from afsearch.evaluate.result import EvalResult
from afsearch.execute import LocalExecutor
from afsearch.report.runs import leaderboard_rows
from afsearch.search.config import SearchConfig
from afsearch.search.engine import Search
from afsearch.search.objectives import aggregate_deltas, outcome_from_results
from afsearch.store import RunStore
from tests import search_jobs


def _result(task: str, accuracy: float) -> EvalResult:
    return EvalResult({"kind": "activation", "spec": "x"}, task, {}, 10, [0], mean_accuracy=accuracy)


def test_default_task_adds_its_transfer_task_and_records_it(tmp_path):
    config = SearchConfig(budget=1, steps=5, backend="local", validate_top=0, name="d")
    with Search.create(config, tmp_path) as search:
        assert search.config.tasks == ["mnist1d-mlp", "mnist1d-cnn"]
    assert 'extra_tasks = ["mnist1d-cnn"]' in (tmp_path / "d" / "config.toml").read_text()
    for kwargs, tasks in (({"task": "digits-cnn"}, ["digits-cnn"]),  # no transfer task of its own
                          ({"extra_tasks": []}, ["mnist1d-mlp"]),  # asked for one task
                          ({"extra_tasks": ["digits-cnn"]}, ["mnist1d-mlp", "digits-cnn"])):
        config = SearchConfig(budget=1, steps=5, backend="local", validate_top=0, **kwargs)
        config.resolve_extra_tasks()
        assert config.tasks == tasks


def test_unknown_aggregate_is_refused():
    with pytest.raises(ConfigError, match="task_aggregate: unknown aggregate 'median'; allowed: worst, mean"):
        SearchConfig(task_aggregate="median").validate()


def test_outcome_on_several_tasks_is_the_aggregate_of_relative_deltas_to_each_best_baseline():
    results = {"a": _result("a", 0.70), "b": _result("b", 0.90)}
    # +0.10 on a removes a quarter of the baseline's 0.40 error; -0.05 on b doubles its 0.05
    bests = {"a": 0.60, "b": 0.95}
    assert outcome_from_results(results, ["accuracy"], bests, "mean").score == pytest.approx((0.25 - 1.0) / 2)
    assert outcome_from_results(results, ["accuracy"], bests, "worst").score == pytest.approx(-1.0)
    # a task without a baseline counts with its own score; one task: its own score, as before
    assert outcome_from_results(results, ["accuracy"], {"a": 0.60, "b": None}, "worst").score == pytest.approx(0.25)
    assert outcome_from_results({"a": results["a"]}, ["accuracy"], bests).score == pytest.approx(0.70)
    # a loss (lower is better): room for improvement is the distance to 0
    assert LOSS.relative_delta(1.5, 2.0) == pytest.approx(0.25) and ACCURACY.relative_delta(1.0, 1.0) == 0.0
    assert aggregate_deltas([0.1, -0.3], "worst") == -0.3 and aggregate_deltas([0.1, -0.3], "mean") == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="unknown task aggregate"):
        aggregate_deltas([0.1], "best")


def _crafted_search(tmp_path, aggregate: str) -> Search:
    config = SearchConfig(space="gp", budget=20, steps=10, backend="local", baselines=["relu", "elu"],
                          extra_tasks=["digits-cnn"], task_aggregate=aggregate, validate_top=0, seed=3,
                          name=aggregate, pack=1)
    return Search.create(config, tmp_path)


@pytest.mark.parametrize("aggregate", ["mean", "worst"])
def test_strategy_and_leaderboard_rank_by_the_same_aggregate(tmp_path, aggregate):
    with _crafted_search(tmp_path, aggregate) as search:
        search.run(LocalExecutor(search_jobs.crafted))
        assert not search.state.open_proposals  # every proposal was told, after the baselines
        rows = leaderboard_rows(search.store, top=1000)
        assert rows and all(set(r["tasks"]) == {"mnist1d-mlp", "digits-cnn"} for r in rows)
        for row in rows:
            deltas = [part["relative_delta"] for part in row["tasks"].values()]
            assert row["search_score"] == pytest.approx(aggregate_deltas(deltas, aggregate))
        scores = [r["search_score"] for r in rows]
        assert scores == sorted(scores, reverse=True)
        best_genotype, best_score = search.strategy.best()
        winner = next(r for r in rows if r["origin"] != "baseline")
        assert best_score == pytest.approx(winner["search_score"])
        assert search.leaderboard(top=1, include_baselines=False)[0].candidate.id == winner["id"]


def test_real_search_on_the_default_tasks_validates_on_each(tmp_path):
    """Real training, tiny budgets: both tasks train, the leaderboard lists both, validation
    reports each task and which winners beat the best baseline on all of them."""
    config = SearchConfig(budget=3, steps=20, backend="local", baselines=["relu", "tanh"], validate_top=2,
                          validate_seeds=2, seed=5, name="real", ladder=False)
    with Search.create(config, tmp_path) as search:
        search.run()
        report = search.validate()
    assert [part["task"] for part in report["tasks"]] == ["mnist1d-mlp", "mnist1d-cnn"]
    assert report["rows"] == report["tasks"][0]["rows"]  # the main task's, as before
    assert {part["round"] for part in report["tasks"]} == {1}  # one round, recorded per task
    for part in report["tasks"]:
        winners = [row for row in part["rows"] if not row["baseline"]]
        assert len(winners) == 2 and all(len(row["per_seed"]) == 2 for row in winners)
    every = set(report["beats_every_task"])
    for part in report["tasks"]:
        beats = {row["id"] for row in part["rows"] if row.get("beats_baseline")}
        assert every <= beats
    saved = json.loads((tmp_path / "real" / "validation.json").read_text())
    assert len(saved["tasks"]) == 2
    with RunStore.open(tmp_path / "real", "ro") as store:
        rows = leaderboard_rows(store, top=100)
        tasks = {r["id"]: r["tasks"] for r in rows}
        validated = [r for r in rows if r["ranked_by"] == "validated"]
        assert validated and all(all(p["validated_delta"] is not None for p in tasks[r["id"]].values())
                                 for r in validated)
        assert all(math.isfinite(r["aggregate"]["search"]) for r in rows)
    # what a user reads: both tasks in the leaderboard, validation rounds per task in `show`
    def cli(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "afsearch.cli", *args, "--runs-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=300, env={"COLUMNS": "200", **_env()})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    table = cli("leaderboard", "real")
    assert "ranked by the worst over mnist1d-mlp, mnist1d-cnn of the relative delta" in table
    assert "mnist1d-mlp: search" in table and "mnist1d-cnn: search" in table
    shown = cli("show", "real", str(validated[0]["id"]))
    assert "validation round 1 on mnist1d-mlp:" in shown and "validation round 1 on mnist1d-cnn:" in shown
    assert json.loads(cli("runs", "--json"))[0]["best"]["id"] == next(
        r["id"] for r in rows if r["origin"] != "baseline")


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_a_damaged_aggregate_in_config_toml_is_refused_in_one_line(tmp_path):
    from afsearch.errors import RunStoreError

    config = {"budget": 1, "task": "mnist1d-mlp", "extra_tasks": ["mnist1d-cnn"], "task_aggregate": "best"}
    with RunStore.create(tmp_path / "run", config) as store:
        with pytest.raises(RunStoreError, match="config.toml is damaged: task_aggregate 'best' is not one of"):
            leaderboard_rows(store)
