"""Expression -> eager ``nn.Module`` class -> TorchScript or fused kernel, cached per process by
fingerprint."""

from __future__ import annotations

import linecache
import sys
import threading
import types
from dataclasses import dataclass, field

import torch
from torch import nn

from afsearch.compile.codegen import GeneratedModule, generate_module
from afsearch.compile.fused import FusedActivation, FusedProgram, to_program
from afsearch.expr.fingerprint import fingerprint
from afsearch.expr.parser import parse
from afsearch.expr.tree import Expr


@dataclass
class CompiledActivation:
    expr: Expr
    fingerprint: str
    generated: GeneratedModule
    module_class: type[nn.Module]
    _scripted: torch.jit.ScriptModule | None = field(default=None, repr=False)
    #: the expression module_class was generated from: an equivalent formula (same
    #: fingerprint) reuses the class of the first one, and the fused program must follow the
    #: class, not ``expr``
    source_expr: Expr | None = field(default=None, repr=False)
    _program: FusedProgram | None = field(default=None, repr=False)

    @property
    def formula(self) -> str:
        return self.generated.formula

    def new_module(self) -> nn.Module:
        """A fresh eager module with its own trainable constants."""
        return self.module_class()

    def new_scripted(self) -> torch.jit.ScriptModule:
        """A fresh TorchScript module (scripting a known class reuses torch's type cache)."""
        return torch.jit.script(self.module_class())

    def fused_program(self) -> FusedProgram:
        """The fused-kernel program of the module class (lowered once, then cached)."""
        if self._program is None:
            self._program = to_program(self.source_expr if self.source_expr is not None else self.expr)
        return self._program

    def new_fused(self, policy: str = "auto") -> FusedActivation:
        """A fresh :class:`FusedActivation` with its own trainable constants: a fused CPU
        kernel for float32 inputs, the eager module for everything else (``policy``: see
        FusedActivation)."""
        return FusedActivation(self.new_module(), self.fused_program(), policy)

    def scripted(self) -> torch.jit.ScriptModule:
        """The cached TorchScript module (shared: do not train it, use new_scripted)."""
        if self._scripted is None:
            self._scripted = self.new_scripted()
        return self._scripted


class CompileCache:
    """Compiled activations keyed by (fingerprint, parameter names): equivalent formulas share
    one class, so they are compiled and scripted once per process."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, tuple[str, ...]], CompiledActivation] = {}
        self._lock = threading.Lock()
        self._counter = 0

    def compile(self, formula: str | Expr) -> CompiledActivation:
        expr = parse(formula) if isinstance(formula, str) else formula
        fp = fingerprint(expr)
        key = (fp, tuple(expr.params()))
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                if hit.expr == expr:
                    return hit
                return CompiledActivation(expr, fp, hit.generated, hit.module_class, source_expr=hit.expr)
            self._counter += 1
            generated = generate_module(expr)
            cls = load_generated(generated, f"afsearch_generated_{fp}_{self._counter}")
            entry = CompiledActivation(expr, fp, generated, cls)
            self._entries[key] = entry
            return entry

    def __len__(self) -> int:
        return len(self._entries)


def load_generated(generated: GeneratedModule, module_name: str) -> type[nn.Module]:
    """Load generated source as a real module. The source is registered in linecache and
    sys.modules so that torch.jit.script can read it back (it cannot script classes whose
    source it cannot find)."""
    filename = f"<{module_name}>"
    lines = generated.source.splitlines(keepends=True)
    linecache.cache[filename] = (len(generated.source), None, lines, filename)
    module = types.ModuleType(module_name)
    module.__file__ = filename
    sys.modules[module_name] = module
    code = compile(generated.source, filename, "exec")
    exec(code, module.__dict__)  # noqa: S102 - our generated source, never user text
    return getattr(module, generated.class_name)


DEFAULT_CACHE = CompileCache()


def compile_activation(formula: str | Expr, cache: CompileCache | None = None) -> CompiledActivation:
    """Parse (if needed), generate and load the module class for a formula."""
    return (cache or DEFAULT_CACHE).compile(formula)
