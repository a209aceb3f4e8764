"""Optuna strategies (tpe, cmaes) on real spaces, with real SQLite studies in tmp_path."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import TrialState

from afsearch.errors import ConfigError
from afsearch.search.strategies import Outcome, Proposal, make_strategy
from afsearch.spaces import load_space
from afsearch.spaces.swish import SwishSpace
from tests.strategy_spaces import DigitSpace, IndexOnlySpace, drive, matches, roundtrip, signature


def quadratic(g: dict) -> Outcome:
    """AGLU-style space: best at lam = 1.5, kappa = 0.7 (score 0)."""
    return Outcome(-((g["lam"] - 1.5) ** 2) - (g["kappa"] - 0.7) ** 2)


def mean_best(name: str, space, objective, tells: int, seeds: int = 3, **options) -> float:
    best = []
    for seed in range(seeds):
        s = make_strategy(name, space, random.Random(seed), **options)
        drive(s, objective, tells, batch=2)
        best.append(s.best()[1])
    return sum(best) / len(best)


@pytest.mark.parametrize("name", ["tpe", "cmaes"])
def test_optuna_beats_random_on_a_quadratic_over_continuous_parameters(name):
    space = load_space("aglu")
    tuned = mean_best(name, space, quadratic, 40, n_startup_trials=8)
    assert tuned > mean_best("random", space, quadratic, 40)
    assert tuned > -0.05


def test_categorical_tpe_beats_random_on_planted_digits():
    space, target = DigitSpace(6, 4), [3, 1, 0, 2, 2, 1]
    assert mean_best("tpe", space, matches(target), 50) > mean_best("random", space, matches(target), 50)


def test_tpe_falls_back_to_an_index_over_small_finite_spaces():
    s = make_strategy("tpe", IndexOnlySpace(), random.Random(0), n_startup_trials=4)
    asked = drive(s, matches([1, 2, 3]), 20)
    assert set(s.params.distributions) == {"index"}
    assert all(p.genotype == IndexOnlySpace().from_params(dict(zip(["d0", "d1", "d2"], p.genotype, strict=True)))
               for p in asked)
    base = load_space("swish")
    one_unit = SwishSpace(name="swish1", unary=base.unary, binary=base.binary, min_units=1, max_units=1)
    p = make_strategy("tpe", one_unit, random.Random(0)).ask()
    one_unit.validate(p.genotype)
    with pytest.raises(ConfigError, match="finite one of at most"):
        make_strategy("tpe", base, random.Random(0))  # three units: too many for an index
    with pytest.raises(ConfigError, match="continuous parameters"):
        make_strategy("cmaes", DigitSpace(), random.Random(0))
    with pytest.raises(ConfigError, match="stopping early is the search's scheduler now"):
        make_strategy("tpe", DigitSpace(), random.Random(0), pruner="median")
    # the retired option as runs recorded it by default: accepted, and it does nothing
    assert make_strategy("tpe", DigitSpace(), random.Random(0), pruner="none").ask() is not None


def test_tpe_on_the_eafo_space_builds_valid_genotypes_and_seeds_first():
    space = load_space("eafo")
    seed = space.from_params({"eps1": 0.01})
    s = make_strategy("tpe", space, random.Random(0), seeds=[seed], n_startup_trials=3)
    asked = drive(s, lambda g: Outcome(-sum(c * c for c in g["coeffs"])), 6)
    assert asked[0].genotype == seed and asked[0].origin == "seed"
    for p in asked:
        space.validate(p.genotype)
    assert s.best()[1] <= 0.0


def test_parametric_seed_is_enqueued_with_its_parameters():
    space = load_space("swish_beta")
    s = make_strategy("tpe", space, random.Random(0), seeds=[{"beta": 1.0}])
    p = s.ask()
    assert p.origin == "seed" and p.genotype == {"beta": 1.0} and p.extra["params"] == {"beta": 1.0}
    s.tell(p, Outcome(0.9))
    assert s.study.trials[0].value == 0.9 and s.study.trials[0].params == {"beta": 1.0}


def test_outcomes_map_to_trial_states_and_failures_are_never_best():
    s = make_strategy("tpe", load_space("swish_beta"), random.Random(0))
    ps = [s.ask() for _ in range(5)]
    s.tell(ps[0], Outcome(1e9, status="failed"))
    s.tell(ps[1], Outcome(float("nan")))
    s.tell(ps[2], Outcome(1e9, status="rejected", intermediate=[(0, 0.3), (1, 0.2)]))
    s.tell(ps[3], Outcome(0.7, intermediate=[(0, 0.5), (1, 0.7)]))
    s.tell(ps[3], Outcome(0.7))  # a repeated tell changes nothing
    trials = s.study.trials
    assert [t.state for t in trials[:4]] == [TrialState.FAIL, TrialState.FAIL, TrialState.PRUNED, TrialState.COMPLETE]
    assert trials[2].intermediate_values == {0: 0.3, 1: 0.2}
    assert trials[3].value == 0.7 and trials[3].intermediate_values == {0: 0.5, 1: 0.7}
    assert s.best() == (ps[3].genotype, 0.7)
    assert trials[4].state == TrialState.RUNNING


def test_a_run_the_scheduler_stopped_is_pruned_with_its_curve_and_never_best():
    """Stopping early moved from the study's pruner to the search's scheduler
    (tests/test_search_schedulers.py has the median rule on these curves); the study records
    a stopped run as PRUNED with the curve it had reached."""
    s = make_strategy("tpe", load_space("swish_beta"), random.Random(0))
    curve = [(step, 0.5 + 0.1 * step) for step in range(4)]
    for _ in range(5):
        s.tell(s.ask(), Outcome(0.8, intermediate=curve))
    poor = s.ask()
    s.tell(poor, Outcome(0.2, status="rejected", intermediate=[(0, 0.1), (1, 0.1)]))
    trial = s.study.trials[poor.extra["trial"]]
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {0: 0.1, 1: 0.1}
    assert s.best()[1] == 0.8
    assert isinstance(s.study.pruner, optuna.pruners.NopPruner)


def test_in_memory_state_round_trip_continues_exactly():
    space = load_space("aglu")
    a = make_strategy("tpe", space, random.Random(1), n_startup_trials=5, seeds=[{"lam": 1.0, "kappa": 1.0}])
    drive(a, quadratic, 9, batch=3)
    out = [a.ask(), a.ask()]
    b = make_strategy("tpe", space, random.Random(42), n_startup_trials=5)
    b.restore(roundtrip(a.state()))
    for s in (a, b):
        for p in out:
            s.tell(Proposal.from_json(p.to_json()), quadratic(p.genotype))
    assert signature(drive(a, quadratic, 8, batch=2)) == signature(drive(b, quadratic, 8, batch=2))


@pytest.mark.parametrize("name", ["tpe", "cmaes"])
def test_sqlite_resume_in_a_fresh_study_object_continues_exactly(tmp_path, name):
    space = load_space("aglu")

    def fresh(db: str, seed: int = 3):
        return make_strategy(name, space, random.Random(seed), storage=f"sqlite:///{tmp_path / db}",
                             study_name="run", n_startup_trials=3)

    whole = fresh("whole.db")
    first = drive(whole, quadratic, 6, batch=2)
    rest = drive(whole, quadratic, 5, batch=2)

    part = fresh("part.db")
    assert signature(drive(part, quadratic, 6, batch=2)) == signature(first)
    state = roundtrip(part.state())
    assert "trials" not in state  # the database holds them
    part.ask()  # a crash after this ask, before its snapshot: the trial is left running
    del part
    resumed = fresh("part.db", seed=77)
    resumed.restore(state)
    assert signature(drive(resumed, quadratic, 5, batch=2)) == signature(rest)
    loaded = optuna.load_study(study_name="run", storage=f"sqlite:///{tmp_path / 'part.db'}")
    assert [t.state for t in loaded.trials] == [t.state for t in whole.study.trials]


def test_a_running_trial_without_parameters_is_failed_on_resume(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    s = make_strategy("tpe", load_space("swish_beta"), random.Random(0), storage=url)
    s.tell(s.ask(), Outcome(0.5))
    state = roundtrip(s.state())
    s.study.ask()  # someone else's trial, no parameters
    resumed = make_strategy("tpe", load_space("swish_beta"), random.Random(0), storage=url)
    resumed.restore(state)
    p = resumed.ask()
    assert p.extra["trial"] == 2
    assert [t.state for t in resumed.study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING]


def test_optuna_logging_is_quiet_inside_and_untouched_outside():
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        s = make_strategy("tpe", load_space("swish_beta"), random.Random(0))
        s.tell(s.ask(), Outcome(0.5))
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
