"""evaluate / evaluate_multi / serve / baselines / EvalResult JSON / CLI."""

from __future__ import annotations

import json
import math

import pytest

from afsearch.candidate import Candidate
from afsearch.cli import main
from afsearch.errors import TaskError
from afsearch.evaluate import (
    EvalResult,
    activation_cost,
    baseline_results,
    evaluate,
    evaluate_multi,
    get_task,
    serve,
)


def test_same_seed_same_score_twice() -> None:
    a = evaluate("x * tanh(x) + x", budget=150, seeds=2, measure_cost=False)
    b = evaluate("x * tanh(x) + x", budget=150, seeds=2, measure_cost=False)
    assert a.status == "done" and a.seeds == [0, 1]
    assert [s.val_accuracy for s in a.per_seed] == [s.val_accuracy for s in b.per_seed]
    assert (a.mean_accuracy, a.mean_loss, a.test_accuracy) == (b.mean_accuracy, b.mean_loss,
                                                               b.test_accuracy)
    assert 0 < a.mean_accuracy <= 1 and a.std_accuracy >= 0


def test_result_fields_and_json_round_trip() -> None:
    r = evaluate("relu(x)", get_task("breast-cancer-mlp"), budget=60, seeds=2)
    assert r.params == 30 * 32 + 32 + 32 * 32 + 32 + 32 * 2 + 2
    assert r.e_param == pytest.approx(r.mean_accuracy / math.log10(r.params))
    assert r.activation_cost is not None and r.activation_cost > 0
    assert r.steps == sum(s.steps for s in r.per_seed) + r.stages[1].steps
    text = json.dumps(r.to_json())
    back = EvalResult.from_json(json.loads(text))
    assert back == r
    rejected = evaluate("2 * x", budget=60)
    assert json.loads(json.dumps(rejected.to_json()))["mean_loss"] == "inf"
    assert EvalResult.from_json(rejected.to_json()).mean_loss == math.inf
    assert rejected.score == -math.inf


def test_bad_budget_and_seeds_raise_task_error() -> None:
    with pytest.raises(TaskError, match="budget"):
        evaluate("relu(x)", budget=0)
    with pytest.raises(TaskError, match="seeds"):
        evaluate("relu(x)", seeds=0)
    with pytest.raises(TaskError, match="unknown task"):
        evaluate("relu(x)", "mnist2d")


def test_baselines_fill_delta_and_are_cached() -> None:
    task = get_task("breast-cancer-mlp")
    base = baseline_results(task, budget=60, seeds=1)
    assert set(base) == {"relu", "gelu", "silu", "tanh", "elu"}
    assert all(r.status == "done" for r in base.values())
    assert baseline_results(task, budget=60, seeds=1)["relu"] is base["relu"]
    r = evaluate("x * cos(x)", task, budget=60, measure_cost=False)
    best = max(b.mean_accuracy for b in base.values())
    assert r.delta_to_best_baseline == pytest.approx(r.mean_accuracy - best)
    assert base["relu"].delta_to_best_baseline is not None


def test_multi_task_and_payload() -> None:
    multi = evaluate_multi("tanh(x)", ["breast-cancer-mlp", ("teacher-student", {"n_train": 500})],
                           budget=40, measure_cost=False)
    assert set(multi) == {"breast-cancer-mlp", "teacher-student"}
    assert multi["teacher-student"].task_config["n_train"] == 500
    payload = {"candidate": Candidate.activation("tanh(x)").to_json(),
               "task": "breast-cancer-mlp", "budget": 40, "seed": 0, "seeds": 1,
               "ladder": {"quality_ratio": 0.5}, "threads": 1, "measure_cost": False}
    out = serve(json.loads(json.dumps(payload)))
    assert out["status"] == "done"
    assert out["mean_accuracy"] == multi["breast-cancer-mlp"].mean_accuracy
    assert serve({**payload, "budget": -1})["status"] == "error"
    assert "unknown payload key" in serve({**payload, "gpu": 1})["error"]


def test_activation_cost_is_a_finite_positive_ratio() -> None:
    # no timing assertions in unit tests: the machine is shared; scripts/ measure speed
    for formula in ("relu(x)", "sin(x) * exp(-x*x) + tanh(x)"):
        cost = activation_cost(Candidate.activation(formula))
        assert 0 < cost < float("inf")


def test_cli_json_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["eval", "--ref", "relu", "--task", "breast-cancer-mlp", "--seeds", "2",
               "--budget", "30", "--json"])
    assert rc == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= last["mean_accuracy"] <= 1 and last["std_accuracy"] >= 0
    assert [s["seed"] for s in last["per_seed"]] == [0, 1]
    assert all(0 <= s["val_accuracy"] <= 1 for s in last["per_seed"])


@pytest.mark.parametrize("argv, message", [
    (["--task", "nope"], "unknown task 'nope'"),
    (["--budget", "0"], "budget"),
    (["--seeds", "0"], "seeds"),
    (["--task", "cifar10-resnet", "--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["--task", "cifar10-resnet"], "needs data_dir"),
])
def test_cli_user_errors_exit_2(argv: list[str], message: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--expr", "x * sigmoid(x)", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_corrupt_cifar_exit_2(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (tmp_path / name).write_bytes(b"\x80\x04garbage")
    assert main(["eval", "--ref", "relu", "--task", "cifar10-resnet",
                 "--data-dir", str(tmp_path)]) == 2
    assert "data_batch_1 is corrupt" in capsys.readouterr().err
