"""Commands that create, drive and inspect runs: search, resume, status, leaderboard, runs,
validate, plot; and the run forms of show and export."""

from __future__ import annotations

import argparse
import json
import math
import shlex
from pathlib import Path
from typing import Any

from afsearch.errors import ConfigError, RunStoreError
from afsearch.search.config import SearchConfig, parse_duration
from afsearch.store import RunStore, list_runs, resolve_run

SEARCH_EXAMPLES = """examples:
  afsearch search                                  # swish space, mnist1d-mlp, 40 evaluations
  afsearch search --space gp --budget 100 --workers 2 --name gp-demo
  afsearch search --space swish_beta --strategy tpe --budget 30
  afsearch search --space gp --task teacher-student --task-option planted='sin(x)*x'
  afsearch search --config run.toml --time 30m --ray-address auto
  afsearch search --backend local --seed 3 --quiet   # serial, exactly reproducible
"""


def key_value_options(items: list[str] | None, flag: str = "--task-option",
                 example: str = "planted='sin(x)'") -> dict[str, Any]:
    """KEY=VALUE items as a dict (numbers and true/false converted)."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r}: write KEY=VALUE, e.g. {example}")
        options[key.strip()] = _scalar(value.strip())
    return options


def _scalar(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "space": args.space, "task": args.task, "strategy": args.strategy, "budget": args.budget,
        "steps": args.steps, "seeds": args.seeds, "seed": args.seed, "name": args.name,
        "backend": args.backend, "workers": args.workers, "ray_address": args.ray_address,
        "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial,
        "timeout_s": args.timeout, "validate_top": args.validate_top, "data_dir": args.data_dir,
        "pack": args.pack,
    }
    if args.time is not None:
        out["time_limit_s"] = parse_duration(args.time)
    if args.no_ladder:
        out["ladder"] = False
    if args.task_option:
        out["task_config"] = key_value_options(args.task_option)
    if args.strategy_option:
        out["strategy_options"] = key_value_options(args.strategy_option, "--strategy-option", "population=100")
    if args.extra_task:
        out["extra_tasks"] = list(args.extra_task)
    if args.objective:
        out["objectives"] = [o.strip() for o in ",".join(args.objective).split(",") if o.strip()]
    if args.baselines is not None:
        out["baselines"] = [b.strip() for b in args.baselines.split(",") if b.strip()]
    return out


def _observer(args: argparse.Namespace, budget: int) -> Any:
    from afsearch.cli.display import make_observer

    mode = "json" if getattr(args, "json", False) else "quiet" if args.quiet else "live"
    return make_observer(mode, budget)


def _drive(search: Any, args: argparse.Namespace, observer: Any) -> int:
    from afsearch.search.validate import validate_run

    try:
        summary = search.run()
        if summary.state == "finished" and search.config.validate_top > 0 and search.trained > 0:
            report = validate_run(search.store, search.config, executor=None, on_event=search.on_event)
            summary_validation = report
        else:
            summary_validation = None
    finally:
        observer.close()
        search.close()
    if not getattr(args, "json", False):
        _print_summary(summary, summary_validation)
    return 0


def _print_summary(summary: Any, validation: Any) -> None:
    print(f"run {summary.run}: {summary.state}; {summary.trained} trained, {summary.cache_hits} cached, "
          f"{summary.elapsed_s:.0f} s")
    if summary.best is not None:
        delta = "" if summary.best_baseline is None else f" ({summary.best.mean - summary.best_baseline:+.4f} vs best baseline)"
        print(f"best: {summary.best.mean:.4f}  {summary.best.candidate.formula}{delta}")
    if validation is not None:
        print(f"validation on {validation['seeds']} fresh seeds (test accuracy; {validation['test']}):")
        for row in validation["rows"]:
            print("  " + _validation_line(row))
    if summary.state == "stopped":
        print(f"resume with: afsearch resume {shlex.quote(str(summary.run))}")


def _validation_line(row: dict[str, Any]) -> str:
    if row.get("mean") is None:
        return f"   failed      {row['formula']}  [{row.get('error', 'no result')}]"
    if row.get("baseline"):
        mark = f"baseline {row.get('name', '')}".strip()
    else:
        mark = "beats best baseline" if row.get("beats_baseline") else "not shown better than best baseline"
        if row.get("p_value") is not None:
            mark += f", p={row['p_value']:.3g}"
    return f"{row['mean']:.4f} ± {row['std']:.4f}  {row['formula']}  [{mark}]"


def _search(args: argparse.Namespace) -> int:
    from afsearch.search.engine import Search

    overrides = _overrides(args)
    if args.config:
        config = SearchConfig.load(args.config, overrides)
    else:
        config = SearchConfig.from_dict({k: v for k, v in overrides.items() if v is not None}, "command line")
    observer = _observer(args, config.budget)
    search = Search.create(config, args.runs_dir, on_event=observer)
    return _drive(search, args, observer)


def _resume(args: argparse.Namespace) -> int:
    from afsearch.search.engine import Search

    overrides: dict[str, Any] = {"budget": args.budget, "backend": args.backend, "workers": args.workers,
                                 "ray_address": args.ray_address}
    if args.time is not None:
        overrides["time_limit_s"] = parse_duration(args.time)
    search = Search.resume(args.run, args.runs_dir, overrides=overrides)
    observer = _observer(args, search.config.budget)
    search.on_event = observer
    return _drive(search, args, observer)


def _open_ro(args: argparse.Namespace) -> RunStore:
    return RunStore.open(resolve_run(args.run, args.runs_dir), "ro")


def _status(args: argparse.Namespace) -> int:
    with _open_ro(args) as store:
        counts = store.counts()
        config = store.config
        snapshot = store.latest_state()
        engine = snapshot[1] if snapshot else {}
        board = store.leaderboard(top=1)
        best = board[0] if board else None
        info = {
            "run": str(store.path), "state": store.state, "space": config.get("space"),
            "task": config.get("task"), "strategy": config.get("strategy"), "budget": config.get("budget"),
            "trained": engine.get("trained", 0), "proposals": engine.get("proposals", 0),
            "cache_hits": engine.get("cache_hits", 0), "elapsed_s": engine.get("elapsed_s", 0.0),
            "candidates": counts.candidates, "evaluations": dict(counts.by_status),
            "rejected_by_stage": dict(counts.rejected_by_stage),
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
    if best is not None:
        print(f"best       #{best.candidate.id} {best.mean:.4f}  {best.candidate.formula}")
    return 0


def _leaderboard(args: argparse.Namespace) -> int:
    if args.top <= 0:
        raise ConfigError(f"--top must be a positive integer, got {args.top}")
    from afsearch.search.report import leaderboard_rows

    with _open_ro(args) as store:
        rows = leaderboard_rows(store, top=args.top, pareto=args.pareto)
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no finished evaluations yet")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Pareto front" if args.pareto else None)
    for col in ("rank", "id", "score", "± std", "seeds", "Δ best baseline", "validated (test)", "origin", "formula"):
        table.add_column(col, overflow="fold")
    for i, row in enumerate(rows, 1):
        delta = "" if row["delta_to_best_baseline"] is None else f"{row['delta_to_best_baseline']:+.4f}"
        val = row.get("validation")
        vtext = "" if not val else f"{val['mean']:.4f}±{val['std']:.4f}" + (" ✓" if val.get("beats_baseline") else "")
        std = "-" if row["std"] is None else f"{row['std']:.4f}"
        table.add_row(str(i), str(row["id"]), f"{row['mean']:.4f}", std, str(row["n"]),
                      delta, vtext, row["origin"] or "", row["formula"] or "")
    Console(width=max(120, Console().width)).print(table)
    return 0


def _runs(args: argparse.Namespace) -> int:
    summaries = list_runs(args.runs_dir)
    if args.json:
        print(json.dumps([{"name": s.name, "path": str(s.path), "state": s.state, "error": s.error,
                           "best": None if s.best is None else {"mean": s.best.mean, "formula": s.best.candidate.formula}}
                          for s in summaries]))
        return 0
    if not summaries:
        print(f"no runs under {args.runs_dir}/")
        return 0
    for s in summaries:
        best = "" if s.best is None else f"{s.best.mean:.4f}  {s.best.candidate.formula}"
        print(f"{s.name:<40} {s.state:<12} {s.error or best}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from afsearch.search.validate import validate_run

    path = resolve_run(args.run, args.runs_dir)
    with RunStore.open(path, "rw") as store:
        config = SearchConfig.from_dict(dict(store.config), str(path / "config.toml"))
        if args.top is not None:
            config.validate_top = args.top
        if args.seeds is not None:
            config.validate_seeds = args.seeds
        if args.steps is not None:
            config.validate_steps = args.steps
        config.backend = args.backend or config.backend
        config.validate()
        report = validate_run(store, config)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"validation: {report['seeds']} fresh seeds, {report['steps']} steps, test: {report['test']}")
    for row in report["rows"]:
        print(_validation_line(row))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from afsearch.report.plot import plot_run

    with _open_ro(args) as store:
        written = plot_run(store, args.output, top=args.top)
    for path in written:
        print(path)
    return 0


def show_candidate(args: argparse.Namespace) -> int:
    from afsearch.search.report import candidate_details

    if args.id is None:
        raise ConfigError("give a candidate id: afsearch show RUN ID (ids are in `afsearch leaderboard RUN`)")
    with _open_ro(args) as store:
        info = candidate_details(store, _candidate_id(args.id))
    if args.json:
        print(json.dumps(info, default=str))
        return 0
    print(f"candidate  #{info['id']} ({info['origin']}, fingerprint {info['fingerprint']})")
    print(f"formula    {info['formula']}")
    print(f"canonical  {info['canonical']}")
    if info.get("latex"):
        print(f"latex      {info['latex']}")
    for ev in info["evaluations"]:
        score = "" if ev["score"] is None or not math.isfinite(ev["score"]) else f"{ev['score']:.4f}"
        seeds = ", ".join(f"seed {s['seed']}: {s['val_accuracy']:.4f}" for s in ev.get("per_seed", []))
        print(f"  {ev['task']:<18} steps {ev['budget']:<6} {ev['status']:<9} {score:<8} {seeds}")
        for stage in ev.get("stages", []):
            verdict = "pass" if stage["passed"] else f"reject: {stage['reason']}"
            print(f"      {stage['name']:<10} {verdict}  ({stage['seconds']:.2f} s, {stage['steps']} steps)")
        if ev["status"] == "failed":
            print(f"      failed: {ev['reason']}")
    return 0


def _candidate_id(text: str) -> int:
    try:
        return int(text.lstrip("#"))
    except ValueError:
        raise ConfigError(f"candidate id must be a number, got {text!r}") from None


def export_run(args: argparse.Namespace) -> int:
    from afsearch.compile.export import export_activation, parse_formats
    from afsearch.expr import parse

    formats = parse_formats(args.format)
    if (args.top is None) == (args.candidate_id is None):
        raise ConfigError("with a run, give either --top K or --id ID")
    if args.top is not None and args.top <= 0:
        raise ConfigError(f"--top must be a positive integer, got {args.top}")
    with _open_ro(args) as store:
        if args.candidate_id is not None:
            try:
                records = [store.candidate(_candidate_id(args.candidate_id))]
            except KeyError:
                raise ConfigError(f"run {store.name} has no candidate {args.candidate_id}; see `afsearch leaderboard {args.run}`") from None
        else:
            from afsearch.search.report import leaderboard_rows

            rows = [r for r in leaderboard_rows(store, top=10_000) if r["origin"] != "baseline"][: args.top]
            records = [store.candidate(r["id"]) for r in rows]
    if not records:
        raise RunStoreError("the run has no finished candidates to export yet")
    for rank, record in enumerate(records, 1):
        if record.kind != "activation":
            from afsearch.search.report import export_layer

            path = export_layer(record, Path(args.output), f"candidate_{record.id}")
            print(f"layer        {path}")
            continue
        name = args.name or f"candidate_{record.id}"
        if args.name and len(records) > 1:
            name = f"{args.name}_{rank}"
        written = export_activation(parse(record.formula or ""), args.output, name, formats)
        for fmt, path in written.items():
            print(f"{fmt:<12} {path}")
    return 0


def _add_run_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory, or a run name under --runs-dir")
    parser.add_argument("--runs-dir", default="runs", help="where runs live (default: runs/)")


def register(sub: argparse._SubParsersAction) -> None:
    search = sub.add_parser("search", help="run a search (sensible defaults: `afsearch search` alone works)",
                            description="Search for activation functions or normalization-activation layers.",
                            epilog=SEARCH_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    search.add_argument("--space", help="space name (see `afsearch spaces`) or a .toml file (default: swish)")
    search.add_argument("--task", help="proxy task (default: mnist1d-mlp); see `afsearch eval --help`")
    search.add_argument("--task-option", action="append", metavar="KEY=VALUE", help="task config, e.g. planted='sin(x)'")
    search.add_argument("--extra-task", action="append", metavar="TASK", help="also score every candidate on TASK")
    search.add_argument("--objective", action="append", metavar="LIST", help="objectives for nsga2: accuracy,cost,params")
    search.add_argument("--strategy", help="evolution, gp, nsga2, tpe, cmaes, random, exhaustive (default: by space)")
    search.add_argument("--strategy-option", action="append", metavar="KEY=VALUE",
                        help="strategy setting, e.g. population=100. evolution: population, tournament, "
                             "crossover_prob; gp: mu, lambda_, cxpb, mutpb, tournament; nsga2: population, "
                             "cxpb, mutpb; tpe, cmaes: pruner, n_startup_trials")
    search.add_argument("--budget", type=int, help="number of candidates to train (default: 40)")
    search.add_argument("--time", help="wall-clock limit, e.g. 90s, 30m, 1h30m")
    search.add_argument("--steps", type=int, help="training steps per evaluation (default: the task's)")
    search.add_argument("--seeds", type=int, help="training seeds per evaluation (default: 1)")
    search.add_argument("--seed", type=int, help="master seed of the run (default: 0)")
    search.add_argument("--name", help="run name (default: SPACE-STRATEGY-TIMESTAMP)")
    search.add_argument("--config", help="TOML file with any of these settings; flags override it")
    search.add_argument("--runs-dir", default="runs", help="where runs are created (default: runs/)")
    search.add_argument("--backend", choices=("ray", "local"), help="ray (default) or local (serial, reproducible)")
    search.add_argument("--workers", type=int, help="concurrent evaluations (default: all CPUs / --cpus-per-trial)")
    search.add_argument("--ray-address", help="join an existing Ray cluster: auto or HOST:PORT")
    search.add_argument("--cpus-per-trial", type=float, help="CPUs per evaluation (default: 1)")
    search.add_argument("--gpus-per-trial", type=float, help="GPUs per evaluation, fractional allowed (default: 0)")
    search.add_argument("--pack", type=int, help="candidates trained together per job (stacked MLPs; default 1)")
    search.add_argument("--timeout", type=float, help="seconds before a candidate is killed (default: 600)")
    search.add_argument("--no-ladder", action="store_true", help="train every candidate fully (no early rejection)")
    search.add_argument("--baselines", help="comma list of reference activations to compare with")
    search.add_argument("--validate-top", type=int, help="retrain the best K on fresh seeds at the end (default: 3)")
    search.add_argument("--data-dir", help="local CIFAR-10 python batches for cifar10-resnet")
    output = search.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="print only the final summary")
    output.add_argument("--json", action="store_true", help="print one JSON event per line")
    search.set_defaults(handler=_search)

    resume = sub.add_parser("resume", help="continue a stopped or crashed run",
                            epilog="example:\n  afsearch resume runs/swish-evolution-20261129-120000 --budget 80",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_arg(resume)
    resume.add_argument("--budget", type=int, help="raise the evaluation budget")
    resume.add_argument("--time", help="new wall-clock limit for the whole run")
    resume.add_argument("--backend", choices=("ray", "local"))
    resume.add_argument("--workers", type=int)
    resume.add_argument("--ray-address")
    output = resume.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true")
    output.add_argument("--json", action="store_true")
    resume.set_defaults(handler=_resume)

    status = sub.add_parser("status", help="progress and counts of a run (works while it runs)")
    _add_run_arg(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    board = sub.add_parser("leaderboard", help="best candidates of a run")
    _add_run_arg(board)
    board.add_argument("--top", type=int, default=10)
    board.add_argument("--pareto", action="store_true", help="only the Pareto front of the objectives")
    board.add_argument("--json", action="store_true")
    board.set_defaults(handler=_leaderboard)

    runs = sub.add_parser("runs", help="list runs with their state and best candidate")
    runs.add_argument("--runs-dir", default="runs")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=_runs)

    validate = sub.add_parser("validate", help="retrain the top candidates on fresh seeds beside the baselines")
    _add_run_arg(validate)
    validate.add_argument("--top", type=int)
    validate.add_argument("--seeds", type=int)
    validate.add_argument("--steps", type=int)
    validate.add_argument("--backend", choices=("ray", "local"))
    validate.add_argument("--json", action="store_true")
    validate.set_defaults(handler=_validate)

    plot = sub.add_parser("plot", help="PNG plots: top activations and derivatives, progress, rejection funnel")
    _add_run_arg(plot)
    plot.add_argument("-o", "--output", help="output directory (default: RUN/plots)")
    plot.add_argument("--top", type=int, default=5)
    plot.set_defaults(handler=_plot)
