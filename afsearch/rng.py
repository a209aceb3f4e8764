"""Random-state helpers shared by spaces and strategies."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator


@contextlib.contextmanager
def seeded_global_random(rng: random.Random) -> Iterator[None]:
    """Run a block that draws from Python's global `random` (DEAP's selection and variation
    operators do) deterministically: the global generator is seeded from one draw of `rng` for
    the block and its previous state is restored afterwards. Code driven by one
    `random.Random` is then reproducible and resumable. Not thread-safe."""
    saved = random.getstate()
    random.seed(rng.getrandbits(64))
    try:
        yield
    finally:
        random.setstate(saved)
