"""Racing (successive halving): train a new function on a few networks first, and more only if it is good.

A broad search split costs breadth: every function trained on every (task, seed) network leaves few
functions tried. So the run's networks are put in one seeded order (all tasks in a shuffled order on the
first seed, then on the next seed, ...) and stages take growing prefixes of it: `start` networks, then
`eta` times more, ..., then all of them. A generation's new functions all run stage 0; the best 1/eta of
them (by the run's objective on the networks they have, ties by order) go on to the next stage, and so
on. A function keeps the stage it reached (`Record.stage`) and its score on its networks. Scores of
different stages are ratios to GELU on the same networks, so they compare, but a function enters the
Pareto front only once it has every network: the search promotes front members that lack some
(`Search.complete_front`). Deterministic for a run's seed; nothing here draws from the global generators.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import sympy as sp

from gpact.config import RunConfig
from gpact.expr.grammar import Grammar
from gpact.train.fitness import Fitness, merge
from gpact.train.tasks import Task

if TYPE_CHECKING:
    from gpact.backends.base import Backend

Score = Callable[[Fitness], float]


@dataclass(frozen=True)
class Plan:
    """The order networks are trained in, and how many each stage has trained (the last: all)."""

    order: tuple[tuple[str, int], ...]  # (task name, seed)
    sizes: tuple[int, ...]
    eta: int

    @property
    def final(self) -> int:
        return len(self.sizes) - 1

    def describe(self) -> str:
        if self.final == 0:
            return f"off (every function trains all {self.sizes[0]} networks)"
        return (f"{' -> '.join(str(s) for s in self.sizes)} networks per function, the best 1/{self.eta} "
                f"promoted at each stage")


def make_plan(task_names: Sequence[str], seeds: Sequence[int], start: int, eta: int, seed: int) -> Plan:
    """Stages of `start`, start*eta, ... networks, then all; one stage when eta <= 1 or start covers all."""
    n, sizes = len(task_names) * len(seeds), []
    racing = eta > 1 and 0 < start < n
    rng = np.random.default_rng([zlib.crc32(b"race"), seed])
    tasks = [task_names[i] for i in rng.permutation(len(task_names))] if racing else list(task_names)
    order = tuple((t, s) for s in seeds for t in tasks)
    if racing:
        size = start
        while size < n:
            sizes.append(size)
            size *= eta
    return Plan(order, (*sizes, n), max(eta, 1))


class Race:
    """Trains functions stage by stage through the run's backend (see the module docstring)."""

    def __init__(self, plan: Plan, tasks: list[Task], grammar: Grammar, backend: Backend, cfg: RunConfig):
        self.plan, self.grammar, self.backend, self.cfg = plan, grammar, backend, cfg
        self.tasks = {t.spec.name: t for t in tasks}
        self.networks = 0  # trained so far by this race (the run's training budget)

    def run(self, exprs: Sequence[sp.Expr], score: Score, progress=None) -> list[tuple[Fitness, int]]:
        """New functions through the stages: (Fitness on the networks trained, stage reached) each."""
        fits: list[Fitness | None] = [None] * len(exprs)
        stages = [-1] * len(exprs)
        alive = list(range(len(exprs)))
        for stage in range(self.plan.final + 1):
            self._advance(exprs, fits, stages, alive, stage)
            if progress:
                progress(stage + 1, self.plan.final + 1)
            if stage < self.plan.final:
                keep = math.ceil(len(alive) / self.plan.eta)
                alive = sorted(alive, key=lambda i: (score(fits[i]), i))[:keep]  # type: ignore[arg-type]
        return [(f, s) for f, s in zip(fits, stages, strict=True)]  # type: ignore[misc]

    def finish(self, exprs: Sequence[sp.Expr], fits: Sequence[Fitness], stages: Sequence[int]) -> list[Fitness]:
        """Functions stopped at earlier stages, trained on the networks they lack (all of them, merged)."""
        out, st = list(fits), list(stages)
        self._advance(exprs, out, st, list(range(len(exprs))), self.plan.final)
        return out  # type: ignore[return-value]

    def _advance(self, exprs, fits: list, stages: list[int], ids: list[int], stage: int) -> None:
        """Train functions `ids` from the stage each has reached up to `stage`, merging into `fits`."""
        by_start: dict[int, list[int]] = {}
        for i in ids:
            if stages[i] < stage:
                by_start.setdefault(stages[i], []).append(i)
        for start, group in sorted(by_start.items()):
            lo = self.plan.sizes[start] if start >= 0 else 0
            networks = self.plan.order[lo: self.plan.sizes[stage]]
            for task_names, seeds in _blocks(networks):
                tasks = [self.tasks[n] for n in task_names]
                part = self.backend.evaluate([exprs[i] for i in group], self.grammar, tasks, seeds, self.cfg.train,
                                             evaluator=self.cfg.evaluator, device=self.cfg.device,
                                             protocol=self.cfg.protocol)
                self.networks += len(group) * len(tasks) * len(seeds)
                for i, f in zip(group, part, strict=True):
                    fits[i] = f if fits[i] is None else merge([fits[i], f])
            for i in group:
                stages[i] = stage


def _blocks(networks: Sequence[tuple[str, int]]) -> list[tuple[list[str], list[int]]]:
    """Networks as few (tasks x seeds) products as the order allows: seeds that share a task list go
    together, so a full stage is one backend call, as without racing."""
    by_seed: dict[int, list[str]] = {}
    for task, seed in networks:
        by_seed.setdefault(seed, []).append(task)
    blocks: dict[tuple[str, ...], list[int]] = {}
    for seed, tasks in by_seed.items():
        blocks.setdefault(tuple(tasks), []).append(seed)
    return [(list(t), s) for t, s in blocks.items()]
