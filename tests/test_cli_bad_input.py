"""Bad arguments and bad files are refused up front: exit 2, one line on stderr naming the
problem, and nothing written (no run directory, no change to an existing run).

Add a case: one line in CASES with the argv (placeholders in braces are files made by the
`files` fixture, `{run}` is a finished run) and a phrase the message must contain. The real
CLI runs in-process (`afsearch.cli.main`); a case whose old failure was a crash of the
interpreter itself (a segfault) runs in a subprocess (SUBPROCESS_CASES)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from afsearch.cli import main as cli_main

Q = ["--backend", "local", "--validate-top", "0", "--baselines", "relu", "--steps", "20", "--quiet"]

CASES: list[tuple[list[str], str]] = [
    # unbounded numbers (search flags end in SearchConfig.validate, like config keys)
    (["search", *Q, "--cpus-per-trial", "1000000"], "cpus_per_trial: must be between"),
    (["search", *Q, "--cpus-per-trial", "1000"], "this machine has"),
    (["search", *Q, "--timeout", "nan"], "timeout_s: must be a finite number"),
    (["search", *Q, "--timeout", "inf"], "timeout_s: must be a finite number"),
    (["search", *Q, "--timeout", "1e300"], "timeout_s: must be between"),
    (["search", *Q, "--time", "nan"], "bad duration"),
    (["search", *Q, "--time", "1e300"], "must be between"),
    (["search", *Q, "--gpus-per-trial", "nan"], "gpus_per_trial: must be a finite number"),
    (["search", *Q, "--budget", "9" * 30], "budget: must be between 1 and 1000000"),
    (["search", *Q, "--seed", "-1"], "seed: must be between"),
    (["search", "--backend", "ray", "--workers", "0", "--quiet"], "workers: must be between"),
    (["eval", "--expr", "x", "--threads", "0"], "--threads: must be between"),
    (["eval", "--expr", "x", "--threads", "-1"], "--threads: must be between"),
    (["eval", "--expr", "x", "--seeds", "0"], "--seeds: must be between"),
    # refusals that used to come after the run directory was made
    (["search", "--backend", "ray", "--cpus-per-trial", "1000", "--quiet"], "this machine has"),
    (["search", "--ray-address", "127.0.0.1:1", "--quiet"], "cannot join the Ray cluster"),
    (["search", *Q, "--strategy", "evolution", "--strategy-option", "population=-5"], "population and tournament must be >= 1"),
    (["search", *Q, "--strategy", "evolution", "--strategy-option", "population=abc"], "bad option value"),
    (["search", *Q, "--strategy", "evolution", "--strategy-option", "tournament=0"], "population and tournament must be >= 1"),
    (["search", *Q, "--strategy", "evolution", "--strategy-option", "crossover_prob=2"], "crossover_prob in [0, 1]"),
    (["search", *Q, "--strategy", "evolution", "--strategy-option", "crossover_prob=nan"], "crossover_prob: must be a finite"),
    # refusals that never happened (every evaluation failed, exit 0)
    (["search", *Q, "--task", "teacher-student", "--task-option", "planted=sin("], "planted formula 'sin('"),
    (["search", *Q, "--task", "cifar10-resnet", "--data-dir", "/nonexistent"], "does not exist"),
    (["search", *Q, "--task-option", "hidden=0"], "hidden: must be between 1 and 4096"),
    (["search", *Q, "--task-option", "hidden=100,abc"], "comma-separated widths"),
    (["search", *Q, "--task-option", "val_fraction=1.5"], "val_fraction: must be between 0 and 1"),
    (["resume", "{bogus_task_run}", "--budget", "3", "--runs-dir", "{runs}"], "unknown task 'bogus'"),
    # tracebacks that became one line
    (["search", *Q, "--runs-dir", "{a_file}"], "is a file, not a directory"),
    (["search", *Q, "--runs-dir", "{a_file}/runs"], "is a file, not a directory"),
    (["spaces", "show", "{latin1_space}"], "is not UTF-8 text"),
    (["search", *Q, "--space", "{latin1_space}"], "is not UTF-8 text"),
    (["search", *Q, "--config", "{latin1_config}"], "is not UTF-8 text"),
    (["search", *Q, "--config", "{list_option_config}"], "strategy_options.population: expected"),
    (["search", "--config", "{list_baselines_config}", "--backend", "local", "--quiet"],
     "baselines[0]: expected a name"),
    (["show", "{run}", "9" * 20, "--runs-dir", "{runs}"], "candidate id must be between 1 and"),
    (["export", "{run}", "--id", "9" * 20, "--runs-dir", "{runs}"], "candidate id must be between 1 and"),
    (["export", "--expr", "x", "--name", "None", "-o", "{tmp}/out"], "valid Python class name"),
    # schedulers: a name the engine has not got, and a scheduler the ladder being off would silence
    (["search", *Q, "--scheduler", "hyperband"], "unknown scheduler 'hyperband'; allowed: gate, median, asha, none"),
    (["search", *Q, "--scheduler", "asha", "--no-ladder"], "the ladder is off"),
    (["search", *Q, "--config", "{bad_scheduler_config}"], "unknown scheduler 'sha'"),
    (["search", *Q, "--space", "swish_beta", "--strategy", "tpe", "--strategy-option", "pruner=median"],
     "stopping early is the search's scheduler now"),
    (["search", *Q, "--strategy", "evolution", "--objective", "accuracy,cost"], "need a multi-objective strategy (nsga2)"),
    # smaller ones
    (["search", *Q, "--space", "{huge_space}"], "the limit is 1000000"),
    (["search", *Q, "--config", "{huge_config}"], "the limit is 1000000"),
    (["search", *Q, "--space", "{nan_trainable_space}"], "terminals.trainable.beta': nan is not a finite"),
    (["spaces", "show", "{nan_low_space}"], "parameters.lam.low': nan is not a finite"),
    (["search", "--config", "{long_number_config}"], "(3000 characters)"),
    (["plot", "{run}", "--top", "-3", "--runs-dir", "{runs}"], "--top: must be between"),
    # a finished run: the flags are checked before "nothing to resume"
    (["resume", "{run}", "--budget", "-5", "--runs-dir", "{runs}"], "--budget: must be between 1 and"),
    (["resume", "{run}", "--workers", "0", "--runs-dir", "{runs}"], "--workers: must be between 1 and"),
    (["validate", "{run}", "--top", "0", "--runs-dir", "{runs}"], "--top: must be between 1 and"),
    (["runs", "--runs-dir", "/nonexistent"], "does not exist"),
]

if not torch.cuda.is_available():
    CASES.append((["search", *Q, "--gpus-per-trial", "1"], "torch sees no GPU"))

#: old failure: a segfault, which would take the test process with it
SUBPROCESS_CASES: list[tuple[list[str], str]] = [
    (["eval", "--expr", "x*sigmoid(x)", "--threads", "100000"], "--threads: must be between"),
]


def main(argv: list[str]) -> int:
    """The CLI's exit code: argparse refuses by raising SystemExit(2), the rest returns it."""
    try:
        return cli_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_input")
    runs = root / "runs"
    code = main(["search", *Q, "--space", "swish1", "--budget", "1", "--strategy", "random",
                 "--runs-dir", str(runs), "--name", "done"])
    assert code == 0
    bogus = runs / "bogus"
    bogus.mkdir()
    for item in (runs / "done").iterdir():
        if item.is_file():
            text = item.read_bytes()
            if item.name == "config.toml":
                text = text.replace(b'task = "mnist1d-mlp"', b'task = "bogus"')
            (bogus / item.name).write_bytes(text)
    (bogus / "exports").mkdir(exist_ok=True)
    spaces = Path(__file__).resolve().parents[1] / "search_spaces"
    made = {
        "a_file": b"not a directory",
        "latin1_space": 'name = "caf\u00e9"\nkind = "swish"\n'.encode("latin-1"),
        "latin1_config": 'name = "caf\u00e9"\n'.encode("latin-1"),
        "list_option_config": b"strategy_options = {population = [1, 2]}\n",
        "list_baselines_config": b"baselines = [1, 2]\n",
        "bad_scheduler_config": b'scheduler = "sha"\n',
        "huge_space": b"#" * 2_000_000,
        "huge_config": b"#" * 2_000_000,
        "nan_trainable_space": (spaces / "gp.toml").read_bytes().replace(b"beta = 1.0", b"beta = nan"),
        "nan_low_space": (spaces / "aglu.toml").read_bytes().replace(b"low = 0.05", b"low = nan", 1),
        "long_number_config": b"budget = " + b"9" * 3000 + b"\n",
    }
    out = {"tmp": str(root), "runs": str(runs), "run": str(runs / "done"), "bogus_task_run": "bogus"}
    for name, content in made.items():
        path = root / f"{name}.toml"
        path.write_bytes(content)
        out[name] = str(path)
    return out


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under the module's folder except SQLite's side files (a read-only open may
    touch them) and the lock file, with its content."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm")) and p.name != "lock"}


@pytest.mark.parametrize(("argv", "phrase"), CASES, ids=[" ".join(a)[:80] for a, _ in CASES])
def test_refused_with_exit_2_one_line_and_nothing_written(
    argv: list[str], phrase: str, files: dict[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # runs/ of a refused search would appear here
    root = Path(files["tmp"])
    before = _snapshot(root)
    code = main([a.format(**files) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert phrase in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists(), "a refused command left a run directory"
    assert _snapshot(root) == before, "a refused command changed a file"


@pytest.mark.parametrize(("argv", "phrase"), SUBPROCESS_CASES)
def test_refused_in_a_subprocess(argv: list[str], phrase: str, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "afsearch", *argv], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert phrase in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_broken_pipe_exits_quietly(files: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`afsearch runs | head -1`: stdout is a pipe whose reader has gone away."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w", buffering=1) as pipe:  # line-buffered: each print hits the pipe
        monkeypatch.setattr(sys, "stdout", pipe)
        code = cli_main(["runs", "--runs-dir", files["runs"]])
        monkeypatch.undo()
    assert code == 1
    assert capsys.readouterr().err == ""


def test_resume_into_a_closed_pipe_exits_quietly_and_the_run_stays_resumable(tmp_path: Path) -> None:
    """`afsearch resume RUN --json | head -1`: the reader leaves after one line."""
    runs = str(tmp_path / "runs")
    common = ["--runs-dir", runs]
    made = subprocess.run([sys.executable, "-m", "afsearch.cli", "search", "--space", "gp", "--backend", "local",
                           "--steps", "20", "--budget", "2", "--baselines", "relu", "--validate-top", "0", "--quiet",
                           "--name", "piped", *common], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    shell = (f"{shlex.quote(sys.executable)} -m afsearch.cli resume piped --budget 4 --json "
             f"--runs-dir {shlex.quote(runs)} | head -1")
    piped = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=300)
    assert piped.returncode == 1 and piped.stderr == "", piped.stderr
    assert json.loads(piped.stdout)["event"] == "start"
    done = subprocess.run([sys.executable, "-m", "afsearch.cli", "resume", "piped", "--budget", "4", "--json",
                           *common], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["trained"] == 4
