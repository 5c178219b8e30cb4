"""Transfer check: does an activation found on synthetic tasks help on real data under covariate shift?

Small real datasets that ship inside scikit-learn (no downloads). Each is split by position along the
first principal component of its standardised inputs: a network trains on the lower part of the input
space and is tested on the upper part it never saw (the OOD split), plus an in-distribution validation
split drawn at random from the training part. For classification the split is made within each class,
so class proportions stay the same and only the inputs move. Inputs (and regression targets) are
standardised with training statistics only.

Every formula is trained from the same seeded initialisations as GELU and ReLU, which are always
included, with early stopping on the ID validation loss; the table reports the mean and spread over seeds
and the paired difference to GELU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gpact.errors import ConfigError, FormulaError
from gpact.expr.grammar import Grammar, load_grammar
from gpact.expr.trees import compile_expr, make_pset, parse_tree, tree_to_sympy
from gpact.run.front import grid
from gpact.train.baselines import BASELINE_GRAMMAR, BASELINES

# name -> (scikit-learn loader, task kind)
DATASETS: dict[str, tuple[str, str]] = {
    "breast_cancer": ("load_breast_cancer", "classification"),  # 569 x 30, 2 classes
    "wine": ("load_wine", "classification"),  # 178 x 13, 3 classes
    "digits": ("load_digits", "classification"),  # 1797 x 64, 10 classes
    "diabetes": ("load_diabetes", "regression"),  # 442 x 10, disease progression
}
REFERENCES = ("gelu", "relu")


@dataclass(frozen=True)
class TransferConfig:
    width: int = 64
    depth: int = 2
    steps: int = 300  # full-batch Adam
    lr: float = 3e-3
    train_fraction: float = 0.7  # lower part along the first principal component; the rest is OOD
    val_fraction: float = 0.2  # of the training part, held out at random as the ID split
    check_every: int = 10  # steps between ID validation checks (early stopping)


@dataclass(frozen=True)
class Split:
    name: str
    kind: str  # "classification" | "regression"
    x_train: torch.Tensor
    y_train: torch.Tensor  # class indices (long) or standardised targets [n, 1]
    x_id: torch.Tensor
    y_id: torch.Tensor
    x_ood: torch.Tensor
    y_ood: torch.Tensor
    n_classes: int  # 0 for regression


@dataclass(frozen=True)
class TransferRow:
    label: str
    formula: str
    ood: tuple[float, ...]  # per seed: accuracy (classification) or MSE (regression); nan if training failed
    id: tuple[float, ...]
    is_reference: bool = False


@dataclass(frozen=True)
class TransferResult:
    dataset: str
    kind: str
    metric: str  # "accuracy" (higher is better) or "mse" (lower is better)
    rows: list[TransferRow]
    seeds: list[int]
    sizes: tuple[int, int, int]  # train, ID validation, OOD test
    cfg: Any  # TransferConfig, or a shift task's config
    seconds: float
    note: str = ""  # what was trained and tested, for a shift task (the tabular note is built from cfg)


def _sklearn_loader(name: str) -> Callable:
    try:
        from sklearn import datasets
    except ImportError:
        raise ConfigError("gpact transfer needs scikit-learn: pip install scikit-learn") from None
    return getattr(datasets, DATASETS[name][0])


def make_split(name: str, cfg: TransferConfig = TransferConfig()) -> Split:
    """The covariate-shift split of dataset `name` (deterministic)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    if not (0 < cfg.train_fraction < 1 and 0 < cfg.val_fraction < 1):
        raise ConfigError("train_fraction and val_fraction must be in (0, 1)")
    kind = DATASETS[name][1]
    x, y = _sklearn_loader(name)(return_X_y=True)
    x = np.asarray(x, dtype=np.float64)
    tr, va, te, _ = split_indices(x, y, kind, cfg)
    mean, std = x[tr].mean(0), x[tr].std(0)
    std = np.where(std > 1e-12, std, 1.0)

    def xs(i: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x[i] - mean) / std).astype(np.float32))

    if kind == "classification":
        def ys(i: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.asarray(y[i], dtype=np.int64))
        n_classes = int(np.max(y)) + 1
    else:
        y_mean, y_std = float(np.mean(y[tr])), float(np.std(y[tr])) or 1.0

        def ys(i: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(((np.asarray(y[i], dtype=np.float64) - y_mean) / y_std).astype(np.float32))[:, None]
        n_classes = 0
    return Split(name, kind, xs(tr), ys(tr), xs(va), ys(va), xs(te), ys(te), n_classes)


def split_indices(x: np.ndarray, y: np.ndarray, kind: str, cfg: TransferConfig = TransferConfig()
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train, ID validation, OOD) row indices and every row's position along the first principal component."""
    z = (x - x.mean(0)) / np.where(x.std(0) > 1e-12, x.std(0), 1.0)
    pc1 = np.linalg.svd(z, full_matrices=False)[2][0]
    pc1 = pc1 * np.sign(pc1[np.argmax(np.abs(pc1))])  # fix SVD's sign, so every machine splits the same way
    position = z @ pc1
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if kind == "classification" else [np.arange(len(y))]
    rng = np.random.default_rng(0)
    train, val, ood = [], [], []
    for idx in groups:  # per class: the lowest train_fraction along PC1 trains, the rest is OOD
        order = idx[np.argsort(position[idx], kind="stable")]
        cut = int(round(cfg.train_fraction * len(order)))
        inside = rng.permutation(order[:cut])
        n_val = max(1, int(round(cfg.val_fraction * len(inside))))
        val.append(inside[:n_val])
        train.append(inside[n_val:])
        ood.append(order[cut:])
    tr, va, te = (np.sort(np.concatenate(p)) for p in (train, val, ood))
    return tr, va, te, position


def _init(sizes: list[int], seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = fan_in**-0.5
        w = ((torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound).requires_grad_()
        b = ((torch.rand(fan_out, generator=gen) * 2 - 1) * bound).requires_grad_()
        params.append((w, b))
    return params


def _forward(params, x: torch.Tensor, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        if i < len(params) - 1:
            x = act(x)
    return x


def train_eval(act: Callable[[torch.Tensor], torch.Tensor], split: Split, seed: int,
               cfg: TransferConfig = TransferConfig()) -> tuple[float, float]:
    """(OOD metric, ID metric) after training from init `seed`; (nan, nan) if training failed.

    Full-batch Adam; every `check_every` steps the ID validation loss is measured and the parameters
    with the lowest one are kept (early stopping on ID data only: the OOD split is never looked at).
    """
    out = split.n_classes if split.kind == "classification" else 1
    params = _init([split.x_train.shape[1]] + [cfg.width] * cfg.depth + [out], seed)
    flat = [t for layer in params for t in layer]
    loss_fn = torch.nn.functional.cross_entropy if split.kind == "classification" else torch.nn.functional.mse_loss
    best, best_loss = [t.detach().clone() for t in flat], math.inf
    try:
        opt = torch.optim.Adam(flat, lr=cfg.lr)
        for step in range(1, cfg.steps + 1):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(_forward(params, split.x_train, act), split.y_train)
            if not torch.isfinite(loss):
                break
            loss.backward()
            opt.step()
            if step % cfg.check_every == 0 or step == cfg.steps:
                with torch.no_grad():
                    val = float(loss_fn(_forward(params, split.x_id, act), split.y_id))
                if math.isfinite(val) and val < best_loss:
                    best, best_loss = [t.detach().clone() for t in flat], val
        if not math.isfinite(best_loss):
            return math.nan, math.nan
        with torch.no_grad():
            for t, b in zip(flat, best, strict=True):
                t.copy_(b)
            return (_metric(params, split.x_ood, split.y_ood, act, split),
                    _metric(params, split.x_id, split.y_id, act, split))
    except Exception:  # a user formula can fail in any way: the seed counts as failed
        return math.nan, math.nan


def _metric(params, x, y, act, split: Split) -> float:
    pred = _forward(params, x, act)
    if split.kind == "classification":
        return float((pred.argmax(1) == y).float().mean())
    v = float(torch.mean((pred - y) ** 2))
    return v if math.isfinite(v) else math.nan


def transfer(formulas: Sequence[str], dataset: str, seeds: int | Sequence[int] = 5,
             cfg: TransferConfig = TransferConfig(), grammar: Grammar | str = BASELINE_GRAMMAR) -> TransferResult:
    """Train every formula (and GELU, ReLU) on the covariate-shift split of `dataset` over seeds."""
    start = time.perf_counter()
    seed_list, acts = contenders(formulas, seeds, grammar)
    split = make_split(dataset, cfg)
    rows = []
    with _one_thread():
        for label, text, ref, act in acts:
            results = [train_eval(act, split, s, cfg) for s in seed_list]
            rows.append(TransferRow(label, text, tuple(r[0] for r in results), tuple(r[1] for r in results), ref))
    metric = "accuracy" if split.kind == "classification" else "mse"
    sizes = (len(split.y_train), len(split.y_id), len(split.y_ood))
    return TransferResult(dataset, split.kind, metric, rows, seed_list, sizes, cfg, time.perf_counter() - start)


def contenders(formulas: Sequence[str], seeds: int | Sequence[int], grammar: Grammar | str,
               ) -> tuple[list[int], list[tuple[str, str, bool, Callable[[torch.Tensor], torch.Tensor]]]]:
    """The seeds, and (label, formula, is_reference, activation) for GELU and ReLU then every formula (a baseline
    name stands for its formula): what every transfer table trains, checked before any data is read."""
    g = load_grammar(grammar) if isinstance(grammar, str) else grammar
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("need at least one seed")
    items = [(r, BASELINES[r].formula, True) for r in REFERENCES]
    for f in formulas:
        label = f.strip()
        if label not in REFERENCES:
            items.append((label, BASELINES[label].formula if label in BASELINES else label, False))
    return seed_list, [(label, text, ref, _activation(label, text, g)) for label, text, ref in items]


def _activation(label: str, text: str, g: Grammar) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return compile_expr(tree_to_sympy(parse_tree(text, g, make_pset(g)), g), g)
    except FormulaError as exc:
        raise FormulaError(f"formula {label!r}: {exc}") from None


class _one_thread:
    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


# ---------------------------------------------------------------------------------------------------------
# output


def _stats(values: Sequence[float]) -> tuple[float, float, float, float, int]:
    """mean, std, min, max over finite values, and how many failed."""
    ok = [v for v in values if math.isfinite(v)]
    if not ok:
        return math.nan, math.nan, math.nan, math.nan, len(values)
    a = np.asarray(ok)
    return float(a.mean()), float(a.std()), float(a.min()), float(a.max()), len(values) - len(ok)


def format_result(res: TransferResult, markdown: bool = False) -> str:
    """Table: mean +- std over seeds of the OOD and ID metric, range, paired difference to GELU."""
    better_high = res.metric == "accuracy"
    gelu = next(r for r in res.rows if r.label == "gelu")
    head = ["name", f"OOD {res.metric}", "range", f"ID {res.metric}", "vs gelu (paired)", "beats gelu", "failed",
            "formula"]
    body = []
    for r in res.rows:
        m, s, lo, hi, failed = _stats(r.ood)
        mi, si, _, _, _ = _stats(r.id)
        diffs = [a - b for a, b in zip(r.ood, gelu.ood, strict=True) if math.isfinite(a) and math.isfinite(b)]
        wins = sum((d > 0) if better_high else (d < 0) for d in diffs)
        dm = f"{np.mean(diffs):+.4f}" if diffs and r.label != "gelu" else "-"
        body.append([r.label, f"{m:.4f} ± {s:.4f}", f"{lo:.4f}-{hi:.4f}", f"{mi:.4f} ± {si:.4f}", dm,
                     f"{wins}/{len(res.seeds)}" if r.label != "gelu" else "-", str(failed),
                     r.formula if r.formula != r.label else ""])
    lines = grid(head, body, markdown)
    if res.note:
        direction = "higher" if better_high else "lower"
        return "\n".join([*lines, "", f"{res.note}; {len(res.seeds)} seeds; {res.metric}: {direction} is better; "
                                       f"{res.seconds:.0f} s."])
    c = res.cfg
    direction = "higher" if better_high else "lower (standardised units)"
    note = (f"{res.dataset} ({res.kind}): train {res.sizes[0]}, ID validation {res.sizes[1]}, OOD test {res.sizes[2]} "
            f"(upper {1 - c.train_fraction:.0%} along the first principal component"
            f"{', per class' if better_high else ''}); {len(res.seeds)} seeds; MLP width {c.width} depth {c.depth}, "
            f"up to {c.steps} full-batch Adam steps (lr {c.lr}, best ID validation loss kept); "
            f"{res.metric}: {direction} is better; {res.seconds:.0f} s.")
    return "\n".join([*lines, "", note])
