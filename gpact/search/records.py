"""What every strategy shares: the record of an evaluated function, the run's state, per-generation stats,
the Pareto front, and scoring fixed formulas on a run's tasks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deap import gp

from gpact.config import RunConfig
from gpact.expr.grammar import Grammar
from gpact.expr.integrate import INTEGRATE_SECONDS, analyse_integral
from gpact.expr.symbolic import display, start_values, with_values
from gpact.expr.trees import Analysis, analyse, make_pset, parse_tree, tree_to_sympy
from gpact.train.fitness import WORST, Fitness, learned_summary
from gpact.train.objective import Objective
from gpact.train.tasks import Task

if TYPE_CHECKING:
    from gpact.backends.base import Backend


@dataclass
class Record:
    """One evaluated function (one fingerprint): what `candidates.jsonl` and `pareto.csv` hold."""

    key: str
    formula: str
    tree: str  # the DEAP tree as text; `parse_tree` reads it back
    flops: float
    ood_score: float  # the run's objective on its search tasks (gpact.train.objective; tail: ratio to GELU)
    id_loss: float
    generation: int
    per_task: dict[str, float] = field(default_factory=dict)
    diverged: int = 0
    reason: str = ""
    origin: str = "gp"  # "llm" when an LLM crossover or mutation wrote the tree first trained for this function
    per_run: dict[str, float] = field(default_factory=dict)  # every network's absolute OOD loss (run_key)
    stage: int = 0  # the racing stage it reached (gpact.search.racing); the last stage trained every network
    derivative: str = ""  # `--evolve derivative`: the tree is this derivative, `formula` its integral
    constants: list[dict] = field(default_factory=list)  # trainable constants as learned (fitness.learned_summary)
    learned: str = ""  # the formula with each trainable constant at its median learned value
    run_constants: dict[str, list] = field(default_factory=dict)  # run_key -> learned constants per layer

    @property
    def ok(self) -> bool:
        return self.ood_score < WORST


@dataclass
class State:
    """Everything a resumed run needs; plain data only."""

    generation: int = 0
    population: list[str] = field(default_factory=list)  # trees as text
    records: dict[str, Record] = field(default_factory=dict)  # by fingerprint
    evaluations: int = 0  # new functions trained (each on some or all of the run's networks: racing)
    networks: int = 0  # (function, task, seed) networks trained for the search: its training budget
    cache_hits: int = 0
    elapsed: float = 0.0
    rejections: dict[str, int] = field(default_factory=dict)  # rejected trees by reason (accept.Rejection), so far


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
    networks: int = 0  # networks the search has trained so far (all generations)
    stages: list[int] = field(default_factory=list)  # new functions of this generation that reached each stage
    rejections: dict[str, int] = field(default_factory=dict)  # this generation's rejected trees, by reason
    alphas: dict = field(default_factory=dict)  # gradient strategy: its cells and mixture weights over the search
    predicted: dict[str, float] = field(default_factory=dict)  # --prescreen: tree -> predicted log score, trained ones


def make_record(key: str, an: Analysis, tree: str, fit: Fitness, generation: int, origin: str = "gp",
                objective: Objective | None = None, stage: int = 0) -> Record:
    """The record of a trained function; its score is `objective`'s (default: the plain geometric mean)."""
    score = objective.score(fit) if objective is not None else fit.ood_score
    constants = learned_summary(fit.constants, start_values(an.expr))
    learned = display(with_values(an.expr, tuple(c["median"] for c in constants))) if constants else ""
    return Record(key=key, formula=an.formula, tree=tree, flops=an.flops, ood_score=score,
                  id_loss=fit.id_loss, generation=generation, per_task=dict(fit.per_task),
                  diverged=fit.diverged, reason=fit.reason, origin=origin, per_run=dict(fit.per_run), stage=stage,
                  derivative=an.derivative, constants=constants, learned=learned,
                  run_constants=dict(fit.constants))


def tree_analysis(tree: gp.PrimitiveTree, grammar: Grammar, evolve: str = "activation",
                  seconds: float = INTEGRATE_SECONDS) -> Analysis:
    """The function a run's tree stands for (RunConfig.evolve): the tree itself, or the integral of the
    derivative it is (gpact.expr.integrate, time-boxed to `seconds`). Everything that turns a run's tree into a
    function asks here."""
    expr = tree_to_sympy(tree, grammar)
    return analyse_integral(expr, grammar, seconds) if evolve == "derivative" else analyse(expr, grammar)


def pareto_front(records) -> list[Record]:
    """Non-dominated records in (FLOPs, OOD score), best OOD score first; failures excluded."""
    ranked = sorted((r for r in records if r.ok), key=lambda r: (r.flops, r.ood_score, r.formula))
    front, best = [], float("inf")
    for r in ranked:
        if r.ood_score < best:
            front.append(r)
            best = r.ood_score
    return sorted(front, key=lambda r: (r.ood_score, r.flops, r.formula))


def score_on_suite(texts: list[str], grammar: Grammar, tasks: list[Task], cfg: RunConfig,
                   backend: Backend, objective: Objective | None = None,
                   seeds: Sequence[int] | None = None, evolve: str = "activation") -> list[Record]:
    """Records for fixed trees (references such as gelu and relu, the front on validation and test tasks) on
    `tasks` with the run's seeds (or `seeds`) and training, through the run's backend, scored by `objective`;
    `evolve`: what the trees are (a run's own trees: its RunConfig.evolve; references are activations). Not
    `gpact.train.scoring.score_formulas`, which builds the per-seed tables of `gpact eval`."""
    pset = make_pset(grammar)
    analyses = [tree_analysis(parse_tree(t, grammar, pset), grammar, evolve, cfg.integrate_seconds) for t in texts]
    seeds = list(range(cfg.train_seeds)) if seeds is None else list(seeds)
    fits = backend.evaluate([an.expr for an in analyses], grammar, tasks, seeds, cfg.train,
                            evaluator=cfg.evaluator, device=cfg.device, protocol=cfg.protocol)
    return [make_record(an.key, an, t, f, -1, objective=objective)
            for t, an, f in zip(texts, analyses, fits, strict=True)]
