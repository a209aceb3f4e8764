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

Program format (shared with ``_fused.c``): register 0 is x, registers ``1..n_fixed`` hold the
constants and then the trainable constants, instruction ``i`` writes register
``n_fixed + 1 + i``; the last instruction is the output. Each instruction is
``(op, a, b, flags)`` plus two float immediates; ``flags`` tells the reverse sweep whether the
gradient reaches operand a/b and whether it is the first contribution (assign) or a later one
(accumulate).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import platform
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from afsearch.expr.constants import fold_constants, protected_denominator
from afsearch.expr.primitives import EPS, EXP_CLAMP, PRIMITIVES, round_f32
from afsearch.expr.tree import CONST, PARAM, Expr, X

log = logging.getLogger(__name__)

#: opcode order of _fused.c's AFS_OPS list (checked against the built library)
OPS: tuple[str, ...] = (
    "ID", "NEG", "ABS", "SQUARE", "CUBE", "SQRT", "LOG", "EXP", "SIN", "COS", "SINH",
    "COSH", "TANH", "ASINH", "ATAN", "SINC", "RELU", "SIGMOID", "SOFTPLUS", "GAUSS",
    "ERF", "ERFC", "RDIV", "EXPM1", "LOG_SIGMOID", "ELU", "SILU", "SOFTSIGN",
    "HARD_SIGMOID", "MISH", "GELU", "LEAKY_RELU", "CLAMP", "HARDSWISH", "ADD", "SUB",
    "MUL", "DIV", "MAX", "MIN", "POW", "POWC", "SLOG", "SSQRT",
)
_OPCODE = {name: i for i, name in enumerate(OPS)}
# torch kernels the eager module launches per op (forward), from the primitive templates:
# used to leave formulas that eager already runs as one kernel (silu, relu, ...) to eager
_EAGER_KERNELS = {
    "ID": 0, "NEG": 1, "ABS": 1, "SQUARE": 1, "CUBE": 2, "SQRT": 3, "LOG": 3, "EXP": 2, "SIN": 1,
    "COS": 1, "SINH": 2, "COSH": 2, "TANH": 1, "ASINH": 1, "ATAN": 1, "SINC": 7, "RELU": 1,
    "SIGMOID": 1, "SOFTPLUS": 1, "GAUSS": 3, "ERF": 1, "ERFC": 1, "RDIV": 9, "EXPM1": 2,
    "LOG_SIGMOID": 1, "ELU": 1, "SILU": 1, "SOFTSIGN": 3, "HARD_SIGMOID": 1, "MISH": 1, "GELU": 1,
    "LEAKY_RELU": 1, "CLAMP": 1, "HARDSWISH": 1, "ADD": 1, "SUB": 1, "MUL": 1, "DIV": 9, "MAX": 1,
    "MIN": 1, "POW": 3, "POWC": 3, "SLOG": 5, "SSQRT": 5,
}
#: with policy "auto", inputs smaller than this run eager: a custom autograd Function costs
#: tens of microseconds per call, more than the few fused passes save on small tensors
AUTO_MIN_ELEMENTS = 16384
_ABI = 2

_INF = float("inf")


# ops whose derivative reads their own output (sqrt: grad / (2 y), exp: grad * y, ...) and ops
# whose derivative reads no operand value (must match bwd_op in _fused.c)
_USES_OUTPUT = frozenset({"SQRT", "EXP", "TANH", "RELU", "SIGMOID", "GAUSS", "EXPM1", "SINC", "POW"})
_NO_OPERAND_VALUES = frozenset({"ID", "NEG", "ADD", "SUB"})

# symbolic operands while lowering: ("x", 0), ("c", const index), ("p", param index), ("i", instr)
_Operand = tuple[str, int]


@dataclass(frozen=True, eq=False)
class FusedProgram:
    """A lowered expression. ``code`` is int32 (n, 4): op, a, b, flags; ``imm`` float32 (n, 2)."""

    code: np.ndarray
    imm: np.ndarray
    consts: np.ndarray
    param_names: tuple[str, ...]
    uses_x: bool
    #: the expression is just ``x``: the eager module returns its input itself
    identity: bool
    #: how many torch kernels the eager module's forward launches
    eager_kernels: int = 0

    @property
    def n_fixed(self) -> int:
        return len(self.consts) + len(self.param_names)

    @property
    def n_instr(self) -> int:
        return len(self.code)

    def describe(self) -> list[str]:
        """Human-readable listing (debugging aid)."""
        names = ["x"] + [f"c{i}={v!r}" for i, v in enumerate(self.consts.tolist())]
        names += list(self.param_names) + [f"t{i}" for i in range(self.n_instr)]
        rows = []
        for i, (op, a, b, flags) in enumerate(self.code.tolist()):
            rows.append(
                f"t{i} = {OPS[op]}({names[a]}, {names[b]}; {self.imm[i, 0]!r}, {self.imm[i, 1]!r}) flags={flags}"
            )
        return rows


def to_program(expr: Expr) -> FusedProgram:
    """Lower a validated expression to a fused program with the eager module's semantics.

    Mirrors :func:`afsearch.compile.codegen.generate_module`: constants are folded the same
    way, shared subtrees are computed once, and the same constant specialisations are made
    (``max(t, c)`` is ``torch.clamp(t, min=c)``, a constant denominator is protected at
    generation time, ``c / t`` is ``reciprocal(t) * c``, ``pow(t, c)`` takes a scalar
    exponent), because each one has its own gradient convention in torch."""
    params = tuple(expr.params())
    folded = fold_constants(expr)
    consts: list[float] = []
    const_index: dict[tuple[float, float], int] = {}
    instrs: list[tuple[str, _Operand, _Operand | None, float, float]] = []
    memo: dict[Expr, _Operand] = {}

    def const(value: float) -> _Operand:
        v = round_f32(value)
        key = (v, math.copysign(1.0, v))  # 0.0 == -0.0 as dict keys; keep the sign of zero
        if key not in const_index:
            const_index[key] = len(consts)
            consts.append(v)
        return ("c", const_index[key])

    def emit(op: str, a: _Operand, b: _Operand | None = None, c0: float = 0.0, c1: float = 0.0) -> _Operand:
        instrs.append((op, a, b, c0, c1))
        return ("i", len(instrs) - 1)

    def lower(node: Expr) -> _Operand:
        if node.op == X:
            return ("x", 0)
        if node.op == CONST:
            return const(node.value)  # type: ignore[arg-type]
        if node.op == PARAM:
            return ("p", params.index(node.name))  # type: ignore[arg-type]
        if node in memo:
            return memo[node]
        out = _lower_call(node)
        memo[node] = out
        return out

    def _lower_call(node: Expr) -> _Operand:
        name, args = node.op, node.args
        prim = PRIMITIVES[name]
        if prim.fused is None and prim.expansion is not None:
            # a registered primitive defined over others: lower its definition at this node
            return lower(_expand(prim.expansion, args[0]))
        if prim.fused is None:
            raise ValueError(f"no fused lowering for primitive {name!r}")
        if prim.arity == 1:
            return emit(prim.fused.opcode, lower(args[0]), None, *prim.fused.imm)
        is_const = [a.op == CONST for a in args]
        if name in ("max", "min") and is_const.count(True) == 1:
            tensor_arg = args[is_const.index(False)]
            bound = round_f32(args[is_const.index(True)].value)  # type: ignore[arg-type]
            lo, hi = (bound, _INF) if name == "max" else (-_INF, bound)
            return emit("CLAMP", lower(tensor_arg), None, lo, hi)
        if name == "div" and is_const == [False, True]:
            den = protected_denominator(args[1].value)  # type: ignore[arg-type]
            return emit("DIV", lower(args[0]), const(den))
        if name == "div" and is_const == [True, False]:
            return emit("RDIV", lower(args[1]), None, round_f32(args[0].value))  # type: ignore[arg-type]
        if name == "pow" and is_const == [False, True]:
            c = float(args[1].value)  # type: ignore[arg-type]
            return emit("POWC", lower(args[0]), None, round_f32(c), round_f32(c - 1.0))
        return emit(prim.fused.opcode, lower(args[0]), lower(args[1]), *prim.fused.imm)

    root = lower(folded)
    uses_x = folded.uses_x()
    identity = root == ("x", 0)
    if identity:
        root = emit("ID", root)
    elif not uses_x:
        root = emit("ADD", root, const(0.0))  # eager: result + torch.zeros_like(x)
    elif root[0] != "i":  # pragma: no cover - a tree using x is x itself or a call
        raise AssertionError(root)

    n_const = len(consts)
    first_instr = 1 + n_const + len(params)

    def reg(o: _Operand) -> int:
        kind, i = o
        return {"x": 0, "c": 1 + i, "p": 1 + n_const + i, "i": first_instr + i}[kind]

    # which registers carry a gradient (depend on x or a trainable constant)
    live = [False] * len(instrs)

    def needs(o: _Operand | None) -> bool:
        if o is None:
            return False
        kind, i = o
        return kind in ("x", "p") or (kind == "i" and live[i])

    for i, (_, a, b, _, _) in enumerate(instrs):
        live[i] = needs(a) or needs(b)
    # reverse sweep order: the first contribution to a register assigns, later ones add
    written: set[int] = set()
    flags = [0] * len(instrs)
    for i in range(len(instrs) - 1, -1, -1):
        _, a, b, _, _ = instrs[i]
        for shift, o in ((0, a), (2, b)):
            if needs(o):
                r = reg(o)  # type: ignore[arg-type]
                flags[i] |= (2 if r in written else 1) << shift
                written.add(r)
    # values the backward pass must recompute: operands its sweep reads, outputs read by
    # their own derivative, and whatever those are computed from
    needed = [False] * len(instrs)
    for i in range(len(instrs) - 1, -1, -1):
        op, a, b, _, _ = instrs[i]
        if flags[i] and op in _USES_OUTPUT:
            needed[i] = True
        reads_operands = flags[i] and op not in _NO_OPERAND_VALUES
        for o in (a, b):
            if o is not None and o[0] == "i" and (reads_operands or needed[i]):
                needed[o[1]] = True
    flags = [f | (16 if n else 0) for f, n in zip(flags, needed, strict=True)]
    code = np.array(
        [(_OPCODE[op], reg(a), reg(b) if b is not None else 0, f) for (op, a, b, _, _), f in zip(instrs, flags, strict=True)],
        dtype=np.int32,
    ).reshape(-1, 4)
    imm = np.array([(c0, c1) for (_, _, _, c0, c1) in instrs], dtype=np.float32).reshape(-1, 2)
    return FusedProgram(
        code=np.ascontiguousarray(code),
        imm=np.ascontiguousarray(imm),
        consts=np.array(consts, dtype=np.float32),
        param_names=params,
        uses_x=uses_x,
        identity=identity,
        eager_kernels=sum(_EAGER_KERNELS[op] for op, *_ in instrs),
    )


def _expand(expansion: str, arg: Expr) -> Expr:
    """A primitive's expansion (a formula in x) with `arg` in place of x, constants folded."""
    from afsearch.expr.parser import parse

    def substitute(node: Expr) -> Expr:
        if node.op == X:
            return arg
        if node.is_leaf:
            return node
        return Expr(node.op, tuple(substitute(a) for a in node.args))

    return fold_constants(substitute(parse(expansion)))


# ------------------------------------------------------------------------------ the library

_FLAGS: tuple[str, ...] = (
    "-O3", "-std=gnu11", "-fPIC", "-shared", "-fopenmp",
    # math functions without errno are what lets gcc call libmvec's vector variants, and
    # without trapping-math it if-converts the guards around them; NaN/inf/signed-zero
    # semantics stay IEEE (no -ffast-math)
    "-fno-math-errno", "-fno-trapping-math",
    # no implicit fma: _fused.c writes fmaf exactly where torch's own kernels have one, and
    # rounds every other product like torch's separate ops do
    "-ffp-contract=off",
    "-march=native", "-mprefer-vector-width=512",
    # blocks are multiples of the vector width but for the last one: vectorised epilogue
    # loops would only add code and compile time
    "--param=vect-epilogues-nomask=0",
)
_LIBS: tuple[str, ...] = ("-lmvec", "-lm")
#: the numeric guards of afsearch.expr.primitives, compiled into the kernel (one definition)
_GUARDS: tuple[str, ...] = (f"-DAFS_EPS={EPS!r}f", f"-DAFS_EXP_CLAMP={EXP_CLAMP!r}f")


class _Prog(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_void_p),
        ("imm", ctypes.c_void_p),
        ("consts", ctypes.c_void_p),
        ("n_instr", ctypes.c_int32),
        ("n_fixed", ctypes.c_int32),
        ("first_param", ctypes.c_int32),
        ("n_params", ctypes.c_int32),
        ("param_offset", ctypes.c_int32),
        ("reserved", ctypes.c_int32),
    ]


@dataclass(frozen=True)
class FusedStatus:
    available: bool
    reason: str
    path: str | None = None


@dataclass
class _Library:
    status: FusedStatus
    lib: ctypes.CDLL | None = None


_LOCK = threading.Lock()
_STATE: _Library | None = None


def default_cache_dir() -> Path:
    env = os.environ.get("AFSEARCH_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "afsearch"


def _compiler_command(compiler: str | None) -> list[str]:
    return shlex.split(compiler if compiler is not None else os.environ.get("CC", "cc"))


def _machine_id() -> str:
    """-march=native code only runs where it was built: key the cache on the CPU features."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_key(cc: list[str]) -> str:
    version = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=30, check=True)
    h = hashlib.sha256()
    for part in (Path(__file__).with_name("_fused.c").read_bytes(), " ".join(cc).encode(),
                 " ".join(_FLAGS + _GUARDS + _LIBS).encode(), version.stdout.encode(), _machine_id().encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:20]


def build_library(compiler: str | None = None, cache_dir: str | os.PathLike[str] | None = None) -> FusedStatus:
    """Build (once per machine; later calls find it in the cache) and load the fused kernel
    library. ``compiler`` defaults to ``$CC`` or ``cc``, ``cache_dir`` to
    :func:`default_cache_dir`. Never raises: a failure is reported in the returned status."""
    return _build_and_load(compiler, cache_dir)[1]


def _build_and_load(compiler: str | None, cache_dir: str | os.PathLike[str] | None) -> tuple[ctypes.CDLL | None, FusedStatus]:
    if os.environ.get("AFSEARCH_FUSED", "1") == "0":
        return None, FusedStatus(False, "disabled by AFSEARCH_FUSED=0")
    cc = _compiler_command(compiler)
    if not cc:
        return None, FusedStatus(False, "no C compiler configured")
    try:
        key = _cache_key(cc)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, FusedStatus(False, f"C compiler {cc[0]!r} not usable: {exc}")
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = directory / f"afsearch-fused-{key}.so"
    if path.exists():
        lib, reason = _load(path)
        if lib is not None:
            return lib, FusedStatus(True, "ok (cached)", str(path))
        log.warning("cached fused kernel library %s is unusable (%s); rebuilding", path, reason)
    try:
        _compile(cc, path)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        detail = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        return None, FusedStatus(False, f"building the fused kernels failed: {detail.strip()[-600:]}")
    lib, reason = _load(path)
    if lib is None:
        return None, FusedStatus(False, reason, str(path))
    return lib, FusedStatus(True, "ok (built)", str(path))


def _compile(cc: list[str], path: Path) -> None:
    """Compile to a private temporary file and rename it into place: atomic, so concurrent
    builders (several processes, Ray workers) never load a half-written library."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".afsearch-fused-", suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        source = Path(__file__).with_name("_fused.c")
        subprocess.run([*cc, *_FLAGS, *_GUARDS, str(source), "-o", tmp, *_LIBS], capture_output=True,
                       timeout=300, check=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: Path) -> tuple[ctypes.CDLL | None, str]:
    try:
        if b"_ZGV" not in path.read_bytes():
            # scalar libm calls per element make the kernels slower than eager torch
            return None, "the C library has no vectorised math (libmvec) calls; using eager modules"
        # torch is imported (and has loaded its libgomp.so.1) before this library, whose
        # libgomp.so.1 dependency therefore resolves to torch's copy: one OpenMP runtime and
        # thread pool in the process, not two competing for the cores
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        return None, f"cannot load {path}: {exc}"
    try:
        lib.afs_abi.restype = ctypes.c_int
        lib.afs_op_count.restype = ctypes.c_int
        lib.afs_op_name.restype = ctypes.c_char_p
        lib.afs_op_name.argtypes = [ctypes.c_int]
        lib.afs_forward.restype = ctypes.c_int
        lib.afs_forward.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p,
                                    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32]
        lib.afs_backward.restype = ctypes.c_int
        lib.afs_backward.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p,
                                     ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p,
                                     ctypes.c_void_p, ctypes.c_int32]
        if lib.afs_abi() != _ABI:
            return None, f"{path}: ABI {lib.afs_abi()} != {_ABI}"
        names = tuple(lib.afs_op_name(i).decode() for i in range(lib.afs_op_count()))
        if names != OPS:
            return None, f"{path}: op table differs from fused.py"
    except (AttributeError, OSError) as exc:
        return None, f"{path}: {exc}"
    return lib, "ok"


def _library() -> _Library:
    global _STATE
    state = _STATE
    if state is not None:
        return state
    with _LOCK:
        if _STATE is None:
            lib, status = _build_and_load(None, None)
            if lib is None:
                log.warning("fused activation kernels unavailable, using eager modules: %s", status.reason)
            _STATE = _Library(status, lib)
        return _STATE


def fused_status() -> FusedStatus:
    """Whether fused kernels are in use in this process (building them on first call)."""
    return _library().status


def reset_library() -> None:
    """Forget this process's library state, so the next use builds or loads it again (after
    changing ``CC``, ``AFSEARCH_CACHE_DIR`` or ``AFSEARCH_FUSED``)."""
    global _STATE
    with _LOCK:
        _STATE = None


# ------------------------------------------------------------------------- autograd glue


class _Plan:
    """The C descriptions of a sequence of programs. Immutable (trainable constants are passed
    per call), so it is built once per module or member tuple and reused."""

    def __init__(self, programs: Sequence[FusedProgram]) -> None:
        self.programs = tuple(programs)
        structs = (_Prog * len(self.programs))()
        offset = 0
        for st, prog in zip(structs, self.programs, strict=True):
            st.code = prog.code.ctypes.data
            st.imm = prog.imm.ctypes.data
            st.consts = prog.consts.ctypes.data if len(prog.consts) else _DUMMY.ctypes.data
            st.n_instr = prog.n_instr
            st.n_fixed = prog.n_fixed
            st.first_param = 1 + len(prog.consts)
            st.n_params = len(prog.param_names)
            st.param_offset = offset
            offset += len(prog.param_names)
        self.n_params = offset
        self.structs = structs
        self.ref = ctypes.byref(structs)
        self.uses_x = any(prog.uses_x for prog in self.programs)


_DUMMY = np.zeros(1, dtype=np.float32)  # a valid pointer for an empty array
_NO_PARAMS = torch.zeros(1)
_PLANS: dict[tuple[FusedProgram, ...], _Plan] = {}
_PLANS_MAX = 256


def _plan(programs: tuple[FusedProgram, ...]) -> _Plan:
    plan = _PLANS.get(programs)
    if plan is None:
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        plan = _PLANS[programs] = _Plan(programs)
    return plan


class _FusedFunction(torch.autograd.Function):
    """y[k] = program_k(x[k]) for the K slices of x; the inputs after x are every program's
    trainable constants in order (``values`` holds the same numbers as one float32 array)."""

    @staticmethod
    def forward(ctx, lib: ctypes.CDLL, plan: _Plan, values: torch.Tensor, x: torch.Tensor,  # type: ignore[override]
                *params: torch.Tensor) -> torch.Tensor:
        y = torch.empty_like(x, memory_format=torch.contiguous_format)
        k = len(plan.programs)
        if lib.afs_forward(plan.ref, k, x.numel() // k, x.data_ptr(), values.data_ptr(), y.data_ptr(),
                           torch.get_num_threads()) != 0:
            raise MemoryError("fused activation kernel could not allocate its scratch memory")
        ctx.save_for_backward(x, *params)
        ctx.lib, ctx.plan, ctx.values = lib, plan, values
        return y

    @staticmethod
    @once_differentiable  # the kernel's gradient is not itself differentiable: say so loudly
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, *params = ctx.saved_tensors
        plan: _Plan = ctx.plan
        need_x = ctx.needs_input_grad[3]
        need_p = any(ctx.needs_input_grad[4:])
        if grad.dtype != torch.float32:
            grad = grad.float()
        # sum().backward() hands in one value expanded to the full shape: pass it as a scalar
        # instead of materialising it
        g_scalar = all(st == 0 for st in grad.stride())
        if not g_scalar:
            grad = grad.contiguous()
        gx = torch.empty_like(x) if need_x else None
        pgrad = torch.empty(plan.n_params) if need_p else None
        k = len(plan.programs)
        if ctx.lib.afs_backward(
            plan.ref, k, x.numel() // k, x.data_ptr(), ctx.values.data_ptr(), grad.data_ptr(), int(g_scalar),
            gx.data_ptr() if gx is not None else None, pgrad.data_ptr() if pgrad is not None else None,
            torch.get_num_threads(),
        ) != 0:
            raise MemoryError("fused activation kernel could not allocate its scratch memory")
        if pgrad is None:
            return (None, None, None, gx, *(None for _ in params))
        grads = [pgrad[i].view(p.shape) if ctx.needs_input_grad[4 + i] else None for i, p in enumerate(params)]
        return (None, None, None, gx, *grads)


def _kernel_ok(x: torch.Tensor, params: Sequence[torch.Tensor]) -> bool:
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.numel() == 0:
        return False
    for p in params:
        if p.device.type != "cpu" or p.dtype != torch.float32 or p.numel() != 1:
            return False
    # graph tracing/scripting and functorch transforms cannot see through a ctypes call
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch._C._are_functorch_transforms_active():
        return False
    state = _STATE if _STATE is not None else _library()
    return state.lib is not None


def _run(plan: _Plan, params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    lib = _library().lib
    assert lib is not None
    values = torch.cat([p.detach().reshape(1) for p in params]) if params else _NO_PARAMS
    x = x.contiguous()
    # x itself is not an input when the formula ignores it: its .grad stays None, as in eager
    return _FusedFunction.apply(lib, plan, values, x if plan.uses_x else x.detach(), *params)


class FusedActivation(nn.Module):
    """An eager generated activation with a fused CPU kernel for float32 inputs.

    Holds the eager module's own ``nn.Parameter`` objects under the same names (the state
    dict is identical, and gradients land on those parameters); every input the kernel does
    not handle goes through the eager module's forward.

    ``policy="auto"`` (default) also leaves to eager what it runs at least as fast: formulas
    eager computes with a single torch kernel (``silu(x)``, ``relu(x)``) and inputs under
    :data:`AUTO_MIN_ELEMENTS`; ``policy="always"`` uses the kernel whenever it can."""

    def __init__(self, eager: nn.Module, program: FusedProgram, policy: str = "auto") -> None:
        super().__init__()
        if policy not in ("auto", "always"):
            raise ValueError(f"policy must be 'auto' or 'always', got {policy!r}")
        self.policy = policy
        names = tuple(name for name, _ in eager.named_parameters())
        if names != program.param_names:
            raise ValueError(f"parameters {names} of the eager module do not match the program's {program.param_names}")
        for name, p in eager.named_parameters():
            self.register_parameter(name, p)
        # a plain attribute, not a submodule: no duplicate parameters in state_dict/parameters()
        object.__setattr__(self, "_eager", eager)
        self.program = program
        self.formula = getattr(eager, "formula", "")

    @property
    def eager(self) -> nn.Module:
        """The eager module (sharing this module's parameters)."""
        # .to()/.double() with parameter swapping may have replaced our Parameter objects
        for name in self.program.param_names:
            if self._eager._parameters[name] is not self._parameters[name]:
                self._eager._parameters[name] = self._parameters[name]
        return self._eager

    def _params(self) -> list[torch.Tensor]:
        return [self._parameters[name] for name in self.program.param_names]  # type: ignore[misc]

    def uses_kernel(self, x: torch.Tensor) -> bool:
        """Whether forward(x) runs the fused kernel (else the eager module)."""
        return self._wants_kernel(x) and _kernel_ok(x, self._params())

    def _wants_kernel(self, x: torch.Tensor) -> bool:
        if self.program.identity:
            return False
        if self.policy == "always":
            return True
        return self.program.eager_kernels > 1 and x.numel() >= AUTO_MIN_ELEMENTS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = self._params()
        if self._wants_kernel(x) and _kernel_ok(x, params):
            # plans are cached by program, not stored here: the module stays deep-copyable
            return _run(_plan((self.program,)), params, x)
        return self.eager(x)

    def extra_repr(self) -> str:
        return f"formula={self.formula!r}"


def fused_packed(members: Sequence[FusedActivation], x: torch.Tensor) -> torch.Tensor:
    """Apply member k to slice ``x[k]`` of a stacked input ``x[K, ...]`` in one kernel call
    (forward and backward); each member's trainable constants get their own gradients.
    Equals ``torch.stack([m(x[k]) for k, m in enumerate(members)])``, which is also what runs
    when the kernel cannot (see :class:`FusedActivation`)."""
    if x.dim() == 0 or x.shape[0] != len(members):
        raise ValueError(f"x has leading dimension {tuple(x.shape)[:1]}, expected {len(members)} members")
    params = [p for m in members for p in m._params()]
    if members and _kernel_ok(x, params):
        return _run(_plan(tuple(m.program for m in members)), params, x)
    return torch.stack([m(x[k]) for k, m in enumerate(members)])
