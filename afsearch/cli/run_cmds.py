"""Commands that create, drive and inspect runs: search, resume, status, leaderboard, runs,
validate, plot; and the run forms of show and export."""

from __future__ import annotations

import argparse
import functools
import json
import math
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from afsearch.cli import bounded_int
from afsearch.errors import ConfigError, RunStoreError, shorten
from afsearch.evaluate.metric import get_metric
from afsearch.search.config import SearchConfig, parse_duration
from afsearch.search.readable import exported_expr, shown, shown_formula
from afsearch.store import RunStore, best_entry, damage_guard, list_runs, resolve_run

#: the largest candidate id (SQLite's 64-bit integers) and --top value accepted
MAX_ID = 2**63 - 1
MAX_TOP = 10_000

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
        "pack": args.pack, "device": args.device,
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
    """Run the search, then validate its winners if it finished having recorded something new
    (or was never validated). Exit 0 when finished; 130 when Ctrl-C stopped it, so scripts can
    tell "stopped" from "finished" (a second Ctrl-C raises KeyboardInterrupt: also 130)."""
    from afsearch.search.validate import validate_run

    run = search.store.path
    recorded_before = _recorded(search.store)
    summary, summary_validation, phase = None, None, "search"
    try:
        summary = search.run()
        if summary.state == "finished" and search.config.validate_top > 0 and search.trained > 0 and (
                _recorded(search.store) > recorded_before or not search.store.validations()):
            phase = "validation"
            summary_validation = validate_run(search.store, search.config, executor=None,
                                              on_event=search.on_event)
    except KeyboardInterrupt:
        observer.close()
        if phase == "search":
            print(_resume_hint(run), file=sys.stderr)
        else:
            print(f"validation interrupted; validate with: afsearch validate {shlex.quote(str(run))}",
                  file=sys.stderr)
        raise
    finally:
        observer.close()
        search.close()
    if not getattr(args, "json", False):
        _print_summary(summary, summary_validation)
    return 130 if summary.state == "stopped" else 0


def _recorded(store: RunStore) -> int:
    counts = store.counts()
    return sum(counts.by_status[s] for s in ("done", "rejected", "failed"))


def _resume_hint(run: Path) -> str:
    return f"resume with: afsearch resume {shlex.quote(str(run))}"


def _print_summary(summary: Any, validation: Any) -> None:
    print(f"run {summary.run}: {summary.state}; {summary.trained} trained, {summary.cache_hits} cached, "
          f"{summary.elapsed_s:.0f} s")
    if summary.best is not None:
        metric = get_metric(summary.metric)
        delta = "" if summary.best_baseline is None else \
            f" ({metric.delta(summary.best.mean, summary.best_baseline):+.4f} better than best baseline)"
        print(f"best: {metric.name} {summary.best.mean:.4f}  {shown(summary.best.candidate)}{delta}")
    if validation is not None:
        print(f"validation on {validation['seeds']} fresh seeds (test {validation.get('metric', 'accuracy')}; "
              f"{validation['test']}):")
        for row in validation["rows"]:
            print("  " + _validation_line(row))
    if summary.state == "stopped":
        print(_resume_hint(summary.run))


def _validation_line(row: dict[str, Any]) -> str:
    if row.get("mean") is None:
        return f"   failed      {shown_formula(row['formula'])}  [{row.get('error', 'no result')}]"
    if row.get("baseline"):
        mark = f"baseline {row.get('name', '')}".strip()
    else:
        mark = "beats best baseline" if row.get("beats_baseline") else "not shown better than best baseline"
        if row.get("p_value") is not None:
            mark += f", p={row['p_value']:.3g}"
    std = "-" if row.get("std") is None else f"{row['std']:.4f}"
    return f"{row['mean']:.4f} ± {std}  {shown_formula(row['formula'])}  [{mark}]"


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
    path = resolve_run(args.run, args.runs_dir)
    with RunStore.open(path, "ro") as store:
        state, config = store.state, store.config
        snapshot = store.latest_state()
    if state == "finished" and not _extends(config, overrides):
        trained = snapshot[1].get("trained", 0) if snapshot else 0
        if args.json:
            print(json.dumps({"run": str(path), "state": state, "trained": trained, "resumed": False}))
        else:
            print(f"run {path} is finished ({trained} of budget {config.get('budget')} trained); nothing "
                  "to resume. Search on with a higher --budget (or --time); validate again with "
                  f"`afsearch validate {shlex.quote(str(path))}`")
        return 0
    search = Search.resume(path, args.runs_dir, overrides=overrides,
                           allow_changed_task=args.allow_changed_task)
    observer = _observer(args, search.config.budget)
    search.on_event = observer
    return _drive(search, args, observer)


def _extends(config: dict[str, Any], overrides: dict[str, Any]) -> bool:
    """Whether a resume of a finished run asks for more: a higher budget, or a longer time limit
    for a run that had one."""
    budget, limit = overrides.get("budget"), overrides.get("time_limit_s")
    if budget is not None and budget > int(config.get("budget", 0)):
        return True
    had = config.get("time_limit_s")
    return limit is not None and had is not None and limit > had


def _open_ro(args: argparse.Namespace) -> RunStore:
    return RunStore.open(resolve_run(args.run, args.runs_dir), "ro")


def _reads_run(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """For a command that reads a run and prints it: a damaged record anywhere on the way is
    a one-line error naming the run (see `damage_guard`), not a traceback."""
    @functools.wraps(handler)
    def reads(args: argparse.Namespace) -> int:
        with damage_guard(Path(args.run).name):
            return handler(args)
    return reads


@_reads_run
def _status(args: argparse.Namespace) -> int:
    with _open_ro(args) as store:
        counts = store.counts()
        config = store.config
        snapshot = store.latest_state()
        engine = snapshot[1] if snapshot else {}
        progress = {key: kind(engine.get(key, 0)) for key, kind in
                    (("trained", int), ("proposals", int), ("cache_hits", int), ("elapsed_s", float))}
        best = best_entry(store)
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


@_reads_run
def _leaderboard(args: argparse.Namespace) -> int:
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

    from afsearch.search.report import ranking_note

    print(("Pareto front; " if args.pareto else "") + ranking_note(rows))
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


def _runs(args: argparse.Namespace) -> int:
    if not Path(args.runs_dir).is_dir():
        problem = "is not a directory" if Path(args.runs_dir).exists() else "does not exist"
        raise ConfigError(f"runs directory {args.runs_dir} {problem}; see --runs-dir")
    summaries = list_runs(args.runs_dir)
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
        for key in ("backend", "workers", "cpus_per_trial", "gpus_per_trial", "device"):
            if getattr(args, key) is not None:
                setattr(config, key, getattr(args, key))
        config.validate()
        report = validate_run(store, config)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"validation: {report['seeds']} fresh seeds, {report['steps']} steps, test: {report['test']}")
    for row in report["rows"]:
        print(_validation_line(row))
    return 0


@_reads_run
def _plot(args: argparse.Namespace) -> int:
    from afsearch.report.plot import plot_run

    with _open_ro(args) as store:
        written = plot_run(store, args.output, top=args.top)
    for path in written:
        print(path)
    return 0


@_reads_run
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
        print(f"  validation round {val['round']}: {val['seeds']} fresh seeds, {val['steps']} steps: "
              + _validation_line(val))
    return 0


def _stage_detail(stage: dict[str, Any], metric_name: str = "accuracy") -> str:
    cost = f"({stage['seconds']:.2f} s, {stage['steps']} steps)"
    stats = stage.get("stats") or {}
    source = get_metric(metric_name).source
    if stage["name"] != "quality" or f"val_{source}" not in stats:
        return cost
    # the gate measures no time of its own: it reads the validation metric during training
    relu = f"relu_{source}"
    against = f", ReLU {stats[relu]:.4f}" if relu in stats else ", no ReLU baseline"
    return (f"at step {int(stats.get('step', stage['steps']))}: val {metric_name} {stats[f'val_{source}']:.4f} vs "
            f"threshold {stats['threshold']:.4f}{against}")


def _candidate_id(text: str) -> int:
    try:
        value = int(text.lstrip("#"))
    except ValueError:
        raise ConfigError(f"candidate id must be a number, got {shorten(text)}") from None
    if not 1 <= value <= MAX_ID:  # SQLite integers are 64-bit: a larger id would overflow
        raise ConfigError(f"candidate id must be between 1 and {MAX_ID}, got {shorten(value)}")
    return value


@_reads_run
def export_run(args: argparse.Namespace) -> int:
    from afsearch.compile.export import export_activation, parse_formats

    formats = parse_formats(args.format)
    if (args.top is None) == (args.candidate_id is None):
        raise ConfigError("with a run, give either --top K or --id ID")
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
        written = export_activation(exported_expr(record), args.output, name, formats)
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
    search.add_argument("--task", help="proxy task (default: mnist1d-mlp; see `afsearch eval --help`), or your "
                        "own: path/to/file.py:NAME or package.module:NAME (options: --task-option)")
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
    search.add_argument("--device", default="auto", help="where candidates train: auto (cuda when a GPU is visible, else cpu), cpu, cuda, cuda:N (default: %(default)s)")
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
    resume.add_argument("--backend", choices=("ray", "local"), help="default: the run's backend")
    resume.add_argument("--workers", type=int,
                        help="concurrent evaluations (default: the run's setting; unset: all CPUs / --cpus-per-trial)")
    resume.add_argument("--ray-address", help="join an existing Ray cluster: auto or HOST:PORT (default: the run's)")
    resume.add_argument("--allow-changed-task", action="store_true",
                        help="resume even though the run's task file changed since it was created")
    output = resume.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="print only the final summary")
    output.add_argument("--json", action="store_true", help="print one JSON event per line")
    resume.set_defaults(handler=_resume)

    status = sub.add_parser("status", help="progress and counts of a run (works while it runs)")
    _add_run_arg(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    board = sub.add_parser("leaderboard", help="best candidates of a run")
    _add_run_arg(board)
    board.add_argument("--top", type=bounded_int(1, MAX_TOP), default=10,
                       help="number of candidates shown (default: %(default)s)")
    board.add_argument("--pareto", action="store_true", help="only the Pareto front of the objectives")
    board.add_argument("--json", action="store_true")
    board.set_defaults(handler=_leaderboard)

    runs = sub.add_parser("runs", help="list runs with their state and best candidate")
    runs.add_argument("--runs-dir", default="runs")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=_runs)

    validate = sub.add_parser("validate", help="retrain the top candidates on fresh seeds beside the baselines")
    _add_run_arg(validate)
    validate.add_argument("--top", type=int, help="retrain the best K candidates (default: the run's validate_top, 3)")
    validate.add_argument("--seeds", type=int, help="fresh seeds per candidate (default: the run's validate_seeds, 3)")
    validate.add_argument("--steps", type=int, help="training steps (default: the run's validate_steps, else its search steps)")
    validate.add_argument("--backend", choices=("ray", "local"), help="default: the run's backend")
    validate.add_argument("--workers", type=int,
                          help="concurrent evaluations (default: the run's setting; unset: all CPUs / --cpus-per-trial)")
    validate.add_argument("--cpus-per-trial", type=float, help="CPUs per evaluation (default: the run's, 1)")
    validate.add_argument("--gpus-per-trial", type=float,
                          help="GPUs per evaluation, fractional allowed (default: the run's, 0)")
    validate.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: the run's device, auto)")
    validate.add_argument("--json", action="store_true", help="print the report as one JSON object")
    validate.set_defaults(handler=_validate)

    plot = sub.add_parser("plot", help="PNG plots: top activations and derivatives, progress, rejection funnel")
    _add_run_arg(plot)
    plot.add_argument("-o", "--output", help="output directory (default: RUN/plots)")
    plot.add_argument("--top", type=bounded_int(1, MAX_TOP), default=5,
                      help="candidates drawn in the activation plots (default: %(default)s)")
    plot.set_defaults(handler=_plot)
