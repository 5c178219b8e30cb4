"""The GP strategy: DEAP NSGA-II over expression trees, minimising (OOD score, FLOPs).

The loop is written out plainly (as in DEAP's examples) so checkpoints and logging can hook in. Children
come from the run's variation operators (gpact.search.operators), one validity rule decides what may be a
candidate (gpact.search.accept), and every function is trained through the run's backend. Each distinct
function (numeric fingerprint) is trained once; every later tree that computes it reuses the record. DEAP
draws from the global `random` module, so the run seeds it once at the start: the same config and seed
give the same run.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deap import base, creator, gp, tools

from gpact.config import RunConfig
from gpact.errors import FormulaError
from gpact.expr.fingerprint import mirror_keys, probe_values
from gpact.expr.grammar import Grammar
from gpact.expr.templates import run_templates
from gpact.expr.trees import Analysis, make_pset, parse_tree
from gpact.search.accept import Acceptance
from gpact.search.operators import Context, Operator, make_operators, random_tree
from gpact.search.racing import Race, make_plan
from gpact.search.records import GenerationStats, Record, State, make_record, pareto_front, tree_analysis
from gpact.train.fitness import WORST, Fitness
from gpact.train.objective import Objective
from gpact.train.tasks import Task

if TYPE_CHECKING:
    from gpact.backends.base import Backend

if not hasattr(creator, "GpactFitness"):  # DEAP creator classes: module level, created once
    creator.create("GpactFitness", base.Fitness, weights=(-1.0, -1.0))
    creator.create("GpactIndividual", gp.PrimitiveTree, fitness=creator.GpactFitness)

VARY_TRIES = 6  # variations tried per parent for a child that brings a new function

# Known activations offered to the first generation when the grammar can express them.
SEED_FORMULAS = (
    "relu(x)", "gelu(x)", "silu(x)", "tanh(x)", "x*sigmoid(x)", "softplus(x)", "sigmoid(x)",
    "max(x, 0)", "x", "sin(x)", "x*tanh(x)", "gelu(x) + 0.1*sin(x)",
)  # fmt: skip


class Search:
    """NSGA-II around a `State`: the grammar, tasks, backend, operators and validity rule of a run.

    `operators` default to `make_operators` for the grammar (in-template ones when it confines runs to
    templates), `accept` to the grammar's limits and run templates, `objective` to the plain geometric mean.
    """

    def __init__(self, cfg: RunConfig, grammar: Grammar, tasks: list[Task], backend: Backend,
                 operators: Sequence[Operator] | None = None, accept: Acceptance | None = None,
                 pset: gp.PrimitiveSet | None = None, objective: Objective | None = None):
        self.cfg, self.grammar, self.tasks, self.backend = cfg, grammar, tasks, backend
        self.objective = objective
        self.race = Race(make_plan([t.spec.name for t in tasks], list(range(cfg.train_seeds)), cfg.race_start,
                                   cfg.race_eta, cfg.seed), tasks, grammar, backend, cfg)
        self.pset = pset or make_pset(grammar)
        self.accept = accept or Acceptance(grammar, run_templates(grammar))
        self.operators = list(operators) if operators is not None else make_operators(
            grammar, self.pset, self.accept.templates)
        self.crossovers = [op for op in self.operators if op.parents == 2]
        self.mutations = [op for op in self.operators if op.parents == 1]
        self.seeds = list(range(cfg.train_seeds))
        self._analysis: dict[str, Analysis] = {}
        self._mirrors: dict[str, frozenset[str]] = {}  # key -> its sign mirrors' keys
        self._features: dict[str, tuple] = {}  # --prescreen: tree text -> (outputs, fisher) feature rows
        lim = grammar.limits
        self.toolbox = base.Toolbox()
        self.toolbox.register("expr", gp.genHalfAndHalf, pset=self.pset, min_=lim.init_min_height,
                              max_=lim.init_max_height)

    # -- population ----------------------------------------------------------------------------------------

    def individual(self, tree: gp.PrimitiveTree | str) -> creator.GpactIndividual:
        if isinstance(tree, str):
            tree = parse_tree(tree, self.grammar, self.pset)
        return creator.GpactIndividual(tree)

    def initial_population(self) -> list:
        """Known activations the run accepts, then random trees (ramped half-and-half, or a random choice
        in every slot of a random run template), all distinct, none a sign mirror of another's function."""
        pop, seen = [], set()
        for text in SEED_FORMULAS:
            if len(pop) >= self.cfg.mu // 2:
                break
            try:
                ind = self.individual(text)
            except FormulaError:
                continue
            if self.accept.ok(ind) and str(ind) not in seen:
                pop.append(ind)
                seen.add(str(ind))
        keys = {self.analysis(p).key for p in pop}
        attempts = 0
        while len(pop) < self.cfg.mu:
            ind = self.individual(self._random_tree())
            attempts += 1
            # the tree's structure first, so that no sympy work is spent on a tree that fails it
            fresh = str(ind) not in seen and self.accept.ok(ind) and self.accept.ok(ind, self.analysis(ind)) \
                and not self.mirrors(self.analysis(ind)) & keys
            if fresh or attempts > 50 * self.cfg.mu:
                pop.append(ind)
                seen.add(str(ind))
                keys.add(self.analysis(ind).key)
        return pop

    def _random_tree(self) -> gp.PrimitiveTree:
        templates = self.accept.templates
        if templates:
            return random_tree(random.choice(templates), self.grammar, self.pset, random)
        return gp.PrimitiveTree(self.toolbox.expr())

    def within_limits(self, tree: gp.PrimitiveTree) -> bool:
        """The structural part of the validity rule (limits, and templates when the run uses them)."""
        return self.accept.ok(tree)

    def vary(self, parents: list, seen: set[str], ctx: Context) -> list:
        """One child per parent, each made by a crossover (with a random other parent, probability cx_prob)
        or else by a mutation. Children that break the validity rule's structural part revert to the parent;
        a child that brings no new function (a tree already in `seen`, a function already trained or already
        made this generation, or one the validity rule rejects) is varied again, up to VARY_TRIES times: a
        converged population otherwise spends most of a generation re-making what it has. An operator that
        returns several children (the LLM) adds them all.
        """
        offspring, made = [], set()
        for parent in parents:
            kids = [parent]
            for _ in range(VARY_TRIES):
                kids = self._vary_one(parent, parents, ctx)
                fresh = [k for k in kids if str(k) not in seen and self._news(k, ctx, made)]
                if fresh:
                    kids = fresh
                    break
            for child in kids:
                seen.add(str(child))
                made.add(ctx.analysis(child).key)
                del child.fitness.values
                offspring.append(child)
        return offspring

    def _news(self, tree, ctx: Context, made: set[str]) -> bool:
        """Whether a child computes a valid function that is neither trained nor made this generation yet, nor a
        sign mirror of one (`mirror_keys`: a mirror would be another noisy draw of a function already scored,
        which selection would reward for its luck alone)."""
        an = ctx.analysis(tree)
        if an.key in ctx.records or an.key in made or not self.accept.ok(tree, an):
            return False
        return not any(k in ctx.records or k in made for k in self.mirrors(an))

    def mirrors(self, an: Analysis) -> frozenset[str]:
        if an.key not in self._mirrors:
            self._mirrors[an.key] = mirror_keys(an.expr, probe_values(an.expr, self.grammar), self.grammar)
        return self._mirrors[an.key]

    def _vary_one(self, parent, parents: list, ctx: Context) -> list:
        if random.random() < self.cx_share:
            mates, ops = [parent, random.choice(parents)], self.crossovers
        else:
            mates, ops = [parent], self.mutations
        for op in ops:
            kids = op(mates, ctx)
            if kids:
                return [self._child(k, parent, op.origin) for k in kids]
        return [self._child(parent, parent, "gp")]  # no operator could: a copy, which `vary` varies again

    def _child(self, tree, parent, origin: str):
        child = self.individual(tree) if not isinstance(tree, creator.GpactIndividual) else tree
        if child is parent or not self.accept.ok(child):
            child = copy.deepcopy(parent)
        child.origin = origin  # DEAP's clone (deepcopy) keeps it; the record of a new function takes it
        return child

    def prescreened(self, parents: list, pop: list, state: State, ctx: Context) -> tuple[list, dict[str, float]]:
        """`--prescreen K`: K rounds of children, of which the surrogate's best-predicted share is kept (plus an
        eighth drawn at random, so the model also learns away from its own picks). Returns the kept children and
        the predicted log scores of the kept ones."""
        from gpact.search.prescreen import predict_children

        seen = {str(p) for p in pop}
        pool = [child for _ in range(self.cfg.prescreen) for child in self.vary(parents, seen, ctx)]
        want = len(parents)
        if len(pool) <= want or not state.records:
            return pool[:want], {}
        pred = predict_children(pool, state, self.grammar, self.tasks[0], self.cfg.train, self._features)
        n_random = max(1, want // 8)
        order = sorted(range(len(pool)), key=lambda i: (pred[i], i))
        kept = order[: want - n_random]
        rest = order[want - n_random:]
        kept += random.sample(rest, min(n_random, len(rest)))
        return [pool[i] for i in kept], {str(pool[i]): float(pred[i]) for i in kept}

    @property
    def cx_share(self) -> float:
        total = self.cfg.cx_prob + self.cfg.mut_prob
        return self.cfg.cx_prob / total if total > 0 else 0.5

    # -- evaluation ----------------------------------------------------------------------------------------

    def analysis(self, tree: gp.PrimitiveTree) -> Analysis:
        text = str(tree)
        if text not in self._analysis:
            self._analysis[text] = tree_analysis(tree, self.grammar, self.cfg.evolve, self.cfg.integrate_seconds)
        return self._analysis[text]

    def evaluate(self, individuals: list, state: State, progress=None) -> tuple[int, int, int]:
        """Give every individual its (OOD score, FLOPs); train only functions not seen before.

        Returns (newly evaluated, cache hits, rejected before training).
        """
        pending: dict[str, tuple[Analysis, str, str]] = {}
        hits = rejected = 0
        accepted = []
        for ind in individuals:
            an = self.analysis(ind)
            no = self.accept.check(ind, an)
            ok = no is None
            accepted.append(ok)
            if not ok:
                rejected += 1
                state.rejections[no.reason] = state.rejections.get(no.reason, 0) + 1
            elif an.key in state.records:
                hits += 1
                rec = state.records[an.key]
                if an.flops < rec.flops:  # a cheaper way to write the same function
                    rec.formula, rec.tree, rec.flops = an.formula, str(ind), an.flops
            elif an.key not in pending:
                pending[an.key] = (an, str(ind), getattr(ind, "origin", "gp"))
            else:
                hits += 1
        trained = self.race.networks
        if pending:
            raced = self.race.run([an.expr for an, _, _ in pending.values()], self.score, progress)
            for (key, (an, text, origin)), (fit, stage) in zip(pending.items(), raced, strict=True):
                state.records[key] = make_record(key, an, text, fit, state.generation, origin, self.objective,
                                                 stage)
            self.complete_front(state)
        state.networks += self.race.networks - trained
        for ind, ok in zip(individuals, accepted, strict=True):
            an = self.analysis(ind)
            rec = state.records.get(an.key)
            score = rec.ood_score if rec is not None and ok else WORST
            ind.fitness.values = (score, an.flops)
        state.evaluations += len(pending)
        state.cache_hits += hits
        return len(pending), hits, rejected

    def score(self, fit: Fitness) -> float:
        return self.objective.score(fit) if self.objective is not None else fit.ood_score

    def complete_front(self, state: State) -> None:
        """Train the front members that racing stopped early on every network, until the front (over all
        records) holds only fully trained functions; a promoted one may fall off and uncover another."""
        while True:
            partial = [r for r in pareto_front(state.records.values()) if r.stage < self.race.plan.final]
            if not partial:
                return
            analyses = [self.analysis(self.individual(r.tree)) for r in partial]
            fits = self.race.finish([an.expr for an in analyses], [_as_fitness(r) for r in partial],
                                    [r.stage for r in partial])
            for r, an, fit in zip(partial, analyses, fits, strict=True):
                state.records[r.key] = make_record(r.key, an, r.tree, fit, r.generation, r.origin, self.objective,
                                                   self.race.plan.final)

    # -- the strategy interface ----------------------------------------------------------------------------

    def start(self, state: State) -> list:
        pop = self.initial_population()
        state.population = [str(p) for p in pop]
        return pop

    def step(self, pop: list, state: State, progress=None) -> tuple[list, GenerationStats]:
        """Evaluate what needs it, select the next population, and advance `state` by one generation."""
        t0 = time.perf_counter()
        before = dict(state.rejections)
        predicted: dict[str, float] = {}
        for op in self.operators:
            if hasattr(op, "new_generation"):
                op.new_generation(state.generation)
        if state.generation == 0:
            new, hits, rejected = self.evaluate(pop, state, progress)
            pop = tools.selNSGA2(pop, self.cfg.mu)
        else:
            parents = tools.selTournamentDCD(pop, len(pop))
            ctx = Context(self.analysis, state.records)
            if self.cfg.prescreen > 1:
                offspring, predicted = self.prescreened(parents, pop, state, ctx)
            else:
                offspring = self.vary(parents, {str(p) for p in pop}, ctx)
            new, hits, rejected = self.evaluate(offspring, state, progress)
            pop = tools.selNSGA2(pop + offspring, self.cfg.mu)
        state.population = [str(p) for p in pop]
        state.elapsed += time.perf_counter() - t0
        front = pareto_front(state.records.values())
        reports: dict = {}
        for op in self.operators:
            if hasattr(op, "report"):
                reports.update(op.report())
        reached = [r.stage for r in state.records.values() if r.generation == state.generation]
        stats = GenerationStats(state.generation, new, hits, rejected,
                                min((r.ood_score for r in front), default=WORST), len(front), state.elapsed,
                                reports, state.networks,
                                [sum(s >= k for s in reached) for k in range(self.race.plan.final + 1)],
                                rejections={k: n - before.get(k, 0) for k, n in state.rejections.items()
                                            if n > before.get(k, 0)},
                                predicted=predicted)
        state.generation += 1
        return pop, stats

    def restore(self, members: list[dict[str, Any]]) -> list:
        """The population as a checkpoint holds it: same order, fitness and crowding distance (NSGA-II's
        tournament reads both, and the distance cannot be recomputed from the survivors alone)."""
        pop = []
        for m in members:
            ind = self.individual(m["tree"])
            ind.fitness.values = tuple(float(v) for v in m["fitness"])
            ind.fitness.crowding_dist = float(m["crowding_dist"])
            pop.append(ind)
        return pop


def _as_fitness(r: Record) -> Fitness:
    return Fitness(r.ood_score, r.id_loss, dict(r.per_task), r.diverged, r.reason, dict(r.per_run),
                   dict(r.run_constants))
