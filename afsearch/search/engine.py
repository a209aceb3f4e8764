"""The search engine: strategy -> candidate -> store -> executor -> store -> strategy.

    from afsearch import Search, SearchConfig
    search = Search.create(SearchConfig(space="swish", task="mnist1d-mlp", budget=30))
    summary = search.run()            # blocks; Ctrl-C stops cleanly and keeps the run resumable
    search.leaderboard(top=5)
    Search.resume("runs/<name>").run()

The engine owns the loop and the bookkeeping; the strategy only proposes and learns, the
executor only runs jobs, the evaluator only trains. Requests and replies cross the executor as
`afsearch.evaluate.protocol` records. After every proposal and every result the engine commits
one transaction holding the store rows *and* a JSON snapshot of the strategy and of its own
pending work (`afsearch.search.state`), so a search killed at any point resumes from the last
commit: in-flight evaluations are queued again, random streams continue where they were.

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
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from afsearch.defaults import DONE, REJECTED
from afsearch.errors import AfsearchError, ConfigError, RunStoreError
from afsearch.evaluate.ladder import LadderConfig
from afsearch.evaluate.protocol import EvalReply, EvalRequest
from afsearch.evaluate.result import EvalResult
from afsearch.execute import Executor, Job, JobResult
from afsearch.reference import get_reference
from afsearch.search import preflight
from afsearch.search.config import SearchConfig, task_metric
from afsearch.search.events import SearchEvent, SearchSummary, entry_json
from afsearch.search.objectives import outcome_from_results
from afsearch.search.schedulers import Finished, make_scheduler
from afsearch.search.seeding import derive_seed
from afsearch.search.state import SEARCH, EngineState, OpenProposal, PendingEval
from afsearch.search.strategies.base import Outcome, Strategy
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
#: how a run created with a strategy object records it (the object itself cannot be stored)
OBJECT_STRATEGY_PREFIX = "object:"

#: what `Search.create(strategy=...)` takes besides a name in the config: a Strategy subclass
#: (built by the engine with the space, the run's derived random stream and the space's
#: seeds) or a ready Strategy object
StrategyArg = type[Strategy] | Strategy | None


@dataclass
class _InFlight:
    """A job handed to the executor: the evaluations it carries and what was asked."""

    eval_ids: list[int]
    request: EvalRequest


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
        self.scheduler = make_scheduler(config.scheduler)
        #: task -> eval_id -> what a finished search evaluation recorded for the scheduler
        #: (read from the store on first use, so a resumed run sees what it saw before)
        self._finished: dict[str, dict[int, Finished]] | None = None
        self.state = EngineState()  # persisted in every snapshot
        self._stop = threading.Event()
        self._jobs: dict[str, _InFlight] = {}  # job id -> its evaluations (several when packed)
        self._ready: list[int] = []  # queued evaluations not yet handed to the executor
        self._formed: list[list[int]] = []  # packs of an earlier run of this search, to submit again
        self._started = time.monotonic()
        self._elapsed_before = 0.0  # of earlier runs of this search (from the snapshot)
        self._references: dict[str, float | None] | None = None  # see `_baseline_references`

    @property
    def trained(self) -> int:
        return self.state.trained

    @property
    def proposals(self) -> int:
        return self.state.proposals

    @property
    def cache_hits(self) -> int:
        return self.state.cache_hits

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def create(cls, config: SearchConfig, runs_dir: str | Path = "runs", *,
               on_event: Callable[[SearchEvent], None] | None = None, strategy: StrategyArg = None) -> Search:
        """A new run. `strategy` overrides `config.strategy` with your own: a `Strategy`
        subclass or object (see `afsearch.search.strategies.base.Strategy`); the run records
        its class name, and `resume` then needs the same argument again."""
        from afsearch.search.strategies import STRATEGIES, default_strategy_for, strategy_options

        # Every refusal happens before RunStore.create: a corrected command must not then
        # fail with "already exists" on the directory a refused one left behind.
        config.validate()
        preflight.check_runs_dir(Path(runs_dir))
        preflight.record_user_tasks(config)
        space = load_space(config.space)
        if strategy is not None:
            config.strategy = _object_name(strategy)
        else:
            config.strategy = config.strategy or default_strategy_for(space, len(config.objectives))
            allowed = strategy_options(config.strategy)  # unknown names raise here, before any file exists
            answered = {"storage", "study_name", *getattr(STRATEGIES[config.strategy], "retired_options", ())}
            unknown = sorted(set(config.strategy_options) - set(allowed) - answered)
            if unknown:
                raise ConfigError(f"strategy {config.strategy!r} has no option(s) {', '.join(unknown)}; "
                                  f"allowed: {', '.join(sorted(allowed)) or 'none'}")
        _check_objectives(config, strategy)
        config.baselines = config.baseline_names()  # recorded in config.toml as resolved
        preflight.check_tasks(config, space)
        preflight.check_executor(config)
        preflight.resolve_pack(config)
        if strategy is None:
            preflight.check_strategy_options(config, space)
        short = config.strategy.rsplit(".", 1)[-1]
        name = config.name or f"{Path(config.space).stem}-{short}-{datetime.now():%Y%m%d-%H%M%S}"
        config.name = name
        store = RunStore.create(Path(runs_dir) / name, config.to_toml_dict())
        try:
            search = cls(store, config, space, cls._make_strategy(config, space, store, strategy),
                         on_event=on_event)
            search.store.log(f"created run {name}: space={config.space} task={config.task} "
                             f"strategy={config.strategy} budget={config.budget} seed={config.seed}")
            search._snapshot()
        except BaseException:
            store.close()
            raise
        return search

    @classmethod
    def resume(cls, run: str | Path, runs_dir: str | Path = "runs", *,
               on_event: Callable[[SearchEvent], None] | None = None,
               overrides: dict[str, Any] | None = None, allow_changed_task: bool = False,
               strategy: StrategyArg = None) -> Search:
        """Continue a run. A user task is imported again from its recorded file, which must be
        unchanged (same sha256) unless `allow_changed_task`. A run created with a strategy
        object needs it (or its class) again as `strategy`."""
        path = resolve_run(str(run), str(runs_dir))
        store = RunStore.open(path, "rw")
        try:
            data = dict(store.config)
            changed = {k: v for k, v in (overrides or {}).items() if v is not None and data.get(k) != v}
            data.update(changed)
            config = SearchConfig.from_dict(data, str(path / "config.toml"))
            _check_resumed_strategy(config, strategy)
            # checked like a new run, before anything is written (an edited config.toml may
            # name a task that does not exist)
            if preflight.check_user_tasks_unchanged(config, allow_changed_task):
                changed["user_tasks"] = config.user_tasks
            space = load_space(config.space)
            preflight.check_tasks(config, space)
            preflight.check_executor(config)
            preflight.resolve_pack(config)
            if changed:  # e.g. a raised budget: the next resume must see it too
                write_atomic(path / "config.toml", dumps_toml(config.to_toml_dict()))
                store.config = config.to_toml_dict()
                store.log("resumed with " + ", ".join(f"{k}={v}" for k, v in changed.items()))
            search = cls(store, config, space, cls._make_strategy(config, space, store, strategy),
                         on_event=on_event)
            snapshot = store.latest_state()
            if snapshot is None:
                raise RunStoreError(f"run {path} has no saved search state; it cannot be resumed")
            with store.reading():  # a damaged snapshot: one line naming the run, not a KeyError
                search.state, strategy_state = EngineState.from_json(snapshot[1], path)
                search.strategy.restore(strategy_state)
            requeued = store.requeue_in_flight()
            store.log(f"resumed; {len(requeued)} in-flight evaluation(s) queued again")
        except BaseException:
            store.close()
            raise
        return search

    @staticmethod
    def _make_strategy(config: SearchConfig, space: SearchSpace, store: RunStore,
                       strategy: StrategyArg) -> Strategy:
        from afsearch.search.strategies import STRATEGIES

        if isinstance(strategy, Strategy):
            return strategy
        cls = strategy if strategy is not None else STRATEGIES[config.strategy or ""]
        # what the strategy keeps in the run directory (an Optuna study), unless overridden
        options = {**cls.run_options(store.path, store.name), **config.strategy_options}
        seeds = space.seeds() if config.seed_population else []
        rng = random.Random(derive_seed(config.seed, "strategy"))
        try:
            return cls(space, rng, seeds, **options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"strategy {cls.__name__}: {exc}") from None

    # -- persistence -------------------------------------------------------------------------
    def _snapshot(self) -> None:
        self.state.elapsed_s = self.elapsed_s
        self.store.save_state(self.state.proposals, self.state.to_json(self.strategy.state()))

    @property
    def elapsed_s(self) -> float:
        return self._elapsed_before + (time.monotonic() - self._started)

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
        self._elapsed_before = self.state.elapsed_s
        self._started = time.monotonic()
        self.store.set_state("running")
        state = "stopped"
        try:
            if executor is None:
                executor = preflight.executor_for(self.config)
            # "done": results already recorded before this start, so a resumed run's progress
            # counts on from there instead of from 1
            waiting = sum(1 for info in self.state.pending.values() if not info.is_baseline)
            self._emit("start", {"run": str(self.store.path), "config": self.config.to_toml_dict(),
                                 "metric": self.config.metric.name,
                                 "higher_is_better": self.config.metric.higher_is_better,
                                 "capacity": executor.capacity, "trained": self.trained,
                                 "done": self.trained - waiting})
            self._resubmit_pending(executor)
            if not self.state.baselines_submitted:
                self._submit_baselines(executor)
            state = self._loop(executor)
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            if executor is not None:
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
            "best": entry_json(summary.best), "best_baseline": summary.best_baseline,
        })
        return summary

    def validate(self, top: int | None = None, seeds: int | None = None,
                 steps: int | None = None, shortlist: int | None = None) -> dict[str, Any]:
        """Retrain the best `top` candidates (default: `config.validate_top`) on `seeds` fresh
        seeds (default: `config.validate_seeds`) for `steps` (default: `validate_steps`, else
        the search's) beside the baselines, as `afsearch search` does after a finished search
        and `afsearch validate` on demand; recorded in the run. With `shortlist` (default:
        `config.shortlist`) > `top`, the `top` are the best of the best `shortlist` retrained on
        seeds of their own (`afsearch.search.validate`). Returns the report that `afsearch
        validate --json` prints: "rows" (formula, baseline, per_seed, mean, std, p_value,
        beats_baseline), "best_baseline", "test", "steps", "seeds", and "shortlist" if any."""
        from afsearch.search.validate import validate_run

        asked = {"validate_top": top, "validate_seeds": seeds, "validate_steps": steps, "shortlist": shortlist}
        config = replace(self.config, **{k: v for k, v in asked.items() if v is not None})
        config.validate()
        return validate_run(self.store, config, on_event=self.on_event)

    def _with_display(self, action: Callable[[], SearchSummary]) -> SearchSummary:
        from afsearch.report.progress import make_observer

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

    def _time_left(self) -> bool:
        return self.config.time_limit_s is None or self.elapsed_s < self.config.time_limit_s

    def _can_propose(self) -> bool:
        return (self._time_left() and self.trained < self.config.budget and not self.strategy.exhausted
                and self.proposals < self.config.budget * MAX_PROPOSALS_PER_EVAL)

    def _loop(self, executor: Executor) -> str:
        while not self._stop.is_set():
            can_propose = self._can_propose()
            stalled = False
            while can_propose and self._wants_more(executor) and not self._stop.is_set():
                if not self._propose():
                    stalled = True
                    break
                can_propose = self._can_propose()
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
        self.state.proposals += 1
        try:
            candidate = self.space.to_candidate(proposal.genotype)
            fp = candidate.fingerprint()
            formula, canonical = candidate.describe()
        except (AfsearchError, ValueError, ArithmeticError, RecursionError) as exc:
            self.state.invalid += 1
            with self.store.transaction():
                self.strategy.tell(proposal, Outcome(-math.inf, status="failed"))
                self._snapshot()
            self.store.log(f"invalid proposal {proposal.genotype!r}: {exc}")
            self._emit("invalid", {"genotype": proposal.genotype, "reason": str(exc)})
            return True
        queued: list[int] = []
        with self.store.transaction():
            parents = self.store.proposal_fingerprints(proposal.parents)
            cid, _ = self.store.add_candidate(fp, candidate.kind, formula, canonical, proposal.genotype,
                                              proposal.origin, parents)
            self.store.record_proposal(proposal.key, cid)
            results: dict[str, dict[str, Any]] = {}
            for task in self.config.tasks:
                cached = self.store.result_for(fp, task, self.train_seeds[0], self.config.steps_for(task))
                if cached is not None and cached.status in (DONE, REJECTED):
                    results[task] = cached.metrics or {"status": cached.status}
                    continue
                waiting = self.state.pending_for(fp, task)
                if waiting is not None:
                    self.state.pending[waiting].waiters.append(proposal.key)
                    continue
                eval_id = self.store.queue_evaluation(cid, task, self.train_seeds[0], self.config.steps_for(task))
                self.state.pending[eval_id] = PendingEval(SEARCH, task, fp, cid, candidate, [proposal.key])
                queued.append(eval_id)
            self.state.open_proposals[proposal.key] = OpenProposal(proposal, results)
            if queued:
                self.state.trained += 1
            else:
                self.state.cache_hits += 1
            complete = self._maybe_tell(proposal.key)
            self._snapshot()
        self._ready.extend(queued)
        if complete is not None:
            main = _result_or_none(results.get(self.config.task) or {})
            score = main.value if main is not None and main.ok else None  # raw, like result events
            self._emit("cache", {"formula": formula, "fingerprint": fp, "score": score})
        return True

    def _request(self, eval_ids: list[int]) -> EvalRequest:
        infos = [self.state.pending[e] for e in eval_ids]
        task = infos[0].task
        budget = self.config.steps_for(task)
        # baselines are never rejected: they are what the ladder compares with
        screened = self.config.ladder and not infos[0].is_baseline
        return EvalRequest(
            candidates=tuple(info.candidate for info in infos), task=task,
            budget=budget, seeds=tuple(self.train_seeds),
            ladder=LadderConfig(quality=self.scheduler.quality_gate) if screened else None,
            task_config=self.config.task_config_for(task),
            # auto: each worker picks (cuda when it sees a GPU)
            device=None if self.config.device == "auto" else self.config.device,
            schedule=self.scheduler.cutoffs(budget, self._history(task),
                                            task_metric(task, self.config.user_tasks)) if screened else None,
        )

    def _history(self, task: str) -> list[Finished]:
        """What the scheduler learns from: the finished search evaluations on `task` that
        recorded a curve, in proposal order."""
        if self._finished is None:
            self._finished = {}
            for record in self.store.evaluations():
                if record.status in (DONE, REJECTED) and record.metrics.get("curve"):
                    self._remember(record.id, record.task, record.status, record.metrics["curve"])
        runs = self._finished.get(task, {})
        return [runs[e] for e in sorted(runs)]

    def _remember(self, eval_id: int, task: str, status: str, curve: list[Any]) -> None:
        if self._finished is not None and curve:
            self._finished.setdefault(task, {})[eval_id] = Finished(
                tuple((int(s), float(v)) for s, v in curve), status == DONE)

    def _flush(self, executor: Executor, partial: bool) -> None:
        """Hand ready evaluations to the executor, one job per pack, while worker slots are
        free: first the packs an interrupted run had submitted (the same members again), then
        new packs of up to `config.pack` evaluations of one task and kind (search or baseline),
        in proposal order."""
        pending = self.state.pending
        while self._formed and len(self._jobs) < executor.capacity:
            self._submit(executor, self._formed.pop(0), new=False)
        while self._ready and len(self._jobs) < executor.capacity:
            first = pending[self._ready[0]]
            group = [e for e in self._ready
                     if pending[e].task == first.task and pending[e].is_baseline == first.is_baseline][: self.config.pack]
            if len(group) < self.config.pack and not partial:
                return
            for e in group:
                self._ready.remove(e)
            self._submit(executor, group, new=True)

    def _submit(self, executor: Executor, group: list[int], new: bool) -> None:
        job_id = "e" + "-".join(map(str, group))
        request = self._request(group)
        self._jobs[job_id] = _InFlight(group, request)
        executor.submit(Job(job_id, request.to_json(), self.config.timeout_s * len(group)))
        with self.store.transaction():  # `status` shows them running (resume requeues them)
            for e in group:
                self.store.mark_running(e, None)
            if new:  # the pack's members, recorded with its number in the snapshot
                for e in group:
                    self.state.pending[e].pack = self.state.packs_formed
                self.state.packs_formed += 1
                self._snapshot()

    def _resubmit_pending(self, executor: Executor) -> None:
        in_flight = {e.id for e in self.store.in_flight()}
        packs: dict[int, list[int]] = {}
        for eval_id in sorted(self.state.pending):
            info = self.state.pending[eval_id]
            if eval_id not in in_flight:  # finished but the snapshot predates it: cannot happen with one transaction
                self.store.log(f"dropping stale pending evaluation {eval_id}")
                del self.state.pending[eval_id]
            elif info.pack is None:
                self._ready.append(eval_id)
            else:
                packs.setdefault(info.pack, []).append(eval_id)
        self._formed = [packs[p] for p in sorted(packs)]
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
                    steps = self.config.steps_for(task)
                    if self.store.result_for(fp, task, self.train_seeds[0], steps) is not None:
                        continue
                    eval_id = self.store.queue_evaluation(cid, task, self.train_seeds[0], steps)
                    self.state.pending[eval_id] = PendingEval(BASELINE, task, fp, cid, candidate, [], ref.name)
            self.state.baselines_submitted = True
            self._tell_deferred()  # every baseline may already have a result (a resumed run)
            self._snapshot()
        submitted = {e for job in self._jobs.values() for e in job.eval_ids} | set(self._ready)
        self._ready.extend(e for e, info in sorted(self.state.pending.items())
                           if info.is_baseline and e not in submitted)
        self._flush(executor, partial=True)

    # -- results ----------------------------------------------------------------------------
    def _record(self, job: JobResult) -> None:
        in_flight = self._jobs.pop(job.job_id, None)
        if in_flight is None:
            return
        if self._stop.is_set() and not job.ok:
            # a Ctrl-C also reaches worker processes: what died with it is not the candidate's
            # fault, so it stays queued for `resume` instead of being recorded as failed
            return
        reply = EvalReply.from_job(in_flight.request, job)
        events = []
        with self.store.transaction():  # a pack's results commit together: resume never splits it
            for eval_id, result in zip(in_flight.eval_ids, reply.results, strict=True):
                if eval_id in self.state.pending:
                    events.append(self._record_one(eval_id, job.worker, result))
            self._tell_deferred()
            self._snapshot()
        for event in events:
            self._emit(*event)

    def _record_one(self, eval_id: int, worker: str, result: EvalResult) -> tuple[str, dict[str, Any]]:
        """Record one result (inside the caller's transaction); returns the event to emit."""
        info = self.state.pending[eval_id]
        score = result.value if result.ok else None  # raw: the leaderboard knows the direction
        metrics = result.to_json()
        if worker:
            self.store.mark_running(eval_id, worker)
        self.store.finish_evaluation(eval_id, result.status, score, metrics, result.stage, result.reason,
                                     result.seconds)
        if not info.is_baseline and result.status in (DONE, REJECTED):
            self._remember(eval_id, info.task, result.status, result.curve)
        del self.state.pending[eval_id]
        for key in info.waiters:
            entry = self.state.open_proposals.get(key)
            if entry is not None:
                entry.results[info.task] = metrics
                self._maybe_tell(key)
        formula = self.store.candidate(info.cid).formula
        return (BASELINE if info.is_baseline else "result", {
            "eval_id": eval_id, "candidate_id": info.cid, "formula": formula, "task": info.task,
            "status": result.status, "stage": result.stage, "reason": result.reason, "score": score,
            "seconds": result.seconds, "worker": worker, "trained": self.trained, "budget": self.config.budget,
            "in_flight": len(self._jobs), "name": info.name,
        })

    def _maybe_tell(self, key: int) -> Outcome | None:
        entry = self.state.open_proposals[key]
        if set(entry.results) != set(self.config.tasks):
            return None
        references = None
        if len(self.config.tasks) > 1:
            references = self._baseline_references()
            if references is None:
                return None  # told once the baselines are in (`_tell_deferred`)
        results = {task: _result_or_none(metrics) for task, metrics in entry.results.items()}
        outcome = outcome_from_results(results, self.config.objectives, references, self.config.task_aggregate)
        self.strategy.tell(entry.proposal, outcome)
        del self.state.open_proposals[key]
        return outcome

    def _baseline_references(self) -> dict[str, float | None] | None:
        """Task -> the search score of its best baseline (None where every baseline failed or
        none was asked for), once no baseline is still queued or training (None before): a
        search on several tasks ranks every candidate by its deltas to these, so it waits for
        all of them rather than compare with a partial set."""
        if self._references is not None:
            return self._references
        if not self.state.baselines_submitted or any(i.is_baseline for i in self.state.pending.values()):
            return None
        from afsearch.report.runs import best_baseline_of

        references: dict[str, float | None] = {}
        for task in self.config.tasks:
            metric = task_metric(task, self.config.user_tasks)
            entries = self.store.leaderboard(top=None, task=task, budget=self.config.steps_for(task),
                                             higher_is_better=metric.higher_is_better)
            references[task] = best_baseline_of(entries, metric)
        self._references = references  # baselines train once per run: final from here on
        return references

    def _tell_deferred(self) -> None:
        """Tell the proposals that waited for the baselines (inside the caller's transaction)."""
        if len(self.config.tasks) > 1 and self.state.open_proposals and self._baseline_references() is not None:
            for key in list(self.state.open_proposals):
                self._maybe_tell(key)

    # -- reporting ---------------------------------------------------------------------------
    def leaderboard(self, top: int = 10, include_baselines: bool = True) -> list[LeaderboardEntry]:
        """The main task's entries, best first: on several tasks in the order of the run's
        aggregate (`afsearch.report.runs.leaderboard_rows`), listing only candidates scored on
        every task."""
        entries = self.store.leaderboard(top=10_000, task=self.config.task,
                                         budget=self.config.steps_for(self.config.task),
                                         higher_is_better=self.config.metric.higher_is_better)
        if len(self.config.tasks) > 1:
            from afsearch.report.runs import leaderboard_rows

            order = {row["id"]: i for i, row in enumerate(leaderboard_rows(self.store, top=10_000))}
            entries = sorted((e for e in entries if e.candidate.id in order), key=lambda e: order[e.candidate.id])
        if not include_baselines:
            entries = [e for e in entries if e.candidate.origin != BASELINE]
        return entries[:top]

    def best_baseline(self) -> float | None:
        from afsearch.report.runs import best_baseline_of

        return best_baseline_of(self.leaderboard(top=10_000), self.config.metric)

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


def _object_name(strategy: type[Strategy] | Strategy) -> str:
    cls = strategy if isinstance(strategy, type) else type(strategy)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(f"strategy must be a name, a Strategy subclass or a Strategy object, got "
                          f"{type(strategy).__name__}")
    return f"{OBJECT_STRATEGY_PREFIX}{cls.__module__}.{cls.__qualname__}"


def _check_objectives(config: SearchConfig, strategy: StrategyArg) -> None:
    """Objectives besides accuracy are ranked only by a multi-objective strategy (nsga2); any
    other would ignore them without a word."""
    from afsearch.search.strategies import STRATEGIES

    extra = [o for o in config.objectives if o != "accuracy"]
    cls = (strategy if isinstance(strategy, type) else type(strategy)) if strategy is not None \
        else STRATEGIES[config.strategy or ""]
    if extra and not cls.multi_objective:
        multi = ", ".join(name for name, c in STRATEGIES.items() if c.multi_objective)
        raise ConfigError(f"objective(s) {', '.join(extra)} need a multi-objective strategy ({multi}); "
                          f"strategy {config.strategy!r} ranks by the main score only")


def _check_resumed_strategy(config: SearchConfig, strategy: StrategyArg) -> None:
    recorded = config.strategy or ""
    if recorded.startswith(OBJECT_STRATEGY_PREFIX):
        if strategy is None:
            raise ConfigError(f"this run was created with a strategy object ({recorded[len(OBJECT_STRATEGY_PREFIX):]}); "
                              "resume it from Python with Search.resume(run, strategy=...)")
        if _object_name(strategy) != recorded:
            raise ConfigError(f"this run was created with strategy {recorded[len(OBJECT_STRATEGY_PREFIX):]}, "
                              f"not {_object_name(strategy)[len(OBJECT_STRATEGY_PREFIX):]}")
    elif strategy is not None:
        raise ConfigError(f"this run uses strategy {recorded!r}; resume it without a strategy argument")


__all__ = ["Search", "SearchConfig", "SearchEvent", "SearchSummary", "outcome_from_results"]
