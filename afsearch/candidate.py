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


@dataclass(frozen=True)
class Candidate:
    """kind "activation": spec is a formula in the expression language (see afsearch.expr).
    kind "layer": spec is the JSON of an EvoNorm-style layer graph (see afsearch.spaces.evonorm)."""

    kind: str
    spec: str

    @classmethod
    def activation(cls, formula: str) -> Candidate:
        return cls(ACTIVATION, formula)

    @classmethod
    def layer(cls, graph_json: str) -> Candidate:
        return cls(LAYER, graph_json)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": self.spec}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        return cls(str(data["kind"]), str(data["spec"]))

    @property
    def is_layer(self) -> bool:
        return self.kind == LAYER

    def fingerprint(self) -> str:
        """Functional fingerprint: equal fingerprints are trained once (see afsearch.expr)."""
        if self.kind == LAYER:
            from afsearch.spaces.evonorm import LayerGraph

            return "L" + LayerGraph.from_json(json.loads(self.spec)).fingerprint()
        from afsearch.expr import fingerprint, parse

        return fingerprint(parse(self.spec))

    def describe(self, canonical_timeout_s: float = 0.2) -> tuple[str, str]:
        """(formula as proposed, its simplified form) for the store: the second is a formula
        that computes the same function in as few operations as `afsearch.expr.simplify`
        finds within `canonical_timeout_s`, which the leaderboard, `show`, `validate` and
        `export` display."""
        if self.kind == LAYER:
            from afsearch.spaces.evonorm import LayerGraph

            formula = LayerGraph.from_json(json.loads(self.spec)).formula()
            return formula, formula
        from afsearch.expr import parse, to_string
        from afsearch.expr.simplify import simplify

        expr = parse(self.spec)
        return to_string(expr), to_string(simplify(expr, canonical_timeout_s))

    def activation_factory(self) -> Callable[[], nn.Module]:
        """A zero-argument factory returning a fresh activation module (own parameters)."""
        if self.kind != ACTIVATION:
            raise TypeError(f"candidate of kind {self.kind!r} is not an element-wise activation")
        from afsearch.compile import compile_activation

        compiled = compile_activation(self.spec)
        return compiled.new_module

    def layer_factory(self) -> Callable[[int], nn.Module]:
        """channels -> a fresh module replacing one BatchNorm+activation pair (NCHW)."""
        if self.kind != LAYER:
            raise TypeError(f"candidate of kind {self.kind!r} is not a layer graph")
        from afsearch.spaces.evonorm import LayerGraph

        graph = LayerGraph.from_json(json.loads(self.spec))
        return graph.build
