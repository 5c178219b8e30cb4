"""When a run stops: its generation count, a time limit, an evaluation budget, or a signal.

The limits are checked between generations, so a run always stops at a checkpoint. A first SIGINT (Ctrl-C)
or SIGTERM lets the current generation finish and then stops; a second one abandons that generation at
once (its work is lost, the previous generation's checkpoint stands). After the last generation (`reporting`)
a first signal lets the final report finish and a second abandons it; either way the exit status is the
signal's. `Abandoned` derives from
BaseException, like KeyboardInterrupt, so the evaluator's `except Exception` guards cannot swallow it.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from gpact.config import RunConfig
from gpact.errors import ConfigError
from gpact.search.records import State

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, what shells expect
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Abandoned(BaseException):
    """A second signal arrived during a generation: give it up."""


def parse_duration(text: str | float | None) -> float:
    """Seconds from '90', '90s', '30m', '2h', '1h30m' or '1.5h'; 0 or '' means no limit."""
    if text is None or text == "":
        return 0.0
    if isinstance(text, int | float):
        return float(text)
    s = str(text).strip().lower().replace(" ", "")
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd]?)", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise ConfigError(f"cannot read time limit {text!r}: use seconds or e.g. 90s, 30m, 2h, 1h30m")
    return sum(float(n) * _UNITS[u] for n, u in parts)


class Stopper:
    """Holds the stop criteria and, while installed, the SIGINT/SIGTERM handlers of a run."""

    def __init__(self, cfg: RunConfig, notify: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.cfg, self.clock = cfg, clock
        self.notify = notify or _stderr
        self.started = clock()
        self.signum: int | None = None
        self._critical = False
        self._reporting = False
        self._previous: dict[int, object] = {}

    # -- signals -------------------------------------------------------------------------------------------

    def install(self) -> None:
        """Take over SIGINT and SIGTERM (main thread only: elsewhere Python allows no handlers)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for s in SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)

    def uninstall(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        what = "the report" if self._reporting else "this generation"
        if self.signum is None:
            self.signum = signum
            self.notify(f"\ngpact: {name}: the search is done, finishing its report (send it again to stop now)\n"
                        if self._reporting else f"\ngpact: {name}: finishing this generation, then writing the "
                        f"checkpoint (send it again to abandon the generation)\n")
        elif not self._critical:
            self.notify(f"\ngpact: {name} again: abandoning {what}\n")
            raise Abandoned(signum)

    def reporting(self) -> None:
        """The search is over and the final report (holdout scores, front, plots) is under way."""
        self._reporting = True

    @contextmanager
    def critical(self) -> Iterator[None]:
        """A block a second signal must not cut (writing logs and the checkpoint); the run stops after it."""
        self._critical = True
        try:
            yield
        finally:
            self._critical = False

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 128 + (self.signum or 0)) if self.signum else 0

    # -- criteria ------------------------------------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        """Wall time of this invocation (a resumed run's time limit counts from its own start)."""
        return self.clock() - self.started

    def reason(self, state: State) -> str:
        """Why the run should stop before its next generation, or '' to go on.

        The time and evaluation limits never stop a run before generation 0 is done: a run with no
        evaluated population has nothing to show or resume from.
        """
        if self.signum is not None:
            return signal.Signals(self.signum).name
        if state.generation > self.cfg.generations:
            return "generations"
        if state.generation == 0:
            return ""
        if self.cfg.time_limit and self.elapsed >= self.cfg.time_limit:
            return "time limit"
        if self.cfg.max_evals and state.evaluations >= self.cfg.max_evals:
            return "max evals"
        if self.cfg.max_networks and state.networks >= self.cfg.max_networks:
            return "max networks"
        return ""


def _stderr(text: str) -> None:
    os.write(2, text.encode())  # safe inside a signal handler, unlike print
