"""A run directory is untrusted input: every way of damaging one is a `Case` below.

To add one: write a `damage(run)` function that changes the run directory (SQL on its
databases, a file edit, ...), and append a `Case` saying which commands it runs and what must
hold. Every case also checks, for every command: exit 0 or 2, a refusal is ONE line naming the
run or its file, no exception escapes (`afsearch.cli.main` runs in-process, so a traceback
fails the test), and `afsearch runs` still lists the healthy run beside the damaged one.

The runs are real: one small CMA-ES search (real training, real Optuna SQLite study) is made
once per module and copied for each case."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from afsearch.cli import main

SEARCH = ["search", "--space", "swish_beta", "--strategy", "cmaes", "--backend", "local", "--steps", "30",
          "--budget", "4", "--seed", "1", "--baselines", "relu", "--validate-top", "0", "--quiet",
          "--extra-task", "none"]
RESUME = "resume {run} --budget 6 --backend local --quiet"
READERS = ("status {run}", "status {run} --json", "leaderboard {run}", "show {run} 2", "show {run} 3",
           "export {run} --id 2 -o {out}", "export {run} --top 2 -o {out}", "plot {run} -o {out}")
EVERY = (*READERS, RESUME)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("base")
    assert main([*SEARCH, "--name", "base", "--runs-dir", str(runs)]) == 0
    return runs / "base"


def sql(db: Path, *statements: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement, params if "?" in statement else ())
    finally:
        conn.close()


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- ways to damage a run --------------------------------------------------------------------

class _Payload:
    """Unpickling it creates the file `marker`: proof that a pickle from the run was loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.marker, "w"))


def plant_cma_pickle(run: Path) -> None:
    """Optuna's CmaEsSampler restores its optimizer with pickle.loads from these attributes."""
    marker = run.parent / "PWNED"
    payload = pickle.dumps(_Payload(str(marker))).hex()
    conn = sqlite3.connect(run / "optuna.db", isolation_level=None)
    try:
        for (trial_id,) in conn.execute("SELECT trial_id FROM trials WHERE state = 'COMPLETE'").fetchall():
            conn.execute("INSERT OR REPLACE INTO trial_system_attributes (trial_id, key, value_json)"
                         " VALUES (?, 'cma:optimizer:0', ?)", (trial_id, json.dumps(payload)))
    finally:
        conn.close()


def no_pickle_ran_and_search_went_on(run: Path, outputs: dict[str, tuple[int, str]]) -> None:
    assert not (run.parent / "PWNED").exists(), "a pickle from the run directory was loaded"
    assert outputs[RESUME][0] == 0
    with sqlite3.connect(run / "afsearch.db") as conn:
        (done,) = conn.execute("SELECT COUNT(*) FROM evaluations e JOIN candidates c ON c.id = e.candidate_id"
                               " WHERE e.status = 'done' AND c.origin != 'baseline'").fetchone()
    assert done == 6  # the resumed CMA-ES search proposed and trained two more
    with sqlite3.connect(run / "optuna.db") as conn:
        keys = [k for (k,) in conn.execute("SELECT key FROM trial_system_attributes")]
        states = [s for (s,) in conn.execute("SELECT state FROM trials ORDER BY number")]
    assert states == ["COMPLETE"] * 6
    assert "cma:generation" in keys  # asked by CMA-ES itself, not the random fallback
    planted = {k for k in keys if k.startswith("cma:optimizer")}
    assert planted == {"cma:optimizer:0"}  # only the planted ones: afsearch writes no pickle


def set_json(table: str, column: str, value: str, where: str = "") -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        sql(run / "afsearch.db", f"UPDATE {table} SET {column} = ? {where}", params=(value,))
    return damage


def read_only(run: Path) -> None:
    """No write permission anywhere in the run (root ignores modes: mark the files immutable)."""
    for p in [run, *run.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    if os.geteuid() == 0 and subprocess.run(["chattr", "-R", "+i", str(run)], capture_output=True).returncode:
        pytest.skip("running as root without chattr +i: cannot make a directory read-only")


def writable_again(run: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-R", "-i", str(run)], capture_output=True)
    for p in [run, *run.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)


def newer_schema_in_wal(run: Path) -> None:
    """A newer afsearch's commit still in afsearch.db-wal (its process died before a checkpoint)."""
    code = ("import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None);"
            "c.execute('PRAGMA user_version = 99'); c.execute(\"UPDATE meta SET value = '99'"
            " WHERE key = 'schema_version'\"); os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(run / "afsearch.db")], check=True)
    assert (run / "afsearch.db-wal").stat().st_size > 0
    (run / "lock").write_text("4242\n")


def unchanged_byte_for_byte(run: Path, outputs: dict[str, tuple[int, str]], before: dict[str, str]) -> None:
    assert file_hashes(run) == before


def unparsable_formula(run: Path) -> None:
    sql(run / "afsearch.db", "UPDATE candidates SET formula = 'sin(' WHERE id = 2")


def plot_warns_and_draws_the_rest(run: Path, outputs: dict[str, tuple[int, str]]) -> None:
    rc, err = outputs["plot {run} -o {out}"]
    assert rc == 0
    assert "leaves out candidate #2" in err and "'sin('" in err


def status_shows_running_and_failures(run: Path) -> None:
    db = run / "afsearch.db"
    sql(db, "UPDATE evaluations SET status = 'failed', stage = 'worker', reason = 'killed' WHERE id = 2",
        "UPDATE evaluations SET status = 'running', score = NULL, finished_at = NULL WHERE id = 3")


def status_counts_right(run: Path, outputs: dict[str, tuple[int, str]]) -> None:
    rc, out = outputs["status {run} --json"]
    info = json.loads(out)
    assert info["evaluations"]["running"] == 1 and info["evaluations"]["failed"] == 1
    assert info["failed_by_stage"] == {"worker": 1}
    assert "worker" not in info["rejected_by_stage"]


@dataclass(frozen=True)
class Case:
    id: str
    damage: Callable[[Path], None]  # changes the run directory it is given
    commands: tuple[str, ...] = EVERY  # {run}: the damaged run; {out}: a folder outside it
    refusal: str | None = None  # regex every exit-2 line matches; None: every command exits 0
    must_refuse: tuple[str, ...] = ()  # commands that must exit 2
    must_pass: tuple[str, ...] = ()  # commands that must exit 0 (the rest may do either)
    check: Callable[..., None] | None = None  # check(run, outputs[, hashes before]) at the end
    undo: Callable[[Path], None] | None = None  # so that pytest can delete the directory
    hashes: bool = False  # hand `check` the hashes of every file from before the commands


CASES = [
    Case("cma-es pickle planted in optuna.db", plant_cma_pickle, (RESUME,),
         check=no_pickle_ran_and_search_went_on),
    Case("read-only run directory without -wal/-shm", read_only,
         ("status {run}", "leaderboard {run}", "show {run} 2", RESUME, "validate {run} --backend local"),
         refusal="directory, which must be writable", must_refuse=(RESUME, "validate {run} --backend local"),
         must_pass=("status {run}", "leaderboard {run}", "show {run} 2"), undo=writable_again),
    Case("candidates table dropped", lambda run: sql(run / "afsearch.db", "DROP TABLE candidates"),
         refusal="lacks candidates", must_refuse=EVERY),
    Case("evaluations.score column missing",
         lambda run: sql(run / "afsearch.db", "ALTER TABLE evaluations DROP COLUMN score"),
         refusal="lacks evaluations.score", must_refuse=EVERY),
    Case("genotype_json not JSON", set_json("candidates", "genotype_json", "{beta: 1"),
         refusal=r"bad genotype_json \(not JSON", must_refuse=("leaderboard {run}", "show {run} 2")),
    Case("parents_json a string", set_json("candidates", "parents_json", '"abc"'),
         refusal=r"bad parents_json \(a JSON str where a list of str belongs",
         must_refuse=("leaderboard {run}", "show {run} 2")),
    Case("metrics_json not JSON", set_json("evaluations", "metrics_json", "[1, 2"),
         refusal=r"bad metrics_json \(not JSON", must_refuse=("leaderboard {run}", "show {run} 2")),
    Case("metrics_json a list", set_json("evaluations", "metrics_json", "[1, 2]"),
         refusal=r"bad metrics_json \(a JSON list where a dict belongs", must_refuse=("show {run} 2",)),
    Case("metrics_json with a damaged per_seed", set_json("evaluations", "metrics_json", '{"per_seed": 7}'),
         refusal="is damaged", must_refuse=("show {run} 2",)),
    Case("state_json not JSON", set_json("strategy_state", "state_json", "{"),
         refusal=r"bad state_json \(not JSON", must_refuse=("status {run}", RESUME)),
    Case("state_json without keys", set_json("strategy_state", "state_json", '{"version": 1}'),
         refusal="is damaged", must_refuse=(RESUME,), must_pass=READERS),
    Case("state_json with a wrong type", set_json("strategy_state", "state_json", '{"trained": "many"}'),
         refusal="is damaged|search state version", must_refuse=("status {run}", RESUME)),
    Case("newer schema version committed only to the -wal", newer_schema_in_wal,
         (RESUME, "validate {run} --backend local", "status {run}", "leaderboard {run}"),
         refusal="written by a newer afsearch", must_refuse=(RESUME, "validate {run} --backend local",
                                                              "status {run}", "leaderboard {run}"),
         check=unchanged_byte_for_byte, hashes=True),
    Case("an unparsable formula", unparsable_formula, ("plot {run} -o {out}", "show {run} 2"),
         refusal="is damaged.*formula", check=plot_warns_and_draws_the_rest),
    Case("an in-flight and a failed evaluation", status_shows_running_and_failures, ("status {run} --json",),
         check=status_counts_right),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_damaged_run_is_refused_in_one_line_or_read(case: Case, base_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    run = runs / "victim"
    shutil.copytree(base_run, run)
    shutil.copytree(base_run, runs / "intact")
    case.damage(run)
    before = file_hashes(run)
    outputs: dict[str, tuple[int, str]] = {}
    try:
        capsys.readouterr()
        for command in case.commands:
            argv = command.format(run=run, out=tmp_path / "out").split()
            rc = main(argv)
            out, err = capsys.readouterr()
            outputs[command] = (rc, out if command.endswith("--json") else err)
            assert rc in (0, 2), f"{command}: exit {rc}\n{err}"
            if rc == 2:
                lines = err.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("afsearch: error: "), f"{command}: {err}"
                assert case.refusal is not None and re.search(case.refusal, lines[0]), f"{command}: {err}"
                assert "victim" in lines[0], f"{command}: the refusal does not name the run: {err}"
                assert command not in case.must_pass, f"{command}: {err}"
            else:
                assert command not in case.must_refuse, f"{command} should have been refused: {out}{err}"
                assert case.refusal is not None or not err.strip() or command.startswith("plot"), err
        if case.check is not None:
            case.check(run, outputs, *([before] if case.hashes else []))
        assert main(["runs", "--runs-dir", str(runs)]) == 0
        listing = capsys.readouterr().out
        assert "victim" in listing
        intact = next(line for line in listing.splitlines() if line.startswith("intact"))
        assert "x * sigmoid" in intact  # the healthy run, with its best candidate
    finally:
        if case.undo is not None:
            case.undo(run)


@pytest.mark.parametrize("damage", ["deleted", "replaced by another file"])
def test_a_search_whose_database_is_deleted_stops_with_an_error(tmp_path: Path, damage: str) -> None:
    """SQLite would go on committing into the unlinked (or replaced) file and the search would
    'finish' having kept nothing; it must notice at its next commit and exit non-zero, in one
    line."""
    runs = tmp_path / "runs"
    db = runs / "gone" / "afsearch.db"
    argv = [sys.executable, "-m", "afsearch.cli", "search", "--space", "swish_beta", "--strategy", "cmaes",
            "--backend", "local", "--steps", "60", "--budget", "40", "--baselines", "relu",
            "--validate-top", "0", "--quiet", "--name", "gone", "--runs-dir", str(runs)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and _finished(db) < 2:
        time.sleep(0.05)
    if damage == "deleted":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    else:  # a copy renamed over it: same name, another file
        shutil.copyfile(db, f"{db}.copy")
        os.replace(f"{db}.copy", db)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode not in (0, None), out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"afsearch.db was {damage} while this process was writing it" in lines[0], err
    assert "finished" not in out


def _finished(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM evaluations WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_evaluations_show_as_running_while_they_train(tmp_path: Path) -> None:
    """The engine marks an evaluation running when it hands it to the executor, so `status`
    of a live search shows it (the store is read by another process, as `afsearch status`)."""
    runs = tmp_path / "runs"
    db = runs / "live" / "afsearch.db"
    argv = [sys.executable, "-m", "afsearch.cli", "search", "--space", "gp", "--backend", "local", "--steps", "400",
            "--budget", "3", "--pack", "1", "--baselines", "relu", "--validate-top", "0", "--quiet", "--name", "live",
            "--runs-dir", str(runs)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = 0
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not seen:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                seen = conn.execute("SELECT COUNT(*) FROM evaluations WHERE status = 'running'").fetchone()[0]
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert seen >= 1
