"""User tasks from the command line: `--task file.py:NAME` on the local backend and on Ray, the
examples in `examples/`, bad task files refused in one line before any run directory exists,
resume refusing a changed or vanished task file, and read-only commands that never import it."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from afsearch.cli import main as cli_main
from afsearch.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TINY = ["--budget", "3", "--baselines", "relu,tanh", "--validate-top", "1", "--quiet"]
LOCAL = ["--backend", "local", *TINY]

TASK = """
    import torch
    from torch import nn
    import afsearch

    def make_task(width=8, fail_after=0, metric="accuracy", n_val=32, activation=True):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(128, 6, generator=gen)
        y = (x[:, 0] + x[:, 1] > 0).long()

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.calls = 0
                self.body = nn.Sequential(nn.Linear(6, width), nn.ReLU() if activation else nn.Identity(),
                                          nn.Linear(width, 2))

            def forward(self, x):
                if self.training and fail_after:
                    self.calls += 1
                    if self.calls > fail_after:  # past the stability probe: inside training
                        raise RuntimeError("the user's model broke")
                return self.body(x)

        return afsearch.CustomTask(train=(x[:64], y[:64]), val=(x[64:64 + n_val], y[64:96]),
                                   test=(x[96:], y[96:]), build=Net, metric=metric, steps=20, batch_size=16)

    def raises():
        raise KeyError("labels.csv")

    def wrong():
        return {"train": None}
"""


@pytest.fixture
def task_file(tmp_path: Path) -> Path:
    path = tmp_path / "mytask.py"
    path.write_text(textwrap.dedent(TASK))
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("ref, options, fragment", [
    ("{dir}/nothere.py:make_task", [], "task file {dir}/nothere.py does not exist"),
    ("{dir}/mytask.py:make_tsk", [], "has no attribute 'make_tsk'"),
    ("{dir}/mytask.py:raises", [], "raises() raised KeyError: 'labels.csv'"),
    ("{dir}/mytask.py:wrong", [], "wrong() returned dict, expected an afsearch.CustomTask"),
    ("{dir}/mytask.py:make_task", ["n_val=20"], "val: x has 20 rows but y has 32"),
    ("{dir}/mytask.py:make_task", ["activation=false"], "no activation module to replace"),
    ("{dir}/mytask.py:make_task", ["metric=auc"], "unknown metric 'auc'; allowed: accuracy, loss"),
    ("{dir}/mytask.py:make_task", ["depth=2"], "make_task(depth=2) raised TypeError"),
])
@pytest.mark.parametrize("command", ["search", "eval"])
def test_bad_user_tasks_exit_2_with_one_line_and_no_run(tmp_path, task_file, capsys, ref, options, fragment,
                                                        command):
    runs = tmp_path / "runs"
    argv = ["--task", ref.format(dir=tmp_path), *[a for o in options for a in ("--task-option", o)]]
    if command == "search":
        argv = ["search", *argv, *LOCAL, "--runs-dir", str(runs)]
    else:
        argv = ["eval", "--expr", "x * tanh(x)", *argv, "--budget", "5"]
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and fragment.format(dir=tmp_path) in err
    assert "Traceback" not in err
    assert not runs.exists() or not any(runs.iterdir())


def test_extra_task_and_config_file_take_references(tmp_path, task_file, capsys):
    runs = tmp_path / "runs"
    bad = ["search", "--task", "digits-cnn", "--extra-task", f"{tmp_path}/gone.py:make_task", *LOCAL,
           "--runs-dir", str(runs)]
    code, _, err = _run(bad, capsys)
    assert code == 2 and "gone.py does not exist" in err and not runs.exists()
    config = tmp_path / "run.toml"
    config.write_text(f'task = "{task_file}:make_task"\ntask_config = {{width = 4}}\n'
                      f'extra_tasks = ["{task_file}:make_task"]\n')
    code, _, err = _run(["search", "--config", str(config), *LOCAL, "--runs-dir", str(runs), "--name", "cfg"],
                        capsys)
    assert code == 0, err
    with RunStore.open(runs / "cfg", "ro") as store:
        assert store.config["task_config"] == {"width": 4}
        assert list(store.config["user_tasks"]) == [f"{task_file}:make_task"]


def test_a_user_model_failing_mid_training_is_recorded_and_the_search_goes_on(tmp_path, task_file, capsys):
    runs = tmp_path / "runs"
    code, out, _ = _run(["search", "--task", f"{task_file}:make_task", "--task-option", "fail_after=10",
                         *LOCAL, "--validate-top", "0", "--runs-dir", str(runs), "--name", "flaky"], capsys)
    assert code == 0 and "finished" in out
    with RunStore.open(runs / "flaky", "ro") as store:
        failed = [e for e in store.evaluations() if e.status == "failed"]
        assert len(failed) >= 3 and store.state == "finished"
        for ev in failed:
            assert ev.reason == "RuntimeError: the user's model broke" and ev.stage == "train"
            assert "Traceback" in ev.metrics["error"] and "broke" in ev.metrics["error"]


def _read_only_commands_work(runs: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["leaderboard", name], ["leaderboard", name, "--json"], ["status", name], ["show", name, "1"],
                 ["plot", name], ["export", name, "--top", "1", "-o", str(runs.parent / "exported")]):
        code, out, err = _run([*argv, "--runs-dir", str(runs)], capsys)
        assert code == 0, (argv, err)


def test_search_resume_and_read_only_commands_with_a_user_task(tmp_path, task_file, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    code, out, err = _run(["search", "--task", "mytask.py:make_task", "--task-option", "width=4", *LOCAL,
                           "--runs-dir", "runs", "--name", "mine"], capsys)
    assert code == 0, err
    with RunStore.open(runs / "mine", "ro") as store:
        recorded = store.config["user_tasks"][f"{task_file}:make_task"]
        assert store.config["task"] == f"{task_file}:make_task"  # canonical: absolute path
        assert recorded["file"] == str(task_file) and len(recorded["sha256"]) == 64
        assert recorded["metric"] == "accuracy" and recorded["steps"] == 20
    code, out, _ = _run(["validate", "mine", "--runs-dir", "runs", "--backend", "local", "--json"], capsys)
    assert code == 0 and json.loads(out)["rows"]

    original = task_file.read_text()
    task_file.write_text(original + "\n# edited\n")
    code, _, err = _run(["resume", "mine", "--runs-dir", "runs", "--budget", "4", "--quiet"], capsys)
    assert code == 2 and "changed since the run was created" in err and err.count("\n") == 1
    code, _, err = _run(["validate", "mine", "--runs-dir", "runs", "--backend", "local"], capsys)
    assert code == 2 and "changed since the run was created" in err
    code, _, err = _run(["resume", "mine", "--runs-dir", "runs", "--budget", "4", "--quiet",
                         "--allow-changed-task"], capsys)
    assert code == 0, err
    code, _, err = _run(["resume", "mine", "--runs-dir", "runs", "--budget", "5", "--quiet"], capsys)
    assert code == 0, err  # the allowed change was recorded: no second refusal

    # a run directory never imports its task: a file that would fail on import is not read...
    task_file.write_text("raise SystemExit('imported!')\n")
    _read_only_commands_work(runs, "mine", capsys)
    # ... and a vanished one is only missed by the commands that train
    task_file.unlink()
    _read_only_commands_work(runs, "mine", capsys)
    code, _, err = _run(["resume", "mine", "--runs-dir", "runs", "--budget", "6", "--quiet"], capsys)
    assert code == 2 and "no longer exists" in err and err.count("\n") == 1


def test_eval_takes_a_user_task(task_file, capsys):
    code, out, _ = _run(["eval", "--expr", "x * sigmoid(x)", "--task", f"{task_file}:make_task",
                         "--task-option", "metric=loss", "--no-ladder", "--json"], capsys)
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and result["status"] == "done" and result["metric"] == "loss"
    assert result["task"] == f"{task_file}:make_task"
    code, out, _ = _run(["eval", "--expr", "x * sigmoid(x)", "--task", f"{task_file}:make_task",
                         "--task-option", "metric=loss", "--no-ladder", "--seeds", "2"], capsys)
    assert code == 0 and re.search(r"val loss [\d.]+ ± [\d.]+ \(lower is better\)\s+test [\d.]+ ± [\d.]+", out), out


def test_pack_is_refused_for_a_model_it_cannot_stack(tmp_path, capsys):
    runs = tmp_path / "runs"
    code, _, err = _run(["search", "--task", f"{EXAMPLES}/digits_cnn.py:make_task", "--pack", "2", *LOCAL,
                         "--runs-dir", str(runs)], capsys)
    assert code == 2 and "is neither an nn.Sequential MLP nor a plain convolutional" in err and not runs.exists()


@pytest.mark.slow
@pytest.mark.parametrize("example, options", [
    ("digits_cnn.py", ["channels=4", "steps=20"]),
    ("diabetes_mlp.py", ["hidden=8", "steps=30"]),
])
def test_examples_run_as_written_on_the_local_backend(tmp_path, capsys, example, options):
    runs = tmp_path / "runs"
    argv = ["search", "--task", f"{EXAMPLES}/{example}:make_task",
            *[a for o in options for a in ("--task-option", o)], *LOCAL, "--runs-dir", str(runs), "--name", "ex"]
    if example == "diabetes_mlp.py":
        argv += ["--pack", "2"]  # a Sequential MLP: trained packed
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    _read_only_commands_work(runs, "ex", capsys)
    code, out, _ = _run(["leaderboard", "ex", "--runs-dir", str(runs), "--json"], capsys)
    rows = json.loads(out)
    assert rows and rows[0]["metric"] == ("loss" if example == "diabetes_mlp.py" else "accuracy")


@pytest.mark.slow
def test_a_user_task_runs_on_ray_workers(tmp_path, task_file, capsys, ray_session):
    """The default backend: Ray workers import the task file by its recorded path."""
    runs = tmp_path / "runs"
    shutil.copy(EXAMPLES / "diabetes_mlp.py", tmp_path / "diabetes.py")
    code, _, err = _run(["search", "--task", f"{tmp_path}/diabetes.py:make_task", "--task-option", "steps=30",
                         "--workers", "2", *TINY, "--runs-dir", str(runs), "--name", "onray"], capsys)
    assert code == 0, err
    with RunStore.open(runs / "onray", "ro") as store:
        done = [e for e in store.evaluations() if e.status == "done"]
        assert done and all(e.worker and ":" in e.worker for e in done)
        assert all(e.metrics["metric"] == "loss" for e in done)


def test_the_readme_task_file_runs_as_shown(tmp_path, capsys, monkeypatch):
    """README "Your own task": its file, then its commands (with a tiny budget appended)."""
    import shlex

    text = (ROOT / "README.md").read_text().split("## Your own task", 1)[1]
    code_block = text.split("```python\n", 1)[1].split("```", 1)[0]
    commands = text.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mytask.py").write_text(code_block)
    for line in commands:
        words = shlex.split(line)
        assert words[0] == "afsearch"
        extra = [*LOCAL, "--steps", "20"] if words[1] == "search" else []
        code, out, err = _run([*words[1:], *extra], capsys)
        assert code == 0, (line, err)
    assert "mine" in out or "relu" in out


def test_a_joined_cluster_gets_the_task_folder_and_workers_find_the_file_there(tmp_path, monkeypatch):
    from afsearch.evaluate.custom import SHIPPED_ENV, parse_reference
    from afsearch.execute._ray import ship_env

    assert ship_env(None, str(tmp_path)) == {}  # an embedded cluster shares this machine's files
    env = ship_env("127.0.0.1:6379", str(tmp_path))["runtime_env"]
    assert env["working_dir"] == str(tmp_path) and ".venv" in env["excludes"]
    assert env["env_vars"] == {SHIPPED_ENV: "1"}
    # a worker of that cluster: the recorded absolute path is the driver's; the file is in the cwd
    (tmp_path / "mytask.py").write_text("")
    monkeypatch.chdir(tmp_path)
    elsewhere = "/nonexistent/driver/home/mytask.py:make_task"
    with pytest.raises(Exception, match="does not exist"):
        parse_reference(elsewhere)
    monkeypatch.setenv(SHIPPED_ENV, "1")
    assert parse_reference(elsewhere).path == tmp_path / "mytask.py"


def test_search_json_events_report_the_metric_and_raw_values(tmp_path, task_file, capsys):
    argv = ["search", "--task", f"{task_file}:make_task", "--task-option", "metric=loss", "--backend", "local",
            "--budget", "3", "--baselines", "relu,tanh", "--validate-top", "0", "--json",
            "--runs-dir", str(tmp_path / "runs"), "--name", "j"]
    code, out, _ = _run(argv, capsys)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert code == 0
    start = next(e for e in events if e["event"] == "start")
    assert start["metric"] == "loss" and start["higher_is_better"] is False
    scores = [e["score"] for e in events if e["event"] in ("result", "baseline") and e["status"] == "done"]
    assert scores and all(s > 0 for s in scores)  # losses as they are, never negated
    finish = next(e for e in events if e["event"] == "finish")
    assert finish["metric"] == "loss" and finish["best"]["mean"] > 0
