"""The `cost` objective is a count: two searches with the same seed and objectives accuracy and
cost propose, score and rank the same candidates, costs included (it used to be a measured time,
different on every run)."""

from __future__ import annotations

from afsearch.report.runs import leaderboard_rows
from afsearch.search.config import SearchConfig
from afsearch.search.engine import Search


def _leaderboard(tmp_path, name: str) -> list[tuple]:
    config = SearchConfig(space="swish", task="breast-cancer-mlp", strategy="nsga2",
                          strategy_options={"population": 4}, objectives=["accuracy", "cost"],
                          budget=12, steps=20, backend="local", baselines=["relu", "tanh"],
                          validate_top=0, seed=3, name=name)
    with Search.create(config, tmp_path) as search:
        search.run()
        rows = leaderboard_rows(search.store, top=100)
    return [(r["formula"], r["mean"], r["activation_cost"]) for r in rows]


def test_two_runs_give_identical_leaderboards(tmp_path) -> None:
    first, second = _leaderboard(tmp_path, "a"), _leaderboard(tmp_path, "b")
    assert len(first) >= 8
    assert all(cost is not None and cost > 0 for _, _, cost in first)
    assert first == second


def test_a_search_with_several_objectives_and_no_strategy_runs_nsga2(tmp_path) -> None:
    config = SearchConfig(space="gp", task="breast-cancer-mlp", objectives=["accuracy", "cost"], budget=2,
                          backend="local", baselines=[], validate_top=0, name="n")
    with Search.create(config, tmp_path) as search:
        assert search.config.strategy == "nsga2"
        assert type(search.strategy).__name__ == "NSGA2"
