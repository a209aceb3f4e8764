"""The run store on real SQLite files: round trips, dedupe, ranking, resume, and every way a run
directory can be broken or busy (each leaves the files on disk untouched)."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import afsearch.errors
from afsearch.errors import RunStoreError
from afsearch.store import (
    SCHEMA_VERSION,
    RunStore,
    dumps_toml,
    list_runs,
    resolve_run,
    write_atomic,
)

REPO_ROOT = Path(afsearch.errors.__file__).resolve().parents[1]
CONFIG = {
    "name": "demo",
    "seed": 7,
    "budget": 1.5,
    "resume": True,
    "tasks": ["mnist1d", "cifar10"],
    "strategy": {"kind": "evolution", "population": 32, "mutation": {"rate": 0.25}},
}


def snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under path with its bytes and mtime, to prove an error changed nothing."""
    return {
        str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def assert_refused(path: Path, run: Path, match: str, mode: str = "rw") -> RunStoreError:
    before = snapshot(path)
    with pytest.raises(RunStoreError, match=match) as info:
        RunStore.open(run, mode)
    assert snapshot(path) == before
    return info.value


def make_run(tmp_path: Path, name: str = "demo") -> Path:
    path = tmp_path / "runs" / name
    RunStore.create(path, CONFIG).close()
    return path


def spawn(code: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


# ---- round trips --------------------------------------------------------------------------


def test_create_open_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "demo"
    with RunStore.create(path, CONFIG) as store:
        assert store.config == CONFIG
        cid, created = store.add_candidate(
            "fp1", "activation", "x * sigmoid(x)", "mul(x, sigmoid(x))",
            genotype={"tree": ["mul", "x", ["sigmoid", "x"]]}, origin="random",
        )  # fmt: skip
        assert created
        eid = store.queue_evaluation(cid, "mnist1d", seed=0, budget=100)
        store.mark_running(eid, "host:1")
        store.finish_evaluation(eid, "done", 0.91, {"loss": 0.3}, cost_s=2.5)
        store.log("generation 0 done")
        store.set_state("finished")

    assert sorted(p.name for p in path.iterdir()) == [
        "afsearch.db", "config.toml", "exports", "lock", "log.txt",
    ]  # fmt: skip
    assert not list(path.parent.glob(".*"))  # the temp build directory is gone
    assert tomllib.loads((path / "config.toml").read_text()) == CONFIG
    with RunStore.open(path, "ro") as store:
        assert store.config == CONFIG
        cand = store.candidate(cid)
        assert cand.formula == "x * sigmoid(x)"
        assert cand.genotype == {"tree": ["mul", "x", ["sigmoid", "x"]]}
        (ev,) = store.evaluations_for(cid)
        assert (ev.status, ev.score, ev.metrics, ev.worker, ev.cost_s) == (
            "done", 0.91, {"loss": 0.3}, "host:1", 2.5,
        )  # fmt: skip
        assert ev.queued_at <= ev.started_at <= ev.finished_at
        assert store.state == "finished"
        assert store.meta()["schema_version"] == str(SCHEMA_VERSION)
        assert store.optuna_storage == f"sqlite:///{(path / 'optuna.db').absolute()}"
    assert "generation 0 done" in (path / "log.txt").read_text()
    db = sqlite3.connect(path / "afsearch.db")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


def test_create_into_empty_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    RunStore.create(tmp_path / "empty", CONFIG).close()
    RunStore.open(tmp_path / "empty").close()


def test_dedupe_by_fingerprint(tmp_path: Path) -> None:
    with RunStore.create(tmp_path / "r", CONFIG) as store:
        first = store.add_candidate("fp", "activation", "relu(x)", parents=["a", "b"])
        again = store.add_candidate("fp", "activation", "max(x, 0)")
        assert first[1] and not again[1] and first[0] == again[0]
        assert store.candidate(first[0]).formula == "relu(x)"  # first spelling is kept
        assert store.candidate(first[0]).parents == ("a", "b")
        assert store.candidate_by_fingerprint("fp") == store.candidate(first[0])
        assert store.candidate_by_fingerprint("nope") is None
        assert store.counts().candidates == 1


def test_result_for_reuses_done_and_rejected_not_failed(tmp_path: Path) -> None:
    with RunStore.create(tmp_path / "r", CONFIG) as store:
        cid, _ = store.add_candidate("fp", "activation", "x")
        assert store.result_for("fp", "t", 0, 10) is None
        e1 = store.queue_evaluation(cid, "t", 0, 10)
        store.finish_evaluation(e1, "failed", stage="train", reason="worker died")
        assert store.result_for("fp", "t", 0, 10) is None
        e2 = store.queue_evaluation(cid, "t", 0, 10)
        store.finish_evaluation(e2, "done", 0.5)
        assert store.result_for("fp", "t", 0, 10).id == e2
        assert store.result_for("fp", "t", 1, 10) is None
        with pytest.raises(ValueError, match="already finished"):
            store.finish_evaluation(e2, "done", 0.9)
        with pytest.raises(KeyError):
            store.mark_running(999, "w")


def test_leaderboard_never_ranks_nonfinite_failed_or_rejected_above_finite(
    tmp_path: Path,
) -> None:
    with RunStore.create(tmp_path / "r", CONFIG) as store:

        def evaluate(fp: str, status: str, *scores: float | None) -> None:
            cid, _ = store.add_candidate(fp, "activation", fp)
            for seed, score in enumerate(scores):
                eid = store.queue_evaluation(cid, "t", seed, 10)
                store.finish_evaluation(eid, status, score, stage="screen")

        evaluate("nan", "done", math.nan, math.nan)
        evaluate("inf", "done", math.inf)
        evaluate("neg_inf", "done", -math.inf)
        evaluate("missing", "done", None)
        evaluate("rejected_high", "rejected", 99.0)
        evaluate("failed_high", "failed", 1e9)
        evaluate("low", "done", -5.0, -3.0)
        evaluate("mid", "done", 0.5, math.nan, 0.7)  # the NaN seed counts as unscored
        evaluate("best", "done", 0.9)

        board = store.leaderboard()
        assert [e.candidate.fingerprint for e in board] == ["best", "mid", "low"]
        mid = board[1]
        assert (mid.n, mid.n_unscored) == (2, 1)
        assert mid.mean == pytest.approx(0.6) and mid.std == pytest.approx(math.sqrt(0.02))
        assert board[0].std is None

        everything = store.leaderboard(top=None, include_unscored=True)
        assert [e.candidate.fingerprint for e in everything[:3]] == ["best", "mid", "low"]
        assert {e.candidate.fingerprint for e in everything[3:]} == {
            "nan", "inf", "neg_inf", "missing", "rejected_high", "failed_high",
        }  # fmt: skip
        assert all(e.mean is None for e in everything[3:])
        assert store.leaderboard(top=1)[0].candidate.fingerprint == "best"
        assert store.leaderboard(task="other") == []

        counts = store.counts()
        assert counts.candidates == 9
        assert counts.by_status == {
            "queued": 0, "running": 0, "done": 11, "rejected": 1, "failed": 1,
        }  # fmt: skip
        # a crash is not a screening verdict: failures are counted apart from rejections
        assert counts.rejected_by_stage == {"screen": 1}
        assert counts.failed_by_stage == {"screen": 1}


def test_in_flight_and_requeue(tmp_path: Path) -> None:
    path = tmp_path / "r"
    with RunStore.create(path, CONFIG) as store:
        store.set_state("running")
        cid, _ = store.add_candidate("fp", "activation", "x")
        queued, running, done = (store.queue_evaluation(cid, "t", s, 10) for s in range(3))
        store.mark_running(running, "w1")
        store.mark_running(done, "w2")
        store.finish_evaluation(done, "done", 1.0)
        assert [e.id for e in store.in_flight()] == [queued, running]
    # The driving process is gone: the run reads as interrupted; resume re-queues its work.
    with RunStore.open(path, "ro") as reader:
        assert reader.state == "interrupted"
    with RunStore.open(path) as store:
        assert store.state == "running"
        again = store.requeue_in_flight()
        assert [(e.id, e.status, e.worker, e.started_at) for e in again] == [
            (queued, "queued", None, None), (running, "queued", None, None),
        ]  # fmt: skip
        assert store.evaluation(done).status == "done"


def test_state_snapshots_round_trip_as_json(tmp_path: Path) -> None:
    path = tmp_path / "r"
    with RunStore.create(path, CONFIG) as store:
        assert store.latest_state() is None
        for step in range(15):
            store.save_state(step, {"population": [["add", "x", 1.5]], "step": step, "rng": [1, 2]})
        with pytest.raises(TypeError):
            store.save_state(99, {"not json": object()})
    with RunStore.open(path, "ro") as store:
        assert store.latest_state() == (
            14,
            {"population": [["add", "x", 1.5]], "step": 14, "rng": [1, 2]},
        )
    db = sqlite3.connect(path / "afsearch.db")
    assert db.execute("SELECT COUNT(*) FROM strategy_state").fetchone() == (10,)
    db.close()


def test_transaction_rolls_back_together(tmp_path: Path) -> None:
    with RunStore.create(tmp_path / "r", CONFIG) as store:
        with pytest.raises(RuntimeError), store.transaction():
            cid, _ = store.add_candidate("fp", "activation", "x")
            store.queue_evaluation(cid, "t", 0, 10)
            raise RuntimeError("crash between writes")
        assert store.counts().candidates == 0
        assert store.in_flight() == []


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    path = make_run(tmp_path)
    with RunStore.open(path, "ro") as store, pytest.raises(RunStoreError, match="read-only"):
        store.add_candidate("fp", "activation", "x")


# ---- files ----------------------------------------------------------------------------------


def test_toml_writer_round_trips() -> None:
    data = {
        "plain": 'a "quoted" \\ string\nwith\ttabs \x01 and \x7f and ünïcode',
        "weird key.with dots": 1,
        "floats": [0.1, 1e-05, 1e16, -0.0, math.inf, -math.inf],
        "nested": {"empty": {}, "list": [[1, 2], ["a"]], "deeper": {"ok": False}},
        "after": True,
    }
    parsed = tomllib.loads(dumps_toml(data))
    assert parsed == data
    assert math.isnan(tomllib.loads(dumps_toml({"x": math.nan}))["x"])
    with pytest.raises(ValueError, match="'strategy.seed'"):
        dumps_toml({"strategy": {"seed": None}})


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, "old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


# ---- errors: each names the problem and leaves the disk untouched -------------------------


def test_create_refuses_existing_non_empty_directory(tmp_path: Path) -> None:
    path = make_run(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(RunStoreError, match="already exists and is not empty"):
        RunStore.create(path, {"other": 1})
    (tmp_path / "file").write_text("x")
    before = snapshot(tmp_path)
    with pytest.raises(RunStoreError, match="already exists"):
        RunStore.create(tmp_path / "file", CONFIG)
    assert snapshot(tmp_path) == before


def test_open_missing_directory(tmp_path: Path) -> None:
    assert_refused(tmp_path, tmp_path / "nope", "does not exist")


def test_open_missing_db(tmp_path: Path) -> None:
    path = make_run(tmp_path)
    (path / "afsearch.db").unlink()
    assert_refused(tmp_path, path, r"afsearch\.db is missing")


def test_open_truncated_db(tmp_path: Path) -> None:
    path = make_run(tmp_path)
    db = path / "afsearch.db"
    db.write_bytes(db.read_bytes()[:100])
    for mode in ("rw", "ro"):
        assert_refused(tmp_path, path, "truncated", mode)
    db.write_bytes(b"")
    assert_refused(tmp_path, path, "truncated")


def test_open_random_non_sqlite_file(tmp_path: Path) -> None:
    path = make_run(tmp_path)
    (path / "afsearch.db").write_bytes(os.urandom(8192))
    assert_refused(tmp_path, path, "not a SQLite database")


def test_open_foreign_sqlite_file(tmp_path: Path) -> None:
    path = make_run(tmp_path)
    (path / "afsearch.db").unlink()
    foreign = sqlite3.connect(path / "afsearch.db")
    foreign.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    foreign.commit()
    foreign.close()
    assert_refused(tmp_path, path, "another application")


def test_open_corrupt_pages(tmp_path: Path) -> None:
    path = make_run(tmp_path)
    db = path / "afsearch.db"
    data = bytearray(db.read_bytes())
    data[4096:8192] = os.urandom(4096)  # the first table's page; the header stays valid
    db.write_bytes(bytes(data))
    with pytest.raises(RunStoreError, match="corrupt"):
        RunStore.open(path, "ro")
    assert db.read_bytes() == bytes(data)


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0])
def test_open_wrong_schema_version(tmp_path: Path, version: int) -> None:
    path = make_run(tmp_path)
    db = sqlite3.connect(path / "afsearch.db")
    db.execute(f"PRAGMA user_version = {version}")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    db.commit()
    db.close()
    word = "newer afsearch" if version > SCHEMA_VERSION else "cannot read"
    error = assert_refused(tmp_path, path, f"schema version {version}.*{word}")
    assert "afsearch.db" in str(error)


def test_open_unreadable_config(tmp_path: Path) -> None:
    path = make_run(tmp_path)
    (path / "config.toml").write_text("name = [unterminated")
    assert_refused(tmp_path, path, r"config\.toml is unreadable")
    (path / "config.toml").unlink()
    assert_refused(tmp_path, path, r"config\.toml is missing")


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    path = make_run(tmp_path)
    holder = spawn(
        f"""
        import time
        from afsearch.store import RunStore
        store = RunStore.open({str(path)!r}, "rw")
        store.set_state("running")
        print("ready", flush=True)
        time.sleep(60)
        """,
        tmp_path,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        error = assert_refused(tmp_path, path, f"being driven by process {holder.pid}")
        assert "wait for it or stop it" in str(error)
        with pytest.raises(RunStoreError, match="already exists"):
            RunStore.create(path, CONFIG)
        with RunStore.open(path, "ro") as reader:  # read-only commands still work
            assert reader.state == "running"
            assert reader.counts().candidates == 0
        (summary,) = list_runs(tmp_path / "runs")
        assert summary.state == "running"
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # The kernel drops the lock with the process: the run is interrupted and can be resumed.
    with RunStore.open(path) as store:
        assert store.state == "running"
    assert list_runs(tmp_path / "runs")[0].state == "interrupted"


def test_second_open_in_same_process_is_refused(tmp_path: Path) -> None:
    path = make_run(tmp_path)
    with RunStore.open(path), pytest.raises(RunStoreError, match=f"process {os.getpid()}"):
        RunStore.open(path)


def test_sigkill_mid_write_leaves_a_consistent_db(tmp_path: Path) -> None:
    path = make_run(tmp_path)
    writer = spawn(
        f"""
        from afsearch.store import RunStore
        store = RunStore.open({str(path)!r}, "rw")
        i = 0
        while True:
            with store.transaction():
                cid, _ = store.add_candidate(f"fp{{i}}", "activation", "x" * 500)
                eid = store.queue_evaluation(cid, "t", 0, 10)
                store.finish_evaluation(eid, "done", float(i), {{"pad": "y" * 500}})
                store.save_state(i, {{"i": i}})
            i += 1
            if i == 200:
                print("going", flush=True)
        """,
        tmp_path,
    )
    try:
        assert writer.stdout.readline().strip() == "going"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    with RunStore.open(path) as store:
        counts = store.counts()
        n = counts.candidates
        assert n >= 200
        assert counts.by_status["done"] == n
        assert store.latest_state() == (n - 1, {"i": n - 1})
        assert store.leaderboard(top=1)[0].mean == n - 1
        store.add_candidate("after", "activation", "x")  # and it accepts writes again


# ---- finding runs -------------------------------------------------------------------------


def test_resolve_run_by_path_or_name(tmp_path: Path) -> None:
    path = make_run(tmp_path, "alpha")
    make_run(tmp_path, "beta")
    runs = tmp_path / "runs"
    assert resolve_run(str(path), runs) == path
    assert resolve_run("alpha", runs) == path
    with pytest.raises(RunStoreError, match="available runs: alpha, beta"):
        resolve_run("gamma", runs)
    with pytest.raises(RunStoreError, match="holds no runs"):
        resolve_run("gamma", tmp_path / "elsewhere")


def test_list_runs_summarises_and_survives_broken_runs(tmp_path: Path) -> None:
    good = tmp_path / "runs" / "good"
    with RunStore.create(good, CONFIG) as store:
        cid, _ = store.add_candidate("fp", "activation", "x * tanh(x)")
        eid = store.queue_evaluation(cid, "t", 0, 10)
        store.finish_evaluation(eid, "done", 0.8)
        store.set_state("finished")
    broken = make_run(tmp_path, "broken")
    (broken / "afsearch.db").write_bytes(b"garbage")
    (tmp_path / "runs" / "not-a-run").mkdir()

    summaries = list_runs(tmp_path / "runs")
    assert [s.name for s in summaries] == ["broken", "good"]
    bad, ok = summaries
    assert bad.state == "unreadable" and "afsearch.db" in bad.error
    assert ok.state == "finished" and ok.counts.by_status["done"] == 1
    assert (ok.best.candidate.formula, ok.best.mean) == ("x * tanh(x)", 0.8)
    assert list_runs(tmp_path / "missing") == []
