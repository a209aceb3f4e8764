"""The surrogate strategy and the surrogate pre-screen of evolution and gp, in the real gp and
swish spaces with cheap synthetic objectives (functional distance to a planted formula)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from afsearch.errors import ConfigError
from afsearch.expr import evaluate_numpy, parse, probe_points
from afsearch.search.features import shape_features
from afsearch.search.strategies import Outcome, Proposal, make_strategy
from afsearch.spaces import load_space
from tests.strategy_spaces import drive, roundtrip, signature

SURROGATES = [("surrogate", {"pool": 60}), ("surrogate", {"pool": 60, "model": "knn"}),
              ("surrogate", {"pool": 60, "model": "forest"}), ("evolution", {"prescreen": 10, "population": 8}),
              ("gp", {"prescreen": 10, "mu": 8, "lambda_": 8})]


def planted(space, formula):
    """Minus the distance to `formula` up to an affine map of the output (what a readout
    absorbs): sqrt(1 - r^2) on the N(0,1) probes."""
    x = probe_points()[:1000]
    target = evaluate_numpy(parse(formula), x)

    def objective(genotype):
        y = evaluate_numpy(space.to_expr(genotype), x)
        if not np.all(np.isfinite(y)) or y.std() == 0:
            return Outcome(float("-inf"), status="rejected")
        r = np.corrcoef(y, target)[0, 1]
        return Outcome(-float(np.sqrt(max(0.0, 1.0 - r * r))))

    return objective


# -- shape features --------------------------------------------------------------------------------
def test_shapes_equal_up_to_an_affine_map_of_the_output_share_a_key():
    base = shape_features(parse("max(x, tanh(x))"))
    for text in ("2 * max(x, tanh(x)) + 3", "-max(x, tanh(x))", "0.5 - 0.1 * max(x, tanh(x))"):
        other = shape_features(parse(text))
        assert other.key == base.key and np.allclose(other.vector, base.vector)
    assert shape_features(parse("max(x, sin(x))")).key != base.key


def test_the_residual_shape_drops_the_linear_part():
    """A formula plus a multiple of x has another shape but the same residual (the shape less
    its component along x), which the default model sees beside the shape."""
    base = shape_features(parse("tanh(x) - 0.2 * x"))
    for text in ("tanh(x) + x", "3 * tanh(x) + 0.5 * x + 1"):
        other = shape_features(parse(text))
        assert np.linalg.norm(other.vector - base.vector) > 0.05
        assert np.allclose(other.residual, base.residual, atol=1e-9)
    assert abs(float(np.linalg.norm(base.residual)) - 1.0) < 1e-12


@pytest.mark.parametrize("text", ["3 * x + 1", "beta", "x / 0 * 0 + 2", "exp(exp(exp(x)))"])
def test_formulas_the_screen_rejects_for_sure_have_no_shape(text):
    assert shape_features(parse(text)) is None


# -- the strategy ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "options"), SURROGATES)
def test_state_round_trip_continues_exactly(name, options):
    space = load_space("gp")
    objective = planted(space, "max(x, tanh(x))")
    a = make_strategy(name, space, random.Random(5), seeds=space.seeds()[:2], **options)
    drive(a, objective, 30, batch=3)
    out = [p for p in (a.ask(), a.ask()) if p is not None]  # in flight at the snapshot
    b = make_strategy(name, space, random.Random(99), **options)
    b.restore(roundtrip(a.state()))
    assert roundtrip(b.state()) == roundtrip(a.state())
    for s in (a, b):
        for p in out:
            s.tell(Proposal.from_json(p.to_json()), objective(p.genotype))
    assert signature(drive(a, objective, 12, batch=2)) == signature(drive(b, objective, 12, batch=2))
    assert a.best() == b.best()


def test_surrogate_never_trains_a_shape_twice():
    """Candidates equal up to the output's scale, shift and sign (which the next layer
    absorbs) are trained once: every pool proposal has a shape not told before."""
    space = load_space("gp")
    s = make_strategy("surrogate", space, random.Random(0), pool=40, initial=10)
    asked = drive(s, planted(space, "x * tanh(x)"), 50)
    keys = [shape_features(space.to_expr(p.genotype)) for p in asked if p.origin.startswith("surrogate")]
    assert len(keys) >= 30 and all(k is not None for k in keys)
    assert len({k.key for k in keys}) == len(keys)


def test_surrogate_beats_random_on_a_planted_formula():
    space = load_space("gp")
    objective = planted(space, "max(x, tanh(x))")

    def mean_best(name: str, options: dict) -> float:
        best = []
        for seed in range(3):
            s = make_strategy(name, space, random.Random(seed), **options)
            drive(s, objective, 60)
            best.append(s.best()[1])
        return sum(best) / len(best)

    assert mean_best("surrogate", {"pool": 100}) > mean_best("random", {})


@pytest.mark.parametrize(("name", "options"), [("surrogate", {}), ("evolution", {"prescreen": 5}),
                                               ("gp", {"prescreen": 5})])
def test_layer_spaces_are_refused(name, options):
    with pytest.raises(ConfigError, match="layer graphs"):
        make_strategy(name, load_space("evonorm"), random.Random(0), **options)


@pytest.mark.parametrize("options", [{"model": "svm"}, {"pool": 0}, {"explore": 2}, {"kappa": -1}, {"library": -1},
                                     {"library_share": 1.5}])
def test_bad_options_are_refused(options):
    with pytest.raises(ConfigError, match="surrogate"):
        make_strategy("surrogate", load_space("gp"), random.Random(0), **options)


def test_library_asks_train_the_spaces_smallest_members():
    """With library_share 1 every ask after the initial samples is one of the space's smallest
    members, never one already trained; the nearest to a good parent come first."""
    space = load_space("swish")
    smallest = {json.dumps(g, sort_keys=True) for g in space.smallest()}
    s = make_strategy("surrogate", space, random.Random(0), initial=10, library_share=1.0)
    asked = drive(s, planted(space, "max(x, sin(x))"), 60)
    from_library = [p for p in asked if ":library" in p.origin]
    assert len(from_library) == 50
    assert all(json.dumps(p.genotype, sort_keys=True) in smallest for p in from_library)
    keys = [shape_features(space.to_expr(p.genotype)).key for p in from_library]
    assert len(set(keys)) == len(keys)
    assert any(p.origin.endswith("library-near") for p in from_library)
    off = make_strategy("surrogate", space, random.Random(0), initial=10, library=0)
    assert not any("library" in p.origin for p in drive(off, planted(space, "max(x, sin(x))"), 40))
    at_random = make_strategy("surrogate", space, random.Random(0), initial=10, library_share=1.0, library_near=0)
    origins = {p.origin for p in drive(at_random, planted(space, "max(x, sin(x))"), 30)[10:]}
    assert origins <= {"surrogate:library", "surrogate-explore:library"}


def test_prescreen_picks_what_the_model_likes():
    """With the pre-screen, evolution's children are the ones the model ranks best among the
    drawn ones, so the told scores improve on plain evolution's from the same seed."""
    space = load_space("swish")
    objective = planted(space, "x * erf(x)")
    plain, screened = [], []
    for seed in range(3):
        for options, out in (({"population": 10}, plain), ({"population": 10, "prescreen": 20}, screened)):
            s = make_strategy("evolution", space, random.Random(seed), **options)
            asked = drive(s, objective, 60)
            out.append(np.mean([objective(p.genotype).score for p in asked[30:]]))
    assert np.mean(screened) > np.mean(plain)
