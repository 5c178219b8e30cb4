"""`gpact bench`: trainings per second, reference evaluator against the batched one, same process.

The protocol is docs/design.md §4 "The evaluator": MLP 1->64->64->1, full-batch Adam lr 1e-2, 500 steps, 512 points,
y = sin(3x) + x^2 trained on [-1, 1] and scored on [1, 2]. Both evaluators get the same K candidates, a
fixed mix of known activations and random trees, so their ratio is a like-for-like speed-up.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import sympy as sp
import torch
from deap import gp

from gpact.errors import FormulaError
from gpact.expr.grammar import Grammar, load_grammar
from gpact.expr.symbolic import X, trainables
from gpact.expr.trees import analyse, compile_expr, formula_to_sympy, make_pset, tree_to_sympy
from gpact.train.baselines import BASELINES
from gpact.train.batched import resolve_device, train_batched
from gpact.train.mlp import BENCH_CONFIG
from gpact.train.program import ProgramError, lower
from gpact.train.reference import train_reference
from gpact.train.tasks import BENCH_POINTS, BENCH_TASK, make_task


def candidate_mix(grammar: Grammar, k: int, seed: int = 0) -> list[tuple[str, sp.Expr]]:
    """K distinct (name, formula): the known activations the grammar expresses, then random trees.

    Random trees are ramped half-and-half draws from a private RNG state, kept if they depend on x,
    lower to a program and are new by simplified form: the mix is a function of (grammar, k, seed).
    """
    out: list[tuple[str, sp.Expr]] = []
    seen: set[str] = set()

    def keep(name: str, expr: sp.Expr) -> None:
        key = sp.srepr(expr)
        if key in seen or X not in expr.free_symbols or trainables(expr):  # the bench times fixed formulas
            return
        try:
            lower(expr, grammar)
        except ProgramError:
            return
        seen.add(key)
        out.append((name, expr))

    for b in BASELINES.values():
        if len(out) >= k:
            return out
        try:
            keep(b.name, analyse(formula_to_sympy(b.formula, grammar), grammar).expr)
        except FormulaError:
            continue
    pset = make_pset(grammar)
    saved = random.getstate()
    random.seed(seed)
    try:
        attempts = 0
        while len(out) < k and attempts < 100 * k:
            attempts += 1
            tree = gp.PrimitiveTree(gp.genHalfAndHalf(pset, min_=1, max_=4))
            try:
                expr = analyse(tree_to_sympy(tree, grammar), grammar).expr
            except FormulaError:
                continue
            keep(f"random{len(out)}", expr)
    finally:
        random.setstate(saved)
    return out


@dataclass(frozen=True)
class BenchResult:
    device: str
    candidates: int
    steps: int
    naive_candidates: int  # the reference evaluator is timed on this many of them (the first ones)
    naive_seconds: float
    batched_seconds: float
    naive_trainings_per_s: float
    batched_trainings_per_s: float
    speedup: float

    def to_dict(self) -> dict:
        return asdict(self)


def run_bench(candidates: int = 64, device: str = "auto", steps: int = BENCH_CONFIG.steps,
              naive_max: int = 64, grammar: str = "full", kernel: str = "auto",
              echo: Callable[[str], None] = lambda s: None) -> BenchResult:
    """Time both evaluators on the bench protocol; the reference side on at most `naive_max` candidates."""
    dev = resolve_device(device)
    g = load_grammar(grammar)
    cfg = replace(BENCH_CONFIG, steps=steps)
    task = make_task(BENCH_TASK, n_train=BENCH_POINTS, n_ood=BENCH_POINTS)
    mix = candidate_mix(g, candidates)
    n_naive = min(naive_max, len(mix))
    echo(f"bench: {len(mix)} candidates, {steps} steps, device {dev}; reference evaluator on {n_naive} of them")
    acts = [compile_expr(e, g) for _, e in mix[:n_naive]]
    dev_task = replace(task, x_train=task.x_train.to(dev), y_train=task.y_train.to(dev),
                       x_ood=task.x_ood.to(dev), y_ood=task.y_ood.to(dev))
    _sync(dev)
    t0 = time.perf_counter()
    for i, act in enumerate(acts):
        train_reference(act, dev_task, 0, cfg)
        echo(f"  reference {i + 1}/{n_naive}")
    _sync(dev)
    naive = time.perf_counter() - t0
    programs = [lower(e, g) for _, e in mix]
    train_batched(programs[: min(4, len(programs))], [task], [0], replace(cfg, steps=2), dev, kernel)  # warm-up
    _sync(dev)
    t0 = time.perf_counter()
    train_batched(programs, [task], [0], cfg, dev, kernel)
    _sync(dev)
    batched = time.perf_counter() - t0
    naive_rate, batched_rate = n_naive / naive, len(mix) / batched
    return BenchResult(str(dev), len(mix), steps, n_naive, naive, batched, naive_rate, batched_rate,
                       batched_rate / naive_rate)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
