"""End to end through the command line: search -> Ctrl-C -> resume -> leaderboard -> show ->
export -> load the export in a clean interpreter and train with it; plots; bad arguments."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import pytest

from tests.test_export import LOADER  # noqa: F401  (same clean-interpreter technique)

SEARCH = ["search", "--space", "swish", "--steps", "80", "--budget", "6", "--seed", "0",
          "--baselines", "relu,tanh", "--validate-top", "1", "--backend", "local",
          "--strategy", "evolution", "--strategy-option", "population=4", "--strategy-option", "tournament=2",
          "--pack", "2"]  # results arrive two at a time: the interrupt lands inside the search


def cli(*args: str, runs: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "afsearch.cli", *args, "--runs-dir", str(runs)],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def _finished(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM evaluations WHERE status != 'queued' AND status != 'running'").fetchone()[0]
    except sqlite3.Error:
        return 0


TRAIN_WITH_EXPORT = textwrap.dedent(
    """
    import importlib.util, sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "afsearch":
                raise ImportError("blocked")
    sys.meta_path.insert(0, Block())
    import torch
    spec = importlib.util.spec_from_file_location("exported", sys.argv[1])
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    cls = [v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, torch.nn.Module) and v is not torch.nn.Module][0]
    torch.manual_seed(0)
    x = torch.randn(256, 8); y = (x[:, 0] * x[:, 1] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), cls(), torch.nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    first = None
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad(); loss.backward(); opt.step()
    assert loss.item() < first, (first, loss.item())
    print("trained", first, loss.item())
    """
)


@pytest.mark.slow
def test_search_interrupt_resume_leaderboard_export_and_train(tmp_path):
    runs = tmp_path / "runs"
    db = runs / "e2e" / "afsearch.db"
    proc = subprocess.Popen([sys.executable, "-m", "afsearch.cli", *SEARCH, "--name", "e2e", "--runs-dir", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and _finished(db) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: stop cleanly, commit, print the resume command
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0 and "resume with" not in out:
        pytest.skip("the search finished before it could be interrupted")
    assert proc.returncode == 130, err  # stopped, not finished
    assert "afsearch resume" in out
    status = json.loads(cli("status", "e2e", "--json", runs=runs).stdout)
    assert status["state"] == "stopped"

    resumed = cli("resume", "e2e", "--quiet", runs=runs)
    assert resumed.returncode == 0, resumed.stderr
    status = json.loads(cli("status", "e2e", "--json", runs=runs).stdout)
    assert status["state"] == "finished" and status["trained"] == 6
    config = tomllib.loads((runs / "e2e" / "config.toml").read_text())
    assert config["strategy_options"] == {"population": 4, "tournament": 2}

    board = cli("leaderboard", "e2e", "--json", runs=runs)
    rows = json.loads(board.stdout)
    assert rows and all(r["mean"] is not None for r in rows)
    # validated candidates first by validated score, then the rest by search score: on the
    # default's two tasks, the aggregate of each task's relative delta to its best baseline
    assert all(set(r["tasks"]) == {"mnist1d-mlp", "mnist1d-cnn"} for r in rows)
    validated = [r for r in rows if r["ranked_by"] == "validated"]
    rest = [r for r in rows if r["ranked_by"] == "search"]
    assert rows == validated + rest and validated
    assert [r["aggregate"]["validated"] for r in validated] == sorted(
        (r["aggregate"]["validated"] for r in validated), reverse=True)
    assert [r["search_score"] for r in rest] == sorted((r["search_score"] for r in rest), reverse=True)
    assert cli("leaderboard", "e2e", runs=runs).returncode == 0
    assert cli("show", "e2e", str(rows[0]["id"]), runs=runs).returncode == 0
    assert (runs / "e2e" / "validation.json").exists()

    out_dir = tmp_path / "exported"
    exported = cli("export", "e2e", "--id", str(rows[0]["id"]), "-o", str(out_dir), runs=runs)
    assert exported.returncode == 0, exported.stderr
    py_file = next(out_dir.glob("*.py"))
    trained = subprocess.run([sys.executable, "-I", "-c", TRAIN_WITH_EXPORT, str(py_file)],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "trained" in trained.stdout

    plots = cli("plot", "e2e", "-o", str(tmp_path / "plots"), runs=runs)
    assert plots.returncode == 0, plots.stderr
    from PIL import Image

    for name in ("activations.png", "progress.png", "funnel.png"):
        image = Image.open(tmp_path / "plots" / name).convert("L")
        lo, hi = image.getextrema()
        assert hi - lo > 50, f"{name} looks blank"

    runs_list = cli("runs", "--json", runs=runs)
    assert json.loads(runs_list.stdout)[0]["name"] == "e2e"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["search", "--space", "nope"], "unknown search space"),
        (["search", "--task", "imagenet"], "unknown task"),
        (["search", "--time", "soon"], "bad duration"),
        (["search", "--budget", "0"], "budget"),
        (["search", "--config", "missing.toml"], "does not exist"),
        (["search", "--task-option", "planted"], "KEY=VALUE"),
        (["search", "--task-option", "foo=1"], "unknown key(s) foo"),
        (["search", "--strategy-option", "population"], "KEY=VALUE"),
        (["search", "--space", "gp", "--strategy", "evolution", "--strategy-option", "populaton=5"],
         "no option(s) populaton"),
        (["search", "--task", "teacher-student", "--task-option", "student=frozen"],
         "student must be one of full, readout"),
        (["resume", "ghost"], "ghost"),
        (["status", "ghost"], "ghost"),
        (["leaderboard", "ghost"], "ghost"),
        (["show", "ghost", "3"], "ghost"),
        (["plot", "ghost"], "ghost"),
        (["validate", "ghost"], "ghost"),
        (["export", "ghost", "--top", "1"], "ghost"),
        (["search", "--backend", "spark"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, argv, fragment):
    out = cli(*argv, runs=tmp_path / "runs", cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    assert fragment in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not any((tmp_path / "runs").glob("*")), "a refused command left a run directory"
