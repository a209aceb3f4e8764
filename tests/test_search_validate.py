"""Validation's shortlist: the best by search score retrained on seeds of their own, the best of
them by validation score validated; real searches and training, tiny budgets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from afsearch import evaluate
from afsearch.search.config import SearchConfig
from afsearch.search.engine import Search
from afsearch.search.seeding import derive_seed
from afsearch.search.validate import shortlist_seeds, validation_seeds
from afsearch.store import RunStore

STEPS = 60


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, SearchConfig]:
    runs = tmp_path_factory.mktemp("shortlist")
    config = SearchConfig(budget=8, steps=STEPS, backend="local", baselines=["relu", "tanh"], extra_tasks=[],
                          strategy="random", validate_top=0, validate_seeds=2, seed=3, name="s")
    with Search.create(config, runs) as search:
        search.run()
    return runs, config


def test_the_shortlist_picks_the_best_on_its_own_seeds_and_validates_them(run):
    runs, _ = run
    with Search.resume("s", runs) as search:
        report = search.validate(top=2, shortlist=5)
    shortlist = report["shortlist"]
    rows = shortlist["rows"]
    assert sorted(r["search_rank"] for r in rows) == [1, 2, 3, 4, 5]
    # ranked by the score on the shortlist's seeds, best first; the best two go on
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert shortlist["picked"] == [r["id"] for r in rows[:2]]
    assert {r["id"] for r in report["rows"] if not r["baseline"]} == set(shortlist["picked"])
    # its seeds are neither the search's nor validation's
    seeds = shortlist["seeds"]
    assert seeds == shortlist_seeds(3, 2)
    assert not set(seeds) & ({derive_seed(3, "train", 0)} | set(validation_seeds(3, 1, 2)))
    # each recorded value is the candidate's validation accuracy on those seeds, ladder off
    first = rows[0]
    again = evaluate(first["formula"], "mnist1d-mlp", budget=STEPS, seed=seeds, ladder=False, measure_cost=False)
    assert first["tasks"]["mnist1d-mlp"] == pytest.approx(again.mean_accuracy, abs=1e-6)
    with RunStore.open(runs / "s", "ro") as store:
        assert "shortlist of 5 retrained on 2 seeds" in store.log_path.read_text()
    saved = json.loads((runs / "s" / "validation.json").read_text())
    assert saved["shortlist"]["picked"] == shortlist["picked"]


def test_no_shortlist_when_it_is_not_larger_than_the_validated_top(run):
    runs, _ = run
    with Search.resume("s", runs) as search:
        report = search.validate(top=2, seeds=2, shortlist=2)
    assert "shortlist" not in report
    assert len([r for r in report["rows"] if not r["baseline"]]) == 2


def test_cli_validate_takes_a_shortlist(run):
    runs, _ = run
    proc = subprocess.run([sys.executable, "-m", "afsearch.cli", "validate", "s", "--top", "1", "--seeds", "2",
                           "--shortlist", "3", "--shortlist-seeds", "1", "--backend", "local", "--runs-dir", str(runs)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "shortlist: the best 3 by search score retrained on 1 seeds of their own" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "afsearch.cli", "validate", "s", "--shortlist", "-1",
                          "--runs-dir", str(runs)], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--shortlist" in bad.stderr
