"""The run store: everything a search writes lives in one run directory and can be resumed.

See `RunStore` for the layout. Public names are re-exported here; the modules are private."""

from afsearch.store._files import dumps_toml, write_atomic
from afsearch.store._records import (
    CandidateRecord,
    Counts,
    EvaluationRecord,
    LeaderboardEntry,
)
from afsearch.store._runs import RunSummary, list_runs, resolve_run
from afsearch.store._schema import APPLICATION_ID, SCHEMA_VERSION
from afsearch.store._store import RUN_STATES, RunStore

__all__ = [
    "APPLICATION_ID",
    "RUN_STATES",
    "SCHEMA_VERSION",
    "CandidateRecord",
    "Counts",
    "EvaluationRecord",
    "LeaderboardEntry",
    "RunStore",
    "RunSummary",
    "dumps_toml",
    "list_runs",
    "resolve_run",
    "write_atomic",
]
