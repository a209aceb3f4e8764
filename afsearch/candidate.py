"""A candidate is plain data (kind + spec string), so it crosses process and Ray boundaries
as JSON and is rebuilt into torch modules where it is trained."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

ACTIVATION = "activation"
LAYER = "layer"
#: an activation placed in a fixed FFN form ("plain" or "glu") whatever the task's `ffn`
#: option says, so a run can compare e.g. GELU-plain with SwiGLU at equal parameter count
FFN = "ffn"
#: a token-wise activation (sees each token's hidden vector): MoA, PolyNorm (afsearch.compile.token)
TOKEN = "token"
#: kinds whose module is an activation an FFN or MLP calls element- or token-wise
ACTIVATION_KINDS = (ACTIVATION, FFN, TOKEN)


@dataclass(frozen=True)
class Candidate:
    """kind "activation": spec is a formula in the expression language (see afsearch.expr).
    kind "layer": spec is the JSON of an EvoNorm-style layer graph (see afsearch.layers).
    kind "ffn": spec is ``{"form": "glu", "candidate": {kind, spec}}``, an activation candidate
    in a fixed FFN form (tasks with an `ffn` option).
    kind "token": spec is the JSON of a token-wise activation (see afsearch.compile.token)."""

    kind: str
    spec: str

    @classmethod
    def activation(cls, formula: str) -> Candidate:
        return cls(ACTIVATION, formula)

    @classmethod
    def layer(cls, graph_json: str) -> Candidate:
        return cls(LAYER, graph_json)

    @classmethod
    def in_ffn(cls, form: str, inner: Candidate) -> Candidate:
        return cls(FFN, json.dumps({"form": form, "candidate": inner.to_json()}, sort_keys=True))

    @classmethod
    def token(cls, spec_json: str) -> Candidate:
        return cls(TOKEN, spec_json)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": self.spec}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        return cls(str(data["kind"]), str(data["spec"]))

    @property
    def is_layer(self) -> bool:
        return self.kind == LAYER

    def ffn_form(self) -> tuple[str, Candidate]:
        """(form, inner candidate) of an "ffn" candidate."""
        from afsearch.errors import ExpressionError

        data = json.loads(self.spec)
        inner = Candidate.from_json(data["candidate"])
        if data.get("form") not in ("plain", "glu") or inner.kind not in (ACTIVATION, TOKEN):
            raise ExpressionError(f"ffn candidate needs form plain|glu and an activation, got {self.spec[:80]!r}")
        return data["form"], inner

    @property
    def screen_formula(self) -> str | None:
        """The element-wise formula the static screen checks (None: nothing to screen)."""
        if self.kind == ACTIVATION:
            return self.spec
        if self.kind == FFN:
            return self.ffn_form()[1].screen_formula
        return None

    def task_overrides(self) -> dict[str, Any]:
        """Task config fields this candidate fixes (an "ffn" candidate: its form)."""
        return {"ffn": self.ffn_form()[0]} if self.kind == FFN else {}

    def fingerprint(self) -> str:
        """Functional fingerprint: equal fingerprints are trained once (see afsearch.expr)."""
        if self.kind == LAYER:
            from afsearch.layers import LayerGraph

            return "L" + LayerGraph.from_json(json.loads(self.spec)).fingerprint()
        if self.kind == FFN:
            form, inner = self.ffn_form()
            return f"F{form}:{inner.fingerprint()}"
        if self.kind == TOKEN:
            from afsearch.compile.token import TokenSpec

            return "T" + TokenSpec.from_json(self.spec).fingerprint()
        from afsearch.expr import fingerprint, parse

        return fingerprint(parse(self.spec))

    def describe(self, canonical_timeout_s: float = 0.2) -> tuple[str, str]:
        """(formula as proposed, its simplified form) for the store: the second is a formula
        that computes the same function in as few operations as `afsearch.expr.simplify`
        finds within `canonical_timeout_s`, which the leaderboard, `show`, `validate` and
        `export` display."""
        if self.kind == LAYER:
            from afsearch.layers import LayerGraph

            formula = LayerGraph.from_json(json.loads(self.spec)).formula()
            return formula, formula
        if self.kind == FFN:
            form, inner = self.ffn_form()
            readable, canonical = inner.describe(canonical_timeout_s)
            return f"{form}: {readable}", f"{form}: {canonical}"
        if self.kind == TOKEN:
            from afsearch.compile.token import TokenSpec

            return TokenSpec.from_json(self.spec).describe(canonical_timeout_s)
        from afsearch.expr import parse, to_string
        from afsearch.expr.simplify import simplify

        expr = parse(self.spec)
        return to_string(expr), to_string(simplify(expr, canonical_timeout_s))

    def activation_factory(self) -> Callable[[], nn.Module]:
        """A zero-argument factory returning a fresh activation module (own parameters)."""
        if self.kind == FFN:
            return self.ffn_form()[1].activation_factory()
        if self.kind == TOKEN:
            from afsearch.compile.token import compile_token

            return compile_token(self.spec)
        if self.kind != ACTIVATION:
            raise TypeError(f"candidate of kind {self.kind!r} is not an activation")
        from afsearch.compile import compile_activation

        compiled = compile_activation(self.spec)
        return compiled.new_module

    def layer_factory(self) -> Callable[[int], nn.Module]:
        """channels -> a fresh module replacing one BatchNorm+activation pair (NCHW)."""
        if self.kind != LAYER:
            raise TypeError(f"candidate of kind {self.kind!r} is not a layer graph")
        from afsearch.layers import LayerGraph

        graph = LayerGraph.from_json(json.loads(self.spec))
        return graph.build
