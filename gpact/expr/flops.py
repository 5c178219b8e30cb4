"""FLOPs per element of a formula, from per-operation costs (the grammar's, else these defaults).

Counted on the sympy form the evaluator will run, so a simplified candidate is charged for what it
computes, not for how the tree that produced it was written.
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from gpact.errors import FormulaError

# Rough per-element costs in scalar FLOPs; transcendental functions count as several.
DEFAULT_COSTS: dict[str, float] = {
    "+": 1, "-": 1, "*": 1, "/": 1, "neg": 1, "**": 8, "**2": 1, "**3": 2, "sqrt": 2,
    "exp": 4, "log": 4, "sin": 4, "cos": 4, "tan": 6, "tanh": 5, "sinh": 5, "cosh": 5,
    "asinh": 6, "atan": 6, "erf": 6, "erfc": 6, "Abs": 1, "sign": 1, "Max": 1, "Min": 1,
    "Heaviside": 1, "sinc": 6,
}  # fmt: skip


def count_flops(expr: sp.Expr, costs: Mapping[str, float] = DEFAULT_COSTS) -> float:
    """Sum of operation costs over the expression tree (shared subexpressions counted each time)."""

    def cost(key: str) -> float:
        if key in costs:
            return float(costs[key])
        if key in DEFAULT_COSTS:
            return float(DEFAULT_COSTS[key])
        raise FormulaError(f"no FLOP cost known for '{key}'")

    def walk(e: sp.Expr) -> float:
        if e.is_Atom:
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
