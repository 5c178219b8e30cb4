"""One mapping table from formula names to sympy, shared by grammar definitions and formulas.

Grammar definitions may use only these sympy builtins (plus numbers and their own arguments); every
other name in a formula must be a grammar primitive. `X` is the one input variable, real-valued so
that sympy can simplify |x|**2 -> x**2 without leaving complex parts behind.
"""

from __future__ import annotations

import math

import sympy as sp

from gpact.errors import FormulaError
from gpact.expr.formula import Node, Num, Var

X = sp.Symbol("x", real=True)
ARGS = sp.symbols("a b c", real=True)

BUILTINS: dict[str, sp.FunctionClass] = {
    "exp": sp.exp,
    "log": sp.log,
    "sin": sp.sin,
    "cos": sp.cos,
    "tan": sp.tan,
    "tanh": sp.tanh,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "asinh": sp.asinh,
    "atan": sp.atan,
    "erf": sp.erf,
    "erfc": sp.erfc,
    "sqrt": sp.sqrt,
    "Abs": sp.Abs,
    "sign": sp.sign,
    "Max": sp.Max,
    "Min": sp.Min,
    "Heaviside": sp.Heaviside,
}
# Spellings from numpy / torch / plain Python that mean a builtin above.
SPELLINGS = {
    "abs": "Abs",
    "absolute": "Abs",
    "max": "Max",
    "maximum": "Max",
    "min": "Min",
    "minimum": "Min",
    "arcsinh": "asinh",
    "arctan": "atan",
    "heaviside": "Heaviside",
}
NAMED_CONSTANTS = {"pi": sp.pi, "e": sp.E, "E": sp.E}

OPERATORS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
    "neg": lambda a: -a,
}


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


def node_to_sympy(node: Node, variables: dict[str, sp.Symbol]) -> sp.Expr:
    """Build sympy from a call tree that uses only operators, builtins and the given variables."""
    if isinstance(node, Num):
        return number(node.value)
    if isinstance(node, Var):
        if node.name in variables:
            return variables[node.name]
        if node.name in NAMED_CONSTANTS:
            return NAMED_CONSTANTS[node.name]
        raise FormulaError(f"unknown name '{node.name}'")
    args = [node_to_sympy(a, variables) for a in node.args]
    if node.name in OPERATORS:
        return OPERATORS[node.name](*args)
    name = SPELLINGS.get(node.name, node.name)
    if name not in BUILTINS:
        raise FormulaError(f"unknown function '{node.name}' (allowed: {', '.join(sorted(BUILTINS))})")
    try:
        return BUILTINS[name](*args)
    except TypeError:
        raise FormulaError(f"wrong number of arguments for '{node.name}'") from None


def display(expr: sp.Expr, digits: int = 4) -> str:
    """Readable text for a formula: rationals shown as short decimals, e.g. `0.1*sin(x) + gelu(x)`."""
    swaps = {r: sp.Float(r, digits) for r in expr.atoms(sp.Rational) if not r.is_Integer}
    swaps.update({f: sp.Float(f, digits) for f in expr.atoms(sp.Float)})
    text = str(expr.xreplace(swaps))
    return text.replace("Abs(", "abs(")
