"""A user's own strategy plugs into a search as an object or a class, without editing the
package (the way `optuna.create_study(sampler=...)` takes any sampler)."""

import random

import pytest

from afsearch.errors import ConfigError
from afsearch.execute import LocalExecutor
from afsearch.search.config import SearchConfig
from afsearch.search.engine import Search
from afsearch.search.strategies.base import Outcome, Proposal, Strategy
from afsearch.spaces import load_space
from tests import search_jobs


class GreedyMutation(Strategy):
    """Mutate the best genotype so far; sample while there is none (or with p = 0.3)."""

    name = "greedy"

    def ask(self) -> Proposal | None:
        seed = self.seed_proposal()
        if seed is not None:
            return seed
        if self.best_entry is None or self.rng.random() < 0.3:
            return Proposal(self.space.sample(self.rng), self.new_key(), "sample")
        parent = self.best_entry
        return Proposal(self.space.mutate(parent["genotype"], self.rng), self.new_key(), "mutation",
                        [parent["key"]])

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        self.record(proposal, outcome)


def _config(**kw):
    base = dict(space="gp", extra_tasks=[], budget=12, steps=10, backend="local", baselines=["relu"], validate_top=0, seed=3,
                seed_population=False, pack=1,
                name="mine")
    return SearchConfig(**{**base, **kw})


def test_a_strategy_class_runs_records_its_name_and_resumes(tmp_path):
    with Search.create(_config(budget=6), tmp_path, strategy=GreedyMutation) as search:
        summary = search.run(LocalExecutor(search_jobs.crafted))
        assert summary.trained == 6
        assert search.config.strategy == "object:tests.test_search_strategy_objects.GreedyMutation"
        origins = {e.candidate.origin for e in search.leaderboard(top=100, include_baselines=False)}
        assert "mutation" in origins
    with pytest.raises(ConfigError, match="strategy object"):
        Search.resume("mine", tmp_path)
    with Search.resume("mine", tmp_path, strategy=GreedyMutation, overrides={"budget": 12}) as search:
        assert search.trained == 6
        assert search.run(LocalExecutor(search_jobs.crafted)).trained == 12


def test_a_strategy_object_is_used_as_given(tmp_path):
    mine = GreedyMutation(load_space("gp"), random.Random(0))
    with Search.create(_config(), tmp_path, strategy=mine) as search:
        assert search.strategy is mine
        search.run(LocalExecutor(search_jobs.crafted))
    assert mine.best() is not None


def test_something_else_is_refused_before_a_run_directory_exists(tmp_path):
    with pytest.raises(ConfigError, match="Strategy subclass or a Strategy object"):
        Search.create(_config(), tmp_path, strategy=object())  # type: ignore[arg-type]
    assert not (tmp_path / "mine").exists()
