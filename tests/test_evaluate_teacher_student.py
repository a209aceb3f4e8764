"""teacher-student: the planted activation beats ReLU, GELU and a wrong formula."""

from __future__ import annotations

import pytest

from afsearch.evaluate import evaluate, get_task

# planted formula -> a plausible but wrong formula
CASES = {"sin(x)": "x * sigmoid(x)", "tanh(x)": "sin(x)", "abs(x)": "tanh(x)"}


@pytest.mark.slow
@pytest.mark.parametrize("planted, wrong", CASES.items())
def test_planted_formula_scores_best(planted: str, wrong: str) -> None:
    task = get_task("teacher-student", {"planted": planted})

    def score(formula: str) -> float:
        r = evaluate(formula, task, seeds=2, ladder=False, measure_cost=False)
        assert r.status == "done" and 0 <= r.mean_accuracy <= 1
        return r.mean_accuracy

    mine = score(planted)
    others = {f: score(f) for f in ("relu(x)", "0.5 * x * (1 + erf(x / 1.4142135623730951))", wrong)}
    assert all(mine > s for s in others.values()), (mine, others)
