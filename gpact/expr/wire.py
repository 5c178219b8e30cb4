"""Wire text: a formula as exact prefix text and back, for work shipped to worker processes and Ray actors.

`expr_to_text` writes a sympy expression so that `text_to_expr` rebuilds the very same tree (argument order,
exact Floats), and a worker compiles the same torch function as the main process. `text_to_expr` is a text
gate: it walks Python's `ast` with a whitelist (sympy classes, named primitives, numbers) and builds sympy
objects unevaluated; nothing is eval'ed.
"""

from __future__ import annotations

import ast

import sympy as sp
from sympy.core.function import UndefinedFunction

from gpact.errors import FormulaError
from gpact.expr.gate import MAX_DEPTH, excerpt, read_expression
from gpact.expr.symbolic import TRAINABLE, TRAINABLE_NAME, X

# Wire text is longer than a formula (exact Floats, prefix form), but as bounded: it rebuilds one candidate.
MAX_WIRE_CHARS = 100_000
MAX_WIRE_NODES = 20_000
MAX_FLOAT_EXP = 4096  # binary exponent of a shipped Float; a float64 has at most 1074
MAX_FLOAT_PREC = 1024

_NUMBER_SYMBOLS = {"pi": sp.pi, "E": sp.E, "oo": sp.oo, "zoo": sp.zoo, "nan": sp.nan, "EulerGamma": sp.EulerGamma,
                   "GoldenRatio": sp.GoldenRatio, "Catalan": sp.Catalan}
_SYMBOL_NAMES = {v: k for k, v in _NUMBER_SYMBOLS.items()}


def expr_to_text(expr: sp.Expr) -> str:
    """A formula as exact prefix text, e.g. `Add(Mul(Rational(1, 10), sin(x)), gelu(x))`.

    Unlike `str(expr)`, the text rebuilds the very same expression tree (argument order, exact Floats),
    so a worker compiles the same torch function as this process and gets bit-identical losses.
    """
    if expr == X:
        return "x"
    if isinstance(expr, sp.Integer):
        return str(int(expr))
    if isinstance(expr, sp.Rational):
        return f"Rational({expr.p}, {expr.q})"
    if isinstance(expr, sp.Float):
        sign, man, exp, _ = expr._mpf_
        if not man and exp:  # mpmath's inf / nan encodings
            raise FormulaError(f"cannot ship the float {expr} to a worker")
        return f"Float({-man if sign else man}, {exp}, {expr._prec})"
    if expr in _SYMBOL_NAMES:
        return _SYMBOL_NAMES[expr]
    func = expr.func
    name = func.__name__
    if isinstance(func, UndefinedFunction):  # a named grammar primitive, gelu(x)
        head = f"Function({name!r})" if name in _reserved() else name
    elif getattr(sp, name, None) is func:
        head = name
    else:
        raise FormulaError(f"cannot ship {type(expr).__name__} in {expr} to a worker")
    return f"{head}({', '.join(expr_to_text(a) for a in expr.args)})"


def text_to_expr(text: str) -> sp.Expr:
    """Inverse of `expr_to_text`: walks Python's `ast`, builds sympy objects unevaluated; nothing is eval'ed."""
    tree = read_expression(text, "formula text", MAX_WIRE_CHARS, MAX_WIRE_NODES, MAX_DEPTH)
    return _build(tree)


def _build(node: ast.AST) -> sp.Expr:
    if isinstance(node, ast.Name):
        if node.id == "x":
            return X
        if node.id in _NUMBER_SYMBOLS:
            return _NUMBER_SYMBOLS[node.id]
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        return sp.Integer(node.value)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -_build(node.operand)
    elif isinstance(node, ast.Call) and not node.keywords:
        if isinstance(node.func, ast.Call):  # Function('name')(args): a primitive named like a sympy class
            inner = node.func
            if (isinstance(inner.func, ast.Name) and inner.func.id == "Function" and len(inner.args) == 1
                    and isinstance(inner.args[0], ast.Constant) and isinstance(inner.args[0].value, str)):
                return sp.Function(inner.args[0].value)(*map(_build, node.args))
        elif isinstance(node.func, ast.Name):
            name, args = node.func.id, node.args
            if name == "Rational" and len(args) == 2:
                return sp.Rational(int(_build(args[0])), int(_build(args[1])))
            if name == "Float" and len(args) == 3:
                man, exp, prec = (int(_build(a)) for a in args)
                if abs(exp) > MAX_FLOAT_EXP or not 1 <= prec <= MAX_FLOAT_PREC:
                    raise FormulaError(f"Float exponent or precision out of range in formula text: {exp}, {prec}")
                return sp.Float(sp.Integer(man) * sp.Integer(2) ** exp, precision=prec)
            cls = getattr(sp, name, None)
            built = [_build(a) for a in args]
            if isinstance(cls, type) and issubclass(cls, sp.Basic):
                return cls(*built, evaluate=False)
            if name == TRAINABLE_NAME:
                return TRAINABLE(*built)
            if name.isidentifier() and cls is None:
                return sp.Function(name)(*built)
    raise FormulaError(f"unexpected {excerpt(ast.dump(node))} in formula text")


def _reserved() -> set[str]:
    return {"x", "Rational", "Float", "Function", *_NUMBER_SYMBOLS, *(n for n in dir(sp) if not n.startswith("_"))}


def ship(expr: sp.Expr) -> str | None:
    """The text for `expr` if it rebuilds exactly, else None (that candidate is then evaluated here)."""
    try:
        text = expr_to_text(expr)
        return text if text_to_expr(text) == expr else None
    except (FormulaError, TypeError, ValueError, RecursionError):
        return None
