import json
import math
import random

import numpy as np
import pytest
import torch

from afsearch.compile import compile_activation
from afsearch.errors import SpaceError
from afsearch.expr import evaluate_numpy, fingerprint, parse
from afsearch.reference import REFERENCES
from afsearch.spaces import load_space
from afsearch.spaces.eafo import (
    GAUSSIAN_ENTROPY,
    EAFOSpace,
    hermite_coefficients,
    hermite_text,
    load_eafo_space,
    output_entropy,
)


@pytest.fixture(scope="module")
def space() -> EAFOSpace:
    return load_space("eafo")


def test_hermite_polynomials():
    assert hermite_coefficients(1) == [0, 1]
    assert hermite_coefficients(2) == [-1, 0, 1]
    assert hermite_coefficients(3) == [0, -3, 0, 1]
    assert hermite_coefficients(4) == [3, 0, -6, 0, 1]
    x = np.linspace(-3, 3, 13)
    for k in range(1, 7):
        expected = np.polynomial.hermite_e.hermeval(x, [0] * k + [1])
        np.testing.assert_allclose(
            evaluate_numpy(parse(hermite_text(k)), x), expected, rtol=1e-12, atol=1e-9
        )


def test_k1_is_crrelu():
    space = EAFOSpace("e", bases=("relu",), max_order=1)
    g = {"base": "relu", "coeffs": [0.01], "trainable": True}
    expr = space.to_expr(g)
    assert fingerprint(expr) == fingerprint(parse(REFERENCES["crrelu"].formula))
    assert expr.params() == {"eps1": 0.01}


def test_fixed_coefficients_are_numbers_and_zero_terms_drop(space):
    g = {"base": "gelu", "coeffs": [0.1, 0.0, -0.2, 0.0], "trainable": False}
    space_fixed = EAFOSpace("e", bases=("gelu",), max_order=4, trainable="no")
    expr = space_fixed.to_expr(g)
    assert expr.params() == {}
    assert space_fixed.to_candidate(g).spec.count("exp(-x^2 / 2)") == 2
    with pytest.raises(SpaceError, match="trainable"):
        space.to_candidate(g)  # the shipped space makes coefficients trainable


def test_entropy_estimates():
    gauss = output_entropy("x")
    assert gauss["jacobian"] == pytest.approx(GAUSSIAN_ENTROPY, abs=1e-9)
    assert gauss["histogram"] == pytest.approx(GAUSSIAN_ENTROPY, abs=0.01)
    doubled = output_entropy("2 * x + 1")  # H(ax+b) = H(x) + log|a|
    assert doubled["jacobian"] == pytest.approx(GAUSSIAN_ENTROPY + math.log(2), abs=1e-6)
    assert doubled["histogram"] == pytest.approx(GAUSSIAN_ENTROPY + math.log(2), abs=0.01)
    tanh = output_entropy("tanh(x)")
    assert tanh["jacobian"] == pytest.approx(tanh["histogram"], abs=0.01)  # invertible: agree
    relu = output_entropy("relu(x)")
    assert relu["jacobian"] == -math.inf and relu["flat_fraction"] == pytest.approx(0.5, abs=0.01)
    assert math.isfinite(relu["histogram"])


def test_candidate_info_reports_base(space):
    g = {"base": "relu", "coeffs": [0.01, 0.0, 0.0, 0.0], "trainable": True}
    info = space.candidate_info(g)
    assert info["base"] == "relu"
    assert info["base_entropy"] == output_entropy(REFERENCES["relu"].formula)
    assert set(info["entropy"]) == {"jacobian", "histogram", "flat_fraction"}
    assert isinstance(info["entropy_decreases"], bool)


def test_entropy_filter_keeps_only_lower_entropy():
    space = EAFOSpace("e", bases=("silu", "gelu"), max_order=2, entropy_filter=True)
    rng = random.Random(0)
    g = space.sample(rng)
    for _ in range(5):
        assert space.candidate_info(g)["entropy_decreases"]
        g = space.mutate(g, rng)
    assert space.candidate_info(g)["entropy_decreases"]


def test_variation_stays_inside_and_compiles(space):
    rng = random.Random(1)
    pop = [space.sample(rng) for _ in range(10)]
    x = torch.linspace(-3, 3, 11)
    for step in range(3000):
        if step % 2:
            child = space.mutate(rng.choice(pop), rng)
        else:
            child = space.crossover(rng.choice(pop), rng.choice(pop), rng)[step % 4 // 2]
        space.validate(child)
        assert all(-0.5 <= c <= 0.5 for c in child["coeffs"]) and child["base"] in space.bases
        assert json.loads(json.dumps(child)) == child
        pop[rng.randrange(10)] = child
        if step % 30 == 0:
            module = compile_activation(space.to_candidate(child).spec).new_module()
            assert module(x).shape == x.shape
            assert len(list(module.parameters())) >= 4  # eps1..eps4 trainable


def test_continuous_and_from_params(space):
    assert space.continuous == {f"eps{k}": (-0.5, 0.5) for k in range(1, 5)}
    g = space.from_params({"eps1": 0.2, "eps3": -0.1, "base": "gelu"})
    assert g == {"base": "gelu", "coeffs": [0.2, 0.0, -0.1, 0.0], "trainable": True}
    assert space.choices == {"base": list(space.bases)}
    assert space.from_params({"eps2": 7.0})["coeffs"] == [0.0, 0.5, 0.0, 0.0]


def test_seeds_start_with_crrelu(space):
    seeds = space.seeds()
    assert seeds[0] == {"base": "relu", "coeffs": [0.01, 0.0, 0.0, 0.0], "trainable": True}
    assert len(seeds) == 1 + len(space.bases)
    crrelu = parse(REFERENCES["crrelu"].formula)
    expr = space.to_expr(seeds[0])
    x = np.linspace(-4, 4, 101)  # zero-coefficient trainable terms do not change the function
    np.testing.assert_allclose(evaluate_numpy(expr, x), evaluate_numpy(crrelu, x), atol=1e-12)


@pytest.mark.parametrize(
    "bad",
    [
        {"base": "mish", "coeffs": [0, 0, 0, 0], "trainable": True},
        {"base": "relu", "coeffs": [0, 0, 0], "trainable": True},
        {"base": "relu", "coeffs": [0, 0, 0, 0.9], "trainable": True},
        {"base": "relu", "coeffs": [0, 0, 0, "a"], "trainable": True},
        {"base": "relu", "coeffs": [0, 0, 0, 0]},
    ],
)
def test_bad_genotypes(space, bad):
    with pytest.raises(SpaceError, match="genotype"):
        space.to_candidate(bad)


GOOD = """
name = "t"
kind = "eafo"
bases = ["relu", "gelu"]
max_order = 2
[coefficients]
low = -0.1
high = 0.1
trainable = "search"
[entropy]
filter = false
"""


@pytest.mark.parametrize(
    ("old", "new", "key", "allowed"),
    [
        ('"gelu"]', '"geluu"]', "bases[1]", "relu"),
        ('"gelu"]', '"crrelu"]', "bases[1]", "gelu"),  # would clash with eps names
        ("max_order = 2", "max_order = -1", "max_order", "int >= 1"),
        ("max_order = 2", "max_order = 9", "max_order", "1..6"),
        ("max_order = 2", "", "max_order", "integer"),
        ('trainable = "search"', "trainable = 1", "coefficients.trainable", "string"),
        (
            'trainable = "search"',
            'trainable = "maybe"',
            "coefficients.trainable",
            "yes, no, search",
        ),
        ("high = 0.1", "high = -0.2", "coefficients.high", "number > -0.1"),
        ("filter = false", 'filter = "no"', "entropy.filter", "boolean"),
    ],
)
def test_malformed_files(tmp_path, old, new, key, allowed):
    path = tmp_path / "eafo.toml"
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(SpaceError) as err:
        load_eafo_space(path)
    message = str(err.value)
    assert str(path) in message and f"key '{key}'" in message and "allowed:" in message
    assert allowed in message


def test_search_mode_flips_trainable(tmp_path):
    path = tmp_path / "eafo.toml"
    path.write_text(GOOD)
    space = load_eafo_space(path)
    rng = random.Random(0)
    flags = {space.sample(rng)["trainable"] for _ in range(50)}
    assert flags == {True, False}
