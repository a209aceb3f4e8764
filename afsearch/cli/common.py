"""Helpers the command modules share: KEY=VALUE options, the RUN argument, opening a run
read-only, candidate ids, and the one-line form of a validation row."""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from afsearch.errors import ConfigError, shorten
from afsearch.report.readable import shown_formula
from afsearch.store import (
    RunStore,
    damage_guard,
    resolve_run,
)

#: the largest candidate id (SQLite's 64-bit integers) and --top value accepted
MAX_ID = 2**63 - 1


MAX_TOP = 10_000


def key_value_options(items: list[str] | None, flag: str = "--task-option",
                 example: str = "planted='sin(x)'") -> dict[str, Any]:
    """KEY=VALUE items as a dict (numbers and true/false converted)."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r}: write KEY=VALUE, e.g. {example}")
        options[key.strip()] = scalar(value.strip())
    return options


def scalar(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def add_run_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory, or a run name under --runs-dir")
    parser.add_argument("--runs-dir", default="runs", help="where runs live (default: runs/)")


def open_ro(args: argparse.Namespace) -> RunStore:
    return RunStore.open(resolve_run(args.run, args.runs_dir), "ro")


def reads_run(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """For a command that reads a run and prints it: a damaged record anywhere on the way is
    a one-line error naming the run (see `damage_guard`), not a traceback."""
    @functools.wraps(handler)
    def reads(args: argparse.Namespace) -> int:
        with damage_guard(Path(args.run).name):
            return handler(args)
    return reads


def candidate_id(text: str) -> int:
    try:
        value = int(text.lstrip("#"))
    except ValueError:
        raise ConfigError(f"candidate id must be a number, got {shorten(text)}") from None
    if not 1 <= value <= MAX_ID:  # SQLite integers are 64-bit: a larger id would overflow
        raise ConfigError(f"candidate id must be between 1 and {MAX_ID}, got {shorten(value)}")
    return value


def bits_per_byte_task(task: str | None) -> bool:
    """Whether a task's loss is nats per byte, shown also as bits per byte (lm-transformer)."""
    from afsearch.evaluate import TASKS

    return task in TASKS and TASKS[task].bits_per_byte


def validation_line(row: dict[str, Any], bits_per_byte: bool = False) -> str:
    if row.get("mean") is None:
        return f"   failed      {shown_formula(row['formula'])}  [{row.get('error', 'no result')}]"
    if row.get("baseline"):
        mark = f"baseline {row.get('name', '')}".strip()
    else:
        mark = "beats best baseline" if row.get("beats_baseline") else "not shown better than best baseline"
        if row.get("ci95") is not None:  # paired difference, positive = better (validate._compare)
            mark += f", {row['difference']:+.4f} [95% CI {row['ci95'][0]:+.4f}, {row['ci95'][1]:+.4f}]"
        if row.get("p_value") is not None:
            mark += f", p={row['p_value']:.3g}" + (" Holm" if row.get("p_raw") is not None else "")
    std = "-" if row.get("std") is None else f"{row['std']:.4f}"
    bits = f" ({row['mean'] / math.log(2):.4f} bits/byte)" if bits_per_byte else ""
    return f"{row['mean']:.4f} ± {std}{bits}  {shown_formula(row['formula'])}  [{mark}]"



def validation_lines(report: dict[str, Any]) -> list[str]:
    """A validation report as the CLI prints it: each task's rows under a header naming the
    task when the run scores on several, then which winners beat the best baseline on all."""
    parts = report.get("tasks") or [report]
    lines = []
    shortlist = report.get("shortlist")
    if shortlist:
        rank = {row["id"]: row["search_rank"] for row in shortlist["rows"]}
        lines.append(f"shortlist: the best {len(shortlist['rows'])} by search score retrained on "
                     f"{len(shortlist['seeds'])} seeds of their own; validating the best by {shortlist['aggregate']} "
                     "relative delta there: " + ", ".join(f"#{i} (search rank {rank[i]})" for i in shortlist["picked"]))
    for part in parts:
        if len(parts) > 1:
            lines.append(f"{part['task']} ({part['steps']} steps):")
        bits = bits_per_byte_task(part.get("task"))
        lines.extend("  " + validation_line(row, bits) for row in part["rows"])
    if len(parts) > 1:
        every = set(report.get("beats_every_task") or [])
        winners = [row for row in parts[0]["rows"] if not row.get("baseline") and row.get("id") in every]
        lines.append("beats the best baseline on every task: " + (
            "; ".join(f"#{row['id']} {shown_formula(row['formula'])}" for row in winners) or "none shown"))
    return lines
