import json
import math
import random

import pytest
import torch

from afsearch.compile import compile_activation
from afsearch.errors import SpaceError
from afsearch.expr import fingerprint, parse
from afsearch.reference import REFERENCES
from afsearch.spaces import load_space
from afsearch.spaces.parametric import ParametricSpace, load_parametric_space

FAMILIES = ["swish_beta", "pau", "xsilu", "aglu"]


@pytest.mark.parametrize("name", FAMILIES)
def test_variation_stays_in_range_and_compiles(name):
    space = load_space(name)
    assert isinstance(space, ParametricSpace) and space.continuous
    rng = random.Random(0)
    pop = [space.sample(rng) for _ in range(10)]
    x = torch.linspace(-3, 3, 11)
    for step in range(1500):
        if step % 2:
            child = space.mutate(rng.choice(pop), rng)
        else:
            child = space.crossover(rng.choice(pop), rng.choice(pop), rng)[0]
        assert space.validate(child) == child
        assert all(lo <= child[k] <= hi for k, (lo, hi) in space.continuous.items())
        assert json.loads(json.dumps(child)) == child
        pop[rng.randrange(10)] = child
        if step % 100 == 0:
            module = compile_activation(space.to_candidate(child).spec).new_module()
            y = module(x)
            assert y.shape == x.shape and torch.isfinite(y).all()
            assert len(list(module.parameters())) == len(space.continuous)


def test_swish_beta_trainable_and_fixed():
    space = load_space("swish_beta")
    assert space.continuous == {"beta": (0.1, 5.0)} and space.log_scale == {"beta"}
    assert space.to_candidate({"beta": 1.5}).spec == "x * sigmoid(beta[1.5] * x)"
    fixed = ParametricSpace("f", "x * sigmoid(beta * x)", {"beta": (0.1, 5.0)}, trainable=False)
    assert fixed.to_candidate({"beta": 1.0}).spec == "x * sigmoid(1 * x)"
    assert fingerprint(fixed.to_expr({"beta": 1.0})) == fingerprint(parse("x * sigmoid(x)"))


def test_pau_default_is_the_relu_fit():
    space = load_space("pau")
    assert len(space.continuous) == 10
    expr = space.to_expr(space.default())
    assert fingerprint(expr) == fingerprint(parse(REFERENCES["pau"].formula))


def test_log_scale_sampling_covers_decades():
    space = load_space("swish_beta")
    rng = random.Random(0)
    values = [space.sample(rng)["beta"] for _ in range(2000)]
    below_one = sum(v < 1.0 for v in values) / len(values)
    assert below_one == pytest.approx(math.log(10) / math.log(50), abs=0.05)


def test_from_params_clips_and_defaults():
    space = load_space("aglu")
    assert space.from_params({"lam": 100.0, "kappa": 0.5}) == {"lam": 5.0, "kappa": 0.5}
    assert space.from_params({"kappa": 2.0}) == {"lam": 1.0, "kappa": 2.0}


@pytest.mark.parametrize("name", FAMILIES)
def test_seed_is_the_written_initialisation(name):
    space = load_space(name)
    (seed,) = space.seeds()
    assert space.to_expr(seed) == parse(space.formula)


@pytest.mark.parametrize(
    "bad", [{}, {"beta": 10.0}, {"beta": "1"}, {"beta": True}, {"beta": 1.0, "gamma": 1.0}]
)
def test_bad_genotypes(bad):
    with pytest.raises(SpaceError, match="genotype"):
        load_space("swish_beta").to_candidate(bad)


GOOD = """
name = "t"
kind = "parametric"
formula = "x * sigmoid(beta * x) + gamma[0.5]"
[parameters.beta]
low = 0.5
high = 2.0
"""


@pytest.mark.parametrize(
    ("old", "new", "key", "allowed"),
    [
        ("sigmoid(beta", "sigmoidd(beta", "formula", "a formula in x"),  # unknown primitive
        ("sigmoid(beta * x)", "sigmoid(beta, x)", "formula", "a formula in x"),  # wrong arity
        ("[parameters.beta]", "[parameters.delta]", "parameters.delta", "beta, gamma"),
        ("high = 2.0", "high = 0.1", "parameters.beta.high", "number > 0.5"),
        ("low = 0.5", "low = -1.0\nlog = true", "parameters.beta.low", "number > 0"),
        ("high = 2.0\n", "", "parameters.beta.high", "number"),  # missing key
        ("low = 0.5", 'low = "small"', "parameters.beta.low", "number"),  # wrong type
        (
            'formula = "x * sigmoid(beta * x) + gamma[0.5]"',
            'reference = "nope"',
            "reference",
            "swish",
        ),
        (
            'kind = "parametric"',
            'kind = "parametric"\nreference = "swish"',
            "formula",
            "formula = ",
        ),
    ],
)
def test_malformed_files(tmp_path, old, new, key, allowed):
    path = tmp_path / "p.toml"
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(SpaceError) as err:
        load_parametric_space(path)
    message = str(err.value)
    assert str(path) in message and f"key '{key}'" in message and "allowed:" in message
    assert allowed in message


def test_unlisted_constants_stay_trainable(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(GOOD)
    space = load_parametric_space(path)
    assert space.to_expr({"beta": 1.25}).params() == {"beta": 1.25, "gamma": 0.5}
