"""--device for search / eval / validate, validate's executor flags, and the help texts."""

from __future__ import annotations

import json
import tomllib

import pytest
import torch

from afsearch.cli import build_parser, main
from afsearch.errors import ConfigError
from afsearch.search.config import SearchConfig

NO_GPU = not torch.cuda.is_available()
TINY = ["--space", "swish1", "--task", "breast-cancer-mlp", "--budget", "2", "--steps", "20",
        "--backend", "local", "--validate-top", "0", "--baselines", "relu", "--no-ladder", "--quiet"]


@pytest.mark.parametrize("argv, fragment", [
    (["search", "--device", "tpu"], "unknown device 'tpu'; allowed: auto, cpu, cuda, cuda:N"),
    (["search", "--device", "cuda:x"], "unknown device 'cuda:x'"),
    pytest.param(["search", "--device", "cuda"], "device cuda: no CUDA GPU is visible",
                 marks=pytest.mark.skipif(not NO_GPU, reason="a GPU is visible")),
    pytest.param(["eval", "--expr", "x", "--device", "cuda:0"], "no CUDA GPU is visible",
                 marks=pytest.mark.skipif(not NO_GPU, reason="a GPU is visible")),
    (["eval", "--expr", "x", "--device", "gpu"], "unknown device 'gpu'"),
])
def test_bad_device_exits_2_up_front_in_one_line(tmp_path, capsys, argv, fragment):
    runs = tmp_path / "runs"
    extra = ["--runs-dir", str(runs), "--name", "d", *TINY] if argv[0] == "search" else []
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1, err
    assert not runs.exists()  # refused before any run directory exists


def test_cuda_on_the_ray_backend_needs_a_gpu_share():
    # a joined cluster's GPUs are the workers': only the spelling and the request are checked
    config = SearchConfig(device="cuda", backend="ray", ray_address="auto")
    with pytest.raises(ConfigError, match="needs --gpus-per-trial > 0"):
        config.validate()
    SearchConfig(device="cuda:1", backend="ray", ray_address="auto", gpus_per_trial=0.25).validate()


def test_device_is_recorded_and_validate_takes_executor_flags(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["search", "--runs-dir", str(runs), "--name", "d", "--device", "cpu", *TINY]) == 0
    assert tomllib.loads((runs / "d" / "config.toml").read_text())["device"] == "cpu"
    capsys.readouterr()
    argv = ["validate", "d", "--runs-dir", str(runs), "--top", "1", "--seeds", "2", "--steps", "20",
            "--backend", "local", "--workers", "1", "--cpus-per-trial", "1", "--device", "cpu", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [len(r["per_seed"]) for r in report["rows"]] == [2, 2]
    if NO_GPU:
        assert main([*argv[:-3], "--device", "cuda"]) == 2
        assert "no CUDA GPU is visible" in capsys.readouterr().err


def _help(command: str) -> str:
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    return " ".join(sub.format_help().split())  # unwrapped


@pytest.mark.parametrize("command, wanted", [
    ("validate", ["--top TOP retrain the best K candidates (default: the run's validate_top, 3)",
                  "--seeds SEEDS fresh seeds per candidate (default:",
                  "--steps STEPS training steps (default:", "default: the run's backend",
                  "--workers WORKERS concurrent evaluations (default:", "--cpus-per-trial",
                  "--gpus-per-trial", "--device DEVICE"]),
    ("leaderboard", ["number of candidates shown (default: 10)"]),
    ("plot", ["candidates drawn in the activation plots (default: 5)"]),
    ("resume", ["--workers WORKERS concurrent evaluations (default:",
                "--quiet print only the final summary", "--json print one JSON event per line"]),
    ("search", ["--device DEVICE where candidates train: auto", "(default: auto)"]),
    ("eval", ["--device DEVICE where candidates train: auto"]),
])
def test_help_states_what_each_flag_does_and_its_default(command, wanted):
    text = _help(command)
    for fragment in wanted:
        assert fragment in text, (fragment, text)
