"""Packed training (stacked MLPs, grouped-convolution CNNs) equals one-by-one training (up to
float summation order), applies each member's own gate, and cuts rejected members out of the
pack."""

import dataclasses
import random

import pytest
import torch
from torch import nn

from afsearch.compile import compile_activation
from afsearch.evaluate import evaluate, evaluate_many, models, serve
from afsearch.evaluate.packed import CONV_PACK, MLP_PACK, default_pack, packable, train_packed
from afsearch.evaluate.packed_conv import ConvPack
from afsearch.evaluate.tasks import get_task
from afsearch.evaluate.trainer import train
from afsearch.spaces import load_space

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


def test_mlps_and_plain_cnns_are_packable_and_nothing_else():
    assert default_pack(get_task("breast-cancer-mlp").model(nn.ReLU)) == MLP_PACK
    assert default_pack(get_task("digits-cnn").model(nn.ReLU)) == CONV_PACK
    assert default_pack(models.cnn1d(40, 10, nn.GELU)) == CONV_PACK
    assert not packable(models.resnet20(nn.ReLU))  # residual blocks: one by one
    with_dropout = models.cnn1d(40, 10, nn.ReLU)
    with_dropout.insert(3, nn.Dropout(0.1))  # random draws would differ from one-by-one training
    assert not packable(with_dropout)
    grouped = models.cnn1d(40, 10, nn.ReLU)
    grouped[1] = nn.Conv1d(1, 32, 5, stride=2, padding=2, bias=False, groups=1, padding_mode="circular")
    assert not packable(grouped)


@pytest.mark.parametrize("name", ["mnist1d-mlp", "mnist1d-cnn", "digits-cnn", "breast-cancer-mlp",
                                  "teacher-student"])
def test_each_task_states_the_pack_its_model_gets(name):
    """TaskSpec.pack says without building data what default_pack of the model would say."""
    task = get_task(name)
    assert task.spec.pack == default_pack(task.model(nn.ReLU))


CNN_FORMULAS = ["x * sigmoid(beta * x)", "tanh(x)", "relu(x)", "x * asinh(x)^2"]


@pytest.mark.parametrize("task", ["mnist1d-cnn", "digits-cnn"])
def test_cnn_packs_train_like_one_by_one(task):
    """Grouped convolutions, per-member BatchNorm statistics, each member's own activation
    (a trainable constant included): the same numbers as training each model alone."""
    packed = evaluate_many(CNN_FORMULAS, task, budget=40, seed=2, ladder=False, measure_cost=False)
    single = [evaluate(f, task, budget=40, seed=2, ladder=False, measure_cost=False, pack=False)
              for f in CNN_FORMULAS]
    for p, s in zip(packed, single, strict=True):
        assert p.status == s.status == "done"
        assert p.mean_loss == pytest.approx(s.mean_loss, rel=1e-4)
        assert p.per_seed[0].test_accuracy == pytest.approx(s.per_seed[0].test_accuracy, abs=2e-3)


def test_seeds_of_one_cnn_candidate_share_one_activation_call():
    kw = dict(budget=30, seeds=3, measure_cost=False, ladder=False)
    packed = evaluate("x * tanh(x) + sin(x)", "mnist1d-cnn", pack=True, **kw)
    alone = evaluate("x * tanh(x) + sin(x)", "mnist1d-cnn", pack=False, **kw)
    for p, a in zip(packed.per_seed, alone.per_seed, strict=True):
        assert p.val_loss == pytest.approx(a.val_loss, rel=1e-4)


def test_a_member_cut_out_of_a_cnn_pack_leaves_the_others_unchanged():
    """A member stopped at step 10 leaves the pack with its BatchNorm statistics and optimizer
    state; the survivors then train on exactly as they would alone."""
    task = get_task("digits-cnn")
    recipe = dataclasses.replace(task.recipe, steps=30)
    factories = [compile_activation(f).new_module for f in CNN_FORMULAS[:3]]
    builds = [lambda f=f: task.model(f) for f in factories]

    def stop_at_10(step: int, acc: float, loss: float) -> bool:
        return step < 10

    reports = [None, stop_at_10, None]
    packed = train_packed(builds, task.data, recipe, [5, 5, 5], reports, eval_steps=[10])
    alone = [train(b, task.data, recipe, 5, r, [10]) for b, r in zip(builds, reports, strict=True)]
    assert [r.steps for r in packed] == [r.steps for r in alone] == [30, 10, 30]
    assert packed[1].stopped_early and not packed[0].stopped_early
    for p, a in zip(packed, alone, strict=True):
        assert p.val_loss == pytest.approx(a.val_loss, rel=1e-4)
        assert p.test_loss == pytest.approx(a.test_loss, rel=1e-4)


def test_evonorm_layer_candidates_pack_with_their_own_running_statistics():
    space = load_space("evonorm")
    layers = [space.to_candidate(space.sample(random.Random(i))) for i in range(3)]
    packed = evaluate_many(layers, "digits-cnn", budget=30, seed=1, ladder=False, measure_cost=False)
    single = [evaluate(c, "digits-cnn", budget=30, seed=1, ladder=False, measure_cost=False) for c in layers]
    for p, s in zip(packed, single, strict=True):
        assert p.status == s.status
        if s.status == "done":
            assert p.mean_loss == pytest.approx(s.mean_loss, rel=1e-4)


def test_members_of_different_architectures_are_refused():
    with pytest.raises(ValueError, match="one architecture"):
        ConvPack([models.cnn1d(40, 10, nn.ReLU), models.cnn1d(40, 10, nn.ReLU, channels=8)], torch.device("cpu"))


def test_seeds_of_one_candidate_train_as_a_pack_with_the_same_scores():
    kw = dict(budget=60, seeds=3, measure_cost=False)
    packed = evaluate("x * tanh(x) + sin(x)", "breast-cancer-mlp", pack=True, **kw)
    alone = evaluate("x * tanh(x) + sin(x)", "breast-cancer-mlp", pack=False, **kw)
    assert packed.status == alone.status == "done"
    assert [s.seed for s in packed.per_seed] == [s.seed for s in alone.per_seed] == [0, 1, 2]
    for p, a in zip(packed.per_seed, alone.per_seed, strict=True):
        assert p.val_loss == pytest.approx(a.val_loss, rel=1e-4)
        assert p.test_accuracy == pytest.approx(a.test_accuracy, abs=0.02)
