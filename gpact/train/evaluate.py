"""The evaluation seam: a list of formulas in, one Fitness per formula out.

The search, `gpact eval` and the scale-out backends all call `evaluate_population`; which trainer
runs underneath (the one-at-a-time reference, or the population-batched evaluator) is an option here,
so every caller gets the same numbers from the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sympy as sp

from gpact.config import ProtocolDist, TrainConfig
from gpact.errors import ConfigError
from gpact.expr.grammar import Grammar
from gpact.expr.trees import compile_expr
from gpact.train.fitness import Fitness, evaluate_reference
from gpact.train.mlp import DEFAULT_CONFIG
from gpact.train.tasks import Task

EVALUATORS = ("auto", "reference", "batched")
Progress = Callable[[int, int], None]  # (done, total)


def evaluate_population(
    exprs: Sequence[sp.Expr],
    grammar: Grammar,
    tasks: list[Task],
    seeds: Sequence[int],
    cfg: TrainConfig = DEFAULT_CONFIG,
    evaluator: str = "auto",
    device: str = "auto",
    progress: Progress | None = None,
    protocol: ProtocolDist | None = None,
) -> list[Fitness]:
    """Score every formula on tasks x seeds; a failing candidate gets the worst score, never an exception.

    `protocol`: each (task, seed) network draws its training protocol from it (gpact.train.protocol);
    None: every network trains with `cfg`.
    """
    if evaluator not in EVALUATORS:
        raise ConfigError(f"unknown evaluator '{evaluator}' (choose from {', '.join(EVALUATORS)})")
    if evaluator == "reference":
        out = []
        for i, e in enumerate(exprs):
            out.append(evaluate_reference(compile_expr(e, grammar), tasks, seeds, cfg, protocol))
            if progress:
                progress(i + 1, len(exprs))
        return out
    from gpact.train.batched import evaluate_batched  # "auto" and "batched": it falls back per formula itself

    return evaluate_batched(exprs, grammar, tasks, seeds, cfg, device=device, progress=progress, protocol=protocol)

