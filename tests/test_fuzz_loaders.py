"""Fuzzing the two loaders a user feeds files to: search spaces and search configs.

Whatever the bytes, a loader either returns an object or raises `AfsearchError` (the CLI's
one line and exit 2); never another exception, and never a write to the input file. Inputs:
random bytes, shipped space files with random byte damage, and shipped space / config
documents with one value replaced by a random TOML value (or a key dropped or added), which
reaches far deeper into the loaders than random bytes do."""

from __future__ import annotations

import random
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from afsearch.errors import AfsearchError
from afsearch.search.config import SearchConfig
from afsearch.spaces import SPACES_DIR, list_spaces, load_space
from afsearch.store import dumps_toml

SHIPPED = {name: path.read_bytes() for name, path in list_spaces().items()}
DOCS = {name: tomllib.loads(raw.decode()) for name, raw in SHIPPED.items()}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=30),
    st.sampled_from(["x", "relu", "sin(x)", "gp", "swish", "tpe", "evolution", "x * sigmoid(beta * x)"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3)),
    max_leaves=8)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a TOML document (table keys and list indices)."""
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*prefix, i))
    return out


def _mutated(doc: dict[str, Any], rnd: random.Random, value: Any, action: str) -> dict[str, Any]:
    doc = tomllib.loads(dumps_toml(doc))  # a deep copy
    path = rnd.choice(_paths(doc))
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "drop" and isinstance(parent, dict):
        del parent[last]
    elif action == "add" and isinstance(parent, dict):
        parent[f"unknown_{rnd.randrange(100)}"] = value
    else:
        parent[last] = value
    return doc


def _write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _loads_or_refuses(load: Any, path: Path) -> None:
    before = path.read_bytes()
    try:
        load(path)
    except AfsearchError as exc:
        assert "\n" not in str(exc).strip(), "the CLI prints errors on one line"
    assert path.read_bytes() == before, "a loader wrote to its input"


def _space_and_a_proposal(path: Path) -> None:
    """Load, then sample and build one candidate: a space accepted at load must not fail at
    its first proposal (a nan initial value once did, for every proposal)."""
    space = load_space(path)
    space.to_candidate(space.sample(random.Random(0)))


@FUZZ
@given(content=st.binary(max_size=400))
def test_random_bytes(tmp_path: Path, content: bytes) -> None:
    _loads_or_refuses(load_space, _write(tmp_path, "random.toml", content))
    _loads_or_refuses(SearchConfig.load, _write(tmp_path, "random_config.toml", content))


@FUZZ
@given(name=st.sampled_from(sorted(SHIPPED)), data=st.data())
def test_damaged_shipped_space_bytes(tmp_path: Path, name: str, data: st.DataObject) -> None:
    raw = bytearray(SHIPPED[name])
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    _loads_or_refuses(_space_and_a_proposal, _write(tmp_path, f"{name}.toml", bytes(raw)))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(DOCS)), seed=st.integers(0, 2**32), value=values,
       action=st.sampled_from(["replace", "replace", "drop", "add"]))
def test_shipped_space_with_one_value_changed(tmp_path: Path, name: str, seed: int, value: Any,
                                              action: str) -> None:
    try:
        text = dumps_toml(_mutated(DOCS[name], random.Random(seed), value, action))
    except ValueError:  # e.g. a list of tables, which this writer does not write
        assume(False)
    _loads_or_refuses(_space_and_a_proposal, _write(tmp_path, f"{name}.toml", text.encode()))


CONFIG_KEYS = sorted(f for f in SearchConfig.__dataclass_fields__) + ["time", "search"]
BASE_CONFIG = {"space": "swish", "task": "mnist1d-mlp", "budget": 3, "backend": "local",
               "strategy": "evolution", "strategy_options": {"population": 4}, "task_config": {"hidden": [8]}}


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(CONFIG_KEYS), values, min_size=1, max_size=3))
def test_config_with_random_values(tmp_path: Path, changes: dict[str, Any]) -> None:
    try:
        text = dumps_toml({**BASE_CONFIG, **changes})
    except ValueError:
        assume(False)
    _loads_or_refuses(SearchConfig.load, _write(tmp_path, "run.toml", text.encode()))


def test_shipped_spaces_are_what_the_fuzzer_mutates() -> None:
    assert DOCS and all((SPACES_DIR / f"{name}.toml").is_file() for name in DOCS)
