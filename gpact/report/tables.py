"""Tables and CSV for fronts: the same columns on screen and on disk."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

from gpact.search.records import Record

CSV_COLUMNS = ("rank", "flops", "ood_score", "vs_gelu", "holdout_score", "holdout_vs_gelu", "id_loss",
               "formula", "tree", "key", "origin")


def fmt(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}"


def ratio(a: float, b: float | None) -> float | None:
    return a / b if b and math.isfinite(b) and b > 0 else None


def front_rows(front: Sequence[Record], gelu: Record | None, holdout: dict[str, float] | None = None,
               holdout_gelu: float | None = None) -> list[dict]:
    rows = []
    for i, r in enumerate(front, 1):
        h = (holdout or {}).get(r.key)
        rows.append({
            "rank": i, "flops": r.flops, "ood_score": r.ood_score,
            "vs_gelu": ratio(r.ood_score, gelu.ood_score if gelu else None),
            "holdout_score": h, "holdout_vs_gelu": ratio(h, holdout_gelu) if h is not None else None,
            "id_loss": r.id_loss, "formula": r.formula, "tree": r.tree, "key": r.key, "origin": r.origin,
        })
    return rows


def to_csv(rows: list[dict]) -> str:
    """Fixed columns, 6 significant digits: the same run gives the same bytes."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for row in rows:
        w.writerow(["" if row[c] is None else (f"{row[c]:.6g}" if isinstance(row[c], float) else row[c])
                    for c in CSV_COLUMNS])
    return out.getvalue()


def table(rows: list[dict], title: str = "Pareto front") -> str:
    """Plain-text table: rank, FLOPs, OOD score, vs GELU (and holdout), formula."""
    has_holdout = any(r.get("holdout_score") is not None for r in rows)
    has_origin = any(r.get("origin", "gp") != "gp" for r in rows)  # shown once the LLM has made something
    head = (["rank", "FLOPs", "OOD score", "vs GELU"] + (["holdout vs GELU"] if has_holdout else [])
            + (["origin"] if has_origin else []) + ["formula"])
    body = [[str(r["rank"]), fmt(r["flops"], 3), fmt(r["ood_score"]), fmt(r["vs_gelu"], 3)]
            + ([fmt(r["holdout_vs_gelu"], 3)] if has_holdout else []) + ([r.get("origin", "gp")] if has_origin else [])
            + [r["formula"]] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip() for b in body]
    return "\n".join(lines)
