"""A wall-clock limit around sympy calls that can run for minutes (simplify, integrate).

SIGALRM in the main thread; elsewhere no limit (callers bound their inputs too). The search, `gpact eval`
and `gpact integrate` all run sympy in the main thread.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Timeout(Exception):
    """The time box ran out."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `Timeout` inside the block once `seconds` have passed (main thread only)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def _raise(signum, frame):
        raise Timeout()

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
