"""afsearch: discover activation functions and normalization-activation layers for PyTorch.

Pipeline: spaces -> search (strategies) -> evaluate (proxy training on executors) -> store
-> export. The names below are the public API."""

from afsearch.api import load, patch_activations
from afsearch.candidate import Candidate
from afsearch.compile import compile_activation
from afsearch.compile.export import export_activation
from afsearch.errors import AfsearchError
from afsearch.expr import canonical_form, fingerprint, parse, screen
from afsearch.reference import REFERENCES, get_reference

__version__ = "0.1.0"


def __getattr__(name: str):  # heavy modules (ray, optuna, deap) load on first use
    if name in ("Search", "SearchConfig", "SearchSummary"):
        from afsearch.search import engine

        return getattr(engine, name)
    if name in ("evaluate", "evaluate_multi", "get_task", "TASKS"):
        from afsearch import evaluate as _evaluate

        return getattr(_evaluate, name)
    if name == "load_space":
        from afsearch.spaces import load_space

        return load_space
    raise AttributeError(f"module 'afsearch' has no attribute {name!r}")


__all__ = [
    "REFERENCES",
    "AfsearchError",
    "Candidate",
    "Search",
    "SearchConfig",
    "SearchSummary",
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
    "screen",
]
