"""The run database's schema and the checks that recognise an afsearch database on disk."""

from __future__ import annotations

import functools
import os
import re
import sqlite3
from pathlib import Path

from afsearch.errors import RunStoreError

SCHEMA_VERSION = 2
# PRAGMA application_id: "AFSR". Marks the file as ours, so a foreign SQLite file is recognised.
APPLICATION_ID = 0x41465352

# Version 2 adds two tables. validations: every validation round's rows are kept (a later
# `validate` adds a round, it never replaces one), one row per candidate or baseline retrained
# on fresh seeds. proposals: which candidate each strategy proposal key became, so a
# proposal's parents (given by key) are recorded as the parents' fingerprints.
V2_TABLES = """
CREATE TABLE validations (
    id INTEGER PRIMARY KEY,
    round INTEGER NOT NULL,
    candidate_id INTEGER REFERENCES candidates(id),
    formula TEXT,
    baseline TEXT,
    task TEXT NOT NULL,
    steps INTEGER NOT NULL,
    seeds_json TEXT NOT NULL,
    per_seed_json TEXT NOT NULL,
    mean REAL,
    std REAL,
    p_value REAL,
    beats_baseline INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX validations_by_candidate ON validations(candidate_id);
CREATE TABLE proposals (
    key INTEGER PRIMARY KEY,
    candidate_id INTEGER NOT NULL REFERENCES candidates(id)
);
"""

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
""" + V2_TABLES

# What each version adds to the one before: opening an older run "rw" applies these in order.
MIGRATIONS: dict[int, str] = {2: V2_TABLES}
OLDEST_READABLE = min(MIGRATIONS) - 1

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
    # Commits not yet checkpointed live in the -wal file; a newer header there wins (SQLite
    # would read it, after rewriting the -shm and checkpointing on close: too late to refuse).
    header = _wal_header(path) or header
    app_id = int.from_bytes(header[68:72], "big")
    if app_id != APPLICATION_ID:
        raise RunStoreError(
            f"{path} is a SQLite database of another application (application_id {app_id:#x}), "
            "not an afsearch run database; point at an afsearch run directory"
        )
    check_schema_version(path, int.from_bytes(header[60:64], "big"))


_WAL_MAGIC = (0x377F0682, 0x377F0683)


def _wal_header(path: Path) -> bytes | None:
    """The database header (first 100 bytes of page 1) as of the last commit in `path`-wal
    that changed page 1, read from the file's frames; None without such a frame."""
    try:
        f = open(path.with_name(path.name + "-wal"), "rb")
    except OSError:
        return None
    with f:
        head = f.read(32)
        if len(head) < 32 or int.from_bytes(head[:4], "big") not in _WAL_MAGIC:
            return None
        page_size, salt = int.from_bytes(head[8:12], "big"), head[16:24]
        if page_size < 512:
            return None
        size = os.fstat(f.fileno()).st_size
        committed = in_transaction = None
        offset = 32
        while True:  # frames: 24-byte header (page number, commit size, salts, ...) + page
            f.seek(offset)
            frame = f.read(24)
            if offset + 24 + page_size > size or frame[8:16] != salt:
                return committed  # the end, a torn frame, or frames from before a WAL reset
            if int.from_bytes(frame[:4], "big") == 1:
                in_transaction = f.read(100)
            if int.from_bytes(frame[4:8], "big"):  # a commit frame ends a transaction
                committed, in_transaction = in_transaction or committed, None
            offset += 24 + page_size


def check_schema_version(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise RunStoreError(
            f"{path} has schema version {version}, written by a newer afsearch; this afsearch "
            f"reads version {SCHEMA_VERSION}: upgrade afsearch to open this run"
        )
    if version < OLDEST_READABLE:
        raise RunStoreError(
            f"{path} has schema version {version}, which this afsearch (version "
            f"{SCHEMA_VERSION}) cannot read; open it with the afsearch that created it"
        )


def check_tables(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """Refuse a database that carries our application id but lacks tables or columns its
    schema version has (damaged, or written by something else), before a query trips on it."""
    expected = _columns(version)
    found: dict[str, set[str]] = {}
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        if table in expected:
            found[table] = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
    missing = [t for t in expected if t not in found]
    missing += [f"{t}.{c}" for t in found for c in sorted(expected[t] - found[t])]
    if missing:
        raise RunStoreError(
            f"{path} lacks {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} (schema "
            f"version {version}): it is damaged or was not written by afsearch; restore the run "
            "from a backup or start a new run"
        )


@functools.cache
def _columns(version: int) -> dict[str, frozenset[str]]:
    """{table: columns} of schema `version`: the current schema less what later versions add."""
    later = "".join(sql for v, sql in MIGRATIONS.items() if v > version)
    added = set(re.findall(r"CREATE TABLE (\w+)", later))
    scratch = sqlite3.connect(":memory:")
    try:
        scratch.executescript(SCHEMA)
        return {
            table: frozenset(row[1] for row in scratch.execute(f'PRAGMA table_info("{table}")'))
            for table in re.findall(r"CREATE TABLE (\w+)", SCHEMA) if table not in added
        }
    finally:
        scratch.close()
