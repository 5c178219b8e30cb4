"""`gpact eval` and `gpact baselines` tables: a ScoreTable (gpact.train.scoring) as text, markdown or CSV."""

from __future__ import annotations

import csv
import io

from gpact.run.front import grid
from gpact.train.fitness import WORST
from gpact.train.scoring import ScoreTable


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "-"
    if v >= WORST:
        return "failed"
    return f"{v:.{digits}g}"


def table_rows(table: ScoreTable, sort: bool = False) -> list[list[str]]:
    rows = sorted(table.rows, key=lambda r: (r.vs_ref is None, r.vs_ref or 0.0, r.ood_score)) if sort else table.rows
    n = len(table.seeds)
    out = []
    for r in rows:
        spread = f"{_fmt(r.vs_ref_lo, 3)}-{_fmt(r.vs_ref_hi, 3)}" if r.vs_ref is not None else "-"
        name = r.label + (" (ref)" if r.is_reference else "")
        formula = r.formula if r.formula != r.label else ""
        out.append([name, _fmt(r.flops, 3), _fmt(r.ood_score), _fmt(r.id_loss, 3), _fmt(r.vs_ref, 3), spread,
                    f"{r.wins}/{n}", str(r.diverged), formula])
    return out


def header(table: ScoreTable) -> list[str]:
    ref = table.reference
    return ["name", "FLOPs", "OOD score", "ID loss", f"vs {ref}", "range", f"beats {ref}", "failed", "formula"]


def format_table(table: ScoreTable, sort: bool = False, markdown: bool = False) -> str:
    """The table as plain text (or GitHub markdown), with a line saying what was run."""
    head, body = header(table), table_rows(table, sort)
    lines = grid(head, body, markdown)
    return "\n".join(lines + learned_lines(table) + ["", describe(table)])


def learned_lines(table: ScoreTable) -> list[str]:
    """Trainable constants as trained: per row, each constant's start and per layer median [lowest, highest]."""
    out = []
    for r in table.rows:
        for j, c in enumerate(r.learned):
            layers = ", ".join(f"layer {i + 1} {_fmt(x['median'])} [{_fmt(x['lo'], 3)}, {_fmt(x['hi'], 3)}]"
                               for i, x in enumerate(c["layers"]))
            out.append(f"{r.label}: constant {j} starts {_fmt(c['start'])}, learned {layers}")
    return ([""] + out + ["(trainable constants: median [lowest, highest] over every seed's networks)"]) if out else []


def describe(table: ScoreTable) -> str:
    c = table.cfg
    return (f"{len(table.tasks)} tasks x {len(table.seeds)} seeds, MLP width {c.width} depth {c.depth}, "
            f"{c.steps} Adam steps (lr {c.lr}); {table.seconds:.0f} s. OOD score: geometric mean over tasks of "
            f"the median OOD MSE over seeds (lower is better); vs {table.reference}: median over seeds of the "
            f"per-seed score ratio, range = lowest-highest ratio.")


def to_csv(table: ScoreTable) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["name", "formula", "flops", "ood_score", "id_loss", "vs_ref", "vs_ref_lo", "vs_ref_hi", "wins",
                "seeds", "diverged", "seed_scores", *table.tasks])
    for r in table.rows:
        w.writerow([r.label, r.formula, f"{r.flops:g}", f"{r.ood_score:.6g}", f"{r.id_loss:.6g}",
                    *("" if v is None else f"{v:.6g}" for v in (r.vs_ref, r.vs_ref_lo, r.vs_ref_hi)),
                    r.wins, len(table.seeds), r.diverged, " ".join(f"{s:.6g}" for s in r.seed_scores),
                    *(f"{r.per_task[t]:.6g}" for t in table.tasks)])
    return out.getvalue()


def format_per_task(table: ScoreTable, sort: bool = False, markdown: bool = False) -> str:
    """Per task: median OOD loss over seeds divided by the reference's (below 1: better than the reference)."""
    ref = next(r for r in table.rows if r.is_reference)
    rows = sorted(table.rows, key=lambda r: (r.vs_ref is None, r.vs_ref or 0.0)) if sort else table.rows
    head = ["name", *table.tasks]
    body = [[r.label, *(_fmt(r.per_task[t] / ref.per_task[t] if r.per_task[t] < WORST and ref.per_task[t] > 0
                             else WORST, 3) for t in table.tasks)] for r in rows]
    lines = grid(head, body, markdown)
    return "\n".join([f"median OOD loss per task relative to {table.reference}", *lines])
