"""Library helpers: load exported activations, patch activations into any model."""

from __future__ import annotations

import copy
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

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
        classes = [v for v in vars(module).values()
                   if inspect.isclass(v) and issubclass(v, nn.Module) and v.__module__ == name]
        if len(classes) != 1:
            raise ConfigError(f"{p} defines {len(classes)} nn.Module classes; expected exactly one")
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
                      replace: tuple[type[nn.Module], ...] = DEFAULT_REPLACE) -> int:
    """Replace every submodule of a type in ``replace`` by a fresh activation (each site gets
    its own trainable constants; a module instance reused at several places in the original
    becomes one new module reused at the same places). Activations called functionally inside
    ``forward`` (``F.relu(x)``) are not modules and cannot be patched. Returns the number of
    modules replaced."""
    factory = activation_factory(act)
    replaced: dict[int, nn.Module] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, replace):
                if id(child) not in replaced:
                    replaced[id(child)] = factory()
                setattr(parent, name, replaced[id(child)])
    return len(replaced)
