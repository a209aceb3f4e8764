"""Fused CPU kernels (afsearch/compile/fused.py, _fused.c) against the eager generated module.

The reference is always the eager module built by codegen, run in float32 on the same input:
values, input gradients and trainable-constant gradients must agree within float32
tolerance wherever eager is finite, and be non-finite exactly where eager is. Special values
sit at the start of every input and inputs are a multiple of 64 long, so eager torch runs its
vectorised loops on them (its scalar tail loop treats NaN differently in a few ops)."""

from __future__ import annotations

import copy
import os
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from afsearch.compile import CompileCache, CompiledActivation
from afsearch.compile.fused import (
    AUTO_MIN_ELEMENTS,
    FusedActivation,
    build_library,
    fused_packed,
    fused_status,
    reset_library,
    to_program,
)
from afsearch.expr import PRIMITIVES, Expr, parse
from tests.strategies import trees

SPECIAL = [
    0.0, -0.0, 1e-8, -1e-8, 1e-7, -1e-7, 1.0, -1.0, 3.0, -3.0, 6.0, -6.0, 0.5, -0.5,
    20.0, -20.0, 80.0, -80.0, 81.0, -81.0, 1e30, -1e30, float("inf"), -float("inf"), float("nan"),
]


def _grid(n_dense: int) -> torch.Tensor:
    n = len(SPECIAL) + n_dense
    pad = (-n) % 64
    dense = np.linspace(-20.0, 20.0, n_dense + pad)
    return torch.tensor(np.concatenate([SPECIAL, dense]), dtype=torch.float32)


GRID = _grid(4000)
FINITE_GRID = GRID[torch.isfinite(GRID) & (GRID.abs() <= 81)]


@pytest.fixture(scope="module", autouse=True)
def kernel_library():
    """The tests compare real kernels: a machine that cannot build them fails here (set
    AFSEARCH_FUSED=0 to run the suite on purpose without them)."""
    if os.environ.get("AFSEARCH_FUSED") == "0":
        pytest.skip("fused kernels disabled by AFSEARCH_FUSED=0")
    status = fused_status()
    assert status.available, status.reason


def _compile(formula: str | Expr) -> CompiledActivation:
    """A fresh cache each time: the process-wide cache hands out the module class of the first
    formula with the same fingerprint (relu(x) would be tested as max(x, 0))."""
    return CompileCache().compile(formula)


def _run(module: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor | None = None):
    """(y, dL/dx, {param: dL/dparam}) with L = sum(y * grad) (grad = 1 via sum() by default)."""
    module.zero_grad(set_to_none=True)
    xi = x.detach().clone().requires_grad_(True)
    y = module(xi)
    if y.requires_grad:
        (y.sum() if grad is None else (y * grad).sum()).backward()
    params = {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in module.named_parameters()}
    return y.detach(), xi.grad, params


def _assert_like(name: str, eager: torch.Tensor | None, fused: torch.Tensor | None, x: torch.Tensor,
                 rtol: float = 1e-4, atol: float = 1e-6, slack: torch.Tensor | None = None,
                 outliers: int = 0) -> torch.Tensor | None:
    """Assert agreement (finiteness everywhere, values within tolerance where finite) at all but
    ``outliers`` points; returns the mask of disagreeing points."""
    if eager is None or fused is None:
        assert eager is None and fused is None, f"{name}: eager {eager}, fused {fused}"
        return None
    fe, ff = torch.isfinite(eager), torch.isfinite(fused)
    both = fe & ff
    e, f = eager.double(), fused.double()
    tol = atol + rtol * e.abs()
    if slack is not None:
        tol = tol + slack
    bad = (fe != ff) | (both & ((e - f).abs() > tol))
    if bad.sum() > outliers:
        i = bad.reshape(-1).nonzero().flatten()[:6]
        xs = x[i].tolist() if eager.dim() else "(sum)"
        raise AssertionError(f"{name}: {int(bad.sum())} point(s) differ (finiteness or beyond tolerance), "
                             f"e.g. x={xs}: eager {e.reshape(-1)[i].tolist()} fused {f.reshape(-1)[i].tolist()}")
    return bad


def _compare(formula: str | Expr, x: torch.Tensor = GRID, grad: torch.Tensor | None = None,
             rtol: float = 1e-4, atol: float = 1e-6) -> None:
    compiled = _compile(formula)
    eager, fused = compiled.new_module(), compiled.new_fused("always")
    assert fused.uses_kernel(x) or fused.program.identity
    ye, gxe, pe = _run(eager, x, grad)
    yf, gxf, pf = _run(fused, x, grad)
    sy, sg, sp = _reference_slack(compiled.expr, x, grad)
    _assert_like("value", ye, yf, x, rtol, atol, sy)
    _assert_like("dx", gxe, gxf, x, rtol, atol, sg)
    assert pe.keys() == pf.keys()
    for name in pe:
        _assert_like(f"d{name}", pe[name], pf[name], x, rtol, max(atol, 1e-4), sp[name])


def _primitive_cases() -> list[str]:
    cases = []
    for name, prim in sorted(PRIMITIVES.items()):
        if prim.arity == 1:
            cases += [f"{name}(x)", f"{name}(beta[0.7] * x)", f"{name}(x) * {name}(x)"]
        else:
            cases += [
                f"{name}(x, cos(x))", f"{name}(cos(x), x)", f"{name}(x, 0.5)", f"{name}(0.5, x)",
                f"{name}(x, x)", f"{name}(x, beta[0.3])", f"{name}(beta[2.0], x)",
                f"{name}(x, -x)", f"{name}(x, 0)", f"{name}(2, x)", f"{name}(x, 2)", f"{name}(x, 1e-9)",
            ]
    return cases


@pytest.mark.parametrize("formula", _primitive_cases())
def test_every_primitive_matches_eager_values_and_gradients(formula):
    _compare(formula)


@pytest.mark.parametrize("formula", [
    "x * sigmoid(beta * x)",
    "x * tanh(exp(x)) + 0.5 * sin(x)",
    "relu(x) + eps[0.01] * x * exp(-x^2 / 2)",
    "max(x, tanh(x))",
    "asinh(x) * asinh(x) * x",
    "sinc(x - 1) / (1 + abs(beta * x))",
    "pow(x, beta[1.5]) - min(x, gamma[-0.5] * x)",
    "log(sigmoid(x) + 1e-9) * softplus(-x) + erf(x / 2) * erfc(x)",
    "exp(exp(x))",  # overflows to inf inside the grid: non-finite values must line up
    "cosh(x) * sinh(x) / cube(x)",
    "hardswish(x) + hard_sigmoid(x) * relu6(x) - hardtanh(x) + leaky_relu(x) * selu(x)",
    "mish(x) * gelu(x) + silu(x) * log_sigmoid(x) - softsign(x) * elu(x) + expm1(x) * gauss(x)",
    "recip(x) + sqrt(x) * atan(x) + 3 / x + x / 0",
    "beta",
    "sin(2) + 1",
    "x",
    "beta * alpha[0.3] + x * 0",
])
def test_composed_formulas_match_eager(formula):
    _compare(formula)


def test_non_scalar_output_gradient():
    g = torch.linspace(-3, 3, GRID.numel())
    _compare("x * sigmoid(beta * x) + max(x, 0.5 * x) * sinc(x)", grad=g)


def _reference_slack(expr: Expr, x: torch.Tensor, grad: torch.Tensor | None = None):
    """How far eager float32 itself is from eager float64, per output: ill-conditioned
    points (cancellation, e.g. sinc' near 0) get the tolerance their own float32 rounding
    needs, since float32 libm implementations differ in the last bit."""
    compiled = _compile(expr)
    m32, m64 = compiled.new_module(), compiled.new_module().double()
    y32, g32, p32 = _run(m32, x, grad)
    y64, g64, p64 = _run(m64, x.double(), None if grad is None else grad.double())

    def gap(a, b):
        if a is None or b is None:
            return None
        d = (a.double() - b.double()).abs()
        d = torch.where(torch.isfinite(d), d, torch.zeros_like(d))
        if d.dim() == 1 and d.numel() > 1:
            # the rounding error at one point can be lucky; conditioning varies smoothly along
            # the sorted grid, so take the worst error among the neighbours
            d = torch.nn.functional.max_pool1d(d[None, None], 33, stride=1, padding=16)[0, 0]
        return 8 * d

    return gap(y32, y64), gap(g32, g64), {n: gap(p32[n], p64[n]) for n in p32}


@settings(max_examples=200, deadline=None)
@given(trees(max_leaves=10))
def test_random_trees_match_eager(tree):
    x = GRID
    compiled = _compile(tree)
    eager, fused = compiled.new_module(), compiled.new_fused("always")
    ye, gxe, pe = _run(eager, x)
    yf, gxf, pf = _run(fused, x)
    sy, sg, sp = _reference_slack(tree, x)
    # Random compositions can be ill-conditioned at a few points, where the last bit of one
    # libm result decides the outcome: a difference of two large equal terms (x / x at the
    # 1e-7 guard) is 0 or one ulp of the terms; 1 - tanh(8.67) is 0 or 6e-8 and then raised
    # to a huge power, finite or inf. torch's float32 functions are not all correctly rounded
    # (tanh(1) is one ulp off), ours are, so neither side is wrong there. Up to 0.5% of the
    # points of each output may differ that way; every primitive is checked strictly, kinks,
    # guards and non-finite inputs included, by the tests above.
    allowed = x.numel() // 200
    bad = _assert_like("value", ye, yf, x, 1e-4, 1e-5, sy, outliers=allowed)
    bad_dx = _assert_like("dx", gxe, gxf, x, 1e-4, 1e-5, sg, outliers=allowed)
    if not pe:
        return
    # trainable-constant gradients are sums over all points: compare them strictly over the
    # points where values and input gradients agree
    if bad_dx is not None:
        bad = bad | bad_dx
    if bad.any():
        x = x[~bad]
        ye, gxe, pe = _run(eager, x)
        yf, gxf, pf = _run(fused, x)
        sy, sg, sp = _reference_slack(tree, x)
    for name in pe:
        _assert_like(f"d{name}", pe[name], pf[name], x, 1e-4, 1e-4, sp[name])


def test_parameters_are_the_eager_modules_and_receive_gradients():
    compiled = _compile("x * sigmoid(beta[0.5] * x) + alpha[0.1]")
    fused = compiled.new_fused("always")
    assert isinstance(fused, FusedActivation)
    assert list(fused.state_dict()) == list(compiled.new_module().state_dict()) == ["beta", "alpha"]
    assert [n for n, _ in fused.named_parameters()] == ["beta", "alpha"]
    assert fused.beta is fused.eager.beta and fused.alpha is fused.eager.alpha
    fused(torch.randn(1000, requires_grad=True)).sum().backward()
    assert fused.beta.grad is not None and fused.eager.beta.grad is fused.beta.grad
    assert fused.alpha.grad.item() == pytest.approx(1000.0)
    other = compiled.new_fused("always")
    with torch.no_grad():
        fused.beta.fill_(3.0)
    assert other.beta.item() == 0.5  # fresh parameters per new_fused()
    state = fused.state_dict()
    other.load_state_dict(state)
    assert other.beta.item() == 3.0


def test_formula_without_x_leaves_x_without_gradient():
    for formula, has_params in (("sin(2) + 1", False), ("beta * 2", True)):
        compiled = _compile(formula)
        for module in (compiled.new_module(), compiled.new_fused("always")):
            x = torch.randn(3, 5, requires_grad=True)
            y = module(x)
            assert y.shape == (3, 5)
            assert y.requires_grad == has_params
            if has_params:
                y.sum().backward()
                assert x.grad is None and module.beta.grad.item() == pytest.approx(30.0)


def test_shapes_layouts_and_fallback_dtypes():
    compiled = _compile("x * tanh(softplus(beta * x))")
    fused, eager = compiled.new_fused("always"), compiled.new_module()
    x = torch.randn(64, 33)
    xt = x.t()  # non-contiguous
    assert fused.uses_kernel(xt)
    torch.testing.assert_close(fused(xt), eager(xt), rtol=1e-5, atol=1e-6)
    assert fused(xt).shape == (33, 64)
    for dtype in (torch.float64, torch.bfloat16):
        xd = x.to(dtype)
        assert not fused.uses_kernel(xd)
        torch.testing.assert_close(fused.to(dtype)(xd), eager.to(dtype)(xd))
        fused.float()
        eager.float()
    assert fused.uses_kernel(x)
    empty = torch.empty(0, 4)
    assert fused(empty).shape == (0, 4)
    with torch.no_grad():
        assert not fused(x).requires_grad


def test_equivalent_formula_follows_the_shared_module_class():
    cache = CompileCache()
    first = cache.compile("x * sigmoid(x)")
    second = cache.compile("sigmoid(x) * x")
    assert second.module_class is first.module_class
    x = GRID
    torch.testing.assert_close(second.new_fused("always")(x), second.new_module()(x), equal_nan=True)
    assert second.fused_program().code.tolist() == to_program(parse("x * sigmoid(x)")).code.tolist()


def test_results_do_not_depend_on_the_thread_count():
    compiled = _compile("x * sigmoid(beta[0.7] * x) + gamma[0.2] * sin(x) * exp(-abs(x))")
    x = torch.randn(300_001, generator=torch.Generator().manual_seed(1)) * 4
    g = torch.randn(300_001, generator=torch.Generator().manual_seed(2))
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(_run(compiled.new_fused("always"), x, g))
    finally:
        torch.set_num_threads(before)
    (y1, gx1, p1), (y2, gx2, p2) = results
    assert torch.equal(y1, y2) and torch.equal(gx1, gx2)
    assert all(torch.equal(p1[n], p2[n]) for n in p1)


def test_packed_equals_each_member_alone():
    formulas = ["x * sigmoid(beta[0.5] * x)", "max(x, 0.1 * x) + beta[2.0] * sin(x)", "x", "gelu(x) * alpha[0.3] - beta[1.0]"]
    members = [_compile(f).new_fused("always") for f in formulas]
    x = torch.randn(len(members), 50, 77, generator=torch.Generator().manual_seed(3)) * 3
    g = torch.randn_like(x)
    xp = x.clone().requires_grad_(True)
    yp = fused_packed(members, xp)
    (yp * g).sum().backward()
    packed_grads = [{n: p.grad.clone() for n, p in m.named_parameters()} for m in members]
    for k, m in enumerate(members):
        m.zero_grad(set_to_none=True)
        xk = x[k].clone().requires_grad_(True)
        yk = m(xk)
        if yk is xk:  # identity: eager returns its input
            yk = yk * 1
        (yk * g[k]).sum().backward()
        assert torch.equal(yp[k].detach(), yk.detach()), formulas[k]
        torch.testing.assert_close(xp.grad[k], xk.grad, rtol=0, atol=0)
        for n, p in m.named_parameters():
            torch.testing.assert_close(packed_grads[k][n], p.grad, rtol=1e-5, atol=1e-5)
    # and against eager members stacked
    eager = [_compile(f).new_module() for f in formulas]
    torch.testing.assert_close(yp.detach(), torch.stack([e(x[k]) for k, e in enumerate(eager)]), rtol=1e-5, atol=1e-6)


def test_a_member_axis_after_the_first_gives_the_same_values_and_gradients():
    """Packed CNNs keep member k's channels in block k of [B, K, C*L]: the kernel walks that
    layout in place and must match the member-major layout exactly."""
    formulas = ["x * sigmoid(beta[0.5] * x)", "tanh(x) + alpha[0.2] * x", "abs(x) * x"]
    members = [_compile(f).new_fused("always") for f in formulas]
    x = torch.randn(6, len(members), 700, generator=torch.Generator().manual_seed(1)) * 2
    g = torch.randn_like(x)
    xa = x.clone().requires_grad_(True)
    (fused_packed(members, xa, dim=1) * g).sum().backward()
    grads_a = [p.grad.clone() for m in members for p in m.parameters()]
    for m in members:
        m.zero_grad(set_to_none=True)
    xb = x.transpose(0, 1).contiguous().requires_grad_(True)
    yb = fused_packed(members, xb)
    (yb * g.transpose(0, 1)).sum().backward()
    grads_b = [p.grad.clone() for m in members for p in m.parameters()]
    torch.testing.assert_close(fused_packed(members, x, dim=1), yb.transpose(0, 1).detach(), rtol=0, atol=0)
    torch.testing.assert_close(xa.grad, xb.grad.transpose(0, 1), rtol=0, atol=0)
    torch.testing.assert_close(grads_a, grads_b, rtol=1e-6, atol=1e-6)  # summed in another block order
    eager = torch.stack([_compile(f).new_module()(x[:, k]) for k, f in enumerate(formulas)], 1)
    torch.testing.assert_close(fused_packed(members, x, dim=1), eager, rtol=1e-5, atol=1e-6)


def test_packed_rejects_wrong_leading_dimension():
    members = [_compile("x").new_fused("always")]
    with pytest.raises(ValueError):
        fused_packed(members, torch.zeros(2, 3))
    with pytest.raises(ValueError):
        fused_packed(members, torch.zeros(3, 2), dim=1)


@pytest.fixture
def broken_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setenv("AFSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    reset_library()
    yield
    monkeypatch.undo()
    reset_library()


def test_without_a_compiler_everything_falls_back_to_eager(broken_compiler):
    status = fused_status()
    assert not status.available and "/nonexistent/cc" in status.reason
    compiled = _compile("x * sigmoid(beta[0.6] * x)")
    fused, eager = compiled.new_fused("always"), compiled.new_module()
    x = torch.randn(2000)
    assert not fused.uses_kernel(x)
    ye, gxe, pe = _run(eager, x)
    yf, gxf, pf = _run(fused, x)
    assert torch.equal(ye, yf) and torch.equal(gxe, gxf) and torch.equal(pe["beta"], pf["beta"])
    members = [compiled.new_fused("always"), _compile("relu(x)").new_fused("always")]
    xs = torch.randn(2, 10)
    torch.testing.assert_close(fused_packed(members, xs), torch.stack([members[0](xs[0]), members[1](xs[1])]))


def test_build_failures_are_reported_not_raised(tmp_path):
    missing = build_library(compiler="/nonexistent/cc", cache_dir=tmp_path)
    assert not missing.available and "not usable" in missing.reason
    failing = build_library(compiler="false", cache_dir=tmp_path)
    assert not failing.available
    assert not list(tmp_path.glob("*.so"))


def test_build_is_cached_and_concurrent_builders_agree(tmp_path):
    results = []

    def build():
        results.append(build_library(cache_dir=tmp_path))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.available for r in results), results
    assert len({r.path for r in results}) == 1
    assert build_library(cache_dir=tmp_path).reason == "ok (cached)"
    # only the finished library is left: temporary files were renamed or removed
    assert [p.name for p in tmp_path.iterdir()] == [os.path.basename(results[0].path)]


def test_program_lowering_covers_every_primitive():
    for name, prim in PRIMITIVES.items():
        args = (Expr.var(),) * prim.arity
        program = to_program(Expr.call(name, *args))
        assert program.n_instr >= 1 and program.uses_x
    assert to_program(parse("x")).identity
    # constant specialisations of codegen: clamp for max/min with a constant, scalar exponent
    ops = [row.split(" = ")[1].split("(")[0] for row in to_program(parse("max(x, 0.5) + pow(x, 2) + 2 / x")).describe()]
    assert ops[:3] == ["CLAMP", "POWC", "ADD"] and "RDIV" in ops


def test_finite_grid_gradients_match_for_a_large_input():
    # more than one block per thread and a partial last block
    x = FINITE_GRID.repeat(40)[: 100_003]
    _compare("x * sigmoid(beta[1.3] * x) + abs(x - 1) * 0.25", x=x)


def test_auto_policy_leaves_single_kernel_formulas_and_small_inputs_to_eager():
    big, small = torch.randn(AUTO_MIN_ELEMENTS), torch.randn(100)
    single = _compile("silu(x)").new_fused()
    composed = _compile("asinh(x) * asinh(x) * x").new_fused()
    assert single.policy == "auto"
    assert not single.uses_kernel(big) and not composed.uses_kernel(small)
    assert composed.uses_kernel(big)
    assert _compile("silu(x)").new_fused("always").uses_kernel(small)
    for module, x in ((single, big), (composed, big), (composed, small)):
        torch.testing.assert_close(module(x), module.eager(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        _compile("x").new_fused("sometimes")


def test_modules_deep_copy_with_their_own_parameters():
    fused = _compile("x * sigmoid(beta[0.5] * x) + sin(x) * x").new_fused("always")
    clone = copy.deepcopy(fused)
    with torch.no_grad():
        clone.beta.fill_(2.0)
    assert fused.beta.item() == 0.5 and clone.eager.beta is clone.beta
    x = torch.randn(5000)
    torch.testing.assert_close(clone(x), clone.eager(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused(x), fused.eager(x), rtol=1e-5, atol=1e-6)


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("AFSEARCH_FUSED", "0")
    reset_library()
    try:
        status = fused_status()
        assert not status.available and "AFSEARCH_FUSED" in status.reason
        assert not _compile("asinh(x) * x").new_fused("always").uses_kernel(torch.randn(10))
    finally:
        monkeypatch.undo()
        reset_library()
    assert fused_status().available
