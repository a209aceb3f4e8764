"""Normalization-activation layers as graphs: the phenotype of EvoNorm-style candidates.

`LayerGraph` is the validated genotype-as-data (JSON), `GraphLayer` its compiled module, and
`afsearch.layers.evonorm` holds the published EvoNorm-B0/S0 layers, hand-written and as graphs.
Element-wise ops come from the expression core's primitive registry."""

from afsearch.layers.evonorm import EVONORM_B0_GRAPH, EVONORM_S0_GRAPH
from afsearch.layers.graph import (
    AGGREGATES,
    ALL_OPS,
    ELEMENTWISE,
    GraphLayer,
    LayerGraph,
    reduce_groups,
)

__all__ = [
    "AGGREGATES",
    "ALL_OPS",
    "ELEMENTWISE",
    "EVONORM_B0_GRAPH",
    "EVONORM_S0_GRAPH",
    "GraphLayer",
    "LayerGraph",
    "reduce_groups",
]
