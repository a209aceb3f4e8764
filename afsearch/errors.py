"""Errors a user can cause. The CLI prints their message on one line and exits with code 2."""

from __future__ import annotations

import traceback
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


def plain_key(key: object) -> str:
    """A key of a user's table as it goes into a one-line message: as written when it is a
    plain name, else quoted and shortened (a key may hold a newline or a megabyte)."""
    text = str(key)
    return text if text and len(text) <= 60 and all(c.isalnum() or c in "_-." for c in text) else shorten(text)


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


def short_traceback(exc: BaseException, frames: int = 4, chars: int = 1500) -> str:
    """The innermost `frames` frames and the exception line, capped at `chars` characters:
    what a failed candidate records so that its cause can be read without a log file."""
    stack = traceback.extract_tb(exc.__traceback__)[-frames:]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(stack),
             *traceback.format_exception_only(type(exc), exc)]
    text = "".join(lines).rstrip()
    return "..." + text[-chars:] if len(text) > chars else text
