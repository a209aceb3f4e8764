"""A user's reference activation and space kind plug in through registries, without editing
the package, and a search uses them."""

import random
from pathlib import Path

import pytest

import afsearch
from afsearch.candidate import Candidate
from afsearch.errors import ExpressionError, SpaceError
from afsearch.execute import LocalExecutor
from afsearch.reference import REFERENCES
from afsearch.search.config import SearchConfig
from afsearch.search.engine import Search
from afsearch.spaces import KINDS, load_space
from afsearch.spaces.base import SearchSpace
from tests import search_jobs


class ScaledTanh(SearchSpace):
    """erf(a * x) for a on a grid: a space kind the package does not ship."""

    def __init__(self, name: str, scales: list[float]) -> None:
        self.name, self.scales = name, scales

    def sample(self, rng: random.Random) -> float:
        return rng.choice(self.scales)

    def mutate(self, genotype: float, rng: random.Random) -> float:
        return rng.choice([s for s in self.scales if s != genotype] or self.scales)

    def size(self) -> int:
        return len(self.scales)

    def to_candidate(self, genotype: float) -> Candidate:
        return Candidate.activation(f"erf({genotype} * x)")


def _load(path: Path) -> ScaledTanh:
    return ScaledTanh(path.stem, [0.5, 1.0, 2.0, 3.0, 4.0])


@pytest.fixture
def registered():
    afsearch.register_reference("my_prod", "x * erf(softplus(x))", "what we ship today")
    afsearch.register_space_kind("scaled_tanh", _load)
    yield
    REFERENCES.pop("my_prod", None)
    KINDS.pop("scaled_tanh", None)


def test_a_registered_reference_and_space_kind_run_in_a_search(registered, tmp_path):
    space_file = tmp_path / "tanhs.toml"
    space_file.write_text('kind = "scaled_tanh"\n')
    assert load_space(space_file).size() == 5
    config = SearchConfig(space=str(space_file), budget=4, steps=10, backend="local", strategy="random",
                          baselines=["relu", "my_prod"], validate_top=0, name="ext")
    with Search.create(config, tmp_path / "runs") as search:
        search.run(LocalExecutor(search_jobs.crafted))
        formulas = {e.candidate.formula for e in search.leaderboard(top=100)}
    assert "x * erf(softplus(x))" in formulas  # the baseline trained beside the candidates
    assert any(f.startswith("erf(") for f in formulas)


def test_bad_registrations_are_refused(registered):
    with pytest.raises(ExpressionError, match="already exists"):
        afsearch.register_reference("relu", "relu(x)")
    with pytest.raises(ExpressionError, match="position"):
        afsearch.register_reference("broken", "x *")
    with pytest.raises(SpaceError, match="must be a new identifier"):
        afsearch.register_space_kind("gp", _load)
