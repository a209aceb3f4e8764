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
