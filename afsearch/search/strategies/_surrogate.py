"""The surrogate model shared by the surrogate strategy and the pre-screen of evolution and gp:
a scikit-learn regressor from a formula's shape (`afsearch.search.features`) to its score.

Scores enter as ranks (normal scores of their order, ties averaged), so the model cares about
which formulas are better, not by how much: that is the same on every task and metric, and it
spreads the crowded top of a score range such as R^2 in [0.99, 1]. Failed and rejected results
rank below every finite one. The fit is a pure function of the observations, so a restored
strategy refits the same model."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm, rankdata
from threadpoolctl import threadpool_limits

from afsearch.errors import AfsearchError, ConfigError
from afsearch.expr.parser import parse
from afsearch.jsonsafe import float_from_json, json_safe
from afsearch.search.features import ShapeFeatures, shape_features
from afsearch.spaces.base import Genotype, SearchSpace

MODELS = ("gp", "knn", "forest")
#: what the regressor sees of a formula: its shape, or its shape beside its shape less the
#: linear part (`ShapeFeatures.residual`)
INPUTS = ("shape", "shape+residual")
_CACHE_LIMIT = 200_000


class ShapeCache:
    """Genotype -> `ShapeFeatures` (None: invalid or screened out), computed once per genotype."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self._cache: dict[str, ShapeFeatures | None] = {}
        self._to_expr = getattr(space, "to_expr", None)

    def __call__(self, genotype: Genotype) -> ShapeFeatures | None:
        gid = json.dumps(genotype, sort_keys=True, separators=(",", ":"))
        if gid not in self._cache:
            if len(self._cache) > _CACHE_LIMIT:
                self._cache.clear()
            self._cache[gid] = self._compute(genotype)
        return self._cache[gid]

    def _compute(self, genotype: Genotype) -> ShapeFeatures | None:
        try:
            if self._to_expr is not None:
                expr = self._to_expr(genotype)
            else:
                candidate = self.space.to_candidate(genotype)
                if candidate.is_layer:
                    return None
                expr = parse(candidate.spec)
            return shape_features(expr)
        except (AfsearchError, ValueError, ArithmeticError, RecursionError):
            return None


class ShapeLibrary:
    """The space's smallest members (`SearchSpace.smallest`), one per shape, with their shape
    vectors stacked, for drawing at random or by nearness to a shape."""

    def __init__(self, space: SearchSpace, shapes: ShapeCache) -> None:
        self.genotypes: list[Genotype] = []
        vectors: list[np.ndarray] = []
        keys: set[str] = set()
        for genotype in space.smallest():
            features = shapes(genotype)
            if features is not None and features.key not in keys:
                keys.add(features.key)
                self.genotypes.append(genotype)
                vectors.append(features.vector)
        self.vectors = np.stack(vectors) if vectors else np.empty((0, 0))

    def __len__(self) -> int:
        return len(self.genotypes)

    def nearest(self, vector: np.ndarray, count: int) -> np.ndarray:
        """Indices of the `count` members nearest to `vector` (unit length, like theirs), nearest first."""
        # for unit vectors the distance grows as the dot product falls
        similarity = self.vectors @ vector
        count = min(count, len(similarity))
        top = np.argpartition(-similarity, count - 1)[:count]
        return top[np.argsort(-similarity[top], kind="stable")]


def check_activation_space(space: SearchSpace, strategy: str, rng_sample: Genotype) -> None:
    """A surrogate needs element-wise formulas: refuse a layer space with a clear error."""
    if space.to_candidate(rng_sample).is_layer:
        raise ConfigError(f"strategy {strategy!r}: space {space.name!r} searches layer graphs, which have no "
                          "shape on the probes to learn from; use evolution or gp")


def rank_targets(scores: list[float]) -> np.ndarray:
    """Normal scores of the ranks (ties averaged); -inf (failed) ranks below every finite score."""
    finite = [s for s in scores if math.isfinite(s)]
    floor = (min(finite) - 1.0) if finite else 0.0
    values = np.array([s if math.isfinite(s) else floor for s in scores], dtype=np.float64)
    ranks = rankdata(values)
    return norm.ppf(ranks / (len(values) + 1.0))


@dataclass
class Prediction:
    mean: np.ndarray
    std: np.ndarray


class Regressor:
    """A fitted model: `predict(queries)` gives mean and uncertainty in the units of y.

    gp: Gaussian process (constant * RBF + white noise; hyperparameters by maximum likelihood,
    one optimiser start, or fixed to `kernel` when given); knn: distance-weighted k nearest
    neighbours, uncertainty the spread of the neighbours' targets plus their distance relative
    to the typical spacing of the data; forest: random forest, uncertainty the spread over its
    trees."""

    def __init__(self, model: str, x: np.ndarray, y: np.ndarray, neighbours: int = 5,
                 kernel: Any = None) -> None:
        self.model, self.x, self.y = model, x, y
        # one BLAS thread: a multi-threaded sum may round differently from run to run, and a
        # resumed search must refit exactly the same model
        with threadpool_limits(1):
            self._fit(neighbours, kernel)

    def _fit(self, neighbours: int, kernel: Any) -> None:
        model, x, y = self.model, self.x, self.y
        if model == "gp":
            from sklearn.gaussian_process import GaussianProcessRegressor
            from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

            fixed = kernel is not None
            if not fixed:
                # shapes have unit length (`ShapeFeatures.vector`): distances lie in [0, 2]
                kernel = ConstantKernel(1.0, (1e-2, 1e2)) * RBF(0.3, (1e-2, 1e1)) + WhiteKernel(0.05, (1e-4, 1.0))
            self._fitted = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0,
                                                    optimizer=None if fixed else "fmin_l_bfgs_b")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence notes of the optimiser
                self._fitted.fit(x, y)
            self.kernel = self._fitted.kernel_
        elif model == "knn":
            from sklearn.neighbors import NearestNeighbors

            self.k = min(neighbours, len(x))
            self._fitted = NearestNeighbors(n_neighbors=self.k).fit(x)
            nearest = self._fitted.kneighbors(x, n_neighbors=min(2, len(x)))[0][:, -1]
            self.spacing = float(np.median(nearest)) or 1.0
        elif model == "forest":
            from sklearn.ensemble import RandomForestRegressor

            self._fitted = RandomForestRegressor(100, min_samples_leaf=2, random_state=0, n_jobs=1).fit(x, y)
        else:
            raise ConfigError(f"unknown surrogate model {model!r}; allowed: {', '.join(MODELS)}")

    def predict(self, queries: np.ndarray) -> Prediction:
        with threadpool_limits(1):
            return self._predict(queries)

    def _predict(self, queries: np.ndarray) -> Prediction:
        if self.model == "gp":
            mean, std = self._fitted.predict(queries, return_std=True)
            return Prediction(np.asarray(mean), np.asarray(std))
        if self.model == "knn":
            dist, idx = self._fitted.kneighbors(queries)
            weights = 1.0 / np.maximum(dist, 1e-9)
            mean = (weights * self.y[idx]).sum(1) / weights.sum(1)
            near = dist.mean(1)
            return Prediction(mean, self.y[idx].std(1) + float(self.y.std()) * near / (near + self.spacing))
        per_tree = np.stack([tree.predict(queries) for tree in self._fitted.estimators_])
        return Prediction(per_tree.mean(0), per_tree.std(0))


class ShapeModel:
    """Observations (shape, score) and the regressor fitted to them, refitted lazily when new
    observations arrived. The Gaussian process re-optimises its hyperparameters only on the
    first multiple of `RETUNE_EVERY` observations (kept for the next ones): a pure function of
    the observations, so a restored strategy refits the same model."""

    RETUNE_EVERY = 10

    def __init__(self, model: str, neighbours: int = 5, window: int = 0, inputs: str = "shape") -> None:
        if model not in MODELS:
            raise ConfigError(f"unknown surrogate model {model!r}; allowed: {', '.join(MODELS)}")
        if inputs not in INPUTS:
            raise ConfigError(f"unknown surrogate inputs {inputs!r}; allowed: {', '.join(INPUTS)}")
        self.model, self.inputs = model, inputs
        self._inputs: list[np.ndarray] = []
        self.neighbours = neighbours
        self.window = window  # fit on at most this many observations (the best and the latest); 0: all
        self.features: list[np.ndarray] = []
        self.scores: list[float] = []
        self._regressor: Regressor | None = None
        self._kernel: tuple[int, Any] | None = None  # (observations it was tuned on, kernel)

    def add(self, features: ShapeFeatures | None, score: float) -> None:
        if features is not None:
            self.features.append(features.vector)
            self._inputs.append(self._input(features))
            self.scores.append(score)
            self._regressor = None

    def __len__(self) -> int:
        return len(self.scores)

    def predict(self, queries: list[ShapeFeatures]) -> Prediction:
        """Predicted rank scores (normal scores) of `queries`, refitting first when results
        arrived since the last fit."""
        if self._regressor is None:
            n = len(self.scores)
            tuned_on = max(n - n % self.RETUNE_EVERY, min(n, self.RETUNE_EVERY))
            kernel = None
            if self.model == "gp" and tuned_on < n:
                if self._kernel is None or self._kernel[0] != tuned_on:
                    self._kernel = (tuned_on, Regressor(self.model, *self._data(tuned_on)).kernel)
                kernel = self._kernel[1]
            self._regressor = Regressor(self.model, *self._data(n), self.neighbours, kernel)
            if self.model == "gp" and kernel is None:
                self._kernel = (n, self._regressor.kernel)
        return self._regressor.predict(np.stack([self._input(q) for q in queries]))

    def _input(self, features: ShapeFeatures) -> np.ndarray:
        if self.inputs == "shape":
            return features.vector
        return np.concatenate([features.vector, features.residual])

    def _data(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Features and rank targets of the first `n` observations, at most `window` of them
        (half the best, half the latest)."""
        x, scores = np.stack(self._inputs[:n]), self.scores[:n]
        if self.window and n > self.window:
            order = sorted(range(n), key=lambda i: (-_finite(scores[i]), i))
            keep = sorted(set(order[: self.window // 2]) | set(range(n - self.window // 2, n)))
            x, scores = x[keep], [scores[i] for i in keep]
        return x, rank_targets(list(scores))


def _finite(score: float) -> float:
    return score if math.isfinite(score) else -1e300


def fitted_model(model: str, window: int, shapes: ShapeCache, results: list[dict[str, Any]],
                 inputs: str = "shape") -> ShapeModel:
    """A `ShapeModel` fitted to `results` ({"genotype", "score"} records, in the order told)."""
    fitted = ShapeModel(model, window=window, inputs=inputs)
    for result in results:
        fitted.add(shapes(result["genotype"]), result["score"])
    return fitted


def far_from(vectors: np.ndarray, known: list[np.ndarray], radius: float) -> np.ndarray:
    """For each row of `vectors`: True when it lies at least `radius` (and always more than 0)
    from every vector in `known`."""
    if not known or not len(vectors):
        return np.ones(len(vectors), dtype=bool)
    k = np.stack(known)
    squared = (vectors**2).sum(1)[:, None] - 2 * vectors @ k.T + (k**2).sum(1)[None, :]
    return np.sqrt(np.maximum(0.0, squared)).min(1) >= max(radius, 1e-9)


class Prescreen:
    """The surrogate pre-screen of evolution's and gp's offspring: of `draws` children made by
    the strategy's own operators, the one the model (fitted to every result told so far)
    predicts best (upper confidence bound) is trained, among those whose shape lies at least
    `novelty` from every trained shape. Off with `draws` < 2, and until `initial` results are in."""

    def __init__(self, space: SearchSpace, draws: int, model: str = "gp", kappa: float = 1.0,
                 initial: int = 20, window: int = 400, novelty: float = 0.02) -> None:
        self.draws, self.kappa, self.initial, self.novelty = draws, kappa, initial, novelty
        self.shapes = ShapeCache(space)
        self.model_name, self.window = model, window
        self.history: list[dict[str, Any]] = []  # {"genotype", "score"} in the order told
        self._model: ShapeModel | None = None

    @property
    def active(self) -> bool:
        return self.draws > 1 and len(self.history) >= self.initial and \
            sum(math.isfinite(h["score"]) for h in self.history) >= 2

    def add(self, genotype: Genotype, score: float) -> None:
        if self.draws < 2:
            return
        self.history.append({"genotype": genotype, "score": score})
        if self._model is not None:
            self._model.add(self.shapes(genotype), score)

    def pick(self, genotypes: list[Genotype]) -> int:
        """The index of the child to train (see the class docstring); the first child when
        none is valid and new."""
        model = self._fitted()
        options = [(i, f) for i, f in enumerate(map(self.shapes, genotypes)) if f is not None]
        if options:
            novel = far_from(np.stack([f.vector for _, f in options]), model.features, self.novelty)
            options = [o for o, keep in zip(options, novel, strict=True) if keep]
        if not options:
            return 0
        prediction = model.predict([f for _, f in options])
        return options[int(np.argmax(prediction.mean + self.kappa * prediction.std))][0]

    def _fitted(self) -> ShapeModel:
        if self._model is None:
            self._model = fitted_model(self.model_name, self.window, self.shapes, self.history)
        return self._model

    def state(self) -> list[dict[str, Any]]:
        return [{"genotype": h["genotype"], "score": json_safe(h["score"])} for h in self.history]

    def restore(self, history: list[dict[str, Any]]) -> None:
        self.history = [{"genotype": h["genotype"], "score": float_from_json(h["score"])} for h in history]
        self._model = None
