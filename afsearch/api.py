"""Library helpers: load exported activations, patch activations into any model.

    patch_activations(model, act)             -> modules replaced (nn.ReLU, nn.GELU, ... in place)
    patch_functional_activations(model, act)  -> torch.fx.GraphModule (F.relu, torch.tanh, ... calls)
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import fx, nn

from afsearch.candidate import Candidate
from afsearch.errors import ConfigError

#: activation module types replaced by default
DEFAULT_REPLACE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.GELU, nn.SiLU, nn.ELU, nn.SELU, nn.LeakyReLU, nn.Mish, nn.Tanh, nn.Hardswish, nn.ReLU6,
)

ActivationSpec = str | Candidate | nn.Module | Callable[[], nn.Module]


def load(path: str | Path) -> nn.Module:
    """Load an exported activation: a ``.py`` module written by ``afsearch export`` (this
    *imports and runs* the file: load only files you trust), a TorchScript file
    (``.torchscript.pt``) or a ``torch.export`` program (``.pt2``). Returns a fresh module."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no exported activation at {p}")
    if p.suffix == ".py":
        name = f"afsearch_loaded_{abs(hash(str(p.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, p)
        if spec is None or spec.loader is None:
            raise ConfigError(f"{p} is not a loadable Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        # public classes only: a token-wise export (MoA) defines private helper classes too
        classes = [v for v in vars(module).values()
                   if inspect.isclass(v) and issubclass(v, nn.Module) and v.__module__ == name
                   and not v.__name__.startswith("_")]
        if len(classes) != 1:
            raise ConfigError(f"{p} defines {len(classes)} public nn.Module classes; expected exactly one")
        return classes[0]()
    if p.name.endswith(".pt2"):
        return torch.export.load(str(p)).module()
    if p.suffix in (".pt", ".ts"):
        return torch.jit.load(str(p))
    raise ConfigError(f"{p}: unknown export format; expected .py, .torchscript.pt or .pt2")


def activation_factory(act: ActivationSpec) -> Callable[[], nn.Module]:
    """A factory of fresh activation modules from a formula, Candidate, module class,
    zero-argument callable, or a module instance (deep-copied per use)."""
    if isinstance(act, str):
        return Candidate.activation(act).activation_factory()
    if isinstance(act, Candidate):
        return act.activation_factory()
    if isinstance(act, nn.Module):
        return lambda: copy.deepcopy(act)
    if callable(act):
        return act
    raise ConfigError(f"cannot make an activation from {type(act).__name__}")


def patch_activations(model: nn.Module, act: ActivationSpec,
                      replace: tuple[type[nn.Module], ...] = DEFAULT_REPLACE, *,
                      strict: bool = False) -> int:
    """Replace, in place, every submodule of a type in ``replace`` by a fresh activation and
    return the number of *distinct modules* replaced (= new activation modules made).

    Each distinct module gets its own new module with its own trainable constants. A module
    instance registered at several places (``r = nn.ReLU(); nn.Sequential(lin, r, lin2, r)``)
    becomes one new module registered at the same places, so it counts once and keeps sharing
    its constants, as the original shared its state.

    A token-wise candidate (MoA) sizes its gate on the first call: run one forward pass before
    building the optimizer. An FFN form (GLU) is a model's structure, not an activation: patching
    swaps only the activation; for a gated block use the ``*_ffn.py`` module `afsearch export`
    writes for runs on lm-transformer.

    Activations called as functions inside ``forward`` (``torch.relu(x)``, ``F.gelu(x)``, and
    ``nn.TransformerEncoderLayer(activation="gelu")``) are not modules and are not seen here;
    ``patch_functional_activations`` rewrites those. When nothing was replaced this warns
    (``strict=True``: raises ConfigError) instead of returning 0 silently."""
    factory = activation_factory(act)
    new: dict[int, nn.Module] = {}
    seen: set[int] = set()
    for parent in list(model.modules()):  # modules() lists a shared parent once: enough
        if id(parent) in seen:
            continue
        seen.add(id(parent))
        # _modules, not named_children(): the latter skips a child already seen under another
        # name, which would leave the second registration of a shared instance unpatched
        for name, child in list(parent._modules.items()):
            if isinstance(child, replace):
                if id(child) not in new:
                    new[id(child)] = factory()
                setattr(parent, name, new[id(child)])
    if not new:
        _nothing_patched(model, ", ".join(t.__name__ for t in replace), strict,
                         "functional calls (torch.relu, F.gelu) are not modules: use "
                         "afsearch.patch_functional_activations")
    return len(new)


#: functions (and tensor methods) rewritten by default by `patch_functional_activations`
DEFAULT_FUNCTIONS: tuple[Callable[..., torch.Tensor], ...] = (
    F.relu, F.relu6, F.gelu, F.silu, F.elu, F.selu, F.leaky_relu, F.mish, F.hardswish,
    torch.relu, torch.tanh, F.tanh, torch.selu,
)
def patch_functional_activations(model: nn.Module, act: ActivationSpec,
                                 functions: tuple[Callable[..., torch.Tensor], ...] = DEFAULT_FUNCTIONS,
                                 *, strict: bool = False) -> fx.GraphModule:
    """A new ``GraphModule`` (sharing ``model``'s parameters and submodules; ``model`` itself is
    unchanged) in which every call of an activation *function* in ``functions``
    (``F.relu(x)``, ``torch.tanh(x)``, ``x.relu()``, ``F.gelu(x, approximate="tanh")``) is
    replaced by a fresh activation module, one per call site (own trainable constants), found
    by ``torch.fx.symbolic_trace``. Activation modules are traced as leaves and kept: use
    ``patch_activations`` for those (on the model or the result). Extra arguments of the
    replaced call (``negative_slope``, ``approximate``) are dropped; an in-place call
    (``inplace=True``, ``x.relu_()``) keeps its meaning: later reads of its input see the
    new activation's output.

    fx traces ordinary feed-forward code (residual blocks, attention written with matmul,
    softmax and ``F.scaled_dot_product_attention``), but not code whose Python control flow
    depends on tensor values or shapes; ``nn.TransformerEncoderLayer`` is one such model (its
    fast-path checks fail to trace). A model that does not trace raises ConfigError with the
    tracer's message. When no call matched this warns (``strict=True``: raises ConfigError)."""
    factory = activation_factory(act)
    try:
        traced = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises several types (TraceError, RuntimeError, TypeError)
        raise ConfigError(f"torch.fx cannot trace {type(model).__name__} "
                          f"({type(exc).__name__}: {exc}); patch its activation modules "
                          "with patch_activations, or write the activation as a module") from None
    # each function also matches its in-place twin (torch.relu_, F.elu_) and the tensor
    # methods of both names (x.relu(), x.relu_())
    names = {f.__name__ for f in functions}
    names |= {n + "_" for n in names}
    wanted = set(functions) | {getattr(ns, n) for ns in (torch, F) for n in names if hasattr(ns, n)}
    graph = traced.graph
    order = {node: i for i, node in enumerate(graph.nodes)}
    count = 0
    for node in list(graph.nodes):
        if not ((node.op == "call_function" and node.target in wanted)
                or (node.op == "call_method" and node.target in names)):
            continue
        source = node.args[0]
        name = f"afsearch_act_{count}"
        traced.add_submodule(name, factory())
        with graph.inserting_after(node):
            replacement = graph.call_module(name, (source,))
        node.replace_all_uses_with(replacement)
        if _inplace(node) and isinstance(source, fx.Node):  # later readers of the input see the result
            for user in list(source.users):
                if user is not replacement and order.get(user, -1) > order[node]:
                    user.replace_input_with(source, replacement)
        graph.erase_node(node)
        count += 1
    if not count:
        _nothing_patched(model, ", ".join(getattr(f, "__name__", str(f)) for f in functions),
                         strict, "activation modules are patched by afsearch.patch_activations")
    graph.lint()
    traced.recompile()
    return traced


def _inplace(node: fx.Node) -> bool:
    """Whether a matched call mutates its input: `relu_`-style names or `inplace=True`
    (by keyword or position, bound against the function's signature when it has one)."""
    if str(getattr(node.target, "__name__", node.target)).endswith("_"):
        return True
    try:
        bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)
    except (TypeError, ValueError):  # builtins without a signature; methods (a str target)
        return node.kwargs.get("inplace") is True
    return bound.arguments.get("inplace") is True


def _nothing_patched(model: nn.Module, looked_for: str, strict: bool, hint: str) -> None:
    message = f"nothing patched in {type(model).__name__}: no {looked_for} found ({hint})"
    if strict:
        raise ConfigError(message)
    warnings.warn(message, UserWarning, stacklevel=3)
