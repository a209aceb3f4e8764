"""RunStore: one run directory, everything a search needs to resume after any crash.

    runs/<name>/
        config.toml   resolved configuration (written atomically; rewritten when a resume changes it)
        afsearch.db   SQLite (WAL): candidates, evaluations, strategy-state snapshots, meta
        optuna.db     Optuna's own SQLite storage, created by Optuna where a strategy uses it
        log.txt       human-readable log, appended
        exports/      exported modules and reports
        lock          flock held by the one process driving the run; holds its pid

Every database write is a transaction, so a process killed at any instant leaves the database
as of its last commit. Read-only opens take no lock and work while a search is running."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from afsearch.errors import AfsearchError, ExpressionError, RunStoreError
from afsearch.files import dumps_toml, write_atomic
from afsearch.store import _lock
from afsearch.store._records import (
    DONE,
    FAILED,
    FINISHED_STATUSES,
    QUEUED,
    REJECTED,
    RUNNING,
    CandidateRecord,
    Counts,
    EvaluationRecord,
    LeaderboardEntry,
    ValidationRecord,
    ValidationResult,
    decode_json,
    rank_key,
)
from afsearch.store._schema import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    check_db_header,
    check_schema_version,
    check_tables,
)

CONFIG_FILE = "config.toml"
DB_FILE = "afsearch.db"
OPTUNA_FILE = "optuna.db"
LOG_FILE = "log.txt"
EXPORTS_DIR = "exports"
LOCK_FILE = "lock"


def optuna_storage_url(run_dir: Path) -> str:
    """Where a run's Optuna study lives, as a storage URL."""
    return f"sqlite:///{(Path(run_dir) / OPTUNA_FILE).absolute()}"


# Run states kept in meta; a run whose meta says "running" but whose lock is free was interrupted.
RUN_STATES = ("created", "running", "finished", "stopped")
# Strategy-state snapshots kept; older ones are deleted so a long search cannot bloat the file.
KEEP_STATES = 10


class RunStore:
    """An open run. Use `RunStore.create` or `RunStore.open`; close it (or use `with`) to release
    the lock. Mode "rw" drives the run (one process at a time); "ro" only reads."""

    def __init__(
        self, path: Path, mode: str, conn: sqlite3.Connection, config: dict[str, Any],
        lock: _lock.RunLock | None,
    ) -> None:  # fmt: skip
        self.path = path
        self.mode = mode
        self.config = config  # the parsed config.toml
        self._conn = conn
        self._lock = lock
        # which file the connection writes: a search must notice when afsearch.db is deleted or
        # replaced under it (SQLite would go on committing into the unlinked file; see `transaction`)
        self._identity = _file_identity(path / DB_FILE) if mode == "rw" else None

    # ---- opening and closing -------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], config: dict[str, Any]) -> RunStore:
        """Create a new run directory and open it "rw". Never touches an existing non-empty one.

        The run is built in a hidden sibling directory and renamed into place, so a crash during
        creation leaves no half-made run under the real name."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise RunStoreError(
                f"run directory {path} already exists and is not empty; choose another run name, "
                "or open the existing run to resume it"
            )
        config_text = dumps_toml(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.creating-"))
        lock = None
        try:
            os.chmod(tmp, 0o755)
            lock = _lock.RunLock.acquire(tmp / LOCK_FILE, path.name)
            write_atomic(tmp / CONFIG_FILE, config_text)
            (tmp / EXPORTS_DIR).mkdir()
            _init_db(tmp / DB_FILE)
            try:
                os.rename(tmp, path)  # atomic; fails if another process created `path` meanwhile
            except OSError:
                raise RunStoreError(
                    f"run directory {path} was created by another process meanwhile; choose "
                    "another run name"
                ) from None
        except BaseException:
            if lock is not None:
                lock.release()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        lock.path = path / LOCK_FILE
        return cls._open(path, "rw", lock)

    @classmethod
    def open(cls, path: str | os.PathLike[str], mode: Literal["rw", "ro"] = "rw") -> RunStore:
        """Open an existing run. "rw" fails if another process drives it; "ro" always works.

        A missing, truncated, corrupt, foreign or other-version run raises RunStoreError naming
        the file. Everything the file header reveals is checked before SQLite or the lock touch
        the directory, so such a run is left byte for byte as it was. ("ro" opens may leave
        SQLite's empty afsearch.db-wal/-shm files behind; they are harmless.)"""
        if mode not in ("rw", "ro"):
            raise ValueError(f"mode must be 'rw' or 'ro', not {mode!r}")
        return cls._open(Path(path), mode, None)

    @classmethod
    def _open(cls, path: Path, mode: str, lock: _lock.RunLock | None) -> RunStore:
        try:
            if not path.is_dir():
                what = "is not a directory" if path.exists() else "does not exist"
                raise RunStoreError(f"run directory {path} {what}; check the run name or path")
            check_db_header(path / DB_FILE)
            config = _read_config(path / CONFIG_FILE)
            if mode == "rw" and lock is None:
                lock = _lock.RunLock.acquire(path / LOCK_FILE, path.name)
            conn = _connect(path / DB_FILE, mode)
            if lock is not None:
                lock.claim()
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return cls(path, mode, conn, config, lock)

    def close(self) -> None:
        """Close the database and release the lock. Safe to call twice."""
        self._conn.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- paths -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def db_path(self) -> Path:
        return self.path / DB_FILE

    @property
    def optuna_path(self) -> Path:
        """Where Optuna keeps its study; Optuna creates the file."""
        return self.path / OPTUNA_FILE

    @property
    def optuna_storage(self) -> str:
        """Storage URL for `optuna.create_study(storage=..., load_if_exists=True)`."""
        return optuna_storage_url(self.path)

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def exports_dir(self) -> Path:
        return self.path / EXPORTS_DIR

    # ---- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes so they commit together or not at all; nested uses join the outer one."""
        self._require_rw()
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._check_identity()
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _check_identity(self) -> None:
        if _file_identity(self.db_path) != self._identity:
            what = "deleted" if not self.db_path.exists() else "replaced by another file"
            raise RunStoreError(
                f"run {self.name!r}: {self.db_path} was {what} while this process was writing it, "
                "so nothing more can be recorded; stopping (results committed after that point are "
                "lost; restore the run from a backup or start a new run)"
            )

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """`damage_guard` for this run: a block that reads and interprets its records."""
        return damage_guard(self.name)

    def _require_rw(self) -> None:
        if self.mode != "rw":
            raise RunStoreError(
                f"run {self.name!r} is open read-only; open it in 'rw' mode to change it"
            )

    # ---- candidates ------------------------------------------------------------------------

    def add_candidate(
        self,
        fingerprint: str,
        kind: str,
        formula: str | None = None,
        canonical: str | None = None,
        genotype: Any = None,
        origin: str | None = None,
        parents: Sequence[str] = (),
    ) -> tuple[int, bool]:
        """Record a candidate once per fingerprint: returns (id, True) when new, or the existing
        candidate's (id, False) when the fingerprint is already stored."""
        with self.transaction():
            row = self._conn.execute(
                "SELECT id FROM candidates WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            if row is not None:
                return row[0], False
            cur = self._conn.execute(
                "INSERT INTO candidates (fingerprint, kind, formula, canonical, genotype_json,"
                " origin, parents_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fingerprint, kind, formula, canonical,
                    None if genotype is None else json.dumps(genotype),
                    origin, json.dumps(list(parents)), time.time(),
                ),
            )  # fmt: skip
            return int(cur.lastrowid or 0), True

    def candidate(self, candidate_id: int) -> CandidateRecord:
        row = self._conn.execute(
            "SELECT * FROM candidates WHERE id = ?", (candidate_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no candidate with id {candidate_id} in run {self.name!r}")
        return CandidateRecord.from_row(row, self.name)

    def record_proposal(self, key: int, candidate_id: int) -> None:
        """Remember that the strategy's proposal `key` is this candidate (see `proposal_fingerprints`)."""
        with self.transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO proposals (key, candidate_id) VALUES (?, ?)", (key, candidate_id)
            )

    def proposal_fingerprints(self, keys: Sequence[int]) -> list[str]:
        """The fingerprints of the candidates that these proposal keys became, in order; keys
        never recorded (invalid proposals, runs older than schema version 2) are left out."""
        out = []
        for key in keys:
            row = self._conn.execute(
                "SELECT c.fingerprint FROM proposals p JOIN candidates c ON c.id = p.candidate_id"
                " WHERE p.key = ?", (key,),
            ).fetchone()  # fmt: skip
            if row is not None:
                out.append(row[0])
        return out

    def candidate_by_fingerprint(self, fingerprint: str) -> CandidateRecord | None:
        row = self._conn.execute(
            "SELECT * FROM candidates WHERE fingerprint = ?", (fingerprint,)
        ).fetchone()
        return None if row is None else CandidateRecord.from_row(row, self.name)

    # ---- evaluations -----------------------------------------------------------------------

    def queue_evaluation(self, candidate_id: int, task: str, seed: int, budget: int) -> int:
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO evaluations (candidate_id, task, seed, budget, status, queued_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (candidate_id, task, seed, budget, QUEUED, time.time()),
            )
            return int(cur.lastrowid or 0)

    def mark_running(self, eval_id: int, worker: str | None) -> None:
        """The evaluation is handed to a worker (None: not known yet; a known one is kept)."""
        with self.transaction():
            self._update_unfinished(
                eval_id,
                "UPDATE evaluations SET status = ?, worker = COALESCE(?, worker),"
                " started_at = COALESCE(started_at, ?)"
                " WHERE id = ? AND status IN (?, ?)",
                (RUNNING, worker, time.time(), eval_id, QUEUED, RUNNING),
            )

    def finish_evaluation(
        self,
        eval_id: int,
        status: str,
        score: float | None = None,
        metrics: dict[str, Any] | None = None,
        stage: str | None = None,
        reason: str | None = None,
        cost_s: float | None = None,
    ) -> None:
        """Record the outcome: status "done" (score: higher is better), "rejected" (a screening
        stage stopped it) or "failed" (it crashed). A NaN score is stored as missing."""
        if status not in FINISHED_STATUSES:
            raise ValueError(f"status must be one of {FINISHED_STATUSES}, not {status!r}")
        if score is not None and math.isnan(score):
            score = None
        with self.transaction():
            self._update_unfinished(
                eval_id,
                "UPDATE evaluations SET status = ?, score = ?, metrics_json = ?, stage = ?,"
                " reason = ?, cost_s = ?, finished_at = ? WHERE id = ? AND status IN (?, ?)",
                (
                    status, score, json.dumps(metrics or {}), stage, reason, cost_s, time.time(),
                    eval_id, QUEUED, RUNNING,
                ),
            )  # fmt: skip

    def _update_unfinished(self, eval_id: int, sql: str, params: tuple[Any, ...]) -> None:
        if self._conn.execute(sql, params).rowcount == 1:
            return
        row = self._conn.execute("SELECT status FROM evaluations WHERE id = ?", (eval_id,))
        found = row.fetchone()
        if found is None:
            raise KeyError(f"no evaluation with id {eval_id} in run {self.name!r}")
        raise ValueError(f"evaluation {eval_id} is already finished ({found[0]})")

    def evaluation(self, eval_id: int) -> EvaluationRecord:
        row = self._conn.execute("SELECT * FROM evaluations WHERE id = ?", (eval_id,)).fetchone()
        if row is None:
            raise KeyError(f"no evaluation with id {eval_id} in run {self.name!r}")
        return EvaluationRecord.from_row(row, self.name)

    def evaluations_for(self, candidate_id: int) -> list[EvaluationRecord]:
        rows = self._conn.execute(
            "SELECT * FROM evaluations WHERE candidate_id = ? ORDER BY id", (candidate_id,)
        )
        return [EvaluationRecord.from_row(r, self.name) for r in rows]

    def evaluations(self) -> list[EvaluationRecord]:
        """Every evaluation of the run, oldest first."""
        rows = self._conn.execute("SELECT * FROM evaluations ORDER BY id")
        return [EvaluationRecord.from_row(r, self.name) for r in rows]

    def in_flight(self) -> list[EvaluationRecord]:
        """Queued or running evaluations: the work a resumed search must dispatch again."""
        rows = self._conn.execute(
            "SELECT * FROM evaluations WHERE status IN (?, ?) ORDER BY id", (QUEUED, RUNNING)
        )
        return [EvaluationRecord.from_row(r, self.name) for r in rows]

    def requeue_in_flight(self) -> list[EvaluationRecord]:
        """On resume: put evaluations left "running" by a dead process back to "queued"; returns
        every queued evaluation, oldest first."""
        with self.transaction():
            self._conn.execute(
                "UPDATE evaluations SET status = ?, worker = NULL, started_at = NULL"
                " WHERE status = ?",
                (QUEUED, RUNNING),
            )
        return self.in_flight()

    def result_for(
        self, fingerprint: str, task: str, seed: int, budget: int
    ) -> EvaluationRecord | None:
        """The latest "done" or "rejected" evaluation of this fingerprint under this task, seed
        and budget, so it is not trained again. "failed" ones are not reused (may be transient)."""
        row = self._conn.execute(
            "SELECT e.* FROM evaluations e JOIN candidates c ON c.id = e.candidate_id"
            " WHERE c.fingerprint = ? AND e.task = ? AND e.seed = ? AND e.budget = ?"
            " AND e.status IN (?, ?) ORDER BY e.id DESC LIMIT 1",
            (fingerprint, task, seed, budget, DONE, REJECTED),
        ).fetchone()
        return None if row is None else EvaluationRecord.from_row(row, self.name)

    # ---- strategy state --------------------------------------------------------------------

    def save_state(self, step: int, state: Any) -> None:
        """Snapshot the strategy's state as JSON (never pickle); keeps the last KEEP_STATES."""
        state_json = json.dumps(state)
        with self.transaction():
            self._conn.execute(
                "INSERT INTO strategy_state (step, state_json, created_at) VALUES (?, ?, ?)",
                (step, state_json, time.time()),
            )
            self._conn.execute(
                "DELETE FROM strategy_state WHERE id NOT IN"
                " (SELECT id FROM strategy_state ORDER BY id DESC LIMIT ?)",
                (KEEP_STATES,),
            )

    def latest_state(self) -> tuple[int, Any] | None:
        row = self._conn.execute(
            "SELECT step, state_json FROM strategy_state ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return row[0], decode_json(row[1], "state_json", (self.name, "strategy_state", row[0]), dict)

    # ---- validation ------------------------------------------------------------------------

    def add_validation_round(
        self, task: str, steps: int, seeds: Sequence[int], results: Sequence[ValidationResult],
        number: int | None = None,
    ) -> int:
        """Record one validation round (all its results together); returns its round number.
        Earlier rounds are kept: validating again adds evidence, it does not replace it. A
        round on several tasks records each task with the `number` the first one returned."""
        now = time.time()
        with self.transaction():
            if number is None:
                (last,) = self._conn.execute("SELECT COALESCE(MAX(round), 0) FROM validations").fetchone()
                number = int(last) + 1
            self._conn.executemany(
                "INSERT INTO validations (round, candidate_id, formula, baseline, task, steps,"
                " seeds_json, per_seed_json, mean, std, p_value, beats_baseline, error, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        number, r.candidate_id, r.formula, r.baseline, task, steps,
                        json.dumps(list(seeds)), json.dumps(list(r.per_seed)), _finite(r.mean),
                        _finite(r.std), _finite(r.p_value), int(r.beats_baseline), r.error, now,
                    )
                    for r in results
                ],
            )  # fmt: skip
        return number

    def validations(self, candidate_id: int | None = None) -> list[ValidationRecord]:
        """Every stored validation result, oldest round first (one candidate's, if given)."""
        if not self._has_table("validations"):  # a version-1 run opened read-only
            return []
        sql, params = "SELECT * FROM validations", ()
        if candidate_id is not None:
            sql, params = sql + " WHERE candidate_id = ?", (candidate_id,)
        rows = self._conn.execute(sql + " ORDER BY round, id", params)
        return [ValidationRecord.from_row(r) for r in rows]

    def _has_table(self, name: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    # ---- run state and log -----------------------------------------------------------------

    def set_state(self, state: str) -> None:
        """Record where the run stands: one of RUN_STATES."""
        if state not in RUN_STATES:
            raise ValueError(f"state must be one of {RUN_STATES}, not {state!r}")
        with self.transaction():
            self._conn.execute("UPDATE meta SET value = ? WHERE key = 'state'", (state,))

    @property
    def state(self) -> str:
        """Where the run stands: "running" while a process holds the lock, "interrupted" if the
        process that set "running" died, otherwise the state last set with `set_state`."""
        if _lock.holder(self.path / LOCK_FILE) is not None:
            return "running"
        stored = self.meta().get("state", "created")
        return "interrupted" if stored == "running" else stored

    def meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def log(self, message: str) -> None:
        """Append a timestamped line to log.txt."""
        self._require_rw()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"{stamp} {message}\n")

    # ---- summaries -------------------------------------------------------------------------

    def counts(self) -> Counts:
        by_status = {s: 0 for s in (QUEUED, RUNNING, *FINISHED_STATUSES)}
        by_status.update(
            self._conn.execute("SELECT status, COUNT(*) FROM evaluations GROUP BY status")
        )
        by_stage: dict[str, dict[str, int]] = {REJECTED: {}, FAILED: {}}
        for status, stage, count in self._conn.execute(
            "SELECT status, COALESCE(stage, '?'), COUNT(*) FROM evaluations"
            " WHERE status IN (?, ?) GROUP BY 1, 2 ORDER BY 3 DESC", (REJECTED, FAILED)
        ):  # fmt: skip
            by_stage[status][stage] = count
        (n,) = self._conn.execute("SELECT COUNT(*) FROM candidates").fetchone()
        return Counts(candidates=n, by_status=by_status, rejected_by_stage=by_stage[REJECTED],
                      failed_by_stage=by_stage[FAILED])

    @property
    def metric_higher_is_better(self) -> bool:
        """The direction of the main task's metric, from config.toml: built-in tasks score
        accuracy; a user task's metric is recorded under user_tasks (never imported here)."""
        from afsearch.search.config import task_metric

        config = self.config
        try:
            return task_metric(str(config.get("task", "")), config.get("user_tasks")).higher_is_better
        except AfsearchError:  # a hand-edited config naming a metric this afsearch lacks
            return True

    def leaderboard(
        self,
        top: int | None = 10,
        task: str | None = None,
        budget: int | None = None,
        include_unscored: bool = False,
        higher_is_better: bool | None = None,
    ) -> list[LeaderboardEntry]:
        """Best candidates per (task, budget), ordered by `rank_key`: validated candidates first
        by their latest validated score on that task, then the rest by mean finite search score
        over seeds; `higher_is_better` is the direction of the task's metric (False: a loss;
        None: the direction of the run's main task, recorded in config.toml).

        Rejected, failed, NaN, infinite and missing scores never enter a mean and never rank above
        a finite one; with include_unscored, candidates without any finite score are listed last."""
        sql = (
            "SELECT e.candidate_id, e.task, e.budget, e.status, e.score FROM evaluations e"
            " WHERE e.status IN ('done', 'rejected', 'failed')"
        )
        params: list[Any] = []
        if task is not None:
            sql += " AND e.task = ?"
            params.append(task)
        if budget is not None:
            sql += " AND e.budget = ?"
            params.append(budget)
        groups: dict[tuple[int, str, int], tuple[list[float], list[None]]] = {}
        for cid, task_, budget_, status, score in self._conn.execute(sql, params):
            scores, unscored = groups.setdefault((cid, task_, budget_), ([], []))
            if status == DONE and score is not None and math.isfinite(score):
                scores.append(score)
            else:
                unscored.append(None)
        latest: dict[tuple[int, str], ValidationRecord] = {}
        for record in self.validations():  # oldest first: later rounds overwrite earlier ones
            if record.result.candidate_id is not None and record.result.mean is not None:
                latest[(record.result.candidate_id, record.task)] = record
        entries = []
        for (cid, task_, budget_), (scores, unscored) in groups.items():
            if not scores and not include_unscored:
                continue
            entries.append(
                LeaderboardEntry(
                    candidate=self.candidate(cid),
                    task=task_,
                    budget=budget_,
                    mean=statistics.fmean(scores) if scores else None,
                    std=statistics.stdev(scores) if len(scores) > 1 else None,
                    n=len(scores),
                    n_unscored=len(unscored),
                    validated=latest.get((cid, task_)),
                )
            )
        if higher_is_better is None:
            higher_is_better = self.metric_higher_is_better
        entries.sort(key=lambda e: rank_key(e.mean, e.validated_mean, e.candidate.id, higher_is_better))
        return entries if top is None else entries[:top]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@contextmanager
def damage_guard(run: str) -> Iterator[None]:
    """A block that reads and interprets a run's records (a report, a resume). Records are
    checked where they are decoded (`decode_json`), but a value of the right JSON type can still
    be wrong deeper down (a damaged or hand-edited database): the reader's KeyError, TypeError,
    ... escaping the block is reported as damage in the run, on one line that names it (so is
    an ExpressionError: a formula the run stored that does not parse)."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError,
            ExpressionError) as e:
        raise RunStoreError(
            f"run {run!r} is damaged: its records are not as afsearch writes them "
            f"({type(e).__name__}: {str(e)[:120]}); restore the run from a backup or start a "
            "new run"
        ) from e


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _afsearch_version() -> str:
    try:
        return metadata.version("afsearch")
    except metadata.PackageNotFoundError:
        return "unknown"


def _init_db(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("BEGIN")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [
                ("app", "afsearch"),
                ("schema_version", str(SCHEMA_VERSION)),
                ("afsearch_version", _afsearch_version()),
                ("created_at", str(time.time())),
                ("state", "created"),
            ],
        )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


def _connect(db: Path, mode: str) -> sqlite3.Connection:
    uri = f"file:{quote(str(db.absolute()))}?mode={mode}"
    if mode == "ro" and not os.access(db.parent, os.W_OK) and not _wal(db).exists():
        # A read-only run directory: SQLite cannot create the -shm file a WAL database needs
        # and would fail to open. No -wal beside it means every commit is in the file itself
        # and no writer is active (one would need the directory), so read it as immutable.
        uri += "&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
    except sqlite3.Error as e:
        raise RunStoreError(f"cannot open {db}: {e}; check its permissions") from None
    try:
        conn.row_factory = sqlite3.Row
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise RunStoreError(
                f"{db} is corrupt ({'; '.join(problems[:3])}); restore the run from a backup "
                "or start a new run"
            )
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        check_schema_version(db, version)
        check_tables(conn, db, version)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("app") != "afsearch" or meta.get("schema_version") != str(version):
            raise RunStoreError(
                f"{db} has inconsistent metadata (app {meta.get('app')!r}, schema version "
                f"{meta.get('schema_version')!r}); restore the run from a backup or start a new run"
            )
        if mode == "rw":
            conn.execute("PRAGMA foreign_keys = ON")
            # WAL + NORMAL: a killed process loses nothing committed; a power cut may lose the
            # last commits but never corrupts the file.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            if version < SCHEMA_VERSION:
                _migrate(conn, version)
    except sqlite3.OperationalError as e:  # cannot open or lock: not a sign of corruption
        conn.close()
        raise RunStoreError(
            f"cannot read {db} ({e}); check that the run directory and its files are readable, "
            f"and writable where {_wal(db).name} is present (SQLite needs its -shm file)"
        ) from None
    except sqlite3.DatabaseError as e:
        conn.close()
        raise RunStoreError(
            f"{db} is corrupt or unreadable ({e}); restore the run from a backup or start a new run"
        ) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _wal(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring an older run's database to SCHEMA_VERSION in one transaction (all or nothing).
    Read-only opens leave an older run as it is; its readers see what that version holds."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunStoreError(
            f"{path} is missing; the run's configuration is needed to resume it"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise RunStoreError(
            f"{path} is unreadable ({e}); restore it from a backup or start a new run"
        ) from None
