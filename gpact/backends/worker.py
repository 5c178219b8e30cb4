"""The worker side, the same in a local process and in a Ray actor: rebuild grammar and tasks from plain data
once per context (so workers stay warm across generations), then evaluate chunks of formula text.

The chunk function is a seam: a backend is given its dotted name ("module:function", default `CHUNK_FN`),
the name travels with the work and each worker imports it, so tests can run workers that fail on chosen
chunks (tests/faults.py) without any test code in gpact.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sympy as sp
import torch
import yaml

from gpact.config import ProtocolDist, TrainConfig
from gpact.errors import ConfigError
from gpact.expr.grammar import Grammar, grammar_from_dict
from gpact.expr.wire import text_to_expr
from gpact.train.evaluate import evaluate_population
from gpact.train.fitness import Fitness
from gpact.train.tasks import Task, make_suite

ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding `gpact/`: workers must import this tree
CHUNK_FN = "gpact.backends.worker:evaluate_chunk"
ChunkFn = Callable[..., list[Fitness]]


def evaluate_chunk(exprs: Sequence[sp.Expr], grammar: Grammar, tasks: list[Task], seeds: Sequence[int],
                   cfg: TrainConfig, evaluator: str, device: str, chunk: int, attempt: int,
                   protocol: ProtocolDist | None = None) -> list[Fitness]:
    """The chunk function: the serial evaluator on the chunk (`chunk`, `attempt` say which one it is)."""
    return evaluate_population(exprs, grammar, tasks, seeds, cfg, evaluator=evaluator, device=device,
                               protocol=protocol)


@functools.cache
def load_chunk_fn(name: str) -> ChunkFn:
    """The function a "module:function" name points at."""
    module, _, attr = name.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load the chunk function {name!r}: {exc}") from None


def pythonpath() -> str:
    """PYTHONPATH for workers: this tree first, so they import the same gpact as this process."""
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != ROOT]
    return os.pathsep.join([ROOT, *rest])


class Worker:
    """Evaluates chunks exactly as the serial backend would; grammar and tasks built once per context (warm)."""

    def __init__(self, threads: int = 0):
        if threads:
            torch.set_num_threads(threads)
        self._contexts: OrderedDict[str, tuple[Grammar, list[Task]]] = OrderedDict()

    def run(self, ctx: dict[str, Any], texts: list[str], seeds: list[int], chunk: int, attempt: int) -> dict:
        """One chunk; the answer names its chunk and attempt, so a late answer is never taken for another."""
        grammar, tasks = self._context(ctx)
        evaluate = load_chunk_fn(ctx.get("chunk_fn", CHUNK_FN))
        protocol = ProtocolDist(**ctx["protocol"]) if ctx.get("protocol") else None
        fits = evaluate([text_to_expr(t) for t in texts], grammar, tasks, seeds, TrainConfig(**ctx["train"]),
                        ctx["evaluator"], ctx["device"], chunk, attempt, protocol=protocol)
        return {"chunk": chunk, "attempt": attempt, "fits": [dataclasses.asdict(f) for f in fits]}

    def _context(self, ctx: dict[str, Any]) -> tuple[Grammar, list[Task]]:
        key = ctx["key"]
        if key not in self._contexts:
            grammar = grammar_from_dict(yaml.safe_load(ctx["grammar"]), name=ctx["grammar_path"])
            tasks = make_suite(ctx["tasks"], n_train=ctx["n_train"], n_ood=ctx["n_ood"], seed=ctx["task_seed"])
            self._contexts[key] = (grammar, tasks)
            while len(self._contexts) > 8:  # a run uses 2-4 (its grammar and the references', search and holdout)
                self._contexts.popitem(last=False)
        self._contexts.move_to_end(key)
        return self._contexts[key]
