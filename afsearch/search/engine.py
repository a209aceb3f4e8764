"""The search engine: strategy -> candidate -> store -> executor -> store -> strategy.

    from afsearch import Search, SearchConfig
    search = Search.create(SearchConfig(space="swish", task="mnist1d-mlp", budget=30))
    summary = search.run()            # blocks; Ctrl-C stops cleanly and keeps the run resumable
    search.leaderboard(top=5)
    Search.resume("runs/<name>").run()

The engine owns the loop and the bookkeeping; the strategy only proposes and learns, the
executor only runs jobs, the evaluator only trains. After every proposal and every result the
engine commits one transaction holding the store rows *and* a JSON snapshot of the strategy
and of its own pending work, so a search killed at any point resumes from the last commit:
in-flight evaluations are queued again, random streams continue where they were.

Reproducibility: with ``backend="local"`` (serial), the same seed gives the same sequence of
proposals and scores, interrupted or not. With Ray, each candidate's score is still
deterministic for its seed on CPU, but results arrive in completion order, so an
asynchronous strategy may see them in a different order and propose different candidates."""

from __future__ import annotations

import math
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from torch import nn

from afsearch.errors import AfsearchError, ConfigError, RunStoreError, TaskError, shorten
from afsearch.evaluate.result import EvalResult
from afsearch.execute import Executor, Job, JobResult, make_executor
from afsearch.reference import get_reference
from afsearch.search.config import SearchConfig
from afsearch.search.seeding import derive_seed
from afsearch.search.strategies.base import Outcome, Proposal, Strategy
from afsearch.spaces import load_space
from afsearch.spaces.base import SearchSpace
from afsearch.store import (
    BASELINE_ORIGIN,
    LeaderboardEntry,
    RunStore,
    dumps_toml,
    resolve_run,
    write_atomic,
)

BASELINE = BASELINE_ORIGIN
#: a strategy that keeps proposing known candidates is stopped after this many proposals per
#: budgeted evaluation (small finite spaces, converged populations)
MAX_PROPOSALS_PER_EVAL = 25
STATE_VERSION = 1


@dataclass
class SearchEvent:
    """What observers (progress display, JSON event stream) receive."""

    kind: str  # start | baseline | result | cache | invalid | progress | stop | finish | validate
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, "time": time.time(), **self.data}


@dataclass
class SearchSummary:
    run: Path
    state: str  # finished | stopped
    trained: int
    proposals: int
    cache_hits: int
    best: LeaderboardEntry | None
    best_baseline: float | None
    elapsed_s: float
    metric: str = "accuracy"  # what best.mean and best_baseline measure (a loss: lower is better)


def outcome_from_results(results: dict[str, EvalResult | None], objectives: list[str]) -> Outcome:
    """Aggregate per-task results into what a strategy learns (None = failed outright).
    Strategies maximise, so scores and objectives are the metric's value oriented higher-is-
    better (`EvalResult.score`: a loss is negated here and nowhere a user reads); the
    "accuracy" objective is each task's metric, whatever it is."""
    ok = [r for r in results.values() if r is not None and r.ok and math.isfinite(r.score)]
    if len(ok) != len(results):
        statuses = [r.status if r is not None else "failed" for r in results.values()]
        status = "failed" if "failed" in statuses else "rejected"
        intermediate = _intermediate(next((r for r in results.values() if r is not None), None))
        return Outcome(-math.inf, [-math.inf] * _n_objectives(objectives, len(results)), status, intermediate)
    score = sum(r.score for r in ok) / len(ok)
    objs: list[float] = []
    for objective in objectives:
        if objective == "accuracy":
            objs.extend(r.score for r in ok)
        elif objective == "cost":
            cost = ok[0].activation_cost
            objs.append(-cost if cost is not None and math.isfinite(cost) else -math.inf)
        elif objective == "params":
            objs.append(-float(ok[0].params))
    return Outcome(score, objs, "done", _intermediate(ok[0]))


def _n_objectives(objectives: list[str], n_tasks: int) -> int:
    return sum(n_tasks if o == "accuracy" else 1 for o in objectives)


def _intermediate(result: EvalResult | None) -> list[tuple[int, float]]:
    if result is None:
        return []
    metric = result.metric_spec  # pruners maximise too: oriented values
    key = f"val_{metric.source}"
    points = []
    for stage in result.stages:
        if stage.name == "quality" and key in stage.stats and "step" in stage.stats:
            points.append((int(stage.stats["step"]), metric.oriented(float(stage.stats[key]))))
    if result.ok and result.per_seed:
        points.append((result.budget, result.score))
    return points


class Search:
    """A search bound to one run directory. Build with `create` or `resume`."""

    def __init__(self, store: RunStore, config: SearchConfig, space: SearchSpace,
                 strategy: Strategy, *, on_event: Callable[[SearchEvent], None] | None = None) -> None:
        self.store = store
        self.config = config
        self.space = space
        self.strategy = strategy
        self.on_event = on_event
        self.train_seeds = [derive_seed(config.seed, "train", k) for k in range(config.seeds)]
        # engine state (persisted in every snapshot)
        self.trained = 0
        self.proposals = 0
        self.cache_hits = 0
        self.invalid = 0
        self.elapsed_before = 0.0
        self.pending: dict[int, dict[str, Any]] = {}  # eval_id -> {"kind", "task", "fp", "waiters"}
        self.open_proposals: dict[int, dict[str, Any]] = {}  # key -> {"proposal", "results"}
        self.baselines_submitted = False
        self._stop = threading.Event()
        self._jobs: dict[str, list[int]] = {}  # job id -> eval ids (several when packed)
        self._ready: list[int] = []  # queued evaluations not yet handed to the executor
        self._started = time.monotonic()

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def create(cls, config: SearchConfig, runs_dir: str | Path = "runs", *,
               on_event: Callable[[SearchEvent], None] | None = None) -> Search:
        from afsearch.search.strategies import default_strategy_for, strategy_options

        # Every refusal happens before RunStore.create: a corrected command must not then
        # fail with "already exists" on the directory a refused one left behind.
        config.validate()
        _check_runs_dir(Path(runs_dir))
        _record_user_tasks(config)
        space = load_space(config.space)
        strategy_name = config.strategy or default_strategy_for(space)
        config.strategy = strategy_name
        allowed = strategy_options(strategy_name)  # unknown names raise here, before any file exists
        unknown = sorted(set(config.strategy_options) - set(allowed) - {"storage", "study_name"})
        if unknown:
            raise ConfigError(f"strategy {strategy_name!r} has no option(s) {', '.join(unknown)}; "
                              f"allowed: {', '.join(sorted(allowed)) or 'none'}")
        config.baselines = config.baseline_names()  # recorded in config.toml as resolved
        _check_tasks(config, space)
        _check_executor(config)
        _check_strategy(config, space)
        name = config.name or f"{Path(config.space).stem}-{strategy_name}-{datetime.now():%Y%m%d-%H%M%S}"
        config.name = name
        path = Path(runs_dir) / name
        store = RunStore.create(path, config.to_toml_dict())
        try:
            strategy = cls._make_strategy(config, space, store)
            search = cls(store, config, space, strategy, on_event=on_event)
            search.store.log(f"created run {name}: space={config.space} task={config.task} "
                             f"strategy={strategy_name} budget={config.budget} seed={config.seed}")
            search._snapshot()
        except BaseException:
            store.close()
            raise
        return search

    @classmethod
    def resume(cls, run: str | Path, runs_dir: str | Path = "runs", *,
               on_event: Callable[[SearchEvent], None] | None = None,
               overrides: dict[str, Any] | None = None, allow_changed_task: bool = False) -> Search:
        """Continue a run. A user task is imported again from its recorded file, which must be
        unchanged (same sha256) unless `allow_changed_task`."""
        path = resolve_run(str(run), str(runs_dir))
        store = RunStore.open(path, "rw")
        try:
            data = dict(store.config)
            changed = {k: v for k, v in (overrides or {}).items() if v is not None and data.get(k) != v}
            data.update(changed)
            config = SearchConfig.from_dict(data, str(path / "config.toml"))
            # checked like a new run, before anything is written (an edited config.toml may
            # name a task that does not exist)
            if _check_user_tasks_unchanged(config, allow_changed_task):
                changed["user_tasks"] = config.user_tasks
            space = load_space(config.space)
            _check_tasks(config, space)
            _check_executor(config)
            if changed:  # e.g. a raised budget: the next resume must see it too
                write_atomic(path / "config.toml", dumps_toml(config.to_toml_dict()))
                store.config = config.to_toml_dict()
                store.log("resumed with " + ", ".join(f"{k}={v}" for k, v in changed.items()))
            strategy = cls._make_strategy(config, space, store)
            search = cls(store, config, space, strategy, on_event=on_event)
            snapshot = store.latest_state()
            if snapshot is None:
                raise RunStoreError(f"run {path} has no saved search state; it cannot be resumed")
            with store.reading():  # a damaged snapshot: one line naming the run, not a KeyError
                search._restore(snapshot[1])
            requeued = store.requeue_in_flight()
            store.log(f"resumed; {len(requeued)} in-flight evaluation(s) queued again")
        except BaseException:
            store.close()
            raise
        return search

    @staticmethod
    def _make_strategy(config: SearchConfig, space: SearchSpace, store: RunStore) -> Strategy:
        from afsearch.search.strategies import default_strategy_for, make_strategy

        options = dict(config.strategy_options)
        if config.strategy in ("tpe", "cmaes"):
            options.setdefault("storage", store.optuna_storage)
            options.setdefault("study_name", store.name)
        seeds = space.seeds() if config.seed_population else []
        rng = random.Random(derive_seed(config.seed, "strategy"))
        return make_strategy(config.strategy or default_strategy_for(space), space, rng, seeds=seeds, **options)

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "strategy": self.strategy.state(),
            "trained": self.trained,
            "proposals": self.proposals,
            "cache_hits": self.cache_hits,
            "invalid": self.invalid,
            "elapsed_s": self.elapsed_s,
            "pending": {str(k): v for k, v in self.pending.items()},
            "open_proposals": {str(k): v for k, v in self.open_proposals.items()},
            "baselines_submitted": self.baselines_submitted,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise RunStoreError(f"run {self.store.path} has search state version {state.get('version')}; "
                                f"this afsearch reads version {STATE_VERSION}")
        self.strategy.restore(state["strategy"])
        self.trained = int(state["trained"])
        self.proposals = int(state["proposals"])
        self.cache_hits = int(state["cache_hits"])
        self.invalid = int(state.get("invalid", 0))
        self.elapsed_before = float(state["elapsed_s"])
        self.pending = {int(k): v for k, v in state["pending"].items()}
        self.open_proposals = {int(k): v for k, v in state["open_proposals"].items()}
        self.baselines_submitted = bool(state["baselines_submitted"])

    def _snapshot(self) -> None:
        self.store.save_state(self.proposals, self._state())

    @property
    def elapsed_s(self) -> float:
        return self.elapsed_before + (time.monotonic() - self._started)

    # -- the loop -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop after committing what has arrived (thread- and signal-safe)."""
        self._stop.set()

    def run(self, executor: Executor | None = None, *, progress: bool = False) -> SearchSummary:
        """Run until the budget, the time limit or the space is exhausted, or `stop()`.
        Ctrl-C (SIGINT) calls `stop()`; a second Ctrl-C interrupts immediately (the run stays
        resumable either way). `progress=True` shows what `afsearch search` shows (a live bar
        on a terminal, one plain line per event otherwise) besides any `on_event`. Validation of
        the winners is a separate step here: `validate()`."""
        if progress:
            return self._with_display(lambda: self.run(executor))
        own_executor = executor is None
        previous_handler = None
        if threading.current_thread() is threading.main_thread():
            previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        self._started = time.monotonic()
        self.store.set_state("running")
        state = "stopped"
        try:
            if executor is None:
                executor = self._make_executor()
            # "done": results already recorded before this start, so a resumed run's progress
            # counts on from there instead of from 1
            waiting = sum(1 for info in self.pending.values() if info["kind"] != BASELINE)
            self._emit("start", {"run": str(self.store.path), "config": self.config.to_toml_dict(),
                                 "metric": self.config.metric.name,
                                 "higher_is_better": self.config.metric.higher_is_better,
                                 "capacity": executor.capacity, "trained": self.trained,
                                 "done": self.trained - waiting})
            self._resubmit_pending(executor)
            if not self.baselines_submitted:
                self._submit_baselines(executor)
            state = self._loop(executor)
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            if executor is not None:
                if self._jobs:
                    for job_id in list(self._jobs):
                        executor.cancel(job_id)
                if own_executor:
                    executor.shutdown()
            self._snapshot()
            self.store.set_state(state)
            self.store.log(f"{state}: trained={self.trained} proposals={self.proposals} "
                           f"cache_hits={self.cache_hits}")
        summary = self.summary(state)
        self._emit("stop" if state == "stopped" else "finish", {
            "state": state, "trained": self.trained, "proposals": self.proposals, "metric": summary.metric,
            "best": _entry_json(summary.best), "best_baseline": summary.best_baseline,
        })
        return summary

    def validate(self, top: int | None = None, seeds: int | None = None,
                 steps: int | None = None) -> dict[str, Any]:
        """Retrain the best `top` candidates (default: `config.validate_top`) on `seeds` fresh
        seeds (default: `config.validate_seeds`) for `steps` (default: `validate_steps`, else
        the search's) beside the baselines, as `afsearch search` does after a finished search
        and `afsearch validate` on demand; recorded in the run. Returns the report that
        `afsearch validate --json` prints: "rows" (formula, baseline, per_seed, mean, std,
        p_value, beats_baseline), "best_baseline", "test", "steps", "seeds"."""
        from afsearch.search.validate import validate_run

        asked = {"validate_top": top, "validate_seeds": seeds, "validate_steps": steps}
        config = replace(self.config, **{k: v for k, v in asked.items() if v is not None})
        config.validate()
        return validate_run(self.store, config, on_event=self.on_event)

    def _with_display(self, action: Callable[[], SearchSummary]) -> SearchSummary:
        from afsearch.cli.display import make_observer  # the CLI's display, reused as is

        display, user = make_observer("live", self.config.budget), self.on_event

        def both(event: SearchEvent) -> None:
            display(event)
            if user is not None:
                user(event)

        self.on_event = both
        try:
            return action()
        finally:
            display.close()
            self.on_event = user

    def _on_sigint(self, signum: int, frame: object) -> None:
        if self._stop.is_set():
            raise KeyboardInterrupt
        self._stop.set()

    def _make_executor(self) -> Executor:
        return executor_for(self.config)

    def _time_left(self) -> bool:
        return self.config.time_limit_s is None or self.elapsed_s < self.config.time_limit_s

    def _loop(self, executor: Executor) -> str:
        max_proposals = self.config.budget * MAX_PROPOSALS_PER_EVAL
        while not self._stop.is_set():
            can_propose = self._time_left() and self.trained < self.config.budget and \
                self.proposals < max_proposals and not self.strategy.exhausted
            stalled = False
            while can_propose and self._wants_more(executor) and not self._stop.is_set():
                if not self._propose():
                    stalled = True
                    break
                can_propose = self._time_left() and self.trained < self.config.budget and \
                    self.proposals < max_proposals and not self.strategy.exhausted
            # a partial pack goes out when nothing else will fill it soon
            self._flush(executor, partial=stalled or not can_propose or not self._jobs)
            if not self._jobs:
                if not can_propose or stalled:
                    return "finished"
                continue
            if not self._time_left():
                return "finished"  # time is up: in-flight work stays queued for `resume`
            for result in executor.poll(timeout=0.5):
                self._record(result)
        return "stopped"

    # -- proposals ---------------------------------------------------------------------------
    def _wants_more(self, executor: Executor) -> bool:
        """More proposals are useful while free worker slots are not yet filled with packs."""
        free = executor.capacity - len(self._jobs)
        return free > 0 and len(self._ready) < free * self.config.pack

    def _propose(self) -> bool:
        """Ask the strategy for one proposal and queue or answer it. False: nothing to ask."""
        proposal = self.strategy.ask()
        if proposal is None:
            return False
        self.proposals += 1
        try:
            candidate = self.space.to_candidate(proposal.genotype)
            fp = candidate.fingerprint()
            formula, canonical = candidate.describe()
        except (AfsearchError, ValueError, ArithmeticError, RecursionError) as exc:
            self.invalid += 1
            with self.store.transaction():
                self.strategy.tell(proposal, Outcome(-math.inf, status="failed"))
                self._snapshot()
            self.store.log(f"invalid proposal {proposal.genotype!r}: {exc}")
            self._emit("invalid", {"genotype": proposal.genotype, "reason": str(exc)})
            return True
        to_submit: list[tuple[int, str]] = []
        with self.store.transaction():
            parents = self.store.proposal_fingerprints(proposal.parents)
            cid, _ = self.store.add_candidate(fp, candidate.kind, formula, canonical, proposal.genotype,
                                              proposal.origin, parents)
            self.store.record_proposal(proposal.key, cid)
            results: dict[str, Any] = {}
            for task in self.config.tasks:
                steps = self._steps_for(task)
                cached = self.store.result_for(fp, task, self.train_seeds[0], steps)
                if cached is not None and cached.status in ("done", "rejected"):
                    results[task] = cached.metrics or {"status": cached.status}
                    continue
                waiting = self._pending_for(fp, task)
                if waiting is not None:
                    self.pending[waiting]["waiters"].append(proposal.key)
                    continue
                eval_id = self.store.queue_evaluation(cid, task, self.train_seeds[0], steps)
                self.pending[eval_id] = {"kind": "search", "task": task, "fp": fp, "cid": cid,
                                         "candidate": candidate.to_json(), "waiters": [proposal.key]}
                to_submit.append((eval_id, task))
            self.open_proposals[proposal.key] = {"proposal": proposal.to_json(), "results": results}
            if to_submit:
                self.trained += 1
            else:
                self.cache_hits += 1
            complete = self._maybe_tell(proposal.key)
            self._snapshot()
        self._ready.extend(eval_id for eval_id, _task in to_submit)
        if complete is not None:
            main = _result_or_none(results.get(self.config.task) or {})
            score = main.value if main is not None and main.ok else None  # raw, like result events
            self._emit("cache", {"formula": formula, "fingerprint": fp, "score": score})
        return True

    def _pending_for(self, fp: str, task: str) -> int | None:
        for eval_id, info in self.pending.items():
            if info["fp"] == fp and info["task"] == task:
                return eval_id
        return None

    def _steps_for(self, task: str) -> int:
        return self.config.steps_for(task)

    def _payload(self, eval_ids: list[int]) -> dict[str, Any]:
        infos = [self.pending[e] for e in eval_ids]
        task = infos[0]["task"]
        payload: dict[str, Any] = {
            "task": task,
            "budget": self._steps_for(task),
            "seed": list(self.train_seeds),
            "seeds": len(self.train_seeds),
            "ladder": infos[0]["kind"] != BASELINE and self.config.ladder,
        }
        if len(infos) == 1:
            payload["candidate"] = infos[0]["candidate"]
        else:
            payload["candidates"] = [info["candidate"] for info in infos]
        config = self.config.task_config_for(task)
        if config:
            payload["task_config"] = config
        if self.config.device != "auto":  # auto: each worker picks (cuda when it sees a GPU)
            payload["device"] = self.config.device
        return payload

    def _flush(self, executor: Executor, partial: bool) -> None:
        """Hand ready evaluations to the executor: packs of up to `config.pack` evaluations of
        one task and kind (search or baseline), one job each, while worker slots are free."""
        while self._ready and len(self._jobs) < executor.capacity:
            first = self.pending[self._ready[0]]
            group = [e for e in self._ready
                     if self.pending[e]["task"] == first["task"] and
                     (self.pending[e]["kind"] == BASELINE) == (first["kind"] == BASELINE)][: self.config.pack]
            if len(group) < self.config.pack and not partial:
                return
            for e in group:
                self._ready.remove(e)
            job_id = "e" + "-".join(map(str, group))
            self._jobs[job_id] = group
            executor.submit(Job(job_id, self._payload(group), self.config.timeout_s * len(group)))
            with self.store.transaction():  # `status` shows them running (resume requeues them)
                for e in group:
                    self.store.mark_running(e, None)

    def _resubmit_pending(self, executor: Executor) -> None:
        in_flight = {e.id for e in self.store.in_flight()}
        for eval_id in sorted(self.pending):
            if eval_id in in_flight:
                self._ready.append(eval_id)
            else:  # finished but the snapshot predates it: cannot happen with one transaction
                self.store.log(f"dropping stale pending evaluation {eval_id}")
                del self.pending[eval_id]
        self._flush(executor, partial=True)

    def _submit_baselines(self, executor: Executor) -> None:
        with self.store.transaction():
            for name in self.config.baseline_names():
                ref = get_reference(name)
                candidate = ref.candidate()
                fp = candidate.fingerprint()
                formula, canonical = candidate.describe()
                cid, _ = self.store.add_candidate(fp, candidate.kind, formula, canonical,
                                                  {"reference": ref.name}, BASELINE, [])
                for task in self.config.tasks:
                    steps = self._steps_for(task)
                    if self.store.result_for(fp, task, self.train_seeds[0], steps) is not None:
                        continue
                    eval_id = self.store.queue_evaluation(cid, task, self.train_seeds[0], steps)
                    self.pending[eval_id] = {"kind": BASELINE, "task": task, "fp": fp, "cid": cid,
                                             "candidate": candidate.to_json(), "waiters": [],
                                             "name": ref.name}
            self.baselines_submitted = True
            self._snapshot()
        submitted = {e for group in self._jobs.values() for e in group} | set(self._ready)
        self._ready.extend(e for e, info in sorted(self.pending.items())
                           if info["kind"] == BASELINE and e not in submitted)
        self._flush(executor, partial=True)

    # -- results ----------------------------------------------------------------------------
    def _record(self, job: JobResult) -> None:
        eval_ids = self._jobs.pop(job.job_id, None)
        if eval_ids is None:
            return
        if self._stop.is_set() and not job.ok:
            # a Ctrl-C also reaches worker processes: what died with it is not the candidate's
            # fault, so it stays queued for `resume` instead of being recorded as failed
            return
        values: list[dict[str, Any] | None] = [None] * len(eval_ids)
        if job.ok and job.value is not None:
            if "results" in job.value and len(job.value["results"]) == len(eval_ids):
                values = list(job.value["results"])
            elif len(eval_ids) == 1:
                values = [job.value]
            elif job.value.get("status") == "error":
                values = [job.value] * len(eval_ids)
        for eval_id, value in zip(eval_ids, values, strict=True):
            if eval_id in self.pending:
                self._record_one(eval_id, job, value)

    def _record_one(self, eval_id: int, job: JobResult, value: dict[str, Any] | None) -> None:
        info = self.pending[eval_id]
        result: EvalResult | None = None
        if job.ok and value is not None and value.get("status") != "error":
            result = EvalResult.from_json(value)
            status, stage, reason = result.status, result.stage, result.reason
            score = result.value if result.ok else None  # raw: the leaderboard knows the direction
            metrics: dict[str, Any] = value
            cost = result.seconds
        else:
            status, stage, score, cost = "failed", "worker", None, job.elapsed_s
            reason = (value or {}).get("error") if job.ok else f"{job.status}: {job.error or ''}".strip()
            metrics = {"status": "failed", "executor_status": job.status, "error": reason}
        with self.store.transaction():
            if job.worker:
                self.store.mark_running(eval_id, job.worker)
            self.store.finish_evaluation(eval_id, status, score, metrics, stage, reason, cost)
            del self.pending[eval_id]
            for key in info["waiters"]:
                entry = self.open_proposals.get(key)
                if entry is not None:
                    entry["results"][info["task"]] = metrics
                    self._maybe_tell(key)
            self._snapshot()
        formula = self.store.candidate(info["cid"]).formula
        self._emit(BASELINE if info["kind"] == BASELINE else "result", {
            "eval_id": eval_id, "candidate_id": info["cid"], "formula": formula, "task": info["task"],
            "status": status, "stage": stage, "reason": reason, "score": score,
            "seconds": cost, "worker": job.worker, "trained": self.trained, "budget": self.config.budget,
            "in_flight": len(self._jobs), "name": info.get("name"),
        })

    def _maybe_tell(self, key: int) -> Outcome | None:
        entry = self.open_proposals[key]
        if set(entry["results"]) != set(self.config.tasks):
            return None
        results = {task: _result_or_none(metrics) for task, metrics in entry["results"].items()}
        outcome = outcome_from_results(results, self.config.objectives)
        self.strategy.tell(Proposal.from_json(entry["proposal"]), outcome)
        del self.open_proposals[key]
        return outcome

    # -- reporting ---------------------------------------------------------------------------
    def leaderboard(self, top: int = 10, include_baselines: bool = True) -> list[LeaderboardEntry]:
        entries = self.store.leaderboard(top=10_000, task=self.config.task, budget=self._steps_for(self.config.task),
                                         higher_is_better=self.config.metric.higher_is_better)
        if not include_baselines:
            entries = [e for e in entries if e.candidate.origin != BASELINE]
        return entries[:top]

    def best_baseline(self) -> float | None:
        scores = [e.mean for e in self.leaderboard(top=10_000) if e.candidate.origin == BASELINE]
        return self.config.metric.best([s for s in scores if s is not None])

    def summary(self, state: str) -> SearchSummary:
        entries = self.leaderboard(top=1, include_baselines=False)
        return SearchSummary(self.store.path, state, self.trained, self.proposals, self.cache_hits,
                             entries[0] if entries else None, self.best_baseline(), self.elapsed_s,
                             self.config.metric.name)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Search:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(SearchEvent(kind, data))


def _result_or_none(metrics: dict[str, Any]) -> EvalResult | None:
    if not metrics or metrics.get("status") in ("failed", "error") and "candidate" not in metrics:
        return None
    try:
        return EvalResult.from_json(metrics)
    except (KeyError, TypeError, ValueError):
        return None


def _entry_json(entry: LeaderboardEntry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {"candidate_id": entry.candidate.id, "formula": entry.candidate.formula,
            "mean": entry.mean, "std": entry.std, "n": entry.n}


def _check_runs_dir(runs_dir: Path) -> None:
    """--runs-dir must be a directory or creatable as one (not a file, not under a file)."""
    for folder in (runs_dir, *runs_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(f"--runs-dir {runs_dir}: {folder} is a file, not a directory")
            return


def _check_executor(config: SearchConfig) -> None:
    """What the executor would refuse, without starting one (see `check_backend`)."""
    from afsearch.execute import check_backend

    check_backend(config.backend, config.ray_address, config.cpus_per_trial, config.gpus_per_trial,
                  config.workers)


def _check_strategy(config: SearchConfig, space: SearchSpace) -> None:
    """Build the strategy once with its options and no storage (Optuna: in memory), so a bad
    option value (population=-5, population=abc, crossover_prob=2) is refused up front."""
    from afsearch.search.strategies import make_strategy

    options = {k: v for k, v in config.strategy_options.items() if k not in ("storage", "study_name")}
    try:
        make_strategy(config.strategy or "", space, random.Random(0), seeds=[], **options)
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. int("abc") inside the strategy
        raise ConfigError(f"strategy {config.strategy!r}: bad option value ({shorten(str(exc), 120)}); "
                          f"options given: {shorten(options, 120)}") from None


def executor_for(config: SearchConfig) -> Executor:
    """The executor a run's config asks for; a joined Ray cluster also gets the folder of the
    main user task's file (`afsearch.execute._ray.ship_env`)."""
    files = [r["file"] for r in config.user_tasks.values() if "file" in r]
    options = {"ship_dir": str(Path(files[0]).parent)} if files and config.backend == "ray" else {}
    return make_executor(config.backend, ray_address=config.ray_address, cpus_per_trial=config.cpus_per_trial,
                         gpus_per_trial=config.gpus_per_trial, num_workers=config.workers, **options)


def _record_user_tasks(config: SearchConfig) -> None:
    """Import every user task (its errors are the user's, in one line), write its reference
    canonically (absolute file path) and record what read-only commands and `resume` need:
    `SearchConfig.user_tasks`. Packing needs an MLP the packed trainer can stack."""
    from afsearch.evaluate.custom import parse_reference, resolve_task, task_record
    from afsearch.evaluate.packed import packable
    from afsearch.evaluate.tasks import is_reference

    def canonical(task: str) -> str:
        return parse_reference(task).canonical if is_reference(task) else task

    config.task = canonical(config.task)
    config.extra_tasks = [canonical(t) for t in config.extra_tasks]
    config.user_tasks = {t: task_record(t, config.task_config_for(t)) for t in config.tasks if is_reference(t)}
    if config.pack > 1:
        for ref in config.user_tasks:
            task = resolve_task(ref, config.task_config_for(ref))
            model = task.model(nn.ReLU)
            if not packable(model):
                raise ConfigError(f"--pack {config.pack}: the model of task {ref} ({type(model).__name__}) is not "
                                  "an nn.Sequential of Linear layers and activations, which packed training "
                                  "stacks; drop --pack")


def _check_user_tasks_unchanged(config: SearchConfig, allow_changed: bool) -> bool:
    """Refuse to resume when a user task's file changed or vanished; with `allow_changed`,
    record the new hash instead. True when the record changed."""
    from afsearch.evaluate.custom import check_unchanged, file_sha256

    updated = False
    for ref, record in config.user_tasks.items():
        check_unchanged(ref, record, allow_changed)
        path = Path(record.get("file", ""))
        if "sha256" in record and path.is_file() and file_sha256(path) != record["sha256"]:
            record["sha256"] = file_sha256(path)  # allowed: the next resume compares with this one
            updated = True
    return updated


def _task_options(config: SearchConfig, task: str) -> set[str]:
    """The config fields of a built-in task (none for a user task)."""
    import dataclasses

    from afsearch.evaluate import TASKS

    return {f.name for f in dataclasses.fields(TASKS[task].config)} if task in TASKS else set()


def _check_tasks(config: SearchConfig, space: SearchSpace) -> None:
    from afsearch.evaluate import TASKS
    from afsearch.evaluate.tasks import layer_tasks, resolve_task_config

    for task in config.tasks:
        try:  # names, keys and values of the task config, checked before any worker sees them
            resolve_task_config(task, config.task_config_for(task))
        except TaskError as exc:
            raise ConfigError(str(exc)) from exc
    for name in config.baseline_names():
        needs = get_reference(name).candidate().task_overrides()
        for task in config.tasks:
            options = _task_options(config, task)
            missing = sorted(set(needs) - options)
            if missing:
                raise ConfigError(f"baseline {name} fixes the task option(s) {', '.join(missing)}, which task "
                                  f"{task} does not have; drop it from --baselines (it is for lm-transformer)")
    probe = space.to_candidate(space.sample(random.Random(0)))
    if probe.is_layer:
        wrong = [t for t in config.tasks
                 if not (config.user_tasks[t]["layers"] if t in config.user_tasks else TASKS[t].layers)]
        if wrong:
            raise ConfigError(f"space {config.space!r} searches normalization-activation layers, which "
                              f"task(s) {', '.join(wrong)} cannot use; choose one of {', '.join(layer_tasks())}")


__all__ = ["Search", "SearchConfig", "SearchEvent", "SearchSummary", "outcome_from_results"]
