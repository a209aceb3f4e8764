"""Can a search rediscover a planted activation? Regularized evolution vs random search.

    python scripts/bench_search.py [--space gp] [--planted 'max(x, tanh(x))'] [--seeds 20] [--first-seed 0]
                                   [--budget 800] [--steps 1] [--tolerance 0.02] [--student readout]
                                   [--population 100] [--tournament 10] [--crossover 0.3] [--workers 2]

Task: teacher-student, whose teacher network uses the planted formula. Each strategy runs one
search per seed (same seeds for both, populations *not* seeded with reference activations, so
nobody starts from the answer). A search "finds" the planted formula at the first trained
evaluation whose candidate has the planted fingerprint or a functional distance (relative RMS
difference on N(0,1) probes, after the best affine map a*f(x) + b, which the student's next
layer absorbs) below the tolerance. Prints evaluations-to-find per strategy
(searches that never find it count as budget + 1, a lower bound, marked with >=), the ratio
random / evolution (target >= 3x), and mean best score vs evaluations for both.

Random search never looks at scores, so its evaluations-to-find can also be measured without
training: `simulate_random` draws a large pool of genotypes from the space exactly as the random
strategy does, keys them by fingerprint as the engine does (an equivalent candidate is answered
from the cache and costs no evaluation; screen rejections are evaluations), and replays many
random searches over shuffles of the pool. That gives random's evaluations-to-find without the
budget cut-off (a planted formula that random search needs thousands of evaluations for would
otherwise only show as ">= budget + 1"); it is printed beside the trained random runs.

Why these defaults:
- `max(x, tanh(x))` in the gp space with the "readout" student: its score landscape is
  informative (the readout is refit by least squares, so the planted formula scores R^2 = 1
  and near misses rank by how well they span it; see TeacherStudentConfig), and it is rare
  among random trees. `sin(x)`, for one, is about 2.4% of random draws: random search finds it
  in ~40 evaluations and no strategy can be 3x faster.
- tolerance 0.02: at 0.05, functions such as `softplus(relu(x + 1.234))` (R^2 0.998) counted as
  found. At 0.02 `max(x, tanh(0.9 x))` (0.015 away) is a hit and `max(x, erf(x))` (0.032) and
  `max(x, atan(x))` (0.041) are not; close ELU-like shapes still are, e.g.
  `softplus((x + beta) * exp(1.145))` and `max(x, atan(asinh(x)))`. The criterion is the same
  for both strategies.
- 1 training step: with the least-squares readout, training only tunes the activation's
  trainable constants (parameter-free candidates score the same after 1 or 1000 steps), so
  one step keeps constants at their initial values and makes the score a fixed function of
  the formula, the landscape the surrogate below models. With 200 steps, constants adapt
  and more formulas come close; in three searches (seeds 0-2, an earlier build that refit
  only before validation) evolution needed 688, 409 and 706 evaluations.
- population 100, tournament 10, crossover 0.3: chosen on master seeds 100-159, never on
  the reported 0-19, with a prototype of `--surrogate` (the same closed-form score; its
  strategies drew from random.Random(seed) rather than the engine's derived seed). Over 20
  searches of 1000 evaluations, population 16 / tournament 4 found the formula in 7,
  population 100 / tournament 10 in 15 (median 493), and with crossover 0.3 in 16 (median
  369; over 60 searches 46, median 382). At a budget of 250 (tolerance 0.05) the strategy's
  default population of 20 did as well (10/20 against 8/20 for population 100).
  Lexicographic parsimony (ties in score go to the smaller tree) was tried and dropped: 42/60,
  median 489.

`--surrogate` runs the same comparison without training (seconds per search), for trying
settings on many seeds; its figures are not the benchmark's.

`--suite` runs the planted-rediscovery suite (`rediscovery_suite.py`: 14 formulas, gp and swish
spaces) per strategy label with the closed-form readout score, and prints the fraction of
(formula, seed) pairs found within 100 / 300 / 1000 evaluations (up to the budget), median
evaluations-to-find and wall time per search. The README's figures:

    python scripts/bench_search.py --suite --strategies surrogate,random,evolution,gp,evolution+surrogate \
        --seeds 3 --first-seed 0 --budget 300 --workers 2 --cache scripts/data/rediscovery_suite.json

(the cache holds every finished search, so this prints from it; delete it to measure again).
Default settings were chosen on master seeds 100 and up, never on the reported 0-2.
`--mnist1d` is the real-training comparison on mnist1d-mlp (`mnist1d_comparison.py`).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from afsearch.candidate import Candidate
from afsearch.errors import AfsearchError
from afsearch.evaluate import get_task
from afsearch.evaluate.screen import screen
from afsearch.evaluate.tasks import STUDENT_MODES
from afsearch.evaluate.trainer import measure, refit_readout
from afsearch.expr import evaluate_numpy, fingerprint, parse, probe_points
from afsearch.search.config import SearchConfig
from afsearch.search.engine import MAX_PROPOSALS_PER_EVAL, Search
from afsearch.search.seeding import derive_seed
from afsearch.search.strategies import make_strategy
from afsearch.search.strategies.base import Outcome
from afsearch.spaces import load_space

CHECKPOINTS = (10, 25, 50, 100, 200, 300, 400, 500, 600, 800, 1000)


def affine_distance(candidate, planted) -> float:  # noqa: ANN001
    """sqrt(1 - R^2) of the best fit planted ~ a * candidate + b on the N(0,1) probes: 0 when
    the candidate equals the planted formula up to an output scale and shift."""
    x = probe_points()[:1000]
    f, g = evaluate_numpy(candidate, x), evaluate_numpy(planted, x)
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(g))):
        return float("inf")
    design = np.stack([f, np.ones_like(f)], axis=1)
    coef, *_ = np.linalg.lstsq(design, g, rcond=None)
    resid = g - design @ coef
    total = float(np.sum((g - g.mean()) ** 2))
    return float(np.sqrt(max(0.0, float(np.sum(resid**2)) / total))) if total > 0 else float("inf")


def hits_planted(formula: str, fp: str, planted_expr, planted_fp: str, tolerance: float) -> bool:  # noqa: ANN001
    """The "found" criterion: the planted fingerprint, or within `tolerance` affine distance."""
    if fp == planted_fp:
        return True
    with np.errstate(all="ignore"):
        return affine_distance(parse(formula), planted_expr) <= tolerance


def simulate_random(space_name: str, planted_expr, tolerance: float, budget: int,  # noqa: ANN001
                    draws: int = 20_000, runs: int = 2_000, seed: int = 0) -> dict[str, float]:
    """Evaluations-to-find of random search, replayed on a pool of `draws` samples of the space."""
    space, rng = load_space(space_name), random.Random(seed)
    planted_fp = fingerprint(planted_expr)
    hit_by_fp: dict[str, bool] = {}
    pool: list[str] = []
    for _ in range(draws):
        try:
            candidate = space.to_candidate(space.sample(rng))
            fp = candidate.fingerprint()
            if fp not in hit_by_fp:
                hit_by_fp[fp] = hits_planted(candidate.spec, fp, planted_expr, planted_fp, tolerance)
        except (AfsearchError, ValueError, ArithmeticError, RecursionError):
            continue  # the engine records an invalid proposal without evaluating it
        pool.append(fp)
    found: list[int] = []
    for _ in range(runs):
        order, seen, evaluations = rng.sample(pool, len(pool)), set(), 0
        for fp in order:
            if fp in seen:
                continue
            seen.add(fp)
            evaluations += 1
            if hit_by_fp[fp]:
                found.append(evaluations)
                break
    hits = sum(hit_by_fp.values())
    if not found:
        return {"hits": hits, "mean": float("inf"), "median": float("inf"), "within_budget": 0.0}
    return {"hits": hits, "mean": statistics.fmean(found), "median": statistics.median(found),
            "within_budget": sum(f <= budget for f in found) / runs, "runs": len(found)}


def trained_history(search: Search, planted_expr, tolerance: float) -> tuple[int | None, list[float], str]:
    """(index of the first trained evaluation that hits the planted formula, best-so-far curve,
    a description of the hit: formula and score)."""
    store = search.store
    planted_fp = fingerprint(planted_expr)
    rows = [(store.candidate(ev.candidate_id), ev) for ev in store.evaluations()]
    rows = [(record, ev) for record, ev in rows if record.origin != "baseline"]
    found_at, best, curve, hit = None, float("-inf"), [], ""
    for i, (record, ev) in enumerate(rows, 1):
        if found_at is None and record.formula and \
                hits_planted(record.formula, record.fingerprint, planted_expr, planted_fp, tolerance):
            found_at, hit = i, f"{record.formula}, score {ev.score if ev.score is not None else ev.status}"
        if ev.status == "done" and ev.score is not None:
            best = max(best, ev.score)
        curve.append(best)
    return found_at, curve, hit


def strategy_options(settings: dict[str, Any], strategy: str) -> dict[str, Any]:
    """The command line's evolution settings for evolution, nothing for other strategies."""
    if strategy != "evolution":
        return {}
    return {"population": settings["population"], "tournament": settings["tournament"],
            "crossover_prob": settings["crossover"]}


def one_search(job: tuple[dict[str, Any], str, int, str]) -> tuple[int | None, list[float], str]:
    """Run one search (settings from the command line, runs directory, master seed, strategy)
    and return `trained_history` of it; prints one line."""
    args, runs, seed, strategy = job
    config = SearchConfig(
        space=args["space"], task="teacher-student",
        task_config={"planted": args["planted"], "student": args["student"]},
        strategy=strategy, strategy_options=strategy_options(args, strategy), budget=args["budget"], steps=args["steps"],
        seed=seed, name=f"{strategy}-{seed}", backend=args["backend"], baselines=[],
        seed_population=False, validate_top=0,
    )
    search = Search.create(config, Path(runs))
    try:
        search.run()
        found, curve, hit = trained_history(search, parse(args["planted"]), args["tolerance"])
    finally:
        search.close()
    missed = f">={args['budget'] + 1}"
    print(f"seed {seed} {strategy:<10} found at {found if found else missed}"
          f"  best {curve[-1] if curve else float('nan'):.4f}" + (f"  ({hit})" if hit else ""), flush=True)
    return found, curve, hit


class SurrogateScore:
    """The readout task's score without training: the least-squares readout R^2 on the
    validation split as the trainer measures it, trainable constants at their initial values,
    -inf where the static screen rejects the formula or the output is not finite (the
    stability probe and the quality gate are left out). Scores are cached by formula."""

    def __init__(self, planted: str) -> None:
        self.task = get_task("teacher-student", {"planted": planted, "student": "readout"})
        self.cache: dict[str, float] = {}

    def __call__(self, formula: str) -> float:
        if formula not in self.cache:
            self.cache[formula] = self._score(formula)
        return self.cache[formula]

    def _score(self, formula: str) -> float:
        if not screen(parse(formula)).passed:
            return -math.inf
        model = self.task.model(Candidate.activation(formula).activation_factory())
        refit_readout(model, self.task.data.train)
        accuracy, loss = measure(model, self.task.data.val, regression=True)
        return accuracy if math.isfinite(loss) else -math.inf


def surrogate_search(space_name: str, planted: str, strategy_name: str, options: dict[str, Any], seed: int,
                     budget: int, tolerance: float, score: SurrogateScore) -> int | None:
    """Evaluations-to-find of one search with `score` in place of training (see
    `closed_form_search`). None when not found within `budget`."""
    space = load_space(space_name)
    strategy = make_strategy(strategy_name, space, random.Random(derive_seed(seed, "strategy")), [], **options)
    return closed_form_search(space, strategy, planted, score, budget, tolerance)[0]


def closed_form_search(space: Any, strategy: Any, planted: str, score: Callable[[str], float], budget: int,
                       tolerance: float) -> tuple[int | None, str, float]:
    """One search driven like the engine drives it (the strategy's own random stream, cache hits
    free and told to the strategy, invalid proposals told as failures; serial, like the local
    backend), scored by `score` instead of training; stops at the first candidate within
    `tolerance` of `planted`. Returns (evaluations to find it or None, the hit, best score)."""
    planted_expr = parse(planted)
    planted_fp = fingerprint(planted_expr)
    seen: dict[str, float] = {}
    proposals, best = 0, -math.inf
    while len(seen) < budget and proposals < budget * MAX_PROPOSALS_PER_EVAL:
        proposal = strategy.ask()
        if proposal is None:
            break
        proposals += 1
        try:
            candidate = space.to_candidate(proposal.genotype)
            fp = candidate.fingerprint()
        except (AfsearchError, ValueError, ArithmeticError, RecursionError):
            strategy.tell(proposal, Outcome(-math.inf, status="failed"))
            continue
        if fp not in seen:
            seen[fp] = score(candidate.spec)
            best = max(best, seen[fp])
            if hits_planted(candidate.spec, fp, planted_expr, planted_fp, tolerance):
                return len(seen), candidate.spec, best
        value = seen[fp]
        strategy.tell(proposal, Outcome(value, status="done" if math.isfinite(value) else "rejected"))
    return None, "", best


def run_surrogate(args: argparse.Namespace) -> None:
    score = SurrogateScore(args.planted)
    started = time.time()
    print(f"surrogate (no training): planted {args.planted!r} in space {args.space!r}, master seeds "
          f"{args.first_seed}..{args.first_seed + args.seeds - 1}, budget {args.budget}, tolerance {args.tolerance}")
    for strategy in [s.strip() for s in args.strategies.split(",")]:
        found = [surrogate_search(args.space, args.planted, strategy, strategy_options(vars(args), strategy),
                                  seed, args.budget, args.tolerance, score)
                 for seed in range(args.first_seed, args.first_seed + args.seeds)]
        hits = sorted(f for f in found if f is not None)
        median = statistics.median([f if f is not None else math.inf for f in found])
        print(f"{strategy:<10} found in {len(hits)}/{len(found)}; evaluations-to-find median "
              f"{median if median != math.inf else '>' + str(args.budget)}; hits {hits}", flush=True)
    print(f"{time.time() - started:.0f} s")


def parse_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """`LABEL:KEY=VALUE` items (repeatable) as {label: {key: value}}; values are JSON where they
    parse as JSON (numbers, true/false), else strings."""
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        label, _, pair = item.partition(":")
        key, _, value = pair.partition("=")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        options.setdefault(label, {})[key] = parsed
    return options


def run_suite(args: argparse.Namespace) -> None:
    """Every (formula, master seed) pair of the suite searched by every strategy label, fast
    mode, results cached in `--cache`; prints rediscovery rates at 100 / 300 / 1000
    evaluations (or the budget), median evaluations-to-find and wall time per strategy."""
    from rediscovery_suite import SUITE, ResultCache, fast_search, result_key

    labels = [s.strip() for s in args.strategies.split(",")]
    options = parse_options(args.option)
    suite = [p for p in SUITE if not args.formulas or p.name in args.formulas.split(",")]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    cache = ResultCache(Path(args.cache) if args.cache else None)
    # seed by seed, strategies interleaved: a benchmark stopped part-way has comparable figures
    jobs = [(label, options.get(label, {}), planted, seed, args.budget, args.tolerance)
            for seed in seeds for planted in suite for label in labels
            if cache.get(result_key(label, options.get(label, {}), planted.name, seed, args.budget)) is None]
    deadline = time.time() + 60 * args.max_minutes if args.max_minutes else math.inf
    print(f"suite: {len(suite)} formulas x seeds {seeds.start}..{seeds.stop - 1} x {len(labels)} strategies, "
          f"budget {args.budget}, tolerance {args.tolerance}; {len(jobs)} searches to run", flush=True)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max(1, args.workers), mp_context=context) as pool:
        pending = {}
        queue = list(jobs)
        while queue or pending:
            while queue and len(pending) < max(1, args.workers) and time.time() < deadline:
                job = queue.pop(0)
                pending[pool.submit(fast_search, job)] = job
            if not pending:
                break
            done = next(as_completed(pending))
            del pending[done]
            result = done.result()
            cache.add(result)
            if args.verbose:
                print(f"  {result.label:<20} {result.planted:<14} seed {result.seed:<4} "
                      f"{'found at ' + str(result.found_at) if result.found_at else 'missed':<14} "
                      f"best {result.best:.5f} {result.wall_s:6.1f} s  {result.hit}", flush=True)
    if queue:
        print(f"stopped after --max-minutes {args.max_minutes}: {len(queue)} searches left; run again to go on")
    report_suite(labels, options, suite, seeds, args.budget, cache)


def report_suite(labels, options, suite, seeds, budget, cache) -> None:  # noqa: ANN001
    from rediscovery_suite import result_key

    checkpoints = [c for c in (100, 300, 1000) if c <= budget]
    print(f"\n{'strategy':<22}" + "".join(f"{'found <= ' + str(c):>14}" for c in checkpoints) +
          f"{'median evals':>14}{'wall s/search':>15}{'log10(1-best)':>15}  missing")
    for label in labels:
        rows = [cache.get(result_key(label, options.get(label, {}), p.name, s, budget)) for s in seeds for p in suite]
        done = [r for r in rows if r is not None]
        if not done:
            print(f"{label:<22} (no results)")
            continue
        cells = "".join(f"{sum(r.found_at is not None and r.found_at <= c for r in done) / len(done):>14.0%}"
                        for c in checkpoints)
        finds = sorted(r.found_at if r.found_at is not None else math.inf for r in done)
        median = statistics.median(finds)
        median_text = f">{budget}" if median == math.inf else f"{median:.0f}"
        wall = statistics.fmean(r.wall_s for r in done)
        # how close the best candidate came, on the readout's R^2 (-6: the planted formula)
        closeness = statistics.fmean(math.log10(max(1e-6, 1.0 - r.best)) if r.best > -math.inf else 0.0
                                     for r in done)
        print(f"{label:<22}{cells}{median_text:>14}{wall:>15.1f}{closeness:>15.2f}  {len(rows) - len(done)}")
    print("\nper formula (found within the budget / searches):")
    for planted in suite:
        line = []
        for label in labels:
            rows = [cache.get(result_key(label, options.get(label, {}), planted.name, s, budget)) for s in seeds]
            done = [r for r in rows if r is not None]
            line.append(f"{label} {sum(r.found_at is not None for r in done)}/{len(done)}")
        print(f"  {planted.name:<14} {planted.space:<6} {planted.formula:<26} " + ", ".join(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="gp")
    parser.add_argument("--planted", default="max(x, tanh(x))")
    parser.add_argument("--student", default="readout", choices=STUDENT_MODES,
                        help="teacher-student student mode (see TeacherStudentConfig)")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="master seeds first-seed .. first-seed + seeds - 1 (tune on other seeds than you report)")
    parser.add_argument("--budget", type=int, default=800)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--backend", default="local", choices=("local", "ray"))
    parser.add_argument("--strategies", default="evolution,random")
    parser.add_argument("--population", type=int, default=100, help="evolution's population")
    parser.add_argument("--tournament", type=int, default=10, help="evolution's tournament size")
    parser.add_argument("--crossover", type=float, default=0.3, help="evolution's crossover probability")
    parser.add_argument("--workers", type=int, default=1,
                        help="searches run side by side in separate processes (one CPU thread each)")
    parser.add_argument("--draws", type=int, default=20_000, help="pool size for the random-search replay")
    parser.add_argument("--surrogate", action="store_true",
                        help="score candidates with the closed-form readout instead of training (fast; for "
                             "tuning settings on many seeds)")
    parser.add_argument("--suite", action="store_true",
                        help="the planted-rediscovery suite (scripts/rediscovery_suite.py) in fast mode")
    parser.add_argument("--formulas", default="", help="suite: only these formula names (comma-separated)")
    parser.add_argument("--option", action="append", default=[],
                        help="suite: LABEL:KEY=VALUE strategy option for one strategy label (repeatable)")
    parser.add_argument("--cache", default="", help="suite: JSON file of finished searches (reused, appended)")
    parser.add_argument("--max-minutes", type=float, default=0.0,
                        help="suite: start no new search after this many minutes (0: no limit)")
    parser.add_argument("--verbose", action="store_true", help="suite: one line per finished search")
    parser.add_argument("--mnist1d", action="store_true",
                        help="each strategy searches the swish space on mnist1d-mlp (real training, resumable "
                             "runs under --runs-dir), then winners and seeded formulas are retrained on fresh seeds")
    parser.add_argument("--runs-dir", default="runs/bench-mnist1d", help="mnist1d: where its runs live")
    parser.add_argument("--validate-seeds", type=int, default=5, help="mnist1d: fresh seeds for the winners")
    args = parser.parse_args()
    if args.suite:
        run_suite(args)
        return
    if args.mnist1d:
        from mnist1d_comparison import compare
        from rediscovery_suite import strategy_and_options

        options = parse_options(args.option)
        labels = [(label, *strategy_and_options(label, options.get(label, {})))
                  for label in (s.strip() for s in args.strategies.split(","))]
        compare([(label, "" if label == "default" else name, opts) for label, name, opts in labels],
                args.first_seed, args.budget, args.runs_dir, args.workers, args.max_minutes or 9.0,
                args.validate_seeds)
        return
    if args.surrogate:
        run_surrogate(args)
        return

    planted_expr = parse(args.planted)
    strategies = [s.strip() for s in args.strategies.split(",")]
    results: dict[str, list[tuple[int | None, list[float]]]] = {s: [] for s in strategies}
    started = time.time()
    jobs = [(seed, strategy) for seed in range(args.first_seed, args.first_seed + args.seeds) for strategy in strategies]
    with tempfile.TemporaryDirectory() as runs:
        settings = vars(args)
        if args.workers > 1:
            with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                outcomes = list(pool.map(one_search, [(settings, runs, seed, strategy) for seed, strategy in jobs]))
        else:
            outcomes = [one_search((settings, runs, seed, strategy)) for seed, strategy in jobs]
    for (_seed, strategy), (found, curve, _hit) in zip(jobs, outcomes, strict=True):
        results[strategy].append((found, curve))

    print(f"\nplanted {args.planted!r} in space {args.space!r}, teacher-student, {args.steps} steps, "
          f"{args.seeds} seeds x {args.budget} evaluations, tolerance {args.tolerance}, "
          f"{time.time() - started:.0f} s total")
    means = {}
    for strategy, runs_ in results.items():
        hits = [f for f, _ in runs_ if f is not None]
        censored = [f if f is not None else args.budget + 1 for f, _ in runs_]
        means[strategy] = statistics.fmean(censored)
        median = statistics.median(censored)
        print(f"{strategy:<10} found in {len(hits)}/{len(runs_)} searches; evaluations-to-find: "
              f"mean {'>=' if len(hits) < len(runs_) else ''}{means[strategy]:.1f}, median {median:.0f}")
    if "evolution" in means and "random" in means:
        ratio = means["random"] / means["evolution"]
        bound = ">=" if any(f is None for f, _ in results["random"]) else ""
        print(f"evaluations-to-find random / evolution (trained runs, means): {bound}{ratio:.2f}x")
    if "evolution" in results:
        sim = simulate_random(args.space, planted_expr, args.tolerance, args.budget, draws=args.draws)
        print(f"random search replayed on {args.draws:,} draws of the space ({sim['hits']} distinct hits in "
              f"the pool, 2,000 replays): evaluations-to-find mean {sim['mean']:.0f}, median "
              f"{sim['median']:.0f}; found within {args.budget} evaluations in {sim['within_budget']:.0%} "
              "of replays")
        evo = sorted(f if f is not None else float("inf") for f, _ in results["evolution"])
        evo_median = statistics.median(evo)
        found = sum(f != float("inf") for f in evo)
        if evo_median == float("inf"):
            print("evolution found it in fewer than half of its searches: no ratio (target >= 3x not met)")
        else:
            # the median is exact when evolution found the formula in more than half of its runs,
            # whatever the misses would have needed; means are not (misses are censored)
            print(f"evaluations-to-find, random (replayed) / evolution: medians {sim['median'] / evo_median:.1f}x "
                  f"(evolution found it in {found}/{len(evo)}); target >= 3x")
    print("\nmean best score (R^2) vs evaluations:")
    header = "evals      " + "".join(f"{c:>8}" for c in CHECKPOINTS if c <= args.budget)
    print(header)
    for strategy, runs_ in results.items():
        cells = []
        for c in CHECKPOINTS:
            if c > args.budget:
                continue
            values = [curve[min(c, len(curve)) - 1] for _, curve in runs_ if curve]
            finite = [v for v in values if v != float("-inf")]
            cells.append(f"{statistics.fmean(finite):8.4f}" if finite else f"{'-':>8}")
        print(f"{strategy:<11}" + "".join(cells))


if __name__ == "__main__":
    main()
