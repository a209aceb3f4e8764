"""Does a task separate activations? Train a fixed set of activations on the same seeds and
compare the spread of their test accuracies with the seed noise.

    flock /tmp/heavy.lock python scripts/bench_task_separation.py --task digits-cnn \
        [--task-option test_fraction=0.5 ...] [--seeds 5] [--budget STEPS] [--workers 2]

Prints each activation's mean ± std test accuracy over the seeds (the same seeds for all, so
comparisons are paired), then: Friedman's test across activations (seeds as blocks: do they
differ at all?), the spread of the means (best - worst) in units of the median standard error
of a paired difference, and, for each activation, the paired difference to the best of the
five default baselines with its 95 % interval (`afsearch.search.stats`). A task that separates
activations shows a small Friedman p-value and several intervals that exclude zero.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics

ACTIVATIONS = (
    "relu(x)", "0.5 * x * (1 + erf(x / 1.4142135623730951))", "x * sigmoid(x)", "tanh(x)",
    "max(x, 0) + min(exp(x) - 1, 0)", "sigmoid(x)", "softplus(x)", "x * abs(x)", "x * asinh(x)^2",
    "max(softplus(x) + x^3, x^3)", "-x + cos(x)", "x * tanh(softplus(x))",
)
BASELINES = ACTIVATIONS[:5]  # relu, gelu, silu, tanh, elu: afsearch's default baselines


def _train(job: tuple[str, str, dict, int | None, int]) -> float:
    import torch

    from afsearch.evaluate import evaluate

    torch.set_num_threads(1)
    formula, task, options, budget, seed = job
    result = evaluate(formula, task, budget=budget, seed=[seed], ladder=False, task_config=options or None,
                      measure_cost=False)
    return result.test_accuracy if result.ok else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="digits-cnn")
    ap.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=100)
    ap.add_argument("--budget", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from scipy import stats

    from afsearch.cli.common import key_value_options
    from afsearch.evaluate import get_task
    from afsearch.search.stats import paired_difference

    options = key_value_options(args.task_option)
    task = get_task(args.task, options or None)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    jobs = [(f, args.task, options, args.budget, s) for f in ACTIVATIONS for s in seeds]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        flat = pool.map(_train, jobs)
    scores = {f: flat[i * len(seeds):(i + 1) * len(seeds)] for i, f in enumerate(ACTIVATIONS)}
    sizes = f"train {len(task.data.train)}, val {len(task.data.val)}, test {len(task.data.test)}"
    print(f"{args.task} {options or ''} ({sizes}; {args.budget or task.recipe.steps} steps; seeds {seeds})")
    best = max(BASELINES, key=lambda f: statistics.fmean(scores[f]))
    for f in sorted(ACTIVATIONS, key=lambda f: -statistics.fmean(scores[f])):
        test = paired_difference(scores[f], scores[best])
        versus = "" if f == best or test is None else \
            f"   vs {best}: {test.mean_difference:+.4f} [{test.ci_low:+.4f}, {test.ci_high:+.4f}]"
        print(f"  {statistics.fmean(scores[f]):.4f} ± {statistics.stdev(scores[f]):.4f}  {f}{versus}")
    friedman = stats.friedmanchisquare(*scores.values())
    ses = [statistics.stdev([a - b for a, b in zip(scores[f], scores[g], strict=True)]) / len(seeds) ** 0.5
           for i, f in enumerate(ACTIVATIONS) for g in ACTIVATIONS[i + 1:]]
    means = [statistics.fmean(v) for v in scores.values()]
    print(f"Friedman test across the {len(ACTIVATIONS)} activations: p = {friedman.pvalue:.2g}; "
          f"spread of means {max(means) - min(means):.4f} = {(max(means) - min(means)) / statistics.median(ses):.1f} "
          f"median paired standard errors ({statistics.median(ses):.4f})")
    excluded = sum(1 for f in ACTIVATIONS if f != best and (t := paired_difference(scores[f], scores[best]))
                   and (t.ci_low > 0 or t.ci_high < 0))
    print(f"{excluded} of {len(ACTIVATIONS) - 1} activations differ from {best} (95 % interval excludes 0)")


if __name__ == "__main__":
    main()
