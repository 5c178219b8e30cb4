"""The search: DEAP NSGA-II over expression trees, minimising (OOD score, FLOPs).

The loop is written out plainly (as in DEAP's examples) so checkpoints, logging and other variation
operators can hook in. Each distinct function (numeric fingerprint) is trained once; every later
tree that computes it reuses the record. DEAP draws from the global `random` module, so the run seeds
it once at the start: the same config and seed give the same run.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sympy as sp
from deap import base, creator, gp, tools

from gpact.config import RunConfig
from gpact.errors import FormulaError
from gpact.expr.grammar import Grammar
from gpact.expr.symbolic import X
from gpact.expr.trees import Analysis, analyse, make_pset, parse_tree, tree_to_sympy
from gpact.search.llm import LLMOperator, Parent
from gpact.train.evaluate import evaluate_population
from gpact.train.fitness import WORST, Fitness
from gpact.train.tasks import Task

if TYPE_CHECKING:
    from gpact.backends.base import Backend

if not hasattr(creator, "GpactFitness"):  # DEAP creator classes: module level, created once
    creator.create("GpactFitness", base.Fitness, weights=(-1.0, -1.0))
    creator.create("GpactIndividual", gp.PrimitiveTree, fitness=creator.GpactFitness)

# Known activations offered to the first generation when the grammar can express them.
SEED_FORMULAS = (
    "relu(x)", "gelu(x)", "silu(x)", "tanh(x)", "x*sigmoid(x)", "softplus(x)", "sigmoid(x)",
    "max(x, 0)", "x", "sin(x)", "x*tanh(x)", "gelu(x) + 0.1*sin(x)",
)  # fmt: skip


@dataclass
class Record:
    """One evaluated function (one fingerprint): what `candidates.jsonl` and `pareto.csv` hold."""

    key: str
    formula: str
    tree: str  # the DEAP tree as text; `parse_tree` reads it back
    flops: float
    ood_score: float
    id_loss: float
    generation: int
    per_task: dict[str, float] = field(default_factory=dict)
    diverged: int = 0
    reason: str = ""
    origin: str = "gp"  # "llm" when an LLM crossover or mutation wrote the tree first trained for this function

    @property
    def ok(self) -> bool:
        return self.ood_score < WORST


@dataclass
class State:
    """Everything a resumed run needs; plain data only."""

    generation: int = 0
    population: list[str] = field(default_factory=list)  # trees as text
    records: dict[str, Record] = field(default_factory=dict)  # by fingerprint
    evaluations: int = 0  # trainings of new functions (each over tasks x seeds)
    cache_hits: int = 0
    elapsed: float = 0.0


@dataclass
class GenerationStats:
    generation: int
    evaluated: int
    cache_hits: int
    rejected: int
    best: float
    front_size: int
    elapsed: float
    llm: dict = field(default_factory=dict)  # LLMOperator.stats() for this generation, when the LLM is on


class Search:
    """A run's search engine: the grammar, tasks and operators around a `State`."""

    def __init__(self, cfg: RunConfig, grammar: Grammar, tasks: list[Task], llm: LLMOperator | None = None,
                 backend: Backend | None = None):
        self.cfg, self.grammar, self.tasks, self.llm = cfg, grammar, tasks, llm
        self.backend = backend  # None: evaluate_population in this process
        self.pset = make_pset(grammar)
        self.seeds = list(range(cfg.train_seeds))
        self._analysis: dict[str, Analysis] = {}
        lim = grammar.limits
        self.toolbox = base.Toolbox()
        self.toolbox.register("expr", gp.genHalfAndHalf, pset=self.pset, min_=lim.init_min_height,
                              max_=lim.init_max_height)
        self.mutations: list[Callable] = [
            functools.partial(gp.mutUniform, expr=functools.partial(gp.genFull, min_=0, max_=2), pset=self.pset),
            functools.partial(gp.mutNodeReplacement, pset=self.pset),
            functools.partial(gp.mutInsert, pset=self.pset),
            gp.mutShrink,
        ]
        if grammar.ephemeral is not None:
            self.mutations.append(functools.partial(gp.mutEphemeral, mode="one"))

    # -- population ----------------------------------------------------------------------------------------

    def individual(self, tree: gp.PrimitiveTree | str) -> creator.GpactIndividual:
        if isinstance(tree, str):
            tree = parse_tree(tree, self.grammar, self.pset)
        return creator.GpactIndividual(tree)

    def initial_population(self) -> list:
        """Known activations the grammar can express, then ramped half-and-half trees, all distinct."""
        pop, seen = [], set()
        for text in SEED_FORMULAS:
            if len(pop) >= self.cfg.mu // 2:
                break
            try:
                ind = self.individual(text)
            except FormulaError:
                continue
            if self.within_limits(ind) and str(ind) not in seen:
                pop.append(ind)
                seen.add(str(ind))
        attempts = 0
        while len(pop) < self.cfg.mu:
            ind = self.individual(gp.PrimitiveTree(self.toolbox.expr()))
            attempts += 1
            fresh = str(ind) not in seen and self.within_limits(ind) and not self._reject_reason(self.analysis(ind))
            if fresh or attempts > 50 * self.cfg.mu:
                pop.append(ind)
                seen.add(str(ind))
        return pop

    def within_limits(self, tree: gp.PrimitiveTree) -> bool:
        lim = self.grammar.limits
        return tree.height <= lim.max_height and len(tree) <= lim.max_size

    def vary(self, parents: list, seen: set[str], front: list[Parent] = ()) -> list:
        """One child per parent, each made by subtree crossover (with a random other parent, probability
        cx_prob) or else by one random mutation. Over-limit children revert to the parent; a child that
        repeats a tree already in `seen` is varied again (a few tries), so generations keep bringing news.
        With the LLM on, some crossovers and mutations ask it instead (`front` is its context); all new
        children it writes join the offspring, and when it gives none the usual operator runs.
        """
        offspring = []
        for parent in parents:
            kids = [parent]
            for _ in range(4):
                kids = self._vary_one(parent, parents, list(front))
                fresh = [k for k in kids if str(k) not in seen]
                if fresh:
                    kids = fresh
                    break
            for child in kids:
                seen.add(str(child))
                del child.fitness.values
                offspring.append(child)
        return offspring

    def _vary_one(self, parent, parents: list, front: list[Parent]) -> list:
        if random.random() < self.cx_share:
            other = random.choice(parents)
            if self.llm is not None and self.llm.wants_crossover():
                kids = self.llm.crossover(self._llm_parent(parent), self._llm_parent(other), front)
                if kids:
                    return [self._llm_child(k) for k in kids]
            child, _ = gp.cxOnePoint(self.toolbox.clone(parent), self.toolbox.clone(other))
        else:
            if self.llm is not None and self.llm.wants_mutation():
                kids = self.llm.mutate(self._llm_parent(parent), front)
                if kids:
                    return [self._llm_child(k) for k in kids]
            (child,) = random.choice(self.mutations)(self.toolbox.clone(parent))
        child = self._keep(child, self.toolbox.clone(parent))
        child.origin = "gp"  # a clone of an LLM-made parent would carry its mark
        return [child]

    def _llm_parent(self, ind) -> Parent:
        score = ind.fitness.values[0] if ind.fitness.valid else WORST
        return Parent.of(ind, self.analysis(ind), score)

    def _llm_child(self, tree: gp.PrimitiveTree):
        child = self.individual(tree)
        child.origin = "llm"  # DEAP's clone (deepcopy) keeps it; the record of a new function takes it
        return child

    @property
    def cx_share(self) -> float:
        total = self.cfg.cx_prob + self.cfg.mut_prob
        return self.cfg.cx_prob / total if total > 0 else 0.5

    def _keep(self, child, parent):
        return child if self.within_limits(child) else parent

    # -- evaluation ----------------------------------------------------------------------------------------

    def analysis(self, tree: gp.PrimitiveTree) -> Analysis:
        text = str(tree)
        if text not in self._analysis:
            self._analysis[text] = analyse(tree_to_sympy(tree, self.grammar), self.grammar)
        return self._analysis[text]

    def evaluate(self, individuals: list, state: State, progress=None) -> tuple[int, int, int]:
        """Give every individual its (OOD score, FLOPs); train only functions not seen before.

        Returns (newly evaluated, cache hits, rejected before training).
        """
        pending: dict[str, tuple[Analysis, str]] = {}
        hits = rejected = 0
        for ind in individuals:
            an = self.analysis(ind)
            reason = self._reject_reason(an)
            if reason:
                rejected += 1
            elif an.key in state.records:
                hits += 1
                rec = state.records[an.key]
                if an.flops < rec.flops:  # a cheaper way to write the same function
                    rec.formula, rec.tree, rec.flops = an.formula, str(ind), an.flops
            elif an.key not in pending:
                pending[an.key] = (an, str(ind), getattr(ind, "origin", "gp"))
            else:
                hits += 1
        if pending:
            evaluate = self.backend.evaluate if self.backend is not None else evaluate_population
            fits = evaluate([an.expr for an, _, _ in pending.values()], self.grammar, self.tasks, self.seeds,
                            self.cfg.train, evaluator=self.cfg.evaluator, device=self.cfg.device, progress=progress)
            for (key, (an, text, origin)), fit in zip(pending.items(), fits, strict=True):
                state.records[key] = _record(key, an, text, fit, state.generation, origin)
        for ind in individuals:
            an = self.analysis(ind)
            rec = state.records.get(an.key)
            score = rec.ood_score if rec is not None and not self._reject_reason(an) else WORST
            ind.fitness.values = (score, an.flops)
        state.evaluations += len(pending)
        state.cache_hits += hits
        return len(pending), hits, rejected

    def _reject_reason(self, an: Analysis) -> str:
        if an.flops > self.grammar.limits.max_flops:
            return "over FLOP budget"
        if X not in an.expr.free_symbols:
            return "constant"
        return ""

    # -- the loop ------------------------------------------------------------------------------------------

    def start(self, state: State) -> list:
        pop = self.initial_population()
        state.population = [str(p) for p in pop]
        return pop

    def step(self, pop: list, state: State, progress=None) -> tuple[list, GenerationStats]:
        """Evaluate what needs it, select the next population, and advance `state` by one generation."""
        t0 = time.perf_counter()
        if self.llm is not None:
            self.llm.new_generation(state.generation)
        if state.generation == 0:
            new, hits, rejected = self.evaluate(pop, state, progress)
            pop = tools.selNSGA2(pop, self.cfg.mu)
        else:
            parents = tools.selTournamentDCD(pop, len(pop))
            front = [Parent(r.formula, r.ood_score, r.flops, r.tree, r.key)
                     for r in pareto_front(state.records.values())] if self.llm is not None else []
            offspring = self.vary(parents, {str(p) for p in pop}, front)
            new, hits, rejected = self.evaluate(offspring, state, progress)
            pop = tools.selNSGA2(pop + offspring, self.cfg.mu)
        state.population = [str(p) for p in pop]
        state.elapsed += time.perf_counter() - t0
        front = pareto_front(state.records.values())
        stats = GenerationStats(state.generation, new, hits, rejected,
                                min((r.ood_score for r in front), default=WORST), len(front), state.elapsed,
                                self.llm.stats() if self.llm is not None else {})
        state.generation += 1
        return pop, stats

    def restore(self, state: State) -> list:
        """Rebuild the population (with fitness) from a state: no training, all records are cached.

        Not an exact resume (crowding distances are recomputed among the survivors only): runs resume with
        `gpact.run.checkpoint.restore_population`.
        """
        pop = [self.individual(t) for t in state.population]
        for ind in pop:
            an = self.analysis(ind)
            rec = state.records.get(an.key)
            ind.fitness.values = (rec.ood_score if rec and not self._reject_reason(an) else WORST, an.flops)
        return tools.selNSGA2(pop, self.cfg.mu)


def _record(key: str, an: Analysis, tree: str, fit: Fitness, generation: int, origin: str = "gp") -> Record:
    return Record(key=key, formula=an.formula, tree=tree, flops=an.flops, ood_score=fit.ood_score,
                  id_loss=fit.id_loss, generation=generation, per_task=dict(fit.per_task),
                  diverged=fit.diverged, reason=fit.reason, origin=origin)


def pareto_front(records) -> list[Record]:
    """Non-dominated records in (FLOPs, OOD score), best OOD score first; failures excluded."""
    ranked = sorted((r for r in records if r.ok), key=lambda r: (r.flops, r.ood_score, r.formula))
    front, best = [], float("inf")
    for r in ranked:
        if r.ood_score < best:
            front.append(r)
            best = r.ood_score
    return sorted(front, key=lambda r: (r.ood_score, r.flops, r.formula))


def score_formulas(texts: list[str], grammar: Grammar, tasks: list[Task], cfg: RunConfig,
                   backend: Backend | None = None) -> list[Record]:
    """Records for fixed formulas (references such as gelu and relu) on the run's tasks and seeds."""
    exprs: list[sp.Expr] = []
    analyses = []
    pset = make_pset(grammar)
    for t in texts:
        an = analyse(tree_to_sympy(parse_tree(t, grammar, pset), grammar), grammar)
        analyses.append(an)
        exprs.append(an.expr)
    evaluate = backend.evaluate if backend is not None else evaluate_population
    fits = evaluate(exprs, grammar, tasks, list(range(cfg.train_seeds)), cfg.train, evaluator=cfg.evaluator,
                    device=cfg.device)
    return [_record(an.key, an, t, f, -1) for t, an, f in zip(texts, analyses, fits, strict=True)]
