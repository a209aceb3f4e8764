"""What the store returns: plain records with explicit fields, decoded from the database."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from afsearch.defaults import DONE, FAILED, OUTCOMES, REJECTED  # noqa: F401 - re-exported for the store
from afsearch.errors import RunStoreError

QUEUED = "queued"
RUNNING = "running"
FINISHED_STATUSES = OUTCOMES


def decode_json(text: Any, column: str, where: tuple[str, str, Any], kind: type | None = None,
                item: type | None = None) -> Any:
    """A JSON column of a stored row, decoded and checked to be a `kind` (of `item`s); damage
    (someone edited the database) is a RunStoreError naming the run, the row and the column."""
    run, table, row_id = where
    try:
        value = json.loads(text)
    except (TypeError, ValueError, RecursionError) as e:  # RecursionError: a hostile nesting depth
        why = f"not JSON: {e}"
    else:
        if kind is None or (isinstance(value, kind) and (
                item is None or all(isinstance(v, item) for v in value))):
            return value
        why = f"a JSON {type(value).__name__} where a {kind.__name__}{f' of {item.__name__}' if item else ''} belongs"
    raise RunStoreError(
        f"run {run!r} is damaged: {table} #{row_id} has a bad {column} ({why[:120]}); restore the "
        "run from a backup or start a new run"
    )


# CandidateRecord.origin of the reference activations every run trains for comparison
BASELINE_ORIGIN = "baseline"


@dataclass(frozen=True)
class CandidateRecord:
    id: int
    fingerprint: str  # identity: two candidates with one fingerprint are one candidate
    kind: str  # "activation" or "layer" (see afsearch.candidate)
    formula: str | None  # as proposed
    canonical: str | None  # simplified formula, for display (sympy's text in runs before it)
    genotype: Any  # decoded JSON; never a pickle
    origin: str | None  # which strategy or operator produced it, e.g. "mutation"
    parents: tuple[str, ...]  # fingerprints of the parents
    created_at: float  # unix time

    @classmethod
    def from_row(cls, row: sqlite3.Row, run: str = "?") -> CandidateRecord:
        genotype = row["genotype_json"]
        where = (run, "candidate", row["id"])
        return cls(
            id=row["id"],
            fingerprint=row["fingerprint"],
            kind=row["kind"],
            formula=row["formula"],
            canonical=row["canonical"],
            genotype=None if genotype is None else decode_json(genotype, "genotype_json", where),
            origin=row["origin"],
            parents=tuple(decode_json(row["parents_json"], "parents_json", where, list, str)),
            created_at=row["created_at"],
        )


@dataclass(frozen=True)
class EvaluationRecord:
    id: int
    candidate_id: int
    task: str
    seed: int
    budget: int
    status: str  # queued, running, done, rejected or failed
    stage: str | None  # for rejected/failed: the stage that stopped it, e.g. "screen"
    reason: str | None  # for rejected/failed: why, in words
    score: float | None  # higher is better; None or non-finite is never ranked
    metrics: dict[str, Any]
    cost_s: float | None  # compute seconds the evaluation took
    worker: str | None  # who ran it (host/pid or Ray worker id)
    queued_at: float
    started_at: float | None
    finished_at: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row, run: str = "?") -> EvaluationRecord:
        return cls(
            id=row["id"],
            candidate_id=row["candidate_id"],
            task=row["task"],
            seed=row["seed"],
            budget=row["budget"],
            status=row["status"],
            stage=row["stage"],
            reason=row["reason"],
            score=row["score"],
            metrics=decode_json(row["metrics_json"], "metrics_json", (run, "evaluation", row["id"]), dict),
            cost_s=row["cost_s"],
            worker=row["worker"],
            queued_at=row["queued_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )


@dataclass(frozen=True)
class ValidationResult:
    """One candidate or baseline retrained on fresh seeds in a validation round."""

    candidate_id: int | None  # None: a baseline the search never trained
    formula: str | None
    baseline: str | None  # the reference's name for a baseline, else None
    per_seed: tuple[float, ...]  # test accuracy per fresh seed
    mean: float | None  # None when nothing trained
    std: float | None
    p_value: float | None  # one-sided test against the round's best baseline
    beats_baseline: bool
    error: str | None = None


@dataclass(frozen=True)
class ValidationRecord:
    """A stored ValidationResult with the round it belongs to."""

    id: int
    round: int  # 1 for the first `validate`, 2 for the next, ...
    task: str
    steps: int
    seeds: tuple[int, ...]
    created_at: float
    result: ValidationResult

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ValidationRecord:
        return cls(
            id=row["id"],
            round=row["round"],
            task=row["task"],
            steps=row["steps"],
            seeds=tuple(json.loads(row["seeds_json"])),
            created_at=row["created_at"],
            result=ValidationResult(
                candidate_id=row["candidate_id"],
                formula=row["formula"],
                baseline=row["baseline"],
                per_seed=tuple(json.loads(row["per_seed_json"])),
                mean=row["mean"],
                std=row["std"],
                p_value=row["p_value"],
                beats_baseline=bool(row["beats_baseline"]),
                error=row["error"],
            ),
        )


@dataclass(frozen=True)
class LeaderboardEntry:
    """One candidate's results on one task at one budget, aggregated over seeds."""

    candidate: CandidateRecord
    task: str
    budget: int
    mean: float | None  # mean finite score of its "done" evaluations; None if there is none
    std: float | None  # sample standard deviation; None below two scores
    n: int  # number of finite scores in the mean
    n_unscored: int  # rejected, failed, or done with a NaN/inf/missing score
    validated: ValidationRecord | None = None  # its latest validation on this task, if any

    @property
    def validated_mean(self) -> float | None:
        return None if self.validated is None else self.validated.result.mean


def rank_key(
    score: float | None, validated: float | None, tiebreak: int, higher_is_better: bool = True
) -> tuple[int, float, int]:
    """The one ordering of candidates, best first (sort ascending by this key).

    Validated candidates come first, by their validated (fresh-seed test) score: validation is
    the better estimate, and search scores and validated scores are measured differently, so
    they are never compared with each other. The others follow by search score; anything
    without a finite score comes last. Scores are the task metric's raw values: higher is
    better unless `higher_is_better` is False (a loss)."""
    sign = -1.0 if higher_is_better else 1.0
    if validated is not None and math.isfinite(validated):
        return (0, sign * validated, tiebreak)
    if score is not None and math.isfinite(score):
        return (1, sign * score, tiebreak)
    return (2, 0.0, tiebreak)


@dataclass(frozen=True)
class Counts:
    candidates: int
    by_status: dict[str, int]  # every status, zero included
    rejected_by_stage: dict[str, int]  # rejected evaluations per stage (a screening verdict)
    failed_by_stage: dict[str, int] = field(default_factory=dict)  # crashed ones per stage
