"""Leave-one-family-out: each formula's OOD loss ratio to GELU on every split unit of the task library.

A search score can be won on the families it selects on and lost everywhere else (docs/design.md §5).
This table asks, per family held out on its own: trained on the same tasks and seeds as GELU, how does a
formula compare? Per (formula, unit, seed):

    ratio = exp(mean over the unit's tasks of log(loss / gelu_loss))

a failed network counting as FAIL_LOG_RATIO (a loss of WORST against GELU's 1) and a failed GELU network
as a tie. A cell is the median ratio over seeds with its lowest and highest; `overall` is the median over
seeds of exp(mean over units of the unit's log-ratio), so every family weighs the same however many tasks
it has. The tasks are drawn fresh for the table (seeded by `task_seed`), never by a search.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gpact.config import RunConfig, TrainConfig
from gpact.errors import ConfigError
from gpact.expr.grammar import load_grammar
from gpact.train.baselines import BASELINE_GRAMMAR, REFERENCE
from gpact.train.evaluate import evaluate_population
from gpact.train.fitness import WORST, median
from gpact.train.library import FEYNMAN_UNITS, UNITS, family_key, unit_names
from gpact.train.objective import log_ratio
from gpact.train.scoring import formula_analysis, torch_threads
from gpact.train.tasks import make_suite

DEFAULT_TRAIN = RunConfig().train  # the search's protocol, so the table speaks of what a run selects on
INDEX_RANGE = 1_000_000  # generator indices are drawn from [0, INDEX_RANGE), as random:N does
Progress = Callable[[int, int], None]  # (seeds done, seeds total)


@dataclass(frozen=True)
class Spread:
    """A ratio over seeds: its median, lowest and highest."""

    median: float
    lo: float
    hi: float


@dataclass(frozen=True)
class CrossvalRow:
    label: str  # as given: a baseline name or the formula text
    formula: str  # simplified
    cells: dict[str, Spread]  # unit -> ratio to the reference
    overall: Spread
    worst: str  # the unit with the highest median ratio
    unit_logs: dict[str, list[float]]  # unit -> log-ratio on each seed (for CSV)
    failed: int  # failed networks over all tasks and seeds
    is_reference: bool = False


@dataclass(frozen=True)
class CrossvalTable:
    rows: list[CrossvalRow]
    reference: str
    tasks: dict[str, list[str]]  # unit -> task names
    seeds: list[int]
    task_seed: int
    cfg: TrainConfig
    seconds: float

    @property
    def units(self) -> list[str]:
        return list(self.tasks)


def draw_tasks(units: Sequence[str], per_family: int, task_seed: int = 0) -> dict[str, list[str]]:
    """`per_family` library names per unit, fixed by `task_seed`: random indices of a generator family,
    distinct equations of a Feynman group (all of them when it has fewer)."""
    unknown = [u for u in units if u not in UNITS]
    if unknown:
        raise ConfigError(f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                          f"known: {', '.join(UNITS)}")
    if per_family < 1:
        raise ConfigError("per-family must be >= 1")
    out = {}
    for unit in dict.fromkeys(units):
        rng = np.random.default_rng([family_key("crossval"), task_seed, family_key(unit)])
        if unit in FEYNMAN_UNITS:
            names = unit_names(unit)
            out[unit] = [str(n) for n in rng.choice(names, min(per_family, len(names)), replace=False)]
        else:
            out[unit] = [f"{unit}/{int(i)}" for i in rng.choice(INDEX_RANGE, per_family, replace=False)]
    return out


def crossval(
    items: Sequence[str | tuple[str, str]],
    units: Sequence[str] = UNITS,
    per_family: int = 5,
    seeds: int | Sequence[int] = 5,
    cfg: TrainConfig = DEFAULT_TRAIN,
    task_seed: int = 0,
    evaluator: str = "auto",
    device: str = "auto",
    n_train: int = 256,
    n_ood: int = 256,
    progress: Progress | None = None,
) -> CrossvalTable:
    """Train every formula (baseline names are looked up) and GELU on `per_family` tasks of each unit, on
    each seed, and tabulate the ratios (module docstring). One evaluation per seed trains every distinct
    function once, GELU included; formulas are read in the full grammar."""
    start = time.perf_counter()
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list or any(s < 0 for s in seed_list):
        raise ConfigError("need at least one seed, all >= 0")
    if not items:
        raise ConfigError("no formulas to compare")
    tasks = draw_tasks(units, per_family, task_seed)
    grammar = load_grammar(BASELINE_GRAMMAR)
    analysed = [formula_analysis(i, grammar) for i in items]
    ref_label, ref_an = formula_analysis(REFERENCE, grammar)
    if all(an.key != ref_an.key for _, an in analysed):
        analysed.insert(0, (ref_label, ref_an))
    unique = {an.key: an.expr for _, an in analysed}  # formulas that compute the same function train once

    suite = make_suite([t for names in tasks.values() for t in names], n_train=n_train, n_ood=n_ood, seed=0)
    losses: dict[str, list[dict[str, float]]] = {k: [] for k in unique}  # key -> per seed: task -> OOD loss
    with torch_threads(1):
        for done, s in enumerate(seed_list, 1):
            fits = evaluate_population(list(unique.values()), grammar, suite, [s], cfg, evaluator=evaluator,
                                       device=device)
            for k, f in zip(unique, fits, strict=True):
                losses[k].append(f.per_task)  # one seed: the loss itself, WORST when the network failed
            if progress:
                progress(done, len(seed_list))

    ref = losses[ref_an.key]
    rows = [_row(label, an.formula, losses[an.key], ref, tasks, an.key == ref_an.key) for label, an in analysed]
    return CrossvalTable(rows, ref_label, tasks, seed_list, task_seed, cfg, time.perf_counter() - start)


def _row(label: str, formula: str, losses: list[dict[str, float]], ref: list[dict[str, float]],
         tasks: dict[str, list[str]], is_ref: bool) -> CrossvalRow:
    def unit_log(unit: str, si: int) -> float:
        if is_ref:  # GELU against itself: a tie on every network, failed ones included
            return 0.0
        return float(np.mean([log_ratio(losses[si][t], ref[si][t]) for t in tasks[unit]]))

    unit_logs = {u: [unit_log(u, si) for si in range(len(losses))] for u in tasks}
    cells = {u: _spread([math.exp(v) for v in logs]) for u, logs in unit_logs.items()}
    overall = _spread([math.exp(np.mean([unit_logs[u][si] for u in tasks])) for si in range(len(losses))])
    failed = sum(loss >= WORST for per_task in losses for t, loss in per_task.items())
    worst = max(cells, key=lambda u: cells[u].median)
    return CrossvalRow(label, formula, cells, overall, worst, unit_logs, failed, is_ref)


def _spread(values: list[float]) -> Spread:
    return Spread(median(values), min(values), max(values))
