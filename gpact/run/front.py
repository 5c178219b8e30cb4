"""A run's Pareto front as rows, as `pareto.csv` (written and read back) and as a text table.

The run folder holds the front as CSV; the same rows print as the table at the end of a run and in
`gpact show`. `grid` aligns any text table (the front's, `gpact list`'s, `gpact eval`'s).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpact.errors import ConfigError
from gpact.run import rundir
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


MAX_CSV_BYTES = 64 << 20  # a front of thousands of members is a few MB
MAX_TEXT = 4000  # characters of a formula or tree; the grammar's size limits keep real ones far shorter
NUMBERS = ("flops", "ood_score", "vs_gelu", "holdout_score", "holdout_vs_gelu", "id_loss")


def read_front(run_dir: Path) -> list[dict[str, Any]]:
    """pareto.csv as rows with numbers (the columns of `front_rows`); [] if there is none yet.

    A damaged or hostile file (wrong columns, a number that is not one, an oversized or multi-line field)
    is a ConfigError naming it: the rows go on into tables, plots and exported source.
    """
    path = Path(run_dir) / rundir.PARETO
    if not path.exists():
        return []
    if path.stat().st_size > MAX_CSV_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CSV_BYTES >> 20} MB; the file is damaged")
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("rank", "formula", "tree", *NUMBERS) if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"{path}: not a front table (no column {', '.join(missing)})")
            for row in reader:
                rows.append(_row(path, reader.line_num, row))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not readable ({rundir.one_line(exc)})") from None
    return rows


def _row(path: Path, line: int, row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in row.items() if isinstance(k, str)}
    try:
        out["rank"] = int(row["rank"])
        for k in NUMBERS:
            out[k] = float(row[k]) if row.get(k) not in (None, "") else None
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: line {line}: a rank or score is not a number") from None
    for k, v in out.items():
        if isinstance(v, str) and (len(v) > MAX_TEXT or not v.isprintable()):
            raise ConfigError(f"{path}: line {line}: column '{k}' is too long or holds control characters")
    return out


def grid(head: list[str], body: list[list[str]], markdown: bool = False) -> list[str]:
    """Lines of a table: columns aligned in plain text (a dashed rule under the head), or GitHub markdown."""
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in b) + " |" for b in body]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    return lines + ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip() for b in body]


def table(rows: list[dict], title: str = "Pareto front") -> str:
    """Plain-text table: rank, FLOPs, OOD score, vs GELU (and holdout), formula."""
    has_holdout = any(r.get("holdout_score") is not None for r in rows)
    has_origin = any(r.get("origin", "gp") != "gp" for r in rows)  # shown once the LLM has made something
    head = (["rank", "FLOPs", "OOD score", "vs GELU"] + (["holdout vs GELU"] if has_holdout else [])
            + (["origin"] if has_origin else []) + ["formula"])
    body = [[str(r["rank"]), fmt(r["flops"], 3), fmt(r["ood_score"]), fmt(r["vs_gelu"], 3)]
            + ([fmt(r["holdout_vs_gelu"], 3)] if has_holdout else []) + ([r.get("origin", "gp")] if has_origin else [])
            + [r["formula"]] for r in rows]
    return "\n".join([title, *grid(head, body)])
