"""Token-wise activations: modules that see each token's whole hidden vector (the last
dimension) instead of one element at a time. They are drop-in activation modules: an FFN calls
``act(W1 x)`` as before.

- ``moa`` (mixture of activations, token-adaptive): ``out = sum_k w_k(h) g_k(h)`` with
  ``w(h) = softmax(G h + b)`` over a dictionary of element-wise formulas ``g_k``. The gate reads
  the pre-activation ``h = W1 x``, so it is a low-rank gate on the FFN input that shares ``W1``
  (K x hidden extra weights per layer). It starts with ``G = 0`` and ``b = log(initial
  weights)``, i.e. as the input-independent mixture (LA with weights summing to 1), and learns
  per-token weights from there. ``G`` is sized by the first call (``torch.nn.LazyLinear``): run
  one forward pass before building the optimizer (afsearch's trainer does).
- ``polynorm`` (PolyCom): ``sum_{i=1..r} a_i norm(h^i) + b`` with ``norm(u) = u /
  sqrt(mean(u^2) + 1e-6)`` over the hidden dimension, ``a_i`` init 1/r, ``b`` init 0.

A spec is JSON: ``{"type": "moa", "terms": [["relu(x)", 0.5], ["x * sigmoid(x)", 0.5]]}`` or
``{"type": "polynorm", "degree": 3}``. As for formulas, one generated source (torch only) is both
the module trained here and the exported ``.py`` file."""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass
from typing import Any

from torch import nn

from afsearch.compile.codegen import GeneratedModule, generate_module
from afsearch.errors import ExpressionError
from afsearch.expr import canonical_form, fingerprint, parse, to_string

TYPES = ("moa", "polynorm")
MAX_TERMS = 16
MAX_DEGREE = 6


@dataclass(frozen=True)
class TokenSpec:
    type: str
    terms: tuple[tuple[str, float], ...] = ()  # moa: (formula, initial weight)
    degree: int = 3  # polynorm

    @classmethod
    def from_json(cls, text: str) -> TokenSpec:
        """Parse and check a spec; ExpressionError names what is wrong."""
        try:
            data = json.loads(text)
        except ValueError:
            raise ExpressionError(f"token activation spec is not JSON: {text[:60]!r}") from None
        if not isinstance(data, dict) or data.get("type") not in TYPES:
            raise ExpressionError(f"token activation spec needs \"type\": one of {', '.join(TYPES)}")
        if data["type"] == "polynorm":
            degree = data.get("degree", 3)
            if isinstance(degree, bool) or not isinstance(degree, int) or not 1 <= degree <= MAX_DEGREE:
                raise ExpressionError(f"polynorm degree must be an integer in 1..{MAX_DEGREE}, got {degree!r}")
            return cls("polynorm", degree=degree)
        terms = data.get("terms")
        if not isinstance(terms, list) or not 1 <= len(terms) <= MAX_TERMS:
            raise ExpressionError(f"moa needs 1..{MAX_TERMS} terms [formula, initial weight]")
        parsed = []
        for term in terms:
            if (not isinstance(term, list) or len(term) != 2 or not isinstance(term[0], str)
                    or isinstance(term[1], bool) or not isinstance(term[1], int | float)
                    or not math.isfinite(term[1]) or term[1] <= 0):
                raise ExpressionError(f"moa term {term!r}: expected [formula, positive initial weight]")
            parsed.append((to_string(parse(term[0])), float(term[1])))
        return cls("moa", terms=tuple(parsed))

    def to_json(self) -> str:
        if self.type == "polynorm":
            return json.dumps({"type": "polynorm", "degree": self.degree})
        return json.dumps({"type": "moa", "terms": [list(t) for t in self.terms]})

    def weights(self) -> list[float]:
        """The initial mixture (weights normalised to sum 1, as the softmax gate starts)."""
        total = sum(w for _, w in self.terms)
        return [w / total for _, w in self.terms]

    def fingerprint(self) -> str:
        if self.type == "polynorm":
            key: Any = ["polynorm", self.degree]
        else:
            key = sorted([fingerprint(parse(f)), round(w, 6)] for (f, _), w in zip(self.terms, self.weights(), strict=True))
            key = ["moa", key]
        return hashlib.blake2b(json.dumps(key).encode(), digest_size=8).hexdigest()

    def describe(self, canonical_timeout_s: float = 0.2) -> tuple[str, str]:
        """(readable form, canonical form): ``moa(0.5 relu(x), 0.5 x * sigmoid(x))``."""
        if self.type == "polynorm":
            text = f"polynorm(degree {self.degree})"
            return text, text
        pairs = list(zip((f for f, _ in self.terms), self.weights(), strict=True))
        readable = "moa(" + ", ".join(f"{w:.3g} {f}" for f, w in pairs) + ")"
        canon = sorted(f"{w:.3g} {canonical_form(parse(f), canonical_timeout_s).text}" for f, w in pairs)
        return readable, "moa(" + ", ".join(canon) + ")"


def _class_source(generated: GeneratedModule) -> str:
    """The class definition of a generated formula module (without its module header)."""
    return generated.source[generated.source.index("class "):]


def generate_token_module(spec: TokenSpec, class_name: str = "TokenActivation") -> GeneratedModule:
    """Python source of an ``nn.Module`` (only import: torch) for `spec`."""
    readable, _ = spec.describe()
    if spec.type == "polynorm":
        body = _POLYNORM.format(name=class_name, formula=readable, degree=spec.degree)
        return GeneratedModule(class_name, _HEADER.format(formula=readable) + body, readable, "", {})
    parts = []
    for k, (formula, _) in enumerate(spec.terms):
        parts.append(_class_source(generate_module(parse(formula), f"_{class_name}Term{k}")))
    logits = [math.log(w) for w in spec.weights()]
    terms_doc = "\n".join(f"      {w:.4g}  {f}" for (f, _), w in zip(spec.terms, spec.weights(), strict=True))
    body = _MOA.format(name=class_name, formula=readable, k=len(spec.terms), terms_doc=terms_doc,
                       terms=tuple(f for f, _ in spec.terms), logits=tuple(logits),
                       acts=", ".join(f"_{class_name}Term{k}()" for k in range(len(spec.terms))))
    source = _HEADER.format(formula=readable) + "\n\n".join(parts) + "\n\n" + body
    return GeneratedModule(class_name, source, readable, "", {})


_HEADER = '"""Token-wise activation generated by afsearch.\n\n{formula}\n"""\n\nimport torch\n\n\n'

_MOA = '''class _{name}Gate(torch.nn.LazyLinear):
    """hidden -> K gate logits, sized by the first call; starts at weight 0 and bias
    log(initial weights), so every token starts with the initial mixture."""

    logits0 = {logits!r}

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params() and self.in_features != 0:
            with torch.no_grad():
                self.weight.zero_()
                self.bias.copy_(torch.tensor(self.logits0))


class {name}(torch.nn.Module):
    """{formula}

    Mixture of activations (MoA), token-adaptive: out = sum_k w_k(h) * g_k(h), with
    w(h) = softmax(G h + b) over the last (hidden) dimension. Initial weights:
{terms_doc}
    The gate G is sized by the first call: run one forward pass before building the optimizer.
    """

    formula = "{formula}"
    terms = {terms!r}

    def __init__(self) -> None:
        super().__init__()
        self.acts = torch.nn.ModuleList([{acts}])
        self.gate = _{name}Gate({k})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.gate(x), dim=-1)
        out = weights[..., 0:1] * self.acts[0](x)
        for k in range(1, len(self.acts)):
            out = out + weights[..., k:k + 1] * self.acts[k](x)
        return out
'''

_POLYNORM = '''class {name}(torch.nn.Module):
    """{formula}

    PolyNorm (PolyCom): sum_i a_i * norm(x^i) + b for i = 1..{degree}, with
    norm(u) = u / sqrt(mean(u^2) + 1e-6) over the last (hidden) dimension; a_i init 1/{degree}, b init 0.
    """

    formula = "{formula}"

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full(({degree},), 1.0 / {degree}))
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bias
        power = x
        for i in range({degree}):
            if i:
                power = power * x
            out = out + self.weight[i] * power * torch.rsqrt(power.pow(2).mean(-1, keepdim=True) + 1e-6)
        return out
'''

_CACHE: dict[str, type[nn.Module]] = {}
_LOCK = threading.Lock()


def compile_token(text: str) -> type[nn.Module]:
    """The module class of a spec (generated and loaded once per process)."""
    from afsearch.compile.compiler import load_generated

    spec = TokenSpec.from_json(text)
    key = spec.to_json()
    with _LOCK:
        if key not in _CACHE:
            generated = generate_token_module(spec)
            name = f"afsearch_token_{hashlib.sha256(key.encode()).hexdigest()[:16]}"
            _CACHE[key] = load_generated(generated, name)
        return _CACHE[key]


def has_lazy_parameters(model: nn.Module) -> bool:
    from torch.nn.parameter import is_lazy

    return any(is_lazy(p) for p in model.parameters())


def materialise(model: nn.Module, example: Any) -> nn.Module:
    """Size lazily-shaped parameters (an MoA gate) with one forward pass on `example`, so the
    optimizer sees every parameter; a model without lazy parameters is returned untouched."""
    import torch

    if has_lazy_parameters(model):
        was_training = model.training
        with torch.no_grad():
            model.eval()(example)
        model.train(was_training)
    return model
