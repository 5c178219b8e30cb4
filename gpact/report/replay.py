"""`gpact bench --surrogate`: replay searches on a table of pre-scored functions, with no training.

The table (gpact/report/data/aquasurf_replay.csv, rebuilt by benchmarks/build_replay_table.py) holds every
distinct function of grammars/aquasurf.yaml's unit template with its score under one fixed protocol. A
replay asks each search order how many evaluations it needs before it has trained one of the space's top 1%
and its best function:

- random: a random permutation of the space;
- surrogate: the surrogate strategy's order (gpact.search.surrogate): the known activations and random
  functions up to one batch, then repeatedly the batch the model predicts best, refitted on what was seen
  (with at least one batch of known activations it does not depend on the seed);
- surrogate-cold: the same from a first batch drawn at random (what the model alone is worth);
- gp: the GP strategy itself (gpact.search.gp.Search, NSGA-II in the template) with a backend that looks
  scores up in the table instead of training (capped at `gp_cap` evaluations; slower: sympy per tree).

Medians over seeds. Also each feature set's Spearman correlation between the surrogate's predictions and
the true scores, fitted on a random `fit_share` of the table and tested on the rest (median over seeds).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from gpact.config import ProtocolDist, RunConfig, TrainConfig
from gpact.errors import ConfigError
from gpact.expr.fingerprint import fingerprint
from gpact.expr.grammar import Grammar, load_grammar
from gpact.expr.trees import formula_to_sympy
from gpact.search.records import State
from gpact.search.surrogate import KNOWN
from gpact.search.surrogate_model import FEATURE_SETS, Features, KNNSurrogate, make_surrogate, target
from gpact.train.features import FeatureCache, fisher_features, output_features
from gpact.train.fitness import WORST, Fitness, run_key
from gpact.train.tasks import make_suite, make_task

TABLE = Path(__file__).parent / "data" / "aquasurf_replay.csv"
FISHER_NET = TrainConfig(width=16, depth=2)  # the table's networks (benchmarks/build_replay_table.py)
FEATURES_VERSION = 1  # bump when gpact.train.features changes what it computes (cached features go stale)


@dataclass
class Table:
    keys: list[str]
    formulas: list[str]
    scores: np.ndarray
    tasks: list[str]
    protocol: str

    @property
    def size(self) -> int:
        return len(self.keys)


def load_table(path: str | Path = TABLE, limit: int = 0) -> Table:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"replay table {path} not found (rebuild it: python benchmarks/build_replay_table.py)")
    lines = path.read_text().splitlines()
    protocol = next((ln[len("# protocol: "):] for ln in lines if ln.startswith("# protocol: ")), "")
    rows = list(csv.DictReader(ln for ln in lines if not ln.startswith("#")))
    if limit:
        rows = rows[:limit]
    if len(rows) < 10:
        raise ConfigError(f"replay table {path} has {len(rows)} rows; it needs at least 10")
    tasks = [c for c in rows[0] if c not in ("key", "formula", "score")]
    return Table([r["key"] for r in rows], [r["formula"] for r in rows],
                 np.array([float(r["score"]) for r in rows]), tasks, protocol)


def cache_dir() -> Path:
    """Where replay features are kept between benches (deterministic, so safe to reuse): $XDG_CACHE_HOME/gpact."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpact" / "replay"


def table_features(table: Table, grammar: Grammar, cache: Path | None = None) -> Features:
    """Features as the surrogate strategy computes them (the Fisher batch: the table's first task), cached per
    fingerprint under `cache` (a folder named after the table's protocol)."""
    task = make_task(table.tasks[0], n_train=128, n_ood=128)
    exprs: dict[int, object] = {}

    def expr(i: int):
        if i not in exprs:
            exprs[i] = formula_to_sympy(table.formulas[i], grammar)
        return exprs[i]

    def outs(idx):
        return output_features([expr(i) for i in idx], grammar)

    def fisher(idx):
        return fisher_features([expr(i) for i in idx], grammar, task.x_train, task.y_train, FISHER_NET)

    if cache is None:
        every = list(range(table.size))
        return Features(outs(every), fisher(every))
    folder = cache / hashlib.sha1(f"{table.protocol}|{FEATURES_VERSION}".encode()).hexdigest()[:12]
    return Features(FeatureCache(folder, "outputs").get(table.keys, outs),
                    FeatureCache(folder, "fisher").get(table.keys, fisher))


def _targets(scores: np.ndarray) -> tuple[set[int], int]:
    order = np.argsort(scores, kind="stable")
    return set(order[: max(1, math.ceil(0.01 * len(scores)))].tolist()), int(order[0])


def _reached(order: Sequence[int], top: set[int], best: int) -> tuple[int, int]:
    """1-based evaluations until the first top-1% function and the best one (len + 1 when never)."""
    to_top = next((n for n, i in enumerate(order, 1) if i in top), len(order) + 1)
    to_best = next((n for n, i in enumerate(order, 1) if i == best), len(order) + 1)
    return to_top, to_best


def surrogate_order(table: Table, feats: Features, known: list[int], model, batch: int, seed: int,
                    stop: Callable[[list[int]], bool]) -> list[int]:
    """The surrogate strategy's evaluation order on the table, until `stop(order)` or the table is used up."""
    rng = random.Random(f"{seed}/0")
    first = known[:batch]
    rest = [i for i in range(table.size) if i not in first]
    order = first + rng.sample(rest, batch - len(first))
    seen = set(order)
    while not stop(order) and len(order) < table.size:
        todo = np.array([i for i in range(table.size) if i not in seen], dtype=np.int64)
        done = np.array(order, dtype=np.int64)
        pred = model.predict(feats, done, target(table.scores[done]), todo)
        nxt = [int(todo[j]) for j in np.lexsort((todo, pred))[:batch]]
        order += nxt
        seen.update(nxt)
    return order


class TableBackend:
    """A backend that looks scores up in the table by fingerprint instead of training (for the GP replay)."""

    def __init__(self, table: Table, grammar: Grammar):
        self.index = {k: i for i, k in enumerate(table.keys)}
        self.table, self.grammar, self.faults, self.misses = table, grammar, [], 0

    def evaluate(self, exprs, grammar, tasks, seeds, cfg, evaluator="auto", device="auto", protocol=None, **kw):
        out = []
        for e in exprs:
            i = self.index.get(fingerprint(e, self.grammar))
            score = float(self.table.scores[i]) if i is not None else WORST
            self.misses += i is None
            runs = {run_key(t.spec.name, s): score for t in tasks for s in seeds}
            out.append(Fitness(score, score, {t.spec.name: score for t in tasks}, 0, "", runs))
        return out


def gp_order(table: Table, grammar: Grammar, seed: int, cap: int, analyses: dict,
             stop: Callable[[list[int]], bool]) -> tuple[list[int], int]:
    """The GP strategy's order of first evaluations on the table (`cap` at most); also the lookups that missed."""
    from gpact.search.gp import Search

    cfg = RunConfig(grammar="aquasurf", population=32, seed=seed, train_seeds=1, race_eta=1, race_start=1,
                    objective="geomean", protocol=ProtocolDist.fixed())
    tasks = make_suite(table.tasks[:1], n_train=8, n_ood=8)
    backend = TableBackend(table, grammar)
    random.seed(seed)
    np.random.seed(seed)
    search = Search(cfg, grammar, tasks, backend)
    search._analysis = analyses  # a tree's analysis depends on its text only: shared across seeds
    state = State()
    pop = search.start(state)
    index = backend.index
    order: list[int] = []
    while len(order) < cap and not stop(order):
        before = state.evaluations
        pop, _ = search.step(pop, state)
        order = [index.get(k, -1) for k in state.records]  # a miss (-1) still cost an evaluation
        if state.evaluations == before and state.generation > 50:
            break  # no new function for a while: the run is stuck
    return order[:cap], backend.misses


@dataclass
class ReplayResult:
    size: int
    protocol: str
    seeds: int
    batch: int
    model: str
    top_share: float = 0.01
    evals: dict[str, dict[str, float]] = field(default_factory=dict)  # order -> {"top1%", "best"} medians
    spread: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # order -> min/max per target
    spearman: dict[str, float] = field(default_factory=dict)  # feature set -> median Spearman
    gp_cap: int = 0
    gp_seeds: int = 0
    gp_misses: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _ranks(a), _ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(v: np.ndarray) -> np.ndarray:
    _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    return (starts + (counts - 1) / 2.0)[inv]


def run_replay(seeds: int = 20, batch: int = 8, model: str = "knn", gp_cap: int = 300, table_path: str | Path = TABLE,
               limit: int = 0, fit_share: float = 0.2, echo: Callable[[str], None] = lambda s: None,
               with_gp: bool = True, gp_seeds: int = 0) -> ReplayResult:
    """See the module doc; `gp_seeds` (0: `seeds`) limits the GP replays, which cost sympy work per tree."""
    if seeds < 1 or batch < 1:
        raise ConfigError("--seeds and --batch must be >= 1")
    surrogate = make_surrogate(model)  # first: a missing umap-learn is reported before any work
    table = load_table(table_path, limit)
    grammar = load_grammar("aquasurf")
    echo(f"replay table: {table.size} functions; features ...")
    feats = table_features(table, grammar, cache_dir())
    index = {k: i for i, k in enumerate(table.keys)}
    known = []
    for text in KNOWN:
        try:
            i = index.get(fingerprint(formula_to_sympy(text, grammar), grammar))
        except Exception:  # a known activation the grammar cannot write
            continue
        if i is not None and i not in known:
            known.append(i)
    top, best = _targets(table.scores)
    label = f"{model} on {surrogate.which}" if isinstance(surrogate, KNNSurrogate) else model
    res = ReplayResult(table.size, table.protocol, seeds, batch, label, gp_cap=gp_cap if with_gp else 0,
                       gp_seeds=min(gp_seeds or seeds, seeds) if with_gp else 0)
    runs: dict[str, list[tuple[int, int]]] = {"random": [], "surrogate": [], "surrogate-cold": []}
    if with_gp:
        runs["gp"] = []
    analyses: dict = {}
    for s in range(seeds):
        perm = list(range(table.size))
        random.Random(s).shuffle(perm)
        runs["random"].append(_reached(perm, top, best))
        order = surrogate_order(table, feats, known, surrogate, batch, s, lambda o: best in o)
        runs["surrogate"].append(_reached(order, top, best))
        cold = surrogate_order(table, feats, [], surrogate, batch, s, lambda o: best in o)
        runs["surrogate-cold"].append(_reached(cold, top, best))
        if with_gp and s < (gp_seeds or seeds):
            gorder, misses = gp_order(table, grammar, s, gp_cap, analyses, lambda o: best in o)
            res.gp_misses += misses
            never = len(gorder) + 1  # not reached before the cap (or before the run got stuck): counted as cap + 1
            runs["gp"].append(tuple(v if v != never else gp_cap + 1 for v in _reached(gorder, top, best)))
        echo(f"seed {s}: " + "  ".join(f"{k} {v[-1][0]}/{v[-1][1]}" for k, v in runs.items() if len(v) == s + 1))
    for name, pairs in runs.items():
        arr = np.array(pairs, dtype=float)
        if name == "gp":  # never reached within the cap: counted as cap + 1 (a lower bound)
            arr = np.minimum(arr, gp_cap + 1)
        res.evals[name] = {"top1%": float(np.median(arr[:, 0])), "best": float(np.median(arr[:, 1]))}
        res.spread[name] = {"top1%": [float(arr[:, 0].min()), float(arr[:, 0].max())],
                            "best": [float(arr[:, 1].min()), float(arr[:, 1].max())]}
    y = target(table.scores)
    for which in FEATURE_SETS:
        knn = KNNSurrogate(which=which)
        vals = []
        for s in range(seeds):
            perm = np.random.default_rng(s).permutation(table.size)
            cut = max(3, int(fit_share * table.size))
            fit, test = np.sort(perm[:cut]), np.sort(perm[cut:])
            vals.append(spearman(knn.predict(feats, fit, y[fit], test), y[test]))
        res.spearman[which] = float(np.median(vals))
    if model != "knn":
        vals = []
        for s in range(min(seeds, 3)):  # UMAP refits are slow
            perm = np.random.default_rng(s).permutation(table.size)
            cut = max(3, int(fit_share * table.size))
            fit, test = np.sort(perm[:cut]), np.sort(perm[cut:])
            vals.append(spearman(surrogate.predict(feats, fit, y[fit], test), y[test]))
        res.spearman[f"{model} (both)"] = float(np.median(vals))
    return res


def format_replay(r: ReplayResult) -> str:
    lines = [f"replay table: {r.size} distinct functions of aquasurf/unit ({r.protocol})",
             f"evaluations to reach the space's top 1% / its best function, median over {r.seeds} seeds "
             f"[min-max]; surrogate: {r.model}, batches of {r.batch}",
             f"{'order':<10} {'top 1%':>22} {'best':>22}"]
    for name, ev in r.evals.items():
        sp = r.spread[name]
        cap = (f"  ({r.gp_seeds} seeds, capped at {r.gp_cap}; {r.gp_misses} lookups missed)" if name == "gp"
               else "")
        lines.append(f"{name:<10} {ev['top1%']:>8g} [{sp['top1%'][0]:g}-{sp['top1%'][1]:g}]"
                     f"{'':>4} {ev['best']:>8g} [{sp['best'][0]:g}-{sp['best'][1]:g}]{cap}")
    if "random" in r.evals and "surrogate" in r.evals:
        rt, st = r.evals["random"], r.evals["surrogate"]
        lines.append(f"surrogate / random: top 1% {st['top1%'] / rt['top1%']:.2f}, best {st['best'] / rt['best']:.2f}")
    lines.append("Spearman of k-NN predictions with the true score (fit on 20%, tested on the rest), by features: "
                 + "  ".join(f"{k} {v:.3f}" for k, v in r.spearman.items()))
    return "\n".join(lines)
