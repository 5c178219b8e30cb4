"""Formula call trees -> sympy, for grammar definitions and formulas.

Grammar definitions may use only the op registry's formula functions (`gpact.ops`: exp, Abs, Max, ...,
with their other spellings), numbers and their own arguments; every other name in a formula must be a
grammar primitive. `X` is the one input variable, real-valued so
that sympy can simplify |x|**2 -> x**2 without leaving complex parts behind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import sympy as sp

from gpact import ops
from gpact.errors import FormulaError
from gpact.expr.formula import Node, Num, Var
from gpact.expr.gate import MAX_DIGITS, excerpt

X = sp.Symbol("x", real=True)
ARGS = sp.symbols("a b c", real=True)

NAMED_CONSTANTS = {"pi": sp.pi, "e": sp.E, "E": sp.E}


def power(base: sp.Expr, exponent: sp.Expr) -> sp.Expr:
    """`base**exponent`, refusing exact numbers sympy would compute digit by digit (9**9**9 never returns)."""
    if base.is_Rational and exponent.is_Rational and abs(base) not in (0, 1):
        digits = abs(exponent.p) * max(len(str(abs(base.p))), len(str(base.q)))
        if digits > MAX_DIGITS:
            raise FormulaError(f"the power {sp.sstr(base)[:20]}**{sp.sstr(exponent)[:20]} has more than "
                               f"{MAX_DIGITS} digits")
    return base**exponent


OPERATORS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": power,
    "neg": lambda a: -a,
}


def canonical_name(name: str) -> str:
    """The sympy name of a formula function written another way ("abs" -> "Abs"); other names unchanged."""
    op = ops.for_formula(name)
    return op.key if op is not None else name


def number(value: float) -> sp.Expr:
    """A constant as an exact rational when it has a short decimal form, so simplification stays exact."""
    if not math.isfinite(value):
        raise FormulaError(f"constant {value} is not finite")
    if float(value).is_integer():
        return sp.Integer(int(value))
    text = repr(float(value))
    if "e" in text or len(text) > 12:
        return sp.Float(value)
    return sp.Rational(text)


def node_to_sympy(node: Node, variables: dict[str, sp.Symbol], named: Mapping[str, int] | None = None) -> sp.Expr:
    """Build sympy from a call tree that uses only operators, builtins and the given variables.

    `named`: function names kept as named sympy functions, with their arity (a grammar's named primitives, as
    a printed formula shows them: `gelu(x)`); they take precedence over builtins of the same name.
    """
    if isinstance(node, Num):
        return number(node.value)
    if isinstance(node, Var):
        if node.name in variables:
            return variables[node.name]
        if node.name in NAMED_CONSTANTS:
            return NAMED_CONSTANTS[node.name]
        raise FormulaError(f"unknown name {excerpt(node.name)}")
    args = [node_to_sympy(a, variables, named) for a in node.args]
    if node.name in OPERATORS:
        return OPERATORS[node.name](*args)
    if named and node.name in named:
        if len(args) != named[node.name]:
            raise FormulaError(f"{excerpt(node.name)} takes {named[node.name]} argument(s), got {len(args)}")
        return sp.Function(node.name)(*args)
    op = ops.for_formula(node.name)
    if op is None:
        raise FormulaError(f"unknown function {excerpt(node.name)} (allowed: {', '.join(ops.formula_names())})")
    try:
        return op.sympy(*args)
    except TypeError:
        raise FormulaError(f"wrong number of arguments for {excerpt(node.name)}") from None


def display(expr: sp.Expr, digits: int = 4) -> str:
    """Readable text for a formula: rationals shown as short decimals, e.g. `0.1*sin(x) + gelu(x)`."""
    swaps = {r: sp.Float(r, digits) for r in expr.atoms(sp.Rational) if not r.is_Integer}
    swaps.update({f: sp.Float(f, digits) for f in expr.atoms(sp.Float)})
    text = str(expr.xreplace(swaps))
    return text.replace("Abs(", "abs(")
