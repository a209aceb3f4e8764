"""Schedulers (`afsearch.search.schedulers`): the rules on crafted curves, the cutoffs reaching a
worker through the request's JSON, and real searches (mnist1d-mlp, 90 steps, local backend)
in which each scheduler stops a clearly bad candidate and keeps a good one."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from afsearch.candidate import Candidate
from afsearch.errors import ConfigError
from afsearch.evaluate.ladder import LadderConfig
from afsearch.evaluate.metric import ACCURACY, LOSS
from afsearch.evaluate.protocol import EvalReply, EvalRequest, serve
from afsearch.evaluate.result import EvalResult
from afsearch.evaluate.schedule import Cutoff, Cutoffs
from afsearch.search.config import SearchConfig
from afsearch.search.engine import Search
from afsearch.search.schedulers import (
    SCHEDULERS,
    AsyncSuccessiveHalving,
    Finished,
    MedianStopping,
    make_scheduler,
)
from afsearch.search.strategies.base import Outcome, Proposal, Strategy
from afsearch.spaces import load_space

STEPS = 90
#: mediocre at 90 steps (about 0.25-0.34 validation accuracy on the default seed), then a
#: clearly bad one (about chance, 0.1) and a clearly good one (about 0.45, ahead all along)
HISTORY = ["sigmoid(x)", "exp(-abs(x))", "x * exp(x)", "sin(x)", "relu(x) + tanh(x)"]
BAD, GOOD = "sin(5 * x)", "tanh(x) + x^2"


def test_the_names_and_a_bad_one() -> None:
    assert list(SCHEDULERS) == ["gate", "median", "asha", "none"]
    assert SearchConfig().scheduler == "gate"  # also what a run recorded before schedulers existed
    with pytest.raises(ConfigError, match="unknown scheduler 'sha'; allowed: gate, median, asha, none"):
        make_scheduler("sha")


def test_median_rule_at_the_same_step_after_enough_finished_runs() -> None:
    median = MedianStopping(min_completed=5)
    steps = median.milestones(80)
    assert steps == (20, 30, 40, 50, 60, 70)
    good = [Finished(tuple((s, 0.5 + 0.001 * s * k) for s in steps), True) for k in range(5)]
    stopped = Finished(((20, 0.99),), False)  # stopped runs do not count as finished
    assert median.cutoffs(80, good[:4] + [stopped], ACCURACY).cutoffs == ()
    cut = median.cutoffs(80, good, ACCURACY)
    assert cut.milestones == steps
    assert [(c.step, round(c.value, 6)) for c in cut.cutoffs] == [(s, round(0.5 + 0.002 * s, 6)) for s in steps]
    assert cut.cutoffs[0].basis == "median of 5 finished runs"
    # a loss: lower is better, so the cutoff is the median loss and a higher loss is stopped
    losses = [Finished(((20, v),), True) for v in (1.0, 2.0, 3.0, 4.0, 9.0)]
    assert median.cutoffs(80, losses, LOSS).cutoffs[0].value == 3.0


def test_asha_keeps_the_top_third_of_what_each_rung_has_seen() -> None:
    asha = AsyncSuccessiveHalving(eta=3)
    assert asha.milestones(1200) == (44, 133, 400)
    assert asha.milestones(90) == (10, 30)  # no rung before step 10
    seen = [Finished(((10, v),), False) for v in (0.1, 0.5, 0.3)]
    assert asha.cutoffs(90, seen[:2], ACCURACY).cutoffs == ()  # fewer than eta seen: no judgement
    # 3 seen + itself: the top ceil(4/3) = 2 of 4 go on, i.e. no worse than the 2nd best seen
    assert asha.cutoffs(90, seen, ACCURACY).cutoffs == (Cutoff(10, 0.3, "top 1/3 of 4 runs at rung 10"),)
    nine = [Finished(((30, v / 10),), True) for v in range(9)]  # 0.0 .. 0.8
    (cut,) = asha.cutoffs(90, nine, ACCURACY).cutoffs
    assert cut.step == 30 and cut.value == pytest.approx(0.5)  # 4th best of 9 (top ceil(10/3))
    (low,) = asha.cutoffs(90, [Finished(((30, v),), True) for v in (1.0, 2.0, 3.0)], LOSS).cutoffs
    assert low.value == 2.0  # a loss: the 2nd lowest


def _request(formula: str, schedule: Cutoffs | None) -> dict[str, Any]:
    request = EvalRequest((Candidate.activation(formula),), "mnist1d-mlp", STEPS, (0,),
                          ladder=LadderConfig(quality=False), schedule=schedule, measure_cost=False)
    return json.loads(json.dumps(request.to_json()))  # what crosses a process boundary


def test_cutoffs_reach_the_worker_through_the_request_json() -> None:
    schedule = Cutoffs("asha", (10, 30), (Cutoff(10, 0.2, "top 1/3 of 4 runs at rung 10"),))
    payload = _request(BAD, schedule)
    assert EvalRequest.from_json(payload).schedule == schedule
    old = {k: v for k, v in payload.items() if k != "schedule"}  # a payload from before schedulers
    assert EvalRequest.from_json(old).schedule is None
    bad = EvalReply.decode(EvalRequest.from_json(payload), serve(payload)).results[0]
    assert (bad.status, bad.stage) == ("rejected", "asha"), bad.reason
    assert bad.reason.startswith("validation accuracy 0.") and "< 0.200 at step 10 (asha: top 1/3" in bad.reason
    stop = bad.stages[-1]
    assert stop.steps == 10 and stop.seconds > 0 and bad.steps < STEPS  # the compute it spent, counted
    assert bad.curve[0][0] == 10
    good = EvalResult.from_json(serve(_request(GOOD, schedule)))
    assert good.ok and [s for s, _ in good.curve] == [10, 30]
    with pytest.raises(Exception, match="bad request"):
        EvalRequest.from_json({**payload, "schedule": {"scheduler": "asha", "cutoffs": [{"step": 1}]}})


class Listed(Strategy):
    """Proposes the given formulas of the gp space in order, then nothing."""

    name = "listed"

    def __init__(self, formulas: list[str]) -> None:
        space = load_space("gp")
        super().__init__(space, random.Random(0))
        self.todo = [space.from_expr(f) for f in formulas]

    def ask(self) -> Proposal | None:
        return Proposal(self.todo.pop(0), self.new_key(), "listed") if self.todo else None

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        self.record(proposal, outcome)

    @property
    def exhausted(self) -> bool:
        return not self.todo


def _search(tmp_path, scheduler: str, name: str) -> dict[str, Any]:
    config = SearchConfig(space="gp", task="mnist1d-mlp", extra_tasks=[], steps=STEPS, budget=10, backend="local", pack=1,
                          baselines=["relu"], validate_top=0, seed_population=False, scheduler=scheduler,
                          name=name)
    with Search.create(config, tmp_path, strategy=Listed([*HISTORY, BAD, GOOD])) as search:
        search.run()
        return {r.metrics["candidate"]["spec"]: r for r in search.store.evaluations()}


def _spec(formula: str) -> str:
    space = load_space("gp")
    return space.to_candidate(space.from_expr(formula)).to_json()["spec"]


@pytest.mark.parametrize(("scheduler", "stage"), [("gate", "quality"), ("median", "median"), ("asha", "asha")])
def test_each_scheduler_stops_a_clearly_bad_candidate_and_keeps_a_good_one(tmp_path, scheduler, stage) -> None:
    runs = _search(tmp_path, scheduler, "run")
    bad, good = runs[_spec(BAD)], runs[_spec(GOOD)]
    assert (bad.status, bad.stage) == ("rejected", stage), bad.reason
    spent = EvalResult.from_json(bad.metrics)
    assert spent.stages[-1].steps > 0 and spent.steps < STEPS  # stopped early, its compute counted
    assert good.status == "done", good.reason
    if scheduler != "gate":
        assert f"({scheduler}: " in bad.reason
        assert all(runs[_spec(f)].metrics["curve"] for f in HISTORY)  # what the scheduler learnt from
    if scheduler == "asha":  # reproducible on the local backend: a second run stops the same runs
        again = _search(tmp_path, scheduler, "again")
        assert {k: (r.status, r.reason) for k, r in again.items()} == {k: (r.status, r.reason) for k, r in runs.items()}


def test_none_stops_nothing_beyond_the_screen_and_the_stability_burst(tmp_path) -> None:
    runs = _search(tmp_path, "none", "run")
    bad, good = runs[_spec(BAD)], runs[_spec(GOOD)]
    assert bad.status == "done" and good.status == "done"
    assert bad.metrics["mean_accuracy"] < good.metrics["mean_accuracy"] - 0.2


def test_resume_keeps_the_recorded_scheduler(tmp_path) -> None:
    config = SearchConfig(space="gp", task="mnist1d-mlp", extra_tasks=[], steps=30, budget=2, backend="local", pack=1,
                          baselines=["relu"], validate_top=0, seed_population=False, scheduler="median",
                          name="r")
    with Search.create(config, tmp_path, strategy=Listed(["tanh(x)", "abs(x)"])) as search:
        assert search.run().trained == 2
    assert 'scheduler = "median"' in (tmp_path / "r" / "config.toml").read_text()
    with Search.resume("r", tmp_path, overrides={"budget": 3}, strategy=Listed(["x * tanh(x)"])) as search:
        assert search.config.scheduler == "median" and search.scheduler.name == "median"
        assert search.run().trained == 3
        last = search.store.evaluations()[-1]
    assert last.metrics["candidate"]["spec"] == _spec("x * tanh(x)")
    assert [s for s, _ in last.metrics["curve"]] == list(MedianStopping().milestones(30))


def test_a_run_config_that_names_pruner_none_still_runs_and_one_that_prunes_is_refused(tmp_path) -> None:
    base = dict(space="swish_beta", strategy="tpe", task="mnist1d-mlp", extra_tasks=[], steps=20, budget=1, backend="local",
                baselines=["relu"], validate_top=0)
    with Search.create(SearchConfig(**base, strategy_options={"pruner": "none"}, name="old"), tmp_path) as search:
        assert search.run().trained == 1
    with pytest.raises(ConfigError, match="pruner='median' is gone.*--scheduler median or asha"):
        Search.create(SearchConfig(**base, strategy_options={"pruner": "median"}, name="new"), tmp_path)
    assert not (tmp_path / "new").exists()
