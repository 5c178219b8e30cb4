"""What a worker needs besides the formulas, as plain data: the grammar as its YAML text and the tasks as a
recipe for `make_suite`, each checked here, in the main process, to rebuild exactly what the run uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import yaml

from gpact.errors import ConfigError, GpactError
from gpact.expr.grammar import Grammar, Primitive, grammar_from_dict
from gpact.train.tasks import Task, make_suite


def grammar_text(grammar: Grammar, backend: str = "process") -> str:
    """The grammar's YAML text, after checking that it rebuilds the same primitives in a worker."""
    path = Path(grammar.path)
    hint = f"use --backend serial, or declare it in a grammar file (`import: \"package.module:function\"` for " \
           f"Python code) so {backend} workers can rebuild it"
    if not path.is_file():
        raise ConfigError(f"grammar '{grammar.name}' was built in Python, not read from a file; {hint}")
    text = path.read_text(encoding="utf-8")
    try:
        rebuilt = grammar_from_dict(yaml.safe_load(text), name=str(path))
    except (GpactError, yaml.YAMLError) as exc:
        raise ConfigError(f"grammar '{grammar.name}': {path} no longer loads ({exc}); {hint}") from None
    names = set(grammar.primitives) | set(rebuilt.primitives)
    differ = sorted(n for n in names if not _same(grammar.primitives.get(n), rebuilt.primitives.get(n)))
    if differ:
        raise ConfigError(f"grammar '{grammar.name}': primitive(s) {', '.join(differ)} were added or changed in "
                          f"Python, so {backend} workers cannot rebuild them from {path}; {hint}")
    return text


def _same(a: Primitive | None, b: Primitive | None) -> bool:
    if a is None or b is None:
        return False
    fields = ("name", "arity", "cost", "definition", "inline", "aliases", "source")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and (a.source == "sympy" or a.fn is b.fn)


def task_recipe(tasks: list[Task], seeds: Sequence[int], backend: str = "process") -> dict:
    """(names, n_train, n_ood, seed) from which `make_suite` rebuilds exactly these tasks in a worker."""
    names = [t.spec.name for t in tasks]
    n_train, n_ood = {len(t.x_train) for t in tasks}, {len(t.x_ood) for t in tasks}
    if len(n_train) == 1 and len(n_ood) == 1:
        recipe = {"tasks": names, "n_train": n_train.pop(), "n_ood": n_ood.pop()}
        for seed in dict.fromkeys(seeds):
            try:
                rebuilt = make_suite(names, n_train=recipe["n_train"], n_ood=recipe["n_ood"], seed=seed)
            except ConfigError:
                break
            if len(rebuilt) == len(tasks) and all(_same_task(a, b) for a, b in zip(rebuilt, tasks, strict=True)):
                return {**recipe, "task_seed": seed}
    raise ConfigError(f"{backend} workers rebuild tasks with make_suite(names, n_train, n_ood, seed), and these "
                      f"tasks ({', '.join(names)}) are not such a suite for seed(s) {', '.join(map(str, seeds))}")


def _same_task(a: Task, b: Task) -> bool:
    return a.spec.name == b.spec.name and all(
        torch.equal(getattr(a, f), getattr(b, f)) for f in ("x_train", "y_train", "x_ood", "y_ood"))
