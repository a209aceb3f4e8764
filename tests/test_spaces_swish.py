import json
import random
from pathlib import Path

import pytest
import torch

from afsearch.compile import compile_activation
from afsearch.errors import SpaceError
from afsearch.expr import fingerprint, parse
from afsearch.reference import get_reference
from afsearch.spaces import load_space
from afsearch.spaces.swish import SOURCES, SwishSpace, load_swish_space

ROOT = Path(__file__).resolve().parents[1]

TOP_EIGHT = {  # REFERENCE §1, with the unit count each needs in this space
    "x * sigmoid(beta * x)": 1,
    "max(x, sigmoid(x))": 1,
    "cos(x) - x": 1,
    "min(x, sin(x))": 1,
    "atan(x)^2 - x": 2,
    "max(x, tanh(x))": 1,
    "sinc(x) + x": 1,
    "x * asinh(x)^2": 2,
}


@pytest.fixture(scope="module")
def space() -> SwishSpace:
    return load_space("swish")


def test_lists_are_the_papers(space):
    assert len(space.unary) == 25  # 24 unary ops plus the constant beta
    assert len(space.binary) == 10
    assert (space.min_units, space.max_units) == (1, 3)
    assert space.size(1) == 10 * 25 * 25
    assert space.size() == 6250 * (1 + 12500 + 12500**2)


def test_enumeration_and_distinct_count(space):
    genotypes = list(space.enumerate(1))
    assert len(genotypes) == space.size(1) == 6250
    assert len({json.dumps(g) for g in genotypes}) == 6250
    distinct = space.distinct(1)
    assert 1000 < len(distinct) < 6250  # many unit combinations compute the same function
    assert len(distinct) == 4023  # measured; changes only if the op lists or fingerprints do


@pytest.mark.parametrize("formula", list(TOP_EIGHT))
def test_top_eight_are_members(space, formula):
    expr = parse(formula)
    genotype = space.find(expr)
    assert genotype is not None
    assert len(genotype["units"]) == TOP_EIGHT[formula]
    assert fingerprint(space.to_expr(genotype)) == fingerprint(expr)
    assert space.contains(formula)


def test_seeds(space):
    seeds = space.seeds()
    assert len(seeds) == 10  # relu, silu, swish and the top eight (swish counted once)
    fps = {fingerprint(space.to_expr(g)) for g in seeds}
    assert fingerprint(parse("relu(x)")) in fps and fingerprint(parse("cos(x) - x")) in fps


def test_swish_is_trainable_member(space):
    genotype = space.find(get_reference("swish").formula)
    expr = space.to_expr(genotype)
    assert list(expr.params()) == ["beta"]
    # fixed beta = 1 (SiLU) is a different function from trainable Swish
    assert fingerprint(space.to_expr(space.find("x * sigmoid(x)"))) != fingerprint(expr)


def test_multi_unit_members_and_non_members(space):
    mish = space.find("x * tanh(softplus(x))")  # a unary of a unary: needs a second unit
    assert mish is not None and len(mish["units"]) == 2
    assert space.find("cos(x) * 3.7") is None  # no op makes the constant 3.7
    assert not space.contains("sin(x)^5")


def test_beta_shared_within_op_and_separate_across_ops(space):
    mix = space.to_expr({"units": [["mix", "identity", "sin"]]})
    assert list(mix.params()) == ["beta"]  # beta * a + (1 - beta) * b: one parameter
    two = space.to_expr({"units": [["mix", "scale", "sin"]]})
    assert sorted(two.params()) == ["beta1", "beta2"]


def test_composition_rule(space):
    g = {"units": [["add", "identity", "sin"], ["mul", "identity", "identity", "x"]]}
    assert str(space.to_expr(g)) == "(x + sin(x)) * x"
    g["units"][1][3] = "prev"
    assert str(space.to_expr(g)) == "(x + sin(x)) * (x + sin(x))"


def _check(space, genotype):
    units = space.validate(genotype)
    assert space.min_units <= len(units) <= space.max_units
    for k, unit in enumerate(units):
        assert unit[0] in space.binary and unit[1] in space.unary and unit[2] in space.unary
        assert len(unit) == (3 if k == 0 else 4) and (k == 0 or unit[3] in SOURCES)
    assert json.loads(json.dumps(genotype)) == genotype


def test_variation_stays_inside_and_compiles(space):
    rng = random.Random(1)
    pop = [space.sample(rng) for _ in range(20)]
    compiled = 0
    x = torch.linspace(-3, 3, 11)
    for step in range(3000):
        op = step % 3
        if op == 0:
            child = space.sample(rng)
        elif op == 1:
            child = space.mutate(rng.choice(pop), rng)
        else:
            child = space.crossover(rng.choice(pop), rng.choice(pop), rng)[rng.randrange(2)]
        _check(space, child)
        pop[rng.randrange(len(pop))] = child
        if step % 20 == 0:
            module = compile_activation(space.to_candidate(child).spec).new_module()
            assert module(x).shape == x.shape
            compiled += 1
    assert compiled == 150
    assert {len(g["units"]) for g in pop} <= {1, 2, 3}


def test_mutation_changes_the_genotype(space):
    rng = random.Random(3)
    g = space.sample(rng)
    assert all(space.mutate(g, rng) != g for _ in range(200))


def test_determinism(space):
    a = [space.sample(random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_bad_genotypes(space):
    for bad in [
        {"units": []},
        {"units": [["add", "sin"]]},
        {"units": [["foo", "sin", "cos"]]},
        {"units": [["add", "sin", "cos"], ["add", "sin", "cos", "y"]]},
        ["add"],
        {"units": [["add", "sin", "cos"]] * 4},
    ]:
        with pytest.raises(SpaceError, match="genotype"):
            space.to_candidate(bad)


def _write(tmp_path, body):
    path = tmp_path / "space.toml"
    path.write_text(body)
    return path


GOOD = """
name = "t"
kind = "swish"
[limits]
max_units = 2
[unary]
identity = "u"
sin = "sin(u)"
[binary]
add = "a + b"
"""


def test_small_custom_space(tmp_path):
    space = load_swish_space(_write(tmp_path, GOOD))
    assert space.size() == 4 + 4 * 8
    assert len(list(space.enumerate())) == space.size()


def test_two_unit_only_space_finds_members(tmp_path):
    space = load_swish_space(_write(tmp_path, GOOD.replace("[limits]", "[limits]\nmin_units = 2")))
    assert space.size() == 4 * 8
    genotype = space.find("sin(x + sin(x)) + x")
    assert genotype == {"units": [["add", "identity", "sin"], ["add", "sin", "identity", "x"]]}
    assert space.find("sin(x) + x") is None  # one unit only: below this space's min_units
    with pytest.raises(SpaceError):
        space.to_expr({"units": [["add", "identity", "sin"]]})
    smallest = space.smallest()  # its smallest members have two units, and are members
    assert smallest and all(len(g["units"]) == 2 for g in smallest)
    for genotype in smallest:
        space.to_candidate(genotype)


@pytest.mark.parametrize(
    ("old", "new", "key", "allowed"),
    [
        ('sin = "sin(u)"', 'sin = "sine(u)"', "unary.sin", "formula in u"),  # unknown primitive
        ('sin = "sin(u)"', 'sin = "max(u)"', "unary.sin", "formula in u"),  # wrong arity
        ('add = "a + b"', 'add = "sin(a, b)"', "binary.add", "formula in a, b"),
        ('add = "a + b"', 'add = "a + a"', "binary.add", "a formula in a and b"),
        ('sin = "sin(u)"', 'sin = "sin(x)"', "unary.sin", "formula in u"),
        ("max_units = 2", "max_units = -1", "limits.max_units", "int >= 1"),  # negative limit
        ("max_units = 2", "", "limits.max_units", "integer"),  # missing key
        ("max_units = 2", 'max_units = "two"', "limits.max_units", "integer"),  # wrong type
        ('sin = "sin(u)"', "sin = 3", "unary.sin", "string"),
        ('kind = "swish"', 'kind = "swish"\nextra = 1', "extra", "binary, description"),
    ],
)
def test_malformed_files(tmp_path, old, new, key, allowed):
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(SpaceError) as err:
        load_swish_space(path)
    message = str(err.value)
    assert str(path) in message and f"key '{key}'" in message and "allowed:" in message
    assert allowed in message


def test_shipped_file_loads_via_path():
    assert load_space(ROOT / "search_spaces" / "swish.toml").size(1) == 6250


def test_smallest_members_are_the_one_unit_functions(space):
    members = space.smallest()
    assert members == list(space.distinct(1).values())
    assert all(len(g["units"]) == 1 for g in members)
