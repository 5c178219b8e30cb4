"""The end of a run: score the front on validation families to pick one recommended function, check how
well the search score predicted validation (the proxy check), and report the front on test families that
nothing selected on (DESIGN.md §5).

Every part is scored by the run's objective against GELU trained on that part's own tasks, seeds and
protocol, so numbers of different parts read the same way (a ratio to GELU when the objective is "tail").
Nothing here feeds back into the search: validation only picks among front members, test only reports.
When no front member beats GELU on validation, the pick is GELU itself (`Verdict.fallback`): a search whose
finds lose on families it never saw is worse than no search, so the run does not sell them.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gpact.backends.base import Backend
from gpact.config import RunConfig
from gpact.errors import ConfigError
from gpact.expr.grammar import Grammar, load_grammar
from gpact.search.records import Record, score_on_suite
from gpact.train.fitness import LOSS_FLOOR, WORST, run_key, split_key
from gpact.train.objective import Objective, spearman, tail_score
from gpact.train.partition import Partition
from gpact.train.protocol import SEED_PERIOD
from gpact.train.tasks import make_suite

REFERENCE_GRAMMAR = "full"  # the shipped grammar that expresses every reference activation
GELU = "gelu(x)"
REFERENCES = (GELU, "relu(x)")  # scored beside every part, GELU's own networks first
YARDSTICK = 4  # GELU network sets the yardstick averages
REFERENCE_SEEDS = SEED_PERIOD  # GELU's yardstick networks: seeds 1000 + s, never a candidate's, and drawing the
# protocol of seed s (gpact.train.protocol), so they differ from the candidates' networks in their weights only
WEAK_PROXY = 0.5  # a Spearman correlation below this: the search ranking says little about unseen families


@dataclass
class Verdict:
    """Validation and test scores (by record key), the recommended pick and the proxy check."""

    validation: dict[str, float] = field(default_factory=dict)  # front members and the proxy sample
    test: dict[str, float] = field(default_factory=dict)  # front members
    reference_test: dict[str, float] = field(default_factory=dict)  # relu's etc. on test, for scale
    recommended: str | None = None  # a record key (GELU's reference record's when `fallback`)
    picked_on: str = "search"  # "validation", or "search" when the run has no validation part
    fallback: bool = False  # no front member beat GELU on validation: GELU is the pick
    best_member: str | None = None  # the front member with the best validation score (the pick unless fallback)
    proxy_rho: float | None = None
    proxy_n: int = 0

    @property
    def proxy_weak(self) -> bool:
        return self.proxy_rho is None or math.isnan(self.proxy_rho) or self.proxy_rho < WEAK_PROXY

    def to_dict(self, records: dict[str, Record]) -> dict:
        """`records`: the run's, and its reference records (GELU's is the pick when `fallback`)."""
        rec = records.get(self.recommended) if self.recommended else None
        best = records.get(self.best_member) if self.fallback and self.best_member else None
        return {
            "recommended": None if rec is None else {
                "formula": rec.formula, "key": rec.key, "flops": rec.flops, "picked_on": self.picked_on,
                "fallback": self.fallback,
                "search": rec.ood_score, "validation": self.validation.get(rec.key), "test": self.test.get(rec.key)},
            "best_front_member": None if best is None else {
                "formula": best.formula, "key": best.key, "validation": self.validation.get(best.key),
                "test": self.test.get(best.key)},
            "proxy": {"spearman": self.proxy_rho, "n": self.proxy_n, "weak": self.proxy_weak},
            "reference_test": self.reference_test,
        }


def yardstick(cfg: RunConfig, tasks: list, backend: Backend) -> tuple[Objective, Record]:
    """The run's objective on these tasks, and GELU's own networks scored by it.

    OOD losses of small networks swing by 10x with the initialisation, so the yardstick is GELU trained
    YARDSTICK times from other initialisations than any candidate's (seeds 1000 + s, 2000 + s, ...; each
    under the protocol of seed s): per network key, the geometric mean of those losses. Every function,
    GELU included, is scored against it with the tail term, so GELU's noise counts in its tail as much as
    anyone's. The baseline is the tail score of GELU's own networks (the candidates' seeds, trained as any
    candidate's): so GELU scores exactly 1, and a function's ratio compares it with GELU trained from the
    very same initial weights, not with a luck-dependent absolute level (gpact.train.objective).
    """
    seeds = list(range(cfg.train_seeds))
    if cfg.train_seeds > REFERENCE_SEEDS:
        raise ConfigError(f"train_seeds must be at most {REFERENCE_SEEDS} (the yardstick's seeds start there)")
    offsets = [REFERENCE_SEEDS * (j + 1) for j in range(YARDSTICK)]
    grammar = load_grammar(REFERENCE_GRAMMAR)
    (ref,) = score_on_suite([GELU], grammar, tasks, cfg, backend, seeds=[o + s for o in offsets for s in seeds])
    sets: list[dict[str, float]] = [{} for _ in offsets]
    for key, loss in ref.per_run.items():
        task, seed = split_key(key)
        sets[seed // REFERENCE_SEEDS - 1][run_key(task, seed % REFERENCE_SEEDS)] = loss
    objective = Objective(cfg.objective, cfg.tail, cfg.tail_weight, reference=_geo(sets))
    (own,) = score_on_suite([GELU], grammar, tasks, cfg, backend)
    if cfg.objective == "tail":
        baseline = tail_score(own.per_run, objective.reference, cfg.tail, cfg.tail_weight).score
        objective = dataclasses.replace(objective, baseline=baseline)
    return objective, dataclasses.replace(own, ood_score=objective.score(own))


def reference_scores(cfg: RunConfig, tasks: list, backend: Backend, objective: Objective, gelu: Record,
                     references: Sequence[str] = REFERENCES) -> dict[str, Record]:
    """The references scored on a part's tasks, GELU's own networks (from `yardstick`) not trained again."""
    others = [t for t in references if t != GELU]
    scored = dict(zip(others, score_on_suite(others, load_grammar(REFERENCE_GRAMMAR), tasks, cfg, backend,
                                             objective), strict=True))
    return {t: gelu if t == GELU else scored[t] for t in references}


def _geo(sets: list[dict[str, float]]) -> dict[str, float]:
    """Per key, the geometric mean of the sets' losses; WORST when every set failed there."""
    out = {}
    for k in sets[0]:
        ok = [s[k] for s in sets if s[k] < WORST]
        out[k] = float(np.exp(np.mean(np.log(np.maximum(ok, LOSS_FLOOR))))) if ok else WORST
    return out


def proxy_sample(front: Sequence[Record], records: Sequence[Record], n: int, seed: int) -> list[Record]:
    """Front members, then a seeded random sample of the other trained functions, `n` in all when there are."""
    keys = {r.key for r in front}
    others = sorted((r for r in records if r.ok and r.key not in keys), key=lambda r: r.key)
    k = max(0, min(len(others), n - len(front)))
    return list(front) + random.Random(seed).sample(others, k)


def judge(cfg: RunConfig, grammar: Grammar, plan: Partition, front: Sequence[Record], records: Sequence[Record],
          backend: Backend, references: Sequence[str] = REFERENCES, echo: Callable[[str], None] = print,
          gelu: Record | None = None) -> Verdict:
    """Validation scores and the pick, the proxy check, and test scores of a finished run's front.

    `gelu`: GELU's reference record on the search tasks; with the tail objective (where GELU scores exactly 1
    on every part) it becomes the pick when no front member scores below 1 on validation.
    """
    verdict = Verdict()
    if not front:
        return verdict
    verdict.recommended = front[0].key  # the best search score: the pick when there is no validation part
    if plan.tasks["validation"]:
        tasks = make_suite(plan.tasks["validation"], n_train=cfg.n_train, n_ood=cfg.n_ood, seed=cfg.seed)
        sample = proxy_sample(front, records, max(cfg.proxy_check, len(front)), cfg.seed)
        echo(f"validation: scoring {len(front)} front members and {len(sample) - len(front)} other functions on "
             f"{plan.describe('validation')}")
        objective, own = yardstick(cfg, tasks, backend)
        scored = score_on_suite([r.tree for r in sample], grammar, tasks, cfg, backend, objective, evolve=cfg.evolve)
        verdict.validation = {r.key: s.ood_score for r, s in zip(sample, scored, strict=True)}
        best = min(front, key=lambda r: (verdict.validation[r.key], r.flops, r.formula))
        verdict.recommended = verdict.best_member = best.key
        verdict.picked_on = "validation"
        if gelu is not None and cfg.objective == "tail" and verdict.validation[best.key] > 1:
            verdict.recommended, verdict.fallback = gelu.key, True
            verdict.validation.setdefault(gelu.key, own.ood_score)  # GELU's own networks: 1 (see `yardstick`)
        pairs = [(r.ood_score, verdict.validation[r.key]) for r in sample]
        verdict.proxy_n = len(pairs)
        verdict.proxy_rho = spearman(*zip(*pairs, strict=True)) if len(pairs) >= 3 else None
    if plan.tasks["test"]:
        tasks = make_suite(plan.tasks["test"], n_train=cfg.n_train, n_ood=cfg.n_ood, seed=cfg.seed)
        echo(f"test: scoring {len(front)} front members on {plan.describe('test')} (reported only)")
        objective, own = yardstick(cfg, tasks, backend)
        scored = score_on_suite([r.tree for r in front], grammar, tasks, cfg, backend, objective, evolve=cfg.evolve)
        verdict.test = {r.key: s.ood_score for r, s in zip(front, scored, strict=True)}
        verdict.reference_test = {t: r.ood_score for t, r in
                                  reference_scores(cfg, tasks, backend, objective, own, references).items()}
        if verdict.fallback:
            verdict.test.setdefault(verdict.recommended, own.ood_score)
    return verdict


def proxy_line(verdict: Verdict) -> str:
    """One line on whether the search score predicted validation, with a warning when it did not."""
    if verdict.proxy_n == 0:
        return ""
    if verdict.proxy_rho is None or math.isnan(verdict.proxy_rho):
        return (f"proxy check: too few distinct scores among {verdict.proxy_n} functions to rank-correlate "
                f"the search score with validation")
    line = (f"proxy check: Spearman {verdict.proxy_rho:.2f} between search and validation scores over "
            f"{verdict.proxy_n} functions")
    if verdict.proxy_weak:
        line += (f"  WARNING: weak (< {WEAK_PROXY}): the search ranking predicts little on unseen families; "
                 f"trust the validation column, and consider more or broader search tasks")
    return line
