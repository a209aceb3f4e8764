"""Crash-safe file writes and a small TOML writer (tomllib only reads)."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new content, never a mix.

    Writes a temp file in the same directory, fsyncs it, renames it over `path` and fsyncs the
    directory, so a crash at any point leaves either the old file or the complete new one. The
    file gets the mode a plain `open(path, "w")` would give it (0666 less the umask): mkstemp's
    0600 would hide exports and run files from colleagues on shared storage."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `path` for writers that need a file name (`torch.jit.save`,
    `torch.export.save`): renamed over `path` when the block succeeds, removed when it fails.
    The file gets the same mode as with `write_atomic`."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _temp_beside(path: Path) -> tuple[int, str]:
    # ends in the target's suffix too: torch.export.save insists on ".pt2"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def _umask() -> int:
    # Linux reports the umask in /proc; elsewhere it can only be read by setting it (and setting
    # it straight back), which another thread creating a file at that instant could notice.
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dumps_toml(data: dict[str, Any]) -> str:
    """TOML text for nested dicts of str/int/float/bool/list values; `tomllib.loads` reverses it.

    TOML has no null and this writer no arrays of tables: such values raise ValueError naming
    the key, so a config is never written with a value silently dropped."""
    lines: list[str] = []
    _write_table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _write_table(table: dict[str, Any], prefix: list[str], lines: list[str]) -> None:
    subtables = {k: v for k, v in table.items() if isinstance(v, dict)}
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    if prefix and (scalars or not subtables):
        lines.append("")
        lines.append("[" + ".".join(_key(k) for k in prefix) + "]")
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value, [*prefix, key])}")
    for key, value in subtables.items():
        _write_table(value, [*prefix, key], lines)


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise ValueError(f"TOML keys must be strings, got {key!r}")
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any, where: list[str]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v, where) for v in value) + "]"
    raise ValueError(
        f"config key {'.'.join(where)!r} has a value of type {type(value).__name__} that TOML "
        "cannot hold; use str, int, float, bool, a list of those, or a table (dict)"
    )


def _string(text: str) -> str:
    # JSON escapes are valid TOML basic-string escapes; TOML also forbids a raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
