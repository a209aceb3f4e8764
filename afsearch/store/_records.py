"""What the store returns: plain records with explicit fields, decoded from the database."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
REJECTED = "rejected"
FAILED = "failed"
FINISHED_STATUSES = (DONE, REJECTED, FAILED)


@dataclass(frozen=True)
class CandidateRecord:
    id: int
    fingerprint: str  # identity: two candidates with one fingerprint are one candidate
    kind: str  # "activation" or "layer" (see afsearch.candidate)
    formula: str | None  # as proposed
    canonical: str | None  # canonical form, used for equivalence
    genotype: Any  # decoded JSON; never a pickle
    origin: str | None  # which strategy or operator produced it, e.g. "mutation"
    parents: tuple[str, ...]  # fingerprints of the parents
    created_at: float  # unix time

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> CandidateRecord:
        genotype = row["genotype_json"]
        return cls(
            id=row["id"],
            fingerprint=row["fingerprint"],
            kind=row["kind"],
            formula=row["formula"],
            canonical=row["canonical"],
            genotype=None if genotype is None else json.loads(genotype),
            origin=row["origin"],
            parents=tuple(json.loads(row["parents_json"])),
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
    def from_row(cls, row: sqlite3.Row) -> EvaluationRecord:
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
            metrics=json.loads(row["metrics_json"]),
            cost_s=row["cost_s"],
            worker=row["worker"],
            queued_at=row["queued_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
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


@dataclass(frozen=True)
class Counts:
    candidates: int
    by_status: dict[str, int]  # every status, zero included
    rejected_by_stage: dict[str, int]  # rejected and failed evaluations per stage
