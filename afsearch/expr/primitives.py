"""The primitive registry: every operator is defined once, here, with all of its forms.

Each primitive carries
- ``torch``: a source template for code generation (``{0}``, ``{1}`` are argument variables);
  the generated module imports nothing but torch, so templates only use ``torch.*``;
- ``numpy``: a float64 numpy implementation with the same numeric guard (fingerprints, tests);
- ``sympy``: a function building the symbolic form (canonical form, LaTeX cross-checks);
- ``latex``: a LaTeX template;
- ``guard``: a short human description of the numeric protection, if any;
- ``fused``: the fused CPU kernel's instruction for it (``afsearch.compile.fused``), or None;
- ``expansion``: for a unary primitive without a kernel instruction, its definition as a
  formula in ``x`` over other primitives, which the fused kernel runs instead;
- ``cost``: forward+backward time of the compiled primitive relative to ReLU's, measured once
  by ``scripts/bench_op_costs.py`` (the weights of the deterministic ``cost`` objective,
  ``afsearch.evaluate.cost``), filled from ``MEASURED_COST`` below.

Every other table (the parser's names, the printers, the code generator, the fused lowering,
the layer-graph ops of ``afsearch.layers``) reads these entries; `register_primitive` adds one
at run time, and it is then parsed, printed, fingerprinted, compiled and exported like the
built-in ones.

Guards keep candidates finite where the naive formula is not: division protects a near-zero
denominator (|d| >= EPS), ``log`` takes ``log(|x| + EPS)``, ``exp``-like ops clamp their
argument at EXP_CLAMP, ``sqrt`` takes ``sqrt(|x| + EPS)``. The torch templates, the numpy forms
and the C kernel (compiled with these two constants) use the same numbers.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import sympy as sp
from scipy import special as sps

EPS = 1e-7
#: exp(x) is evaluated as exp(min(x, EXP_CLAMP)); exp(80) ~ 5.5e34 still fits in float32
EXP_CLAMP = 80.0
LEAKY_SLOPE = 0.01
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
# the guard constants as they appear in torch templates (Python float literals)
_E = repr(EPS)
_C = repr(EXP_CLAMP)


def round_f32(value: float) -> float:
    """A Python float rounded to float32, as torch converts a scalar for a float32 kernel."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


@dataclass(frozen=True)
class FusedOp:
    """One instruction of the fused kernel (an opcode of ``_fused.c``) and its two float
    immediates: the scalar arguments torch's own kernel uses for the template, in float32."""

    opcode: str
    imm: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Primitive:
    name: str
    arity: int
    torch: str
    numpy: Callable[..., np.ndarray]
    sympy: Callable[..., sp.Expr]
    latex: str
    guard: str = ""
    #: which published search-space lists include it (documentation and space validation)
    families: tuple[str, ...] = ()
    fused: FusedOp | None = None
    expansion: str | None = None
    #: forward+backward time relative to ReLU (see the module docstring)
    cost: float = 1.0

    def torch_source(self, *args: str) -> str:
        return self.torch.format(*args)

    def latex_source(self, *args: str) -> str:
        return self.latex.format(*args)


def _np_sigmoid(a: np.ndarray) -> np.ndarray:
    return sps.expit(a)


def _np_softplus(a: np.ndarray) -> np.ndarray:
    # torch.nn.functional.softplus: x for x > 20, log1p(exp(x)) otherwise
    return np.where(a > 20.0, a, np.log1p(np.exp(np.minimum(a, 20.0))))


def _np_protected_den(b: np.ndarray) -> np.ndarray:
    return np.where(np.abs(b) < EPS, np.where(b < 0, -EPS, EPS), b)


def _np_erf(a: np.ndarray) -> np.ndarray:
    return sps.erf(a)


def _np_sinc(a: np.ndarray) -> np.ndarray:
    # unnormalised sinc sin(x)/x, as in the Swish paper; torch.sinc is the normalised one
    safe = np.where(a == 0, 1.0, a)
    return np.where(a == 0, 1.0, np.sin(safe) / safe)


def _sym_sigmoid(a: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-a))


def _sym_softplus(a: sp.Expr) -> sp.Expr:
    return sp.log(1 + sp.exp(a))


def _sym_relu(a: sp.Expr) -> sp.Expr:
    return sp.Max(a, 0)


def _sym_elu(a: sp.Expr) -> sp.Expr:
    return sp.Max(a, 0) + sp.Min(0, sp.exp(a) - 1)


def _sym_gelu(a: sp.Expr) -> sp.Expr:
    return a / 2 * (1 + sp.erf(a / sp.sqrt(2)))


def _op(opcode: str, imm0: float = 0.0, imm1: float = 0.0) -> FusedOp:
    return FusedOp(opcode, (imm0, imm1))


_SWISH_AQ_GP = ("swish", "aquasurf", "gp")
_SWISH_AQ = ("swish", "aquasurf")
_AQ = ("aquasurf",)
_PROTECT = f"torch.where(torch.abs({{0}}) < {_E}, torch.where({{0}} < 0, -{_E} * torch.ones_like({{0}}), {_E} * torch.ones_like({{0}})), {{0}})"

_PRIMS: list[Primitive] = [
    # --- unary, Swish paper list (identity, beta*x and x+beta are compositions) -------------
    Primitive("neg", 1, "-{0}", lambda a: -a, lambda a: -a, "-{0}", families=_SWISH_AQ_GP, fused=_op("NEG")),
    Primitive("abs", 1, "torch.abs({0})", np.abs, sp.Abs, r"\left|{0}\right|", families=_SWISH_AQ_GP,
              fused=_op("ABS")),
    Primitive("square", 1, "{0} * {0}", np.square, lambda a: a**2, r"\left({0}\right)^{{2}}", families=_SWISH_AQ,
              fused=_op("SQUARE")),
    Primitive("cube", 1, "{0} * {0} * {0}", lambda a: a**3, lambda a: a**3, r"\left({0}\right)^{{3}}",
              families=("swish",), fused=_op("CUBE")),
    Primitive(
        "sqrt", 1, f"torch.sqrt(torch.abs({{0}}) + {_E})", lambda a: np.sqrt(np.abs(a) + EPS),
        lambda a: sp.sqrt(sp.Abs(a)), r"\sqrt{{\left|{0}\right|}}", f"sqrt(|x| + {EPS:g}): finite gradient at 0",
        ("swish",), _op("SQRT"),
    ),
    Primitive(
        "log", 1, f"torch.log(torch.abs({{0}}) + {_E})", lambda a: np.log(np.abs(a) + EPS),
        lambda a: sp.log(sp.Abs(a)), r"\log\left(\left|{0}\right| + \epsilon\right)", f"log(|x| + {EPS:g})",
        ("swish",), _op("LOG"),
    ),
    Primitive(
        "exp", 1, f"torch.exp(torch.clamp({{0}}, max={_C}))", lambda a: np.exp(np.minimum(a, EXP_CLAMP)), sp.exp,
        r"e^{{{0}}}", f"exp(min(x, {EXP_CLAMP:g}))", _SWISH_AQ, _op("EXP"),
    ),
    Primitive("sin", 1, "torch.sin({0})", np.sin, sp.sin, r"\sin\left({0}\right)", families=("swish", "gp"),
              fused=_op("SIN")),
    Primitive("cos", 1, "torch.cos({0})", np.cos, sp.cos, r"\cos\left({0}\right)", families=("swish", "gp"),
              fused=_op("COS")),
    Primitive(
        "sinh", 1, f"torch.sinh(torch.clamp({{0}}, min=-{_C}, max={_C}))",
        lambda a: np.sinh(np.clip(a, -EXP_CLAMP, EXP_CLAMP)), sp.sinh, r"\sinh\left({0}\right)",
        f"argument clamped to [-{EXP_CLAMP:g}, {EXP_CLAMP:g}]", _SWISH_AQ, _op("SINH"),
    ),
    Primitive(
        "cosh", 1, f"torch.cosh(torch.clamp({{0}}, min=-{_C}, max={_C}))",
        lambda a: np.cosh(np.clip(a, -EXP_CLAMP, EXP_CLAMP)), sp.cosh, r"\cosh\left({0}\right)",
        f"argument clamped to [-{EXP_CLAMP:g}, {EXP_CLAMP:g}]", _SWISH_AQ, _op("COSH"),
    ),
    Primitive("tanh", 1, "torch.tanh({0})", np.tanh, sp.tanh, r"\tanh\left({0}\right)", families=_SWISH_AQ,
              fused=_op("TANH")),
    Primitive("asinh", 1, "torch.asinh({0})", np.arcsinh, sp.asinh, r"\operatorname{{asinh}}\left({0}\right)",
              families=_SWISH_AQ, fused=_op("ASINH")),
    Primitive("atan", 1, "torch.atan({0})", np.arctan, sp.atan, r"\arctan\left({0}\right)", families=_SWISH_AQ,
              fused=_op("ATAN")),
    Primitive(
        "sinc", 1,
        "torch.where({0} == 0, torch.ones_like({0}), torch.sin({0}) / torch.where({0} == 0, torch.ones_like({0}), {0}))",
        _np_sinc, lambda a: sp.sin(a) / a, r"\operatorname{{sinc}}\left({0}\right)", "sin(x)/x with sinc(0) = 1",
        ("swish",), _op("SINC"),
    ),
    Primitive("relu", 1, "torch.relu({0})", lambda a: np.maximum(a, 0.0), _sym_relu, r"\max\left({0}, 0\right)",
              families=_SWISH_AQ, fused=_op("RELU")),
    Primitive("sigmoid", 1, "torch.sigmoid({0})", _np_sigmoid, _sym_sigmoid, r"\sigma\left({0}\right)",
              families=_SWISH_AQ, fused=_op("SIGMOID")),
    Primitive(
        "softplus", 1, "torch.nn.functional.softplus({0})", _np_softplus, _sym_softplus,
        r"\log\left(1 + e^{{{0}}}\right)", "linear above 20", _SWISH_AQ, _op("SOFTPLUS"),
    ),
    Primitive(
        "gauss", 1, "torch.exp(-({0} * {0}))", lambda a: np.exp(-np.square(a)), lambda a: sp.exp(-(a**2)),
        r"e^{{-\left({0}\right)^{{2}}}}", families=("swish",), fused=_op("GAUSS"),
    ),
    Primitive("erf", 1, "torch.erf({0})", _np_erf, sp.erf, r"\operatorname{{erf}}\left({0}\right)",
              families=_SWISH_AQ, fused=_op("ERF")),
    # --- unary, AQuaSurF additions -------------------------------------------------------------
    Primitive(
        # 1.0 / t is Tensor.__rtruediv__: reciprocal(t) * 1.0, which the kernel's RDIV computes
        "recip", 1, "1.0 / " + _PROTECT, lambda a: 1.0 / _np_protected_den(a), lambda a: 1 / a,
        r"\frac{{1}}{{{0}}}", f"|denominator| >= {EPS:g}", _AQ, _op("RDIV", 1.0),
    ),
    Primitive("erfc", 1, "torch.erfc({0})", lambda a: sps.erfc(a), sp.erfc, r"\operatorname{{erfc}}\left({0}\right)",
              families=_AQ, fused=_op("ERFC")),
    Primitive(
        "expm1", 1, f"torch.expm1(torch.clamp({{0}}, max={_C}))", lambda a: np.expm1(np.minimum(a, EXP_CLAMP)),
        lambda a: sp.exp(a) - 1, r"e^{{{0}}} - 1", f"exp(min(x, {EXP_CLAMP:g})) - 1", _AQ, _op("EXPM1"),
    ),
    Primitive(
        "log_sigmoid", 1, "torch.nn.functional.logsigmoid({0})", lambda a: -_np_softplus(-a),
        lambda a: -sp.log(1 + sp.exp(-a)), r"\log\sigma\left({0}\right)", families=_AQ, fused=_op("LOG_SIGMOID"),
    ),
    Primitive(
        # the kernel's ELU takes torch's elu coefficients: alpha * scale and scale
        "elu", 1, "torch.nn.functional.elu({0})", lambda a: np.where(a > 0, a, np.expm1(np.minimum(a, 0.0))),
        _sym_elu, r"\operatorname{{elu}}\left({0}\right)", families=_AQ, fused=_op("ELU", 1.0, 1.0),
    ),
    Primitive(
        "selu", 1, "torch.nn.functional.selu({0})",
        lambda a: SELU_SCALE * np.where(a > 0, a, SELU_ALPHA * np.expm1(np.minimum(a, 0.0))),
        lambda a: SELU_SCALE * (sp.Max(a, 0) + sp.Min(0, SELU_ALPHA * (sp.exp(a) - 1))),
        r"\operatorname{{selu}}\left({0}\right)", families=_AQ,
        fused=_op("ELU", float(np.float32(SELU_ALPHA) * np.float32(SELU_SCALE)), round_f32(SELU_SCALE)),
    ),
    Primitive(
        "silu", 1, "torch.nn.functional.silu({0})", lambda a: a * _np_sigmoid(a), lambda a: a * _sym_sigmoid(a),
        r"{0}\,\sigma\left({0}\right)", families=_AQ, fused=_op("SILU"),
    ),
    Primitive(
        "softsign", 1, "torch.nn.functional.softsign({0})", lambda a: a / (1 + np.abs(a)), lambda a: a / (1 + sp.Abs(a)),
        r"\frac{{{0}}}{{1 + \left|{0}\right|}}", families=_AQ, fused=_op("SOFTSIGN"),
    ),
    Primitive(
        "hard_sigmoid", 1, "torch.nn.functional.hardsigmoid({0})", lambda a: np.clip(a / 6 + 0.5, 0.0, 1.0),
        lambda a: sp.Min(sp.Max(a / 6 + sp.Rational(1, 2), 0), 1), r"\operatorname{{hardsigmoid}}\left({0}\right)",
        families=_AQ, fused=_op("HARD_SIGMOID"),
    ),
    Primitive(
        "mish", 1, "torch.nn.functional.mish({0})", lambda a: a * np.tanh(_np_softplus(a)),
        lambda a: a * sp.tanh(_sym_softplus(a)), r"\operatorname{{mish}}\left({0}\right)", families=_AQ,
        fused=_op("MISH"),
    ),
    Primitive(
        "gelu", 1, "torch.nn.functional.gelu({0})", lambda a: 0.5 * a * (1 + sps.erf(a / np.sqrt(2.0))), _sym_gelu,
        r"\operatorname{{gelu}}\left({0}\right)", families=_AQ, fused=_op("GELU"),
    ),
    Primitive(
        "leaky_relu", 1, f"torch.nn.functional.leaky_relu({{0}}, {LEAKY_SLOPE!r})",
        lambda a: np.where(a >= 0, a, LEAKY_SLOPE * a),
        lambda a: sp.Max(a, 0) + sp.Rational(1, 100) * sp.Min(a, 0), r"\operatorname{{leakyrelu}}\left({0}\right)",
        families=_AQ, fused=_op("LEAKY_RELU", round_f32(LEAKY_SLOPE)),
    ),
    Primitive(
        "hardtanh", 1, "torch.clamp({0}, min=-1.0, max=1.0)", lambda a: np.clip(a, -1.0, 1.0),
        lambda a: sp.Min(sp.Max(a, -1), 1), r"\operatorname{{hardtanh}}\left({0}\right)", families=_AQ,
        fused=_op("CLAMP", -1.0, 1.0),
    ),
    Primitive(
        "relu6", 1, "torch.clamp({0}, min=0.0, max=6.0)", lambda a: np.clip(a, 0.0, 6.0),
        lambda a: sp.Min(sp.Max(a, 0), 6), r"\operatorname{{relu6}}\left({0}\right)", families=_AQ,
        fused=_op("CLAMP", 0.0, 6.0),
    ),
    Primitive(
        "hardswish", 1, "torch.nn.functional.hardswish({0})", lambda a: a * np.clip(a + 3, 0.0, 6.0) / 6,
        lambda a: a * sp.Min(sp.Max(a + 3, 0), 6) / 6, r"\operatorname{{hardswish}}\left({0}\right)",
        families=_AQ, fused=_op("HARDSWISH"),
    ),
    # --- binary --------------------------------------------------------------------------------
    Primitive("add", 2, "{0} + {1}", np.add, lambda a, b: a + b, "{0} + {1}", families=_SWISH_AQ_GP, fused=_op("ADD")),
    Primitive("sub", 2, "{0} - {1}", np.subtract, lambda a, b: a - b, "{0} - {1}", families=_SWISH_AQ_GP,
              fused=_op("SUB")),
    Primitive("mul", 2, "{0} * {1}", np.multiply, lambda a, b: a * b, r"{0} \cdot {1}", families=_SWISH_AQ_GP,
              fused=_op("MUL")),
    Primitive(
        "div", 2, "{0} / " + _PROTECT.replace("{0}", "{1}"), lambda a, b: a / _np_protected_den(b),
        lambda a, b: a / b, r"\frac{{{0}}}{{{1}}}", f"|denominator| >= {EPS:g}", _SWISH_AQ, _op("DIV"),
    ),
    Primitive("max", 2, "torch.maximum({0}, {1})", np.maximum, sp.Max, r"\max\left({0}, {1}\right)",
              families=_SWISH_AQ, fused=_op("MAX")),
    Primitive("min", 2, "torch.minimum({0}, {1})", np.minimum, sp.Min, r"\min\left({0}, {1}\right)",
              families=_SWISH_AQ, fused=_op("MIN")),
    Primitive(
        "pow", 2, f"torch.pow(torch.abs({{0}}) + {_E}, {{1}})", lambda a, b: np.power(np.abs(a) + EPS, b),
        lambda a, b: sp.Abs(a) ** b, r"\left|{0}\right|^{{{1}}}", f"|base| + {EPS:g}", _AQ, _op("POW"),
    ),
    # --- signed unary ops of EvoNorm's layer graphs (also usable in formulas) ------------------
    Primitive(
        "slog", 1, f"torch.sign({{0}}) * torch.log(torch.abs({{0}}) + {_E})",
        lambda a: np.sign(a) * np.log(np.abs(a) + EPS), lambda a: sp.sign(a) * sp.log(sp.Abs(a)),
        r"\operatorname{{sign}}\left({0}\right)\log\left(\left|{0}\right| + \epsilon\right)",
        f"sign(x) log(|x| + {EPS:g})", ("evonorm",), _op("SLOG"),
    ),
    Primitive(
        "ssqrt", 1, f"torch.sign({{0}}) * torch.sqrt(torch.abs({{0}}) + {_E})",
        lambda a: np.sign(a) * np.sqrt(np.abs(a) + EPS), lambda a: sp.sign(a) * sp.sqrt(sp.Abs(a)),
        r"\operatorname{{sign}}\left({0}\right)\sqrt{{\left|{0}\right|}}", f"sign(x) sqrt(|x| + {EPS:g})",
        ("evonorm",), _op("SSQRT"),
    ),
]

#: printed by scripts/bench_op_costs.py (256x1024 float32, 1 thread; 2-core shared CPU machine)
MEASURED_COST: dict[str, float] = {
    "neg": 0.9, "abs": 1.3, "square": 1.5, "cube": 3.1, "sqrt": 3.4, "log": 4.2,
    "exp": 4.8, "sin": 5.4, "cos": 5.4, "sinh": 9.7, "cosh": 9.4, "tanh": 5.4,
    "asinh": 25.6, "atan": 5.5, "sinc": 11.7, "relu": 1.0, "sigmoid": 2.2, "softplus": 6.4,
    "gauss": 4.5, "erf": 5.8, "recip": 11.1, "erfc": 6.6, "expm1": 6.0, "log_sigmoid": 5.2,
    "elu": 5.2, "selu": 5.6, "silu": 3.4, "softsign": 4.9, "hard_sigmoid": 1.0, "mish": 15.8,
    "gelu": 3.6, "leaky_relu": 1.0, "hardtanh": 6.3, "relu6": 7.5, "hardswish": 1.1, "add": 0.9,
    "sub": 1.3, "mul": 1.6, "div": 14.2, "max": 8.9, "min": 9.8, "pow": 10.3,
}
# not timed on their own: sign(a) * f(|a| + eps) costs f plus a product and a sum
MEASURED_COST["slog"] = MEASURED_COST["log"] + MEASURED_COST["mul"] + MEASURED_COST["add"]
MEASURED_COST["ssqrt"] = MEASURED_COST["sqrt"] + MEASURED_COST["mul"] + MEASURED_COST["add"]

#: the registry: name -> primitive (built-in ones, then any `register_primitive` added)
PRIMITIVES: dict[str, Primitive] = {p.name: replace(p, cost=MEASURED_COST.get(p.name, p.cost)) for p in _PRIMS}
#: the built-in unary and binary primitive names, in registry order
UNARY: tuple[str, ...] = tuple(p.name for p in _PRIMS if p.arity == 1)
BINARY: tuple[str, ...] = tuple(p.name for p in _PRIMS if p.arity == 2)

#: Names a trainable constant may take: Greek letter names, optionally with a digit or
#: ``_suffix`` (``beta``, ``beta2``, ``eps_1``). ``lambda`` is excluded (a Python keyword);
#: write ``lam`` instead.
PARAMETER_BASE_NAMES: tuple[str, ...] = (
    "alpha", "beta", "gamma", "delta", "epsilon", "eps", "zeta", "eta", "theta", "iota",
    "kappa", "lam", "mu", "nu", "xi", "rho", "sigma", "tau", "phi", "chi", "psi", "omega",
)


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def register_primitive(primitive: Primitive) -> Primitive:
    """Add a primitive to the registry (for this process: a Ray worker sees it when the module
    that registers it is imported there, e.g. from a user task file). Checked here: a new
    lower-case name that is not ``x``, a trainable-constant name or a keyword; arity 1 or 2;
    templates with one slot per argument; a numpy form that is finite where it should be; an
    expansion (unary only) that parses and depends on x. Returns the primitive."""
    from afsearch.errors import ExpressionError

    name = primitive.name
    if not isinstance(name, str) or not _NAME.match(name) or name == "x" or keyword.iskeyword(name):
        raise ExpressionError(f"primitive name {name!r} must be lower-case letters, digits and _ "
                              "(starting with a letter), at most 32 characters, not x or a keyword")
    if name in PRIMITIVES:
        raise ExpressionError(f"primitive {name!r} is already registered")
    if _is_parameter_base(name):
        raise ExpressionError(f"primitive name {name!r} is reserved for trainable constants")
    if primitive.arity not in (1, 2):
        raise ExpressionError(f"primitive {name!r}: arity must be 1 or 2, got {primitive.arity}")
    for field_name in ("torch", "latex"):
        template = getattr(primitive, field_name)
        try:
            template.format(*(["a"] * primitive.arity))
        except (IndexError, KeyError, ValueError) as exc:
            raise ExpressionError(f"primitive {name!r}: bad {field_name} template ({exc}); use {{0}}"
                                  f"{', {1}' if primitive.arity == 2 else ''} for the arguments") from None
    if primitive.expansion is not None and primitive.arity != 1:
        raise ExpressionError(f"primitive {name!r}: only unary primitives take an expansion")
    probe = np.linspace(-3.0, 3.0, 7)
    values = np.asarray(primitive.numpy(*([probe] * primitive.arity)), dtype=np.float64)
    if values.shape != probe.shape:
        raise ExpressionError(f"primitive {name!r}: numpy form must be element-wise "
                              f"(got shape {values.shape} for {probe.shape})")
    PRIMITIVES[name] = primitive
    if primitive.expansion is not None:
        from afsearch.expr.parser import parse

        try:
            expanded = parse(primitive.expansion)
        except ExpressionError as exc:
            del PRIMITIVES[name]
            raise ExpressionError(f"primitive {name!r}: expansion: {exc}") from None
        if name in {node.op for node in expanded.walk()} or not expanded.uses_x():
            del PRIMITIVES[name]
            raise ExpressionError(f"primitive {name!r}: the expansion must use x and other primitives")
    return primitive


def unregister_primitive(name: str) -> None:
    """Remove a primitive added by `register_primitive` (built-in ones stay)."""
    if name in {p.name for p in _PRIMS}:
        raise KeyError(f"{name!r} is a built-in primitive")
    PRIMITIVES.pop(name, None)


def _is_parameter_base(name: str) -> bool:
    return any(name == base or re.fullmatch(rf"{base}(?:\d+|_[a-z0-9]+)", name)
               for base in PARAMETER_BASE_NAMES)


def get_primitive(name: str) -> Primitive:
    try:
        return PRIMITIVES[name]
    except KeyError:
        raise KeyError(f"unknown primitive {name!r}; allowed: {', '.join(sorted(PRIMITIVES))}") from None
