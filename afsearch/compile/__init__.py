"""Compile expressions to torch modules, TorchScript and export artefacts."""

from afsearch.compile.codegen import GeneratedModule, generate_module
from afsearch.compile.compiler import CompileCache, CompiledActivation, compile_activation

__all__ = [
    "CompileCache",
    "CompiledActivation",
    "GeneratedModule",
    "compile_activation",
    "generate_module",
]
