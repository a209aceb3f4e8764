import numpy as np
import pytest
import torch
from hypothesis import given, settings

from afsearch.compile import CompileCache, compile_activation, generate_module
from afsearch.expr import PRIMITIVES, Expr, evaluate_numpy, parse
from tests.strategies import trees

GRID = np.concatenate([np.linspace(-6, 6, 241), [-20.0, 20.0, -1e-3, 1e-3]])


def _torch_eval(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    module = module.double()
    with torch.no_grad():
        return module(torch.tensor(x, dtype=torch.float64)).numpy()


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_every_primitive_torch_form_matches_numpy_form(name):
    prim = PRIMITIVES[name]
    x = Expr.var()
    args = (x,) if prim.arity == 1 else (x, Expr.call("cos", x))
    expr = Expr.call(name, *args)
    got = _torch_eval(compile_activation(expr).new_module(), GRID)
    want = evaluate_numpy(expr, GRID)
    both = np.isfinite(got) & np.isfinite(want)
    assert both.mean() > 0.9
    np.testing.assert_allclose(got[both], want[both], rtol=1e-9, atol=1e-9)


@settings(max_examples=150, deadline=None)
@given(trees())
def test_random_trees_compile_and_torch_matches_numpy_where_finite(tree):
    compiled = compile_activation(tree)
    got = _torch_eval(compiled.new_module(), GRID)
    want = evaluate_numpy(tree, GRID)
    assert got.shape == GRID.shape
    both = np.isfinite(got) & np.isfinite(want) & _well_conditioned(tree, GRID, want)
    np.testing.assert_allclose(got[both], want[both], rtol=1e-6, atol=1e-8)


def _well_conditioned(tree: Expr, x: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Points where the formula itself is stable: a 1e-10 relative nudge of x moves the value
    by less than the test's tolerance. Elsewhere (e.g. sin(x ** (x * x)) at x = 5, the sine of
    ~3e17) any two correct float64 implementations disagree, so there is nothing to compare."""
    with np.errstate(all="ignore"):
        nudged = evaluate_numpy(tree, x * (1 + 1e-10))
        return np.abs(nudged - want) <= 1e-8 + 1e-7 * np.abs(want)


@settings(max_examples=25, deadline=None)
@given(trees(max_leaves=6))
def test_torchscript_matches_eager_values_and_gradients(tree):
    compiled = compile_activation(tree)
    eager, scripted = compiled.new_module().double(), compiled.new_scripted().double()
    # 100 points: none is exactly 0, +-0.5 or +-1, where kinks (abs, max(x, 0.1 * x), relu) sit;
    # there any subgradient is right, and TorchScript's optimised graph (from the second call
    # on) may pick another one than eager did
    x1 = torch.linspace(-4, 4, 100, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = eager(x1), scripted(x2)
    torch.testing.assert_close(y1, y2, equal_nan=True)
    if y1.requires_grad:
        y1.sum().backward()
        y2.sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad, equal_nan=True)


def test_trainable_constants_are_parameters_and_modules_are_independent():
    compiled = compile_activation("x * sigmoid(beta[0.5] * x)")
    a, b = compiled.new_module(), compiled.new_module()
    assert dict(a.named_parameters())["beta"].item() == 0.5
    with torch.no_grad():
        a.beta.fill_(3.0)
    assert b.beta.item() == 0.5
    assert list(a.state_dict()) == ["beta"]


def test_cache_by_fingerprint_shares_one_class():
    cache = CompileCache()
    first = cache.compile("x * sigmoid(x)")
    second = cache.compile("sigmoid(x) * x")
    assert first.module_class is second.module_class
    assert second.formula == "sigmoid(x) * x" or second.expr == parse("sigmoid(x) * x")
    assert len(cache) == 1
    cache.compile("x * sigmoid(beta * x)")
    assert len(cache) == 2


def test_constant_formula_keeps_input_shape():
    module = compile_activation("sin(2) + 1").new_module()
    assert module(torch.zeros(3, 4)).shape == (3, 4)


def test_generated_source_imports_only_torch():
    source = generate_module(parse("relu(x) + eps[0.01] * x * exp(-x^2 / 2)")).source
    imports = [line for line in source.splitlines() if line.startswith(("import", "from"))]
    assert imports == ["import torch"]
    assert "eps" in source and "LaTeX" in source


def test_module_follows_dtype_and_bf16():
    module = compile_activation("x * sigmoid(beta * x) + 0.5 * sin(x)").new_module()
    assert module.to(torch.bfloat16)(torch.ones(4, dtype=torch.bfloat16)).dtype == torch.bfloat16
