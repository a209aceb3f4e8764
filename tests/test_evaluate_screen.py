import pytest

from afsearch.evaluate.screen import screen
from afsearch.expr import parse


@pytest.mark.parametrize(
    "formula, reason",
    [
        ("3", "constant"),
        ("beta", "constant"),
        ("x", "linear"),
        ("2*x + 1", "linear"),
        ("max(x,0) + min(x,0)", "linear"),
        ("exp(exp(x))", "exploding"),
        ("1e-3 * tanh(x)", "vanishing"),
        ("200 * sin(x)", "exploding"),
        ("exp(x)^3 * exp(x)^3", "non-finite"),
    ],
)
def test_rejects_with_reason_and_statistics(formula, reason):
    verdict = screen(parse(formula))
    assert not verdict.passed
    assert reason in verdict.reason
    assert verdict.stats  # the measured statistics travel with the verdict


@pytest.mark.parametrize("formula", ["relu(x)", "x*sigmoid(x)", "tanh(x)", "cos(x) - x", "max(x, sigmoid(x))", "sigmoid(x)"])
def test_passes_reasonable_activations(formula):
    verdict = screen(parse(formula))
    assert verdict.passed, verdict.reason
    assert 0 < verdict.stats["gain"] < 100
