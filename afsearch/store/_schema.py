"""The run database's schema and the checks that recognise an afsearch database on disk."""

from __future__ import annotations

import os
from pathlib import Path

from afsearch.errors import RunStoreError

SCHEMA_VERSION = 1
# PRAGMA application_id: "AFSR". Marks the file as ours, so a foreign SQLite file is recognised.
APPLICATION_ID = 0x41465352

SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE candidates (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    formula TEXT,
    canonical TEXT,
    genotype_json TEXT,
    origin TEXT,
    parents_json TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL
);
CREATE TABLE evaluations (
    id INTEGER PRIMARY KEY,
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),
    task TEXT NOT NULL,
    seed INTEGER NOT NULL,
    budget INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'rejected', 'failed')),
    stage TEXT,
    reason TEXT,
    score REAL,
    metrics_json TEXT NOT NULL DEFAULT '{}',
    cost_s REAL,
    worker TEXT,
    queued_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX evaluations_by_candidate ON evaluations(candidate_id);
CREATE INDEX evaluations_by_status ON evaluations(status);
CREATE INDEX evaluations_by_key ON evaluations(candidate_id, task, seed, budget);
CREATE TABLE strategy_state (
    id INTEGER PRIMARY KEY,
    step INTEGER NOT NULL,
    state_json TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""

_MAGIC = b"SQLite format 3\x00"


def check_db_header(path: Path) -> None:
    """Reject a missing, truncated, non-SQLite, foreign or other-version database file by reading
    its header only, before SQLite opens it (so a rejected file is left exactly as it was)."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise RunStoreError(
            f"{path} is missing: {path.parent} is not an afsearch run, or its creation did not "
            "finish; point at a run directory or create a new run"
        ) from None
    except OSError as e:
        raise RunStoreError(f"cannot read {path}: {e.strerror}; check its permissions") from None
    if len(header) < 100 and _MAGIC.startswith(header[:16]):
        raise RunStoreError(
            f"{path} is truncated ({size} bytes); restore the run from a backup or start a new run"
        )
    if header[:16] != _MAGIC:
        raise RunStoreError(
            f"{path} is not a SQLite database (it was overwritten or is not an afsearch run); "
            "restore it from a backup or start a new run"
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    pages_valid = header[24:28] == header[92:96]
    if size < page_size or (pages_valid and size < pages * page_size):
        raise RunStoreError(
            f"{path} is truncated ({size} bytes, expected at least "
            f"{max(page_size, pages * page_size if pages_valid else 0)}); restore the run from a "
            "backup or start a new run"
        )
    app_id = int.from_bytes(header[68:72], "big")
    if app_id != APPLICATION_ID:
        raise RunStoreError(
            f"{path} is a SQLite database of another application (application_id {app_id:#x}), "
            "not an afsearch run database; point at an afsearch run directory"
        )
    check_schema_version(path, int.from_bytes(header[60:64], "big"))


def check_schema_version(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise RunStoreError(
            f"{path} has schema version {version}, written by a newer afsearch; this afsearch "
            f"reads version {SCHEMA_VERSION}: upgrade afsearch to open this run"
        )
    if version < SCHEMA_VERSION:
        raise RunStoreError(
            f"{path} has schema version {version}, which this afsearch (version "
            f"{SCHEMA_VERSION}) cannot read; open it with the afsearch that created it"
        )
