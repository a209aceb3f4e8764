"""afsearch: discover activation functions and normalization-activation layers for PyTorch.

Pipeline: spaces -> search (strategies) -> evaluate (proxy training on executors) -> store
-> export. The names below are the public API."""

import importlib

from afsearch.api import load, patch_activations, patch_functional_activations
from afsearch.candidate import Candidate
from afsearch.compile import compile_activation
from afsearch.compile.export import export_activation
from afsearch.errors import AfsearchError
from afsearch.evaluate.screen import screen
from afsearch.expr import canonical_form, fingerprint, parse
from afsearch.expr.primitives import Primitive, register_primitive
from afsearch.reference import REFERENCES, get_reference, register_reference

__version__ = "0.1.0"


#: lazily loaded public name -> the module that defines it (heavy imports: ray, optuna, deap).
#: `importlib.import_module`, not `from afsearch import ...`, which would re-enter this hook.
_LAZY: dict[str, str] = {
    "Search": "afsearch.search.engine",
    "SearchConfig": "afsearch.search.engine",
    "SearchSummary": "afsearch.search.engine",
    "evaluate_multi": "afsearch.evaluate",
    "get_task": "afsearch.evaluate",
    "TASKS": "afsearch.evaluate",
    "load_space": "afsearch.spaces",
    "CustomTask": "afsearch.evaluate.custom",
    "register_space_kind": "afsearch.spaces",
    "Strategy": "afsearch.search.strategies.base",
    "Proposal": "afsearch.search.strategies.base",
    "Outcome": "afsearch.search.strategies.base",
}


def __getattr__(name: str):
    if name == "evaluate":  # the subpackage is callable: afsearch.evaluate(...) evaluates
        return importlib.import_module("afsearch.evaluate")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'afsearch' has no attribute {name!r}")


__all__ = [
    "CustomTask",
    "REFERENCES",
    "AfsearchError",
    "Candidate",
    "Outcome",
    "Primitive",
    "Proposal",
    "Search",
    "SearchConfig",
    "SearchSummary",
    "Strategy",
    "TASKS",
    "canonical_form",
    "compile_activation",
    "evaluate",
    "evaluate_multi",
    "export_activation",
    "fingerprint",
    "get_reference",
    "get_task",
    "load",
    "load_space",
    "parse",
    "patch_activations",
    "patch_functional_activations",
    "register_primitive",
    "register_reference",
    "register_space_kind",
    "screen",
]
