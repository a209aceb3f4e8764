"""Per-process cache for data a job function needs on every call (datasets, tensors on the
device). Ray reuses worker processes between tasks, so a task's data is built once per worker
and only the small candidate payload travels with each job. The local backend shares the
same cache with the calling process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_cache: dict[Hashable, Any] = {}
_lock = threading.Lock()
_builds = 0


def per_worker(key: Hashable, build: Callable[[], T]) -> T:
    """The value cached under `key` in this process, calling `build()` the first time."""
    global _builds
    with _lock:
        if key not in _cache:
            _cache[key] = build()
            _builds += 1
        return _cache[key]


def per_worker_builds() -> int:
    """How many values this process has built (tests check data is not rebuilt per job)."""
    return _builds


def clear_per_worker() -> None:
    global _builds
    with _lock:
        _cache.clear()
        _builds = 0
