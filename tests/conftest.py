"""Shared fixtures. `ray_session` starts one local Ray (2 CPUs, no dashboard) for the whole
pytest session, only when a test asks for it, and shuts it down at the end."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """The `ray` module, initialised once per session. Tests must not call ray.shutdown();
    executors created while it runs reuse it and leave it running."""
    import ray

    started = not ray.is_initialized()
    if started:
        # Ray workers import job functions of tests/ by name (tests.executor_jobs)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    yield ray
    if started:
        ray.shutdown()
