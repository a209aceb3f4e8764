"""Errors a user can cause. The CLI prints their message on one line and exits with code 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class AfsearchError(Exception):
    """Base class for every error caused by user input (formulas, configs, paths, arguments)."""


class ExpressionError(AfsearchError):
    """A formula could not be parsed or violates a limit; the message names the position."""


class SpaceError(AfsearchError):
    """A search-space file is malformed; the message names the file, the key and allowed values."""


class ConfigError(AfsearchError):
    """A run configuration or CLI argument is invalid."""


class TaskError(AfsearchError):
    """A task name, task config or data directory is invalid."""


class RunStoreError(AfsearchError):
    """A run directory is missing, corrupt, foreign, or locked by another process."""


class ExecutorError(AfsearchError):
    """A resource request can never be satisfied by the cluster, or the cluster is unreachable."""


def shorten(value: object, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for error messages: a user's 3000-digit number
    or megabyte string must not be echoed whole on the one error line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 3]}... ({len(text)} characters)"


def space_error(file: str | Path, key: str, problem: str, allowed: Any = None) -> SpaceError:
    """The one message format of malformed space files and genotypes,
    ``<file>: key '<key>': <problem>; allowed: <values>``; `allowed` is a description or a
    collection of values."""
    message = f"{file}: key '{key}': {problem}"
    if allowed is not None:
        message += f"; allowed: {describe_allowed(allowed)}"
    return SpaceError(message)


def describe_allowed(allowed: Any) -> str:
    if isinstance(allowed, str):
        return allowed
    if isinstance(allowed, set | frozenset):
        allowed = sorted(allowed)
    return ", ".join(str(v) for v in allowed)
