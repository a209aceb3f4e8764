"""Tasks: data built once and isolated from global RNGs; CIFAR loader errors and safety."""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

from afsearch.errors import TaskError
from afsearch.evaluate import TASKS, Recipe, get_task, train
from afsearch.evaluate.tasks import make_config


def test_mnist1d_built_once_and_global_rngs_untouched() -> None:
    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    task = get_task("mnist1d-mlp")
    assert (random.random(), np.random.rand()) == before
    assert get_task("mnist1d-mlp").data is task.data  # cached per process
    assert task.data.train.x.shape == (3200, 40) and task.data.test.x.shape == (1000, 40)
    assert len(task.data.val) == 800


@pytest.mark.parametrize("name", ["mnist1d-mlp", "mnist1d-cnn", "digits-cnn",
                                  "breast-cancer-mlp", "teacher-student"])
def test_every_offline_task_trains(name: str) -> None:
    task = get_task(name)
    out = train(lambda: task.model(nn.ReLU), task.data, Recipe(steps=5, batch_size=32), seed=0)
    assert 0.0 <= out.val_accuracy <= 1.0 and 0.0 <= out.test_accuracy <= 1.0
    assert out.steps == 5


def test_cnn_tasks_accept_norm_act() -> None:
    task = get_task("digits-cnn")
    made: list[int] = []

    def norm_act(channels: int) -> nn.Module:
        made.append(channels)
        return nn.Sequential(nn.GroupNorm(1, channels), nn.SiLU())

    model = task.model(nn.ReLU, norm_act)
    assert made and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with pytest.raises(TaskError, match="no normalisation layers"):
        get_task("mnist1d-mlp").model(nn.ReLU, norm_act)


def test_config_errors_name_the_key() -> None:
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(TaskError, match="unknown key.*colour.*allowed"):
        make_config("mnist1d-mlp", {"colour": 1})
    assert set(TASKS) >= {"mnist1d-mlp", "mnist1d-cnn", "digits-cnn", "teacher-student",
                          "cifar10-resnet", "breast-cancer-mlp"}


# ---------------------------------------------------------------- CIFAR-10
def _write_cifar(root, n: int = 12, protocol: int = 2) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, n)],
                 b"batch_label": name.encode()}
        with open(root / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_tiny_files_train(tmp_path, protocol: int) -> None:  # noqa: ANN001
    _write_cifar(tmp_path, protocol=protocol)
    task = get_task("cifar10-resnet", {"data_dir": str(tmp_path)})
    assert task.data.train.x.shape[1:] == (3, 32, 32)
    assert len(task.data.train) + len(task.data.val) == 60 and len(task.data.test) == 12
    out = train(lambda: task.model(nn.ReLU), task.data, Recipe(steps=2, batch_size=8), seed=0)
    assert out.steps == 2


def test_cifar_missing_and_corrupt_files(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(TaskError, match="needs data_dir"):
        get_task("cifar10-resnet")
    with pytest.raises(TaskError, match="does not exist"):
        get_task("cifar10-resnet", {"data_dir": str(tmp_path / "nowhere")})
    _write_cifar(tmp_path)
    os.remove(tmp_path / "data_batch_3")
    with pytest.raises(TaskError, match="lacks data_batch_3"):
        get_task("cifar10-resnet", {"data_dir": str(tmp_path)})
    (tmp_path / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(TaskError, match=r"data_batch_3 is corrupt"):
        get_task("cifar10-resnet", {"data_dir": str(tmp_path)})


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned",))


def test_cifar_unpickler_refuses_code(tmp_path) -> None:  # noqa: ANN001
    _write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": []}, fh)
    with pytest.raises(TaskError, match="not allowed"):
        get_task("cifar10-resnet", {"data_dir": str(tmp_path), "blocks": 2})


def test_trainer_deterministic_and_early_stop() -> None:
    task = get_task("mnist1d-mlp")
    recipe = Recipe(steps=200)
    a = train(lambda: task.model(nn.GELU), task.data, recipe, seed=3)
    b = train(lambda: task.model(nn.GELU), task.data, recipe, seed=3)
    assert (a.val_accuracy, a.val_loss, a.test_accuracy) == (b.val_accuracy, b.val_loss,
                                                              b.test_accuracy)
    seen: list[int] = []
    c = train(lambda: task.model(nn.GELU), task.data, recipe, seed=3,
              report=lambda s, acc, loss: seen.append(s) or s < 50, eval_steps=[50, 100])
    assert c.stopped_early and c.steps == 50 and seen == [50]
    assert torch.get_num_threads() >= 1


def test_refit_readout_is_the_least_squares_solution() -> None:
    from afsearch.evaluate.trainer import Split, refit_readout

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 3, generator=gen)
    y = torch.stack([torch.sin(x[:, 0]) + x[:, 1], x[:, 2] ** 2], dim=1)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    refit_readout(model, Split(x, y))
    with torch.no_grad():
        features = model[:2](x).double().numpy()
    design = np.hstack([features, np.ones((300, 1))])
    expected, *_ = np.linalg.lstsq(design, y.double().numpy(), rcond=None)
    assert np.allclose(model[-1].weight.detach().numpy(), expected[:-1].T, atol=1e-5)
    assert np.allclose(model[-1].bias.detach().numpy(), expected[-1], atol=1e-5)
    # non-finite features leave the layer as it was
    before = model[-1].weight.detach().clone()
    refit_readout(model, Split(torch.full((4, 3), float("nan")), torch.zeros(4, 2)))
    assert torch.equal(model[-1].weight, before)
    with pytest.raises(ValueError, match="last module is a Linear"):
        refit_readout(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), Split(x, y))


def test_refit_readout_is_refused_for_classification() -> None:
    task = get_task("breast-cancer-mlp")
    recipe = Recipe(steps=2, refit_readout=True)
    with pytest.raises(ValueError, match="regression tasks only"):
        train(lambda: task.model(torch.nn.ReLU), task.data, recipe)
