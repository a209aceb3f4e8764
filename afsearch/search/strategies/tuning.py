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
"rejected" (the ladder or the search's scheduler stopped it: `afsearch.search.schedulers`) as
PRUNED after reporting its intermediate values, "failed" or non-finite as FAIL. Stopping early
is the scheduler's job, not the study's: the study keeps Optuna's no-op pruner, and the former
`pruner` option is accepted only as "none" (so runs that recorded it resume).

Determinism and resume: a sampler's random state lives in memory, so a fresh sampler seeded
from the strategy's rng is installed before every ask; the rng is in `state()`, so a resumed
search proposes exactly what an uninterrupted one would. With ``storage`` (e.g.
"sqlite:///runs/x/optuna.db") the study lives in that database and is reloaded by
``study_name``; trials that a crash left running, asked after the restored snapshot, are taken
over by the next asks (they were sampled from the same seed and history, so the run continues
exactly; one without parameters is marked FAIL). Without storage (in memory) `state()` carries the trial history.

Nothing is pickled into a study or unpickled from one: CMA-ES uses `ReplayCmaEsSampler`, which
rebuilds its optimizer from the trials instead of Optuna's pickled copy (a study in a run
directory is untrusted input), so it resumes exactly with or without a storage."""

from __future__ import annotations

import contextlib
import copy
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cmaes
import numpy as np
import optuna
from optuna._transform import _SearchSpaceTransform  # the transform Optuna's CMA-ES uses
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

#: an option earlier versions took; stopping early moved to the search's scheduler
RETIRED_PRUNER_OPTION = "pruner"


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
    defaults: dict[str, Any] = {"storage": None, "study_name": None, "n_startup_trials": 10}
    #: options no longer in `defaults` that the constructor still answers (see the module)
    retired_options = (RETIRED_PRUNER_OPTION,)

    def __init__(self, space: SearchSpace, rng: random.Random, seeds: list[Genotype] | None = None,
                 **options: Any) -> None:
        pruner = options.pop(RETIRED_PRUNER_OPTION, "none")
        if pruner != "none":
            raise ConfigError(f"strategy {self.name!r}: option pruner={pruner!r} is gone; stopping early is "
                              "the search's scheduler now (--scheduler median or asha; pruner=none is "
                              "accepted and does nothing)")
        super().__init__(space, rng, seeds, **options)
        opts = self.resolve_options(self.defaults)
        self.storage: str | None = opts["storage"]
        self.study_name: str = opts["study_name"] or f"afsearch-{space.name}-{self.name}"
        self.n_startup_trials = int(opts["n_startup_trials"])
        self.params = ParamSpace(space, self.name)
        self.check_space()
        self.pending: list[int] = []  # trial numbers asked and not told
        self.orphans: list[int] = []  # running trials a crashed run asked after its last snapshot
        self.study = self._create_study()

    @classmethod
    def run_options(cls, run_dir: Path, run_name: str) -> dict[str, Any]:
        """The study lives in the run directory (optuna.db), so a resume finds it."""
        from afsearch.store import optuna_storage_url

        return {"storage": optuna_storage_url(run_dir), "study_name": run_name}

    def check_space(self) -> None:
        pass

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)

    def _create_study(self) -> optuna.Study:
        with quiet_optuna():
            return optuna.create_study(
                storage=self.storage, study_name=self.study_name, direction="maximize",
                sampler=self.make_sampler(0), pruner=optuna.pruners.NopPruner(), load_if_exists=True,
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
            self._report(*live, outcome.intermediate)
            if outcome.status == "rejected":
                self.study.tell(number, state=TrialState.PRUNED)
            else:
                self.study.tell(number, outcome.score)

    def _report(self, trial: optuna.Trial, frozen: FrozenTrial, intermediate: list[tuple[int, float]]) -> None:
        """Report the new intermediate values in step order (the study's record of the curve)."""
        reported = set(frozen.intermediate_values)
        for step, value in sorted(intermediate):
            if step in reported or step < 0:
                continue
            trial.report(float(value), int(step))
            reported.add(step)

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
    defaults: dict[str, Any] = {"storage": None, "study_name": None, "n_startup_trials": 1}

    def check_space(self) -> None:
        if not self.space.continuous:
            raise ConfigError(f"strategy 'cmaes' needs continuous parameters; space {self.space.name!r} "
                              "has none (use tpe, evolution or random)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._replay_memo = _ReplayMemo()  # before the base class makes the first sampler
        super().__init__(*args, **kwargs)

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return ReplayCmaEsSampler(seed=seed, n_startup_trials=self.n_startup_trials,
                                  memo=self._replay_memo)


class ReplayCmaEsSampler(optuna.samplers.CmaEsSampler):
    """Optuna's CMA-ES, except that the optimizer is never pickled into the study nor unpickled
    from it: Optuna's own sampler keeps it as a pickle in trial system attributes, so a crafted
    optuna.db in a run directory would run code on `resume`. Before each ask the optimizer is
    rebuilt by replaying the study's COMPLETE trials generation by generation (each trial carries
    the generation it was asked in, "cma:generation", as Optuna writes it). The trials told for a
    generation are recorded as a JSON list ("afsearch:cma:told:G") on the trial whose ask told
    them, so trials finishing out of order later cannot rewrite the optimizer's history; a study
    written by Optuna's sampler (no such lists) replays with Optuna's rule, the first
    population-size complete trials of each generation by number.

    Plain CMA only (no margin, separable or warm-start variants). `memo` carries the last
    replayed optimizer from one ask to the next: afsearch installs a fresh sampler per ask, and
    replaying the whole history every time costs O(generations) per ask."""

    def __init__(self, *, seed: int, n_startup_trials: int, memo: _ReplayMemo | None = None) -> None:
        super().__init__(seed=seed, n_startup_trials=n_startup_trials, warn_independent_sampling=False,
                         independent_sampler=optuna.samplers.RandomSampler(seed=seed))
        self._memo = memo or _ReplayMemo()

    def _restore_optimizer(self, completed_trials: list[FrozenTrial]) -> None:
        # Optuna's unpickling path: nothing in this class calls it; keep it dead for good.
        return None

    def _split_optimizer_str(self, optimizer_str: str) -> dict[str, str]:
        # Optuna's pickling path (what it would write to the study): write nothing.
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        self._raise_error_if_multi_objective(study)
        if not search_space:
            return {}
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(completed) < self._n_startup_trials:
            return {}
        trans = _SearchSpaceTransform(search_space, transform_step=True, transform_0_1=True)
        optimizer, unrecorded = self._replay(study, completed, trans)
        for generation, numbers in unrecorded:
            study._storage.set_trial_system_attr(trial._trial_id, f"{_TOLD_KEY}{generation}", numbers)
        if not any(k.startswith((_TOLD_KEY, "cma:optimizer")) for t in completed for k in t.system_attrs):
            # Optuna's sampler starts a new optimizer when no complete trial carries one, and
            # draws its seed here: draw it too, so that the asks are Optuna's own (the seed
            # itself is unused, every ask reseeds below). Attribute names are only compared.
            self._cma_rng.rng.randint(1, 2**31 - 2)
        # Optuna's per-trial reseed, so a sampler seeded alike asks alike.
        optimizer.reseed_rng(self._cma_rng.rng.randint(1, 2**16) + trial.number)
        x = optimizer.ask()
        study._storage.set_trial_system_attr(trial._trial_id, _GENERATION_KEY, optimizer.generation)
        return trans.untransform(x)

    def _replay(self, study: optuna.Study, completed: list[FrozenTrial], trans: _SearchSpaceTransform,
                ) -> tuple[cmaes.CMA, list[tuple[int, list[int]]]]:
        """The optimizer after every generation that has its trials, and the generations told
        here for the first time (to be recorded)."""
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1.0
        recorded: dict[int, Any] = {}
        for t in study.get_trials(deepcopy=False):  # a record sits on the trial whose ask told it
            for name, value in t.system_attrs.items():
                if name.startswith(_TOLD_KEY) and _is_number(name[len(_TOLD_KEY):]):
                    recorded.setdefault(int(name[len(_TOLD_KEY):]), value)
        points = {t.number: (x, sign * float(t.value)) for t in completed
                  if (x := _point(trans, t)) is not None}
        generation_of = {t.number: t.system_attrs.get(_GENERATION_KEY) for t in completed}
        key = (study._study_id, trans.bounds.tobytes())
        optimizer, history = self._memo.start(key, recorded)
        if optimizer is None:
            lower, upper = trans.bounds[:, 0], trans.bounds[:, 1]
            optimizer = cmaes.CMA(mean=lower + (upper - lower) / 2,
                                  sigma=max(float(np.min((upper - lower) / 6)), 1e-10),
                                  bounds=trans.bounds, seed=0, n_max_resampling=10 * len(lower))
        unrecorded = []
        while True:
            g, size = optimizer.generation, optimizer.population_size
            ours = sorted(n for n in points if generation_of[n] == g)
            record = recorded.get(g)
            if isinstance(record, list) and len(set(record)) == len(record) == size and all(
                    type(n) is int and n in ours for n in record):
                members = record
            elif len(ours) >= size:
                members = ours[:size]
            else:
                break
            optimizer.tell([points[n] for n in members])
            history.append(list(members))
            if record != members:
                unrecorded.append((g, list(members)))
        self._memo.keep(key, optimizer, history)
        return optimizer, unrecorded


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _point(trans: _SearchSpaceTransform, trial: FrozenTrial) -> np.ndarray | None:
    """A complete trial's parameters in CMA-ES coordinates, or None when they cannot be told
    (another search space, a missing or non-finite value: the study is untrusted input)."""
    if trial.value is None or not math.isfinite(trial.value):
        return None
    try:
        x = trans.transform(trial.params)
    except (KeyError, TypeError, ValueError):
        return None
    return x if np.all(np.isfinite(x)) and np.all(np.abs(x) <= 1.0 + 1e-9) else None


_GENERATION_KEY = "cma:generation"  # Optuna's own key, so studies it wrote replay too
_TOLD_KEY = "afsearch:cma:told:"


class _ReplayMemo:
    """The last replayed CMA-ES optimizer of one strategy, with the trial numbers told per
    generation; reused when the study's history still starts with that history."""

    def __init__(self) -> None:
        self._key: Any = None
        self._optimizer: cmaes.CMA | None = None
        self._history: list[list[int]] = []

    def start(self, key: Any, recorded: dict[int, Any]) -> tuple[cmaes.CMA | None, list[list[int]]]:
        if self._optimizer is None or key != self._key or any(
                recorded.get(g) != numbers for g, numbers in enumerate(self._history)):
            return None, []
        return copy.deepcopy(self._optimizer), [list(n) for n in self._history]

    def keep(self, key: Any, optimizer: cmaes.CMA, history: list[list[int]]) -> None:
        self._key, self._optimizer, self._history = key, copy.deepcopy(optimizer), history


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
