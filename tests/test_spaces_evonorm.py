import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from afsearch.candidate import Candidate
from afsearch.errors import SpaceError
from afsearch.spaces.evonorm import (
    EVONORM_B0_GRAPH,
    EVONORM_S0_GRAPH,
    EvoNormB0,
    EvoNormS0,
    EvoNormSpace,
    LayerGraph,
    load_evonorm_space,
    reduce_groups,
)

ROOT = Path(__file__).resolve().parents[1]
SPACE_FILE = ROOT / "search_spaces" / "evonorm.toml"


@pytest.fixture(scope="module")
def space() -> EvoNormSpace:
    return load_evonorm_space(SPACE_FILE)


# -- EvoNorm-B0 / S0: graph form == hand-written form ------------------------------------------


def _check_same(ref, layer, x, weight):
    """Same values and gradients (input, v, gamma, beta) for one forward/backward."""
    xr, xl = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr, yl = ref(xr), layer(xl)
    torch.testing.assert_close(yl, yr, rtol=1e-5, atol=1e-6)
    (yr * weight).sum().backward()
    (yl * weight).sum().backward()
    torch.testing.assert_close(xl.grad, xr.grad, rtol=1e-4, atol=1e-6)
    for mine, theirs in [(layer.v1, ref.v), (layer.gamma, ref.gamma), (layer.beta, ref.beta)]:
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-5)
    assert layer.v0.grad is None  # v0 is not part of B0 or S0


@pytest.mark.parametrize(
    "graph, make_ref, channels",
    [
        (EVONORM_B0_GRAPH, EvoNormB0, 16),
        (EVONORM_S0_GRAPH, EvoNormS0, 64),  # 32 groups of 2 channels
        (EVONORM_S0_GRAPH, EvoNormS0, 40),  # groups reduced to 20
        (EVONORM_S0_GRAPH, lambda c: EvoNormS0(c, groups=4), 12),
    ],
)
def test_graph_matches_reference_in_train_and_eval(graph, make_ref, channels):
    torch.manual_seed(0)
    ref = make_ref(channels)
    layer = LayerGraph.from_json({**graph, "groups": getattr(ref, "groups", 32)}).build(channels)
    with torch.no_grad():  # start from non-default parameters so each one matters
        for p in (ref.v, ref.gamma, ref.beta):
            p.add_(0.3 * torch.randn_like(p))
        layer.v1.copy_(ref.v), layer.gamma.copy_(ref.gamma), layer.beta.copy_(ref.beta)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    ref.train(), layer.train()
    for _ in range(4):  # train steps: parameters and running statistics move
        x, weight = 2 * torch.randn(8, channels, 5, 5) + 0.5, torch.randn(8, channels, 5, 5)
        ref_opt.zero_grad(), opt.zero_grad()
        _check_same(ref, layer, x, weight)
        ref_opt.step(), opt.step()
    if isinstance(ref, EvoNormB0):
        assert not torch.allclose(ref.running_var, torch.ones(channels))
        torch.testing.assert_close(layer.running_4, ref.running_var)
    ref.eval(), layer.eval()
    for batch in (8, 1):
        x, weight = 2 * torch.randn(batch, channels, 5, 5), torch.randn(batch, channels, 5, 5)
        ref_opt.zero_grad(), opt.zero_grad()
        _check_same(ref, layer, x, weight)


def test_eval_mode_uses_running_batch_statistics():
    layer = LayerGraph.from_json(EVONORM_B0_GRAPH).build(8)
    before = layer.running_4.clone()
    layer.eval()
    x = torch.randn(6, 8, 4, 4)
    batched = layer(x)
    torch.testing.assert_close(layer(x[:1]), batched[:1])  # no dependence on the rest of the batch
    torch.testing.assert_close(layer.running_4, before)  # eval does not update
    layer.train()
    layer(3 * x)
    assert not torch.allclose(layer.running_4, before)


def test_reduce_groups():
    assert [reduce_groups(32, c) for c in (64, 40, 24, 3, 1)] == [32, 20, 24, 3, 1]


def test_formulas():
    assert (
        LayerGraph.from_json(EVONORM_B0_GRAPH).formula()
        == "x / max(std_NHW(x), v1 * x + std_HW(x))"
    )
    assert LayerGraph.from_json(EVONORM_S0_GRAPH).formula() == "x * sigmoid(v1 * x) / std_HWG(x)"
    graph = {
        "nodes": [["add", 0, 3], ["neg", 4], ["div", 0, 4], ["div", 6, 4], ["mul", 4, 5]],
        "output": 8,
    }
    assert LayerGraph.from_json(graph).formula() == "(x + v1) * -(x + v1)"
    assert LayerGraph.from_json({**graph, "output": 7}).formula() == "x / (x + v1) / (x + v1)"
    assert (
        LayerGraph.from_json({"nodes": [["div", 0, 1], ["div", 2, 4]], "output": 5}).formula()
        == "v0 / (x / 0)"
    )


# -- the space: sampling, mutation, candidates ------------------------------------------------


def _assert_inside(space, genotype):
    graph = space.validate(genotype)  # raises if outside the limits
    assert space.min_nodes <= len(graph.nodes) <= space.max_nodes
    assert graph.ops() <= set(space.ops) and graph.depends_on_input
    assert json.loads(json.dumps(genotype)) == genotype
    return graph


def test_samples_and_mutants_stay_inside_and_compile(space):
    rng = random.Random(1)
    parents = [space.sample(rng) for _ in range(1500)] + space.seeds()
    mutants = [space.mutate(rng.choice(parents), rng) for _ in range(1500)]
    chain = space.seeds()[0]
    for _ in range(300):  # long mutation chains drift far from the seed
        chain = space.mutate(chain, rng)
        mutants.append(chain)
    for genotype in parents + mutants:
        _assert_inside(space, genotype)
        candidate = space.to_candidate(genotype)
        assert candidate.is_layer
        assert isinstance(candidate.layer_factory()(8), nn.Module)
    sizes = {len(g["nodes"]) for g in parents}
    assert sizes == set(range(space.min_nodes, space.max_nodes + 1))
    assert len({json.dumps(g) for g in parents}) > 1400


def test_mutation_changes_one_node_to_one_of_equal_arity(space):
    rng = random.Random(2)
    for _ in range(500):
        parent = space.sample(rng)
        child = space.mutate(parent, rng)
        changed = [(a, b) for a, b in zip(parent["nodes"], child["nodes"], strict=True) if a != b]
        assert len(changed) == 1 and len(changed[0][0]) == len(changed[0][1])
        assert child["output"] == parent["output"]


def test_sampling_is_deterministic(space):
    assert [space.sample(random.Random(5)) for _ in range(3)] == [
        space.sample(random.Random(5))
    ] * 3


def test_degenerate_space_mutation_returns_parent():
    tiny = EvoNormSpace(name="tiny", ops=("abs",), max_nodes=1, min_nodes=1)
    g = tiny.sample(random.Random(0))
    assert g["nodes"] == [["abs", 0]] and tiny.mutate(g, random.Random(0)) == g


def test_sampled_layers_train_and_eval_in_a_small_cnn(space):
    rng = random.Random(3)
    torch.manual_seed(0)
    x, target = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))
    for genotype in [*space.seeds(), *(space.sample(rng) for _ in range(25))]:
        factory = space.to_candidate(genotype).layer_factory()
        model = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            factory(16),
            nn.Conv2d(16, 8, 3, padding=1),
            factory(8),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 5),
        )
        for train in (True, False):
            model.train(train)
            model.zero_grad()
            out = model(x)
            assert out.shape == (4, 5)
            nn.functional.cross_entropy(out, target).backward()
            assert model[0].weight.grad is not None


def test_seeds_fit_the_default_space(space):
    assert [LayerGraph.from_json(g) for g in space.seeds()] == [
        LayerGraph.from_json(EVONORM_B0_GRAPH),
        LayerGraph.from_json(EVONORM_S0_GRAPH),
    ]
    no_max = EvoNormSpace(name="s", ops=tuple(o for o in space.ops if o != "max"), max_nodes=10)
    assert no_max.seeds() == [EVONORM_S0_GRAPH]


def test_validate_rejects_genotypes_outside_the_limits(space):
    small = EvoNormSpace(name="small", ops=("mul", "sigmoid", "group_std", "div"), max_nodes=5)
    small.validate(EVONORM_S0_GRAPH)
    with pytest.raises(SpaceError, match=r"layer graph \(space 'small'\): key 'nodes': 6 nodes"):
        small.validate(EVONORM_B0_GRAPH)
    with pytest.raises(
        SpaceError, match=r"key 'nodes\[0\]': op 'batch_std' is not in this space; allowed: mul"
    ):
        EvoNormSpace(name="s", ops=("mul",), max_nodes=9).validate(EVONORM_B0_GRAPH)
    with pytest.raises(SpaceError, match="key 'groups'"):
        small.validate({**EVONORM_S0_GRAPH, "groups": 8})


# -- genotype JSON ----------------------------------------------------------------------------


def test_json_round_trip_in_a_fresh_process(space, tmp_path):
    rng = random.Random(4)
    genotypes = [*space.seeds(), *(space.mutate(space.sample(rng), rng) for _ in range(20))]
    expected = [
        [g, LayerGraph.from_json(g).formula(), LayerGraph.from_json(g).fingerprint()]
        for g in genotypes
    ]
    path = tmp_path / "genotypes.json"
    path.write_text(json.dumps(genotypes))
    script = (
        "import json, sys\n"
        "from afsearch.spaces.evonorm import LayerGraph\n"
        "graphs = [LayerGraph.from_json(g) for g in json.load(open(sys.argv[1]))]\n"
        "print(json.dumps([[g.to_json(), g.formula(), g.fingerprint()] for g in graphs]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == expected


def test_fingerprint_ignores_dead_nodes_and_operand_order():
    b0 = LayerGraph.from_json(EVONORM_B0_GRAPH)
    padded = {  # B0 with two dead nodes, exp(v0) and square(x)
        "nodes": [
            ["exp", 2],
            ["batch_std", 0],
            ["mul", 3, 0],
            ["square", 0],
            ["instance_std", 0],
            ["add", 6, 8],
            ["max", 5, 9],
            ["div", 0, 10],
        ],
        "output": 11,
    }
    swapped = {
        "nodes": [n if n[0] != "add" else ["add", 6, 5] for n in EVONORM_B0_GRAPH["nodes"]],
        "output": 9,
    }
    assert LayerGraph.from_json(padded).fingerprint() == b0.fingerprint()
    assert LayerGraph.from_json(swapped).fingerprint() == b0.fingerprint()
    assert LayerGraph.from_json({**EVONORM_B0_GRAPH, "groups": 4}).fingerprint() == b0.fingerprint()
    s0 = LayerGraph.from_json(EVONORM_S0_GRAPH)
    assert s0.fingerprint() != b0.fingerprint()
    assert LayerGraph.from_json({**EVONORM_S0_GRAPH, "groups": 4}).fingerprint() != s0.fingerprint()
    # v0 and v1 start at 0 and 1 but are different parameters: v1*x is not x
    assert (
        LayerGraph.from_json({"nodes": [["mul", 3, 0]], "output": 4}).fingerprint()
        != LayerGraph.from_json({"nodes": [["abs", 0], ["max", 0, 0]], "output": 5}).fingerprint()
    )


@pytest.mark.parametrize(
    "data, key, problem",
    [
        ([1, 2], "''", "expected an object"),
        (
            {"nodes": [["sigmoid", 0]], "output": 4, "extra": 1},
            "'extra'",
            "unknown key; allowed: nodes, output, groups",
        ),
        ({"nodes": [], "output": 4}, "'nodes'", "expected a non-empty list"),
        (
            {"nodes": [["swish", 0]], "output": 4},
            r"'nodes\[0\]'",
            "unknown op 'swish'; allowed: add, mul",
        ),
        (
            {"nodes": [["add", 0]], "output": 4},
            r"'nodes\[0\]'",
            r"op 'add' takes 2 input\(s\), got 1",
        ),
        ({"nodes": [["abs", 4]], "output": 4}, r"'nodes\[0\]'", "input 4 is not an earlier node"),
        (
            {"nodes": [["abs", True]], "output": 4},
            r"'nodes\[0\]'",
            "input True is not an earlier node",
        ),
        ({"nodes": [["abs", 0]], "output": 5}, "'output'", r"allowed: integers 4..4"),
        ({"nodes": [["abs", 0]]}, "'output'", "expected a node index, got None"),
        (
            {"nodes": [["abs", 0], ["exp", 3]], "output": 5},
            "'output'",
            "does not depend on the input x",
        ),
        (
            {"nodes": [["batch_mean", 0], ["add", 4, 3]], "output": 5},
            "'output'",
            "constants in eval mode",
        ),
        (
            {"nodes": [["abs", 0]], "output": 4, "groups": 0},
            "'groups'",
            "expected a positive integer",
        ),
    ],
)
def test_malformed_graphs_are_rejected(data, key, problem):
    with pytest.raises(SpaceError, match=f"^layer graph: key {key}: .*{problem}"):
        LayerGraph.from_json(data)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-2, 12)
    | st.floats(allow_nan=False)
    | st.sampled_from(["abs", "add", "batch_std", "x"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["nodes", "output", "groups", "z"]), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_from_json_accepts_or_raises_space_error(data):
    try:
        graph = LayerGraph.from_json(data)
    except SpaceError:
        return
    assert LayerGraph.from_json(graph.to_json()) == graph


def test_candidate_spec_round_trip(space):
    candidate = space.to_candidate(EVONORM_S0_GRAPH)
    assert candidate == Candidate.layer(
        json.dumps(LayerGraph.from_json(EVONORM_S0_GRAPH).to_json())
    )
    again = Candidate.from_json(json.loads(json.dumps(candidate.to_json())))
    layer = again.layer_factory()(32)
    assert layer(torch.randn(2, 32, 3, 3)).shape == (2, 32, 3, 3)
    with pytest.raises(ValueError, match="expected an"):
        layer(torch.randn(2, 32))


# -- the space file ---------------------------------------------------------------------------


def test_default_space_file(space):
    assert space.name == "evonorm" and space.size() is None and not space.has_crossover
    assert {"batch_std", "instance_std", "group_std", "group_rms", "max", "div", "sigmoid"} <= set(
        space.ops
    )
    assert (
        space.groups == 32 and space.describe()["nodes"] == f"{space.min_nodes}..{space.max_nodes}"
    )


GOOD = SPACE_FILE.read_text()


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            '"tanh"',
            '"tanhh"',
            r"key 'ops.unary\[2\]': unknown value string 'tanhh'; allowed: neg, sigmoid, tanh",
        ),
        (
            '"tanh"',
            '"add"',
            r"key 'ops.unary\[2\]': wrong arity: 'add' takes 2 input\(s\); allowed: neg, sigmoid",
        ),
        (
            'binary = ["add"',
            'binary = ["abs"',
            r"key 'ops.binary\[0\]': wrong arity: 'abs' takes 1 .*; allowed: add, mul, div, max",
        ),
        (
            '"std", ',
            '"stdev", ',
            r"key 'aggregates.statistics\[2\]': unknown value string 'stdev'; allowed: mean, var, std, m2, rms",
        ),
        (
            '"instance"',
            '"channel"',
            r"key 'aggregates.axes\[1\]': unknown value .*; allowed: batch, instance, group",
        ),
        (
            "max_nodes = 10",
            "max_nodes = -3",
            r"key 'limits.max_nodes': -3 is below the minimum; allowed: int >= 2",
        ),
        (
            "min_nodes = 2",
            "min_nodes = 0",
            r"key 'limits.min_nodes': 0 is below the minimum; allowed: int >= 1",
        ),
        ("max_nodes = 10", "", r"key 'limits.max_nodes': missing; allowed: integer"),
        ('name = "evonorm"\n', "", r"key 'name': missing"),
        (
            "groups = 32",
            'groups = "32"',
            r"key 'aggregates.groups': expected integer, got string '32'; allowed: integer",
        ),
        (
            "max_nodes = 10",
            "max_nodes = 10.5",
            r"key 'limits.max_nodes': expected integer, got number 10.5",
        ),
        (
            'kind = "evonorm"',
            'kind = "gp"',
            r"key 'kind': unknown value string 'gp'; allowed: evonorm",
        ),
        (
            "max_nodes = 10",
            "max_nodes = 10\nmax_depth = 3",
            r"key 'limits.max_depth': unknown key; allowed: max_nodes, min_nodes",
        ),
        (
            "[aggregates]",
            "[aggregate]",
            r"key 'aggregate': unknown key; allowed: aggregates, description, kind, limits, name, ops",
        ),
        ("unary = [", "unary = ", r"invalid TOML: .*line 23"),
    ],
)
def test_malformed_space_files(tmp_path, old, new, message):
    assert old in GOOD
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(SpaceError, match=f"^{path}: .*{message}"):
        load_evonorm_space(path)


def test_space_without_ops_is_rejected(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text(
        'name = "e"\nkind = "evonorm"\n[limits]\nmax_nodes = 3\n[ops]\nunary = []\nbinary = []\n'
        "[aggregates]\nstatistics = []\naxes = []\n"
    )
    with pytest.raises(SpaceError, match=f"^{path}: key 'ops': the space has no ops"):
        load_evonorm_space(path)


def test_layers_copy_pickle_and_reload_state():
    import copy
    import pickle

    layer = LayerGraph.from_json(EVONORM_B0_GRAPH).build(8)
    layer(torch.randn(4, 8, 3, 3))  # move the running variance
    x = torch.randn(2, 8, 3, 3)
    fresh = LayerGraph.from_json(EVONORM_B0_GRAPH).build(8)
    fresh.load_state_dict(layer.state_dict())
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer)), fresh):
        torch.testing.assert_close(other.eval()(x), layer.eval()(x))
    assert set(layer.state_dict()) == {"v0", "v1", "gamma", "beta", "running_4"}
