"""Search spaces: TOML files in `afsearch/search_spaces/` (linked as `search_spaces/`),
interpreted by one module per `kind`.

    space = load_space("swish")                # a shipped space, by name
    space = load_space("my_spaces/tiny.toml")  # or any space file
    genotype = space.sample(random.Random(0))
    candidate = space.to_candidate(genotype)

Kinds: swish (Swish-paper core units), gp (DEAP trees), eafo (base + Hermite corrections),
parametric (one formula with tuned constants), evonorm (normalization-activation layers), la and
moa (learnable and token-adaptive mixtures of a dictionary of activations).
Every space implements `afsearch.spaces.base.SearchSpace`."""

from __future__ import annotations

import importlib
import importlib.resources
from collections.abc import Callable
from pathlib import Path

from afsearch.errors import SpaceError
from afsearch.spaces.base import Genotype, SearchSpace
from afsearch.spaces.toml_schema import load_toml, require

#: the folder holding the shipped space files: package data, so a wheel carries them (the
#: repository's top-level `search_spaces` is a symlink to it). A plain folder on disk: setuptools
#: installs packages unzipped, and space files are read (and named to users) by path.
SPACES_DIR = Path(str(importlib.resources.files("afsearch") / "search_spaces"))

#: kind -> (module, loader function); modules are imported on first use (gp imports DEAP).
#: `register_space_kind` adds a kind whose loader is a callable.
KINDS: dict[str, tuple[str, str] | Callable[[Path], SearchSpace]] = {
    "swish": ("afsearch.spaces.swish", "load_swish_space"),
    "gp": ("afsearch.spaces.gp", "load_gp_space"),
    "eafo": ("afsearch.spaces.eafo", "load_eafo_space"),
    "parametric": ("afsearch.spaces.parametric", "load_parametric_space"),
    "evonorm": ("afsearch.spaces.evonorm", "load_evonorm_space"),
    "la": ("afsearch.spaces.mixture", "load_la_space"),
    "moa": ("afsearch.spaces.mixture", "load_moa_space"),
}


def list_spaces() -> dict[str, Path]:
    """Shipped spaces: name (file stem) -> path, sorted by name."""
    if not SPACES_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SPACES_DIR.glob("*.toml"))}


def space_path(name_or_path: str | Path) -> Path:
    """The file for a shipped space name, or the given path when it names a file."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    shipped = list_spaces()
    if path.suffix == ".toml" or path.parent != Path(".") or path.is_file():
        if path.is_file():
            return path
        if path.parent == Path(".") and path.stem in shipped:  # "swish.toml" means the shipped one
            return shipped[path.stem]
        raise SpaceError(f"{path}: no such space file")
    if text not in shipped:
        raise SpaceError(
            f"unknown search space {text!r}; allowed: {', '.join(shipped) or '(none shipped)'}"
            " or a path to a .toml space file"
        )
    return shipped[text]


def space_kind(path: str | Path) -> str:
    """The `kind` key of a space file, checked against the known kinds."""
    return require(load_toml(path), "kind", str, path, allowed=list(KINDS))


def loader(kind: str) -> Callable[[Path], SearchSpace]:
    entry = KINDS[kind]
    if callable(entry):
        return entry
    module, function = entry
    return getattr(importlib.import_module(module), function)


def register_space_kind(kind: str, load: Callable[[Path], SearchSpace]) -> None:
    """Add a space kind for this process: space files with ``kind = "<kind>"`` are then loaded
    by ``load(path)``, which returns a `SearchSpace` (see `afsearch.spaces.base`). Its candidates
    are formulas or layer graphs, so workers need nothing registered."""
    if not isinstance(kind, str) or not kind.isidentifier() or kind in KINDS:
        raise SpaceError(f"space kind {kind!r}: must be a new identifier (taken: {', '.join(KINDS)})")
    if not callable(load):
        raise SpaceError(f"space kind {kind!r}: the loader must be callable")
    KINDS[kind] = load


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load a shipped space by name (see `list_spaces`) or any space file by path; dispatches
    on the file's `kind`. Malformed files raise `SpaceError` naming the file, key and allowed
    values."""
    path = space_path(name_or_path)
    return loader(space_kind(path))(path)


__all__ = [
    "KINDS",
    "SPACES_DIR",
    "Genotype",
    "SearchSpace",
    "list_spaces",
    "load_space",
    "register_space_kind",
    "space_kind",
    "space_path",
]
