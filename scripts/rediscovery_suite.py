"""The planted-rediscovery suite of `bench_search.py --suite`: formulas of ordinary activation
shapes, each planted in the teacher-student task's teacher, and the fast runner that searches
for them with the closed-form readout score instead of training.

Families (each with and without numeric constants, in the gp and swish spaces): products with
x, maxima and minima, sums of a bump and x, and piecewise compositions. Every formula is a
member of its space and rare among its random draws (at most 1 hit, most 0, in ~1,800 distinct
random draws of the space at the benchmark's tolerance), so random search rarely finds it.

Results are cached per search in a JSON file (`--cache`), keyed by strategy, options, space,
formula, master seed and budget, so a long benchmark runs in chunks (`--max-minutes`) and a
rerun prints from the cache."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from afsearch.search.seeding import derive_seed
from afsearch.search.strategies import make_strategy
from afsearch.spaces import load_space


@dataclass(frozen=True)
class Planted:
    name: str
    space: str
    formula: str
    family: str


SUITE: tuple[Planted, ...] = (
    Planted("x-tanh", "gp", "x * tanh(x)", "product with x"),
    Planted("swish-1.5", "gp", "x * sigmoid(1.5 * x)", "product with x, constant"),
    Planted("x-erf", "swish", "x * erf(x)", "product with x"),
    Planted("max-tanh", "gp", "max(x, tanh(x))", "maximum"),
    Planted("leaky-0.2", "gp", "max(x, 0.2 * x)", "maximum, constant"),
    Planted("min-tanh", "gp", "min(x, tanh(x))", "minimum"),
    Planted("max-sin", "swish", "max(x, sin(x))", "maximum"),
    Planted("bump", "gp", "x + exp(-(x^2))", "bump plus x"),
    Planted("bump-0.5", "gp", "0.5 * x + exp(-(x^2))", "bump plus x, constant"),
    Planted("bump-swish", "swish", "x + exp(-x^2)", "bump plus x"),
    Planted("erf-relu", "gp", "erf(x) * relu(x)", "piecewise"),
    Planted("max-tanh-half", "gp", "max(tanh(x), 0.5 * x)", "piecewise, constant"),
    Planted("relu-sin", "swish", "relu(x) * sin(x)", "piecewise"),
    Planted("x-atan", "swish", "x * atan(x)", "product with x"),
)

#: strategy labels of the benchmark: a strategy name, or "evolution+surrogate" / "gp+surrogate"
#: (that strategy with its surrogate pre-screen of offspring switched on)
PRESCREEN = "+surrogate"
#: children drawn per offspring by the "+surrogate" labels
PRESCREEN_DRAWS = 20


def strategy_and_options(label: str, extra: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The strategy name and options a benchmark label stands for (defaults unless `extra`).
    A label may carry a tag after "@" to tell settings apart: "surrogate@knn"."""
    name = label.split("@")[0]
    if name.endswith(PRESCREEN):
        return name[: -len(PRESCREEN)], {"prescreen": PRESCREEN_DRAWS, **extra}
    return name, dict(extra)


@dataclass
class SuiteResult:
    label: str
    options: dict[str, Any]
    planted: str  # Planted.name
    seed: int
    budget: int
    found_at: int | None  # trained evaluations until the first hit; None: not within budget
    hit: str  # the hit's formula ("" when none)
    best: float  # best score seen
    wall_s: float

    def key(self) -> str:
        return result_key(self.label, self.options, self.planted, self.seed, self.budget)


def result_key(label: str, options: dict[str, Any], planted: str, seed: int, budget: int) -> str:
    return json.dumps([label, options, planted, seed, budget], sort_keys=True)


class ResultCache:
    """Search results in a JSON file, written atomically after every new result."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.results: dict[str, SuiteResult] = {}
        if path is not None and path.exists():
            for row in json.loads(path.read_text()):
                result = SuiteResult(**row)
                self.results[result.key()] = result

    def get(self, key: str) -> SuiteResult | None:
        return self.results.get(key)

    def add(self, result: SuiteResult) -> None:
        self.results[result.key()] = result
        if self.path is not None:
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps([asdict(r) for r in self.results.values()], indent=0))
            tmp.replace(self.path)


def fast_search(job: tuple[str, dict[str, Any], Planted, int, int, float]) -> SuiteResult:
    """One search of the suite, scored by the closed-form readout (`SurrogateScore`) instead of
    training (`bench_search.closed_form_search`); stops at the first hit."""
    from bench_search import SurrogateScore, closed_form_search  # noqa: PLC0415 (a script beside this one)

    label, extra, planted, seed, budget, tolerance = job
    torch.set_num_threads(1)  # searches run side by side, one per worker process
    started = time.perf_counter()
    name, options = strategy_and_options(label, extra)
    space = load_space(planted.space)
    strategy = make_strategy(name, space, random.Random(derive_seed(seed, "strategy")), [], **options)
    score = SurrogateScore(planted.formula)
    found_at, hit, best = closed_form_search(space, strategy, planted.formula, score, budget, tolerance)
    return SuiteResult(label, extra, planted.name, seed, budget, found_at, hit, best,
                       time.perf_counter() - started)
