"""Plots of a run, as PNG files in its folder: the Pareto front, and the front's activation curves.

Part of the run folder (DESIGN.md §7): a run draws them when it ends, `gpact show` draws missing ones.

matplotlib is imported here only, with the Agg backend (no display needed), so runs that never plot do not
pay for it. Everything is read from the run folder, so `gpact show` can draw the plots of any run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gpact.expr.grammar import Grammar, load_grammar
from gpact.expr.templates import run_templates
from gpact.expr.trees import compile_expr, make_pset, parse_tree
from gpact.run import checkpoint, rundir
from gpact.run.front import read_front
from gpact.search.records import tree_analysis
from gpact.train import baselines

PARETO_PNG, CURVES_PNG, ALPHAS_PNG = "pareto.png", "curves.png", "alphas.png"
X_RANGE = (-5.0, 5.0)
MAX_CURVES = 6  # more lines than this are hard to tell apart
REFERENCE_STYLE = {"gelu": ("black", "--"), "relu": ("dimgray", ":")}
Fn = Callable[[torch.Tensor], torch.Tensor]


def write_plots(run_dir: Path, only_missing: bool = False, grammar: Grammar | None = None) -> list[Path]:
    """Draw pareto.png and curves.png for a run that has a front; returns their paths.

    `grammar`: the run's, when it was extended in Python (the folder's copy lacks those primitives).
    """
    run_dir = Path(run_dir)
    rows = read_front(run_dir)
    paths = [run_dir / PARETO_PNG, run_dir / CURVES_PNG]
    if not rows or (only_missing and all(p.exists() for p in paths)):
        return [p for p in paths if p.exists()]
    title = run_dir.name
    plot_pareto(paths[0], rows, _cloud(run_dir), _references(run_dir), title)
    grammar = grammar or checkpoint.run_grammar(run_dir)
    evolve = _evolve(run_dir)
    members = [(f"#{r['rank']}  {_short(r['formula'])}", _activation(r["tree"], grammar, evolve))
               for r in rows[:MAX_CURVES]]
    refs = [(name, _activation(baselines.get(name).formula, load_grammar(baselines.BASELINE_GRAMMAR)))
            for name in REFERENCE_STYLE]
    plot_curves(paths[1], members, refs, title + (f" (best {MAX_CURVES} of {len(rows)})" if len(rows) > MAX_CURVES
                                                  else ""))
    traces = alpha_traces(run_dir)
    if traces:
        paths.append(run_dir / ALPHAS_PNG)
        plot_alphas(paths[-1], traces, _slot_labels(grammar), title)
    return paths


def alpha_traces(run_dir: Path) -> list[dict]:
    """The gradient strategy's mixture-weight traces, one per generation, from generations.jsonl."""
    path = Path(run_dir) / rundir.GENERATIONS
    if not path.exists():
        return []
    return [{"generation": row.get("generation", 0), **row["alphas"]} for row in rundir.read_jsonl(path)
            if isinstance(row.get("alphas"), dict) and row["alphas"].get("trace")]


def _slot_labels(grammar: Grammar) -> dict[str, tuple[str, ...]]:
    templates = run_templates(grammar)
    return {n: s.labels for n, s in templates[0].slots.items()} if len(templates) == 1 else {}


def plot_alphas(path: Path, traces: list[dict], labels: dict[str, tuple[str, ...]], title: str = "") -> None:
    """Each slot's mixture weight per alternative over the search steps (first restart of the last generation);
    the alternatives that end highest are named."""
    plt = _pyplot()
    trace = traces[-1]["trace"]
    slots = list(trace[0]["weights"])
    cols = min(3, len(slots))
    rows_n = -(-len(slots) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 3.6 * rows_n), dpi=110, squeeze=False)
    steps = [t["step"] for t in trace]
    for ax, slot in zip(axes.flat, slots, strict=False):
        w = np.array([t["weights"][slot][0] for t in trace])  # [time, alternatives], restart 0
        names = labels.get(slot, ())
        top = set(np.argsort(-(2 * w[-1] + w.max(0)), kind="stable")[:3].tolist())  # the survivor, then runners-up
        for k in range(w.shape[1]):
            name = names[k] if k < len(names) else str(k)
            ax.plot(steps, w[:, k], lw=2 if k in top else 0.8, label=name if k in top else None,
                    alpha=1 if k in top else 0.5)
        ax.set_title(f"slot {slot}")
        ax.set_xlabel("search step")
        ax.set_ylabel("weight")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(slots):]:
        ax.set_visible(False)
    cells = traces[-1].get("cells") or ["?"]
    fig.suptitle(f"{title}: mixture weights, generation {traces[-1]['generation']}, restart 0 -> {cells[0]}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# drawing


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pareto(path: Path, rows: list[dict], cloud: list[tuple[float, float]],
                references: dict[str, tuple[float, float]], title: str = "") -> None:
    """OOD score (log scale) against FLOPs: every evaluated function, the front as a staircase, references."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    if cloud:
        cx, cy = zip(*cloud, strict=True)
        ax.scatter(cx, cy, s=14, color="#b8c4d6", alpha=0.7, label=f"evaluated ({len(cloud)})", zorder=1)
    fx = [r["flops"] for r in rows]
    fy = [r["ood_score"] for r in rows]
    order = np.argsort(fx)
    ax.step(np.array(fx)[order], np.array(fy)[order], where="post", color="#d62728", lw=1.5, zorder=2)
    ax.scatter(fx, fy, s=40, color="#d62728", edgecolor="white", lw=0.8, label=f"Pareto front ({len(rows)})",
               zorder=3)
    for r in rows[:10]:
        ax.annotate(f"#{r['rank']}", (r["flops"], r["ood_score"]), textcoords="offset points", xytext=(5, 5),
                    fontsize=9, color="#8b0000")
    markers = iter(["*", "D", "s", "^"])
    for name, (flops, score) in references.items():
        ax.scatter([flops], [score], marker=next(markers, "o"), s=150 if name == "gelu" else 70, color="black",
                   facecolor="none" if name != "gelu" else "black", lw=1.5, zorder=4, label=f"{name} (baseline)")
        ax.annotate(name, (flops, score), textcoords="offset points", xytext=(8, -12), fontsize=9)
        ax.axhline(score, color="black", lw=0.6, ls=":", zorder=0)
    ax.set_yscale("log")
    plain = _plain_formatter()
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("FLOPs per element")
    ax.set_ylabel("OOD score (lower is better)")
    ax.set_title(f"Pareto front: {title}" if title else "Pareto front")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper right", fontsize=9, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_curves(path: Path, members: list[tuple[str, Fn]], references: list[tuple[str, Fn]],
                title: str = "") -> None:
    """f(x) and f'(x) over [-5, 5] for the front's members, next to the reference activations."""
    plt = _pyplot()
    x = torch.linspace(*X_RANGE, 801, dtype=torch.float64)
    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(13, 6), dpi=110)
    colors = plt.get_cmap("tab10").colors
    values, slopes, ref_values, ref_slopes = [], [], [], []
    for i, (label, fn) in enumerate(members):
        y, dy = _value_and_slope(fn, x)
        ax_f.plot(x, y, color=colors[i % len(colors)], lw=2.2, label=label, zorder=2)
        ax_d.plot(x, dy, color=colors[i % len(colors)], lw=2.2, zorder=2)
        values.append(y)
        slopes.append(dy)
    for name, fn in references:  # drawn last, thin and dashed: visible even where a member coincides
        y, dy = _value_and_slope(fn, x)
        color, ls = REFERENCE_STYLE.get(name, ("gray", "--"))
        for ax, v in ((ax_f, y), (ax_d, dy)):
            ax.plot(x, v, color=color, ls=ls, lw=1.4, label=f"{name} (baseline)", zorder=3)
        ref_values.append(y)
        ref_slopes.append(dy)
    ax_f.set_ylim(*_limits(values, ref_values))
    ax_d.set_ylim(*_limits(slopes, ref_slopes))
    for ax, what in ((ax_f, "f(x)"), (ax_d, "f'(x)")):
        ax.axhline(0, color="gray", lw=0.5)
        ax.axvline(0, color="gray", lw=0.5)
        ax.set_xlim(*X_RANGE)
        ax.set_xlabel("x")
        ax.set_title(what)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"Activations on the front: {title}" if title else "Activations on the front")
    handles, labels = ax_f.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    rows = math.ceil(len(labels) / 2)
    fig.tight_layout(rect=(0, 0.035 * rows + 0.02, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def _plain_formatter():
    """Tick labels as plain numbers (12, 0.05), not 1.2x10^1: a log axis spanning less than a decade
    otherwise labels its minor ticks in scientific notation."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:.3g}")


def _value_and_slope(fn: Fn, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    xg = x.clone().requires_grad_(True)
    with torch.enable_grad():
        y = fn(xg)
        (dy,) = torch.autograd.grad(y.sum(), xg, allow_unused=True)
    dy = torch.zeros_like(x) if dy is None else dy
    return y.detach().numpy(), dy.detach().numpy()


def _limits(curves: list[np.ndarray], references: list[np.ndarray]) -> tuple[float, float]:
    """A y range that shows every curve, but never more than one reference span beyond the references.

    The plot is for comparing with gelu and relu: a fast-growing member (x**3 reaches 125) would otherwise
    flatten every other line; it leaves the frame instead, which shows it is steep.
    """
    def finite(cs):
        v = np.concatenate([c[np.isfinite(c)] for c in cs]) if cs else np.zeros(0)
        return v if v.size else np.zeros(1)

    ref, every = finite(references), finite(curves + references)
    span = max(float(ref.max() - ref.min()), 1.0)
    lo = max(float(every.min()), float(ref.min()) - span)
    hi = min(float(every.max()), float(ref.max()) + span)
    pad = 0.06 * max(hi - lo, 1e-3)
    return lo - pad, hi + pad


# ---------------------------------------------------------------------------------------------------------
# data from the run folder


def _activation(text: str, grammar: Grammar, evolve: str = "activation") -> Fn:
    """The function the evaluator trained: the tree's simplified form (or its integral: `evolve`), compiled."""
    return compile_expr(tree_analysis(parse_tree(text, grammar, make_pset(grammar)), grammar, evolve).expr, grammar)


def _evolve(run_dir: Path) -> str:
    """What the run's trees are (RunConfig.evolve): activations, or derivatives of them."""
    path = Path(run_dir) / rundir.CONFIG
    return str(rundir.read_json(path).get("evolve", "activation")) if path.exists() else "activation"


def _cloud(run_dir: Path) -> list[tuple[float, float]]:
    """(FLOPs, OOD score) of every function the run trained and scored (failures left out)."""
    from gpact.train.fitness import WORST

    rows = rundir.read_jsonl(run_dir / rundir.CANDIDATES)
    number = (int, float)
    return [(r["flops"], r["ood_score"]) for r in rows
            if isinstance(r.get("flops"), number) and isinstance(r.get("ood_score"), number) and r["ood_score"] < WORST]


def _references(run_dir: Path) -> dict[str, tuple[float, float]]:
    """{"gelu": (FLOPs, OOD score), ...} of the baselines the run scored on its own tasks."""
    summary = rundir.read_summary(run_dir)
    scores, flops = summary.get("references", {}), summary.get("reference_flops", {})
    if not flops:  # older summaries and interrupted runs: the checkpoint has the records
        ckpt = checkpoint.load(run_dir)
        refs = ckpt.references if ckpt else {}
        scores = {k: r.ood_score for k, r in refs.items()}
        flops = {k: r.flops for k, r in refs.items()}
    return {k.removesuffix("(x)"): (flops[k], scores[k]) for k in scores if k in flops}


def _short(formula: str, n: int = 48) -> str:
    return formula if len(formula) <= n else formula[: n - 1] + "…"
