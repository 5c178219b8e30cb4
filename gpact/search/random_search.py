"""The random strategy: every generation trains `population` new functions drawn uniformly from the run's templates.

The baseline every architecture search reports (and the issue's yardstick for the gradient strategy): a
random template first, then a uniformly random alternative in every slot and random free constants (the
GP strategy's own draw, gpact.search.operators.random_tree), with no known activations offered first.
A draw that computes a function already trained or already drawn, or that the validity rule refuses, is
drawn again. Training, racing, records and the front are the GP strategy's (`Search.evaluate`); the draws
of a generation depend only on (run seed, generation) and the records, so a resumed run draws the same.
`--max-evals N` stops it after N functions, the last batch trimmed to fit. A grammar without run templates
draws its GP strategy's random trees (ramped half-and-half).
"""

from __future__ import annotations

import random
import time
from typing import Any

from deap import gp

from gpact.search.gp import Search
from gpact.search.operators import random_tree
from gpact.search.records import GenerationStats, State, pareto_front
from gpact.train.fitness import WORST

DRAW_TRIES = 50  # draws per wanted function before a batch is left short (a space nearly used up)


class RandomSearch(Search):
    """`gpact run --strategy random`: see the module doc."""

    def _batch_size(self, state: State) -> int:
        left = self.cfg.max_evals - state.evaluations if self.cfg.max_evals else self.cfg.mu
        return max(1, min(self.cfg.mu, left))

    def draw(self, state: State) -> list:
        """The generation's batch: distinct valid functions not trained yet, drawn with a (seed, generation) RNG."""
        rng = random.Random(f"{self.cfg.seed}/random/{state.generation}")
        templates = self.accept.templates
        want = self._batch_size(state)
        batch, keys = [], set()
        for _ in range(DRAW_TRIES * want):
            if len(batch) >= want:
                break
            if templates:
                tree = random_tree(rng.choice(templates), self.grammar, self.pset, rng)
            else:  # DEAP's generator draws from the global random module: seed it from the same RNG
                random.seed(rng.random())
                tree = gp.PrimitiveTree(self.toolbox.expr())
            ind = self.individual(tree)
            if not self.accept.ok(ind):
                continue
            an = self.analysis(ind)
            if an.key in state.records or an.key in keys or not self.accept.ok(ind, an):
                continue
            ind.origin = "random"
            batch.append(ind)
            keys.add(an.key)
        return batch

    # -- the strategy interface ----------------------------------------------------------------------------

    def start(self, state: State) -> list:
        state.population = []
        return []

    def step(self, pop: list, state: State, progress=None) -> tuple[list, GenerationStats]:
        t0 = time.perf_counter()
        batch = self.draw(state)
        new, hits, rejected = self.evaluate(batch, state, progress) if batch else (0, 0, 0)
        state.population = [str(p) for p in batch]
        state.elapsed += time.perf_counter() - t0
        front = pareto_front(state.records.values())
        reached = [r.stage for r in state.records.values() if r.generation == state.generation]
        stats = GenerationStats(state.generation, new, hits, rejected,
                                min((r.ood_score for r in front), default=WORST), len(front), state.elapsed,
                                {}, state.networks,
                                [sum(s >= k for s in reached) for k in range(self.race.plan.final + 1)])
        state.generation += 1
        return batch, stats

    def restore(self, members: list[dict[str, Any]]) -> list:
        return super().restore(members)
