"""FLOPs per element of a formula, from per-operation costs (the grammar's, else the op registry's).

Counted on the sympy form the evaluator will run, so a simplified candidate is charged for what it
computes, not for how the tree that produced it was written.
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from gpact import ops
from gpact.errors import FormulaError
from gpact.expr.symbolic import is_trainable


def count_flops(expr: sp.Expr, costs: Mapping[str, float] | None = None) -> float:
    """Sum of operation costs over the expression tree (shared subexpressions counted each time).

    `costs` (a grammar's) override the op registry's defaults (`gpact.ops.costs`).
    """
    defaults = ops.costs()
    costs = costs or {}

    def cost(key: str) -> float:
        if key in costs:
            return float(costs[key])
        if key in defaults:
            return float(defaults[key])
        raise FormulaError(f"no FLOP cost known for '{key}'")

    def walk(e: sp.Expr) -> float:
        if e.is_Atom or is_trainable(e):  # a trainable constant is read, not computed
            return 0.0
        if e.is_Add:
            total = (len(e.args) - 1) * cost("+")
            for a in e.args:  # a - b is Add(a, -b): the negation is the subtraction, not extra work
                total += walk(-a) if _is_negated(a) else walk(a)
            return total
        if e.is_Mul:
            coeff, rest = e.as_coeff_Mul()
            if coeff == -1:
                return cost("neg") + walk(rest)
            factors = sp.Mul.make_args(e)
            return (len(factors) - 1) * cost("*") + sum(walk(f) for f in factors)
        if e.is_Pow:
            return _pow_cost(e, cost) + walk(e.base) + walk(e.exp)
        name = str(e.func)
        times = len(e.args) - 1 if e.func in (sp.Max, sp.Min) else 1  # n-ary max is n-1 comparisons
        return cost(name) * times + sum(walk(a) for a in e.args)

    return walk(expr)


def _is_negated(e: sp.Expr) -> bool:
    return e.is_Mul and e.as_coeff_Mul()[0].is_negative


def _pow_cost(e: sp.Pow, cost) -> float:
    n = e.exp
    if n == 2:
        return cost("**2")
    if n == 3:
        return cost("**3")
    if n.is_Integer and n > 0:
        return (int(n) - 1) * cost("*")
    if n == -1:
        return cost("/")
    if n.is_Integer and n < 0:
        return cost("/") + (int(-n) - 1) * cost("*")
    if n == sp.Rational(1, 2):
        return cost("sqrt")
    if n == sp.Rational(-1, 2):
        return cost("sqrt") + cost("/")
    return cost("**")
