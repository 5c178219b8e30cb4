"""Expressions: DEAP trees (the genotype) <-> sympy (canonical form) <-> text, and the dedupe key.

DEAP's `gp.compile` is never used: trees are walked into sympy here, and sympy is compiled to torch
by `torchfn`. Equivalent candidates share one numeric fingerprint (outputs on fixed probe points), so
the search evaluates each distinct function once however it was written.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp
import torch
from deap import gp

from gpact.errors import FormulaError
from gpact.expr.fingerprint import family_key, is_constant, probe_values
from gpact.expr.flops import count_flops
from gpact.expr.formula import Call, Node, Num, Var, parse
from gpact.expr.gate import excerpt
from gpact.expr.grammar import Grammar, Primitive
from gpact.expr.symbolic import (
    NAMED_CONSTANTS,
    TRAINABLE,
    TRAINABLE_NAME,
    X,
    canonical_name,
    display,
    node_to_sympy,
    number,
    tag_of,
    trainable,
    trainables,
)
from gpact.expr.timebox import Timeout, time_limit
from gpact.expr.torchfn import ParamFn, to_torch, to_torch_params

SIMPLIFY_MAX_OPS = 40  # above this, sympy's simplify is skipped: too slow to be worth it
SIMPLIFY_SECONDS = 3.0  # safety net only; the op cap keeps normal calls far below it


@dataclass(frozen=True)
class Analysis:
    """What the search needs to know about one candidate before training it."""

    formula: str  # simplified, readable: "gelu(x) + 0.1*sin(x)"
    expr: sp.Expr  # the simplified sympy form the evaluator runs
    key: str  # numeric fingerprint: equal keys = same function, evaluated once
    flops: float  # per element, from the grammar's costs, on the simplified form
    constant: bool = False  # one value on every probe point, whatever the syntax (div(x, 0) when protected)
    derivative: str = ""  # `--evolve derivative`: the tree is this derivative, the function its integral
    failure: str = ""  # why the tree stands for no function (gpact.expr.integrate.REASONS); "" when it does


# ---------------------------------------------------------------------------------------------------------
# DEAP primitive set


def make_pset(grammar: Grammar) -> gp.PrimitiveSet:
    """A DEAP PrimitiveSet with the grammar's primitives, `x`, its constants and ephemeral constant."""
    pset = gp.PrimitiveSet("MAIN", 1)
    pset.renameArguments(ARG0="x")
    for p in grammar.primitives.values():
        pset.addPrimitive(p.fn, p.arity, name=p.name)
    for c in grammar.constants:
        pset.addTerminal(c)
    e = grammar.ephemeral
    if e is not None and not e.trainable:
        pset.addEphemeralConstant(_ephemeral_name(grammar), _ephemeral_draw(e.low, e.high, e.decimals))
    kind = _trainable_kind(*((e.low, e.high, e.decimals) if e is not None else (-1.0, 1.0, 2)))
    pset.mapping[kind.name] = kind  # readable from text (`p(0.8)`) in every grammar
    if e is not None and e.trainable:  # the search draws trainable constants where it drew fixed ones
        pset.addEphemeralConstant(kind.name, kind.func)
        # a number in a formula's text stays fixed (`max(x, 0)`, a seed): the text says which are trainable, p(c)
        pset.mapping[_ephemeral_name(grammar)] = _fixed_kind(_ephemeral_name(grammar), e.low, e.high, e.decimals)
    return pset


@functools.cache
def _fixed_kind(name: str, low: float, high: float, decimals: int) -> type:
    """The fixed ephemeral constant's DEAP terminal where the search draws trainable ones instead: read from text,
    never drawn. One class per range, as DEAP's own (`addEphemeralConstant`) is."""
    return gp.MetaEphemeral(name, _ephemeral_draw(low, high, decimals), object)


@functools.cache
def _trainable_kind(low: float, high: float, decimals: int) -> type:
    """The DEAP terminal of a trainable constant: an ephemeral drawn in the range, printed `p(value)` so a tree's
    text reads back as the same tree. One class per range (DEAP mutates an ephemeral by drawing a new one)."""
    name = "param_" + hashlib.sha1(f"{low},{high},{decimals}".encode()).hexdigest()[:10]
    kind = gp.MetaEphemeral(name, _ephemeral_draw(low, high, decimals), object)
    kind.trainable = True
    kind.format = lambda self: (f"{TRAINABLE_NAME}({self.value!r}, {self.tag})" if getattr(self, "tag", 0)
                                else f"{TRAINABLE_NAME}({self.value!r})")
    return kind


def _ephemeral_name(grammar: Grammar) -> str:
    e = grammar.ephemeral
    return "const_" + hashlib.sha1(f"{e.low},{e.high},{e.decimals}".encode()).hexdigest()[:10]


@functools.cache
def _ephemeral_draw(low: float, high: float, decimals: int) -> Callable[[], float]:
    # One function object per range: DEAP requires the same function for the same ephemeral name.
    # DEAP draws from the global `random` module; the search seeds it once per run.
    def draw() -> float:
        return round(random.uniform(low, high), decimals)

    return draw


# ---------------------------------------------------------------------------------------------------------
# tree -> sympy, text -> tree


def tree_to_sympy(tree: gp.PrimitiveTree, grammar: Grammar) -> sp.Expr:
    stack: list[sp.Expr] = []
    for node in reversed(tree):
        if isinstance(node, gp.Primitive):
            args = [stack.pop() for _ in range(node.arity)]
            stack.append(grammar.primitives[node.name].apply(*args))
        elif isinstance(node.value, str):
            stack.append(X)
        elif getattr(node, "trainable", False):
            tag = getattr(node, "tag", 0)
            stack.append(TRAINABLE(number(float(node.value)), *([sp.Integer(tag)] if tag else [])))
        else:
            stack.append(number(float(node.value)))
    return stack[0]


def parse_tree(text: str, grammar: Grammar, pset: gp.PrimitiveSet) -> gp.PrimitiveTree:
    """Text ("gelu(x) + 0.1*sin(x)", or a tree's own `str`) -> a tree over the grammar, or FormulaError."""
    nodes: list = []
    _emit(parse(text), grammar, pset, nodes)
    return gp.PrimitiveTree(nodes)


def formula_to_sympy(text: str, grammar: Grammar) -> sp.Expr:
    """Text -> sympy over the grammar's primitives (no size limits: for scoring any formula)."""
    return tree_to_sympy(parse_tree(text, grammar, make_pset(grammar)), grammar)


def printed_to_sympy(text: str, grammar: Grammar) -> sp.Expr:
    """Text as gpact prints a simplified formula -> sympy: operators are sympy's, names are the grammar's named
    primitives or the op registry's builtins (`Heaviside(x, 1/2)`, `Max(0.1*x, x)`), constants need not be the
    grammar's. For formulas `formula_to_sympy` refuses because the simplified form left the grammar's terms."""
    named = {p.name: p.arity for p in grammar.primitives.values() if not p.inline}
    return node_to_sympy(parse(text), {"x": X}, named)


def _emit(node: Node, grammar: Grammar, pset: gp.PrimitiveSet, out: list) -> None:
    if isinstance(node, Var):
        if node.name == "x":
            out.append(pset.mapping["x"])
        elif node.name in NAMED_CONSTANTS:
            _emit(Num(float(NAMED_CONSTANTS[node.name])), grammar, pset, out)
        else:
            raise FormulaError(f"unknown name {excerpt(node.name)} (the input variable is 'x')")
        return
    if isinstance(node, Num):
        out.append(_constant(node.value, grammar, pset))
        return
    if node.name == TRAINABLE_NAME:
        kind = next(k for k in pset.mapping.values() if getattr(k, "trainable", False))
        term, const = kind(), trainable(node)
        term.value, term.tag = float(const.args[0]), tag_of(const)
        out.append(term)
        return
    prim, args = _resolve_call(node, grammar)
    out.append(pset.mapping[prim.name])
    for a in args:
        _emit(a, grammar, pset, out)


def _constant(value: float, grammar: Grammar, pset: gp.PrimitiveSet):
    for c in grammar.constants:
        if abs(c - value) <= 1e-12 * max(1.0, abs(c)):
            return pset.mapping[str(c)]
    if grammar.ephemeral is None:
        known = ", ".join(map(str, grammar.constants)) or "none"
        raise FormulaError(f"constant {value:g} is not in grammar '{grammar.name}' (constants: {known}; "
                           "no ephemeral constants)")
    term = pset.mapping[_ephemeral_name(grammar)]()
    term.value = float(value)
    return term


def _resolve_call(node: Call, grammar: Grammar) -> tuple[Primitive, tuple[Node, ...]]:
    """The grammar primitive a call or operator means, with rewrites for operators it lacks."""
    name, args = node.name, node.args
    prim = grammar.primitives.get(name)
    if prim is None and name == "**" and isinstance(args[1], Num) and args[1].value in (2.0, 3.0):
        prim, args = grammar.by_alias(f"**{int(args[1].value)}"), args[:1]
    if prim is None:
        prim = grammar.by_alias(canonical_name(name))
    if prim is None:
        rewritten = _rewrite(node, grammar)
        if rewritten is None:
            raise FormulaError(f"{excerpt(name)} is not a primitive of grammar '{grammar.name}' "
                               f"(primitives: {', '.join(grammar.primitives)})")
        return _resolve_call(rewritten, grammar)
    if len(args) != prim.arity:
        raise FormulaError(f"{excerpt(name)} takes {prim.arity} argument(s), got {len(args)}")
    return prim, args


def _rewrite(node: Call, grammar: Grammar) -> Call | None:
    """Spell an operator the grammar lacks with ones it has: a - b = a + neg(b), -a = -1 * a, a / 2 = 0.5 * a."""
    has = grammar.by_alias
    if node.name == "-" and has("+") and (has("neg") or has("*")):
        return Call("+", (node.args[0], Call("neg", (node.args[1],))))
    if node.name == "neg" and has("*"):
        return Call("*", (Num(-1.0), node.args[0]))
    if node.name == "/" and has("*") and isinstance(node.args[1], Num) and node.args[1].value != 0:
        return Call("*", (Num(1.0 / node.args[1].value), node.args[0]))
    if node.name == "**" and has("*") and isinstance(node.args[1], Num) and node.args[1].value in (2.0, 3.0):
        base = node.args[0]
        return Call("*", (base, base)) if node.args[1].value == 2.0 else Call("*", (base, Call("*", (base, base))))
    return None


# ---------------------------------------------------------------------------------------------------------
# canonical form, fingerprint, FLOPs


def simplify(expr: sp.Expr) -> sp.Expr:
    """sympy's simplify, never longer than the input, skipped for big inputs, time-boxed as a safety net."""
    return _simplify_cached(expr)


@functools.lru_cache(maxsize=8192)
def _simplify_cached(expr: sp.Expr) -> sp.Expr:
    if sp.count_ops(expr) > SIMPLIFY_MAX_OPS:
        return expr
    try:
        with time_limit(SIMPLIFY_SECONDS):
            return sp.simplify(expr, ratio=1.0)
    except (Timeout, RecursionError, TypeError, ValueError, ZeroDivisionError):
        return expr


def compile_expr(expr: sp.Expr, grammar: Grammar) -> Callable[[torch.Tensor], torch.Tensor] | ParamFn:
    """The torch activation for a formula: autograd-differentiable, any dtype/device. With trainable constants, a
    ParamFn (the reference evaluator trains its constants; called on x alone it runs at their start values)."""
    if trainables(expr):
        return to_torch_params(expr, grammar.functions)
    return to_torch(expr, grammar.functions)


def analyse(expr: sp.Expr, grammar: Grammar, simplified: bool = False) -> Analysis:
    """Simplify (keeping whichever of raw/simplified costs fewer FLOPs), fingerprint and cost a formula.

    `simplified`: `expr` went through `simplify` already (an integral does), so it is not simplified again."""
    costs = grammar.costs
    best, best_flops = expr, count_flops(expr, costs)
    simple = expr if simplified else simplify(expr)
    if simple != expr:
        try:
            compile_expr(simple, grammar)  # simplify may introduce functions with no torch mapping
            simple_flops = count_flops(simple, costs)
        except FormulaError:
            simple_flops = float("inf")
        if simple_flops <= best_flops:
            best, best_flops = simple, simple_flops
    values = probe_values(best, grammar)
    return Analysis(formula=display(best), expr=best, key=family_key(best, values, grammar), flops=best_flops,
                    constant=is_constant(values))
