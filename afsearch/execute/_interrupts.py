"""Ctrl-C that survives Ray's blocking calls.

While the driver blocks in ``ray.wait``/``ray.get``, Ray runs Python's signal handlers from
inside its C++ wait loop, and the KeyboardInterrupt a handler raises there can be dropped: the
call returns normally and the driver goes on as if Ctrl-C had never been pressed (seen as a
driver that ignored SIGINT for minutes in `tests/test_execute_cluster.py`). `interrupts_kept`
routes SIGINT through a wrapper that remembers what the real handler raised and raises it again
once Ray has returned, so an interrupt is never lost; the real handler still decides what a
Ctrl-C means (the search engine's first Ctrl-C only asks it to stop)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def interrupts_kept() -> Iterator[None]:
    """Around code that blocks in Ray: an exception raised by the SIGINT handler meanwhile is
    raised when the block ends, even if Ray swallowed it. Outside the main thread, or when
    SIGINT is ignored or left to the OS default, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):
        yield
        return
    raised: list[BaseException] = []

    def remembering(signum: int, frame: FrameType | None) -> None:
        try:
            handler(signum, frame)
        except BaseException as exc:
            raised.append(exc)
            raise

    signal.signal(signal.SIGINT, remembering)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
    if raised:  # reached only when the exception did not propagate by itself
        raise raised[0]
