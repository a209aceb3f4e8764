"""Strategies driven by DEAP (evolution, gp, nsga2) and the baselines (random, exhaustive), on
small real spaces with cheap synthetic objectives."""

from __future__ import annotations

import json
import math
import random

import pytest

from afsearch.errors import ConfigError
from afsearch.expr import functional_distance, parse
from afsearch.search.strategies import (
    STRATEGIES,
    Outcome,
    Proposal,
    deap_random,
    default_strategy_for,
    genotype_id,
    make_strategy,
    strategy_options,
)
from afsearch.search.strategies.generational import dominates
from afsearch.spaces import load_space
from afsearch.spaces.swish import SwishSpace
from tests.strategy_spaces import DigitSpace, drive, matches, roundtrip, signature

TARGET = [3, 1, 0, 2, 2, 1]
DEAP_AND_BASELINES = ["evolution", "gp", "nsga2", "random", "exhaustive"]


def small_options(name: str) -> dict:
    return {"evolution": {"population": 6, "tournament": 3}, "gp": {"mu": 6, "lambda_": 6},
            "nsga2": {"population": 6}}.get(name, {})


# -- registry ----------------------------------------------------------------------------------
def test_registry_names_and_errors():
    assert set(STRATEGIES) == {"evolution", "gp", "nsga2", "surrogate", "tpe", "cmaes", "random", "exhaustive"}
    space = DigitSpace()
    with pytest.raises(ConfigError, match="allowed: evolution"):
        make_strategy("annealing", space, random.Random(0))
    with pytest.raises(ConfigError, match="unknown option.*popsize.*allowed.*population"):
        make_strategy("evolution", space, random.Random(0), popsize=3)
    assert strategy_options("evolution") == {"population": 20, "tournament": 5, "crossover_prob": 0.0, "prescreen": 0}
    assert strategy_options("gp")["mu"] == 20 and strategy_options("nsga2")["population"] == 20


def test_exhaustive_needs_a_finite_space():
    with pytest.raises(ConfigError, match="finite space"):
        make_strategy("exhaustive", load_space("gp"), random.Random(0))


@pytest.mark.parametrize(("name", "expected"), [
    ("swish", "surrogate"), ("gp", "surrogate"), ("evonorm", "evolution"), ("la", "evolution"),
    ("moa", "evolution"), ("swish1", "tpe"), ("swish_beta", "tpe"), ("aglu", "tpe"), ("eafo", "tpe"),
])
def test_default_strategy_for_shipped_spaces(name, expected):
    assert default_strategy_for(load_space(name)) == expected


@pytest.mark.parametrize("name", ["swish", "gp", "evonorm", "aglu"])
def test_several_objectives_default_to_nsga2(name):
    assert default_strategy_for(load_space(name), objectives=2) == "nsga2"


def test_failed_outcomes_rank_worst_whatever_their_numbers():
    assert Outcome(float("nan")).score == -math.inf
    assert Outcome(float("inf"), [1.0, float("nan")]).objectives == [1.0, -math.inf]
    assert Outcome(1e9, [1e9, 1e9], status="failed").objectives == [-math.inf, -math.inf]
    assert Outcome(1e9, status="rejected", intermediate=[(0, 0.5)]).score == -math.inf
    again = Outcome.from_json(json.loads(json.dumps(Outcome(0.5, [0.5, -math.inf]).to_json())))
    assert again.objectives == [0.5, -math.inf]


def test_deap_random_restores_the_global_generator():
    random.seed(7)
    before = random.getstate()
    rng = random.Random(1)
    with deap_random(rng):
        a = [random.random() for _ in range(3)]
    assert random.getstate() == before
    with deap_random(random.Random(1)):
        assert [random.random() for _ in range(3)] == a


# -- determinism and state ---------------------------------------------------------------------
@pytest.mark.parametrize("name", DEAP_AND_BASELINES)
def test_same_seed_same_proposals(name):
    space, objective = DigitSpace(), matches(TARGET)
    runs = [signature(drive(make_strategy(name, space, random.Random(3), **small_options(name)),
                            objective, 40, batch=3)) for _ in range(2)]
    assert runs[0] == runs[1]
    other = signature(drive(make_strategy(name, space, random.Random(4), **small_options(name)),
                            objective, 40, batch=3))
    assert (other == runs[0]) == (name == "exhaustive")  # only enumeration ignores the seed


@pytest.mark.parametrize("name", DEAP_AND_BASELINES)
def test_state_round_trip_continues_exactly(name):
    space, objective = DigitSpace(), matches(TARGET)
    seeds = [[0, 0, 0, 0, 0, 0]]
    a = make_strategy(name, space, random.Random(5), seeds=seeds, **small_options(name))
    drive(a, objective, 23, batch=4)
    out = [p for p in (a.ask(), a.ask()) if p is not None]  # in flight at the snapshot
    b = make_strategy(name, space, random.Random(999), **small_options(name))
    b.restore(roundtrip(a.state()))
    assert roundtrip(b.state()) == roundtrip(a.state())
    for s in (a, b):
        for p in out:
            s.tell(Proposal.from_json(p.to_json()), objective(p.genotype))
    assert signature(drive(a, objective, 30, batch=3)) == signature(drive(b, objective, 30, batch=3))
    assert a.best() == b.best()


@pytest.mark.parametrize("name", DEAP_AND_BASELINES)
def test_seeds_are_proposed_first(name):
    seeds = [[1, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2]]
    s = make_strategy(name, DigitSpace(), random.Random(0), seeds=seeds, **small_options(name))
    first = [s.ask(), s.ask()]
    assert [p.genotype for p in first] == seeds
    assert all(p.origin == "seed" for p in first)


@pytest.mark.parametrize("name", DEAP_AND_BASELINES)
def test_non_finite_and_failed_results_are_never_best(name):
    s = make_strategy(name, DigitSpace(), random.Random(0), **small_options(name))
    bad = [Outcome(float("nan")), Outcome(float("inf")), Outcome(1e9, status="failed"),
           Outcome(1e9, status="rejected", intermediate=[(0, 1e9)])]
    proposals = [s.ask() for _ in range(5)]
    for p, o in zip(proposals, bad, strict=False):
        s.tell(p, o)
    assert s.best() is None
    s.tell(proposals[4], Outcome(0.25))
    assert s.best() == (proposals[4].genotype, 0.25)


def test_evolution_prefers_the_one_good_member_as_parent():
    s = make_strategy("evolution", DigitSpace(), random.Random(0), population=5, tournament=20)
    initial = [s.ask() for _ in range(5)]
    assert s.ask() is None  # all of the initial population is out
    for p in initial[:4]:
        s.tell(p, Outcome(1e9, status="failed"))
    s.tell(initial[4], Outcome(0.1))
    children = [s.ask() for _ in range(200)]
    assert {c.origin for c in children} == {"mutation"}
    # a failed member wins only a tournament that drew no other (0.8 ** 20 ~ 1 %)
    assert sum(c.parents != [initial[4].key] for c in children) <= 6
    assert s.best() == (initial[4].genotype, 0.1)


def test_gp_keeps_the_one_good_member_and_waits_for_its_generation():
    s = make_strategy("gp", DigitSpace(), random.Random(0), mu=4, lambda_=4)
    gen = [s.ask() for _ in range(4)]
    assert s.ask() is None  # waiting for the rest of the generation
    for p in gen[:3]:
        s.tell(p, Outcome(float("nan")))
    assert s.ask() is None
    s.tell(gen[3], Outcome(0.5))
    offspring = s.ask()
    assert offspring is not None and s.population[0]["key"] == gen[3].key
    assert all(e["score"] == -math.inf for e in s.population[1:])


def test_aging_drops_the_oldest_not_the_worst():
    s = make_strategy("evolution", DigitSpace(), random.Random(0), population=3, tournament=2)
    asked = [s.ask() for _ in range(3)]
    for p, score in zip(asked, [9.0, 1.0, 2.0], strict=True):
        s.tell(p, Outcome(score))
    child = s.ask()
    s.tell(child, Outcome(0.0))
    assert [e["key"] for e in s.population] == [asked[1].key, asked[2].key, child.key]
    assert s.best() == (asked[0].genotype, 9.0)  # best() remembers what left the population


def test_a_repeated_or_foreign_tell_is_harmless():
    s = make_strategy("gp", DigitSpace(), random.Random(0), mu=2, lambda_=2)
    a, b = s.ask(), s.ask()
    s.tell(a, Outcome(1.0))
    s.tell(a, Outcome(1.0))  # the engine answered a duplicate from its store twice
    s.tell(Proposal([0] * 6, 999), Outcome(3.0))
    assert len(s.told) == 1 and s.ask() is None
    s.tell(b, Outcome(2.0))
    assert s.ask() is not None


# -- search quality ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["evolution", "gp", "nsga2"])
def test_evolutionary_strategies_beat_random_on_planted_digits(name):
    space = DigitSpace(10, 5)
    target = [random.Random(1).randrange(5) for _ in range(10)]
    options = {"evolution": {"crossover_prob": 0.3}}.get(name, {})

    def mean_best(strategy: str, opts: dict) -> float:
        best = []
        for seed in range(3):
            s = make_strategy(strategy, space, random.Random(seed), **opts)
            drive(s, matches(target), 160, batch=4)
            best.append(s.best()[1])
        return sum(best) / len(best)

    assert mean_best(name, options) >= mean_best("random", {}) + 1.5


def _planted(space, formula):
    target = parse(formula)
    return lambda g: Outcome(-functional_distance(space.to_expr(g), target))


@pytest.mark.parametrize("formula", ["tanh(x) * sin(x)", "atan(x) + sin(x)"])
def test_evolution_beats_random_on_a_planted_formula(formula):
    base = load_space("swish")
    space = SwishSpace(name="swish2", unary=base.unary, binary=base.binary, min_units=1, max_units=2)
    objective = _planted(space, formula)

    def mean_best(name: str) -> float:
        best = []
        for seed in range(6):
            s = make_strategy(name, space, random.Random(seed))
            drive(s, objective, 200, batch=4)
            best.append(s.best()[1])
        return sum(best) / len(best)

    assert mean_best("evolution") > mean_best("random")


def test_gp_strategy_improves_on_its_first_generation_in_the_gp_space():
    space = load_space("gp")
    s = make_strategy("gp", space, random.Random(0), mu=16, lambda_=16)
    asked = drive(s, _planted(space, "x * tanh(x) + 0.5 * x"), 160, batch=8)
    first = max(-functional_distance(space.to_expr(p.genotype), parse("x * tanh(x) + 0.5 * x"))
                for p in asked[:16])
    assert s.best()[1] > first


def test_evolution_runs_on_the_evonorm_space_from_its_seeds():
    space = load_space("evonorm")
    s = make_strategy("evolution", space, random.Random(0), seeds=space.seeds(), population=4)
    asked = drive(s, lambda g: Outcome(-len(g["nodes"])), 12, batch=2)
    assert [p.origin for p in asked[: len(space.seeds())]] == ["seed"] * len(space.seeds())
    assert {p.origin for p in asked[4:]} == {"mutation"}
    for p in asked:
        space.validate(p.genotype)


# -- NSGA-II -------------------------------------------------------------------------------------
def test_nsga2_front_is_non_dominated_and_never_holds_failures():
    space = DigitSpace(8, 4)

    def two(g):
        if g.count(1) == 8:
            return Outcome(1e9, [1e9, 1e9], status="failed")
        return Outcome(float(sum(x == 0 for x in g)),
                       [float(sum(x == 0 for x in g)), float(sum(x == 3 for x in g))])

    s = make_strategy("nsga2", space, random.Random(0), population=12, seeds=[[1] * 8])
    drive(s, two, 150, batch=5)
    front = s.pareto_front()
    points = [e["objectives"] for e in front]
    assert points and all(not dominates(p, q) for p in points for q in points)
    assert all(e["genotype"] != [1] * 8 for e in front)
    assert max(p[0] + p[1] for p in points) >= 7  # close to the true front (sum = 8)
    assert any(p[0] >= 6 for p in points) and any(p[1] >= 6 for p in points)
    state = roundtrip(s.state())
    assert state["front"] == [{**e, "objectives": list(e["objectives"])} for e in front]


# -- exhaustive ----------------------------------------------------------------------------------
def test_exhaustive_covers_the_space_exactly_once_with_seeds_and_a_resume():
    space = DigitSpace(4, 3)
    seeds = [[2, 2, 2, 2], [0, 1, 2, 0]]
    s = make_strategy("exhaustive", space, random.Random(0), seeds=seeds)
    seen = [s.ask().genotype for _ in range(30)]
    state = roundtrip(s.state())
    s = make_strategy("exhaustive", space, random.Random(1))
    s.restore(state)
    while (p := s.ask()) is not None:
        seen.append(p.genotype)
        assert p.origin == "enumerate"
    assert s.exhausted and s.ask() is None
    assert seen[:2] == seeds
    assert sorted(genotype_id(g) for g in seen) == sorted(genotype_id(g) for g in space.enumerate())


def test_exhaustive_walks_the_one_unit_swish_space():
    base = load_space("swish")
    space = SwishSpace(name="swish1", unary=base.unary, binary=base.binary, min_units=1, max_units=1)
    s = make_strategy("exhaustive", space, random.Random(0))
    count = 0
    while s.ask() is not None:
        count += 1
    assert count == space.size() and s.exhausted
