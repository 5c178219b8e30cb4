"""What every backend is: formulas in, one Fitness each out. The serial backend (this process) and the pieces
the distributed backends share with it (the score of a failed chunk, the chunk size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import sympy as sp

from gpact.config import ProtocolDist, TrainConfig
from gpact.errors import GpactError
from gpact.expr.grammar import Grammar
from gpact.train.batched import chunk_candidates
from gpact.train.evaluate import Progress, evaluate_population
from gpact.train.fitness import WORST, Fitness, run_key
from gpact.train.mlp import DEFAULT_CONFIG
from gpact.train.protocol import widest
from gpact.train.tasks import Task


class BackendError(GpactError):
    """Workers cannot be started or reached, or a worker raised (the serial backend would have raised too)."""


class Backend(Protocol):
    """Formulas in, one Fitness each out, with `evaluate_population`'s signature; `close` frees workers."""

    name: str
    faults: list[str]  # why chunk attempts failed (worker died, timed out), for the run's summary

    def evaluate(self, exprs: Sequence[sp.Expr], grammar: Grammar, tasks: list[Task], seeds: Sequence[int],
                 cfg: TrainConfig = DEFAULT_CONFIG, evaluator: str = "auto", device: str = "auto",
                 progress: Progress | None = None, protocol: ProtocolDist | None = None) -> list[Fitness]: ...

    def check(self, grammar: Grammar) -> None: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


class SerialBackend:
    """This process, one call to the evaluator: the default."""

    name = "serial"

    def __init__(self) -> None:
        self.faults: list[str] = []

    def evaluate(self, exprs: Sequence[sp.Expr], grammar: Grammar, tasks: list[Task], seeds: Sequence[int],
                 cfg: TrainConfig = DEFAULT_CONFIG, evaluator: str = "auto", device: str = "auto",
                 progress: Progress | None = None, protocol: ProtocolDist | None = None) -> list[Fitness]:
        return evaluate_population(exprs, grammar, tasks, seeds, cfg, evaluator=evaluator, device=device,
                                   progress=progress, protocol=protocol)

    def check(self, grammar: Grammar) -> None:
        """Any grammar works in this process."""

    def describe(self) -> str:
        return "serial (this process)"

    def close(self) -> None:
        pass


def worst(reason: str, tasks: list[Task], seeds: Sequence[int]) -> Fitness:
    """The score of a candidate whose chunk failed twice: WORST, with why."""
    return Fitness(WORST, WORST, {t.spec.name: WORST for t in tasks}, len(tasks) * len(seeds), reason,
                   {run_key(t.spec.name, s): WORST for t in tasks for s in seeds})


def chunk_size(n: int, workers: int, tasks: list[Task], n_seeds: int, cfg: TrainConfig, device: str,
               protocol: ProtocolDist | None = None) -> int:
    """Candidates per chunk: an even share per worker, capped by the batched evaluator's memory estimate."""
    even = max(1, math.ceil(n / max(1, workers)))
    return max(1, min(even, int(chunk_candidates(tasks, n_seeds, widest(protocol, cfg), device))))
