import pytest
import torch
import torch.nn.functional as F

from afsearch.compile import compile_activation
from afsearch.errors import ExpressionError
from afsearch.evaluate.screen import screen
from afsearch.reference import REFERENCES, get_reference

# Oracles from torch.nn.functional. The dense grid has an even number of points, so it avoids
# the kinks (0, ±3) where sub-gradient conventions legitimately differ; it includes ±20.
ORACLES = {
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "swish": F.silu,  # beta starts at 1
    "mish": F.mish,
    "softplus": F.softplus,
    "hardswish": F.hardswish,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "squared_relu": lambda x: F.relu(x) ** 2,
    "crrelu": lambda x: F.relu(x) + 0.01 * x * torch.exp(-x * x / 2),
    "xsilu": F.silu,  # alpha starts at 0
    "xgelu": F.gelu,
    "aglu": F.silu,  # kappa = lambda = 1 gives x * sigmoid(x)
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(ORACLES))
def test_reference_matches_torch_functional_values_and_gradients(name, dtype):
    grid = torch.linspace(-20, 20, 4000, dtype=dtype)
    module = compile_activation(REFERENCES[name].formula).new_scripted().to(dtype)
    x1 = grid.clone().requires_grad_(True)
    x2 = grid.clone().requires_grad_(True)
    y1, y2 = module(x1), ORACLES[name](x2)
    # float64: trainable constants start as float32 values (like any nn.Parameter default) and
    # numeric guards (e.g. pow on |base| + 1e-7 in aglu) act at the 1e-7 level
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-6, "atol": 1e-7}
    torch.testing.assert_close(y1, y2, **tol)
    y1.sum().backward()
    y2.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **tol)


def test_pau_initialisation_approximates_relu():
    module = compile_activation(REFERENCES["pau"].formula).new_module()
    x = torch.linspace(-3, 3, 601)
    assert (module(x) - F.relu(x)).abs().max() < 0.1
    assert len(list(module.parameters())) == 10


def test_all_references_compile_and_pass_the_screen():
    for ref in REFERENCES.values():
        verdict = screen(compile_activation(ref.formula).expr)
        assert verdict.passed, (ref.name, verdict.reason)


def test_lookup_is_forgiving_and_errors_list_names():
    assert get_reference("GELU").name == "gelu"
    assert get_reference("leaky-relu").name == "leaky_relu"
    with pytest.raises(ExpressionError, match="allowed: aglu"):
        get_reference("relu7")
