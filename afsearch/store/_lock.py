"""One process drives a run: an exclusive flock on runs/<name>/lock, holder's pid inside.

The kernel releases a flock when its process dies (even by SIGKILL), so a crashed search never
leaves a stale lock. flock is unreliable on some network file systems; keep runs on local disk."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from afsearch.errors import RunStoreError

# A reader probing the lock (see `holder`) holds it for microseconds; retry across that window.
_ACQUIRE_TRIES = 10
_ACQUIRE_PAUSE_S = 0.05


class RunLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, run_name: str) -> RunLock:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunStoreError(
                f"cannot lock run {run_name!r} ({path}: {e.strerror}); driving or validating a run "
                "writes to its directory, which must be writable"
            ) from None
        try:
            for attempt in range(_ACQUIRE_TRIES):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == _ACQUIRE_TRIES - 1:
                        pid = _read_pid(path)
                        who = f"process {pid}" if pid else "another process"
                        raise RunStoreError(
                            f"run {run_name!r} is being driven by {who}; wait for it or stop it "
                            f"(lock: {path})"
                        ) from None
                    time.sleep(_ACQUIRE_PAUSE_S)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def claim(self) -> None:
        """Write our pid into the lock file: done once the run has been opened, so a run that
        is refused (say, a newer schema) keeps its lock file byte for byte."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def holder(path: Path) -> int | None:
    """The pid driving the run (0 if unknown), or None when nobody holds the lock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(path) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
