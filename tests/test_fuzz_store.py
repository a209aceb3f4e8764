"""Fuzz the run store's readers: random bytes and random JSON/TOML written into the JSON columns,
the strategy state and config.toml of a real run, then every read-only command. Each must exit 0
or 2 (a one-line error), never raise, and never write to the run directory.

Seeded, so a failure repeats: the assertion message names the iteration and the damage."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from afsearch.cli import main
from afsearch.store import dumps_toml
from tests.test_run_tampering import SEARCH

ITERATIONS = 24
READ_ONLY = ("status {run}", "status {run} --json", "leaderboard {run}", "leaderboard {run} --json",
             "show {run} {id}", "export {run} --id {id} -o {out}", "plot {run} -o {out}", "runs --runs-dir {runs}")
COLUMNS = (("candidates", "genotype_json"), ("candidates", "parents_json"), ("evaluations", "metrics_json"),
           ("strategy_state", "state_json"))


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("fuzz")
    assert main([*SEARCH, "--name", "base", "--runs-dir", str(runs)]) == 0
    return runs / "base"


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 7, 2**63, 10**30, 0.5, -1e308, 1e-320])
    if kind == 3:
        return rng.choice(["", "x", "nan", "inf", "-inf", "sin(", "\x00", "é" * 3, "x" * 300])
    if kind == 4:
        return rng.choice(["per_seed", "stages", "seed", "trained", "pending", "strategy", "version"])
    if kind in (5, 6):
        keys = ["per_seed", "stages", "val_accuracy", "seed", "trained", "elapsed_s", "version",
                "strategy", "pending", "name", "passed", "reason", "seconds", "steps", "params"]
        return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]


def mutate(value: Any, rng: random.Random) -> Any:
    """The real value with one random subtree replaced: damage deep inside the right shape."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(sorted(value))
        return {**value, key: mutate(value[key], rng)}
    if isinstance(value, list) and value and rng.random() < 0.8:
        i = rng.randrange(len(value))
        return [*value[:i], mutate(value[i], rng), *value[i + 1:]]
    return random_json(rng)


def damage(run: Path, rng: random.Random) -> str:
    """Write one random value somewhere; returns what was done, for the failure message."""
    how = rng.choice(("bytes", "json", "mutate"))
    if rng.random() < 0.25:  # config.toml
        config = run / "config.toml"
        if how == "bytes":
            config.write_bytes(rng.randbytes(rng.randrange(1, 200)))
        else:
            import tomllib
            real = tomllib.loads(config.read_text())
            new = mutate(real, rng) if how == "mutate" else random_json(rng)
            try:
                config.write_text(dumps_toml(new if isinstance(new, dict) else {"space": new}))
            except ValueError:  # a value TOML cannot hold (null): write it as raw text instead
                config.write_text(f"task = {json.dumps(new)}\n")
        return f"config.toml <- {how} {config.read_bytes()[:200]!r}"
    table, column = rng.choice(COLUMNS)
    conn = sqlite3.connect(run / "afsearch.db", isolation_level=None)
    try:
        rows = conn.execute(f"SELECT rowid, {column} FROM {table}").fetchall()
        rowid, text = rng.choice(rows)
        if how == "bytes":
            new: Any = rng.randbytes(rng.randrange(1, 64))  # stored as a BLOB
        elif how == "json":
            new = json.dumps(random_json(rng))
        else:
            new = json.dumps(mutate(json.loads(text), rng))
        conn.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (new, rowid))
    finally:
        conn.close()
    return f"{table}.{column} #{rowid} <- {how} {new!r:.200}"


def hashes(run: Path) -> dict[str, str]:
    # SQLite's -shm (a cache) and an empty -wal are what a read-only open may leave behind
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*"))
            if p.is_file() and not p.name.endswith(("-shm", "-wal"))}


def test_random_damage_never_crashes_a_reader_nor_writes_to_the_run(
        fuzz_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(17)
    for i in range(ITERATIONS):
        runs = tmp_path / f"runs{i}"
        run = runs / "victim"
        shutil.copytree(fuzz_base, run)
        what = damage(run, rng)
        before = hashes(run)
        capsys.readouterr()
        for command in READ_ONLY:
            argv = command.format(run=run, runs=runs, out=tmp_path / "out", id=rng.choice([1, 2, 3])).split()
            try:
                rc = main(argv)
            except BaseException as exc:
                raise AssertionError(f"iteration {i}, {what}: `{command}` raised {exc!r}") from exc
            err = capsys.readouterr().err.strip()
            assert rc in (0, 2), f"iteration {i}, {what}: `{command}` exit {rc}: {err}"
            if rc == 2:
                assert len(err.splitlines()) == 1 and err.startswith("afsearch: error: "), \
                    f"iteration {i}, {what}: `{command}`: {err}"
        assert hashes(run) == before, f"iteration {i}, {what}: a read-only command wrote to the run"
        wal = run / "afsearch.db-wal"
        assert not wal.exists() or wal.stat().st_size == 0, f"iteration {i}, {what}"
