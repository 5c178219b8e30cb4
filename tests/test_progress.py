"""Progress: plain lines off a terminal, rich bars on one, both with rate, hit rate, best, front and time left."""

import io
import re

from rich.console import Console

from gpact.config import RunConfig
from gpact.run.progress import Display, Meter, fmt_duration, hit_rate, time_left
from gpact.search.records import GenerationStats, State

CFG = RunConfig(generations=4)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _generation(display, clock, state, gen, evaluated, hits, seconds):
    display.generation_started(gen)
    for i in range(evaluated):
        display.evaluated(i + 1, evaluated)
    clock.t += seconds
    state.generation, state.evaluations, state.cache_hits = gen + 1, state.evaluations + evaluated, \
        state.cache_hits + hits
    stats = GenerationStats(gen, evaluated, hits, 0, 0.123456, 3, clock.t)
    display.generation_done(stats, state)


def test_plain_lines_keep_the_generation_format_and_add_rates():
    lines, clock, state = [], Clock(), State()
    display = Display(CFG, echo=lines.append, live=False, clock=clock)
    _generation(display, clock, state, 0, evaluated=8, hits=0, seconds=4.0)
    _generation(display, clock, state, 1, evaluated=6, hits=2, seconds=2.0)
    display.close()
    assert len(lines) == 2
    assert lines[0].startswith("gen   0/4  evals    8 (total 8)  cache hits   0  rejected   0  best 0.1235  front  3")
    assert "2.00 evals/s  hit rate 0%  left 16s" in lines[0]  # generations 1-4 to go, at 4 s each
    assert "2.33 evals/s  hit rate 12%  left 9s" in lines[1]  # 14 evals in 6 s; 2 of 16 asked were hits


def test_rich_display_draws_bars_and_keeps_the_lines():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=150, color_system=None)
    clock, state = Clock(), State()
    display = Display(CFG, echo=lambda s: None, live=True, console=console, clock=clock)
    display.echo("gpact: run header [not markup]")
    _generation(display, clock, state, 0, evaluated=8, hits=0, seconds=4.0)
    display.close()
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.getvalue())
    assert "gpact: run header [not markup]" in text
    assert "gen   0/4  evals    8" in text  # the plain line, printed above the bars
    assert "generations" in text and "1/5" in text and "2.00 evals/s" in text and "front 3" in text


def test_time_left_takes_the_first_limit_to_end_the_run():
    state = State(generation=2, evaluations=20, cache_hits=5)
    meter = Meter(evaluations=20, seconds=10.0, generations=2)
    assert time_left(Meter(), state, CFG, 0.0) is None
    assert time_left(meter, state, CFG, 10.0) == 15.0  # 3 generations left at 5 s
    assert time_left(meter, state, RunConfig(generations=4, time_limit=12.0), 10.0) == 2.0
    assert time_left(meter, state, RunConfig(generations=4, max_evals=24), 10.0) == 2.0  # 4 evals at 2/s
    assert hit_rate(state) == 0.2 and hit_rate(State()) == 0.0
    assert [fmt_duration(s) for s in (None, 4.4, 190, 7500)] == ["?", "4s", "3m10s", "2h05m"]


def test_display_is_plain_when_stdout_is_not_a_terminal():
    display = Display(CFG, echo=lambda s: None)  # pytest captures stdout: not a terminal
    assert not display.live
    display.close()
