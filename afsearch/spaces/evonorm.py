"""The EvoNorm search space (Liu et al. 2020): layer graphs that replace BatchNorm+activation.

The genotype is a layer graph as JSON (see `afsearch.layers.graph`). Sampling draws a
random DAG whose last node is the output; mutation, as in the paper, picks an intermediate
node, replaces its op by one of the same arity and re-draws its inputs among the nodes before
it (a degenerate space with no other valid graph returns the parent). There is no crossover. The space file `search_spaces/evonorm.toml` sets the limits and ops.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afsearch.candidate import Candidate
from afsearch.layers.evonorm import (
    EVONORM_B0_GRAPH,
    EVONORM_S0_GRAPH,
    EvoNormB0,
    EvoNormS0,
)
from afsearch.layers.graph import (
    AGGREGATES,
    AXES,
    BINARY,
    INITIAL_NODES,
    STATISTICS,
    UNARY,
    GraphLayer,
    LayerGraph,
    arity,
    reduce_groups,
)
from afsearch.spaces.base import Genotype, SearchSpace
from afsearch.spaces.toml_schema import check_keys, load_toml, optional, require, space_error

_TRIES = 1000  # redraws before giving up on a sample or mutation (never reached in practice)


@dataclass
class EvoNormSpace(SearchSpace):
    name: str
    ops: tuple[str, ...]  # allowed op names; sampling draws uniformly from this list
    max_nodes: int  # intermediate nodes, not counting the four initial ones
    min_nodes: int = 1
    groups: int = 32

    def sample(self, rng: random.Random) -> Genotype:
        for _ in range(_TRIES):
            nodes = []
            count = rng.randint(self.min_nodes, self.max_nodes)
            for index in range(len(INITIAL_NODES), len(INITIAL_NODES) + count):
                op = rng.choice(self.ops)
                nodes.append((op, *(rng.randrange(index) for _ in range(arity(op)))))
            graph = LayerGraph(tuple(nodes), len(INITIAL_NODES) + len(nodes) - 1, self.groups)
            if graph.depends_on_input:
                return graph.to_json()
        raise RuntimeError(f"space {self.name!r}: no sampled graph depended on the input")

    def mutate(self, genotype: Genotype, rng: random.Random) -> Genotype:
        graph = self.validate(genotype)
        for _ in range(_TRIES):
            k = rng.randrange(len(graph.nodes))
            index = len(INITIAL_NODES) + k
            n_inputs = arity(graph.nodes[k][0])
            op = rng.choice([o for o in self.ops if arity(o) == n_inputs])
            node = (op, *(rng.randrange(index) for _ in range(n_inputs)))
            nodes = graph.nodes[:k] + (node,) + graph.nodes[k + 1 :]
            child = LayerGraph(nodes, graph.output, graph.groups)
            if child != graph and child.depends_on_input:
                return child.to_json()
        return graph.to_json()  # a degenerate space (one op, one node) has no other graph

    def size(self) -> int | None:
        return None

    def to_candidate(self, genotype: Genotype) -> Candidate:
        return Candidate.layer(json.dumps(self.validate(genotype).to_json()))

    def validate(self, genotype: Genotype) -> LayerGraph:
        """The genotype as a graph; `SpaceError` if malformed or outside this space's limits."""
        graph = LayerGraph.from_json(genotype)
        where = f"layer graph (space {self.name!r})"
        if not self.min_nodes <= len(graph.nodes) <= self.max_nodes:
            raise space_error(
                where,
                "nodes",
                f"{len(graph.nodes)} nodes is outside the limits",
                f"{self.min_nodes}..{self.max_nodes} nodes",
            )
        if graph.groups != self.groups:
            raise space_error(
                where, "groups", f"{graph.groups} differs from the space's", [self.groups]
            )
        for k, (op, *_) in enumerate(graph.nodes):
            if op not in self.ops:
                raise space_error(where, f"nodes[{k}]", f"op {op!r} is not in this space", self.ops)
        return graph

    def seeds(self) -> list[Genotype]:
        """EvoNorm-B0 and -S0, those of them that fit this space, to seed a population."""
        seeds = []
        for graph in (EVONORM_B0_GRAPH, EVONORM_S0_GRAPH):
            seed = LayerGraph.from_json({**graph, "groups": self.groups})  # a fresh copy
            if seed.ops() <= set(self.ops) and self.min_nodes <= len(seed.nodes) <= self.max_nodes:
                seeds.append(seed.to_json())
        return seeds

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": None,
            "nodes": f"{self.min_nodes}..{self.max_nodes}",
            "ops": list(self.ops),
            "groups": self.groups,
        }


def load_evonorm_space(path: str | Path) -> EvoNormSpace:
    """Read an EvoNorm space file (see `search_spaces/evonorm.toml` for every key)."""
    doc = load_toml(path)
    check_keys(doc, "", ["name", "kind", "description", "limits", "ops", "aggregates"], path)
    check_keys(doc, "limits", ["min_nodes", "max_nodes"], path)
    check_keys(doc, "ops", ["unary", "binary"], path)
    check_keys(doc, "aggregates", ["statistics", "axes", "groups"], path)
    name = require(doc, "name", str, path)
    require(doc, "kind", str, path, allowed=["evonorm"])
    optional(doc, "description", str, path, default="")
    min_nodes = optional(doc, "limits.min_nodes", int, path, default=1, minimum=1)
    max_nodes = require(doc, "limits.max_nodes", int, path, minimum=min_nodes)
    unary = _op_list(doc, "ops.unary", UNARY, path)
    binary = _op_list(doc, "ops.binary", BINARY, path)
    stats = require(doc, "aggregates.statistics", list, path, items=str, allowed=STATISTICS)
    axes = require(doc, "aggregates.axes", list, path, items=str, allowed=AXES)
    groups = optional(doc, "aggregates.groups", int, path, default=32, minimum=1)
    aggregates = [op for op in AGGREGATES if op.split("_")[0] in axes and op.split("_")[1] in stats]
    ops = tuple(dict.fromkeys([*unary, *binary, *aggregates]))
    if not ops:
        raise space_error(
            path, "ops", "the space has no ops", "at least one of ops.unary, ops.binary, aggregates"
        )
    return EvoNormSpace(name=name, ops=ops, max_nodes=max_nodes, min_nodes=min_nodes, groups=groups)


def _op_list(doc: dict[str, Any], key: str, known: tuple[str, ...], path: str | Path) -> list[str]:
    ops = require(doc, key, list, path, items=str)
    for i, op in enumerate(ops):
        other = BINARY if known is UNARY else UNARY
        if op in other:
            raise space_error(
                path, f"{key}[{i}]", f"wrong arity: {op!r} takes {arity(op)} input(s)", known
            )
    return require(doc, key, list, path, items=str, allowed=known)


__all__ = [
    "EVONORM_B0_GRAPH",
    "EVONORM_S0_GRAPH",
    "EvoNormB0",
    "EvoNormS0",
    "EvoNormSpace",
    "GraphLayer",
    "LayerGraph",
    "load_evonorm_space",
    "reduce_groups",
]
