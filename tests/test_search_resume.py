"""Kill -9 at several points and resume: the local backend must end exactly where an
uninterrupted run ends; the Ray backend must lose no candidate and train none twice."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

COMMON = ["--space", "gp", "--task", "mnist1d-mlp", "--steps", "80", "--budget", "10", "--seed", "3",
          "--baselines", "relu", "--validate-top", "0", "--quiet"]


def cli(*args: str, runs: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "afsearch.cli", *args, "--runs-dir", str(runs)],
                          capture_output=True, text=True, timeout=600, **kw)


def finished_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM evaluations WHERE status IN ('done','rejected','failed')").fetchone()[0]
    except sqlite3.Error:
        return 0


def start_and_kill(args: list[str], runs: Path, db: Path, at: int) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "afsearch.cli", *args, "--runs-dir", str(runs)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and finished_count(db) < at:
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def board(runs: Path, name: str) -> list[tuple[str, float]]:
    out = cli("leaderboard", name, "--top", "100", "--json", runs=runs)
    assert out.returncode == 0, out.stderr
    return [(row["formula"], round(row["mean"], 6)) for row in json.loads(out.stdout)]


def test_local_backend_kill_resume_matches_uninterrupted_run(tmp_path):
    """Packed (3 candidates per job, so each kill lands while a pack trains): a resumed run
    submits the interrupted pack again with the same members, and every score repeats bit for
    bit (the leaderboard compares scores to 6 decimals and their order)."""
    runs = tmp_path / "runs"
    packed = [*COMMON, "--pack", "3"]
    ref = cli("search", *packed, "--backend", "local", "--name", "straight", runs=runs)
    assert ref.returncode == 0, ref.stderr

    db = runs / "killed" / "afsearch.db"
    start_and_kill(["search", *packed, "--backend", "local", "--name", "killed"], runs, db, at=2)
    for at in (5, 8):
        start_and_kill(["resume", "killed", "--quiet"], runs, db, at=at)
    done = cli("resume", "killed", "--quiet", runs=runs)
    assert done.returncode == 0, done.stderr

    assert board(runs, "killed") == board(runs, "straight")
    status = json.loads(cli("status", "killed", "--json", runs=runs).stdout)
    assert status["state"] == "finished"
    assert status["trained"] == 10
    assert status["evaluations"].get("queued", 0) == 0 and status["evaluations"].get("running", 0) == 0


def test_ray_backend_kill_resume_loses_nothing_and_trains_nothing_twice(tmp_path):
    runs = tmp_path / "runs"
    db = runs / "rayrun" / "afsearch.db"
    args = ["search", *COMMON, "--backend", "ray", "--workers", "2", "--name", "rayrun"]
    start_and_kill(args, runs, db, at=4)
    done = cli("resume", "rayrun", "--quiet", runs=runs)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT candidate_id, task, status FROM evaluations").fetchall()
        n_candidates = conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
    statuses = [r[2] for r in rows]
    assert "queued" not in statuses and "running" not in statuses  # every candidate accounted for
    keys = [(r[0], r[1]) for r in rows]
    assert len(keys) == len(set(keys))  # no candidate trained twice on the same task
    assert n_candidates == len(set(r[0] for r in rows))
    status = json.loads(cli("status", "rayrun", "--json", runs=runs).stdout)
    assert status["trained"] == 10


def test_resumed_progress_counts_on_and_a_finished_run_is_not_run_again(tmp_path):
    runs = tmp_path / "runs"
    args = ["--space", "swish", "--steps", "40", "--baselines", "relu", "--validate-top", "1",
            "--backend", "local", "--name", "grow"]
    first = cli("search", *args, "--budget", "3", runs=runs)
    assert first.returncode == 0, first.stderr
    assert [line.split()[0] for line in first.stdout.splitlines() if line.startswith("[")] == \
        ["[1/3]", "[2/3]", "[3/3]"]

    more = cli("resume", "grow", "--budget", "5", runs=runs)
    assert more.returncode == 0, more.stderr
    assert [line.split()[0] for line in more.stdout.splitlines() if line.startswith("[")] == \
        ["[4/5]", "[5/5]"]
    assert "validation on" in more.stdout  # new results: their winners are validated

    db = runs / "grow" / "afsearch.db"
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT (SELECT COUNT(*) FROM evaluations), (SELECT COUNT(*) FROM validations)").fetchone()
    again = cli("resume", "grow", runs=runs)
    assert again.returncode == 0, again.stderr
    assert "is finished" in again.stdout and "--budget" in again.stdout
    assert "validation on" not in again.stdout
    with sqlite3.connect(db) as conn:
        after = conn.execute("SELECT (SELECT COUNT(*) FROM evaluations), (SELECT COUNT(*) FROM validations)").fetchone()
    assert after == before  # nothing trained, nothing validated again


def test_one_ctrl_c_stops_with_exit_130_and_prints_the_resume_command(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "afsearch.cli", "search", *COMMON[:-1], "--budget", "40",
                             "--backend", "local", "--name", "stopme", "--runs-dir", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # plain progress lines: stdout is a pipe
        if line.startswith("[1/40]"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, (out, err)
    assert "resume with: afsearch resume" in out
    status = json.loads(cli("status", "stopme", "--json", runs=runs).stdout)
    assert status["state"] == "stopped" and status["trained"] < 40
