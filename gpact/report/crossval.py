"""`gpact crossval` tables: a CrossvalTable (gpact.train.crossval) as text, markdown or CSV.

Families run down the side and formulas across, so that 14 families x 8 formulas fits a terminal.
"""

from __future__ import annotations

import csv
import io
import math

from gpact.run.front import grid
from gpact.train.crossval import CrossvalRow, CrossvalTable, Spread
from gpact.train.library.splits import DEFAULT_TEST
from gpact.train.objective import FAIL_LOG_RATIO


def _cell(s: Spread) -> str:
    return f"{s.median:.3g} ({s.lo:.3g}-{s.hi:.3g})" if s.lo != s.hi else f"{s.median:.3g}"


def _worst(r: CrossvalRow) -> str:
    return "-" if r.is_reference else f"{r.worst} {r.cells[r.worst].median:.3g}"


def header_lines(table: CrossvalTable) -> list[str]:
    """What the numbers are, printed above the table."""
    ref, n = table.reference, len(table.seeds)
    per = sorted({len(v) for v in table.tasks.values()})
    per_text = "/".join(str(p) for p in per)
    return [
        f"Leave-one-family-out: OOD loss ratio to {ref} trained on the same tasks and seeds, per held-out "
        f"family (below 1: better than {ref}).",
        f"Cell: median over {n} seeds of exp(mean over the family's {per_text} tasks of log(loss / {ref} loss)), "
        f"(lowest-highest seed).",
        f"Tasks drawn fresh for this table (task seed {table.task_seed}), never used for selection; "
        f"* marks the test families of the default split.",
        f"overall: median over seeds of exp(mean over families); worst: the family with the highest median. "
        f"A failed network counts as a ratio of {math.exp(FAIL_LOG_RATIO):.0e}; where {ref} failed, a tie.",
    ]


def table_lines(table: CrossvalTable, markdown: bool = False) -> list[str]:
    rows = table.rows
    head = ["family", *(r.label + (" (ref)" if r.is_reference else "") for r in rows)]
    body = [[u + ("*" if u in DEFAULT_TEST else ""), *(_cell(r.cells[u]) for r in rows)] for u in table.units]
    body.append(["overall", *(_cell(r.overall) for r in rows)])
    body.append(["worst", *(_worst(r) for r in rows)])
    networks = len(table.seeds) * sum(len(v) for v in table.tasks.values())
    body.append(["failed", *(f"{r.failed}/{networks}" for r in rows)])
    return grid(head, body, markdown)


def describe(table: CrossvalTable) -> str:
    c, n_tasks = table.cfg, sum(len(v) for v in table.tasks.values())
    formulas = "; ".join(f"{r.label} = {r.formula}" for r in table.rows if r.formula != r.label)
    run = (f"{len(table.tasks)} families, {n_tasks} tasks x {len(table.seeds)} seeds, MLP width {c.width} depth "
           f"{c.depth}, {c.steps} Adam steps (lr {c.lr}); {table.seconds:.0f} s.")
    return run + (f"\n{formulas}" if formulas else "")


def format_table(table: CrossvalTable, markdown: bool = False) -> str:
    """Header lines, the table, and a line saying what was run."""
    return "\n".join([*header_lines(table), "", *table_lines(table, markdown), "", describe(table)])


def to_csv(table: CrossvalTable) -> str:
    """One line per (formula, family, seed), plus family 'overall': the log-ratio and the ratio."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["name", "formula", "family", "seed", "log_ratio", "ratio", "tasks"])
    for r in table.rows:
        for u in table.units:
            for s, v in zip(table.seeds, r.unit_logs[u], strict=True):
                w.writerow([r.label, r.formula, u, s, f"{v:.6g}", f"{math.exp(v):.6g}", " ".join(table.tasks[u])])
        for si, s in enumerate(table.seeds):
            v = sum(r.unit_logs[u][si] for u in table.units) / len(table.units)
            w.writerow([r.label, r.formula, "overall", s, f"{v:.6g}", f"{math.exp(v):.6g}", ""])
    return out.getvalue()
