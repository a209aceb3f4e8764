"""Commands that train: search, resume (both drive a search, then validate its winners) and
validate."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from afsearch.cli import bounded_int
from afsearch.cli.common import (
    MAX_TOP,
    add_run_arg,
    key_value_options,
    validation_lines,
)
from afsearch.defaults import OUTCOMES, TASK_AGGREGATES
from afsearch.evaluate.metric import compared_with_best_baseline, get_metric
from afsearch.report.readable import shown
from afsearch.search.config import LIMITS, SearchConfig, parse_duration
from afsearch.store import (
    RunStore,
    resolve_run,
)

SEARCH_EXAMPLES = """examples:
  afsearch search                                  # swish space, mnist1d-mlp, 40 evaluations
  afsearch search --space gp --budget 100 --workers 2 --name gp-demo
  afsearch search --space swish_beta --strategy tpe --budget 30
  afsearch search --space gp --task teacher-student --task-option planted='sin(x)*x'
  afsearch search --config run.toml --time 30m --ray-address auto
  afsearch search --backend local --seed 3 --quiet   # serial, exactly reproducible
  afsearch search --scheduler asha --budget 200      # stop runs outside the top third at each rung
"""


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "space": args.space, "task": args.task, "strategy": args.strategy, "budget": args.budget,
        "steps": args.steps, "seeds": args.seeds, "seed": args.seed, "name": args.name,
        "backend": args.backend, "workers": args.workers, "ray_address": args.ray_address,
        "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial,
        "timeout_s": args.timeout, "validate_top": args.validate_top, "data_dir": args.data_dir,
        "shortlist": args.shortlist, "shortlist_seeds": args.shortlist_seeds,
        "pack": args.pack, "device": args.device, "scheduler": args.scheduler,
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
        out["extra_tasks"] = [] if args.extra_task == ["none"] else list(args.extra_task)
    if args.task_aggregate is not None:
        out["task_aggregate"] = args.task_aggregate
    if args.objective:
        out["objectives"] = [o.strip() for o in ",".join(args.objective).split(",") if o.strip()]
    if args.baselines is not None:
        out["baselines"] = [b.strip() for b in args.baselines.split(",") if b.strip()]
    return out


def _observer(args: argparse.Namespace, budget: int) -> Any:
    from afsearch.report.progress import make_observer

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
    return sum(counts.by_status[s] for s in OUTCOMES)


def _resume_hint(run: Path) -> str:
    return f"resume with: afsearch resume {shlex.quote(str(run))}"


def _print_summary(summary: Any, validation: Any) -> None:
    print(f"run {summary.run}: {summary.state}; {summary.trained} trained, {summary.cache_hits} cached, "
          f"{summary.elapsed_s:.0f} s")
    if summary.best is not None:
        metric = get_metric(summary.metric)
        delta = "" if summary.best_baseline is None else \
            f" ({compared_with_best_baseline(metric.delta(summary.best.mean, summary.best_baseline))})"
        print(f"best: {metric.name} {summary.best.mean:.4f}  {shown(summary.best.candidate)}{delta}")
        print(*_tasks_line(summary.run, summary.best.candidate.id), sep="", end="")
    if validation is not None:
        print(f"validation on {validation['seeds']} fresh seeds (test {validation.get('metric', 'accuracy')}; "
              f"{validation['test']}):")
        for line in validation_lines(validation):
            print("  " + line)
    if summary.state == "stopped":
        print(_resume_hint(summary.run))


def _tasks_line(run: Path, candidate_id: int) -> list[str]:
    """For a run on several tasks, the best candidate's aggregate and per-task deltas (the
    score it was ranked by); nothing for one task."""
    from afsearch.report.runs import leaderboard_rows, run_tasks

    with RunStore.open(run, "ro") as store:
        if len(run_tasks(store)) < 2:
            return []
        row = next((r for r in leaderboard_rows(store, top=10_000) if r["id"] == candidate_id), None)
    if row is None or not row.get("tasks"):
        return []
    per_task = ", ".join(f"{t} {p['relative_delta']:+.3f}" for t, p in row["tasks"].items())
    return [f"      ranked by the {row['aggregate']['how']} relative delta to each task's best baseline: "
            f"{row['aggregate']['search']:+.3f} ({per_task})\n"]


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
                                 "ray_address": args.ray_address, "device": args.device}
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


#: `afsearch validate` flag -> the run's config field it overrides
_VALIDATE_FLAGS = {
    "top": "validate_top", "seeds": "validate_seeds", "steps": "validate_steps",
    "shortlist": "shortlist", "shortlist_seeds": "shortlist_seeds",
    **{key: key for key in ("backend", "workers", "cpus_per_trial", "gpus_per_trial", "device")},
}


def _validate(args: argparse.Namespace) -> int:
    from afsearch.search.validate import validate_run

    path = resolve_run(args.run, args.runs_dir)
    with RunStore.open(path, "rw") as store:
        config = SearchConfig.from_dict(dict(store.config), str(path / "config.toml"))
        for flag, key in _VALIDATE_FLAGS.items():
            if getattr(args, flag) is not None:
                setattr(config, key, getattr(args, flag))
        config.validate()
        report = validate_run(store, config)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"validation: {report['seeds']} fresh seeds, {report['steps']} steps, test: {report['test']}")
    for line in validation_lines(report):
        print(line)
    return 0


def _shortlist_args(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--shortlist", type=bounded_int(*LIMITS["shortlist"]), metavar="N",
                        help="first retrain the best N by search score on --shortlist-seeds seeds of their own and "
                             f"validate the best of those (against the winner's curse; default: {default})")
    parser.add_argument("--shortlist-seeds", type=bounded_int(*LIMITS["shortlist_seeds"]), metavar="K",
                        help="seeds of the shortlist's retraining (default: 2)")


def register(sub: argparse._SubParsersAction) -> None:
    search = sub.add_parser("search", help="run a search (sensible defaults: `afsearch search` alone works)",
                            description="Search for activation functions or normalization-activation layers.",
                            epilog=SEARCH_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    search.add_argument("--space", help="space name (see `afsearch spaces`) or a .toml file (default: swish)")
    search.add_argument("--task", help="proxy task (default: mnist1d-mlp; see `afsearch eval --help`), or your "
                        "own: path/to/file.py:NAME or package.module:NAME (options: --task-option)")
    search.add_argument("--task-option", action="append", metavar="KEY=VALUE", help="task config, e.g. planted='sin(x)'")
    search.add_argument("--extra-task", action="append", metavar="TASK",
                        help="also score every candidate on TASK (repeatable); none: the main task alone. "
                        "Default: the main task's transfer task, so that winners hold on another "
                        "architecture (mnist1d-mlp: mnist1d-cnn; other tasks: none)")
    search.add_argument("--task-aggregate", choices=TASK_AGGREGATES,
                        help="on several tasks, rank by the worst (default) or the mean of the relative "
                        "deltas to each task's best baseline (share of its errors removed)")
    search.add_argument("--objective", action="append", metavar="LIST", help="objectives for nsga2 (the default strategy when there are several): accuracy,cost,params")
    search.add_argument("--strategy", help="evolution, gp, nsga2, surrogate, tpe, cmaes, random, exhaustive "
                        "(default: nsga2 when --objective names several; else by space: surrogate for formula "
                        "trees (gp, swish), evolution for layer and mixture spaces (evonorm, la, moa), tpe for "
                        "parametric ones)")
    search.add_argument("--strategy-option", action="append", metavar="KEY=VALUE",
                        help="strategy setting, e.g. population=100. evolution: population, tournament, "
                             "crossover_prob, prescreen; gp: mu, lambda_, cxpb, mutpb, tournament, prescreen; "
                             "nsga2: population, "
                             "cxpb, mutpb; surrogate: initial, pool, rounds, parents, model, kappa, explore, "
                             "novelty, library, library_near, library_share, inputs; tpe, cmaes: n_startup_trials")
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
    search.add_argument("--pack", type=int, help="candidates trained together per job as one stacked model (default: 16 when every task is an "
                        "MLP, 8 when every task is an MLP or a plain CNN, else 1; exactly reproducible across kills "
                        "and resumes)")
    search.add_argument("--timeout", type=float, help="seconds before a candidate is killed (default: 600)")
    search.add_argument("--no-ladder", action="store_true", help="train every candidate fully (no early rejection)")
    search.add_argument("--scheduler", help="what stops training runs early: gate (the quality gate against the "
                        "task's reference, default), median (median stopping rule across candidates), asha "
                        "(asynchronous successive halving, eta 3), none")
    search.add_argument("--baselines", help="comma list of reference activations to compare with")
    search.add_argument("--validate-top", type=int, help="retrain the best K on fresh seeds at the end (default: 3)")
    _shortlist_args(search, "0: off")
    search.add_argument("--data-dir", help="local CIFAR-10 python batches for cifar10-resnet")
    search.add_argument("--device", default="auto", help="where candidates train: auto (cuda when a GPU is visible, else cpu), cpu, cuda, cuda:N (default: %(default)s)")
    output = search.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="print only the final summary")
    output.add_argument("--json", action="store_true", help="print one JSON event per line")
    search.set_defaults(handler=_search)

    resume = sub.add_parser("resume", help="continue a stopped or crashed run",
                            epilog="example:\n  afsearch resume runs/swish-evolution-20261129-120000 --budget 80",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arg(resume)
    resume.add_argument("--budget", type=bounded_int(*LIMITS["budget"]), help="raise the evaluation budget")
    resume.add_argument("--time", help="new wall-clock limit for the whole run")
    resume.add_argument("--backend", choices=("ray", "local"), help="default: the run's backend")
    resume.add_argument("--workers", type=bounded_int(*LIMITS["workers"]),
                        help="concurrent evaluations (default: the run's setting; unset: all CPUs / --cpus-per-trial)")
    resume.add_argument("--ray-address", help="join an existing Ray cluster: auto or HOST:PORT (default: the run's)")
    resume.add_argument("--device", help="where candidates train from now on: auto, cpu, cuda, cuda:N "
                        "(default: the run's device)")
    resume.add_argument("--allow-changed-task", action="store_true",
                        help="resume even though the run's task file changed since it was created")
    output = resume.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="print only the final summary")
    output.add_argument("--json", action="store_true", help="print one JSON event per line")
    resume.set_defaults(handler=_resume)

    validate = sub.add_parser("validate", help="retrain the top candidates on fresh seeds beside the baselines")
    add_run_arg(validate)
    validate.add_argument("--top", type=bounded_int(1, MAX_TOP), help="retrain the best K candidates (default: the run's validate_top, 3)")
    validate.add_argument("--seeds", type=bounded_int(*LIMITS["validate_seeds"]), help="fresh seeds per candidate (default: the run's validate_seeds, 5)")
    validate.add_argument("--steps", type=bounded_int(*LIMITS["validate_steps"]), help="training steps (default: the run's validate_steps, else its search steps)")
    _shortlist_args(validate, "the run's shortlist, 0: off")
    validate.add_argument("--backend", choices=("ray", "local"), help="default: the run's backend")
    validate.add_argument("--workers", type=bounded_int(*LIMITS["workers"]),
                          help="concurrent evaluations (default: the run's setting; unset: all CPUs / --cpus-per-trial)")
    validate.add_argument("--cpus-per-trial", type=float, help="CPUs per evaluation (default: the run's, 1)")
    validate.add_argument("--gpus-per-trial", type=float,
                          help="GPUs per evaluation, fractional allowed (default: the run's, 0)")
    validate.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: the run's device, auto)")
    validate.add_argument("--json", action="store_true", help="print the report as one JSON object")
    validate.set_defaults(handler=_validate)
