"""The AI Feynman equations as library tasks, read from the data file `gpact/train/data/feynman.csv`.

The file is data, not code: one row per equation with its id (e.g. "I.12.4"), group ("I", "II",
"III": the first part of the id, the volume of the Feynman Lectures), output name, formula in gpact's
formula syntax, and per variable its name and the dataset's sampling range [low, high] (Udrescu &
Tegmark, "AI Feynman", Sci. Adv. 2020, FeynmanEquations.csv). Lines starting with '#' are comments.

A formula is parsed by gpact's safe parser (`gpact.expr.formula.parse`, nothing is eval'ed), turned into
sympy over the row's variables and run by `gpact.expr.torchfn.to_torch` in float64.

The task "feynman/<id>" trains on the lower half of every variable's range and is scored on the upper
half, all coordinates out (shift "right", coords "all"): [1, 5] gives [1, 3] and [3, 5], as the
hand-written feynman_* tasks do. Its family is "feynman-<group>", the unit that splits by family use.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import sympy as sp
import torch

from gpact.errors import ConfigError, GpactError
from gpact.expr.formula import parse
from gpact.expr.symbolic import node_to_sympy
from gpact.expr.torchfn import to_torch
from gpact.train.library.spec import TaskSpec

DATA = "data/feynman.csv"  # inside the gpact.train package
GROUPS = ("I", "II", "III")


@dataclass(frozen=True)
class Equation:
    """One row of the data file."""

    id: str
    group: str
    output: str
    formula: str
    variables: tuple[tuple[str, float, float], ...]  # (name, low, high)


def parse_table(text: str) -> tuple[Equation, ...]:
    """Rows of a feynman.csv text; ConfigError naming the line on a malformed one."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    header, out = rows[0], []
    for i, row in enumerate(rows[1:], start=2):
        rec = dict(zip(header, row, strict=False))
        try:
            names = [k for k in header if k.startswith("v") and k.endswith("_name") and rec.get(k)]
            variables = tuple((rec[k], float(rec[k[:-5] + "_low"]), float(rec[k[:-5] + "_high"])) for k in names)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"{DATA}: data row {i} ({rec.get('id')}): bad variable range ({exc})") from None
        eq = Equation(rec["id"], rec["group"], rec["output"], rec["formula"], variables)
        if eq.group not in GROUPS or not eq.id.startswith(eq.group + ".") or not variables:
            raise ConfigError(f"{DATA}: data row {i} ({eq.id}): group must be the id's first part, in {GROUPS}, "
                              f"and the equation needs variables")
        out.append(eq)
    ids = [e.id for e in out]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{DATA}: repeated equation ids")
    return tuple(out)


@cache
def equations() -> dict[str, Equation]:
    """The shipped table, by id (read once)."""
    text = resources.files("gpact.train").joinpath(DATA).read_text(encoding="utf-8")
    return {e.id: e for e in parse_table(text)}


def compile_equation(eq: Equation):
    """x [N, d] float64 -> y [N] for one equation, via the safe parser, sympy and to_torch."""
    symbols = {name: sp.Symbol(name, real=True) for name, _, _ in eq.variables}
    try:
        expr = node_to_sympy(parse(eq.formula), symbols)
        run = to_torch(expr, variables=tuple(symbols.values()))
    except GpactError as exc:
        raise ConfigError(f"{DATA}: equation {eq.id}: {exc}") from None

    def fn(x: np.ndarray) -> np.ndarray:
        cols = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).unbind(1)
        return run(*cols).numpy()

    return fn


def feynman_spec(eq: Equation, name: str) -> TaskSpec:
    """The task of one equation: lower half of each range for training, upper half for scoring."""
    mids = [(lo + hi) / 2 for _, lo, hi in eq.variables]
    id_box = tuple((lo, m) for (_, lo, _), m in zip(eq.variables, mids, strict=True))
    ood_box = tuple((m, hi) for (_, _, hi), m in zip(eq.variables, mids, strict=True))
    return TaskSpec(name, f"feynman-{eq.group}", len(eq.variables), compile_equation(eq), id_box[0], ood_box[0],
                    shift="right", coords="all", id_box=id_box, ood_box=ood_box)
