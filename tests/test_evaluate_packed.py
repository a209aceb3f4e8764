"""Packed training equals one-by-one training (up to float summation order), applies each
member's own gate, and cuts rejected members out of the pack."""

import pytest

from afsearch.evaluate import evaluate, evaluate_many, serve
from afsearch.evaluate.packed import packable
from afsearch.evaluate.tasks import get_task

FORMULAS = ["x * sigmoid(beta * x)", "tanh(x)", "cos(x) - x", "gelu(x)", "x"]


def test_packed_scores_match_one_by_one():
    packed = evaluate_many(FORMULAS, "breast-cancer-mlp", budget=120, seed=3, ladder=False, measure_cost=False)
    single = [evaluate(f, "breast-cancer-mlp", budget=120, seed=3, ladder=False, measure_cost=False) for f in FORMULAS]
    for p, s in zip(packed, single, strict=True):
        assert p.status == s.status == "done"
        assert p.mean_accuracy == pytest.approx(s.mean_accuracy, abs=0.02)
        assert p.mean_loss == pytest.approx(s.mean_loss, rel=0.05)


def test_frozen_layers_stay_frozen_when_packed():
    # the readout student trains only its last layer; packed training must respect that
    task = get_task("teacher-student", {"student": "readout", "n_train": 500})
    formulas = ["sin(x)", "x * sigmoid(x)", "tanh(x)"]
    packed = evaluate_many(formulas, task, budget=150, seed=1, ladder=False, measure_cost=False)
    single = [evaluate(f, task, budget=150, seed=1, ladder=False, measure_cost=False) for f in formulas]
    for p, s in zip(packed, single, strict=True):
        assert p.status == s.status == "done"
        assert p.mean_accuracy == pytest.approx(s.mean_accuracy, abs=1e-4)


def test_ladder_applies_per_member():
    results = evaluate_many(["relu(x)", "x", "3", "0.001 * sin(x) + 0.5"], "mnist1d-mlp", budget=100, seeds=2)
    assert results[0].status == "done" and len(results[0].per_seed) == 2
    assert [r.stage for r in results[1:]] == ["screen", "screen", "screen"]


def test_quality_gate_cuts_members_out_of_the_pack():
    # a very weak candidate is rejected at the gate while the others train on
    results = evaluate_many(["relu(x)", "sigmoid(x) * 0.01 + 0.3 * sin(20 * x)", "tanh(x)"], "mnist1d-mlp",
                            budget=200, seed=0, measure_cost=False)
    assert results[0].ok and results[2].ok
    assert results[1].status in ("rejected", "done")
    if results[1].status == "rejected":
        assert results[1].stage in ("quality", "stability", "screen")
        assert results[1].steps <= results[0].steps


def test_payload_with_candidates():
    out = serve({"candidates": [{"kind": "activation", "spec": "relu(x)"},
                                           {"kind": "activation", "spec": "tanh(x)"}],
                            "task": "breast-cancer-mlp", "budget": 30, "seed": [0], "seeds": 1, "ladder": False})
    assert [r["status"] for r in out["results"]] == ["done", "done"]


def test_only_mlps_are_packable():
    assert packable(get_task("breast-cancer-mlp").model(lambda: __import__("torch").nn.ReLU()))
    assert not packable(get_task("digits-cnn").model(lambda: __import__("torch").nn.ReLU()))


def test_seeds_of_one_candidate_train_as_a_pack_with_the_same_scores():
    kw = dict(budget=60, seeds=3, measure_cost=False)
    packed = evaluate("x * tanh(x) + sin(x)", "breast-cancer-mlp", pack=True, **kw)
    alone = evaluate("x * tanh(x) + sin(x)", "breast-cancer-mlp", pack=False, **kw)
    assert packed.status == alone.status == "done"
    assert [s.seed for s in packed.per_seed] == [s.seed for s in alone.per_seed] == [0, 1, 2]
    for p, a in zip(packed.per_seed, alone.per_seed, strict=True):
        assert p.val_loss == pytest.approx(a.val_loss, rel=1e-4)
        assert p.test_accuracy == pytest.approx(a.test_accuracy, abs=0.02)
