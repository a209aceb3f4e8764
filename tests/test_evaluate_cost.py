"""The counted activation cost: a pure function of the formula, following what codegen emits."""

from __future__ import annotations

import json

import pytest

from afsearch.candidate import Candidate
from afsearch.evaluate import activation_cost
from afsearch.evaluate.cost import BATCHNORM_RELU_GRAPH, formula_cost, layer_cost
from afsearch.expr import PRIMITIVES, parse
from afsearch.layers.evonorm import EVONORM_B0_GRAPH


def cost(formula: str) -> float:
    return activation_cost(Candidate.activation(formula))


def test_relu_is_the_unit_and_costs_add_up() -> None:
    w = {name: p.cost for name, p in PRIMITIVES.items()}
    assert cost("relu(x)") == 1.0
    assert cost("x * sigmoid(x)") == pytest.approx((w["mul"] + w["sigmoid"]) / w["relu"])
    assert cost("sin(x) + x") == cost("x + sin(x)")  # the same operations
    assert cost("asinh(x) * asinh(x) * x") == pytest.approx(cost("x * asinh(x) * asinh(x)"))


def test_count_follows_codegen() -> None:
    w = {name: p.cost for name, p in PRIMITIVES.items()}
    # a repeated subexpression is computed once, a constant subtree is folded away
    assert formula_cost(parse("tanh(x) * tanh(x)")) == pytest.approx(w["tanh"] + w["mul"])
    assert formula_cost(parse("sin(2 + 3) * x")) == pytest.approx(w["mul"])
    # max against a constant is a clamp, division by a constant a scalar multiplication
    assert formula_cost(parse("max(x, 0.5)")) == pytest.approx(w["relu"])
    assert formula_cost(parse("x / 2")) == pytest.approx(w["mul"])
    assert formula_cost(parse("x / sin(x)")) == pytest.approx(w["div"] + w["sin"])
    assert formula_cost(parse("sin(x)"), {**w, "sin": 100.0}) == 100.0


def test_same_formula_same_cost_every_time() -> None:
    formula = "exp(-beta * abs(asinh(x) - erf(x))) * x"
    assert len({cost(formula) for _ in range(5)}) == 1


def test_layer_graphs_relative_to_batchnorm_relu() -> None:
    assert activation_cost(Candidate.layer(json.dumps(BATCHNORM_RELU_GRAPH))) == pytest.approx(1.0)
    b0 = activation_cost(Candidate.layer(json.dumps(EVONORM_B0_GRAPH)))
    assert b0 == pytest.approx(layer_cost(EVONORM_B0_GRAPH) / layer_cost(BATCHNORM_RELU_GRAPH))
    assert b0 > 1.0  # two statistics, a division and a max
