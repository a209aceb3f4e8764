"""Optuna strategies: TPE ("tpe") and CMA-ES ("cmaes") over a space's parameters.

Parameters come from the space:

- ``space.continuous`` {name: (low, high)} are floats (log scale for names in
  ``space.log_scale``, when the space has it), and ``space.choices`` {name: [choices]} are
  categoricals; ``space.from_params(params)`` builds the genotype (and ``space.to_params``,
  when present, maps a seed back to parameters);
- a finite space with neither is searched as one categorical ``index`` over `enumerate()`
  (up to `MAX_INDEX_CHOICES` members).

CMA-ES needs continuous parameters (it hands categoricals to Optuna's independent sampler).

Each proposal is one Optuna trial, asked with `study.ask(distributions)`; its number is in
``proposal.extra["trial"]``. Results are told back by number: "done" as the score (COMPLETE),
"rejected" (the quality gate stopped it) as PRUNED after reporting its intermediate values,
"failed" or non-finite as FAIL. With a pruner ("median", "sha", "hyperband"), the
intermediate values of a finished result are replayed through `trial.report`/`should_prune`
and the trial is PRUNED at the first step where the pruner would have stopped it (workers are
remote, so pruning is judged when the result comes back); `should_stop` asks the pruner about
a running evaluation for an engine that streams intermediate values.

Determinism and resume: a sampler's random state lives in memory, so a fresh sampler seeded
from the strategy's rng is installed before every ask; the rng is in `state()`, so a resumed
search proposes exactly what an uninterrupted one would. With ``storage`` (e.g.
"sqlite:///runs/x/optuna.db") the study lives in that database and is reloaded by
``study_name``; trials that a crash left running, asked after the restored snapshot, are taken
over by the next asks (they were sampled from the same seed and history, so the run continues
exactly; one without parameters is marked FAIL). Without storage (in memory) `state()` carries the trial history (no pickles: CMA-ES's
pickled optimizer is left out, so an in-memory CMA-ES resumes with a fresh optimizer, not
identically; give it a storage to resume exactly)."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    distribution_to_json,
    json_to_distribution,
)
from optuna.trial import FrozenTrial, TrialState, create_trial

from afsearch.errors import ConfigError
from afsearch.search.strategies.base import Outcome, Proposal, Strategy, genotype_id
from afsearch.spaces.base import Genotype, SearchSpace

#: the largest finite space searched as a categorical over its enumeration
MAX_INDEX_CHOICES = 100_000

PRUNERS = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "sha": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
}


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs every trial at INFO; keep it to warnings for the block only."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


class ParamSpace:
    """How a space's genotypes map to Optuna parameters and back."""

    def __init__(self, space: SearchSpace, strategy: str) -> None:
        self.space = space
        continuous = dict(space.continuous)
        categorical = dict(space.choices or {})
        self.index: list[Genotype] | None = None
        self._index_of: dict[str, int] = {}
        if continuous or categorical:
            if type(space).from_params is SearchSpace.from_params:
                raise ConfigError(f"strategy {strategy!r}: space {space.name!r} has parameters "
                                  "but no from_params(params) to build a genotype from them")
            log = set(getattr(space, "log_scale", ()) or ())
            self.distributions: dict[str, BaseDistribution] = {
                k: FloatDistribution(float(lo), float(hi), log=k in log) for k, (lo, hi) in continuous.items()
            }
            self.distributions.update({k: CategoricalDistribution(list(v)) for k, v in categorical.items()})
        elif space.is_finite and (space.size() or 0) <= MAX_INDEX_CHOICES:
            self.index = list(space.enumerate())
            self._index_of = {genotype_id(g): i for i, g in enumerate(self.index)}
            self.distributions = {"index": CategoricalDistribution(list(range(len(self.index))))}
        else:
            raise ConfigError(
                f"strategy {strategy!r} needs a space with continuous or categorical parameters, or a "
                f"finite one of at most {MAX_INDEX_CHOICES} members; space {space.name!r} has none "
                f"(size {space.size()}); use evolution, gp or random"
            )

    def genotype(self, params: dict[str, Any]) -> Genotype:
        if self.index is not None:
            return self.index[params["index"]]
        return self.space.from_params(dict(params))  # type: ignore[attr-defined]

    def params(self, genotype: Genotype) -> dict[str, Any] | None:
        """The parameters of a genotype (for seeds), or None when they cannot be known."""
        if self.index is not None:
            i = self._index_of.get(genotype_id(genotype))
            return None if i is None else {"index": i}
        if hasattr(self.space, "to_params"):
            return dict(self.space.to_params(genotype))
        if isinstance(genotype, dict) and set(self.distributions) <= set(genotype):
            return {k: genotype[k] for k in self.distributions}
        return None


class OptunaStrategy(Strategy):
    name = "tpe"
    defaults: dict[str, Any] = {"storage": None, "study_name": None, "pruner": "none", "n_startup_trials": 10}

    def __init__(self, space: SearchSpace, rng: random.Random, seeds: list[Genotype] | None = None,
                 **options: Any) -> None:
        super().__init__(space, rng, seeds, **options)
        opts = self.resolve_options(self.defaults)
        self.storage: str | None = opts["storage"]
        self.study_name: str = opts["study_name"] or f"afsearch-{space.name}-{self.name}"
        if opts["pruner"] not in PRUNERS:
            raise ConfigError(f"strategy {self.name!r}: unknown pruner {opts['pruner']!r}; allowed: {', '.join(PRUNERS)}")
        self.pruner_name: str = opts["pruner"]
        self.n_startup_trials = int(opts["n_startup_trials"])
        self.params = ParamSpace(space, self.name)
        self.check_space()
        self.pending: list[int] = []  # trial numbers asked and not told
        self.orphans: list[int] = []  # running trials a crashed run asked after its last snapshot
        self.study = self._create_study()

    def check_space(self) -> None:
        pass

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)

    def _create_study(self) -> optuna.Study:
        with quiet_optuna():
            return optuna.create_study(
                storage=self.storage, study_name=self.study_name, direction="maximize",
                sampler=self.make_sampler(0), pruner=PRUNERS[self.pruner_name](), load_if_exists=True,
            )

    # -- ask / tell ----------------------------------------------------------------------------
    def ask(self) -> Proposal | None:
        seed = self.seeds[0] if self.seeds else None
        fixed = self.params.params(seed) if seed is not None else None
        if seed is not None and fixed is None:
            return self.seed_proposal()  # parameters unknown: evaluated outside the study
        sampler_seed = self.rng.getrandbits(32)
        number, params = self._reuse_orphan()
        if number is None:
            with quiet_optuna():
                self.study.sampler = self.make_sampler(sampler_seed)
                if fixed is not None:
                    self.study.enqueue_trial(fixed, skip_if_exists=False)
                trial = self.study.ask(self.params.distributions)
            number, params = trial.number, dict(trial.params)
        self.pending.append(number)
        extra = {"trial": number, "params": params}
        if seed is not None:
            self.seeds.pop(0)
            return Proposal(seed, self.new_key(), "seed", extra=extra)
        return Proposal(self.params.genotype(params), self.new_key(), self.name, extra=extra)

    def _reuse_orphan(self) -> tuple[int | None, dict[str, Any]]:
        """A trial asked after the last snapshot of a crashed run (see `restore`). It was asked
        with the same sampler seed and the same history as this ask, so taking it over is
        exactly what an uninterrupted run does; one without our parameters is failed."""
        while self.orphans:
            frozen = self.study.get_trials(deepcopy=False)[self.orphans.pop(0)]
            if set(frozen.params) == set(self.params.distributions):
                return frozen.number, dict(frozen.params)
            with quiet_optuna():
                self.study.tell(frozen.number, state=TrialState.FAIL)
        return None, {}

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        self.record(proposal, outcome)
        number = proposal.extra.get("trial")
        if number is None:
            return
        if number in self.pending:
            self.pending.remove(number)
        live = self._trial(number)
        if live is None:
            return  # already finished (a repeated tell, or told before a crash)
        with quiet_optuna():
            if outcome.status == "failed" or (outcome.status == "done" and not math.isfinite(outcome.score)):
                self.study.tell(number, state=TrialState.FAIL)
                return
            pruned = self._report(*live, outcome.intermediate, judge=outcome.status == "done")
            if outcome.status == "rejected" or pruned:
                self.study.tell(number, state=TrialState.PRUNED)
            else:
                self.study.tell(number, outcome.score)

    def should_stop(self, proposal: Proposal, intermediate: list[tuple[int, float]]) -> bool:
        number = proposal.extra.get("trial")
        live = None if number is None else self._trial(number)
        if live is None or self.pruner_name == "none":
            return False
        with quiet_optuna():
            return self._report(*live, intermediate, judge=True)

    def _report(self, trial: optuna.Trial, frozen: FrozenTrial, intermediate: list[tuple[int, float]],
                judge: bool) -> bool:
        """Report new intermediate values in step order; with `judge`, stop at (and return True
        for) the first step where the pruner says prune."""
        reported = set(frozen.intermediate_values)
        for step, value in sorted(intermediate):
            if step in reported or step < 0:
                continue
            trial.report(float(value), int(step))
            reported.add(step)
            if judge and self.pruner_name != "none" and trial.should_prune():
                return True
        return False

    def _trial(self, number: int) -> tuple[optuna.Trial, FrozenTrial] | None:
        """A live handle on a running trial of the study and its record (None when finished)."""
        storage = self.study._storage  # Optuna has no public lookup of a trial by number
        trial_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        frozen = storage.get_trial(trial_id)
        if frozen.state.is_finished():
            return None
        return optuna.Trial(self.study, trial_id), frozen

    # -- persistence ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        data = {**super().state(), "pending": list(self.pending), "study_name": self.study_name}
        if self.storage is None:
            data["trials"] = [_trial_to_json(t) for t in self.study.get_trials(deepcopy=False)]
        return data

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.pending = [int(n) for n in state["pending"]]
        if state.get("study_name"):
            self.study_name = state["study_name"]
        if self.storage is None:
            with quiet_optuna():
                self.study = self._create_study()  # a fresh in-memory study, refilled
                for data in state.get("trials", []):
                    self.study.add_trial(_trial_from_json(data))
            return
        self.study = self._create_study()
        known = set(self.pending)
        self.orphans = sorted(t.number for t in self.study.get_trials(
            deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)) if t.number not in known)

    def best_trial_params(self) -> dict[str, Any] | None:
        """The parameters of Optuna's best COMPLETE trial (None before any)."""
        try:
            return dict(self.study.best_trial.params)
        except ValueError:
            return None


class CmaEsStrategy(OptunaStrategy):
    name = "cmaes"
    defaults: dict[str, Any] = {"storage": None, "study_name": None, "pruner": "none", "n_startup_trials": 1}

    def check_space(self) -> None:
        if not self.space.continuous:
            raise ConfigError(f"strategy 'cmaes' needs continuous parameters; space {self.space.name!r} "
                              "has none (use tpe, evolution or random)")

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=self.n_startup_trials, warn_independent_sampling=False,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
        )


# -- trial history as JSON (in-memory studies) ------------------------------------------------
def _num(value: float | None) -> float | str | None:
    return value if value is None or math.isfinite(value) else repr(value)


def _unnum(value: float | str | None) -> float | None:
    return float(value) if isinstance(value, str) else value


def _trial_to_json(t: FrozenTrial) -> dict[str, Any]:
    return {
        "state": t.state.name,
        "value": _num(t.value) if t.state == TrialState.COMPLETE else None,
        "params": dict(t.params),
        "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
        "intermediate": [[s, _num(v)] for s, v in sorted(t.intermediate_values.items())],
        "user_attrs": dict(t.user_attrs),
        # pruners keep their bookkeeping here; CMA-ES's pickled optimizer is left out
        "system_attrs": {k: v for k, v in t.system_attrs.items() if "optimizer" not in k},
    }


def _trial_from_json(data: dict[str, Any]) -> FrozenTrial:
    return create_trial(
        state=TrialState[data["state"]],
        value=_unnum(data["value"]),
        params=data["params"],
        distributions={k: json_to_distribution(v) for k, v in data["distributions"].items()},
        intermediate_values={int(s): _unnum(v) for s, v in data["intermediate"]},
        user_attrs=data["user_attrs"],
        system_attrs=data["system_attrs"],
    )
