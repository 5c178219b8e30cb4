"""Export a front member: a self-contained torch module (python source), a sympy expression, or LaTeX.

The torch source comes from the op registry (`gpact.ops`), as the evaluator's torch functions do:
whatever the evaluator can run, this can write, and anything else is a clear error. The
exported expression is the one the evaluator trained (the tree's simplified form), and the generated file
imports only torch. Named grammar primitives become small helper functions in the file: their torch
implementation when the grammar gives one (`torch: torch.nn.functional.gelu`), else their sympy definition.
"""

from __future__ import annotations

import inspect
import keyword
import math
from dataclasses import dataclass
from pathlib import Path

import sympy as sp

from gpact import ops
from gpact.errors import FormulaError, GpactError
from gpact.expr.grammar import Grammar, load_grammar
from gpact.expr.integrate import INTEGRATE_SECONDS, analyse_integral
from gpact.expr.symbolic import ARGS, X, is_trainable, start_values, trainables
from gpact.expr.trees import analyse, formula_to_sympy
from gpact.run import checkpoint, rundir
from gpact.run.front import read_front
from gpact.run.verdict import GELU, REFERENCE_GRAMMAR

FORMATS = ("torch", "python", "sympy", "latex")
STARTS = ("learned", "formula")  # where exported trainable constants, p(c), start: learned medians or c

class ExportError(GpactError):
    """A front member cannot be written in the asked format."""


@dataclass
class Member:
    """A front member of a run, with the expression the evaluator trained."""

    rank: int
    formula: str
    expr: sp.Expr
    ood_score: float | None
    flops: float | None
    vs_gelu: float | None
    grammar: Grammar
    run_dir: Path
    learned: tuple[float, ...] = ()  # trainable constants' medians over the run's networks and layers, if any


def front_member(run_dir: Path, rank: int | None = None) -> Member:
    """Rank `rank` (1 = best search score) of the run's pareto.csv; None: the run's recommended function
    (picked on validation families when the run finished: GELU itself, rank 0, when no front member beat it
    there), else rank 1."""
    rows = read_front(run_dir)
    if not rows:
        raise ExportError(f"{run_dir}: no front yet (no pareto.csv; has a generation finished?)")
    if rank is None and _recommends_gelu(Path(run_dir)):
        grammar = load_grammar(REFERENCE_GRAMMAR)
        an = analyse(formula_to_sympy(GELU, grammar), grammar)
        return Member(0, an.formula, an.expr, None, an.flops, 1.0, grammar, Path(run_dir))
    if rank is None:
        rank = next((r["rank"] for r in rows if r.get("recommended")), 1)
    match = [r for r in rows if r["rank"] == rank]
    if not match:
        raise ExportError(f"{run_dir}: no rank {rank} on the front (ranks 1 to {len(rows)})")
    row = match[0]
    grammar = checkpoint.run_grammar(run_dir)
    cfg = checkpoint.saved_config(run_dir)
    try:  # the tree goes through gpact's parser; the row's formula text is never used (it could hold anything)
        expr = formula_to_sympy(row["tree"], grammar)
        if cfg.get("evolve") == "derivative":  # the tree is a derivative: the run trained its integral
            seconds = float(cfg.get("integrate_seconds", INTEGRATE_SECONDS))
            an = analyse_integral(expr, grammar, max(4 * seconds, 30.0))  # it did integrate in the run
        else:
            an = analyse(expr, grammar)
    except FormulaError as exc:
        raise ExportError(f"{run_dir}: rank {rank}: {exc} (was the grammar extended in Python?)") from None
    return Member(rank, an.formula, an.expr, row["ood_score"], row["flops"], row["vs_gelu"], grammar, Path(run_dir),
                  _learned(Path(run_dir), row.get("key"), len(trainables(an.expr))))


def _recommends_gelu(run_dir: Path) -> bool:
    """Whether the finished run recommends GELU itself (no front member beat it on validation)."""
    try:
        pick = rundir.read_summary(run_dir).get("recommended")
    except GpactError:  # no summary yet: an unfinished run recommends nothing
        return False
    return isinstance(pick, dict) and pick.get("fallback") is True


def _learned(run_dir: Path, key: str | None, n: int) -> tuple[float, ...]:
    """The medians of a front member's trainable constants as candidates.jsonl recorded them; () if none."""
    if not n or not key:
        return ()
    for r in rundir.read_jsonl(run_dir / rundir.CANDIDATES):
        constants = r.get("constants")
        if r.get("key") == key and isinstance(constants, list) and len(constants) == n:
            try:
                values = tuple(float(c["median"]) for c in constants)
            except (TypeError, KeyError, ValueError):
                return ()
            return values if all(math.isfinite(v) for v in values) else ()
    return ()


def starts(member: Member, start: str = "learned") -> tuple[float, ...]:
    """Initial values of the member's trainable constants: the learned medians (when the run recorded them), or the
    formula's own start values."""
    if start not in STARTS:
        raise ExportError(f"unknown start '{start}' for trainable constants (choose from {', '.join(STARTS)})")
    if start == "learned" and member.learned:
        return member.learned
    return start_values(member.expr)


def export(member: Member, fmt: str, trainable: bool = False, start: str = "learned") -> str:
    """The member as text in format `fmt` (see FORMATS); `trainable`: constants as nn.Parameters (torch). Trainable
    constants, p(c), are always nn.Parameters, starting at `start` (see `starts`)."""
    if fmt in ("torch", "python"):
        return torch_source(member, trainable, start)
    if fmt == "sympy":
        return sp.sstr(expand_primitives(member.expr, member.grammar)) + "\n"
    if fmt == "latex":
        return sp.latex(_decimals(member.expr)) + "\n"
    raise ExportError(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")


def default_path(member: Member, fmt: str) -> Path:
    suffix = {"torch": ".py", "python": ".py", "sympy": ".txt", "latex": ".tex"}[fmt]
    name = f"rank{member.rank}" if member.rank else "gelu"  # rank 0: the run recommends GELU itself
    return member.run_dir / "export" / f"{name}{suffix}"


# ---------------------------------------------------------------------------------------------------------
# sympy / latex


def expand_primitives(expr: sp.Expr, grammar: Grammar) -> sp.Expr:
    """Named primitives (gelu(x)) replaced by their sympy definitions: an expression in sympy builtins only."""
    def define(f):
        prim = grammar.primitives.get(str(f.func))
        if prim is None or prim.definition is None:
            raise ExportError(f"primitive '{f.func}' has no sympy definition to export")
        return prim.definition.xreplace(dict(zip(ARGS, f.args, strict=False)))

    def named(e: sp.Expr) -> list:
        return [f for f in e.atoms(sp.Function)
                if isinstance(f.func, sp.core.function.UndefinedFunction) and not is_trainable(f)]

    undefined = named(expr)
    while undefined:
        expr = expr.xreplace({f: define(f) for f in undefined})
        undefined = named(expr)
    return expr


def _decimals(expr: sp.Expr, digits: int = 6) -> sp.Expr:
    """0.4413*x rather than 4413*x/10000 in LaTeX."""
    swaps = {r: sp.Float(r, digits) for r in expr.atoms(sp.Rational) if not r.is_Integer}
    return expr.xreplace(swaps)


# ---------------------------------------------------------------------------------------------------------
# torch source


class _Printer:
    """sympy -> torch source text over tensor `x`; constants become literals or `self.c<i>` parameters."""

    def __init__(self, grammar: Grammar, trainable: bool, var: str = "x", learned: dict | None = None):
        self.grammar, self.trainable, self.var = grammar, trainable, var
        self.params: list[float] = []
        self.helpers: dict[str, str] = {}
        self.learned = learned or {}  # trainable constant p(c) -> (its parameter's index, its initial value)

    def expr(self, e: sp.Expr) -> str:
        if e == X or (isinstance(e, sp.Symbol) and e.name == self.var):
            return self.var
        if e.is_Symbol:
            return e.name  # an argument of a helper (a, b, c)
        if self._constant(e):
            return self.constant(e)
        if is_trainable(e):
            return f"self.p{self.learned[e][0]}"
        if e.is_Add:
            terms = [self.expr(a) for a in sp.Add.make_args(e)]
            return " + ".join(terms).replace("+ -", "- ")
        if e.is_Mul:
            return self._mul(e)
        if e.is_Pow:
            return self._pow(e)
        func = e.func
        args = e.args
        if isinstance(func, sp.core.function.UndefinedFunction):
            name = self.helper(str(func))
            return f"{name}({', '.join(self.tensor(a) for a in args)})"
        if func in (sp.Max, sp.Min):
            return self._maxmin(e)
        unary = ops.unary_operand(e)
        if unary is not None:
            op, arg = unary
            src = ops.torch_source(op)
            if not src.startswith("torch."):  # a helper of the op registry: the file carries its source,
                name, src = src, f"_{src}"  # renamed so no grammar primitive's helper can clash with it
                self.helpers[src] = inspect.getsource(op.torch).replace(f"def {name}(", f"def {src}(", 1)
            inner = self.expr(arg)
            if op.sympy_divisor != 1.0:
                inner = f"{self._factor(arg)} / {op.sympy_divisor!r}"
            return f"{src}({inner})"
        raise ExportError(f"no torch source for sympy function '{func}'")

    def _constant(self, e: sp.Expr) -> bool:
        return not e.free_symbols and not e.atoms(sp.core.function.AppliedUndef)

    def constant(self, e: sp.Expr, structural: bool = False) -> str:
        value = complex(e.evalf(17))
        if value.imag != 0:
            raise ExportError(f"constant {e} is not real")
        v = value.real
        if self.trainable and not structural and v not in (0.0, 1.0, -1.0):
            self.params.append(v)
            return f"self.c{len(self.params) - 1}"
        return repr(v)

    def tensor(self, e: sp.Expr) -> str:
        """An argument that must be a tensor (of a helper): constants are broadcast like `x`."""
        if self._constant(e):
            return f"torch.full_like({self.var}, {self.constant(e)})"
        return self.expr(e)

    def _mul(self, e: sp.Mul) -> str:
        coeff, rest = e.as_coeff_Mul()
        factors = [self._factor(f) for f in sp.Mul.make_args(rest)]
        body = " * ".join(factors)
        if coeff == 1:
            return body
        if coeff == -1:
            return f"-{body}"
        return f"{self.constant(coeff)} * {body}"

    def _factor(self, f: sp.Expr) -> str:
        text = self.expr(f)
        return f"({text})" if f.is_Add or text.startswith("-") else text

    def _pow(self, e: sp.Pow) -> str:
        base, n = e.args
        b = self._factor(base) if not (base.is_Pow or base.is_Mul) else f"({self.expr(base)})"
        if n.is_Integer and abs(int(n)) <= 8:
            k = int(n)
            return f"{b} ** {k}" if k >= 0 else f"1.0 / {b} ** {-k}"
        if n == sp.Rational(1, 2):
            return f"torch.sqrt({self.expr(base)})"
        if n == sp.Rational(-1, 2):
            return f"torch.rsqrt({self.expr(base)})"
        exponent = self.expr(n) if not self._constant(n) else self.constant(n)
        return f"torch.pow({self.tensor(base) if self._constant(base) else self.expr(base)}, {exponent})"

    def _maxmin(self, e: sp.Expr) -> str:
        """torch.clamp against a literal constant (it needs no tensor); torch.maximum/minimum otherwise."""
        fn, bound = ("torch.maximum", "min") if e.func is sp.Max else ("torch.minimum", "max")
        tensors = [a for a in e.args if not self._constant(a)]
        consts = [a for a in e.args if self._constant(a)]
        text = self.expr(tensors[0])
        for a in tensors[1:]:
            text = f"{fn}({text}, {self.expr(a)})"
        for c in consts:
            value = self.constant(c)
            text = f"{fn}({text}, {value})" if value.startswith("self.") else f"torch.clamp({text}, {bound}={value})"
        return text

    def helper(self, name: str) -> str:
        """A named primitive as a function in the file: its torch callable, else its sympy definition."""
        if name in self.helpers:
            return name
        prim = self.grammar.primitives.get(name)
        if prim is None:
            raise ExportError(f"unknown primitive '{name}'")
        params = ", ".join(f"{a.name}: torch.Tensor" for a in ARGS[:prim.arity])
        path = ops.torch_name(prim.fn) if prim.source == "torch" else None
        if path is not None:
            body = f"return {path}({', '.join(a.name for a in ARGS[:prim.arity])})"
            note = f"grammar primitive '{name}' (torch: {path})"
        elif prim.definition is not None:
            inner = _Printer(self.grammar, trainable=False, var="a")
            body = f"return {inner.expr(prim.definition)}"
            self.helpers.update({k: v for k, v in inner.helpers.items() if k not in self.helpers})
            note = f"grammar primitive '{name}': {prim.definition}"
            if prim.source == "import":
                note += " (its sympy definition; the search ran an imported function)"
        else:
            raise ExportError(f"primitive '{name}' is an imported Python function without a sympy definition; "
                              "it cannot be written as a self-contained module")
        doc = _doc(note)
        self.helpers[name] = f"def {_name(name)}({params}) -> torch.Tensor:\n    \"\"\"{doc}\"\"\"\n    {body}\n"
        return name


def _doc(text: object, limit: int = 4000) -> str:
    """Text safe inside a triple-quoted docstring: printable ASCII without quotes or backslashes, one line.

    Code in the file comes only from the parsed expression; every other text (formula, run folder, primitive
    notes) passes here, so nothing in a run folder can close a docstring and add code to the module.
    """
    kept = "".join(c for c in str(text) if " " <= c <= "~" and c not in "\"'\\")
    return kept if len(kept) <= limit else kept[: limit - 3] + "..."


def _name(name: str) -> str:
    """A grammar primitive's name as a Python function name (the grammar loader allows no other)."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ExportError(f"primitive name {_doc(name, 60)!r} is not a Python identifier")
    return name


def torch_source(member: Member, trainable: bool = False, start: str = "learned") -> str:
    """A python file that imports only torch: `activation(x)` (when no constant is trainable) and `Activation`."""
    learned = {a: (j, v) for j, (a, v) in enumerate(zip(trainables(member.expr), starts(member, start), strict=True))}
    p = _Printer(member.grammar, trainable, learned=learned)
    body = p.expr(member.expr)
    formula = _doc(member.formula)
    score = "" if member.ood_score is None else f"OOD score {member.ood_score:.6g}"
    if member.vs_gelu is not None:
        score += f" ({member.vs_gelu:.3g} x GELU's)"
    flops = "" if member.flops is None else f", {member.flops:g} FLOPs per element"
    init = ["        super().__init__()"]
    init += [f"        self.c{i} = nn.Parameter(torch.tensor({v!r}))" for i, v in enumerate(p.params)]
    init += [f"        self.p{j} = nn.Parameter(torch.tensor({float(v)!r}))  # {_doc(a)}"
             for a, (j, v) in learned.items()]
    whence = ("the medians the run's networks learned" if start == "learned" and member.learned
              else "the formula's start values")
    parts = [
        f'"""Activation exported by gpact: run {_doc(member.run_dir)}, front rank {int(member.rank)}.\n\n'
        f"    {formula}\n\n{score}{flops}. Self-contained: imports only torch.\n"
        + ("Constants are trainable nn.Parameters (c0, c1, ...), initialised to the values found.\n" if p.params
           else "")
        + (f"Trainable constants p0, p1, ... are nn.Parameters, initialised to {whence}.\n" if learned else "")
        + '"""',
        "import torch\nfrom torch import nn",
        *p.helpers.values(),
    ]
    if not p.params and not learned:
        parts.append(f"def activation(x: torch.Tensor) -> torch.Tensor:\n"
                     f"    \"\"\"{formula}\"\"\"\n    return {body}\n")
    parts.append(
        "class Activation(nn.Module):\n"
        f"    \"\"\"{formula}\"\"\"\n\n"
        "    def __init__(self) -> None:\n" + "\n".join(init) + "\n\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        f"        return {body}\n"
    )
    head, *rest = (part.rstrip("\n") for part in parts)
    return head + "\n\n" + "\n\n\n".join(rest) + "\n"

