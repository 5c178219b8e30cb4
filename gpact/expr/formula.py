"""Safe formula parser: text -> a small neutral call tree, via Python's `ast` and a whitelist.

Nothing is ever `eval`ed. Grammar definitions, user formulas and LLM answers all enter through
`parse`, so this is the one gate that untrusted text passes. Operators become calls with the
reserved names `+ - * / ** neg`; dotted names such as `torch.sin` or `F.gelu` keep their last part
when the prefix is a known numeric namespace, so a function written for torch, numpy or jax reads
the same as a formula.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

from gpact.errors import FormulaError
from gpact.expr.gate import MAX_CHARS, MAX_NODES, excerpt, read_expression

__all__ = ["MAX_CHARS", "MAX_NODES", "NAMESPACES", "Call", "Node", "Num", "Var", "parse", "to_text"]

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
# Prefixes accepted before a function name: `torch.nn.functional.gelu` -> `gelu`.
NAMESPACES = frozenset(
    {"torch", "nn", "functional", "F", "special", "np", "numpy", "jnp", "jax", "math", "sp", "sympy", "scipy"}
)


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]


Node = Var | Num | Call


def parse(text: str) -> Node:
    """Parse one expression; raise FormulaError with a short reason on anything not whitelisted.

    The text is bounded (length, nodes, depth: `gate.read_expression`) before the recursive conversion.
    """
    return _convert(read_expression(text))


def _convert(node: ast.AST) -> Node:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise FormulaError(f"only numbers are allowed as constants, not {excerpt(node.value)}")
        try:
            value = float(node.value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise FormulaError(f"number {excerpt(node.value)} is too large for a float")
        return Num(value)
    if isinstance(node, ast.Name):
        return Var(node.id)
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.UAdd):
            return _convert(node.operand)
        if isinstance(node.op, ast.USub):
            inner = _convert(node.operand)
            return Num(-inner.value) if isinstance(inner, Num) else Call("neg", (inner,))
        raise FormulaError(f"operator {type(node.op).__name__} is not allowed")
    if isinstance(node, ast.BinOp):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise FormulaError(f"operator {type(node.op).__name__} is not allowed")
        return Call(op, (_convert(node.left), _convert(node.right)))
    if isinstance(node, ast.Call):
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise FormulaError("keyword and star arguments are not allowed")
        return Call(_function_name(node.func), tuple(_convert(a) for a in node.args))
    raise FormulaError(f"{type(node).__name__} is not allowed in a formula")


def _function_name(func: ast.AST) -> str:
    if isinstance(func, ast.Name):
        return func.id
    parts: list[str] = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
        name, *prefix = parts
        if all(p in NAMESPACES for p in prefix):
            return name
    raise FormulaError("only plain function names (or torch./np./jnp./F. prefixes) may be called")


def to_text(node: Node) -> str:
    """Print a call tree back as a formula (fully parenthesised binary operators)."""
    if isinstance(node, Var):
        return node.name
    if isinstance(node, Num):
        return repr(node.value) if node.value >= 0 else f"({node.value!r})"
    if node.name == "neg":
        return f"(-{to_text(node.args[0])})"
    if node.name in _BINOPS.values():
        return f"({to_text(node.args[0])} {node.name} {to_text(node.args[1])})"
    return f"{node.name}({', '.join(to_text(a) for a in node.args)})"
