"""The surrogate strategy (AQuaSurF): train the unevaluated functions a model predicts to be best.

The space is every distinct function of the grammar's run templates (what `gpact enumerate` lists). Each
function gets the features of gpact.train.features its model reads (outputs on fixed inputs; the Fisher
spectrum of the untrained MLP on the first search task only for a model that uses it, which the default
k-NN does not), cached per fingerprint in the run folder. Generation 0 trains the
known activations the space holds (AQuaSurF's start), topped up with random functions of the space to a
full batch; every later generation fits the surrogate (gpact.search.surrogate_model) on the trained
functions' log scores and trains the `population` best-predicted untrained ones, so the batched evaluator
stays full. Training, racing, records and the front are the GP strategy's (`Search.evaluate`); the next
batch depends only on the records and the seed, so a resumed run makes the same choices.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from deap import gp

from gpact.config import RunConfig
from gpact.errors import ConfigError, FormulaError
from gpact.expr.fingerprint import fingerprint, is_constant, key_of, probe_values
from gpact.expr.flops import count_flops
from gpact.expr.grammar import Grammar
from gpact.expr.templates import count_distinct
from gpact.expr.trees import formula_to_sympy
from gpact.search.accept import Acceptance
from gpact.search.gp import SEED_FORMULAS, Search
from gpact.search.operators import Operator
from gpact.search.records import GenerationStats, State
from gpact.search.surrogate_model import Features, make_surrogate, target, uses_fisher
from gpact.train.features import FeatureCache, fisher_features, output_features
from gpact.train.fitness import WORST
from gpact.train.objective import Objective
from gpact.train.tasks import Task

if TYPE_CHECKING:
    from gpact.backends.base import Backend

# Known activations offered first, where the space holds a function equal to them (written its own way).
KNOWN = SEED_FORMULAS + ("swish(x)", "elu(x)", "selu(x)", "softsign(x)", "erf(x)", "atan(x)", "asinh(x)",
                         "abs(x)", "log_sigmoid(x)", "hard_sigmoid(x)")
SURROGATE_MODEL = "knn"  # measured on the replay table (gpact bench --surrogate); umap needs umap-learn


class Space:
    """The distinct functions of a grammar's run templates, with their fingerprints and features."""

    def __init__(self, grammar: Grammar, templates, task: Task, cfg: RunConfig, cache_dir: Path | None,
                 fisher: bool = True):
        if not templates:
            raise ConfigError(f"the surrogate strategy needs a grammar with run templates (such as aquasurf); "
                              f"'{grammar.name}' has none")
        formulas = [f for t in templates for f in count_distinct(t, grammar, formulas=True).formulas]
        exprs = [formula_to_sympy(f, grammar) for f in formulas]
        values = [probe_values(e, grammar) for e in exprs]
        # what the run's validity rule would refuse before training: constant in x, or over the FLOP budget
        # (counted unsimplified: simplifying never costs more, so nothing acceptable is dropped but a rare
        # function whose simplified form alone fits)
        keep = [i for i, (e, v) in enumerate(zip(exprs, values, strict=True))
                if not is_constant(v) and count_flops(e, grammar.costs) <= grammar.limits.max_flops]
        self.formulas, self.exprs = [formulas[i] for i in keep], [exprs[i] for i in keep]
        self.keys = [key_of(values[i]) for i in keep]
        self.index = {k: i for i, k in reversed(list(enumerate(self.keys)))}
        folder = cache_dir if cache_dir is not None else None

        def get(kind, compute):
            if folder is None:
                return compute(list(range(len(self.keys))))
            return FeatureCache(folder, kind).get(self.keys, compute)

        outputs = get("outputs", lambda idx: output_features([self.exprs[i] for i in idx], grammar))
        if fisher:
            spectra = get("fisher", lambda idx: fisher_features([self.exprs[i] for i in idx], grammar,
                                                                task.x_train, task.y_train, cfg.train))
        else:  # the model does not read it (the default k-NN looks at outputs alone)
            spectra = np.zeros((len(self.keys), 0))
        self.features = Features(outputs, spectra)


class SurrogateSearch(Search):
    """`gpact run --strategy surrogate`: see the module doc. Reuses the GP strategy's evaluation."""

    def __init__(self, cfg: RunConfig, grammar: Grammar, tasks: list[Task], backend: Backend,
                 operators: Sequence[Operator] | None = None, accept: Acceptance | None = None,
                 pset: gp.PrimitiveSet | None = None, objective: Objective | None = None):
        super().__init__(cfg, grammar, tasks, backend, operators, accept, pset, objective)
        self.model = make_surrogate(SURROGATE_MODEL, cfg.seed)
        self.run_dir: Path | None = None  # set by the runner: where features are cached
        self._space: Space | None = None
        self._tree_index: dict[str, int | None] = {}
        self._refused: set[int] = set()  # refused by the validity rule after all (a safety net; see Space)

    @property
    def space(self) -> Space:
        if self._space is None:
            self._space = Space(self.grammar, self.accept.templates, self.tasks[0], self.cfg, self.run_dir,
                                fisher=uses_fisher(self.model))
        return self._space

    def _batch_size(self, state: State) -> int:
        left = self.cfg.max_evals - state.evaluations if self.cfg.max_evals else self.cfg.mu
        return max(1, min(self.cfg.mu, left))

    def known(self) -> list[int]:
        """Space indices of the known activations it holds, in KNOWN's order."""
        out = []
        for text in KNOWN:
            try:
                key = fingerprint(formula_to_sympy(text, self.grammar), self.grammar)
            except FormulaError:
                continue
            i = self.space.index.get(key)
            if i is not None and i not in out:
                out.append(i)
        return out

    def trained(self, state: State) -> dict[int, float]:
        """Space index -> score of every trained function. A record is found by its key, or by the fingerprint
        of its tree as written (its key is the simplified form's, which may round differently)."""
        out = {}
        for key, rec in state.records.items():
            i = self.space.index.get(key)
            if i is None:
                if rec.tree not in self._tree_index:
                    expr = formula_to_sympy(rec.tree, self.grammar)
                    self._tree_index[rec.tree] = self.space.index.get(fingerprint(expr, self.grammar))
                i = self._tree_index[rec.tree]
            if i is not None:
                out[i] = rec.ood_score
        return out

    def choose(self, state: State) -> tuple[list[int], np.ndarray]:
        """The next batch (space indices) and the surrogate's predictions for it (empty in generation 0)."""
        n = self._batch_size(state)
        done = self.trained(state)
        todo = np.array([i for i, k in enumerate(self.space.keys)
                         if i not in done and i not in self._refused and self.space.index[k] == i], dtype=np.int64)
        if state.generation == 0 or not done:
            rng = random.Random(f"{self.cfg.seed}/{state.generation}")
            first = [i for i in self.known() if i not in done][:n]
            rest = [int(i) for i in todo if int(i) not in first]
            return first + rng.sample(rest, min(n - len(first), len(rest))), np.zeros(0)
        known = np.array(sorted(done), dtype=np.int64)
        pred = self.model.predict(self.space.features, known, target([done[i] for i in known]), todo)
        order = np.lexsort((todo, pred))[:n]  # best predicted first; ties by index, so choices are reproducible
        return [int(todo[j]) for j in order], pred[order]

    # -- the strategy interface ----------------------------------------------------------------------------

    def start(self, state: State) -> list:
        state.population = []
        return []

    def step(self, pop: list, state: State, progress=None) -> tuple[list, GenerationStats]:
        import time

        t0 = time.perf_counter()
        chosen, _ = self.choose(state)
        batch = [self.individual(self.space.formulas[i]) for i in chosen]
        new, hits, rejected = self.evaluate(batch, state, progress) if batch else (0, 0, 0)
        self._refused.update(i for i, ind in zip(chosen, batch, strict=True)
                             if not self.accept.ok(ind, self.analysis(ind)))
        state.population = [str(p) for p in batch]
        state.elapsed += time.perf_counter() - t0
        stats = self.stats(state, new, hits, rejected)
        state.generation += 1
        return batch, stats

    def stats(self, state: State, new: int, hits: int, rejected: int) -> GenerationStats:
        from gpact.search.records import pareto_front

        front = pareto_front(state.records.values())
        reached = [r.stage for r in state.records.values() if r.generation == state.generation]
        return GenerationStats(state.generation, new, hits, rejected,
                               min((r.ood_score for r in front), default=WORST), len(front), state.elapsed,
                               {}, state.networks,
                               [sum(s >= k for s in reached) for k in range(self.race.plan.final + 1)])

    def restore(self, members: list[dict[str, Any]]) -> list:
        return super().restore(members)
