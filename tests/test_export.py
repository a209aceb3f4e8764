"""Exported artefacts load without afsearch and reproduce outputs and gradients."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from afsearch.compile import compile_activation
from afsearch.compile.export import export_activation
from afsearch.errors import ConfigError
from afsearch.expr import parse

# Runs in a fresh interpreter where importing afsearch is impossible: -I ignores the
# environment and the current directory, and a meta-path blocker refuses the package even
# though the editable install would provide it.
LOADER = textwrap.dedent(
    """
    import importlib.util, json, sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "afsearch":
                raise ImportError("afsearch is blocked in this interpreter")
    sys.meta_path.insert(0, Block())
    try:
        import afsearch  # noqa
        raise SystemExit("afsearch was importable")
    except ImportError:
        pass
    import torch
    py_path, ts_path, pt2_path = sys.argv[1:4]
    spec = importlib.util.spec_from_file_location("exported", py_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cls = [v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, torch.nn.Module) and v is not torch.nn.Module][0]
    x = torch.linspace(-6, 6, 97, dtype=torch.float64)
    out = {}
    for tag, module in (("python", cls().double()), ("torchscript", torch.jit.load(ts_path).double())):
        xi = x.clone().requires_grad_(True)
        y = module(xi)
        y.sum().backward()
        out[tag] = {"y": y.tolist(), "g": xi.grad.tolist(), "params": sorted(n for n, _ in module.named_parameters())}
    program = torch.export.load(pt2_path)
    x2 = torch.linspace(-6, 6, 24).reshape(4, 6)
    out["pt2"] = {"y": program.module()(x2).flatten().tolist()}
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("formula", ["x * sigmoid(beta * x)", "relu(x) + eps[0.01] * x * exp(-x^2 / 2)", "max(x, 0.01 * x) + sin(x) / 4"])
def test_exports_load_in_a_clean_interpreter_and_match(tmp_path, formula):
    expr = parse(formula)
    written = export_activation(expr, tmp_path, "candidate")
    assert set(written) == {"python", "torchscript", "pt2"}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", LOADER, str(written["python"]), str(written["torchscript"]), str(written["pt2"])],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    module = compile_activation(expr).new_module().double()
    x = torch.linspace(-6, 6, 97, dtype=torch.float64, requires_grad=True)
    y = module(x)
    y.sum().backward()
    for tag in ("python", "torchscript"):
        torch.testing.assert_close(torch.tensor(result[tag]["y"], dtype=torch.float64), y.detach())
        torch.testing.assert_close(torch.tensor(result[tag]["g"], dtype=torch.float64), x.grad)
        assert result[tag]["params"] == sorted(expr.params())
    x2 = torch.linspace(-6, 6, 24).reshape(4, 6)
    want = compile_activation(expr).new_module()(x2).detach().flatten()
    torch.testing.assert_close(torch.tensor(result["pt2"]["y"]), want)


def test_python_export_docstring_has_formula_and_latex(tmp_path):
    written = export_activation(parse("x * tanh(softplus(x))"), tmp_path, "mish like", formats=("python",))
    source = written["python"].read_text()
    assert "class MishLike(torch.nn.Module)" in source
    assert "x * tanh(softplus(x))" in source and "LaTeX:" in source
    assert list(tmp_path.iterdir()) == [written["python"]]  # no temp files left behind


def test_unwritable_output_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create output directory"):
        export_activation(parse("relu(x)"), blocker / "sub", "a")
