"""LLM answers -> candidate formulas, read with `ast` only; nothing in an answer is ever executed.

An answer may be a JSON list of formulas (bare or in a markdown fence), a Python function
`def activation(x): return ...` written with torch / numpy / jax names, or formulas one per line.
Each candidate ends as formula text that `gpact.expr.formula.parse` (the project's one gate for untrusted
text) accepts; the names of functions the grammar lacks are spelled with ones it has by a small table.
"""

from __future__ import annotations

import ast
import json
import re

from gpact import ops
from gpact.errors import FormulaError
from gpact.expr.formula import MAX_CHARS, MAX_NODES, NAMESPACES, Call, Node, Num, Var, parse, to_text
from gpact.expr.gate import check_tree, read_expression
from gpact.expr.grammar import Grammar
from gpact.expr.symbolic import canonical_name

MAX_ANSWER_CHARS = 100_000  # longer answers are refused whole, before any parsing
MAX_CANDIDATES = 32  # candidates read from one answer at most

_OPERATORS = frozenset({"+", "-", "*", "/", "**", "neg"})
_CONSTANTS = frozenset({"pi", "e"})

# Names from torch / numpy / jax / scipy that a grammar may lack, spelled in smaller terms (args a, b).
# Used only when the grammar has no primitive or alias of that name; results are resolved again. The op
# registry's own ops (sigmoid, gelu, add, ...) are spelled by their registry definitions (`rewrite`).
EXTRA_REWRITES: dict[str, str] = {
    "expit": "sigmoid(a)",
    "logistic": "sigmoid(a)",
    "swish": "silu(a)",
    "relu6": "min(max(a, 0), 6)",
    "hardtanh": "min(max(a, -1), 1)",
    "mish": "a*tanh(softplus(a))",
    "log1p": "log(1 + a)",
    "expm1": "exp(a) - 1",
    "reciprocal": "1/a",
    "square": "a**2",
    "cube": "a**3",
    "fabs": "abs(a)",
    "arctanh": "atanh(a)",
    "power": "a**b",
    "float_power": "a**b",
    "subtract": "a - b",
    "multiply": "a*b",
    "divide": "a/b",
    "true_divide": "a/b",
    "negative": "-a",
}


def rewrite(name: str) -> str | None:
    """How an answer's function `name` is spelled in smaller terms, if gpact knows it."""
    op = next((op for op in ops.TABLE if op.name == name and op.definition), None)
    return op.definition if op is not None else EXTRA_REWRITES.get(name)


_MAX_REWRITE_DEPTH = 4

# Words that mark an answer as an attempt to run code. Only a label for the rejection count: safety
# comes from the whitelist parser, which refuses these constructs whatever they are called.
_HOSTILE = re.compile(r"__\w*__|\b(import|exec|eval|compile|open|system|subprocess|getattr|globals|lambda)\b")
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(```|$)", re.DOTALL)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)]|[a-zA-Z][.)])\s+")
_LHS = re.compile(r"^\s*(?:[a-zA-Z_]\w*\s*\(\s*x\s*\)|y|f|out)\s*=\s*(?!=)")


class CandidateError(FormulaError):
    """A candidate was refused; `reason` is the short label it is counted under."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# ---------------------------------------------------------------------------------------------------------
# answer -> candidate snippets


def extract_candidates(answer: str) -> list[str]:
    """The candidate snippets in an answer, in order: JSON list items, Python functions, or formula lines."""
    if not isinstance(answer, str) or not answer.strip():
        raise CandidateError("empty", "empty answer")
    if len(answer) > MAX_ANSWER_CHARS:
        raise CandidateError("too_long", f"answer longer than {MAX_ANSWER_CHARS} characters")
    text = _THINK.sub("", answer)
    blocks = [m.group(2) for m in _FENCE.finditer(text)] or [text]
    found: list[str] = []
    for block in blocks:
        found += _from_block(block)
    if not found and blocks != [text]:
        found = _from_block(text)
    if not found:
        raise CandidateError(_syntax_reason(text).replace("syntax", "no_candidates"),
                             "no JSON list, Python function or formula found in the answer")
    return found[:MAX_CANDIDATES]


def _from_block(block: str) -> list[str]:
    items = _json_list(block)
    if items is not None:
        return items
    if re.search(r"^\s*def\s", block, re.MULTILINE):
        return _functions(block)
    return _formula_lines(block)


def _json_list(block: str) -> list[str] | None:
    """Items of the first JSON list in the block (strings, or objects with a formula-like field)."""
    decoder = json.JSONDecoder()
    for tries, m in enumerate(re.finditer(r"\[", block)):
        if tries >= 20:
            break
        try:
            value, _ = decoder.raw_decode(block, m.start())
        except (ValueError, RecursionError):
            continue
        if not isinstance(value, list):
            continue
        items = []
        for item in value[:MAX_CANDIDATES]:
            if isinstance(item, dict):
                item = next((item[k] for k in ("formula", "expression", "expr", "code", "function", "f")
                             if isinstance(item.get(k), str)), None)
            if isinstance(item, str) and item.strip():
                items.append(item.strip())
        if items:
            return items
    return _python_list(block)


def _python_list(block: str) -> list[str] | None:
    """A Python list of string literals (`['gelu(x)', 'x']`), read from its syntax tree, never evaluated."""
    start, end = block.find("["), block.rfind("]")
    if start < 0 or end <= start:
        return None
    try:
        node = ast.parse(block[start:end + 1], mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(node, ast.List):
        return None
    items = [e.value.strip() for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return [i for i in items if i][:MAX_CANDIDATES] or None


def _functions(block: str) -> list[str]:
    """Each `def` in a block of Python as its own snippet (the whole block if it does not parse)."""
    start = re.search(r"^[ \t]*(?:import|from|def)\s", block, re.MULTILINE)
    code = block[start.start():] if start else block
    try:
        module = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return [code.strip()]
    lines = code.splitlines()
    return ["\n".join(lines[f.lineno - 1:f.end_lineno]) for f in module.body if isinstance(f, ast.FunctionDef)]


def _formula_lines(block: str) -> list[str]:
    """Lines that read as formulas after dropping bullets, backticks and a leading `f(x) =`."""
    out = []
    for line in block.splitlines():
        line = _LHS.sub("", _BULLET.sub("", line).strip().strip("`"))
        line = line.strip().strip("`\"'").rstrip(",;.").strip("`\"' ")
        if not line or len(line) > MAX_CHARS:
            continue
        try:
            node = parse(line)
        except (FormulaError, RecursionError, MemoryError, ValueError):
            continue
        if _uses_x(node):  # a bare word of prose parses as a name; a formula uses x
            out.append(line)
            if len(out) >= MAX_CANDIDATES:
                break
    return out


def _uses_x(node: Node) -> bool:
    if isinstance(node, Var):
        return node.name == "x"
    return isinstance(node, Call) and any(_uses_x(a) for a in node.args)


# ---------------------------------------------------------------------------------------------------------
# snippet -> formula over the grammar's names


def to_formula(snippet: str, grammar: Grammar) -> str:
    """One snippet (formula or `def f(x): ...`) as formula text in the grammar's names, or CandidateError."""
    if len(snippet) > MAX_CHARS:
        raise CandidateError("too_long", f"candidate longer than {MAX_CHARS} characters")
    try:
        expr = _python_return(snippet) if re.match(r"\s*(?:(?:import|from)\s.*\n\s*)*def\s", snippet) \
            else _expression(snippet)
        node = parse(ast.unparse(_Normalise().visit(expr)))
        renamed = _rename(node, grammar, 0)
        _expanded_size(renamed, MAX_NODES // 2)  # a formula node is 2-5 syntax nodes once printed
        text = to_text(renamed)
    except CandidateError:
        raise
    except FormulaError as exc:
        raise CandidateError(_syntax_reason(snippet), str(exc)) from None
    except (RecursionError, MemoryError, ValueError):
        raise CandidateError("syntax", "candidate nests too deeply") from None
    if len(text) > MAX_CHARS:
        raise CandidateError("too_long", f"candidate longer than {MAX_CHARS} characters once spelled in the "
                             "grammar's terms")
    return text


def _syntax_reason(snippet: str) -> str:
    return "unsafe" if _HOSTILE.search(snippet) else "syntax"


def _expression(snippet: str) -> ast.expr:
    return read_expression(snippet, "candidate")  # bounded: `_Normalise` and `ast.unparse` recurse


def _python_return(snippet: str) -> ast.expr:
    """The returned expression of `def f(x): [docstring] [name = expr ...] return expr`, names inlined."""
    try:
        module = ast.parse(snippet)
    except SyntaxError as exc:
        raise CandidateError(_syntax_reason(snippet), f"cannot parse the Python function: {exc.msg}") from None
    check_tree(module, "the Python function", 4 * MAX_NODES)
    defs = []
    for stmt in module.body:
        if isinstance(stmt, ast.FunctionDef):
            defs.append(stmt)
        elif not isinstance(stmt, ast.Import | ast.ImportFrom) and not _is_docstring(stmt):
            raise CandidateError(_syntax_reason(snippet), f"{type(stmt).__name__} next to the function is not allowed")
    if len(defs) != 1:
        raise CandidateError("syntax", "expected exactly one function")
    fn = defs[0]
    a = fn.args
    if (fn.decorator_list or a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs or a.defaults
            or len(a.args) != 1):
        raise CandidateError("syntax", "the function must take exactly one plain argument, without decorators")
    env: dict[str, tuple[ast.expr, int]] = {a.args[0].arg: (ast.Name("x", ast.Load()), 1)}
    body = [s for s in fn.body if not _is_docstring(s) and not isinstance(s, ast.Import | ast.ImportFrom)]
    for i, stmt in enumerate(body):
        if isinstance(stmt, ast.Return) and i == len(body) - 1 and stmt.value is not None:
            return _inline(stmt.value, env)[0]
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            env[stmt.targets[0].id] = _inline(stmt.value, env)
        elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id in env:
            value = ast.BinOp(ast.Name(stmt.target.id, ast.Load()), stmt.op, stmt.value)
            env[stmt.target.id] = _inline(value, env)
        else:
            raise CandidateError(_syntax_reason(ast.unparse(stmt)[:200]),
                                 f"{type(stmt).__name__} is not allowed in the function (only name = expr and return)")
    raise CandidateError("syntax", "the function does not end with a return")


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _inline(expr: ast.expr, env: dict[str, tuple[ast.expr, int]]) -> tuple[ast.expr, int]:
    """`expr` with assigned names replaced by their values, and its size; refuses to grow past MAX_NODES."""
    size = 0

    class Sub(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name):
            nonlocal size
            if node.id in env:
                value, n = env[node.id]
                size += n
                _check(size)
                return _copy(value)
            size += 1
            return node

        def generic_visit(self, node):
            nonlocal size
            size += 1
            _check(size)
            return super().generic_visit(node)

    out = Sub().visit(_copy(expr))
    return out, size


def _check(size: int) -> None:
    if size > MAX_NODES:
        raise CandidateError("too_long", f"the function's expression has more than {MAX_NODES} nodes once inlined")


def _copy(node: ast.expr) -> ast.expr:
    return ast.parse(ast.unparse(node), mode="eval").body


class _Normalise(ast.NodeTransformer):
    """AST spellings the formula parser does not read: `np.pi`, `torch.clamp(x, min=0)`, `np.clip(x, a, b)`."""

    def visit_Attribute(self, node: ast.Attribute):
        if node.attr in _CONSTANTS and _is_namespace(node.value):
            return ast.Name(node.attr, ast.Load())
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call):
        self.generic_visit(node)
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if name in ("clamp", "clip", "clamp_min", "clamp_max") and node.args and not any(
                isinstance(a, ast.Starred) for a in node.args):
            bounds = {k.arg: k.value for k in node.keywords}
            if set(bounds) - {"min", "max", "a_min", "a_max"}:
                return node
            x, rest = node.args[0], list(node.args[1:])
            if name == "clamp_max":
                lo, hi = None, rest[0] if rest else bounds.get("max")
            else:
                lo = rest[0] if rest else bounds.get("min", bounds.get("a_min"))
                hi = rest[1] if len(rest) > 1 else bounds.get("max", bounds.get("a_max"))
            if lo is not None and not _is_none(lo):
                x = ast.Call(ast.Name("max", ast.Load()), [x, lo], [])
            if hi is not None and not _is_none(hi):
                x = ast.Call(ast.Name("min", ast.Load()), [x, hi], [])
            return x
        return node


def _is_namespace(node: ast.expr) -> bool:
    while isinstance(node, ast.Attribute):
        if node.attr not in NAMESPACES:
            return False
        node = node.value
    return isinstance(node, ast.Name) and node.id in NAMESPACES


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _known(name: str, grammar: Grammar) -> bool:
    return name in _OPERATORS or name in grammar.primitives or grammar.by_alias(canonical_name(name)) is not None


def _rename(node: Node, grammar: Grammar, depth: int) -> Node:
    """Spell functions the grammar lacks with `rewrite` (bounded depth); unknown ones stay for expr to refuse.

    A rewrite that uses its argument twice (softsign: a/(1 + abs(a))) shares the argument's tree instead of
    copying it, so the result is a DAG as small as the answer; `_expanded_size` measures what it would be as
    text before anything is printed (20 nested softsigns would be 2**20 copies of x).
    """
    if not isinstance(node, Call):
        return node
    args = tuple(_rename(a, grammar, depth) for a in node.args)
    template = rewrite(node.name)
    if _known(node.name, grammar) or template is None or depth >= _MAX_REWRITE_DEPTH:
        return Call(node.name, args)
    form = parse(template)
    if len(args) != _arity(form):
        return Call(node.name, args)
    return _substitute(_rename(form, grammar, depth + 1), dict(zip("ab", args, strict=False)))


def _expanded_size(node: Node, limit: int) -> int:
    """Nodes of `node` written out as a tree (shared subtrees counted each time), or CandidateError past `limit`.

    Counted bottom-up once per distinct node object, so the work is the DAG's size, not the tree's.
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(node, False)]
    while stack:
        n, ready = stack.pop()
        if id(n) in sizes:
            continue
        args = n.args if isinstance(n, Call) else ()
        if not ready:
            stack.append((n, True))
            stack.extend((a, False) for a in args if id(a) not in sizes)
            continue
        sizes[id(n)] = 1 + sum(sizes[id(a)] for a in args)
        if sizes[id(n)] > limit:
            raise CandidateError("too_long", f"the candidate has more than {limit} nodes once its functions "
                                 "are spelled in the grammar's terms")
    return sizes[id(node)]


def _arity(node: Node) -> int:
    if isinstance(node, Var):
        return {"a": 1, "b": 2}.get(node.name, 0)
    if isinstance(node, Call):
        return max((_arity(a) for a in node.args), default=0)
    return 0


def _substitute(node: Node, values: dict[str, Node]) -> Node:
    if isinstance(node, Var):
        return values.get(node.name, node)
    if isinstance(node, Num):
        return node
    return Call(node.name, tuple(_substitute(a, values) for a in node.args))
