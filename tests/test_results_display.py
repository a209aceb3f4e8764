"""Results that do not mislead: ranking by validated score, every validation round kept,
`show` with parents, validation and the quality gate's numbers, `runs` with a header and a
non-baseline best, the funnel's counts, `eval --baselines` naming its baseline, file modes under
a umask, and no Ray token-authentication notice in `--quiet` output."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from afsearch.store import (
    BASELINE_ORIGIN,
    RunStore,
    ValidationResult,
    list_runs,
    replacing,
    write_atomic,
)

SEARCH = ["search", "--space", "swish", "--steps", "80", "--budget", "6", "--seed", "0", "--extra-task", "none",
          "--baselines", "relu,tanh", "--validate-top", "1", "--backend", "local",
          "--strategy", "evolution", "--strategy-option", "population=4", "--strategy-option", "tournament=2"]


def cli(*args: str, runs: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    extra = [] if runs is None else ["--runs-dir", str(runs)]
    return subprocess.run([sys.executable, "-m", "afsearch.cli", *args, *extra], capture_output=True,
                          text=True, timeout=600, env=env)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# ---- file modes ----------------------------------------------------------------------------


def test_written_files_get_the_mode_open_would_give_them(tmp_path):
    from afsearch.compile.export import export_activation
    from afsearch.expr import parse

    with umask(0o022):
        write_atomic(tmp_path / "a.txt", "x")
        with replacing(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"y")
        with RunStore.create(tmp_path / "run", {"budget": 1}):
            pass
        written = export_activation(parse("x * tanh(x)"), tmp_path / "out", "act")
    assert mode(tmp_path / "a.txt") == 0o644
    assert (tmp_path / "b.bin").read_bytes() == b"y" and mode(tmp_path / "b.bin") == 0o644
    assert mode(tmp_path / "run" / "config.toml") == 0o644
    assert set(written) == {"python", "torchscript", "pt2"}
    assert {p.name: mode(p) for p in written.values()} == {p.name: 0o644 for p in written.values()}
    with umask(0o077):
        write_atomic(tmp_path / "private.txt", "z")
    assert mode(tmp_path / "private.txt") == 0o600
    assert not [p for p in tmp_path.rglob(".*tmp*")], "a temporary file was left behind"


# ---- ranking and validation history in the store ---------------------------------------------


def _scored(store: RunStore, fp: str, formula: str, score: float, origin: str = "mutation") -> int:
    cid, _ = store.add_candidate(fp, "activation", formula, origin=origin)
    eid = store.queue_evaluation(cid, "t", 0, 10)
    store.finish_evaluation(eid, "done", score)
    return cid


def _result(cid: int | None, mean: float, baseline: str | None = None) -> ValidationResult:
    return ValidationResult(cid, "f", baseline, (mean, mean), mean, 0.0, None, False)


def test_leaderboard_ranks_validated_first_by_validated_score_and_keeps_every_round(tmp_path):
    with RunStore.create(tmp_path / "run", {"budget": 3}) as store:
        a = _scored(store, "a", "a(x)", 0.70)  # best search score, validated worse
        b = _scored(store, "b", "b(x)", 0.65)  # validated best
        c = _scored(store, "c", "c(x)", 0.68)  # never validated
        assert [e.candidate.id for e in store.leaderboard()] == [a, c, b]
        assert store.add_validation_round("t", 10, [1, 2], [_result(a, 0.60), _result(b, 0.66)]) == 1
        assert [e.candidate.id for e in store.leaderboard()] == [b, a, c]
        # a later round with other numbers adds evidence and moves the ranking; round 1 stays
        assert store.add_validation_round("t", 10, [3, 4], [_result(a, 0.67)]) == 2
        board = store.leaderboard()
        assert [e.candidate.id for e in board] == [a, b, c]
        assert [e.validated.round if e.validated else None for e in board] == [2, 1, None]
        assert [(v.round, v.result.mean) for v in store.validations(a)] == [(1, 0.60), (2, 0.67)]
        assert len(store.validations()) == 3


def _make_v1(path: Path) -> None:
    """A run as afsearch with schema version 1 left it (no validations or proposals table)."""
    with RunStore.create(path, {"budget": 3}) as store:
        _scored(store, "a", "a(x)", 0.7)
    db = sqlite3.connect(path / "afsearch.db")
    db.executescript("DROP TABLE validations; DROP TABLE proposals;"
                     " UPDATE meta SET value = '1' WHERE key = 'schema_version'; PRAGMA user_version = 1;")
    db.close()


def test_schema_version_1_runs_are_read_as_they_are_and_migrated_when_opened_rw(tmp_path):
    from afsearch.store import SCHEMA_VERSION

    run = tmp_path / "old"
    _make_v1(run)
    with RunStore.open(run, "ro") as store:
        assert store.validations() == [] and store.leaderboard()[0].mean == 0.7
    with RunStore.open(run, "rw") as store:
        (cid,) = [e.candidate.id for e in store.leaderboard()]
        store.add_validation_round("t", 10, [1], [_result(cid, 0.5)])
    with RunStore.open(run, "ro") as store:
        assert store.meta()["schema_version"] == str(SCHEMA_VERSION)
        assert store.leaderboard()[0].validated_mean == 0.5


# ---- `afsearch runs` ----------------------------------------------------------------------


def test_runs_has_a_header_and_never_reports_a_baseline_as_best(tmp_path):
    runs = tmp_path / "runs"
    with RunStore.create(runs / "r1", {"budget": 2}) as store:
        _scored(store, "relu", "relu(x)", 0.9, origin=BASELINE_ORIGIN)
        _scored(store, "mine", "x * tanh(x)", 0.8)
        store.set_state("finished")
    (summary,) = list_runs(runs)
    assert summary.best.candidate.formula == "x * tanh(x)"
    out = cli("runs", runs=runs)
    assert out.returncode == 0, out.stderr
    header, line = out.stdout.splitlines()
    assert header.split()[:3] == ["run", "state", "best"] and "baselines excluded" in header
    assert line.split()[:3] == ["r1", "finished", "0.8000"] and "x * tanh(x)" in line
    assert "relu" not in out.stdout
    listed = json.loads(cli("runs", "--json", runs=runs).stdout)
    assert listed[0]["best"]["formula"] == "x * tanh(x)"


# ---- a real search: validate twice, leaderboard, show, funnel ---------------------------------


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("display") / "runs"
    out = cli(*SEARCH, "--quiet", "--name", "s", runs=runs)
    assert out.returncode == 0, out.stderr
    return runs


def test_second_validation_round_is_kept_and_ranks_the_leaderboard(searched):
    runs = searched
    again = cli("validate", "s", "--top", "2", "--seeds", "2", "--json", runs=runs)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["round"] == 2
    latest = json.loads((runs / "s" / "validation.json").read_text())
    assert latest["round"] == 2  # validation.json: the latest round, as before
    # fresh seeds in every round: round 2 repeats none of round 1's (nor the search's)
    with RunStore.open(runs / "s", "ro") as store:
        seeds_by_round = {v.round: set(v.seeds) for v in store.validations()}
    assert len(seeds_by_round[2]) == 2 and not seeds_by_round[1] & seeds_by_round[2]

    rows = json.loads(cli("leaderboard", "s", "--top", "100", "--json", runs=runs).stdout)
    validated = [r for r in rows if r["ranked_by"] == "validated"]
    rest = [r for r in rows if r["ranked_by"] == "search"]
    assert rows == validated + rest and len(validated) == 4  # 2 candidates + 2 baselines
    assert [r["validation"]["mean"] for r in validated] == sorted(
        (r["validation"]["mean"] for r in validated), reverse=True)
    assert all(r["validation"]["round"] == 2 for r in validated)
    table = cli("leaderboard", "s", runs=runs).stdout
    assert "ranked by validated test score where validated (4 candidates" in table

    # the search's winner was validated in round 1 (the default 5 seeds) and round 2 (2 seeds): both shown
    winner = next(r for r in rows if r["origin"] != BASELINE_ORIGIN and r["validation"])
    info = json.loads(cli("show", "s", str(winner["id"]), "--json", runs=runs).stdout)
    assert [(v["round"], v["seeds"]) for v in info["validations"]][-2:] == [(1, 5), (2, 2)]
    text = cli("show", "s", str(winner["id"]), runs=runs).stdout
    assert "validation round 1 on mnist1d-mlp: 5 fresh seeds" in text and \
        "validation round 2 on mnist1d-mlp: 2 fresh seeds" in text
    gate = re.search(r"quality\s+pass\s+at step (\d+): val accuracy ([\d.]+) vs threshold ([\d.]+), ReLU ([\d.]+)",
                     text)
    assert gate, text
    assert float(gate[2]) >= float(gate[3]) and int(gate[1]) > 0


def test_funnel_counts_search_evaluations_and_baselines_apart(searched):
    from afsearch.report.plot import funnel_counts

    with RunStore.open(searched / "s", "ro") as store:
        bars, baselines = funnel_counts(store)
        trained = store.latest_state()[1]["trained"]
    assert bars[0] == ("evaluated", trained) and trained == 6
    assert baselines == 2
    values = [v for _, v in bars]
    assert values == sorted(values, reverse=True)


def test_show_lists_parents_by_candidate_id(tmp_path):
    runs = tmp_path / "runs"
    out = cli("search", "--space", "gp", "--steps", "40", "--budget", "8", "--baselines", "relu",
              "--validate-top", "0", "--backend", "local", "--strategy", "evolution",
              "--strategy-option", "population=3",
              "--strategy-option", "tournament=2", "--quiet", "--name", "g", runs=runs)
    assert out.returncode == 0, out.stderr
    with RunStore.open(runs / "g", "ro") as store:
        children = [e.candidate for e in store.leaderboard(top=None, include_unscored=True)
                    if e.candidate.parents]
        assert children, "evolution made no child in 8 evaluations"
        child = children[0]
        parent_ids = [store.candidate_by_fingerprint(fp).id for fp in child.parents]
    text = cli("show", "g", str(child.id), runs=runs).stdout
    assert f"parents    {', '.join(f'#{i}' for i in parent_ids)}" in text


# ---- eval --baselines ---------------------------------------------------------------------


def test_eval_baselines_names_the_best_baseline_its_score_and_a_paired_test():
    out = cli("eval", "--expr", "x * tanh(x)", "--budget", "40", "--seeds", "2", "--baselines", "--no-ladder")
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if "vs best baseline" in x)
    assert re.search(r"vs best baseline (relu|gelu|silu|tanh|elu) \(accuracy [\d.]+ ± [\d.]+\): [+-][\d.]+ "
                     r"\(paired one-sided t-test over 2 seeds, better than \w+: (p=[\d.e-]+|n/a)\)", line), line


# ---- Ray's token-authentication notice ----------------------------------------------------


def test_quiet_ray_search_prints_no_token_authentication_warning(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    out = cli("search", "--space", "swish", "--steps", "40", "--budget", "2", "--baselines", "relu",
              "--validate-top", "0", "--backend", "ray", "--workers", "1", "--quiet", "--name", "r",
              runs=tmp_path / "runs", env=env)
    assert out.returncode == 0, out.stderr
    assert "Token authentication" not in out.stdout + out.stderr
    assert "WARNING" not in out.stderr, out.stderr
