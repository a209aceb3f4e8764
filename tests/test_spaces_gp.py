import json
import random

import pytest
import torch
from deap import creator

from afsearch.compile import compile_activation
from afsearch.errors import SpaceError
from afsearch.expr import parse
from afsearch.reference import REFERENCES
from afsearch.spaces import load_space
from afsearch.spaces.gp import MUTATIONS, GPSpace, load_gp_space, seeded_global_random


@pytest.fixture(scope="module")
def space() -> GPSpace:
    return load_space("gp")


def _check(space, genotype):
    tree = space.to_tree(genotype)  # raises over the limits or on unknown tokens
    assert tree.height <= space.max_height and len(tree) <= space.max_size
    expr = space.to_expr(genotype)
    assert expr.size == len(tree) and expr.depth == tree.height + 1
    assert json.loads(json.dumps(genotype)) == genotype
    low, high = space.const_range
    assert all(low <= t <= high for t in genotype if isinstance(t, float))


def test_creator_classes_exist_at_import():
    assert hasattr(creator, "AfsIndividual") and hasattr(creator, "AfsFitnessMax")


def test_genotype_to_expression(space):
    g = ["mul", "x", "sigmoid", "mul", "beta", "x"]
    assert space.to_candidate(g).spec == "x * sigmoid(beta * x)"
    g = ["add", "cos", "x", -0.5]
    assert space.to_expr(g) == parse("cos(x) + -0.5")
    assert space.from_tree(space.to_tree(g)) == g


def test_seeds_are_references_in_the_space(space):
    seeds = space.seeds()
    specs = [space.to_candidate(g).spec for g in seeds]
    assert "relu(x)" in specs and "x * sigmoid(beta * x)" in specs and "cos(x) * x" in specs
    assert space.to_expr(space.from_expr("0.5 * x * (1 + erf(x / 1.4142135623730951))")) == parse(
        REFERENCES["gelu"].formula
    )
    assert space.from_expr("mish(x)") is None  # not an op of this space
    assert space.from_expr("sin(sin(sin(sin(sin(sin(sin(x)))))))") is None  # over the height


def test_variation_respects_limits_over_thousands_of_draws(space):
    """Grow pressure: always vary the largest trees so the limits are actually reached."""
    rng = random.Random(0)
    pop = [space.sample(rng) for _ in range(30)]
    x = torch.linspace(-3, 3, 11)
    heights, sizes = set(), set()
    for step in range(3000):
        pop.sort(key=len, reverse=True)
        parent = pop[rng.randrange(10)]
        if step % 2:
            child = space.mutate(parent, rng)
        else:
            child = space.crossover(parent, rng.choice(pop), rng)[rng.randrange(2)]
        _check(space, child)
        pop[-1] = child
        tree = space.to_tree(child)
        heights.add(tree.height)
        sizes.add(len(tree))
        if step % 25 == 0:
            module = compile_activation(space.to_candidate(child).spec).new_module()
            assert module(x).shape == x.shape
    assert max(heights) == space.max_height  # the limits were reached, never passed
    assert max(sizes) > space.max_size // 2


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_each_mutation_respects_limits(mutation):
    space = GPSpace(
        "t",
        ops=("add", "mul", "sin", "neg"),
        trainable={"beta": 1.0},
        max_height=4,
        max_size=12,
        mutations=(mutation,),
    )
    rng = random.Random(1)
    g = space.sample(rng)
    changed = 0
    for _ in range(400):
        child = space.mutate(g, rng)
        _check(space, child)
        changed += child != g
        g = child if rng.random() < 0.8 else space.sample(rng)
    assert changed > 0


def test_mutation_never_hands_back_the_parent(space):
    # a third of single DEAP mutations leave the tree as it was (nothing to perturb, nothing
    # to shrink, over the limits); `mutate` draws again until the child differs
    rng = random.Random(3)
    parents = [space.sample(rng) for _ in range(300)]
    assert all(space.mutate(p, rng) != p for p in parents)
    only_constants = GPSpace("t", ops=("add", "sin"), trainable={}, mutations=("ephemeral",))
    assert only_constants.mutate(["sin", "x"], rng) == ["sin", "x"]  # nothing applies: the parent


def test_samples_use_x_and_vary(space):
    rng = random.Random(2)
    samples = [space.sample(rng) for _ in range(300)]
    for g in samples:
        _check(space, g)
        assert "x" in g
    assert len({json.dumps(g) for g in samples}) > 150


def test_reproducible_and_global_random_restored(space):
    random.seed(123)
    expected_next = random.random()
    random.seed(123)
    a = [space.sample(random.Random(5)) for _ in range(2)]
    b = space.mutate(a[0], random.Random(6)), space.mutate(a[0], random.Random(6))
    c = space.crossover(a[0], a[1], random.Random(7)), space.crossover(a[0], a[1], random.Random(7))
    assert a[0] == a[1] and b[0] == b[1] and c[0] == c[1]
    assert random.random() == expected_next  # our calls did not consume the global stream


def test_seeded_global_random_restores_on_error():
    state = random.getstate()
    with pytest.raises(RuntimeError), seeded_global_random(random.Random(0)):
        raise RuntimeError
    assert random.getstate() == state


@pytest.mark.parametrize(
    "bad",
    [
        [],
        ["mul", "x"],
        ["x", "x"],
        ["foo", "x"],
        ["const"],
        ["sin", True],
        ["sin", None],
        ["add", "x", {"a": 1}],
        ["sin"] * 10 + ["x"],
    ],
)
def test_bad_genotypes(space, bad):
    with pytest.raises(SpaceError, match="genotype"):
        space.to_candidate(bad)


def test_genotype_is_never_evaluated(space):
    with pytest.raises(SpaceError):
        space.to_candidate(["__import__('os').system('true')"])


GOOD = """
name = "t"
kind = "gp"
[limits]
max_height = 4
max_size = 15
[primitives]
ops = ["add", "sin"]
[terminals]
trainable = { beta = 0.5 }
constants = { low = -1.0, high = 1.0 }
"""


@pytest.mark.parametrize(
    ("old", "new", "key", "allowed"),
    [
        ('"sin"]', '"sine"]', "primitives.ops[1]", "asinh"),  # unknown primitive
        ("max_height = 4", "max_height = -2", "limits.max_height", "int >= 1"),  # negative limit
        ("max_size = 15", "max_size = 1000", "limits.max_size", "3..400"),
        ("max_size = 15\n", "", "limits.max_size", "integer"),  # missing key
        ("max_height = 4", 'max_height = "four"', "limits.max_height", "integer"),  # wrong type
        ("beta = 0.5", "beta = 'half'", "terminals.trainable.beta", "number"),
        ("beta = 0.5", "x = 0.5", "terminals.trainable.x", "alpha, beta"),
        ("high = 1.0", "high = -3.0", "terminals.constants.high", "number > -1"),
        ('kind = "gp"', 'kind = "gpp"', "kind", "gp"),
    ],
)
def test_malformed_files(tmp_path, old, new, key, allowed):
    path = tmp_path / "gp.toml"
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(SpaceError) as err:
        load_gp_space(path)
    message = str(err.value)
    assert str(path) in message and f"key '{key}'" in message and "allowed:" in message
    assert allowed in message


def test_custom_file(tmp_path):
    path = tmp_path / "gp.toml"
    path.write_text(GOOD)
    space = load_gp_space(path)
    g = space.sample(random.Random(0))
    assert set(t for t in g if isinstance(t, str)) <= {"add", "sin", "x", "beta"}
    assert space.to_expr(["beta"]).params() == {"beta": 0.5}


def test_smallest_members_are_small_distinct_and_include_ordinary_shapes(space):
    from afsearch.expr import evaluate_numpy, fingerprint, probe_points

    members = space.smallest()
    assert len(members) > 10_000
    x = probe_points()
    outputs = set()
    for genotype in members[::7]:
        _check(space, genotype)
        assert 2 <= len(genotype) <= 5 and "x" in genotype
        outputs.add(evaluate_numpy(space.to_expr(genotype), x).astype("float32").tobytes())
    assert len(outputs) == len(members[::7])  # one tree per function
    functions = {fingerprint(space.to_expr(g)) for g in members}
    for formula in ("x * tanh(x)", "max(x, tanh(x))", "erf(x) * relu(x)", "x * sigmoid(x)", "exp(-(x^2))", "x - beta"):
        assert fingerprint(parse(formula)) in functions, formula
    assert fingerprint(parse("x + exp(-(x^2))")) not in functions  # six nodes
