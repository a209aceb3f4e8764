"""Reference activations by name, written in the expression language (REFERENCE §8, §10).

Every search is compared against these; they also seed populations. Names are lower-case;
``reference_formula`` accepts any case and a few common aliases.

A reference may fix the FFN form it is meant for (``ffn="glu"``: SwiGLU is SiLU as the gate of
a GLU feed-forward block), and any reference can be put in a form by name: ``gelu@plain``,
``silu@glu``. On a task with an `ffn` option (lm-transformer) such a reference trains in its own
form whatever the run's form, so GELU-plain and SwiGLU are compared at equal parameter count;
`reference_candidate` turns a name into the candidate that says so. A reference of kind
"token" (PolyNorm) is a token-wise module, not a formula (see afsearch.compile.token)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from afsearch.candidate import ACTIVATION, Candidate
from afsearch.errors import ExpressionError

FFN_FORMS = ("plain", "glu")


@dataclass(frozen=True)
class Reference:
    name: str
    formula: str  # a formula (kind "activation") or a token-wise spec (kind "token")
    description: str
    ffn: str | None = None  # the FFN form it is meant for ("glu"); None: the task's
    kind: str = ACTIVATION

    def candidate(self) -> Candidate:
        inner = Candidate(self.kind, self.formula)
        return inner if self.ffn is None else Candidate.in_ffn(self.ffn, inner)


_SQRT2 = "1.4142135623730951"
_PI = "3.141592653589793"

_REFS = [
    Reference("relu", "relu(x)", "max(0, x)"),
    Reference("leaky_relu", "max(x, 0.01 * x)", "x if x >= 0 else 0.01 x"),
    Reference("elu", "max(x, 0) + min(exp(x) - 1, 0)", "x if x > 0 else exp(x) - 1"),
    Reference(
        "selu",
        "1.0507009873554805 * (max(x, 0) + min(1.6732632423543772 * (exp(x) - 1), 0))",
        "scaled ELU with the self-normalising constants",
    ),
    Reference("gelu", f"0.5 * x * (1 + erf(x / {_SQRT2}))", "x * Phi(x), erf form"),
    Reference(
        "gelu_tanh",
        "0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x^3)))",
        "GELU, tanh approximation",
    ),
    Reference("silu", "x * sigmoid(x)", "SiLU = Swish with beta = 1"),
    Reference("swish", "x * sigmoid(beta * x)", "Swish with trainable beta (init 1)"),
    Reference("mish", "x * tanh(softplus(x))", "Mish"),
    Reference("softplus", "softplus(x)", "log(1 + exp(x)), stable form"),
    Reference("hardswish", "x * min(max(x + 3, 0), 6) / 6", "x * relu6(x + 3) / 6"),
    Reference("squared_relu", "relu(x)^2", "relu(x)^2"),
    Reference("golu", "x * exp(-exp(-x))", "Gompertz linear unit"),
    Reference("xsilu", "x * ((1 + 2 * alpha[0]) * sigmoid(x) - alpha[0])", "xSiLU, alpha trainable"),
    Reference("xgelu", f"x * (0.5 + (0.5 + alpha[0]) * erf(x / {_SQRT2}))", "xGELU, alpha trainable"),
    Reference("xatlu", f"x * (0.5 + (1 + 2 * alpha[0]) * atan(x) / {_PI})", "xATLU, alpha trainable"),
    Reference("crrelu", "relu(x) + eps[0.01] * x * exp(-x^2 / 2)", "EAFO correction of ReLU, eps trainable"),
    Reference(
        "pau",
        "(alpha0[0.02996348] + alpha1[0.61690165] * x + alpha2[2.37539147] * x^2"
        " + alpha3[3.06608078] * x^3 + alpha4[1.52474449] * (x^2)^2 + alpha5[0.25281987] * x * (x^2)^2)"
        " / (1 + abs(beta1[1.19160814] * x + beta2[4.40811795] * x^2 + beta3[0.91111034] * x^3"
        " + beta4[0.34885983] * (x^2)^2))",
        "Pade activation unit (5,4), safe form, initialised to fit ReLU",
    ),
    Reference(
        "aglu",
        "x * (max(lam, 0.0001) * exp(-kappa * x) + 1)^(-1 / max(lam, 0.0001))",
        "x * APA(x), lambda clamped >= 1e-4, kappa and lambda trainable (init 1)",
    ),
    Reference(
        "polyrelu",
        "omega1[0.3333333333333333] * relu(x) + omega2[0.3333333333333333] * relu(x)^2"
        " + omega3[0.3333333333333333] * relu(x)^3 + beta[0]",
        "sum_i w_i relu(x)^i + b, w init 1/3",
    ),
    Reference("tanh", "tanh(x)", "tanh"),
    Reference("sigmoid", "sigmoid(x)", "logistic sigmoid"),
    Reference("swiglu", "x * sigmoid(x)", "SiLU as the gate of a GLU FFN: W2 (silu(W1 x) * V x)", ffn="glu"),
    Reference("geglu", f"0.5 * x * (1 + erf(x / {_SQRT2}))", "GELU as the gate of a GLU FFN", ffn="glu"),
    Reference("reglu", "relu(x)", "ReLU as the gate of a GLU FFN", ffn="glu"),
]

#: the references written as formulas (every one compiles and passes the screen)
REFERENCES: dict[str, Reference] = {r.name: r for r in _REFS}
#: token-wise references: modules over each token's hidden vector, not formulas
TOKEN_REFERENCES: dict[str, Reference] = {r.name: r for r in [
    Reference("polynorm", '{"type": "polynorm", "degree": 3}',
              "PolyCom PolyNorm: sum_i a_i x^i / rms(x^i) + b over the hidden vector, i = 1..3, a init 1/3",
              kind="token"),
]}
_ALIASES = {"leakyrelu": "leaky_relu", "squaredrelu": "squared_relu", "relu2": "squared_relu",
            "pau54": "pau", "gelu_erf": "gelu", "hard_swish": "hardswish"}

#: the baselines every evaluation compares against by default
DEFAULT_BASELINES = ("relu", "gelu", "silu", "tanh", "elu")


def register_reference(name: str, formula: str, description: str = "") -> Reference:
    """Add a reference activation (a baseline or seed) for this process, e.g. your current
    production activation: ``register_reference("mine", "x * tanh(softplus(beta * x))")``.
    The formula must parse; the name must be new (lower-case letters, digits, _)."""
    from afsearch.expr.parser import parse

    key = name.strip().lower()
    if not key or not all(c.isalnum() or c == "_" for c in key) or len(key) > 40:
        raise ExpressionError(f"reference name {name!r}: use lower-case letters, digits and _ (at most 40)")
    if key in REFERENCES or key in _ALIASES:
        raise ExpressionError(f"reference {key!r} already exists")
    parse(formula)  # a malformed formula fails here, with its position
    ref = Reference(key, formula, description or formula)
    REFERENCES[key] = ref
    return ref


def get_reference(name: str) -> Reference:
    """A reference by name; ``NAME@FORM`` (``gelu@plain``, ``silu@glu``) puts it in an FFN form."""
    text = name.strip().lower().replace("-", "_")
    key, _, form = text.partition("@")
    key = _ALIASES.get(key, key)
    known = {**REFERENCES, **TOKEN_REFERENCES}
    if key not in known:
        raise ExpressionError(
            f"unknown reference activation {name!r}; allowed: {', '.join(sorted(known))}"
            " (NAME@plain or NAME@glu for a fixed FFN form)"
        )
    ref = known[key]
    if not form:
        return ref
    if form not in FFN_FORMS:
        raise ExpressionError(f"reference {name!r}: FFN form must be one of {', '.join(FFN_FORMS)}, got {form!r}")
    return replace(ref, name=f"{key}@{form}", ffn=form)


def reference_candidate(name: str) -> Candidate:
    """The candidate of a reference (its kind, and its FFN form when it fixes one)."""
    return get_reference(name).candidate()


def reference_formula(name: str) -> str:
    return get_reference(name).formula
