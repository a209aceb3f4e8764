"""A primitive added through the registry alone works everywhere a built-in one does: parse,
print (string, torch, sympy, LaTeX), fingerprint, compile eager and fused, export."""

import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
import torch

from afsearch.compile import compile_activation, fused_status
from afsearch.compile.export import export_activation
from afsearch.errors import ExpressionError
from afsearch.expr import fingerprint, parse, to_latex, to_string, to_sympy
from afsearch.expr.primitives import Primitive, register_primitive, unregister_primitive

BUMP = Primitive(
    "bump", 1, "{0} * torch.exp(-torch.abs({0}))",
    numpy=lambda a: a * np.exp(-np.abs(a)),
    sympy=lambda a: a * sp.exp(-sp.Abs(a)),
    latex=r"\operatorname{{bump}}\left({0}\right)",
    expansion="x * exp(-abs(x))",
)


@pytest.fixture
def bump():
    register_primitive(BUMP)
    yield BUMP
    unregister_primitive("bump")


def test_a_registered_primitive_parses_prints_and_fingerprints(bump) -> None:
    expr = parse("bump(x) + beta[0.5] * x")
    assert to_string(expr) == "bump(x) + beta[0.5] * x"
    assert parse(to_string(expr)) == expr
    assert r"\operatorname{bump}" in to_latex(expr)
    assert str(to_sympy(parse("bump(x)"))) == "x*exp(-Abs(x))"
    # the same function written out has the same fingerprint: equivalents train once
    assert fingerprint(parse("bump(x)")) == fingerprint(parse("x * exp(-abs(x))"))


def test_a_registered_primitive_compiles_eager_and_fused(bump) -> None:
    compiled = compile_activation("bump(x) + sin(x)")
    x = torch.linspace(-6, 6, 40_000, requires_grad=True)
    eager = compiled.new_module()
    y = eager(x)
    want = x.detach().numpy() * np.exp(-np.abs(x.detach().numpy())) + np.sin(x.detach().numpy())
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-5, atol=1e-6)
    (g_eager,) = torch.autograd.grad(y.sum(), x)
    fused = compiled.new_fused("always")
    if not fused_status().available:
        pytest.skip(f"fused kernels unavailable: {fused_status().reason}")
    assert fused.uses_kernel(x)
    y_fused = fused(x)
    (g_fused,) = torch.autograd.grad(y_fused.sum(), x)
    torch.testing.assert_close(y_fused, y, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g_fused, g_eager, rtol=1e-5, atol=1e-6)


def test_a_registered_primitive_exports_to_a_torch_only_module(bump, tmp_path) -> None:
    written = export_activation(parse("bump(x) * 2"), tmp_path, "bumpy", formats=("python",))
    source = written["python"].read_text()
    assert "afsearch" not in source.split('"""', 2)[2]  # code below the docstring: torch only
    probe = ("import importlib.util, sys, torch\n"
             "spec = importlib.util.spec_from_file_location('m', sys.argv[1])\n"
             "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
             "print(float(m.Bumpy()(torch.tensor(1.0))))\n")
    out = subprocess.run([sys.executable, "-I", "-c", probe, str(written["python"])], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert float(out) == pytest.approx(2 * np.exp(-1.0), rel=1e-6)


@pytest.mark.parametrize("bad, message", [
    (Primitive("sin", 1, "torch.sin({0})", np.sin, sp.sin, "s"), "already registered"),
    (Primitive("x", 1, "{0}", np.abs, sp.Abs, "{0}"), "must be lower-case"),
    (Primitive("beta2", 1, "{0}", np.abs, sp.Abs, "{0}"), "reserved for trainable constants"),
    (Primitive("two", 2, "{0} + {2}", np.add, lambda a, b: a + b, "{0}+{1}"), "bad torch template"),
    (Primitive("wide", 1, "{0}", lambda a: np.stack([a, a]), sp.Abs, "{0}"), "element-wise"),
    (Primitive("loop", 1, "{0}", np.abs, sp.Abs, "{0}", expansion="loop(x)"), "expansion"),
    (Primitive("flat", 1, "{0}", np.abs, sp.Abs, "{0}", expansion="2.0"), "must use x"),
])
def test_bad_primitives_are_refused(bad: Primitive, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        register_primitive(bad)
    assert bad.name not in ("loop", "flat", "wide", "two") or not _registered(bad.name)


def _registered(name: str) -> bool:
    from afsearch.expr.primitives import PRIMITIVES

    return name in PRIMITIVES
