"""What a new run's initial population will cost, checked before anything starts (issue 14).

Building the initial population is silent: the search draws random trees and analyses each with sympy until
`population` distinct valid functions are found. Measured on a loaded 2-core CPU it takes ~6 trees and
~0.1 s per function kept, ~20 KB per tree analysed; `--population 100000` sat for hours before its first
line. So a population over MAX_POPULATION, or whose estimate exceeds the machine's free memory, is refused
at once, and a large one is announced with its estimate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gpact.errors import ConfigError

SECONDS_PER_FUNCTION = 0.1  # initial population: trees drawn, simplified and fingerprinted per function kept
BYTES_PER_FUNCTION = 130_000  # ~6 analysed trees of ~20 KB each, kept for the run
MAX_POPULATION = 10_000  # about 20 min of initial population: beyond, more generations serve better
ANNOUNCE_SECONDS = 30.0  # an initial population estimated to take longer gets a line before it starts


@dataclass(frozen=True)
class StartEstimate:
    seconds: float  # to build the initial population
    bytes: int  # memory its analyses keep

    def describe(self) -> str:
        return f"about {_duration(self.seconds)} and {self.bytes / 1e9:.1f} GB"


def estimate_start(population: int) -> StartEstimate:
    """The cost of building an initial population of `population` functions."""
    return StartEstimate(population * SECONDS_PER_FUNCTION, population * BYTES_PER_FUNCTION)


def check_population(population: int, available: int | None = None) -> StartEstimate:
    """The estimate for `population`, or ConfigError when it is over MAX_POPULATION or the free memory."""
    est = estimate_start(population)
    if population > MAX_POPULATION:
        raise ConfigError(f"population {population} is over {MAX_POPULATION}: building it alone would take "
                          f"{est.describe()} before the first generation; use fewer functions and more generations")
    available = machine_memory() if available is None else available
    if available is not None and est.bytes > available:
        raise ConfigError(f"population {population} needs {est.describe()}; this machine has "
                          f"{available / 1e9:.1f} GB free: use fewer functions")
    return est


def machine_memory() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable), else the physical total, else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
