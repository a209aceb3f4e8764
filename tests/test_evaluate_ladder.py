"""The rejection ladder: cheap stages reject bad candidates before any training."""

from __future__ import annotations

import pytest

from afsearch.candidate import Candidate
from afsearch.evaluate import LadderConfig, evaluate, get_task
from afsearch.evaluate._formula import static_screen
from afsearch.evaluate.ladder import DEFAULT_GATE, QualityGate, quality_threshold


@pytest.mark.parametrize("formula", ["x^1000 * 0",  # inf * 0 = NaN
                                     "sin(x) * 0 + 1",  # constant
                                     "3 * x - 2"])  # linear
def test_screen_rejects_without_training(formula: str) -> None:
    r = evaluate(formula, budget=300)
    assert r.status == "rejected" and r.stage == "screen", (r.stage, r.reason)
    assert r.steps == 0 and r.per_seed == [] and r.reason
    assert [s.name for s in r.stages] == ["screen"]


def test_stability_burst_rejects_exploding_formula() -> None:
    # tame on N(0,1) inputs, so the static screen lets it through, but its outputs blow up as
    # training spreads the pre-activations (1,200 steps without the ladder: 16 % accuracy)
    formula = "exp(2 * x)"
    assert static_screen(formula).passed  # the static screen lets it through...
    r = evaluate(formula, budget=300)
    assert (r.status, r.stage) == ("rejected", "stability"), r.reason
    assert r.steps == LadderConfig().burst_steps(300) < 300  # ...a short burst stops it
    stats = r.stages[-1].stats
    assert stats["val_loss"] > LadderConfig().stability_bound * stats["constant_loss"]


def test_stability_burst_keeps_what_trains() -> None:
    # gradient ascent at initialisation rejected it (gradient norm 1.07e+08 > 1e+08), yet it
    # trains to ~67 % on mnist1d-mlp where ReLU reaches ~60 % (issue 15, scripts/bench_proxy.py)
    r = evaluate("max(softplus(x) + x^3, x^3)", budget=300, measure_cost=False)
    stability = next(s for s in r.stages if s.name == "stability")
    assert stability.passed and stability.steps == LadderConfig().burst_steps(300), stability


def test_good_candidates_pass_every_stage() -> None:
    r = evaluate("x * sigmoid(x)", budget=200)
    assert r.status == "done"
    assert [s.name for s in r.stages] == ["screen", "stability", "quality"]
    assert all(s.passed for s in r.stages)
    burst = r.stages[1].stats
    assert 0 < burst["val_loss"] < LadderConfig().stability_bound * burst["constant_loss"]


def test_quality_gate_relative_to_relu_and_chance() -> None:
    cfg = LadderConfig(quality_ratio=0.5, quality_margin=0.05)
    assert quality_threshold(cfg, 0.1, 0.5) == pytest.approx(0.3)
    assert quality_threshold(cfg, 0.1, None) == pytest.approx(0.15)
    gate = QualityGate(step=10, threshold=0.3, baseline=0.5)
    assert gate(5, 0.0, 1.0)  # not the gate step
    assert not gate(10, 0.2, 1.0)
    assert gate.record and "0.200 < 0.300" in gate.record.reason


def test_quality_gate_rejects_weak_candidate_in_evaluate() -> None:
    r = evaluate("sigmoid(x)", budget=300, ladder={"quality_ratio": 0.9, "quality_step": 150,
                                                   "quality_early_step": 0})  # one checkpoint
    assert (r.status, r.stage) == ("rejected", "quality"), r.reason
    q = r.stages[-1]
    assert q.steps == 150 and q.stats["relu_accuracy"] > q.stats["val_accuracy"]
    none = evaluate("sigmoid(x)", budget=300, ladder={"quality_baseline": False},
                    measure_cost=False)
    assert none.status == "done"  # chance + margin only


def test_quality_gate_checks_an_earlier_step_first() -> None:
    cfg = LadderConfig(quality_step=150, quality_early_step=0.05, quality_early_ratio=0.9)
    assert cfg.gate_checks(300) == [(15, 0.9), (150, DEFAULT_GATE.ratio)]
    assert LadderConfig(quality_early_step=0).gate_checks(300) == [(30, DEFAULT_GATE.ratio)]
    gate = QualityGate(step=10, threshold=0.3, baseline=0.5, earlier=[(4, 0.2, 0.3)])
    assert gate.steps == [4, 10]
    assert gate(4, 0.25, 1.0) and gate.record is None  # passed the early checkpoint: go on
    assert not gate(10, 0.29, 1.0) and gate.record.steps == 10
    early = QualityGate(step=10, threshold=0.3, baseline=0.5, earlier=[(4, 0.2, 0.3)])
    assert not early(4, 0.1, 1.0) and early.record.stats["threshold"] == 0.2
    r = evaluate("cos(max(x, beta))", budget=300, ladder=cfg, measure_cost=False)  # barely learns
    assert (r.status, r.stage) == ("rejected", "quality") and r.stages[-1].steps == 15, r.reason


def test_each_task_gates_at_its_calibrated_checkpoints() -> None:
    cnn = get_task("mnist1d-cnn").spec.gate
    assert get_task("mnist1d-mlp").spec.gate == DEFAULT_GATE != cnn
    assert LadderConfig().gate_checks(1200) == [(24, 0.5), (120, 0.5)]
    assert LadderConfig().for_task(cnn).gate_checks(600) == [(45, 0.05)]
    # what a config sets wins over the task's calibration
    mine = LadderConfig(quality_ratio=0.9, quality_step=0.25, quality_early_step=0.05).for_task(cnn)
    assert mine.gate_checks(600) == [(30, 0.05), (150, 0.9)]
    r = evaluate("x * sigmoid(x)", "mnist1d-cnn", budget=200, measure_cost=False)
    gate = next(s for s in r.stages if s.name == "quality")
    # passed: the record is of the only checkpoint, 7.5% of this run (the default's last: a tenth)
    assert gate.passed and gate.stats["step"] == 15, gate


def test_failures_are_results() -> None:
    r = evaluate(Candidate.layer('{"not": "a graph"}'), "digits-cnn", budget=5)
    assert r.status == "failed" and r.reason and r.error and "Traceback" in r.error


def test_unknown_ladder_option_is_a_config_error() -> None:
    from afsearch.errors import ConfigError

    with pytest.raises(ConfigError, match="quality_raito"):
        evaluate("relu(x)", budget=10, ladder={"quality_raito": 0.5})


def test_layer_candidate_replaces_bn_act_and_skips_screen() -> None:
    import json

    from afsearch.spaces.evonorm import EVONORM_S0_GRAPH

    cand = Candidate.layer(json.dumps(EVONORM_S0_GRAPH))
    r = evaluate(cand, "digits-cnn", budget=60)
    assert r.status == "done", r.reason
    assert [s.name for s in r.stages] == ["stability", "quality"]
    assert r.activation_cost is not None and 0 < r.mean_accuracy <= 1
