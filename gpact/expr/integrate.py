"""Design by integration (xIELU, Huang 2024): an activation is the integral of a designed derivative.

`integrate` takes the derivative as sympy (from a formula or a search tree), rewrites its kinks (max, min,
abs, sign, heaviside) as one piecewise function, integrates it with sympy inside a time box, and turns the
pieces back into the op registry's terms: a continuous antiderivative with pieces left and right of a
point c is L(min(x, c)) + R(max(x, c)) - R(c), which evaluates each piece only on its own side (xIELU's
expm1(min(x, eps)) trick, so exp never overflows on the side where it is not used). The constant is fixed
by f(0) = 0, and the result is simplified like any candidate. What sympy cannot integrate in closed form
over gpact's ops, within the time box, is an `IntegrationError` whose `reason` the search counts.

`integrate_formula` is the text entry (`gpact integrate`): the derivative passes the same text gate as any
formula, and names mean the op registry's functions (plain exp, log) before the grammar's primitives.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import sympy as sp
import torch

from gpact import ops
from gpact.errors import FormulaError
from gpact.expr.flops import count_flops
from gpact.expr.formula import parse
from gpact.expr.gate import excerpt
from gpact.expr.grammar import Grammar
from gpact.expr.symbolic import ARGS, X, display, node_to_sympy
from gpact.expr.timebox import Timeout, time_limit
from gpact.expr.torchfn import to_torch
from gpact.expr.trees import Analysis, analyse, simplify

CHECK_POINTS = tuple(-8.0 + 0.1 * i + 0.0123 for i in range(161))  # off the usual kinks (0, 1, pi)
INTEGRATE_SECONDS = 5.0  # sympy's integrate can run for minutes; the search rejects what takes longer
# Why an integral is refused, as the search counts them (`gpact run --evolve derivative`).
REASONS = {
    "integral_timeout": "sympy did not finish within the time box",
    "integral_not_closed": "no closed form (sympy left an integral, or a special function gpact lacks)",
    "integral_piecewise": "a piece boundary gpact cannot write with max/min",
    "integral_not_real": "the integral is not real-valued",
    "integral_mismatch": "sympy's integral does not differentiate back to the derivative",
}


class IntegrationError(FormulaError):
    """A derivative whose integral gpact cannot use; `reason` is a key of REASONS."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Integral:
    """A designed derivative and the activation it integrates to (f(0) = 0), as `gpact integrate` prints it."""

    derivative: sp.Expr
    activation: sp.Expr
    flops: float

    @property
    def formula(self) -> str:
        """The activation as text that `gpact eval` reads back (constants at full precision)."""
        return formula_text(self.activation)


def formula_text(expr: sp.Expr) -> str:
    """Text for a formula that reads back as the same function: numbers as Python prints floats (0.8, not 4/5:
    a grammar may read `/` as its protected division), the shortest digits that round-trip."""
    swaps = {n: sp.Float(repr(float(n)), 17) for n in expr.atoms(sp.Number) if not n.is_Integer}
    return sp.sstr(expr.xreplace(swaps), full_prec=False).replace("Abs(", "abs(")


def integrate(derivative: sp.Expr, grammar: Grammar | None = None, seconds: float = INTEGRATE_SECONDS) -> sp.Expr:
    """The activation f with f' = `derivative` and f(0) = 0, over the op registry's functions.

    `grammar`: expands its named primitives (gelu, relu) into their definitions first.
    """
    try:
        return _integrate(_expand_named(derivative, grammar), seconds)
    except (RecursionError, TypeError, ValueError, NotImplementedError, ZeroDivisionError, AttributeError) as exc:
        # sympy's own failures, anywhere on the way: a refused tree, never a crashed run
        raise IntegrationError("integral_not_closed", f"sympy failed on it ({type(exc).__name__})") from None


def _integrate(expr: sp.Expr, seconds: float) -> sp.Expr:
    if X not in expr.free_symbols:  # a constant slope c: f = c*x (sympy would do the same, slower)
        return _finish(expr * X)
    if not expr.is_real and expr.is_real is not None:
        raise IntegrationError("integral_not_real", "the derivative is not real-valued")
    try:
        with time_limit(seconds):
            pieces = sp.piecewise_fold(expr.rewrite(sp.Piecewise))
            result = sp.integrate(pieces, X)
    except Timeout:
        raise IntegrationError("integral_timeout", f"sympy did not integrate it within {seconds:g} s") from None
    if result.has(sp.Integral):
        raise IntegrationError("integral_not_closed", f"no closed form: sympy left {excerpt(str(result))}")
    f = _finish(result.replace(lambda e: isinstance(e, sp.Piecewise), _clamped))
    _check_slope(f, expr)
    return f


def _finish(f: sp.Expr) -> sp.Expr:
    """Fix f(0) = 0, simplify, fold constant subexpressions to numbers, and check that gpact can run it."""
    if f.has(sp.I, sp.zoo, sp.nan, sp.oo):
        raise IntegrationError("integral_not_real", f"the integral is not a real function: {excerpt(str(f))}")
    at_zero = f.subs(X, 0)
    try:
        finite = math.isfinite(float(at_zero))
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise IntegrationError("integral_not_real", f"the integral has no finite value at 0: {excerpt(str(f))}")
    f = _numbers(simplify(f - at_zero))
    try:
        to_torch(f)
    except FormulaError as exc:
        raise IntegrationError("integral_not_closed", f"no closed form over gpact's ops ({exc})") from None
    return f


def _check_slope(f: sp.Expr, derivative: sp.Expr) -> None:
    """Refuse an integral whose slope is not the derivative on CHECK_POINTS (autograd, float64): sympy can get
    piecewise integrals wrong (max(sin(x), 0) solved over one period only)."""
    xs = torch.tensor(CHECK_POINTS, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        want = to_torch(derivative)(xs.detach())
    (slope,) = torch.autograd.grad(to_torch(f)(xs).sum(), xs)
    ok = torch.isfinite(want) & torch.isfinite(slope)
    bad = ok & ((slope - want).abs() > 1e-6 * (1 + want.abs()))
    if bad.any():
        i = int(bad.nonzero()[0])
        raise IntegrationError("integral_mismatch", f"sympy's integral has slope {float(slope[i]):.6g} at x = "
                                                    f"{CHECK_POINTS[i]:.4g}, not {float(want[i]):.6g}")


def _numbers(f: sp.Expr) -> sp.Expr:
    """Constant subexpressions (log(2), sqrt(pi)) as Floats, so that they cost no FLOPs; exact numbers stay."""
    swaps = {}
    for e in sp.preorder_traversal(f):
        if not e.is_Atom and not e.free_symbols and not e.is_Number and e not in swaps:
            value = complex(e.evalf(17))
            if value.imag != 0 or not math.isfinite(value.real):
                raise IntegrationError("integral_not_real", f"constant {excerpt(str(e))} is not a real number")
            swaps[e] = sp.Float(value.real, 17)
    return f.xreplace(swaps) if swaps else f


def _expand_named(expr: sp.Expr, grammar: Grammar | None) -> sp.Expr:
    """Named primitives (gelu(x), relu(relu(x))) spelled out by their grammar definitions, innermost first, so
    sympy sees their math."""
    if grammar is None or not expr.atoms(sp.core.function.AppliedUndef):
        return expr

    def spell(e: sp.Expr) -> sp.Expr:
        if not e.args:
            return e
        args = [spell(a) for a in e.args]
        if isinstance(e, sp.core.function.AppliedUndef):
            prim = grammar.primitives.get(str(e.func))
            if prim is None or prim.definition is None:
                raise IntegrationError("integral_not_closed", f"primitive '{e.func}' has no sympy definition")
            return prim.definition.xreplace(dict(zip(ARGS, args, strict=False)))
        return e.func(*args)

    return spell(expr)


def _clamped(pw: sp.Piecewise) -> sp.Expr:
    """A piecewise function of x with pieces split at points, written with max/min (see the module docstring)."""
    (first, cond), *rest = pw.args
    if cond == sp.true:
        return first
    if not rest:
        raise IntegrationError("integral_piecewise", f"the integral is undefined outside {excerpt(str(cond))}")
    other = sp.Piecewise(*rest)  # one (expr, True) pair is that expr already
    other = _clamped(other) if isinstance(other, sp.Piecewise) else other
    side, c = _split(cond)
    left, right = (first, other) if side == "left" else (other, first)
    lo, hi = left.subs(X, sp.Min(X, c)), right.subs(X, sp.Max(X, c))
    try:
        gap = float(left.subs(X, c) - right.subs(X, c))
    except (TypeError, ValueError):
        gap = math.nan
    if math.isfinite(gap) and abs(gap) <= 1e-12 * max(1.0, abs(float(right.subs(X, c)))):
        return lo + hi - right.subs(X, c)
    step = ops.get("heaviside")  # a jump: each side weighted by the registry's step (1/2 each at c)
    return lo * step.sympy(c - X, *step.sympy_extra) + hi * step.sympy(X - c, *step.sympy_extra)


def _split(cond: sp.Basic) -> tuple[str, sp.Expr]:
    """("left", c) for x < c or x <= c, ("right", c) for x > c or x >= c; anything else is refused."""
    if isinstance(cond, sp.core.relational.Relational) and not isinstance(cond, sp.Eq | sp.Ne):
        lhs, rhs, kind = cond.lhs, cond.rhs, type(cond)
        if rhs == X and lhs.is_number:
            lhs, rhs, kind = rhs, lhs, cond.reversed.func
        if lhs == X and rhs.is_number and rhs.is_real:
            return ("left" if kind in (sp.StrictLessThan, sp.LessThan) else "right"), rhs
    raise IntegrationError("integral_piecewise", f"piece condition {excerpt(str(cond))} is not x against a number")


# ---------------------------------------------------------------------------------------------------------
# text entry


def read_derivative(text: str, grammar: Grammar | None = None) -> sp.Expr:
    """A derivative formula -> sympy: through the text gate; registry functions (exp, log, heaviside, max) mean
    themselves, other names the grammar's primitives (sigmoid, softplus, gelu), spelled out."""
    named = {} if grammar is None else {
        p.name: p.arity for p in grammar.primitives.values() if ops.for_formula(p.name) is None}
    expr = node_to_sympy(parse(text), {"x": X}, named)
    return _expand_named(expr, grammar)


def integrate_formula(text: str, grammar: Grammar | None = None, seconds: float = INTEGRATE_SECONDS) -> Integral:
    """`gpact integrate`: the activation whose derivative is `text`, with f(0) = 0, and its FLOPs.

    Errors (FormulaError; IntegrationError when sympy gives no usable integral) are one line quoting the text."""
    try:
        derivative = read_derivative(text, grammar)
        activation = integrate(derivative, grammar, seconds)
    except IntegrationError as exc:
        raise IntegrationError(exc.reason, f"cannot integrate {excerpt(text)}: {exc}") from None
    except FormulaError as exc:
        raise FormulaError(f"gradient {excerpt(text)}: {exc}") from None
    return Integral(derivative, activation, count_flops(activation, grammar.costs if grammar else None))


# ---------------------------------------------------------------------------------------------------------
# search entry


def analyse_integral(derivative: sp.Expr, grammar: Grammar, seconds: float = INTEGRATE_SECONDS) -> Analysis:
    """A search tree read as a derivative: the analysis of its integral, with the derivative attached; a tree
    whose integral gpact cannot use gets `failure` set (the run's validity rule rejects it, counting why)."""
    shown = display(simplify(derivative))
    try:
        f = integrate(derivative, grammar, seconds)
    except IntegrationError as exc:
        try:
            flops = count_flops(derivative, grammar.costs)
        except FormulaError:
            flops = 0.0
        return Analysis(formula=f"integral of {shown}", expr=derivative, key=f"no-integral:{shown}", flops=flops,
                        derivative=shown, failure=exc.reason)
    return dataclasses.replace(analyse(f, grammar, simplified=True), derivative=shown)
