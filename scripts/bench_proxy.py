"""Ground truth for the proxy: does a short proxy run rank activations as longer training does,
and does the rejection ladder throw good ones away?

Every formula of a fixed benchmark set (all reference activations, known strong families such
as polynomials and signed powers, the Swish space's seeds, and random members of the `gp` and
`swish` spaces drawn with a fixed seed, deduplicated by fingerprint) is trained on each task

- at the proxy budget (the task's steps, 1 seed, ladder off; validation also recorded at a few
  early steps so that rungs can be replayed: validation never changes a trajectory),
- at the proxy budget with the default ladder (`LadderConfig()` with the task's calibration), as a search would, and
- at a long budget (4x the steps, 5 other seeds, ladder off): the ground truth is the mean test
  accuracy over those seeds (a seed whose training diverged counts with the accuracy of its
  non-finite network, 0).

It prints, per task: Spearman's rank correlation of the proxy score (validation accuracy, what
a search ranks by) with the ground truth; the proxy's top-10 and top-25 recall; for every rung
how many candidates it rejected, how many of them are in the ground truth's top quartile (false
rejections) and the compute it saved against the ladder-off proxy (optimizer steps, and
measured seconds); a replay of the quality gate over gate steps and ratios; and, with
`--transfer`, which aggregate of the per-task deltas to each task's best baseline picks
candidates that also do well on a held-out task.

Everything trained is cached in a JSON file (`--cache`, default scripts/data/bench_proxy.json,
committed) keyed by task, kind, seed and formula; a run computes only what is missing, stops
submitting work after `--minutes` and can be repeated until it reports nothing left, so the
analysis is re-run for free. On a 2-core machine share the CPU in chunks:

    flock /tmp/heavy.lock python scripts/bench_proxy.py --minutes 9    # repeat until "complete"
    python scripts/bench_proxy.py --analyse                           # figures from the cache only
    flock /tmp/heavy.lock python scripts/bench_proxy.py --transfer --minutes 9

From an empty cache the ground truth of the default set costs about 6 CPU hours (two worker
processes of one thread each: ~3 hours of wall time on 2 free cores), almost all of it the
long mnist1d-cnn runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = HERE / "data" / "bench_proxy.json"
TASKS = ("mnist1d-mlp", "mnist1d-cnn")
LONG_FACTOR = 4
LONG_SEEDS = 5
#: other seeds on which the start of the proxy run of each top-quartile candidate is repeated,
#: to see whether a rung calibrated on the proxy seed would reject it on another seed
EARLY_SEEDS = 2
#: fractions of the budget at which the ladder-off proxy also validates (rung replays)
HISTORY_FRACTIONS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25)
PACK = 8  # MLP candidates trained together (stacked weights)
N_RANDOM = 55  # random members drawn from each of the gp and swish spaces
SAMPLE_SEED = 0

#: known strong families on mnist1d-mlp (issue 15, the default search's winners, the Swish
#: paper's x * asinh(x)^2) and their relatives: polynomials, signed powers, x * odd(x)
STRONG = (
    "x * abs(x)", "x * abs(x) + x", "abs(x) * x * sigmoid(x)", "x + 0.5 * x * abs(x)",
    "x * sqrt(x)", "x * pow(x, 1.5)", "x^3", "x + x^3", "x^2 + x", "x^3 + x^2", "x^3 + x^2 + x",
    "max(x, x^3)", "max(softplus(x) + x^3, x^3)", "softplus(x) + x^3", "relu(x) + x^3",
    "x^3 * sigmoid(x)", "relu(x)^3", "max(x, 0) + x^2",
    "x * asinh(x)^2", "x * asinh(x)", "asinh(x^2) * x", "x * asinh(asinh(x) * asinh(x))",
    "asinh(x) * asinh(x) * x + x", "x * atan(x)", "x * tanh(x)", "x * erf(x)", "x * softsign(x)",
    "x * sinh(x)", "x * asinh(x) * sigmoid(x)", "x * abs(asinh(x))",
)


# ---------------------------------------------------------------- the benchmark set
def benchmark_formulas(n_random: int = N_RANDOM, seed: int = SAMPLE_SEED) -> list[tuple[str, str]]:
    """(group, formula) pairs, functionally distinct (first of each fingerprint kept), in a
    fixed order: references, strong families, Swish seeds, random gp, random swish."""
    from afsearch.expr import fingerprint, parse
    from afsearch.reference import REFERENCES
    from afsearch.spaces import load_space

    out: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(group: str, formula: str) -> bool:
        try:
            fp = fingerprint(parse(formula))
        except Exception:  # noqa: BLE001 - a member that does not parse is not benchmarked
            return False
        if fp in seen:
            return False
        seen.add(fp)
        out.append((group, formula))
        return True

    for ref in REFERENCES.values():
        add("reference", ref.formula)
    for formula in STRONG:
        add("strong", formula)
    swish = load_space("swish")
    for genotype in swish.seeds():
        add("swish-seed", swish.to_candidate(genotype).spec)
    for name in ("gp", "swish"):
        space = load_space(name)
        rng = random.Random(f"{seed}/{name}")
        added = 0
        while added < n_random:
            added += add(f"random-{name}", space.to_candidate(space.sample(rng)).spec)
    return out


# ---------------------------------------------------------------- protocol
@dataclass(frozen=True)
class Protocol:
    proxy_seed: int
    long_seeds: tuple[int, ...]
    long_factor: int = LONG_FACTOR
    early_seeds: tuple[int, ...] = ()

    @classmethod
    def default(cls) -> Protocol:
        from afsearch.search.seeding import derive_seed

        # the proxy seed is a default search's first training seed; the long seeds are others
        return cls(derive_seed(0, "train", 0),
                   tuple(derive_seed(0, "bench-proxy-long", i) for i in range(LONG_SEEDS)),
                   early_seeds=tuple(derive_seed(0, "train", i) for i in range(1, 1 + EARLY_SEEDS)))


def task_of(label: str) -> Any:
    """The Task for a label: a built-in task name, optionally followed by a JSON config
    (`digits-cnn{"test_fraction": 0.7}`)."""
    from afsearch.evaluate import get_task

    name, brace, config = label.partition("{")
    return get_task(name, json.loads(brace + config) if brace else None)


def history_steps(budget: int) -> list[int]:
    return sorted({max(1, round(f * budget)) for f in HISTORY_FRACTIONS})


def ladder_key(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


UNIT_KINDS = ("proxy", "ladder", "long", "early")


@dataclass(frozen=True)
class Unit:
    """One job for a worker: `formulas` on `task` with `seed` (one call of the trainer or of
    evaluate_many)."""

    kind: str  # "proxy" | "long" | "ladder" | "early"
    task: str  # a task label (see task_of)
    seed: int
    formulas: tuple[str, ...]
    ladder: str = ""  # JSON of the LadderConfig fields, for kind "ladder"

    def keys(self) -> list[str]:
        return [run_key(self.kind, self.task, self.seed, f, self.ladder) for f in self.formulas]


def run_key(kind: str, task: str, seed: int, formula: str, ladder: str = "") -> str:
    tag = f"{kind}:{ladder_key(json.loads(ladder))}" if ladder else kind
    return f"{tag}|{task}|{seed}|{formula}"


# ---------------------------------------------------------------- worker side
def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_unit(unit: Unit) -> list[dict[str, Any]]:
    """Train the unit; one record per formula, in order. A failure is a record, not a crash."""
    import torch

    from afsearch.candidate import Candidate
    from afsearch.evaluate import LadderConfig, evaluate_many
    from afsearch.evaluate.packed import packable, train_packed
    from afsearch.evaluate.trainer import train

    torch.set_num_threads(1)
    task = task_of(unit.task)
    if unit.kind == "ladder":
        cfg = LadderConfig(**json.loads(unit.ladder))
        results = evaluate_many(list(unit.formulas), task, seed=[unit.seed], ladder=cfg,
                                measure_cost=False, pack=True)
        return [_ladder_record(r) for r in results]
    steps = task.recipe.steps * (LONG_FACTOR if unit.kind == "long" else 1)
    recipe = dataclasses.replace(task.recipe, steps=steps)
    with_history = unit.kind in ("proxy", "early")
    eval_steps = history_steps(task.recipe.steps) if with_history else []
    # "early": the start of a proxy run on another seed, up to the last history step
    report = (lambda step, acc, loss: step < eval_steps[-1]) if unit.kind == "early" else None
    builds: list[Callable[[], Any] | None] = []
    records: list[dict[str, Any] | None] = []
    for formula in unit.formulas:
        try:
            factory = Candidate.activation(formula).activation_factory()
            builds.append(lambda f=factory: task.model(f))
            records.append(None)
        except Exception as exc:  # noqa: BLE001
            builds.append(None)
            records.append({"error": f"{type(exc).__name__}: {exc}"[:300]})
    live = [i for i, b in enumerate(builds) if b is not None]
    try:
        if len(live) > 1 and packable(builds[live[0]]()):
            outs = train_packed([builds[i] for i in live], task.data, recipe, [unit.seed] * len(live),
                                [report] * len(live), eval_steps)
        else:
            outs = [train(builds[i], task.data, recipe, unit.seed, report, eval_steps) for i in live]
        for i, out in zip(live, outs, strict=True):
            records[i] = _train_record(out, with_history)
    except Exception as exc:  # noqa: BLE001 - one bad member fails the pack: train alone
        for i in live:
            try:
                out = train(builds[i], task.data, recipe, unit.seed, report, eval_steps)
                records[i] = _train_record(out, with_history)
            except Exception as inner:  # noqa: BLE001
                records[i] = {"error": f"{type(inner).__name__}: {inner}"[:300], "pack_error": str(exc)[:200]}
    return [r or {"error": "not trained"} for r in records]


def _num(value: float) -> float | str:
    return round(value, 6) if math.isfinite(value) else str(value)


def _train_record(out: Any, with_history: bool) -> dict[str, Any]:
    record = {"val": _num(out.val_accuracy), "test": _num(out.test_accuracy), "val_loss": _num(out.val_loss),
              "diverged": out.diverged, "steps": out.steps, "seconds": round(out.seconds, 4)}
    if with_history:
        record["history"] = [[s, _num(a), _num(v)] for s, a, v in out.history]
    return record


def _ladder_record(result: Any) -> dict[str, Any]:
    return {"status": result.status, "stage": result.stage, "reason": (result.reason or "")[:200] or None,
            "val": _num(result.mean_accuracy), "steps": result.steps, "seconds": round(result.seconds, 4),
            "stages": [{"name": s.name, "passed": s.passed, "steps": s.steps, "seconds": round(s.seconds, 4),
                        "stats": {k: _num(float(v)) for k, v in s.stats.items()}} for s in result.stages]}


# ---------------------------------------------------------------- cache
class Cache:
    """{"protocol": ..., "ladders": {key: {"config", "commit"}}, "runs": {run_key: record}},
    written atomically after every unit, one run per line (readable diffs)."""

    def __init__(self, path: Path, protocol: Protocol) -> None:
        self.path = path
        self.protocol = {"proxy_seed": protocol.proxy_seed, "long_seeds": list(protocol.long_seeds),
                         "long_factor": protocol.long_factor, "history_fractions": list(HISTORY_FRACTIONS)}
        self.ladders: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        if path.exists():
            data = json.loads(path.read_text())
            if data.get("protocol") != self.protocol:
                sys.exit(f"{path}: cached protocol {data.get('protocol')} differs from this script's "
                         f"{self.protocol}; move the file away to start over")
            self.ladders, self.runs = data.get("ladders", {}), data.get("runs", {})

    def get(self, key: str) -> dict[str, Any] | None:
        return self.runs.get(key)

    def put(self, keys: Sequence[str], records: Sequence[dict[str, Any]]) -> None:
        self.runs.update(zip(keys, records, strict=True))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(self.runs[k], separators=(',', ':'))}"
                           for k in sorted(self.runs))
        text = ('{\n"protocol": ' + json.dumps(self.protocol) + ',\n"ladders": '
                + json.dumps(self.ladders, sort_keys=True) + ',\n"runs": {\n' + lines + "\n}}\n")
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---------------------------------------------------------------- planning and running
def plan(cache: Cache, formulas: Sequence[str], tasks: Sequence[str], protocol: Protocol,
         ladder_json: dict[str, str], long_formulas: dict[str, Sequence[str]] | None = None) -> list[Unit]:
    """Missing work, cheapest first: proxies, ladder runs, then the long runs, cheap tasks first."""
    units: list[Unit] = []

    def add(kind: str, task: str, seed: int, todo: Iterable[str], ladder: str = "") -> None:
        missing = [f for f in todo if cache.get(run_key(kind, task, seed, f, ladder)) is None]
        size = PACK if task.split("{")[0].endswith("-mlp") or kind == "ladder" else 1
        units.extend(Unit(kind, task, seed, tuple(missing[i:i + size]), ladder)
                     for i in range(0, len(missing), size))

    for task in tasks:
        add("proxy", task, protocol.proxy_seed, formulas)
    for task in tasks:
        add("ladder", task, protocol.proxy_seed, formulas, ladder_json[task])
    for task in sorted(tasks, key=lambda t: task_of(t).recipe.steps * _step_cost(t)):
        for seed in protocol.long_seeds:  # seed by seed: a partial cache has every formula at the same seeds
            add("long", task, seed, formulas)
    for task, todo in (long_formulas or {}).items():
        for seed in protocol.long_seeds:
            add("long", task, seed, todo)
    for task in tasks:
        top = top_quartile(cache, task, formulas, protocol)
        if top is not None:
            for seed in protocol.early_seeds:
                add("early", task, seed, [reference_formula("relu"), *sorted(top - {reference_formula("relu")})])
    return units


def top_quartile(cache: Cache, task: str, formulas: Sequence[str], protocol: Protocol) -> set[str] | None:
    """The ground truth's top quartile on `task`; None until every formula has its ground truth."""
    seeds = seeds_done(cache, task, formulas, protocol)
    if len(seeds) < MIN_LONG_SEEDS:
        return None
    truth = {f: truth_of(cache, task, f, protocol, seeds) for f in formulas}
    ranked = sorted(formulas, key=lambda f: (-truth[f], f))
    return set(ranked[: len(ranked) // 4])


def _step_cost(task: str) -> float:
    """Rough relative cost of a training step (packed MLPs are cheap): cheap tasks go first."""
    return 0.25 if task.split("{")[0].endswith("-mlp") else 1.0


def reference_formula(name: str) -> str:
    from afsearch.reference import reference_formula as formula

    return formula(name)


def compute(cache: Cache, units: list[Unit], workers: int, minutes: float) -> int:
    """Run units on `workers` processes until done or `minutes` have passed (no new unit is
    started after that); returns the number of units left."""
    if not units:
        return 0
    deadline = time.monotonic() + minutes * 60
    ctx = multiprocessing.get_context("spawn")
    done = 0
    started = time.monotonic()
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        pending = list(units)
        in_flight: list[tuple[Unit, Any]] = []
        while pending or in_flight:
            while pending and len(in_flight) < workers and time.monotonic() < deadline:
                unit = pending.pop(0)
                in_flight.append((unit, pool.apply_async(run_unit, (unit,))))
            if not in_flight:
                break
            time.sleep(0.2)
            for item in [x for x in in_flight if x[1].ready()]:
                in_flight.remove(item)
                unit, handle = item
                cache.put(unit.keys(), handle.get())
                cache.save()
                done += 1
                if done % 10 == 0 or not (pending or in_flight):
                    print(f"  {done}/{len(units)} units ({time.monotonic() - started:.0f} s)", flush=True)
    return len(units) - done


# ---------------------------------------------------------------- analysis
def _value(x: Any) -> float:
    return float(x) if x is not None else math.nan


#: the ground truth needs at least this many long seeds of every formula
MIN_LONG_SEEDS = 3


def seeds_done(cache: Cache, task: str, formulas: Sequence[str], protocol: Protocol) -> tuple[int, ...]:
    """The longest prefix of the long seeds that every formula has been trained on."""
    done: list[int] = []
    for seed in protocol.long_seeds:
        if any(cache.get(run_key("long", task, seed, f)) is None for f in formulas):
            break
        done.append(seed)
    return tuple(done)


def truth_of(cache: Cache, task: str, formula: str, protocol: Protocol,
             seeds: Sequence[int] | None = None) -> float | None:
    """Mean test accuracy over `seeds` (default: all long seeds); None when one is missing.
    A formula that failed to build counts 0."""
    values = []
    for seed in protocol.long_seeds if seeds is None else seeds:
        rec = cache.get(run_key("long", task, seed, formula))
        if rec is None:
            return None
        values.append(0.0 if "error" in rec else _value(rec["test"]))
    return sum(values) / len(values)


def proxy_of(cache: Cache, task: str, formula: str, protocol: Protocol) -> float | None:
    rec = cache.get(run_key("proxy", task, protocol.proxy_seed, formula))
    if rec is None:
        return None
    return 0.0 if "error" in rec or rec["diverged"] else _value(rec["val"])


def _top(scores: dict[str, float], k: int) -> set[str]:
    return set(sorted(scores, key=lambda f: (-scores[f], f))[:k])


def analyse_task(cache: Cache, task: str, formulas: Sequence[str], protocol: Protocol,
                 ladder_json: str) -> dict[str, Any] | None:
    from scipy import stats

    seeds = seeds_done(cache, task, formulas, protocol)
    proxy = {f: p for f in formulas if (p := proxy_of(cache, task, f, protocol)) is not None}
    if len(seeds) < MIN_LONG_SEEDS or len(proxy) < len(formulas):
        print(f"\n{task}: ground truth incomplete ({len(seeds)} long seeds of every formula, proxies for "
              f"{len(proxy)} of {len(formulas)}); need {MIN_LONG_SEEDS} seeds")
        return None
    truth = {f: truth_of(cache, task, f, protocol, seeds) for f in formulas}
    both = list(formulas)
    budget = task_of(task).recipe.steps
    ranked = sorted(both, key=lambda f: (-truth[f], f))
    quartile = set(ranked[: len(ranked) // 4])
    rho = stats.spearmanr([proxy[f] for f in both], [truth[f] for f in both]).statistic
    seconds = sum(_value(cache.get(run_key("long", task, s, f))["seconds"]) for f in both
                  for s in seeds if "error" not in cache.get(run_key("long", task, s, f)))
    print(f"\n== {task}: {len(both)} formulas; proxy {budget} steps, seed {protocol.proxy_seed}; ground truth "
          f"{budget * protocol.long_factor} steps x {len(seeds)} seeds ({seconds / 3600:.2f} CPU h)")
    print(f"ground truth: best {truth[ranked[0]]:.4f} ({ranked[0]}), top-quartile cut {truth[ranked[len(quartile) - 1]]:.4f}, "
          f"median {truth[ranked[len(ranked) // 2]]:.4f}")
    print(f"Spearman rank correlation proxy vs ground truth: {rho:.3f}")
    p_scores = {f: proxy[f] for f in both}
    t_scores = {f: truth[f] for f in both}
    for k in (10, 25):
        print(f"top-{k} recall (ladder off): {len(_top(p_scores, k) & _top(t_scores, k))}/{k}")
    current = ladder_key(json.loads(ladder_json))
    ladder = None
    # the current default first, then any other configuration measured earlier (e.g. before a
    # recalibration), for comparison
    for key in sorted(cache.ladders, key=lambda k: k != current):
        config = json.dumps(cache.ladders[key]["config"], sort_keys=True)
        outcome = ladder_outcome(cache, task, both, protocol, config)
        if outcome is None:
            if key == current:
                print("(the current LadderConfig() with this task's calibration has not been run on it: run without --analyse)")
            continue
        ladder = outcome if key == current else ladder
        label = "LadderConfig() of this checkout with the task's calibration" if key == current else \
            f"other configuration {key} (commit {cache.ladders[key].get('commit')}): {_config_diff(cache.ladders[key]['config'], task)}"
        print(f"ladder: {label}")
        on = {f: (p_scores[f] if outcome[f]["status"] == "done" else -math.inf) for f in both}
        for k in (10, 25):
            print(f"  top-{k} recall (ladder on): {len(_top(on, k) & _top(t_scores, k))}/{k}")
        print_rungs(cache, task, both, protocol, outcome, quartile, truth)
    relu = cache.get(run_key("proxy", task, protocol.proxy_seed, reference_formula("relu")))
    if relu is not None:
        from afsearch.evaluate._formula import static_screen

        screened = {f for f in both if not static_screen(f).passed}
        replay_sweep(cache, task, both, protocol, quartile, relu, screened)
        oracle_bound(cache, task, both, protocol, quartile, truth, relu, screened)
        envelope_bound(cache, task, both, protocol, quartile, relu, screened)
    return {"truth": truth, "proxy": proxy, "quartile": quartile, "formulas": both}


def ladder_outcome(cache: Cache, task: str, formulas: Sequence[str], protocol: Protocol,
                   ladder_json: str) -> dict[str, dict[str, Any]] | None:
    """The ladder-on records of every formula under this configuration, or None if incomplete."""
    out = {}
    for f in formulas:
        rec = cache.get(run_key("ladder", task, protocol.proxy_seed, f, ladder_json))
        if rec is None:
            return None
        out[f] = rec
    return out


def current_ladder(task: str) -> Any:
    """The ladder a search runs on `task`: the default config with the task's gate calibration."""
    from afsearch.evaluate import LadderConfig

    return LadderConfig().for_task(task_of(task).spec.gate)


def _config_diff(config: dict[str, Any], task: str) -> str:
    now = dataclasses.asdict(current_ladder(task))
    return ", ".join(f"{k}={v}" for k, v in sorted(config.items()) if now.get(k) != v) or "same fields"


RUNGS = ("screen", "stability", "quality", "train", "compile")


def print_rungs(cache: Cache, task: str, formulas: Sequence[str], protocol: Protocol,
                ladder: dict[str, dict[str, Any]], quartile: set[str], truth: dict[str, float]) -> None:
    """Rejections per rung, false rejections (ground-truth top quartile), compute saved in
    optimizer steps (deterministic) and measured seconds against the ladder-off proxy."""
    off_steps = off_seconds = 0.0
    saved_steps: dict[str, float] = {}
    saved_seconds: dict[str, float] = {}
    for f in formulas:
        rec = cache.get(run_key("proxy", task, protocol.proxy_seed, f))
        full_steps = get_budget(task)
        full_seconds = _value(rec.get("seconds", 0.0)) if "error" not in rec else 0.0
        off_steps += full_steps
        off_seconds += full_seconds
        lad = ladder[f]
        where = lad["stage"] if lad["status"] != "done" else "passed"
        saved_steps[where] = saved_steps.get(where, 0.0) + full_steps - lad["steps"]
        saved_seconds[where] = saved_seconds.get(where, 0.0) + full_seconds - _value(lad["seconds"])
    print(f"  {len(formulas)} candidates; compute saved against the ladder-off proxy, in optimizer steps "
          "| in measured seconds (noisy: shared machine):")
    for rung in [r for r in RUNGS if r in saved_steps] + ["passed"]:
        rejected = [f for f in formulas if ladder[f]["status"] != "done" and ladder[f]["stage"] == rung]
        if rung == "passed":
            rejected = [f for f in formulas if ladder[f]["status"] == "done"]
        false = [f for f in rejected if f in quartile] if rung != "passed" else []
        label = "survivors (cost of the rungs they passed)" if rung == "passed" else f"{rung:9s} rejected"
        extra = "" if rung == "passed" else f", {len(false)} in the top quartile"
        print(f"  {label} {len(rejected):3d}{extra}: saved {saved_steps.get(rung, 0) / off_steps:+.1%} "
              f"| {saved_seconds.get(rung, 0) / off_seconds:+.1%}")
        for f in false:
            print(f"      false rejection: {f}  (ground truth {truth[f]:.4f}; {ladder[f]['reason']})")
    total_steps = sum(saved_steps.values()) / off_steps
    total_seconds = sum(saved_seconds.values()) / off_seconds
    print(f"  total compute saved: {total_steps:.1%} of optimizer steps | {total_seconds:.1%} of seconds")


def get_budget(task: str) -> int:
    return task_of(task).recipe.steps


def replay(cfg: Any, task: str, record: dict[str, Any], relu: dict[str, Any], screened: bool) -> tuple[str | None, int]:
    """The ladder's decision for one candidate, replayed from a ladder-off run's validation
    history (validation never changes a trajectory, and both rungs after the screen only read
    it): (rejecting rung or None, steps spent). `screened`: the static screen rejects it."""
    from afsearch.evaluate.ladder import constant_loss, quality_threshold

    t = task_of(task)
    cfg = cfg.for_task(t.spec.gate)
    budget = t.recipe.steps
    if screened:
        return "screen", 0
    if "error" in record:
        return "compile", 0
    at = {s: (_value(a), _value(v)) for s, a, v in record["history"]}
    relu_at = {s: (_value(a), _value(v)) for s, a, v in relu["history"]}
    spent = 0
    if cfg.stability:
        burst = cfg.burst_steps(budget)
        acc, loss = at.get(burst, (0.0, math.inf))
        spent += burst
        if not (math.isfinite(loss) and loss <= cfg.stability_bound * constant_loss(t.data)):
            return "stability", spent
    if cfg.quality:
        for step, ratio in cfg.gate_checks(budget):
            source = 1 if t.metric.source == "loss" else 0
            base = relu_at[step][source] if cfg.quality_baseline else None
            threshold = quality_threshold(cfg, t.chance, base, t.metric, ratio)
            value = at.get(step, (0.0, math.inf))[source]
            if not (t.metric.finite(value) and not t.metric.better(threshold, value)):
                return "quality", spent + step
    return None, spent + budget


def replay_all(cfg: Any, cache: Cache, task: str, formulas: Sequence[str], protocol: Protocol,
               relu: dict[str, Any], screened: set[str]) -> dict[str, tuple[str | None, int]]:
    """`replay` of every formula's proxy run under `cfg`: formula -> (rejecting rung or None, steps)."""
    return {f: replay(cfg, task, cache.get(run_key("proxy", task, protocol.proxy_seed, f)), relu, f in screened)
            for f in formulas}


def replay_sweep(cache: Cache, task: str, formulas: Sequence[str], protocol: Protocol, quartile: set[str],
                 relu: dict[str, Any], screened: set[str]) -> None:
    """The current ladder replayed from the proxy's recorded validation with other ratios at its
    two quality checkpoints, on the proxy seed; then the current ratios on the other seeds of
    the top-quartile candidates (`early` runs), the margin the calibration leaves."""
    current = current_ladder(task)
    budget = task_of(task).recipe.steps
    checks = current.gate_checks(budget)
    print(f"  replay with other ratios at the quality checkpoints (steps {', '.join(str(s) for s, _ in checks)}): "
          "rejected by the ladder / false rejections / optimizer steps saved")
    early_ratios = sorted({0.3, 0.5, 0.6, 0.7, 0.8, current.quality_early_ratio})
    main_ratios = sorted({0.5, 0.7, 0.8, 0.9, 0.95, current.quality_ratio})
    print("    early \\ main " + "".join(f"{r:>14}" for r in main_ratios))
    for early in early_ratios if len(checks) > 1 else (current.quality_early_ratio,):
        cells = []
        for main in main_ratios:
            cfg = dataclasses.replace(current, quality_early_ratio=early, quality_ratio=main)
            outcome = replay_all(cfg, cache, task, formulas, protocol, relu, screened)
            spent = sum(steps for _, steps in outcome.values())
            rejected = sum(rung is not None for rung, _ in outcome.values())
            false = sum(outcome[f][0] is not None for f in quartile)
            cells.append(f"{rejected:4d}/{false:2d}/{1 - spent / (budget * len(formulas)):4.0%}")
        print(f"    {early:>11}  " + "".join(f"{c:>14}" for c in cells))
    for seed in protocol.early_seeds:
        relu_other = cache.get(run_key("early", task, seed, reference_formula("relu")))
        runs = {f: cache.get(run_key("early", task, seed, f)) for f in quartile}
        if relu_other is None or any(r is None for r in runs.values()):
            continue
        out = {f: replay(current, task, r, relu_other, f in screened)[0] for f, r in runs.items()}
        lost = sorted(f for f, rung in out.items() if rung is not None)
        print(f"  seed {seed}: the current ladder would reject {len(lost)} of the {len(quartile)} top-quartile "
              f"candidates{': ' + '; '.join(f'{f} ({out[f]})' for f in lost) if lost else ''}")


def oracle_bound(cache: Cache, task: str, formulas: Sequence[str], protocol: Protocol,
                 quartile: set[str], truth: dict[str, float], relu: dict[str, Any], screened: set[str]) -> None:
    """How much more any gate could save without a false rejection: the current ladder's
    survivors outside the top quartile, by their distance below its cut, and the saving of an
    oracle that rejects at the first gate checkpoint every survivor more than a margin below."""
    current = current_ladder(task)
    budget = task_of(task).recipe.steps
    first = current.gate_checks(budget)[0][0] + current.burst_steps(budget)
    spent = {f: steps if rung is not None else -1
             for f, (rung, steps) in replay_all(current, cache, task, formulas, protocol, relu, screened).items()}
    cut = min(truth[f] for f in quartile)
    survivors = [f for f in formulas if spent[f] < 0 and f not in quartile]
    margins = (0.0, 0.01, 0.02, 0.05)
    below = {m: [f for f in survivors if truth[f] < cut - m] for m in margins}
    print(f"  {len(survivors)} of the ladder's survivors are outside the top quartile (cut {cut:.4f}); "
          + ", ".join(f"{len(below[m])} more than {m:.2f} below it" for m in margins[1:]))
    for m in margins:
        steps = sum(budget if spent[f] < 0 else spent[f] for f in formulas)
        steps -= sum(budget - first for f in below[m])
        print(f"    an oracle rejecting those more than {m:.2f} below the cut at step {first} would save "
              f"{1 - steps / (budget * len(formulas)):.0%}")


def envelope_bound(cache: Cache, task: str, formulas: Sequence[str], protocol: Protocol,
                   quartile: set[str], relu: dict[str, Any], screened: set[str]) -> None:
    """The most a gate of the ladder's kind (a share of the reference's progress at fixed
    checkpoints) could save without a false rejection, even tuned on the answers: a check at
    every recorded checkpoint from `MIN_EARLY_STEP` on, each demanding the least progress any
    top-quartile candidate shows there on any seed measured (the proxy seed and the early
    seeds); a candidate stops at the first check it misses."""
    from afsearch.evaluate.ladder import MIN_EARLY_STEP

    t = task_of(task)
    budget = t.recipe.steps
    source = 1 if t.metric.source == "loss" else 0
    chance = t.chance

    def progress(record: dict[str, Any], base: dict[str, Any]) -> dict[int, float]:
        """step -> share of the reference's progress beyond chance (where it has made some)"""
        at = {step: _value(values[source]) for step, *values in record["history"]}
        out = {}
        for s, b in ((step, _value(values[source])) for step, *values in base["history"]):
            if MIN_EARLY_STEP <= s < budget and t.metric.better(b, chance):
                value = at.get(s, math.nan)
                out[s] = (value - chance) / (b - chance) if t.metric.finite(value) else -math.inf
        return out

    seeds = [(protocol.proxy_seed, "proxy", relu)] + [
        (s, "early", cache.get(run_key("early", task, s, reference_formula("relu")))) for s in protocol.early_seeds]
    floor: dict[int, float] = {}
    measured = 0
    for seed, kind, base in seeds:
        runs = {f: cache.get(run_key(kind, task, seed, f)) for f in quartile}
        if base is None or any(r is None for r in runs.values()):
            continue
        measured += 1
        for f, rec in runs.items():
            if "error" in rec or f in screened:
                continue
            for s, p in progress(rec, base).items():
                floor[s] = min(floor.get(s, math.inf), p)
    steps = sorted(floor)
    spent = 0
    rejected = 0
    for f in formulas:
        rec = cache.get(run_key("proxy", task, protocol.proxy_seed, f))
        if f in screened or "error" in rec:
            rejected += 1
            continue
        mine = progress(rec, relu)
        stop = next((s for s in steps if mine.get(s, -math.inf) < floor[s]), None)
        rejected += stop is not None
        spent += budget if stop is None else stop
    print(f"  envelope: checks at steps {', '.join(str(s) for s in steps)}, each demanding the least progress "
          f"of a top-quartile candidate there on {measured} seed(s) (tuned on the answers): would reject "
          f"{rejected} (screen included) and save {1 - spent / (budget * len(formulas)):.0%}")


def analyse(cache: Cache, formulas: Sequence[str], tasks: Sequence[str], protocol: Protocol,
            ladder_json: dict[str, str]) -> dict[str, dict[str, Any]]:
    out = {}
    for task in tasks:
        res = analyse_task(cache, task, formulas, protocol, ladder_json[task])
        if res is not None:
            out[task] = res
    return out


# ---------------------------------------------------------------- transfer
#: the held-out task: a different data set and architecture than either benchmark task
HELD_OUT = "digits-cnn"
TRANSFER_TOP = 40


def aggregates(scores: dict[str, dict[str, float]], formulas: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per formula, aggregates over tasks of its delta to the task's best default baseline:
    "mean" and "worst" of the raw deltas (accuracy points), and of the relative deltas
    (`Metric.relative_delta`: delta / error rate of the best baseline, the share of the
    baseline's errors removed, which is scale-free across tasks with different ceilings; what
    a search on several tasks ranks by, `--task-aggregate worst|mean`); "<task>" alone for
    comparison."""
    from afsearch.evaluate.metric import ACCURACY
    from afsearch.reference import DEFAULT_BASELINES, reference_formula

    tasks = list(scores)
    best = {t: max(scores[t][reference_formula(b)] for b in DEFAULT_BASELINES) for t in tasks}
    out: dict[str, dict[str, float]] = {}
    for f in formulas:
        raw = [scores[t][f] - best[t] for t in tasks]
        rel = [ACCURACY.relative_delta(scores[t][f], best[t]) for t in tasks]
        row = {"mean": sum(raw) / len(raw), "worst": min(raw), "mean-rel": sum(rel) / len(rel),
               "worst-rel": min(rel)}
        row.update({t: raw[i] for i, t in enumerate(tasks)})
        out[f] = row
    return out


def transfer_candidates(cache: Cache, formulas: Sequence[str], protocol: Protocol) -> list[str]:
    """The union of the top TRANSFER_TOP by every aggregate, from the proxy and from the ground
    truth, plus the default baselines (the held-out task's best baseline)."""
    from afsearch.reference import DEFAULT_BASELINES, reference_formula

    chosen = {reference_formula(b) for b in DEFAULT_BASELINES}
    sources = _complete_sources(cache, formulas, protocol)
    if not sources:
        raise SystemExit("--transfer needs the complete proxy scores of " + ", ".join(TASKS))
    for scores in sources.values():
        table = aggregates(scores, formulas)
        for name in ("mean", "worst", "mean-rel", "worst-rel"):
            chosen |= _top({f: table[f][name] for f in formulas}, TRANSFER_TOP)
    return [f for f in formulas if f in chosen]


def _sources(cache: Cache, formulas: Sequence[str], protocol: Protocol) -> dict[str, Callable[[str, str], float | None]]:
    """(task, formula) -> score: the proxy's, and the ground truth's over the seeds done."""
    done = {t: seeds_done(cache, t, formulas, protocol) for t in TASKS}
    return {"proxy": lambda t, f: proxy_of(cache, t, f, protocol),
            "truth": lambda t, f: truth_of(cache, t, f, protocol, done[t]) if len(done[t]) >= MIN_LONG_SEEDS else None}


def _complete_sources(cache: Cache, formulas: Sequence[str],
                      protocol: Protocol) -> dict[str, dict[str, dict[str, float]]]:
    """Per source ("proxy", "truth"), task -> formula -> score, for the sources known for every
    formula on every task: the transfer analysis runs from the proxy alone while a task's
    long-budget ground truth is incomplete, and adds the truth's candidates once it is there."""
    out = {}
    for name, source in _sources(cache, formulas, protocol).items():
        scores = {t: {f: source(t, f) for f in formulas} for t in TASKS}
        if all(v is not None for per in scores.values() for v in per.values()):
            out[name] = {t: {f: float(v) for f, v in per.items() if v is not None} for t, per in scores.items()}
        else:
            print(f"transfer: no {name} ranking yet (incomplete on {', '.join(t for t in TASKS if None in scores[t].values())})")
    return out


def analyse_transfer(cache: Cache, formulas: Sequence[str], protocol: Protocol, held_out: str) -> None:
    """How well each aggregate, computed from the two benchmark tasks, picks candidates that do
    well on the held-out task (ground truth: the long protocol there)."""
    from scipy import stats

    from afsearch.reference import DEFAULT_BASELINES, reference_formula

    chosen = transfer_candidates(cache, formulas, protocol)
    held_seeds = seeds_done(cache, held_out, chosen, protocol)
    held = {f: t for f in chosen if (t := truth_of(cache, held_out, f, protocol, held_seeds)) is not None} \
        if held_seeds else {}
    if len(held) < len(chosen):
        print(f"\ntransfer: held-out ground truth for {len(held)} of {len(chosen)} candidates so far")
        if len(held) < 8 or any(reference_formula(b) not in held for b in DEFAULT_BASELINES):
            return
    best = max(held[reference_formula(b)] for b in DEFAULT_BASELINES)
    target = {f: held[f] - best for f in held}
    task = task_of(held_out)
    print(f"\n== transfer to held-out {held_out} ({task_of(held_out).recipe.steps * protocol.long_factor} steps x "
          f"{len(held_seeds)} seeds, train {len(task.data.train)} / test {len(task.data.test)} examples): "
          f"{len(held)} candidates (top {TRANSFER_TOP} by any aggregate, plus baselines); best baseline {best:.4f}")
    print("ranking by (from the proxy | from the ground truth): Spearman with the held-out delta; mean held-out "
          "delta of the top 10 / top 25; top 10 beating the held-out best baseline")
    candidates = [f for f in held if f not in {reference_formula(b) for b in DEFAULT_BASELINES}]
    for source_name, scores in _complete_sources(cache, formulas, protocol).items():
        table = aggregates(scores, formulas)
        for name in ("mean", "worst", "mean-rel", "worst-rel", *TASKS):
            by = {f: table[f][name] for f in candidates}
            rho = stats.spearmanr([by[f] for f in candidates], [target[f] for f in candidates]).statistic
            top10, top25 = _top(by, 10), _top(by, 25)
            mean10 = sum(target[f] for f in top10) / len(top10)
            mean25 = sum(target[f] for f in top25) / len(top25)
            wins = sum(target[f] > 0 for f in top10)
            print(f"  {source_name:5s} {name:12s} rho {rho:+.3f}   top-10 {mean10:+.4f}   top-25 {mean25:+.4f}   "
                  f"{wins}/10 beat it")


# ---------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--minutes", type=float, default=9.0, help="start no new work after this (default 9)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes, one thread each (default 2)")
    ap.add_argument("--analyse", action="store_true", help="only print figures from the cache")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--list", action="store_true", help="print the benchmark formulas and exit")
    ap.add_argument("--transfer", action="store_true",
                    help=f"also train the top {TRANSFER_TOP} by every aggregate on the held-out task and compare")
    ap.add_argument("--held-out", default=HELD_OUT, help="held-out task label (default %(default)s)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N formulas (smoke tests)")
    ap.add_argument("--kinds", default=",".join(UNIT_KINDS),
                    help="which missing runs to train (default all: %(default)s)")
    args = ap.parse_args(argv)

    groups = benchmark_formulas()[: args.limit]
    formulas = [f for _, f in groups]
    if args.list:
        for group, f in groups:
            print(f"{group:12s} {f}")
        return 0
    tasks = args.tasks.split(",")
    protocol = Protocol.default()
    cache = Cache(args.cache, protocol)
    ladder_json = {}
    for task in tasks:
        config = dataclasses.asdict(current_ladder(task))
        ladder_json[task] = json.dumps(config, sort_keys=True)
        cache.ladders.setdefault(ladder_key(config), {"config": config, "commit": _commit()})
    print(f"{len(formulas)} formulas ({', '.join(f'{g} {sum(1 for x, _ in groups if x == g)}' for g in dict.fromkeys(x for x, _ in groups))}); "
          f"tasks {', '.join(tasks)}; cache {args.cache}")
    if not args.analyse:
        extra = {args.held_out: transfer_candidates(cache, formulas, protocol)} if args.transfer else None
        kinds = set(args.kinds.split(","))
        if kinds - set(UNIT_KINDS):
            ap.error(f"--kinds: unknown {', '.join(sorted(kinds - set(UNIT_KINDS)))}; allowed: {', '.join(UNIT_KINDS)}")
        units = [u for u in plan(cache, formulas, tasks, protocol, ladder_json, extra) if u.kind in kinds]
        print(f"{len(units)} units to train; starting none after {args.minutes:g} min", flush=True)
        left = compute(cache, units, args.workers, args.minutes)
        cache.save()
        print("ground truth complete" if not left else f"{left} units left: run again", flush=True)
    analyse(cache, formulas, tasks, protocol, ladder_json)
    if args.transfer:
        analyse_transfer(cache, formulas, protocol, args.held_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
