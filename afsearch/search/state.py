"""The engine's own state, as records that snapshot to plain JSON: evaluations waiting for a
result, proposals waiting for all of their tasks, and the counters. A snapshot is committed in
the same transaction as the store rows it describes, so a resumed search continues exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from afsearch.candidate import Candidate
from afsearch.errors import RunStoreError
from afsearch.search.strategies.base import Proposal
from afsearch.store import BASELINE_ORIGIN

#: the layout of `EngineState.to_json`; a run written by another layout is refused by name
STATE_VERSION = 1
SEARCH = "search"


@dataclass
class PendingEval:
    """A queued or running evaluation of one candidate on one task. `kind` is "search" or
    "baseline"; `waiters` are the keys of the proposals that want its result."""

    kind: str
    task: str
    fp: str
    cid: int
    candidate: Candidate
    waiters: list[int] = field(default_factory=list)
    name: str | None = None  # a baseline's reference name
    #: the pack it was submitted in (None before): a resumed run submits the same packs again,
    #: so packed training repeats its scores bit for bit
    pack: int | None = None

    @property
    def is_baseline(self) -> bool:
        return self.kind == BASELINE_ORIGIN

    def to_json(self) -> dict[str, Any]:
        data = {"kind": self.kind, "task": self.task, "fp": self.fp, "cid": self.cid,
                "candidate": self.candidate.to_json(), "waiters": list(self.waiters)}
        if self.name is not None:
            data["name"] = self.name
        if self.pack is not None:
            data["pack"] = self.pack
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PendingEval:
        return cls(str(data["kind"]), str(data["task"]), str(data["fp"]), int(data["cid"]),
                   Candidate.from_json(data["candidate"]), [int(k) for k in data["waiters"]],
                   data.get("name"), None if data.get("pack") is None else int(data["pack"]))


@dataclass
class OpenProposal:
    """A proposal whose outcome the strategy has not been told yet: it waits for a result on
    every task of the search (`results`: task -> the result's JSON)."""

    proposal: Proposal
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"proposal": self.proposal.to_json(), "results": dict(self.results)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OpenProposal:
        return cls(Proposal.from_json(data["proposal"]), dict(data["results"]))


@dataclass
class EngineState:
    """Everything the engine must carry across a restart besides the store's rows."""

    trained: int = 0
    proposals: int = 0
    cache_hits: int = 0
    invalid: int = 0
    elapsed_s: float = 0.0
    pending: dict[int, PendingEval] = field(default_factory=dict)  # eval_id -> evaluation
    open_proposals: dict[int, OpenProposal] = field(default_factory=dict)  # proposal key -> proposal
    baselines_submitted: bool = False
    packs_formed: int = 0  # packs submitted so far (numbers the next one)

    def to_json(self, strategy_state: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "strategy": strategy_state,
            "trained": self.trained,
            "proposals": self.proposals,
            "cache_hits": self.cache_hits,
            "invalid": self.invalid,
            "elapsed_s": self.elapsed_s,
            "pending": {str(k): v.to_json() for k, v in self.pending.items()},
            "open_proposals": {str(k): v.to_json() for k, v in self.open_proposals.items()},
            "baselines_submitted": self.baselines_submitted,
            "packs_formed": self.packs_formed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], run: object) -> tuple[EngineState, dict[str, Any]]:
        """(state, the strategy's own state). Damaged data raises KeyError/TypeError/ValueError
        (the caller names the run); another layout raises RunStoreError."""
        if data.get("version") != STATE_VERSION:
            raise RunStoreError(f"run {run} has search state version {data.get('version')}; "
                                f"this afsearch reads version {STATE_VERSION}")
        state = cls(
            trained=int(data["trained"]), proposals=int(data["proposals"]),
            cache_hits=int(data["cache_hits"]), invalid=int(data.get("invalid", 0)),
            elapsed_s=float(data["elapsed_s"]),
            pending={int(k): PendingEval.from_json(v) for k, v in data["pending"].items()},
            open_proposals={int(k): OpenProposal.from_json(v) for k, v in data["open_proposals"].items()},
            baselines_submitted=bool(data["baselines_submitted"]),
            packs_formed=int(data.get("packs_formed", 0)),
        )
        return state, data["strategy"]

    def pending_for(self, fp: str, task: str) -> int | None:
        """The queued evaluation of fingerprint `fp` on `task`, if any."""
        for eval_id, info in self.pending.items():
            if info.fp == fp and info.task == task:
                return eval_id
        return None
