"""`afsearch eval`: evaluate one formula or reference activation on a proxy task."""

from __future__ import annotations

import argparse
import json
import statistics
from typing import TYPE_CHECKING

from afsearch.cli import bounded_int, max_threads
from afsearch.cli.expr_cmds import add_formula_source, candidate_from_args
from afsearch.search.config import LIMITS

if TYPE_CHECKING:  # the CLI imports torch only for commands that train
    from afsearch.evaluate.result import EvalResult
    from afsearch.evaluate.tasks import Task


def register(subparsers: argparse._SubParsersAction) -> None:
    from afsearch.evaluate.tasks import DEFAULT_TASK, TASKS

    p = subparsers.add_parser(
        "eval", help="train a formula or reference activation on a proxy task",
        description="Evaluate an activation on a proxy task (rejection ladder on by default). "
        "Tasks: " + "; ".join(f"{n}: {s.doc}" for n, s in TASKS.items()))
    add_formula_source(p)
    p.add_argument("--task", default=DEFAULT_TASK,
                   help=f"proxy task (default {DEFAULT_TASK}), or your own: path/to/file.py:NAME")
    p.add_argument("--seeds", type=bounded_int(*LIMITS["seeds"]), default=1, help="number of seeds (default 1)")
    p.add_argument("--seed", type=bounded_int(*LIMITS["seed"]), default=0, help="first seed (default 0)")
    p.add_argument("--budget", type=bounded_int(*LIMITS["steps"]), default=None,
                   help="training steps (default: task's)")
    p.add_argument("--data-dir", default=None, help="dataset directory (cifar10-resnet)")
    p.add_argument("--task-option", action="append", metavar="KEY=VALUE",
                   help="task config, e.g. planted='x * tanh(x)' for teacher-student")
    p.add_argument("--threads", type=bounded_int(1, max_threads()), default=1,
                   help=f"CPU threads (default 1, at most {max_threads()})")
    p.add_argument("--device", default="auto", help="where candidates train: auto (cuda when a GPU is visible, else cpu), cpu, cuda, cuda:N (default: %(default)s)")
    p.add_argument("--no-ladder", action="store_true", help="train even if a rung would reject")
    p.add_argument("--baselines", action="store_true",
                   help="also evaluate the task's baselines (relu, gelu, silu, tanh, elu; lm-transformer: "
                        "gelu, relu, silu, swiglu, geglu) and report the difference")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from afsearch.evaluate import evaluate, get_task
    from afsearch.evaluate.trainer import check_device

    candidate, _ = candidate_from_args(args)
    from afsearch.cli.common import key_value_options

    config = key_value_options(args.task_option)
    if args.data_dir:
        config["data_dir"] = args.data_dir
    task = get_task(args.task, config or None)
    check_device(args.device)
    result = evaluate(candidate, task, budget=args.budget,
                      seed=args.seed, seeds=args.seeds, ladder=not args.no_ladder,
                      threads=args.threads, baselines=args.baselines, device=args.device)
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    print(f"{candidate.describe()[0]} on {result.task} ({result.budget} steps, "
          f"seeds {result.seeds}): {result.status}")
    if result.ok and result.metric_spec.source == "loss":
        tests = result.test_values()
        test_mean = statistics.fmean(tests)
        test_std = statistics.stdev(tests) if len(tests) > 1 else 0.0
        print(f"  val {result.metric} {result.mean_loss:.4f} ± {result.std_loss:.4f} (lower is better)   "
              f"test {test_mean:.4f} ± {test_std:.4f}")
        if task.spec.bits_per_byte:
            from afsearch.evaluate.lm import bits_per_byte

            print(f"  bits per byte  val {bits_per_byte(result.mean_loss):.4f} ± {bits_per_byte(result.std_loss):.4f}"
                  f"   test {bits_per_byte(test_mean):.4f} ± {bits_per_byte(test_std):.4f}   "
                  f"per seed (val loss): {', '.join(f'{s.val_loss:.4f}' for s in result.per_seed)}")
    if result.ok:
        print(f"  val accuracy  {result.mean_accuracy:.4f} ± {result.std_accuracy:.4f}   "
              f"test {result.test_accuracy:.4f} ± {result.test_std:.4f}")
        print(f"  params {result.params}   E_param {result.e_param:.4f}   "
              f"activation cost {result.activation_cost or 0:.2f} (counted, ReLU = 1)   "
              f"time {result.activation_time or 0:.2f}x ReLU (measured)")
        if args.baselines and result.delta_to_best_baseline is not None:
            print("  " + _baseline_line(result, task, args))
    else:
        print(f"  {result.stage}: {result.reason}")
    print(f"  compute {result.seconds:.2f} s, {result.steps} steps")
    return 0


def _baseline_line(result: EvalResult, task: Task, args: argparse.Namespace) -> str:
    """Which baseline is best, its score, the difference and, with several seeds, a paired
    one-sided t-test over the seeds (all trained on the same seeds, so pairs are matched)."""
    from afsearch.evaluate.baselines import seed_list
    from afsearch.evaluate.core import baseline_results
    from afsearch.search.validate import paired_greater

    # cached by `evaluate(..., baselines=True)` just before: nothing is trained again
    refs = baseline_results(task, result.budget, seed_list(args.seed, args.seeds), threads=args.threads)
    name, best = max(((n, r) for n, r in refs.items() if r.ok), key=lambda nr: nr[1].score)
    spread = f" ± {best.std_loss if best.metric_spec.source == 'loss' else best.std_accuracy:.4f}"
    line = (f"vs best baseline {name} ({result.metric} {best.value:.4f}{spread if args.seeds > 1 else ''}):"
            f" {result.delta_to_best_baseline:+.4f}")
    if args.seeds < 2:
        return line + " (1 seed: no test; use --seeds 3 or more for a paired t-test)"
    p = paired_greater(_oriented_per_seed(result), _oriented_per_seed(best))
    verdict = "n/a" if p is None else f"p={p:.3g}"
    return line + f" (paired one-sided t-test over {args.seeds} seeds, better than {name}: {verdict})"


def _oriented_per_seed(result: EvalResult) -> list[float]:
    spec = result.metric_spec
    return [spec.oriented(s.val_loss if spec.source == "loss" else s.val_accuracy) for s in result.per_seed]
