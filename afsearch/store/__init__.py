"""The run store: everything a search writes lives in one run directory and can be resumed.

See `RunStore` for the layout. Public names are re-exported here; the modules are private."""

from afsearch.files import dumps_toml, replacing, write_atomic
from afsearch.store._records import (
    BASELINE_ORIGIN,
    CandidateRecord,
    Counts,
    EvaluationRecord,
    LeaderboardEntry,
    ValidationRecord,
    ValidationResult,
    rank_key,
)
from afsearch.store._runs import RunSummary, best_entry, list_runs, resolve_run
from afsearch.store._schema import APPLICATION_ID, SCHEMA_VERSION
from afsearch.store._store import RUN_STATES, RunStore, damage_guard, optuna_storage_url

__all__ = [
    "APPLICATION_ID",
    "BASELINE_ORIGIN",
    "RUN_STATES",
    "SCHEMA_VERSION",
    "CandidateRecord",
    "Counts",
    "EvaluationRecord",
    "LeaderboardEntry",
    "RunStore",
    "RunSummary",
    "ValidationRecord",
    "ValidationResult",
    "best_entry",
    "damage_guard",
    "dumps_toml",
    "list_runs",
    "optuna_storage_url",
    "rank_key",
    "replacing",
    "resolve_run",
    "write_atomic",
]
