import math
import random

import pytest

from afsearch.errors import ConfigError, RunStoreError, SpaceError
from afsearch.evaluate.result import EvalResult
from afsearch.execute import LocalExecutor
from afsearch.search.config import SearchConfig
from afsearch.search.engine import Outcome, Search, outcome_from_results
from tests import search_jobs


def _config(**kw):
    base = dict(space="gp", task="mnist1d-mlp", extra_tasks=[], budget=25, steps=10, backend="local", baselines=["relu", "tanh"],
                validate_top=0, seed=1, name="t")
    base.update(kw)
    return SearchConfig(**base)


def test_nan_and_failed_results_never_lead(tmp_path):
    search_jobs.CALLS.clear()
    with Search.create(_config(), tmp_path) as search:
        summary = search.run(LocalExecutor(search_jobs.crafted))
        board = search.leaderboard(top=100)
        assert board and all(math.isfinite(e.mean) for e in board)
        assert not any("sin" in e.candidate.formula or "cos" in e.candidate.formula for e in board)
        best = search.strategy.best()
        assert best is not None and math.isfinite(best[1]) and best[1] < 1.0
        assert summary.best is not None and "cos" not in summary.best.candidate.formula
        counts = search.store.counts()
        assert counts.by_status.get("queued", 0) == 0 and counts.by_status.get("running", 0) == 0


def test_equivalent_candidates_are_trained_once(tmp_path):
    search_jobs.CALLS.clear()
    with Search.create(_config(budget=40, strategy="random"), tmp_path) as search:
        search.run(LocalExecutor(search_jobs.crafted))
        fingerprints = [c for c in search_jobs.CALLS]
        assert len(fingerprints) == len(set(fingerprints))  # no formula trained twice
        from afsearch.candidate import Candidate

        fps = [Candidate.activation(f).fingerprint() for f in search_jobs.CALLS]
        assert len(fps) == len(set(fps))  # no *function* trained twice
        assert search.trained == 40
        assert search.proposals >= search.trained


def test_outcome_aggregation_ranks_failures_worst():
    ok = EvalResult({"kind": "activation", "spec": "x"}, "t", {}, 10, [0], mean_accuracy=0.5)
    bad = EvalResult({"kind": "activation", "spec": "x"}, "t", {}, 10, [0], status="failed", mean_accuracy=9.0)
    assert outcome_from_results({"a": ok, "b": bad}, ["accuracy"]).score == -math.inf
    assert outcome_from_results({"a": ok}, ["accuracy"]).score == 0.5
    assert Outcome(float("nan")).score == -math.inf


def test_existing_run_is_never_overwritten(tmp_path):
    with Search.create(_config(), tmp_path):
        pass
    with pytest.raises(RunStoreError):
        Search.create(_config(), tmp_path)


def test_resume_of_a_locked_run_is_refused(tmp_path):
    with Search.create(_config(), tmp_path):
        with pytest.raises(RunStoreError, match="being driven"):
            Search.resume(tmp_path / "t")


@pytest.mark.parametrize("kw, error", [({"space": "nope"}, SpaceError), ({"task": "imagenet"}, ConfigError),
                                       ({"strategy": "annealing"}, ConfigError),
                                       ({"strategy_options": {"populaton": 3}}, ConfigError),
                                       ({"space": "evonorm"}, ConfigError)])
def test_bad_search_settings(tmp_path, kw, error):
    with pytest.raises(error):
        Search.create(_config(**kw), tmp_path)
    assert not (tmp_path / "t").exists()  # nothing half-made: the name stays free


def test_rng_streams_are_derived_from_the_master_seed():
    from afsearch.search.seeding import derive_seed

    assert derive_seed(1, "train", 0) == derive_seed(1, "train", 0)
    assert derive_seed(1, "train", 0) != derive_seed(2, "train", 0) != derive_seed(1, "train", 1)
    assert 0 <= derive_seed(123, "strategy") < 2**31
    random.Random(derive_seed(0, "strategy"))


def test_packed_jobs_carry_several_candidates_and_all_are_recorded(tmp_path):
    search_jobs.CALLS.clear()
    search_jobs.PACKS.clear()
    with Search.create(_config(budget=20, pack=4, strategy="random"), tmp_path) as search:
        search.run(LocalExecutor(search_jobs.crafted))
        assert search.trained == 20
        assert search_jobs.PACKS and max(search_jobs.PACKS) == 4
        counts = search.store.counts()
        assert counts.by_status.get("queued", 0) == 0
        assert sum(counts.by_status.values()) == len(search_jobs.CALLS)


def test_real_packed_search_on_an_mlp_task(tmp_path):
    config = _config(task="breast-cancer-mlp", budget=6, pack=3, steps=40, strategy="random", space="swish1")
    with Search.create(config, tmp_path) as search:
        summary = search.run()
        assert search.trained == 6 and summary.best is not None


def test_resume_with_a_larger_budget_is_remembered(tmp_path):
    search_jobs.CALLS.clear()
    with Search.create(_config(budget=5, strategy="random"), tmp_path) as search:
        search.run(LocalExecutor(search_jobs.crafted))
    with Search.resume(tmp_path / "t", overrides={"budget": 8}) as search:
        search.run(LocalExecutor(search_jobs.crafted))
        assert search.trained == 8
    with Search.resume("t", tmp_path) as search:
        assert search.config.budget == 8


def test_evonorm_search_on_a_cnn_task(tmp_path):
    config = _config(space="evonorm", task="digits-cnn", budget=3, steps=20, baselines=["relu"])
    with Search.create(config, tmp_path) as search:
        search.run()
        evaluated = [c for c in search.store.leaderboard(top=None) if c.candidate.kind == "layer"]
        assert search.trained == 3 and evaluated
