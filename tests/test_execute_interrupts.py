"""A Ctrl-C is never lost in Ray's blocking calls: what the SIGINT handler raised while they ran
is raised again when they return, even if Ray swallowed it."""

import os
import signal

import pytest

from afsearch.execute._interrupts import interrupts_kept


def _swallowing_call() -> None:
    """Stands in for a Ray call that runs the handler inside and drops its exception."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs between bytecodes
            pass
    except KeyboardInterrupt:
        pass


def test_a_swallowed_interrupt_is_raised_when_the_block_ends():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), interrupts_kept():
        _swallowing_call()
    assert signal.getsignal(signal.SIGINT) is before


def test_a_handler_that_only_asks_to_stop_is_left_alone():
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        with interrupts_kept():
            _swallowing_call()
        assert calls == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_interrupt_that_propagates_is_raised_once():
    with pytest.raises(KeyboardInterrupt), interrupts_kept():
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
