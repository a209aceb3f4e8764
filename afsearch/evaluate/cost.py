"""The cost of a candidate as a count, so that a search with a `cost` objective repeats itself.

An activation costs the elementwise operations its compiled module runs per element, each
primitive weighted by its measured forward+backward time (`Primitive.cost`, relative to ReLU,
measured once by scripts/bench_op_costs.py), divided by ReLU's weight: 1.0 costs what ReLU
costs. A layer graph costs its active nodes, elementwise ones weighted the same way and
statistics by the passes over the input their moment takes, divided by the count of
BatchNorm+ReLU written as a graph. The wall-clock ratio, which varies from run to run, is
`afsearch.evaluate.baselines.activation_time`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from afsearch.candidate import Candidate
from afsearch.expr import PRIMITIVES, Expr, parse
from afsearch.expr.tree import CONST

#: a statistic reads its input this many times per element (mean: sum; var: mean, deviation,
#: square; m2: square, sum); the weight of one pass is that of an add
_MOMENT_PASSES = {"mean": 1, "var": 3, "m2": 2}
#: BatchNorm + ReLU as a layer graph: (x - mean_NHW) / std_NHW, then max(., 0)
BATCHNORM_RELU_GRAPH = {"nodes": [["batch_mean", 0], ["neg", 4], ["add", 0, 5], ["batch_std", 0],
                                  ["div", 6, 7], ["max", 8, 1]], "output": 9}


def activation_cost(candidate: Candidate) -> float:
    """The candidate's counted cost relative to ReLU (activations, FFN and token-wise ones) or
    BatchNorm+ReLU (layers)."""
    if candidate.is_layer:
        return layer_cost(json.loads(candidate.spec)) / layer_cost(BATCHNORM_RELU_GRAPH)
    return _elementwise_cost(candidate) / PRIMITIVES["relu"].cost


def _elementwise_cost(candidate: Candidate) -> float:
    """Weighted element-wise operations per hidden unit: a formula's own; a GLU form adds the
    gate's product; a token-wise mixture its terms, softmax and weighted sum (the gate's
    projection is a matmul, which no element-wise count can price, and is left out); PolyNorm
    its powers and one RMS normalisation per degree."""
    from afsearch.candidate import FFN, TOKEN

    weight = {name: p.cost for name, p in PRIMITIVES.items()}
    if candidate.kind == FFN:
        form, inner = candidate.ffn_form()
        return _elementwise_cost(inner) + (weight["mul"] if form == "glu" else 0.0)
    if candidate.kind == TOKEN:
        from afsearch.compile.token import TokenSpec

        spec = TokenSpec.from_json(candidate.spec)
        if spec.type == "polynorm":
            # h^i from h^(i-1) (one mul), mean of squares (square, add), scale (mul), a_i (mul), sum (add)
            per_degree = weight["square"] + 3 * weight["mul"] + 2 * weight["add"]
            return spec.degree * per_degree - weight["mul"]  # h^1 needs no power
        terms = sum(formula_cost(parse(f)) for f, _ in spec.terms)
        # softmax over K logits (exp, sum, div per term) and the weighted sum (mul, add per term)
        return terms + len(spec.terms) * (weight["exp"] + weight["div"] + weight["mul"] + 2 * weight["add"])
    return formula_cost(parse(candidate.spec))


def formula_cost(expr: Expr, weights: Mapping[str, float] | None = None) -> float:
    """Weighted operations of the compiled formula, which folds constant subtrees and computes
    a repeated subexpression once (`afsearch.compile.codegen`). `weights`: primitive name ->
    weight, instead of `Primitive.cost` (scripts/bench_op_costs.py checks fresh ones)."""
    from afsearch.expr.constants import fold_constants

    seen: set[Expr] = set()
    total = 0.0
    for node in fold_constants(expr).walk():
        if node.is_leaf or node in seen:
            continue
        seen.add(node)
        name = _costed_as(node)
        total += weights[name] if weights is not None else PRIMITIVES[name].cost
    return total


def _costed_as(node: Expr) -> str:
    """The primitive whose weight a node costs: its own, except where codegen specialises a
    constant argument (`afsearch.compile.codegen._apply`): max/min against a constant is a
    clamp, costed as ReLU; division by a constant is a scalar multiplication."""
    constants = [a.op == CONST for a in node.args]
    if node.op in ("max", "min") and constants.count(True) == 1:
        return "relu"
    if node.op == "div" and constants == [False, True]:
        return "mul"
    return node.op


def layer_cost(graph_json: dict[str, Any]) -> float:
    """Weighted operations of a layer graph's active nodes, plus the final `* gamma + beta`."""
    from afsearch.layers.graph import INITIAL_NODES, STATISTICS, LayerGraph

    graph = LayerGraph.from_json(graph_json)
    add = PRIMITIVES["add"].cost
    total = PRIMITIVES["mul"].cost + add
    for index in graph.active():
        if index < len(INITIAL_NODES):
            continue
        op = graph.node(index)[0]
        if op in PRIMITIVES:
            total += PRIMITIVES[op].cost
        else:
            moment, root = STATISTICS[op.split("_", 1)[1]]
            total += _MOMENT_PASSES[moment] * add + (PRIMITIVES["sqrt"].cost if root else 0.0)
    return total
