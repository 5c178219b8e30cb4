"""Size bounds for text on its way to a tree: length, nesting depth, node count, and short quotes in errors.

Python's parser, and every recursive walk after it (ours, sympy's, torch's), meets deep or huge input with
RecursionError or MemoryError, or takes minutes. So each text is measured first (length before parsing, then
depth and node count by one iterative walk of the parsed `ast`), and refused with a one-line FormulaError
while that is still cheap. Formulas (`formula.parse`), wire text (`wire.text_to_expr`) and LLM answers
(`llm_parse`) all pass here; error messages quote untrusted values only through `excerpt`.
"""

from __future__ import annotations

import ast
from typing import Any

from gpact.errors import FormulaError

MAX_CHARS = 4000  # a formula's text
MAX_NODES = 2000  # Python syntax nodes in one formula
MAX_DEPTH = 100  # nesting of syntax nodes: deep enough for any real formula, shallow for every recursive walk
MAX_DIGITS = 1000  # digits of an exact number that a formula may make sympy compute (9**9**9 has 370 million)
EXCERPT_CHARS = 60


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """`repr(value)` cut to about `limit` characters, for quoting untrusted input in one error line."""
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[: 4 * limit]  # repr of a megabyte string is not needed to quote its start
    text = repr(value) if isinstance(value, str | int | float | bool | type(None)) else _short_repr(value, limit)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_repr(value: Any, limit: int, depth: int = 0) -> str:
    """repr of a container without expanding it whole (it may share itself exponentially, YAML aliases)."""
    if depth > 2:
        return "..."
    if isinstance(value, list | tuple):
        items = [_short_repr(v, limit, depth + 1) for v in value[:4]]
        return "[" + ", ".join(items) + (", ...]" if len(value) > 4 else "]")
    if isinstance(value, dict):
        pairs = [f"{_short_repr(k, limit, depth + 1)}: {_short_repr(v, limit, depth + 1)}"
                 for k, v in list(value.items())[:4]]
        return "{" + ", ".join(pairs) + (", ...}" if len(value) > 4 else "}")
    if isinstance(value, str | int | float | bool | type(None)):
        return excerpt(value, limit)
    return f"<{type(value).__name__}>"


def read_expression(text: str, what: str = "formula", max_chars: int = MAX_CHARS,
                    max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> ast.expr:
    """Python's syntax tree of one expression, refused (FormulaError) if too long, too big or too deep."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError(f"empty {what}")
    if len(text) > max_chars:
        raise FormulaError(f"{what} longer than {max_chars} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"cannot parse {excerpt(text.strip())}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, digit limits, parser stack
        raise FormulaError(f"cannot parse {excerpt(text.strip())}: {type(exc).__name__}") from None
    check_tree(tree.body, what, max_nodes, max_depth)
    return tree.body


def check_tree(tree: ast.AST, what: str = "formula", max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> None:
    """Refuse a syntax tree with more than `max_nodes` nodes or deeper than `max_depth`, walking without recursion."""
    stack, count = [(tree, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > max_nodes:
            raise FormulaError(f"{what} has more than {max_nodes} syntax nodes")
        if depth > max_depth:
            raise FormulaError(f"{what} nests deeper than {max_depth} levels")
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool) \
                and node.value.bit_length() > MAX_DIGITS * 10 // 3:
            raise FormulaError(f"{what} has a number with more than {MAX_DIGITS} digits")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
