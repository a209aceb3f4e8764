"""Compile expressions to torch modules, TorchScript, fused CPU kernels and export artefacts."""

from afsearch.compile.codegen import GeneratedModule, generate_module
from afsearch.compile.compiler import CompileCache, CompiledActivation, compile_activation
from afsearch.compile.fused import FusedActivation, FusedStatus, fused_packed, fused_status

__all__ = [
    "CompileCache",
    "CompiledActivation",
    "FusedActivation",
    "FusedStatus",
    "GeneratedModule",
    "compile_activation",
    "fused_packed",
    "fused_status",
    "generate_module",
]
