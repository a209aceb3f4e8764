"""Read-side views of a run: leaderboard rows (with Pareto front and validation), one
candidate's details, exporting layer candidates. Read-only: works while a search runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from afsearch.search.config import steps_for
from afsearch.store import CandidateRecord, RunStore, write_atomic

BASELINE = "baseline"
VALIDATION_FILE = "validation.json"


def main_task_and_steps(store: RunStore) -> tuple[str, int]:
    config = store.config
    task = config.get("task", "mnist1d-mlp")
    return task, steps_for(task, config.get("steps"))


def load_validation(store: RunStore) -> dict[str, Any] | None:
    path = store.path / VALIDATION_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _metrics_of(store: RunStore, candidate_id: int, task: str, steps: int) -> dict[str, Any]:
    for ev in store.evaluations_for(candidate_id):
        if ev.task == task and ev.budget == steps and ev.status == "done":
            return ev.metrics
    return {}


def leaderboard_rows(store: RunStore, top: int = 10, pareto: bool = False) -> list[dict[str, Any]]:
    """Best first. Score = mean validation accuracy over the training seeds of the main task;
    std over those seeds; failed/rejected/non-finite never appear above a finite score."""
    task, steps = main_task_and_steps(store)
    entries = store.leaderboard(top=None, task=task, budget=steps)
    baseline_scores = [e.mean for e in entries if e.candidate.origin == BASELINE and e.mean is not None]
    best_baseline = max(baseline_scores) if baseline_scores else None
    validation = load_validation(store) or {}
    validated = {row["id"]: row for row in validation.get("rows", [])}
    rows = []
    for entry in entries:
        if entry.mean is None or not math.isfinite(entry.mean):
            continue
        metrics = _metrics_of(store, entry.candidate.id, task, steps)
        std = metrics.get("std_accuracy") if len(metrics.get("per_seed", [])) > 1 else entry.std
        cost = metrics.get("activation_cost")
        rows.append({
            "id": entry.candidate.id,
            "formula": entry.candidate.formula,
            "origin": entry.candidate.origin,
            "fingerprint": entry.candidate.fingerprint,
            "mean": entry.mean,
            "std": float(std) if isinstance(std, (int, float)) and math.isfinite(std) else None,
            "n": len(metrics.get("per_seed", [])) or entry.n,
            "activation_cost": cost if isinstance(cost, (int, float)) else None,
            "params": metrics.get("params"),
            "delta_to_best_baseline": None if best_baseline is None else entry.mean - best_baseline,
            "validation": validated.get(entry.candidate.id),
        })
    if pareto:
        rows = pareto_front(rows)
    return rows[:top]


def pareto_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Non-dominated rows under (accuracy up, activation cost down); rows without a measured
    cost are compared on accuracy alone."""
    def objectives(row: dict[str, Any]) -> tuple[float, float]:
        cost = row.get("activation_cost")
        return row["mean"], -(cost if cost is not None and math.isfinite(cost) else math.inf)

    front = []
    for row in rows:
        a = objectives(row)
        dominated = any(
            (b[0] >= a[0] and b[1] >= a[1]) and (b[0] > a[0] or b[1] > a[1])
            for other in rows if other is not row for b in [objectives(other)]
        )
        if not dominated:
            front.append(row)
    return front


def candidate_details(store: RunStore, candidate_id: int) -> dict[str, Any]:
    from afsearch.errors import ConfigError

    try:
        record = store.candidate(candidate_id)
    except KeyError:
        raise ConfigError(
            f"run {store.name} has no candidate {candidate_id}; see `afsearch leaderboard {store.path}`"
        ) from None
    info: dict[str, Any] = {
        "id": record.id, "origin": record.origin, "kind": record.kind, "fingerprint": record.fingerprint,
        "formula": record.formula, "canonical": record.canonical, "genotype": record.genotype,
        "parents": list(record.parents), "latex": None, "evaluations": [],
    }
    if record.kind == "activation" and record.formula:
        from afsearch.expr import parse, to_latex

        info["latex"] = to_latex(parse(record.formula))
    for ev in store.evaluations_for(candidate_id):
        metrics = ev.metrics or {}
        info["evaluations"].append({
            "id": ev.id, "task": ev.task, "seed": ev.seed, "budget": ev.budget, "status": ev.status,
            "stage": ev.stage, "reason": ev.reason, "score": ev.score, "cost_s": ev.cost_s, "worker": ev.worker,
            "per_seed": metrics.get("per_seed", []), "stages": metrics.get("stages", []),
            "mean_accuracy": metrics.get("mean_accuracy"), "std_accuracy": metrics.get("std_accuracy"),
            "test_accuracy": metrics.get("test_accuracy"), "activation_cost": metrics.get("activation_cost"),
            "params": metrics.get("params"), "delta_to_best_baseline": metrics.get("delta_to_best_baseline"),
        })
    validation = load_validation(store) or {}
    info["validation"] = next((r for r in validation.get("rows", []) if r["id"] == candidate_id), None)
    return info


def export_layer(record: CandidateRecord, out_dir: Path, name: str) -> Path:
    """Layer candidates export as their JSON graph (rebuild with LayerGraph.from_json)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.layer.json"
    write_atomic(path, json.dumps({"formula": record.formula, "graph": record.genotype}, indent=2) + "\n")
    return path
