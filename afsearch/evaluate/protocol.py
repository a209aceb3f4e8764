"""The evaluation protocol: what a worker is asked (`EvalRequest`) and what it answers
(`EvalReply`), with the one JSON codec both sides use.

The search engine and validation build requests; the executor carries their JSON to a worker
process, where `serve` decodes the request, trains and encodes the reply; the caller decodes
the reply with `EvalReply.decode` (or `from_job`, which also folds in what the executor saw:
a timeout, a crashed worker). Whatever went wrong, a reply holds one `EvalResult` per
candidate, in request order; a failure is an `EvalResult` with status "failed", never a
different shape.

Wire format (JSON; stable, so jobs and tests can craft it): a request is ``{"candidate": C}``
for one candidate or ``{"candidates": [C, ...]}`` for a pack, plus "task", "budget", "seed"
(a list), "seeds" (its length), "ladder" (a bool or a dict of `LadderConfig` fields),
"task_config", "device", "threads", "measure_cost", "baselines" (one candidate only),
"pack" and "schedule" (a search scheduler's cutoffs, `Cutoffs.to_json`; absent: none). A reply is the result's JSON for one candidate, ``{"results": [...]}`` for a pack, or
``{"status": "error", "error": message}`` when the request itself could not be served."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from afsearch.candidate import Candidate
from afsearch.defaults import FAILED
from afsearch.errors import AfsearchError
from afsearch.evaluate.ladder import LadderConfig
from afsearch.evaluate.result import EvalResult
from afsearch.evaluate.schedule import Cutoffs

if TYPE_CHECKING:
    from afsearch.execute import JobResult

#: the stage a failure outside the candidate's own training is recorded at
WORKER_STAGE = "worker"


class ProtocolError(AfsearchError):
    """A request or reply that does not follow the wire format."""


_REQUEST_KEYS = {"candidate", "candidates", "task", "task_config", "budget", "seed", "seeds", "ladder",
                 "threads", "device", "baselines", "measure_cost", "pack", "schedule"}


@dataclass(frozen=True)
class EvalRequest:
    """Train `candidates` on `task` for `budget` steps (None: the task's default) on each of
    `seeds`; several candidates are trained together where the task allows (`pack`)."""

    candidates: tuple[Candidate, ...]
    task: str
    budget: int | None = None
    seeds: tuple[int, ...] = (0,)
    ladder: LadderConfig | None = dataclasses.field(default_factory=LadderConfig)
    task_config: dict[str, Any] | None = None
    device: str | None = None
    threads: int | None = None
    measure_cost: bool = True
    #: also train the reference activations and fill `delta_to_best_baseline` (one candidate)
    baselines: bool = False
    #: train candidates (or one candidate's seeds) together where the task's model allows
    pack: bool = True
    #: the search scheduler's milestones and cutoffs for the first seed (None: no scheduler)
    schedule: Cutoffs | None = None

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ProtocolError("a request needs at least one candidate")
        if self.baselines and len(self.candidates) > 1:
            raise ProtocolError("give either candidate or candidates (without baselines)")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"task": self.task, "seed": list(self.seeds), "seeds": len(self.seeds)}
        if len(self.candidates) == 1:
            data["candidate"] = self.candidates[0].to_json()
        else:
            data["candidates"] = [c.to_json() for c in self.candidates]
        if not self.pack:
            data["pack"] = False
        if self.budget is not None:
            data["budget"] = self.budget
        data["ladder"] = _ladder_json(self.ladder)
        if self.task_config:
            data["task_config"] = dict(self.task_config)
        if self.device is not None:
            data["device"] = self.device
        if self.threads is not None:
            data["threads"] = self.threads
        if not self.measure_cost:
            data["measure_cost"] = False
        if self.baselines:
            data["baselines"] = True
        if self.schedule is not None:
            data["schedule"] = self.schedule.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalRequest:
        """Decode (and check) a request; ProtocolError with one line when it is malformed."""
        from afsearch.evaluate.baselines import seed_list
        from afsearch.evaluate.tasks import DEFAULT_TASK

        if not isinstance(data, dict):
            raise ProtocolError(f"a request is a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - _REQUEST_KEYS)
        if unknown:
            raise ProtocolError(f"unknown payload key(s) {', '.join(unknown)}")
        if ("candidate" in data) == ("candidates" in data):
            raise ProtocolError("give either candidate or candidates")
        raw = [data["candidate"]] if "candidate" in data else data["candidates"]
        try:
            candidates = tuple(Candidate.from_json(c) for c in raw)
            seeds = tuple(seed_list(data.get("seed", 0), int(data.get("seeds", 1))))
            ladder = LadderConfig.from_option(data.get("ladder", True))
            schedule = Cutoffs.from_json(data["schedule"]) if data.get("schedule") is not None else None
        except (KeyError, TypeError, ValueError, AfsearchError) as exc:
            raise ProtocolError(f"bad request: {type(exc).__name__}: {exc}") from None
        return cls(candidates, str(data.get("task", DEFAULT_TASK)), data.get("budget"), seeds, ladder,
                   data.get("task_config"), data.get("device"), data.get("threads"),
                   bool(data.get("measure_cost", True)), bool(data.get("baselines", False)),
                   bool(data.get("pack", True)), schedule)


def _ladder_json(ladder: LadderConfig | None) -> bool | dict[str, Any]:
    if ladder is None:
        return False
    if ladder == LadderConfig():
        return True
    return dataclasses.asdict(ladder)


@dataclass(frozen=True)
class EvalReply:
    """One result per candidate of the request, in order."""

    results: tuple[EvalResult, ...]

    def to_json(self, request: EvalRequest) -> dict[str, Any]:
        if len(request.candidates) == 1:
            return self.results[0].to_json()
        return {"results": [r.to_json() for r in self.results]}

    @staticmethod
    def error_json(message: str) -> dict[str, Any]:
        """What a worker answers to a request it cannot serve at all."""
        return {"status": "error", "error": message}

    @classmethod
    def decode(cls, request: EvalRequest, data: Any, *, seconds: float = 0.0) -> EvalReply:
        """The reply to `request` from its JSON; a malformed or error reply becomes a failed
        result for every candidate (stage "worker")."""
        if isinstance(data, dict) and data.get("status") == "error":
            return cls.failed(request, str(data.get("error") or "the worker reported an error"), seconds)
        items = data.get("results") if isinstance(data, dict) and len(request.candidates) > 1 else [data]
        if not isinstance(items, list) or len(items) != len(request.candidates):
            return cls.failed(request, "malformed reply from the worker", seconds)
        results = []
        for candidate, item in zip(request.candidates, items, strict=True):
            try:
                results.append(EvalResult.from_json(item))
            except (KeyError, TypeError, ValueError, AttributeError):
                results.append(failed_result(request, candidate, "malformed result from the worker", seconds))
        return cls(tuple(results))

    @classmethod
    def from_job(cls, request: EvalRequest, job: JobResult) -> EvalReply:
        """The reply to `request` as the executor delivered it: a timeout, a crashed worker or
        a job function that raised is a failure of every candidate in it."""
        if not job.ok or job.value is None:
            reason = f"{job.status}: {job.error or ''}".strip().rstrip(":")
            return cls.failed(request, reason, job.elapsed_s)
        return cls.decode(request, job.value, seconds=job.elapsed_s)

    @classmethod
    def failed(cls, request: EvalRequest, reason: str, seconds: float = 0.0) -> EvalReply:
        return cls(tuple(failed_result(request, c, reason, seconds) for c in request.candidates))


def failed_result(request: EvalRequest, candidate: Candidate, reason: str, seconds: float = 0.0,
                  stage: str = WORKER_STAGE, error: str | None = None) -> EvalResult:
    """A failed result for `candidate` of `request`: the protocol's one error shape."""
    return EvalResult(candidate.to_json(), request.task, dict(request.task_config or {}), request.budget or 0,
                      list(request.seeds), status=FAILED, stage=stage, reason=reason, seconds=seconds,
                      error=error)


def serve(payload: dict[str, Any]) -> dict[str, Any]:
    """The worker side (the executors' default job function): JSON request in, JSON reply out.
    A request that cannot be served (malformed, an unknown task, a bad budget) is answered
    with an error reply instead of raising across the process boundary; a candidate that
    fails is a failed result in the reply."""
    from afsearch.evaluate.core import evaluate, evaluate_many

    try:
        request = EvalRequest.from_json(payload)
        common = {"budget": request.budget, "seed": list(request.seeds), "seeds": len(request.seeds),
                  "ladder": request.ladder or False, "task_config": request.task_config,
                  "device": request.device, "threads": request.threads if request.threads else 1,
                  "measure_cost": request.measure_cost, "schedule": request.schedule}
        if len(request.candidates) > 1:
            results = evaluate_many(list(request.candidates), request.task, pack=request.pack, **common)
        else:
            results = [evaluate(request.candidates[0], request.task, baselines=request.baselines,
                                pack=request.pack, **common)]
    except Exception as exc:  # noqa: BLE001 - report every error as data
        return EvalReply.error_json(f"{type(exc).__name__}: {exc}")
    return EvalReply(tuple(results)).to_json(request)


__all__ = ["WORKER_STAGE", "EvalReply", "EvalRequest", "ProtocolError", "failed_result", "serve"]
