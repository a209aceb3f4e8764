"""Commands that read a run without changing it: status, leaderboard, runs, plot, and the run
forms of show and export. None of them imports a user's task file."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from afsearch.cli import bounded_int
from afsearch.cli.common import (
    MAX_TOP,
    add_run_arg,
    candidate_id,
    open_ro,
    reads_run,
    validation_line,
)
from afsearch.errors import ConfigError, RunStoreError
from afsearch.evaluate.metric import get_metric
from afsearch.report.readable import shown
from afsearch.store import (
    BASELINE_ORIGIN,
    list_runs,
)


@reads_run
def _status(args: argparse.Namespace) -> int:
    with open_ro(args) as store:
        counts = store.counts()
        config = store.config
        snapshot = store.latest_state()
        engine = snapshot[1] if snapshot else {}
        progress = {key: kind(engine.get(key, 0)) for key, kind in
                    (("trained", int), ("proposals", int), ("cache_hits", int), ("elapsed_s", float))}
        from afsearch.report.runs import best_of_run

        best = best_of_run(store)
        info = {
            "run": str(store.path), "state": store.state, "space": config.get("space"),
            "task": config.get("task"), "strategy": config.get("strategy"), "budget": config.get("budget"),
            **progress, "candidates": counts.candidates, "evaluations": dict(counts.by_status),
            "rejected_by_stage": dict(counts.rejected_by_stage), "failed_by_stage": dict(counts.failed_by_stage),
            "best": None if best is None else {"id": best.candidate.id, "formula": best.candidate.formula,
                                                "mean": best.mean, "std": best.std, "origin": best.candidate.origin},
        }
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"run        {info['run']}  ({info['state']})")
    print(f"search     space={info['space']} task={info['task']} strategy={info['strategy']}")
    print(f"progress   {info['trained']}/{info['budget']} trained, {info['cache_hits']} cached, "
          f"{info['candidates']} candidates, {info['elapsed_s']:.0f} s")
    print("evaluations " + ", ".join(f"{k} {v}" for k, v in sorted(info["evaluations"].items())))
    if info["rejected_by_stage"]:
        print("rejected   " + ", ".join(f"{k} {v}" for k, v in sorted(info["rejected_by_stage"].items())))
    if info["failed_by_stage"]:
        print("failed     " + ", ".join(f"{k} {v}" for k, v in sorted(info["failed_by_stage"].items())))
    if best is not None:
        print(f"best       #{best.candidate.id} {best.mean:.4f}  {shown(best.candidate)}")
    return 0


@reads_run
def _leaderboard(args: argparse.Namespace) -> int:
    from afsearch.report.runs import leaderboard_rows

    with open_ro(args) as store:
        rows = leaderboard_rows(store, top=args.top, pareto=args.pareto)
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no finished evaluations yet")
        return 0
    from rich.console import Console
    from rich.table import Table

    from afsearch.report.runs import ranking_note

    print(("Pareto front; " if args.pareto else "") + ranking_note(rows))
    if rows[0].get("tasks"):
        Console(width=max(120, Console().width)).print(_multi_task_table(rows))
        return 0
    table = Table()
    metric = rows[0].get("metric", "accuracy")
    for col in ("rank", "id", f"search {metric}", "± std", "seeds", "Δ best baseline", "validated (test)", "origin",
                "formula"):
        table.add_column(col, overflow="fold")
    for i, row in enumerate(rows, 1):
        delta = "" if row["delta_to_best_baseline"] is None else f"{row['delta_to_best_baseline']:+.4f}"
        val = row.get("validation")
        vtext = "" if not val else f"{val['mean']:.4f}±{val['std']:.4f}" + (" ✓" if val.get("beats_baseline") else "")
        std = "-" if row["std"] is None else f"{row['std']:.4f}"
        table.add_row(str(i), str(row["id"]), f"{row['mean']:.4f}", std, str(row["n"]),
                      delta, vtext, row["origin"] or "", row["simplified"])
    Console(width=max(120, Console().width)).print(table)
    return 0


def _multi_task_table(rows: list[dict[str, Any]]) -> Any:
    """A run on several tasks: the aggregate of relative deltas (search / validated), then each
    task's search score and delta to its best baseline in the metric's units (validated test
    delta after a slash where validated; ✓: beats it in the paired test)."""
    from rich.table import Table

    tasks = list(rows[0]["tasks"])
    table = Table()
    for col in ("rank", "id", f"{rows[0]['aggregate']['how']} relative Δ (search / validated)",
                *[f"{t}: search (Δ / validated Δ)" for t in tasks], "origin", "formula"):
        table.add_column(col, overflow="fold")
    for i, row in enumerate(rows, 1):
        agg = row["aggregate"]
        cells = [f"{agg['search']:+.3f}" + ("" if agg["validated"] is None else f" / {agg['validated']:+.3f}")]
        for task in tasks:
            part = row["tasks"][task]
            val = "" if part["validated_delta"] is None else f" / {part['validated_delta']:+.4f}" + (
                " ✓" if part["validation"] and part["validation"].get("beats_baseline") else "")
            delta = "-" if part["delta_to_best_baseline"] is None else f"{part['delta_to_best_baseline']:+.4f}"
            cells.append(f"{part['mean']:.4f} ({delta}{val})")
        table.add_row(str(i), str(row["id"]), *cells, row["origin"] or "", row["simplified"])
    return table


def _runs(args: argparse.Namespace) -> int:
    if not Path(args.runs_dir).is_dir():
        problem = "is not a directory" if Path(args.runs_dir).exists() else "does not exist"
        raise ConfigError(f"runs directory {args.runs_dir} {problem}; see --runs-dir")
    from afsearch.report.runs import best_of_run

    summaries = list_runs(args.runs_dir, best_of_run)
    if args.json:
        print(json.dumps([{"name": s.name, "path": str(s.path), "state": s.state, "error": s.error,
                           "best": None if s.best is None else {
                               "id": s.best.candidate.id, "mean": s.best.mean, "validated_mean": s.best.validated_mean,
                               "formula": s.best.candidate.formula}}
                          for s in summaries]))
        return 0
    if not summaries:
        print(f"no runs under {args.runs_dir}/")
        return 0
    print(f"{'run':<40} {'state':<12} best candidate (baselines excluded; score, which score, formula)")
    for s in summaries:
        print(f"{s.name:<40} {s.state:<12} {s.error or _best_text(s.best)}")
    return 0


def _best_text(best: Any) -> str:
    if best is None:
        return "-"
    if best.validated_mean is not None:
        return f"{best.validated_mean:.4f} validated  {shown(best.candidate)}"
    return f"{best.mean:.4f} search     {shown(best.candidate)}"


@reads_run
def _plot(args: argparse.Namespace) -> int:
    from afsearch.report.plot import plot_run

    with open_ro(args) as store:
        written = plot_run(store, args.output, top=args.top)
    for path in written:
        print(path)
    return 0


@reads_run
def show_candidate(args: argparse.Namespace) -> int:
    from afsearch.report.runs import candidate_details

    if args.id is None:
        raise ConfigError("give a candidate id: afsearch show RUN ID (ids are in `afsearch leaderboard RUN`)")
    with open_ro(args) as store:
        info = candidate_details(store, candidate_id(args.id))
    if args.json:
        print(json.dumps(info, default=str))
        return 0
    print(f"candidate  #{info['id']} ({info['origin']}, fingerprint {info['fingerprint']})")
    print(f"formula    {info['simplified']}")
    print(f"proposed   {info['formula']}")
    if info.get("latex"):
        print(f"latex      {info['latex']}")
    if info["parents"]:
        ids = ", ".join("?" if i is None else f"#{i}" for i in info["parent_ids"])
        print(f"parents    {ids}")
    for ev in info["evaluations"]:
        score = "" if ev["score"] is None or not math.isfinite(ev["score"]) else f"{ev['score']:.4f}"
        source = "val_loss" if get_metric(ev["metric"]).source == "loss" else "val_accuracy"
        seeds = ", ".join(f"seed {s['seed']}: {s[source]:.4f}" for s in ev.get("per_seed", []))
        print(f"  {ev['task']:<18} steps {ev['budget']:<6} {ev['status']:<9} {score:<8} {seeds}")
        for stage in ev.get("stages", []):
            verdict = "pass" if stage["passed"] else f"reject: {stage['reason']}"
            print(f"      {stage['name']:<10} {verdict}  {_stage_detail(stage, ev['metric'])}")
        if ev["status"] == "failed":
            print(f"      failed: {ev['reason']}")
    for val in info["validations"]:
        print(f"  validation round {val['round']} on {val['task']}: {val['seeds']} fresh seeds, {val['steps']} steps: "
              + validation_line(val))
    return 0


def _stage_detail(stage: dict[str, Any], metric_name: str = "accuracy") -> str:
    cost = f"({stage['seconds']:.2f} s, {stage['steps']} steps)"
    stats = stage.get("stats") or {}
    source = get_metric(metric_name).source
    if stage["name"] != "quality" or f"val_{source}" not in stats:
        return cost
    # the gate measures no time of its own: it reads the validation metric during training
    # "{reference}_{source}": the task's reference activation (ReLU, or GELU for the LM task)
    refs = [k for k in stats if k.endswith(f"_{source}") and k != f"val_{source}"]
    label = refs[0].removesuffix(f"_{source}") if refs else ""
    label = "ReLU" if label == "relu" else label.upper()
    against = f", {label} {stats[refs[0]]:.4f}" if refs else ", no reference baseline"
    return (f"at step {int(stats.get('step', stage['steps']))}: val {metric_name} {stats[f'val_{source}']:.4f} vs "
            f"threshold {stats['threshold']:.4f}{against}")


@reads_run
def export_run(args: argparse.Namespace) -> int:
    from afsearch.compile.export import parse_formats
    from afsearch.export import export_candidate, skipped_formats

    formats = parse_formats(args.format)
    if (args.top is None) == (args.candidate_id is None):
        raise ConfigError("with a run, give either --top K or --id ID")
    with open_ro(args) as store:
        if args.candidate_id is not None:
            try:
                records = [store.candidate(candidate_id(args.candidate_id))]
            except KeyError:
                raise ConfigError(f"run {store.name} has no candidate {args.candidate_id}; see `afsearch leaderboard {args.run}`") from None
        else:
            from afsearch.report.runs import leaderboard_rows

            rows = [r for r in leaderboard_rows(store, top=10_000) if r["origin"] != BASELINE_ORIGIN][: args.top]
            records = [store.candidate(r["id"]) for r in rows]
    if not records:
        raise RunStoreError("the run has no finished candidates to export yet")
    from afsearch.candidate import ACTIVATION, Candidate
    from afsearch.expr import to_string
    from afsearch.report.readable import exported_expr
    from afsearch.report.runs import record_candidate, run_ffn_form

    with open_ro(args) as store:
        ffn = run_ffn_form(store)
    for rank, record in enumerate(records, 1):
        if record.kind == "layer":
            from afsearch.compile.export import export_layer

            path = export_layer(record.genotype, record.formula or "", args.output, f"candidate_{record.id}")
            print(f"layer        {path}")
            continue
        name = args.name or f"candidate_{record.id}"
        if args.name and len(records) > 1:
            name = f"{args.name}_{rank}"
        candidate = record_candidate(record)
        if candidate.kind == ACTIVATION:  # the simplified formula, at full precision
            candidate = Candidate.activation(to_string(exported_expr(record)))
        written = export_candidate(candidate, args.output, name, formats, ffn=ffn)
        for fmt, path in written.items():
            print(f"{fmt:<12} {path}")
        for fmt in skipped_formats(candidate, formats):
            print(f"{fmt:<12} not written: token-wise activations (MoA, PolyNorm) export as python only")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="progress and counts of a run (works while it runs)")
    add_run_arg(status)
    status.add_argument("--json", action="store_true", help="print the status as one JSON object")
    status.set_defaults(handler=_status)

    board = sub.add_parser("leaderboard", help="best candidates of a run")
    add_run_arg(board)
    board.add_argument("--top", type=bounded_int(1, MAX_TOP), default=10,
                       help="number of candidates shown (default: %(default)s)")
    board.add_argument("--pareto", action="store_true", help="only the Pareto front of the objectives")
    board.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    board.set_defaults(handler=_leaderboard)

    runs = sub.add_parser("runs", help="list runs with their state and best candidate")
    runs.add_argument("--runs-dir", default="runs")
    runs.add_argument("--json", action="store_true", help="print the runs as one JSON list")
    runs.set_defaults(handler=_runs)

    plot = sub.add_parser("plot", help="PNG plots: top activations and derivatives, progress, rejection funnel")
    add_run_arg(plot)
    plot.add_argument("-o", "--output", help="output directory (default: RUN/plots)")
    plot.add_argument("--top", type=bounded_int(1, MAX_TOP), default=5,
                      help="candidates drawn in the activation plots (default: %(default)s)")
    plot.set_defaults(handler=_plot)
