"""User tasks through the API: `afsearch.CustomTask` checks its input eagerly, patches or
passes activations, and a loss-scored task ranks lowest loss first everywhere a user looks
(leaderboard, validation, plots, JSON)."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import afsearch
from afsearch.cli import main as cli_main
from afsearch.errors import TaskError
from afsearch.evaluate import evaluate
from afsearch.evaluate.custom import CustomTask, resolve_task
from afsearch.evaluate.ladder import LadderConfig, QualityGate, quality_threshold
from afsearch.evaluate.metric import ACCURACY, LOSS, get_metric


def _xy(n: int = 64, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=gen)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long() * (classes - 2)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def _task(**kw):  # noqa: ANN202
    args = {"train": _xy(64), "val": _xy(32, seed=1), "build": _mlp, "steps": 20, "batch_size": 16}
    args.update(kw)
    return CustomTask(**args)


# ---------------------------------------------------------------- the metric
def test_metric_direction_helpers():
    assert LOSS.better(0.1, 0.2) and not LOSS.better(0.2, 0.1)
    assert ACCURACY.better(0.9, 0.8) and not ACCURACY.better(0.8, 0.9)
    for m in (ACCURACY, LOSS):
        assert m.better(1.0, math.nan) and m.better(1.0, math.inf if m is LOSS else -math.inf)
        assert not m.better(math.nan, 1.0) and not m.better(None, 1.0)
        assert sorted([math.nan, 2.0, 1.0, None], key=m.sort_key)[-2:] in ([math.nan, None], [None, math.nan])
    assert LOSS.delta(0.3, 0.5) == pytest.approx(0.2)  # positive = better than the baseline
    assert ACCURACY.delta(0.7, 0.5) == pytest.approx(0.2)
    assert LOSS.best([0.4, math.inf, 0.2]) == 0.2 and ACCURACY.best([0.4, math.nan, 0.2]) == 0.4
    assert LOSS.worst == math.inf and ACCURACY.worst == -math.inf
    with pytest.raises(TaskError, match="unknown metric 'mse'; allowed: accuracy, loss"):
        get_metric("mse")


def test_quality_gate_follows_the_loss_direction():
    cfg = LadderConfig()
    # chance loss 2.0, ReLU 1.0 at the gate: halfway is 1.5, and a loss of 1.4 passes, 1.6 fails
    threshold = quality_threshold(cfg, 2.0, 1.0, LOSS)
    assert threshold == pytest.approx(1.5)
    assert quality_threshold(cfg, 2.0, 3.0, LOSS) == pytest.approx(3.0)  # never demand more than ReLU
    assert quality_threshold(cfg, 2.0, None, LOSS) == pytest.approx(1.9)
    passing, failing = QualityGate(5, threshold, 1.0, LOSS), QualityGate(5, threshold, 1.0, LOSS)
    assert passing(5, 0.0, 1.4) and passing.record.passed
    assert not failing(5, 0.99, 1.6) and "validation loss 1.600 > 1.500" in failing.record.reason
    assert not QualityGate(5, threshold, 1.0, LOSS)(5, 0.5, math.nan)


# ---------------------------------------------------------------- CustomTask
@pytest.mark.parametrize("kwargs, fragment", [
    ({"train": (torch.zeros(10, 5), torch.zeros(9, dtype=torch.long))}, "train: x has 10 rows but y has 9"),
    ({"val": "not data"}, "val: expected (x, y) tensors or a dataset"),
    ({"metric": "f1"}, "unknown metric 'f1'; allowed: accuracy, loss"),
    ({"build": lambda: nn.Sequential(nn.Linear(5, 3))}, "no activation module to replace"),
    ({"build": lambda a, b: _mlp()}, "got 2 required arguments"),
    ({"build": "mlp"}, "build must be callable"),
    ({"build": lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU())}, "model fails on a batch"),
    ({"build": lambda: nn.Sequential(nn.Linear(5, 2), nn.ReLU())}, "classification needs (2, 3) logits"),
    ({"build": lambda: 3}, "build returned int, expected an nn.Module"),
    ({"kind": "ranking"}, "kind must be one of classification, regression"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of adamw, sgd"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"lr": -1.0}, "lr must be a non-negative number"),
    ({"test": (torch.zeros(4, 6), torch.zeros(4, dtype=torch.long))}, "inputs of train/val/test differ in shape"),
])
def test_custom_task_refuses_bad_input_in_one_line(kwargs, fragment):
    with pytest.raises(TaskError) as info:
        _task(**kwargs)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_custom_task_data_recipe_and_both_build_styles():
    class Rows(torch.utils.data.Dataset):
        def __init__(self, n: int) -> None:
            self.x, self.y = _xy(n)

        def __len__(self) -> int:
            return len(self.y)

        def __getitem__(self, i: int):  # noqa: ANN204
            return self.x[i].numpy(), int(self.y[i])

    task = afsearch.CustomTask(train=Rows(64), val=Rows(16), build=_mlp, steps=30, lr=1e-2, warmup=3,
                               optimizer="sgd", weight_decay=0.0)
    assert task.data.train.x.shape == (64, 5) and task.data.train.y.dtype == torch.long
    assert torch.equal(task.data.test.x, task.data.val.x)  # test defaults to val
    assert (task.recipe.steps, task.recipe.lr, task.recipe.warmup, task.recipe.optimizer) == (30, 1e-2, 3, "sgd")
    assert task.metric is ACCURACY and task.chance == pytest.approx(1 / 3)
    # build(): nn.ReLU modules are replaced by the candidate
    patched = task.model(lambda: nn.Tanh())
    assert [type(m) for m in patched] == [nn.Linear, nn.Tanh, nn.Linear]
    # build(act): the factory is passed through
    seen = []
    task2 = _task(build=lambda act: nn.Sequential(nn.Linear(5, 8), seen.append(1) or act(), nn.Linear(8, 3)))
    assert isinstance(task2.model(nn.SiLU)[1], nn.SiLU) and seen
    # float targets are regression; the loss metric's chance is the targets' variance
    x, _ = _xy(64)
    reg = CustomTask(train=(x, x[:, 0]), val=(x[:32], x[:32, 0]), metric="loss",
                     build=lambda: nn.Sequential(nn.Linear(5, 8), nn.GELU(), nn.Linear(8, 1)))
    assert reg.data.regression and reg.data.train.y.shape == (64, 1)
    assert reg.chance == pytest.approx(float(x[:32, 0].var(unbiased=False)))
    r = evaluate("x * tanh(x)", reg, budget=20, ladder=False, measure_cost=False)
    assert r.ok and r.metric == "loss" and r.value == r.mean_loss and r.score == -r.mean_loss


def test_different_activations_train_differently_on_a_patched_model():
    task = _task(steps=40)
    a = evaluate("x", task, ladder=False, measure_cost=False)
    b = evaluate("max(x, 0)", task, ladder=False, measure_cost=False)
    assert a.ok and b.ok and a.mean_loss != b.mean_loss


def test_a_user_model_failing_mid_training_is_a_failed_result():
    class Flaky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.calls = _mlp(), 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training:
                self.calls += 1
                if self.calls > 8:  # after the pre-training probes, inside the training loop
                    raise RuntimeError("boom at step 8")
            return self.net(x)

    result = evaluate("x * sigmoid(x)", _task(build=Flaky, steps=30), ladder=False, measure_cost=False)
    assert result.status == "failed" and result.stage == "train"
    assert result.reason == "RuntimeError: boom at step 8"
    assert "Traceback" in result.error and "boom at step 8" in result.error


# ---------------------------------------------------------------- references
def _write(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """
    import torch
    from torch import nn
    import afsearch

    def make_task(width=8, steps=20):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(96, 5, generator=gen)
        y = (x[:, 0] > 0).long()
        return afsearch.CustomTask(train=(x[:64], y[:64]), val=(x[64:], y[64:]), steps=steps,
                                   build=lambda: nn.Sequential(nn.Linear(5, width), nn.ReLU(), nn.Linear(width, 2)))

    TASK = make_task()
    NOT_A_TASK = 42
    def returns_wrong():
        return "a string"
    def raises():
        raise ValueError("no data here")
"""


def test_resolve_task_by_file_and_module(tmp_path, monkeypatch):
    _write(tmp_path / "mytask.py", GOOD)
    task = resolve_task(str(tmp_path / "mytask.py") + ":make_task", {"width": 4})
    assert task.name == f"{tmp_path / 'mytask.py'}:make_task" and task.model(nn.ReLU)[0].out_features == 4
    assert resolve_task(str(tmp_path / "mytask.py") + ":make_task", {"width": 4}) is task  # cached
    assert resolve_task(str(tmp_path / "mytask.py") + ":TASK").recipe.steps == 20
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    _write(pkg / "tasks.py", GOOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_task("userpkg.tasks:make_task").name == "userpkg.tasks:make_task"


@pytest.mark.parametrize("ref, options, fragment", [
    ("{dir}/missing.py:make_task", None, "task file {dir}/missing.py does not exist"),
    ("{dir}/mytask.py:nope", None, "has no attribute 'nope'"),
    ("{dir}/mytask.py:raises", None, "raises() raised ValueError: no data here"),
    ("{dir}/mytask.py:returns_wrong", None, "returns_wrong() returned str, expected an afsearch.CustomTask"),
    ("{dir}/mytask.py:NOT_A_TASK", None, "NOT_A_TASK is a int, expected"),
    ("{dir}/mytask.py:TASK", {"width": 3}, "is a task object, not a callable"),
    ("{dir}/mytask.py:make_task", {"depth": 3}, "make_task(depth=3) raised TypeError"),
    ("{dir}/broken.py:make_task", None, "importing task file {dir}/broken.py failed: NameError"),
    ("no_such_module_xyz:make_task", None, "task module no_such_module_xyz is not importable"),
    ("{dir}/mytask.py:", None, "must be path/to/file.py:NAME or package.module:NAME"),
])
def test_bad_task_references_are_one_line_task_errors(tmp_path, ref, options, fragment):
    _write(tmp_path / "mytask.py", GOOD)
    _write(tmp_path / "broken.py", "undefined_name + 1\n")
    with pytest.raises(TaskError) as info:
        resolve_task(ref.format(dir=tmp_path), options)
    assert fragment.format(dir=tmp_path) in str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- loss direction end to end
LOSS_TASK = """
    import torch
    from torch import nn
    import afsearch

    def make_task():
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(160, 4, generator=gen)
        y = torch.sin(2 * x[:, :1]) + 0.5 * x[:, 1:2] ** 2
        def build(act):
            return nn.Sequential(nn.Linear(4, 16), act(), nn.Linear(16, 1))
        return afsearch.CustomTask(train=(x[:96], y[:96]), val=(x[96:128], y[96:128]), test=(x[128:], y[128:]),
                                   build=build, metric="loss", steps=40, batch_size=32, lr=1e-2)
"""


def test_a_loss_task_ranks_lowest_loss_first_everywhere(tmp_path, capsys):
    from afsearch.report.plot import progress
    from afsearch.report.runs import leaderboard_rows
    from afsearch.search.engine import Search, SearchConfig
    from afsearch.search.validate import validate_run
    from afsearch.store import RunStore

    ref = str(_write(tmp_path / "losstask.py", LOSS_TASK)) + ":make_task"
    config = SearchConfig(space="swish", task=ref, budget=6, backend="local", seed=1, name="loss",
                          baselines=["relu", "tanh", "silu"], validate_top=3, validate_seeds=2)
    search = Search.create(config, tmp_path / "runs")
    summary = search.run()
    search.close()
    assert summary.state == "finished" and summary.metric == "loss"
    with RunStore.open(tmp_path / "runs" / "loss", "ro") as store:
        rows = leaderboard_rows(store, top=100)
        means = [r["mean"] for r in rows]
        assert len(means) >= 5 and means == sorted(means)  # lowest loss first
        assert all(r["metric"] == "loss" and r["mean"] > 0 for r in rows)  # raw, never negated
        best_base = min(r["mean"] for r in rows if r["origin"] == "baseline")
        for r in rows:
            assert r["delta_to_best_baseline"] == pytest.approx(best_base - r["mean"])
        assert summary.best.mean == min(r["mean"] for r in rows if r["origin"] != "baseline")
        assert summary.best_baseline == pytest.approx(best_base)
        curve = [b for _, b in progress(store).best_curve if math.isfinite(b)]
        assert curve and curve == sorted(curve, reverse=True)  # the best so far only goes down
        assert "validation loss (lower is better)" in progress(store).ylabel

    with RunStore.open(tmp_path / "runs" / "loss", "rw") as store:
        report = validate_run(store, SearchConfig.from_dict(store.config))
    vmeans = [r["mean"] for r in report["rows"] if r["mean"] is not None]
    assert vmeans == sorted(vmeans) and report["metric"] == "loss" and "lower is better" in report["test"]
    assert report["best_baseline"]["mean"] == min(r["mean"] for r in report["rows"] if r["baseline"])
    for row in report["rows"]:
        if row["beats_baseline"]:
            assert row["mean"] < report["best_baseline"]["mean"]

    assert cli_main(["leaderboard", "loss", "--runs-dir", str(tmp_path / "runs"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    validated = [r["validation"]["mean"] for r in shown if r["validation"]]
    assert validated == sorted(validated) and all(r["metric"] == "loss" for r in shown)


def test_build_norm_act_lets_layer_candidates_replace_normalisation_and_activation():
    x = torch.randn(48, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = (x.mean((1, 2, 3)) > 0).long()

    def net(norm_act):  # noqa: ANN001, ANN202
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), norm_act(4), nn.Flatten(), nn.Linear(64, 2))

    plain = CustomTask(train=(x[:32], y[:32]), val=(x[32:], y[32:]),
                       build=lambda: net(lambda c: nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())))
    with pytest.raises(TaskError, match="no normalisation layers to replace"):
        plain.model(nn.ReLU, lambda c: nn.GroupNorm(1, c))
    layered = CustomTask(train=(x[:32], y[:32]), val=(x[32:], y[32:]), build_norm_act=net,
                         build=lambda: net(lambda c: nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())))
    assert layered.spec.layers and isinstance(layered.model(nn.ReLU, lambda c: nn.GroupNorm(1, c))[1], nn.GroupNorm)
