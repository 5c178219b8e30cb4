"""A score that asks "does it beat GELU, everywhere?": log-ratios to GELU with a tail term.

The geometric mean of raw OOD losses lets one catastrophic task hide behind seven good ones, and its
scale is set by whichever task has the largest losses. Here every (task, seed, protocol) network is
compared with GELU trained under the very same task, seed and protocol (same initial weights), and the
tail is taken over tasks:

    r_i   = log(ood_loss_i / gelu_ood_loss_i)      (0: as good as GELU, < 0: better)
    R_t   = mean of r_i over task t's networks     (seeds and protocols)
    score = mean_t(R) + tail_weight * CVaR_q(R)    (CVaR_q: the mean of the worst q-fraction of tasks)

so a function must be good on average AND not terrible on any task. The tail is over tasks, not single
networks, because one network's ratio carries its initialisation's luck: a tail of networks would mostly
measure that noise, which GELU, paired with itself, never pays. A failed network (non-finite or diverged
training) counts as FAIL_LOG_RATIO, far worse than any trained one. Scores print as ratios to GELU,
exp(score): 0.8 means about 20% lower OOD loss than GELU. `spearman` measures how well one score predicts
another (the search score against the validation score of a run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gpact.config import OBJECTIVES
from gpact.errors import ConfigError
from gpact.train.fitness import LOSS_FLOOR, task_of
from gpact.train.reference import WORST

FAIL_LOG_RATIO = math.log(WORST)  # a failed network: as if its loss were WORST against a GELU loss of 1


@dataclass(frozen=True)
class TailScore:
    """A candidate's generalization score (lower is better) and its parts."""

    score: float  # mean + tail_weight * cvar, in log-ratio units
    mean: float
    cvar: float
    n: int  # (task, seed, protocol) networks it averages over
    failed: int

    @property
    def vs_gelu(self) -> float:
        """The score as a ratio to GELU: exp(score)."""
        return math.exp(min(self.score, 700.0))


def failed(loss: float) -> bool:
    """A network whose training failed: its loss is WORST (gpact.train.fitness.run_loss), or not a number."""
    return not loss < WORST


def log_ratio(loss: float, reference: float) -> float:
    """log(OOD loss / GELU's OOD loss) for one network; a failed candidate network counts FAIL_LOG_RATIO.

    A GELU network that failed gives no yardstick: the pair is scored as a failure of the candidate only
    when the candidate failed too, else as a tie (0), so a task where GELU breaks neither rewards nor
    punishes anyone.
    """
    if failed(loss):
        return FAIL_LOG_RATIO
    if failed(reference):
        return 0.0
    return math.log(max(loss, LOSS_FLOOR)) - math.log(max(reference, LOSS_FLOOR))


def cvar(values: Sequence[float], q: float) -> float:
    """Mean of the worst (largest) ceil(q * n) values: the tail a plain mean hides."""
    if not values:
        raise ConfigError("cvar needs at least one value")
    if not 0 < q <= 1:
        raise ConfigError(f"tail fraction must be in (0, 1], got {q}")
    k = max(1, math.ceil(q * len(values)))
    return float(np.mean(sorted(values, reverse=True)[:k]))


def tail_score(results: Mapping[str, float], references: Mapping[str, float],
               tail: float = 0.25, tail_weight: float = 1.0) -> TailScore:
    """Score networks' OOD losses keyed by `run_key(task, seed)` (`Fitness.per_run`) against GELU's networks
    under the same keys: mean and CVaR over tasks of each task's mean log-ratio (module docstring)."""
    missing = set(results) - set(references)
    if missing:
        raise ConfigError(f"no GELU reference for {sorted(missing)[:3]}")
    if not results:
        raise ConfigError("tail_score needs at least one network")
    per_task: dict[str, list[float]] = {}
    for k in sorted(results):
        per_task.setdefault(task_of(k), []).append(log_ratio(results[k], references[k]))
    ratios = [float(np.mean(v)) for v in per_task.values()]
    mean, tail_mean = float(np.mean(ratios)), cvar(ratios, tail)
    n_failed = sum(1 for v in results.values() if failed(v))
    return TailScore(mean + tail_weight * tail_mean, mean, tail_mean, len(results), n_failed)


class Networks(Protocol):
    """What a score is computed from: a Fitness, or a Record made from one."""

    ood_score: float
    per_run: Mapping[str, float]


@dataclass(frozen=True)
class Objective:
    """What a run minimises, as one number per function on one part's tasks (lower is better).

    "tail": exp(tail_score - baseline) of the function's networks against `reference`, GELU's networks on
    the same tasks and protocol (keyed like `Fitness.per_run`), where `baseline` is GELU's own tail score as
    a candidate; so GELU scores exactly 1 and 0.8 reads "20% better than GELU, tail included". The
    reference networks start from other initialisations than the candidates' (gpact.run.verdict.yardstick):
    paired with itself, GELU alone would pay no noise in its tail and no function could ever beat it.
    "geomean": the geometric mean OOD loss (`Fitness.ood_score`), gpact's earlier objective, kept to
    compare with. Either way a function whose every network failed scores WORST.
    """

    kind: str = "tail"
    tail: float = 0.25
    tail_weight: float = 1.0
    reference: Mapping[str, float] | None = None
    baseline: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise ConfigError(f"unknown objective '{self.kind}' (choose from {', '.join(OBJECTIVES)})")
        if not 0 < self.tail <= 1 or self.tail_weight < 0:
            raise ConfigError("objective tail must be in (0, 1] and tail_weight >= 0")

    def tail_of(self, fit: Networks) -> TailScore:
        if self.reference is None:
            raise ConfigError("the tail objective needs GELU's networks on the same tasks (reference)")
        return tail_score(fit.per_run, self.reference, self.tail, self.tail_weight)

    def score(self, fit: Networks) -> float:
        if self.kind == "geomean" or fit.ood_score >= WORST and not fit.per_run:
            return fit.ood_score
        if all(failed(v) for v in fit.per_run.values()):
            return WORST
        return min(math.exp(min(self.tail_of(fit).score - self.baseline, 700.0)), WORST)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (ties share their mean rank); nan when either side is constant."""
    if len(x) != len(y) or len(x) < 2:
        raise ConfigError("spearman needs two sequences of equal length >= 2")
    rx, ry = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(len(v), dtype=float)
    for value in np.unique(v):  # ties: their mean rank
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks
