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
from gpact.run.verdict import Verdict
from gpact.search.records import Record

CSV_COLUMNS = ("rank", "flops", "ood_score", "vs_gelu", "validation_vs_gelu", "test_vs_gelu", "recommended",
               "id_loss", "formula", "tree", "key", "origin", "derivative", "learned")
NUMBERS = ("flops", "ood_score", "vs_gelu", "validation_vs_gelu", "test_vs_gelu", "id_loss")


def fmt(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}"


def ratio(a: float, b: float | None) -> float | None:
    return a / b if b and math.isfinite(b) and b > 0 else None


def front_rows(front: Sequence[Record], gelu: Record | float | None, verdict: Verdict | None = None) -> list[dict]:
    """Rows of the front: the search score, its ratio to GELU (`gelu`: GELU's record, whose score divides, or
    the divisor itself: 1.0 when scores are ratios to GELU already), and (at the end of a run) the validation
    and test ratios and the recommended pick of `verdict`."""
    scale = gelu.ood_score if isinstance(gelu, Record) else gelu
    v = verdict or Verdict()
    rows = []
    for i, r in enumerate(front, 1):
        rows.append({
            "rank": i, "flops": r.flops, "ood_score": r.ood_score,
            "vs_gelu": ratio(r.ood_score, scale),
            "validation_vs_gelu": v.validation.get(r.key), "test_vs_gelu": v.test.get(r.key),
            "recommended": "yes" if r.key == v.recommended and verdict is not None else "",
            "id_loss": r.id_loss, "formula": r.formula, "tree": r.tree, "key": r.key, "origin": r.origin,
            "derivative": r.derivative,
            "learned": r.learned,
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
        out["recommended"] = row.get("recommended") == "yes"
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


def recommended(rows: list[dict]) -> dict | None:
    """The row marked recommended, if the run has picked one."""
    return next((r for r in rows if r.get("recommended") in (True, "yes")), None)


def table(rows: list[dict], title: str = "Pareto front") -> str:
    """Plain-text table: rank, FLOPs, search score and its ratio to GELU, the validation and test ratios once
    the run has them, the recommended pick (*), formula."""
    cols = [c for c in ("validation_vs_gelu", "test_vs_gelu") if any(r.get(c) is not None for r in rows)]
    picked = recommended(rows) is not None
    has_origin = any(r.get("origin", "gp") != "gp" for r in rows)  # shown once the LLM has made something
    derived = any(r.get("derivative") for r in rows)  # `--evolve derivative`: the formula is this one's integral
    has_learned = any(r.get("learned") for r in rows)  # trainable constants: the formula at their learned medians
    # the score is printed apart from its ratio to GELU only when it is not that ratio already (geomean objective)
    raw = any(r["vs_gelu"] is None or not math.isclose(r["ood_score"], r["vs_gelu"]) for r in rows)
    head = (["rank", "FLOPs"] + (["search score"] if raw else []) + ["search vs GELU"]
            + [c.removesuffix("_vs_gelu") + " vs GELU" for c in cols] + (["pick"] if picked else [])
            + (["origin"] if has_origin else []) + ["formula"] + (["derivative"] if derived else [])
            + (["learned constants (median)"] if has_learned else []))
    body = [[str(r["rank"]), fmt(r["flops"], 3)] + ([fmt(r["ood_score"])] if raw else []) + [fmt(r["vs_gelu"], 3)]
            + [fmt(r[c], 3) for c in cols] + (["*" if r.get("recommended") in (True, "yes") else ""] if picked else [])
            + ([r.get("origin", "gp")] if has_origin else []) + [r["formula"]]
            + ([r.get("derivative") or ""] if derived else [])
            + ([r.get("learned") or ""] if has_learned else []) for r in rows]
    return "\n".join([title, *grid(head, body)])
