"""Small validation helpers shared by every search-space TOML loader.

Each check raises `SpaceError` with one message format,

    <file>: key '<dotted.key>': <problem>; allowed: <values>

so a user learns which file, which key and what to write instead. Keys are dotted paths from
the table passed in (usually the whole document): `require(doc, "limits.max_nodes", int, path)`.

    doc = load_toml(path)
    check_keys(doc, "", {"name", "kind", "limits"}, path)
    check_keys(doc, "limits", {"max_nodes"}, path)
    max_nodes = require(doc, "limits.max_nodes", int, path, minimum=1)
    ops = require(doc, "ops", list, path, items=str, allowed=KNOWN_OPS)
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from afsearch.errors import AfsearchError, SpaceError, plain_key, shorten, space_error

_MISSING = object()

_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "table",
}


#: space and config files are a few kilobytes; anything bigger is refused before it is read
MAX_FILE_BYTES = 1_000_000


def read_toml(path: str | Path, error: type[AfsearchError], what: str,
              max_bytes: int = MAX_FILE_BYTES) -> dict[str, Any]:
    """Read and parse a TOML file that a user hands us, raising `error` with one line: missing,
    not a regular file (a FIFO or /dev/zero would block or never end), bigger than `max_bytes`
    (checked with stat before reading), not UTF-8, or a syntax error (line and column)."""
    path = Path(path)
    try:
        if not path.is_file():
            problem = "it is not a regular file" if path.exists() else "it does not exist"
            raise error(f"{path}: cannot read {what}: {problem}")
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{path}: {what} is {size} bytes; the limit is {max_bytes}")
        with path.open("rb") as fh:
            raw = fh.read(max_bytes + 1)  # the file may have grown since the stat
    except OSError as err:
        raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None
    if len(raw) > max_bytes:
        raise error(f"{path}: {what} is more than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: {what} is not UTF-8 text (bad byte at offset {err.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:  # the message ends "(at line L, column C)"
        raise error(f"{path}: invalid TOML: {err}") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read and parse a space file; every problem is a one-line `SpaceError`."""
    return read_toml(path, SpaceError, "space file")


def require(
    table: dict[str, Any],
    key: str,
    type_: type,
    file: str | Path,
    allowed: Collection[Any] | None = None,
    *,
    items: type | None = None,
    minimum: float | None = None,
) -> Any:
    """The value at dotted `key`, checked: its type (`float` accepts integers), membership in
    `allowed` (for a list: every item), `items` type for lists, and `minimum` for numbers."""
    value = _lookup(table, key, file)
    if value is _MISSING:
        raise space_error(
            file, key, "missing", allowed if allowed is not None else _TYPE_NAMES[type_]
        )
    return _check(value, key, type_, file, allowed, items, minimum)


def optional(
    table: dict[str, Any],
    key: str,
    type_: type,
    file: str | Path,
    default: Any,
    allowed: Collection[Any] | None = None,
    *,
    items: type | None = None,
    minimum: float | None = None,
) -> Any:
    """Like `require`, but a missing key gives `default` (returned unchecked)."""
    value = _lookup(table, key, file)
    if value is _MISSING:
        return default
    return _check(value, key, type_, file, allowed, items, minimum)


def check_keys(
    table: dict[str, Any], key: str, allowed_keys: Iterable[str], file: str | Path
) -> None:
    """Reject keys of the table at dotted `key` ("" for the top level) not in `allowed_keys`."""
    sub = table if key == "" else _lookup(table, key, file)
    if sub is _MISSING:
        return
    if not isinstance(sub, dict):
        raise space_error(file, key, f"expected a table, got {_show(sub)}", "table")
    allowed_keys = sorted(allowed_keys)
    for name in sub:
        if name not in allowed_keys:
            raise space_error(file, _join(key, plain_key(name)), "unknown key", allowed_keys)


def _lookup(table: dict[str, Any], key: str, file: str | Path) -> Any:
    value: Any = table
    walked = ""
    for part in key.split("."):
        if not isinstance(value, dict):
            raise space_error(file, walked, f"expected a table, got {_show(value)}", "table")
        walked = _join(walked, part)
        if part not in value:
            return _MISSING
        value = value[part]
    return value


def _check(value, key, type_, file, allowed, items, minimum) -> Any:
    value = _typed(value, type_, key, file)
    if items is not None:
        value = [_typed(item, items, f"{key}[{i}]", file) for i, item in enumerate(value)]
    if allowed is not None:
        for i, item in enumerate(value if type_ is list else [value]):
            if item not in allowed:
                where = f"{key}[{i}]" if type_ is list else key
                raise space_error(file, where, f"unknown value {_show(item)}", allowed)
    if minimum is not None and value < minimum:
        raise space_error(
            file, key, f"{shorten(value)} is below the minimum", f"{type_.__name__} >= {minimum}"
        )
    return value


def _typed(value: Any, type_: type, key: str, file: str | Path) -> Any:
    if type_ is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # a 400-digit integer
            raise space_error(file, key, f"{_show(value)} is too large", "a finite number") from None
    if isinstance(value, type_) and not (isinstance(value, bool) and type_ is not bool):
        # TOML has nan and inf; no space setting means either, and each would only fail later
        # (every proposal of a space with a nan initial value fails to train)
        if isinstance(value, float) and not math.isfinite(value):
            raise space_error(file, key, f"{value} is not a finite number", "a finite number")
        return value
    raise space_error(
        file, key, f"expected {_TYPE_NAMES[type_]}, got {_show(value)}", _TYPE_NAMES[type_]
    )


def _show(value: Any) -> str:
    kind = next(
        (name for t, name in _TYPE_NAMES.items() if isinstance(value, t)), type(value).__name__
    )
    return f"{kind} {shorten(value)}" if not isinstance(value, dict | list) else kind


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
