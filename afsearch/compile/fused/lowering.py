"""Lowering an expression to a fused-kernel program: the register machine of ``_fused.c``.

Program format (shared with ``_fused.c``): register 0 is x, registers ``1..n_fixed`` hold the
constants and then the trainable constants, instruction ``i`` writes register
``n_fixed + 1 + i``; the last instruction is the output. Each instruction is
``(op, a, b, flags)`` plus two float immediates; ``flags`` tells the reverse sweep whether the
gradient reaches operand a/b and whether it is the first contribution (assign) or a later one
(accumulate). A primitive's instruction comes from its registry entry
(`afsearch.expr.primitives.Primitive.fused`); the tables here describe the kernel's opcodes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from afsearch.expr.constants import fold_constants, protected_denominator
from afsearch.expr.primitives import PRIMITIVES, round_f32
from afsearch.expr.tree import CONST, PARAM, Expr, X

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
