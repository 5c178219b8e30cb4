"""Score fixed formulas on a task suite, per seed, and compare each with a reference (GELU) with its spread.

Behind `gpact eval` and `gpact baselines` (their tables: gpact.report.scores). Every seed is evaluated
separately through the evaluation seam (`evaluate_population(..., seeds=[s])`), which costs the same
trainings as one call with all seeds and gives per-seed scores, so each comparison with GELU is paired
(same tasks, same seed) and printed with its range over seeds:

- `ood_score`: per task the median over seeds of the OOD loss, then the geometric mean over tasks:
  exactly the search's fitness on the same tasks and seeds.
- `id_loss`: the median over seeds of each seed's ID loss (geometric mean over tasks).
- `vs_ref`: the median over seeds of (score on seed s) / (reference's score on seed s), with the
  lowest and highest ratio, and `wins`, the number of seeds on which the formula beat the reference.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

import torch

from gpact.config import TrainConfig
from gpact.errors import ConfigError, FormulaError
from gpact.expr.gate import excerpt
from gpact.expr.grammar import Grammar, load_grammar
from gpact.expr.symbolic import start_values
from gpact.expr.trees import Analysis, analyse, make_pset, parse_tree, printed_to_sympy, tree_to_sympy
from gpact.train.baselines import BASELINE_GRAMMAR, BASELINES, REFERENCE
from gpact.train.evaluate import evaluate_population
from gpact.train.fitness import WORST, Fitness, geo_mean, learned_summary, median
from gpact.train.mlp import DEFAULT_CONFIG
from gpact.train.partition import resolve
from gpact.train.tasks import make_suite

Progress = Callable[[int, int], None]  # (seeds done, seeds total)


@dataclass(frozen=True)
class ScoreRow:
    label: str  # as given: a baseline name or the formula text
    formula: str  # simplified, readable
    flops: float
    ood_score: float  # lower is better; WORST when training failed
    id_loss: float
    seed_scores: tuple[float, ...]  # OOD score on each seed alone
    vs_ref: float | None  # median over seeds of score / reference score on the same seed
    vs_ref_lo: float | None
    vs_ref_hi: float | None
    wins: int  # seeds on which this formula scored below the reference
    diverged: int  # failed trainings over all tasks and seeds
    per_task: dict[str, float] = field(default_factory=dict)  # task -> median OOD loss over seeds
    reason: str = ""
    is_reference: bool = False
    learned: list[dict] = field(default_factory=list)  # trainable constants (fitness.learned_summary), if any


@dataclass(frozen=True)
class ScoreTable:
    rows: list[ScoreRow]
    reference: str
    tasks: list[str]
    seeds: list[int]
    cfg: TrainConfig
    seconds: float


def score_formulas(
    items: Sequence[str | tuple[str, str]],
    grammar: Grammar | str = BASELINE_GRAMMAR,
    tasks: str | Sequence[str] = "default",
    seeds: int | Sequence[int] = 3,
    cfg: TrainConfig = DEFAULT_CONFIG,
    evaluator: str = "auto",
    device: str = "auto",
    n_train: int = 256,
    n_ood: int = 256,
    reference: str = REFERENCE,
    jobs: int = 1,
    progress: Progress | None = None,
) -> ScoreTable:
    """Score formulas (text, or (label, text); baseline names are looked up) on `tasks` x `seeds`.

    The reference (a baseline name or formula) is always scored and shown; formulas that compute the
    same function share one evaluation. Bad formulas raise FormulaError naming the formula.
    """
    start = time.perf_counter()
    g = load_grammar(grammar) if isinstance(grammar, str) else grammar
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list or any(s < 0 for s in seed_list):
        raise ConfigError("need at least one seed, all >= 0")
    if jobs < 1:
        raise ConfigError("jobs must be >= 1")
    task_names = resolve(tasks if isinstance(tasks, str) else ",".join(tasks))  # part draws too: test:12
    if not task_names:
        raise ConfigError("empty task suite")
    labelled = [_labelled(i) for i in items]
    if not labelled:
        raise ConfigError("no formulas to score")
    ref_label, ref_text = _labelled(reference)
    ref_grammar = g
    try:
        _analyse(ref_text, ref_label, ref_grammar)
    except FormulaError:  # a grammar without gelu (aquasurf, say): score the reference in full.yaml
        ref_grammar = load_grammar(BASELINE_GRAMMAR)
    analyses = [_analyse(text, label, g) for label, text in labelled]
    ref_an = _analyse(ref_text, ref_label, ref_grammar)

    # distinct functions, each evaluated once: {(grammar id, key): (analysis, source text)}
    unique: dict[tuple[int, str], tuple[Analysis, str]] = {(id(ref_grammar), ref_an.key): (ref_an, ref_text)}
    for an, (_, text) in zip(analyses, labelled, strict=True):
        unique.setdefault((id(g), an.key), (an, text))
    per_seed = _evaluate(unique, g, ref_grammar, task_names, seed_list, cfg, evaluator, device, n_train, n_ood,
                         jobs, progress)

    ref_fits = per_seed[(id(ref_grammar), ref_an.key)]
    rows = []
    in_items = False
    for (label, _), an in zip(labelled, analyses, strict=True):
        is_ref = ref_grammar is g and an.key == ref_an.key
        in_items |= is_ref
        rows.append(_row(label, an, per_seed[(id(g), an.key)], ref_fits, is_ref))
    if not in_items:
        rows.insert(0, _row(ref_label, ref_an, ref_fits, ref_fits, True))
    return ScoreTable(rows, ref_label, task_names, seed_list, cfg, time.perf_counter() - start)


def _labelled(item: str | tuple[str, str]) -> tuple[str, str]:
    if isinstance(item, tuple):
        return item
    key = item.strip()
    return (key, BASELINES[key].formula) if key in BASELINES else (key, key)


def formula_analysis(item: str | tuple[str, str], grammar: Grammar) -> tuple[str, Analysis]:
    """(label, analysis) of a baseline name, formula text or (label, text), read as `gpact eval` reads it."""
    label, text = _labelled(item)
    return label, _analyse(text, label, grammar)


def _analyse(text: str, label: str, grammar: Grammar) -> Analysis:
    try:
        tree = parse_tree(text, grammar, make_pset(grammar))
        return analyse(tree_to_sympy(tree, grammar), grammar)
    except FormulaError as exc:
        try:  # as gpact prints a formula: registry functions the grammar lacks (cosh, Heaviside), `gpact integrate`
            return analyse(printed_to_sympy(text, grammar), grammar)
        except FormulaError:
            pass
        known = f"; baselines: {', '.join(BASELINES)}" if label == text and label.isidentifier() else ""
        raise FormulaError(f"formula {excerpt(label)}: {exc}{known}") from None


# ---------------------------------------------------------------------------------------------------------
# evaluation, per seed


def _evaluate(unique, g, ref_grammar, task_names, seeds, cfg, evaluator, device, n_train, n_ood, jobs, progress
              ) -> dict[tuple[int, str], list[Fitness]]:
    """{(grammar id, key): [Fitness on seed s for s in seeds]}: one evaluate_population call per grammar and seed."""
    groups: dict[int, tuple[Grammar, list[tuple[int, str]]]] = {}
    for k in unique:
        groups.setdefault(k[0], (ref_grammar if k[0] == id(ref_grammar) else g, []))[1].append(k)
    calls = [(grammar, keys, s) for s in seeds for grammar, keys in groups.values()]
    results: dict[tuple[int, str], list[Fitness]] = {k: [] for k in unique}
    if jobs > 1 and len(calls) > 1 and all(os.path.exists(grammar.path) for grammar, _, _ in calls):
        # worker processes get text, not objects (docs/design.md §9 "Scale-out"); a grammar built in Python stays serial
        args = [(grammar.path, [unique[k][1] for k in keys], task_names, s, cfg, evaluator, device, n_train, n_ood)
                for grammar, keys, s in calls]
        with ProcessPoolExecutor(max_workers=min(jobs, len(calls)), mp_context=get_context("spawn")) as pool:
            for done, ((_, keys, _), fits) in enumerate(zip(calls, pool.map(_worker, args), strict=True), 1):
                for k, f in zip(keys, fits, strict=True):
                    results[k].append(f)
                if progress and done % len(groups) == 0:
                    progress(done // len(groups), len(seeds))
        return results
    suite = make_suite(task_names, n_train=n_train, n_ood=n_ood, seed=0)
    with torch_threads(1):
        for done, s in enumerate(seeds, 1):
            for grammar, keys in groups.values():
                fits = evaluate_population([unique[k][0].expr for k in keys], grammar, suite, [s], cfg,
                                           evaluator=evaluator, device=device)
                for k, f in zip(keys, fits, strict=True):
                    results[k].append(f)
            if progress:
                progress(done, len(seeds))
    return results


def _worker(args) -> list[Fitness]:
    """One (grammar, formulas, seed) evaluation in a fresh process, analysed exactly as in the serial path."""
    path, texts, task_names, seed, cfg, evaluator, device, n_train, n_ood = args
    torch.set_num_threads(1)
    grammar = load_grammar(path)
    suite = make_suite(task_names, n_train=n_train, n_ood=n_ood, seed=0)
    exprs = [_analyse(t, t, grammar).expr for t in texts]
    return evaluate_population(exprs, grammar, suite, [seed], cfg, evaluator=evaluator, device=device)


class torch_threads:
    """Small MLPs train fastest, and most predictably on a shared machine, on one thread."""

    def __init__(self, n: int):
        self.n, self.before = n, torch.get_num_threads()

    def __enter__(self):
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


# ---------------------------------------------------------------------------------------------------------
# aggregation


def _row(label: str, an: Analysis, fits: list[Fitness], ref: list[Fitness], is_ref: bool) -> ScoreRow:
    tasks = list(fits[0].per_task)
    # a failed seed is +inf inside the median (as in fitness.aggregate), so a median failure stays WORST
    per_task = {t: min(median([math.inf if f.per_task[t] >= WORST else f.per_task[t] for f in fits]), WORST)
                for t in tasks}
    ratios = [f.ood_score / r.ood_score for f, r in zip(fits, ref, strict=True)
              if f.ood_score < WORST and 0 < r.ood_score < WORST]
    ok = len(ratios) == len(fits)
    return ScoreRow(
        label=label,
        formula=an.formula,
        flops=an.flops,
        ood_score=geo_mean(list(per_task.values())),
        id_loss=median([f.id_loss for f in fits]),
        seed_scores=tuple(f.ood_score for f in fits),
        vs_ref=median(ratios) if ok else None,
        vs_ref_lo=min(ratios) if ok else None,
        vs_ref_hi=max(ratios) if ok else None,
        wins=sum(f.ood_score < r.ood_score for f, r in zip(fits, ref, strict=True)),
        diverged=sum(f.diverged for f in fits),
        per_task=per_task,
        reason=next((f.reason for f in fits if f.reason), ""),
        is_reference=is_ref,
        learned=learned_summary({f"{k}@{i}": v for i, f in enumerate(fits) for k, v in f.constants.items()},
                                start_values(an.expr)),
    )
