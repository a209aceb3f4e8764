"""`afsearch eval`: evaluate one formula or reference activation on a proxy task."""

from __future__ import annotations

import argparse
import json

from afsearch.candidate import Candidate
from afsearch.cli.expr_cmds import add_formula_source, formula_from_args
from afsearch.errors import TaskError
from afsearch.expr import to_string


def register(subparsers: argparse._SubParsersAction) -> None:
    from afsearch.evaluate.tasks import DEFAULT_TASK, TASKS

    p = subparsers.add_parser(
        "eval", help="train a formula or reference activation on a proxy task",
        description="Evaluate an activation on a proxy task (rejection ladder on by default). "
        "Tasks: " + "; ".join(f"{n}: {s.doc}" for n, s in TASKS.items()))
    add_formula_source(p)
    p.add_argument("--task", default=DEFAULT_TASK, help=f"proxy task (default {DEFAULT_TASK})")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (default 1)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--budget", type=int, default=None, help="training steps (default: task's)")
    p.add_argument("--data-dir", default=None, help="dataset directory (cifar10-resnet)")
    p.add_argument("--task-option", action="append", metavar="KEY=VALUE",
                   help="task config, e.g. planted='x * tanh(x)' for teacher-student")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--no-ladder", action="store_true", help="train even if a rung would reject")
    p.add_argument("--baselines", action="store_true",
                   help="also evaluate relu, gelu, silu, tanh, elu and report the difference")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from afsearch.evaluate import evaluate, get_task

    if args.seeds <= 0:
        raise TaskError(f"--seeds must be a positive count, got {args.seeds}")
    if args.budget is not None and args.budget <= 0:
        raise TaskError(f"--budget must be a positive number of steps, got {args.budget}")
    expr, _ = formula_from_args(args)
    from afsearch.cli.run_cmds import key_value_options

    config = key_value_options(args.task_option)
    if args.data_dir:
        config["data_dir"] = args.data_dir
    task = get_task(args.task, config or None)
    result = evaluate(Candidate.activation(to_string(expr)), task, budget=args.budget,
                      seed=args.seed, seeds=args.seeds, ladder=not args.no_ladder,
                      threads=args.threads, baselines=args.baselines)
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    print(f"{result.candidate['spec']} on {result.task} ({result.budget} steps, "
          f"seeds {result.seeds}): {result.status}")
    if result.ok:
        print(f"  val accuracy  {result.mean_accuracy:.4f} ± {result.std_accuracy:.4f}   "
              f"test {result.test_accuracy:.4f} ± {result.test_std:.4f}")
        print(f"  params {result.params}   E_param {result.e_param:.4f}   "
              f"activation cost {result.activation_cost or 0:.2f}x ReLU")
        if result.delta_to_best_baseline is not None:
            print(f"  vs best baseline {result.delta_to_best_baseline:+.4f}")
    else:
        print(f"  {result.stage}: {result.reason}")
    print(f"  compute {result.seconds:.2f} s, {result.steps} steps")
    return 0
