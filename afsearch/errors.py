"""Errors a user can cause. The CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


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
