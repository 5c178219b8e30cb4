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
from gpact.expr.formula import Call, Node, Num, Var, parse, to_text
from gpact.expr.gate import MAX_DIGITS, excerpt

X = sp.Symbol("x", real=True)
ARGS = sp.symbols("a b c", real=True)

NAMED_CONSTANTS = {"pi": sp.pi, "e": sp.E, "E": sp.E}

TRAINABLE_NAME = "p"
TRAINABLE = sp.Function(TRAINABLE_NAME, real=True)
"""A trainable constant: `p(0.8)` is a number each network learns per layer, starting at 0.8.

An applied undefined function keeps its start value inside it, so the text gate, sympy's canonical form and
printing carry it unchanged. A constant is named by its start value: two `p(0.8)` are one parameter; a tag
tells apart constants that start equal, `p(0.8, 1)` (a whole number >= 1)."""


def is_trainable(e: sp.Expr) -> bool:
    return getattr(e, "func", None) == TRAINABLE


def trainables(expr: sp.Expr) -> tuple[sp.Expr, ...]:
    """The trainable constants of a formula in their one order (by start value): parameter j is entry j."""
    return tuple(sorted((a for a in expr.atoms(sp.Function) if is_trainable(a)),
                        key=lambda a: (float(a.args[0]), int(a.args[1]) if len(a.args) > 1 else 0)))


def start_values(expr: sp.Expr) -> tuple[float, ...]:
    return tuple(float(a.args[0]) for a in trainables(expr))


def with_values(expr: sp.Expr, values: tuple[float, ...] | None = None) -> sp.Expr:
    """The formula with its trainable constants fixed: at their start values, or at `values` (in `trainables` order)."""
    params = trainables(expr)
    if not params:
        return expr
    vals = [a.args[0] for a in params] if values is None else [number(v) for v in values]
    return expr.xreplace(dict(zip(params, vals, strict=True)))


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
    if node.name == TRAINABLE_NAME:
        return trainable(node)
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


def trainable(node: Node) -> sp.Expr:
    """`p(0.8)` -> TRAINABLE(4/5), `p(0.8, 1)` -> TRAINABLE(4/5, 1): a start value, and optionally a tag."""
    args = node.args
    if not 1 <= len(args) <= 2 or not all(isinstance(a, Num) for a in args):
        raise FormulaError(f"{TRAINABLE_NAME}(...) takes one number, its start value: {TRAINABLE_NAME}(0.8) "
                           f"(or a start value and a tag, {TRAINABLE_NAME}(0.8, 1))")
    if len(args) == 1 or args[1].value == 0:
        return TRAINABLE(number(args[0].value))
    tag = args[1].value
    if not (tag.is_integer() and 1 <= tag <= 1000):
        raise FormulaError(f"the tag of {TRAINABLE_NAME}(value, tag) is a whole number from 1 to 1000, "
                           f"not {excerpt(tag)}")
    return TRAINABLE(number(args[0].value), sp.Integer(int(tag)))


def tag_of(e: sp.Expr) -> int:
    """A trainable constant's tag (0: none)."""
    return int(e.args[1]) if len(e.args) > 1 else 0


def trainable_text(text: str) -> str:
    """A formula with every number written as a trainable constant, p(number), except exponents and numbers already
    inside p(...); the text unchanged when it has none."""
    def lift(node: Node, exponent: bool = False) -> Node:
        if isinstance(node, Num):
            return node if exponent else Call(TRAINABLE_NAME, (node,))
        if isinstance(node, Call) and node.name != TRAINABLE_NAME:
            return Call(node.name, tuple(lift(a, node.name == "**" and i == 1) for i, a in enumerate(node.args)))
        return node

    tree = parse(text)
    lifted = lift(tree)
    return text if lifted == tree else to_text(lifted)


def display(expr: sp.Expr, digits: int = 4) -> str:
    """Readable text for a formula: rationals shown as short decimals, e.g. `0.1*sin(x) + gelu(x)`."""
    swaps = {r: sp.Float(r, digits) for r in expr.atoms(sp.Rational) if not r.is_Integer}
    swaps.update({f: sp.Float(f, digits) for f in expr.atoms(sp.Float)})
    text = str(expr.xreplace(swaps))
    return text.replace("Abs(", "abs(")
