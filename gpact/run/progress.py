"""What a run shows while it goes: a live rich progress bar on a terminal, plain lines everywhere else.

Both show the same numbers: evaluations per second, cache hit rate, best OOD score, front size and an
estimate of the time left. Plain mode prints one line per generation (the format logs and tests read,
unchanged, with those numbers appended), so a run under nohup or a batch scheduler logs cleanly. On a
terminal the same line is printed above the bars, so the scrollback keeps the history.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from gpact.config import RunConfig
from gpact.search.records import GenerationStats, State


@dataclass
class Meter:
    """Rates and estimates for one invocation of a run (a resumed run measures its own speed)."""

    evaluations: int = 0  # new functions trained in this invocation
    seconds: float = 0.0  # wall time of the generations run in this invocation
    generations: int = 0

    @property
    def rate(self) -> float:
        return self.evaluations / self.seconds if self.seconds > 0 else 0.0


def hit_rate(state: State) -> float:
    """Share of evaluation requests answered by a function trained before (whole run)."""
    asked = state.cache_hits + state.evaluations
    return state.cache_hits / asked if asked else 0.0


def time_left(meter: Meter, state: State, cfg: RunConfig, elapsed: float) -> float | None:
    """Seconds until the first stop criterion is expected to end the run; None before anything is known.

    Remaining generations at this invocation's mean generation time, the rest of the time limit, and the
    rest of the evaluation budget at the current rate: whichever comes first.
    """
    estimates = []
    if meter.generations:
        remaining = max(cfg.generations + 1 - state.generation, 0)
        estimates.append(remaining * meter.seconds / meter.generations)
    if cfg.time_limit:
        estimates.append(max(cfg.time_limit - elapsed, 0.0))
    if cfg.max_evals and meter.rate > 0:
        estimates.append(max(cfg.max_evals - state.evaluations, 0) / meter.rate)
    return min(estimates) if estimates else None


def fmt_duration(seconds: float | None) -> str:
    """'45s', '3m10s', '2h05m', or '?' when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Display:
    """Progress of a run. `live=None` picks rich when stdout is a terminal; `console` is for tests."""

    def __init__(self, cfg: RunConfig, echo: Callable[[str], None] = print, live: bool | None = None,
                 console=None, clock: Callable[[], float] = time.monotonic):
        self.cfg, self._echo, self.clock = cfg, echo, clock
        self.live = sys.stdout.isatty() if live is None else live
        self.meter = Meter()
        self.started = clock()
        self._gen_start = self.started
        self._bars = None
        if self.live:
            self._start_rich(console)

    def _start_rich(self, console) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        # the numbers last: on a narrow terminal they are cut, the bars and counts stay
        self._bars = Progress(TextColumn("{task.description:<11}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                              TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                              console=console or Console(), transient=False)
        self._run_task = self._bars.add_task("generations", total=self.cfg.generations + 1, info="")
        self._gen_task = self._bars.add_task("evaluating", total=None, info="", visible=False)
        self._bars.start()

    def echo(self, text: str) -> None:
        if self._bars is not None:
            self._bars.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self._echo(text)

    # -- hooks the runner calls ----------------------------------------------------------------------------

    def resumed(self, state: State) -> None:
        if self._bars is not None:
            self._bars.update(self._run_task, completed=state.generation)

    def generation_started(self, generation: int) -> None:
        self._gen_start = self.clock()
        if self._bars is not None:
            self._bars.reset(self._gen_task, total=None, visible=True,
                             description=f"gen {generation}/{self.cfg.generations}", info="")

    def evaluated(self, done: int, total: int) -> None:
        """The search's progress callback within a generation: `done` of `total` (racing stages trained, or new
        functions trained when a strategy evaluates them in one go)."""
        if self._bars is not None:
            self._bars.update(self._gen_task, completed=done, total=total)

    def generation_done(self, stats: GenerationStats, state: State, extra: str = "") -> None:
        """Count the generation and print its line (with `extra`, e.g. the LLM's counts)."""
        self.meter.evaluations += stats.evaluated
        self.meter.seconds += self.clock() - self._gen_start
        self.meter.generations += 1
        self.echo(self.line(stats, state) + (f"  {extra}" if extra else ""))
        if self._bars is not None:
            self._bars.update(self._gen_task, visible=False)
            self._bars.update(self._run_task, completed=state.generation, info=self.summary(stats, state))

    def line(self, stats: GenerationStats, state: State) -> str:
        """The plain per-generation line; with `--evolve derivative`, the rejections by reason (integrals that
        sympy could not write in closed form in the time box among them)."""
        why = ""
        if self.cfg.evolve == "derivative" and stats.rejections:
            why = " (" + ", ".join(f"{k} {n}" for k, n in sorted(stats.rejections.items())) + ")"
        return (f"gen {stats.generation:>3}/{self.cfg.generations}  evals {stats.evaluated:>4} "
                f"(total {state.evaluations})  cache hits {stats.cache_hits:>3}  rejected {stats.rejected:>3}{why}  "
                f"best {stats.best:.4g}  front {stats.front_size:>2}  elapsed {stats.elapsed:.1f}s  "
                f"{self.meter.rate:.2f} evals/s  hit rate {100 * hit_rate(state):.0f}%  left {self._left(state)}")

    def summary(self, stats: GenerationStats, state: State) -> str:
        """The short text next to the run's bar."""
        return (f"{self.meter.rate:.2f} evals/s  hits {100 * hit_rate(state):.0f}%  best {stats.best:.4g}  "
                f"front {stats.front_size}  left {self._left(state)}")

    def _left(self, state: State) -> str:
        return fmt_duration(time_left(self.meter, state, self.cfg, self.clock() - self.started))

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
