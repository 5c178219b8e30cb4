"""The gradient strategy (GrafS one-shot search): each generation trains `restarts` supernets as one batch and
proposes their discretised cells.

A generation: supernets over the run's template train on the search tasks' training boxes
(gpact.train.oneshot; the OOD range is never read there), each restart's cell becomes a tree of the template,
and every new function is trained from scratch on all of the run's networks by the run's backend and scored
by the run's objective like any GP candidate; its record has origin `gradient`. Restart seeds come from
(run seed, generation), so a generation re-run after a crash proposes the same cells. The population is the
cells found so far (best first), which is what the checkpoint keeps. The mixture weights over the search go
into the generation's log line (`GenerationStats.alphas`), from which `alphas.png` is drawn.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deap import gp

from gpact.config import RunConfig
from gpact.errors import ConfigError
from gpact.expr.grammar import Grammar
from gpact.expr.templates import Template, build, run_templates
from gpact.expr.trees import Analysis, analyse, make_pset, parse_tree, tree_to_sympy
from gpact.search.accept import Acceptance
from gpact.search.gp import creator
from gpact.search.operators import Operator
from gpact.search.racing import make_plan
from gpact.search.records import GenerationStats, State, make_record, pareto_front
from gpact.train.batched import resolve_device
from gpact.train.fitness import WORST
from gpact.train.objective import Objective
from gpact.train.oneshot import search_cells
from gpact.train.tasks import Task

if TYPE_CHECKING:
    from gpact.backends.base import Backend

ORIGIN = "gradient"


def restart_seeds(seed: int, generation: int, restarts: int) -> list[int]:
    """The supernet seeds of one generation: a function of (run seed, generation), so a re-run repeats them."""
    return [(seed * 1_000_003 + generation * 9_973 + r) % (2**31) for r in range(restarts)]


class GradientSearch:
    """Supernets over the run's (only) template; the same constructor as the other strategies."""

    def __init__(self, cfg: RunConfig, grammar: Grammar, tasks: list[Task], backend: Backend,
                 operators: Sequence[Operator] | None = None, accept: Acceptance | None = None,
                 pset: gp.PrimitiveSet | None = None, objective: Objective | None = None):
        self.cfg, self.grammar, self.tasks, self.backend = cfg, grammar, tasks, backend
        self.objective = objective
        self.pset = pset or make_pset(grammar)
        self.accept = accept or Acceptance(grammar, run_templates(grammar))
        self.template = self.check(grammar)
        self.final = make_plan([t.spec.name for t in tasks], list(range(cfg.train_seeds)), cfg.race_start,
                               cfg.race_eta, cfg.seed).final  # the stage of a function trained on every network

    @staticmethod
    def check(grammar: Grammar) -> Template:
        """The one template the run is confined to; a grammar without exactly one is refused before any work."""
        templates = run_templates(grammar)
        if len(templates) != 1:
            names = ", ".join(t.name for t in templates) or "none"
            raise ConfigError(f"--strategy gradient needs a grammar whose run is confined to one template (grammar "
                              f"'{grammar.name}' has {len(templates)}: {names}); try --grammar grafs")
        return templates[0]

    def individual(self, tree: gp.PrimitiveTree | str) -> creator.GpactIndividual:
        if isinstance(tree, str):
            tree = parse_tree(tree, self.grammar, self.pset)
        return creator.GpactIndividual(tree)

    def analysis(self, tree) -> Analysis:
        return analyse(tree_to_sympy(tree, self.grammar), self.grammar)

    # -- the strategy interface ----------------------------------------------------------------------------

    def start(self, state: State) -> list:
        state.population = []
        return []

    def step(self, pop: list, state: State, progress=None) -> tuple[list, GenerationStats]:
        t0 = time.perf_counter()
        g = self.cfg.gradient
        found = search_cells(self.template, self.grammar, self.tasks, g, self.cfg.train,
                             restart_seeds(self.cfg.seed, state.generation, g.restarts),
                             resolve_device(self.cfg.device))
        cells = [self.individual(build(self.template, ch, self.grammar, self.pset)) for ch in found.choices]
        new, hits, rejected = self.evaluate(cells, state, progress)
        pop = sorted({str(p): p for p in [*pop, *cells]}.values(), key=lambda p: p.fitness.values)
        state.population = [str(p) for p in pop]
        state.elapsed += time.perf_counter() - t0
        front = pareto_front(state.records.values())
        stats = GenerationStats(state.generation, new, hits, rejected,
                                min((r.ood_score for r in front), default=WORST), len(front), state.elapsed,
                                {}, state.networks, [new] * (self.final + 1),
                                alphas={"cells": [str(c) for c in cells], "best_score": found.best_score,
                                        "seconds": round(found.seconds, 3), "trace": found.trace})
        state.generation += 1
        return pop, stats

    def evaluate(self, cells: list, state: State, progress=None) -> tuple[int, int, int]:
        """Train every new function among `cells` on all of the run's networks; give each its fitness."""
        pending: dict[str, tuple[Analysis, str]] = {}
        hits = rejected = 0
        analyses = [self.analysis(c) for c in cells]
        for cell, an in zip(cells, analyses, strict=True):
            if not self.accept.ok(cell, an):
                rejected += 1
            elif an.key in state.records or an.key in pending:
                hits += 1
            else:
                pending[an.key] = (an, str(cell))
        if pending:
            seeds = list(range(self.cfg.train_seeds))
            fits = self.backend.evaluate([an.expr for an, _ in pending.values()], self.grammar, self.tasks, seeds,
                                         self.cfg.train, evaluator=self.cfg.evaluator, device=self.cfg.device,
                                         progress=progress, protocol=self.cfg.protocol)
            for (key, (an, text)), fit in zip(pending.items(), fits, strict=True):
                state.records[key] = make_record(key, an, text, fit, state.generation, ORIGIN, self.objective,
                                                 self.final)
            state.networks += len(pending) * len(self.tasks) * len(seeds)
        for cell, an in zip(cells, analyses, strict=True):
            rec = state.records.get(an.key)
            cell.fitness.values = (rec.ood_score if rec is not None else WORST, an.flops)
        state.evaluations += len(pending)
        state.cache_hits += hits
        return len(pending), hits, rejected

    def restore(self, members: list[dict[str, Any]]) -> list:
        pop = []
        for m in members:
            ind = self.individual(m["tree"])
            ind.fitness.values = tuple(float(v) for v in m["fitness"])
            pop.append(ind)
        return pop
