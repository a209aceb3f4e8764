"""Fused CPU kernels for generated activations: one pass over the input instead of one per op.

On CPU an eager activation module runs one torch kernel per operation of its template, each a
full pass over memory, forward and again backward; TorchScript cannot fuse them on CPU builds
without LLVM. This module lowers a validated expression to a small register program and runs
it with a C interpreter (``_fused.c``) that processes the input in cache-sized blocks with
vectorised math. The backward pass recomputes the block and sweeps it in reverse with torch's
own derivative formulas, so values and gradients, including ties, kinks, guards and NaN/inf
propagation, agree with the eager module (see tests/test_fused.py). Transcendental functions
are computed in double precision with glibc's vector math library (libmvec) and rounded once,
i.e. correctly rounded, which is what torch's float32 functions give almost always; where torch
uses SLEEF's float exp inside a kernel (sigmoid, silu, softplus, ...) the kernel uses the same
algorithm and gets the same bits.

The C library is built once per machine with the system C compiler into a cache directory
(``AFSEARCH_CACHE_DIR``, default ``~/.cache/afsearch``) and loaded with ctypes. Without a
compiler, libmvec or a working build, :func:`fused_status` says why and
:class:`FusedActivation` quietly runs the eager module instead; so it does for anything but
contiguous-or-not float32 CPU tensors (CUDA, float64, bfloat16, autograd transforms, tracing).

Modules: `lowering` (expression -> program), `library` (building and loading the C code),
`kernel` (the autograd Function and the torch modules).
"""

from afsearch.compile.fused.kernel import AUTO_MIN_ELEMENTS, FusedActivation, fused_packed
from afsearch.compile.fused.library import (
    FusedStatus,
    build_library,
    default_cache_dir,
    fused_status,
    reset_library,
)
from afsearch.compile.fused.lowering import OPS, FusedProgram, to_program

__all__ = [
    "AUTO_MIN_ELEMENTS",
    "OPS",
    "FusedActivation",
    "FusedProgram",
    "FusedStatus",
    "build_library",
    "default_cache_dir",
    "fused_packed",
    "fused_status",
    "reset_library",
    "to_program",
]
