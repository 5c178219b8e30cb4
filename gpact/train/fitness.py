"""Turn per-(task, seed) training results into one candidate's score.

OOD losses swing by 10x between tasks and seeds (docs/design.md §5 "Tasks and fitness"), so: median over seeds
per task (robust to one lucky or unlucky seed), then the geometric mean over tasks (so a task with large
losses does not drown the others). A diverged training counts as +infinity inside the median, so a
task whose median training diverged scores WORST, and any WORST task makes the whole score WORST.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from gpact.config import ProtocolDist, TrainConfig
from gpact.errors import ConfigError
from gpact.train.mlp import DEFAULT_CONFIG
from gpact.train.protocol import draw
from gpact.train.reference import WORST, Activation, TrainResult, train_reference
from gpact.train.tasks import Task

__all__ = ["WORST", "LOSS_FLOOR", "Fitness", "aggregate", "evaluate_reference", "geo_mean", "learned_summary",
           "median", "merge", "run_key", "split_key", "task_of"]

LOSS_FLOOR = 1e-12
"""Losses are floored here before taking logs, so an exact fit does not give log(0) = -inf."""


@dataclass(frozen=True)
class Fitness:
    """A candidate's score on a suite; lower is better."""

    ood_score: float  # the objective to minimise; WORST when everything diverged
    id_loss: float  # aggregated the same way
    per_task: dict[str, float]  # task -> median OOD loss over seeds
    diverged: int  # how many (task, seed) trainings diverged
    reason: str = ""  # first failure reason, if any
    per_run: dict[str, float] = field(default_factory=dict)  # run_key(task, seed) -> OOD loss; WORST: failed
    constants: dict[str, list[list[float]]] = field(default_factory=dict)  # run_key -> learned p(c) per layer


def run_key(task: str, seed: int) -> str:
    """One network's key: scores that compare with GELU pair networks by it (gpact.train.objective)."""
    return f"{task}#{seed}"


def split_key(key: str) -> tuple[str, int]:
    """(task, seed) of a `run_key`; task names may hold '/' and ':', never '#'."""
    task, seed = key.rsplit("#", 1)
    return task, int(seed)


def task_of(key: str) -> str:
    """The task a network key belongs to (a key without a seed part is a task of its own)."""
    return key.rsplit("#", 1)[0]


def run_loss(result: TrainResult) -> float:
    """A network's OOD loss, WORST when its training failed."""
    return WORST if result.diverged or not result.ood_loss < WORST else result.ood_loss


def median(values: list[float]) -> float:
    """Median, with the middle pair averaged; an infinity among the middle values gives infinity."""
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def _task_median(results: list[TrainResult], attr: str) -> float:
    return _median_loss([WORST if r.diverged else getattr(r, attr) for r in results])


def _median_loss(losses: list[float]) -> float:
    """A task's median over seeds, a failed network (loss WORST) counting as +infinity; capped at WORST."""
    return min(median([math.inf if v >= WORST else v for v in losses]), WORST)


def geo_mean(values: list[float]) -> float:
    """Geometric mean, losses floored at LOSS_FLOOR; WORST if any value is WORST."""
    if any(v >= WORST for v in values):
        return WORST
    return min(math.exp(sum(math.log(max(v, LOSS_FLOOR)) for v in values) / len(values)), WORST)


def aggregate(losses: dict[str, list[TrainResult]], seeds: Sequence[int] | None = None) -> Fitness:
    """Per task the median over seeds, then the geometric mean over tasks, for OOD and ID losses.

    `seeds` name the results of each task in order (default 0, 1, ...); every network's own OOD loss is
    kept in `per_run` under `run_key(task, seed)`.
    """
    if not losses or any(not rs for rs in losses.values()):
        raise ConfigError("aggregate needs at least one task and one result (seed) per task")
    if seeds is not None and any(len(rs) != len(seeds) for rs in losses.values()):
        raise ConfigError("aggregate needs one result per seed for every task")
    per_task = {name: _task_median(rs, "ood_loss") for name, rs in losses.items()}
    id_per_task = [_task_median(rs, "id_loss") for rs in losses.values()]
    failures = [r for rs in losses.values() for r in rs if r.diverged]
    return Fitness(
        ood_score=geo_mean(list(per_task.values())),
        id_loss=geo_mean(id_per_task),
        per_task=per_task,
        diverged=len(failures),
        reason=next((r.reason for r in failures if r.reason), ""),
        per_run={run_key(name, s): run_loss(r) for name, rs in losses.items()
                 for s, r in zip(range(len(rs)) if seeds is None else seeds, rs, strict=True)},
        constants={run_key(name, s): [list(layer) for layer in r.constants] for name, rs in losses.items()
                   for s, r in zip(range(len(rs)) if seeds is None else seeds, rs, strict=True) if r.constants},
    )


def merge(parts: Sequence[Fitness]) -> Fitness:
    """One Fitness from evaluations of disjoint networks of one function (racing trains them in stages).

    The OOD score and per-task losses are recomputed from every network (median over a task's seeds, then
    the geometric mean), exactly as `aggregate` does over the union; the ID loss, kept per part only, is
    the geometric mean of the parts' weighted by their networks.
    """
    if not parts:
        raise ConfigError("merge needs at least one Fitness")
    if len(parts) == 1:
        return parts[0]
    runs: dict[str, float] = {}
    for p in parts:
        runs.update(p.per_run)
    by_task: dict[str, list[float]] = {}
    for key, loss in runs.items():
        by_task.setdefault(task_of(key), []).append(loss)
    per_task = {t: _median_loss(v) for t, v in by_task.items()}
    weights = [max(1, len(p.per_run)) for p in parts]
    id_loss = (WORST if any(p.id_loss >= WORST for p in parts) else
               math.exp(sum(w * math.log(max(p.id_loss, LOSS_FLOOR)) for w, p in zip(weights, parts, strict=True))
                        / sum(weights)))
    constants: dict[str, list[list[float]]] = {}
    for p in parts:
        constants.update(p.constants)
    return Fitness(geo_mean(list(per_task.values())), id_loss, per_task, sum(p.diverged for p in parts),
                   next((p.reason for p in parts if p.reason), ""), runs, constants)


def learned_summary(constants: dict[str, list[list[float]]], start: Sequence[float]) -> list[dict]:
    """Per trainable constant (in `symbolic.trainables` order): its start value, the median over every network and
    layer, and per hidden layer the median and spread (lowest, highest) over networks. [] when nothing learned."""
    if not constants or not start:
        return []
    out = []
    for j, c in enumerate(start):
        by_layer: dict[int, list[float]] = {}
        for layers in constants.values():
            for i, values in enumerate(layers):
                if j < len(values) and math.isfinite(values[j]):
                    by_layer.setdefault(i, []).append(values[j])
        pooled = [v for vs in by_layer.values() for v in vs]
        out.append({"start": float(c), "median": median(pooled) if pooled else float(c),
                    "layers": [{"median": median(vs), "lo": min(vs), "hi": max(vs), "networks": len(vs)}
                               for _, vs in sorted(by_layer.items())]})
    return out


def evaluate_reference(
    act: Activation, tasks: list[Task], seeds: Sequence[int], cfg: TrainConfig = DEFAULT_CONFIG,
    protocol: ProtocolDist | None = None,
) -> Fitness:
    """Score `act` with the reference evaluator: train_reference over tasks x seeds, then aggregate.

    With `protocol`, each (task, seed) network trains with its own drawn protocol (gpact.train.protocol).
    """
    if not tasks or not seeds:
        raise ConfigError("evaluate_reference needs at least one task and one seed")
    losses: dict[str, list[TrainResult]] = {}
    for task in tasks:
        for seed in seeds:
            net_cfg = draw(protocol, cfg, task.spec.name, seed)
            losses.setdefault(task.spec.name, []).append(train_reference(act, task, seed, net_cfg))
    return aggregate(losses, seeds)
