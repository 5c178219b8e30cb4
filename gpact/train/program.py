"""Lowering a formula to a register program over a fixed base op set, for the batched evaluator.

Every candidate becomes a short list of instructions `dst = op(a, b)` over a few registers. All
candidates share one op set, so an interpreter (the grouped torch backend in `gpact.train.batched`, the
Triton kernel in `gpact.train.kernels`) runs a whole population with a fixed number of kernels, whatever
the formulas are. The op set is the op registry (`gpact.ops`): each op has a value rule and a derivative
rule, and backends carry (value, d/dx) as a dual number (`gpact.train.dual`), so the backward pass
through the activation is one multiply by the saved derivative.

Operands: register 0 is the input x (derivative 1), registers 1..n_regs are scratch, `CONST` is the
instruction's immediate `c` (derivative 0). An instruction never writes one of its own operands, so
a backend may compute in place. The result is in register `out`.

The lowering mirrors `gpact.expr.torchfn` (the reference path) op by op: Add and Mul fold left in sympy's
argument order, constants fold in double precision the same way, integer powers become torch.pow,
x**-k becomes 1/x**k, and a named primitive runs its torch callable when it has a base op
(gelu, sigmoid, ...), else its sympy definition. A named primitive whose callable has no base op
(an `import:` without a known torch function) cannot be lowered: `lower` raises ProgramError and the
batched evaluator scores that candidate on the reference path (slow, but exact).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import sympy as sp
import torch

from gpact import ops
from gpact.errors import GpactError
from gpact.expr.grammar import Grammar, Primitive
from gpact.expr.symbolic import ARGS, X, start_values, trainables
from gpact.train.dual import apply_op

MAX_REGS = 8  # scratch registers a program may use (the Triton kernel keeps them all live)
X_REG = 0
CONST = -1
PARAM = -2  # operand PARAM - j: trainable constant j (`Program.params`); only `gpact.train.trainable` reads it


def param_index(operand: int) -> int | None:
    """j when an operand is trainable constant j, else None."""
    return PARAM - operand if operand <= PARAM else None


class ProgramError(GpactError):
    """A formula cannot be lowered to the base op set (it runs on the reference path instead)."""


@dataclass(frozen=True)
class Instr:
    op: int
    dst: int  # 1..n_regs
    a: int = X_REG  # register, or CONST
    b: int = X_REG
    c: float = 0.0  # the immediate: CONST operand value, or powi's exponent


@dataclass(frozen=True)
class Program:
    instrs: tuple[Instr, ...]
    out: int  # register holding the result (0 when the formula is x itself)
    n_regs: int  # scratch registers used
    params: tuple[float, ...] = ()  # start values of the trainable constants (operands PARAM - j), if any

    def __str__(self) -> str:
        def opnd(r: int, c: float) -> str:
            if r <= PARAM:
                return f"p{param_index(r)}"
            return f"{c:g}" if r == CONST else ("x" if r == X_REG else f"r{r}")

        lines = []
        for i in self.instrs:
            name, arity = ops.TABLE[i.op].name, ops.TABLE[i.op].arity
            args = [opnd(i.a, i.c), opnd(i.b, i.c)][:arity]
            extra = [f"{i.c:g}"] if name in ("const", "powi") else []
            lines.append(f"r{i.dst} = {name}({', '.join(args + extra)})")
        return "\n".join(lines + [f"out r{self.out}" if self.out else "out x"])


# ---------------------------------------------------------------------------------------------------------
# sympy -> op DAG


@dataclass(frozen=True)
class _Node:
    op: str
    args: tuple  # of int (node id) or float (constant)
    c: float = 0.0


class _Builder:
    """Builds a DAG of _Node with common subexpressions shared; values are node ids or python floats."""

    def __init__(self, grammar: Grammar | None):
        self.grammar = grammar
        self.nodes: list[_Node] = []
        self.index: dict[_Node, int] = {}
        self.memo: dict[tuple, int | float] = {}

    def node(self, op: str, *args, c: float = 0.0) -> int:
        n = _Node(op, tuple(args), float(c))
        if n not in self.index:
            self.index[n] = len(self.nodes)
            self.nodes.append(n)
        return self.index[n]

    def lower(self, e: sp.Expr, env: Mapping[sp.Symbol, int | float]) -> int | float:
        key = (e, tuple(env.items()))  # memo: a shared subtree is lowered once, not once per path to it
        if key not in self.memo:
            self.memo[key] = self._lower(e, env)
        return self.memo[key]

    def _lower(self, e: sp.Expr, env: Mapping[sp.Symbol, int | float]) -> int | float:
        if e in env:
            return env[e]
        if not e.free_symbols and not e.atoms(sp.core.function.AppliedUndef):
            value = complex(e.evalf())
            if value.imag != 0:
                raise ProgramError(f"constant {e} is not real")
            return value.real
        if e.is_Symbol:
            raise ProgramError(f"unknown variable '{e}' (the input is 'x')")
        if e.is_Add or e.is_Mul:
            op = "add" if e.is_Add else "mul"
            acc = self.lower(e.args[0], env)
            for arg in e.args[1:]:
                acc = self.binary(op, acc, self.lower(arg, env))
            return acc
        if e.is_Pow:
            return self.power(e, env)
        func = e.func
        if isinstance(func, sp.core.function.UndefinedFunction):
            return self.named(str(func), [self.lower(a, env) for a in e.args])
        unary = ops.unary_operand(e)
        if unary is not None:
            op, operand = unary
            arg = self.lower(operand, env)
            if op.sympy_divisor != 1.0:  # sympy's sinc(a) is torch.sinc(a / pi), as torchfn runs it
                arg = self.binary("div", arg, op.sympy_divisor)
            return self.unary(op.name, arg)
        op = ops.for_sympy(func)
        if op is not None and op.arity == 2:  # Max, Min: n-ary in sympy, folded left
            acc = self.lower(e.args[0], env)
            for arg in e.args[1:]:
                acc = self.binary(op.name, acc, self.lower(arg, env))
            return acc
        raise ProgramError(f"no base op for sympy function '{func}'")

    def binary(self, op: str, u: int | float, v: int | float) -> int | float:
        if isinstance(u, float) and isinstance(v, float):  # torchfn folds these as python floats
            return {"add": lambda: u + v, "mul": lambda: u * v, "div": lambda: u / v,
                    "max": lambda: max(u, v), "min": lambda: min(u, v)}[op]()  # fmt: skip
        if op == "mul" and isinstance(u, float) and u == -1.0:
            return self.node("neg", v)  # -1 * t == -t exactly
        if op == "mul" and isinstance(v, float) and v == -1.0:
            return self.node("neg", u)
        if op == "add" and isinstance(v, int) and v >= 0 and self.nodes[v].op == "neg":
            return self.node("sub", u, self.nodes[v].args[0])  # u + (-t) == u - t exactly
        return self.node(op, u, v)

    def unary(self, op: str, u: int | float) -> int | float:
        if isinstance(u, float):
            return _eval_unary(op, u)
        return self.node(op, u)

    def power(self, e: sp.Pow, env) -> int | float:
        base, n = e.base, e.exp
        b = self.lower(base, env)
        if n.is_Integer and abs(int(n)) <= 8 and int(n) != 0:
            k = int(n)
            if isinstance(b, float):  # torchfn computes a constant's integer power in python
                return b**k if k > 0 else 1.0 / b ** (-k)
            p = b if k == 1 else self.node("powi", b, c=abs(k))
            return p if k > 0 else self.node("recip", p)
        if n == sp.Rational(1, 2):
            return self.unary("sqrt", b)
        if n == sp.Rational(-1, 2):
            return self.unary("rsqrt", b)
        return self.node("pow", b, self.lower(n, env))

    def named(self, name: str, args: list[int | float]) -> int | float:
        prim = self.grammar.primitives.get(name) if self.grammar is not None else None
        if prim is None:
            raise ProgramError(f"unknown primitive '{name}'")
        if all(isinstance(a, float) for a in args):  # constant: run it once, as the reference would
            with torch.no_grad():
                out = prim.fn(*(torch.tensor([a], dtype=torch.float32) for a in args))
            return float(out.reshape(-1)[0])
        base = base_op_of(prim)
        if base is not None:
            return self.node(base, *args)
        if prim.source != "sympy" or prim.definition is None:
            raise ProgramError(f"primitive '{name}' ({prim.source}) has no base op; it runs on the reference path")
        env = dict(zip(ARGS[: prim.arity], args, strict=True))
        return self.lower(prim.definition, env)


def base_op_of(prim: Primitive) -> str | None:
    """The base op a named unary primitive's torch callable is, if any."""
    if prim.arity != 1 or prim.source == "sympy":
        return None
    op = ops.for_torch(prim.fn)
    return op.name if op is not None else None


def _eval_unary(op: str, u: float) -> float:
    """A unary op on a constant, in float32 through the interpreters' own rule (rare: sympy folds most)."""
    v, _ = apply_op(ops.opcode(op), torch.tensor([[u]], dtype=torch.float32), deriv=False)
    return float(v.reshape(-1)[0])


# ---------------------------------------------------------------------------------------------------------
# DAG -> register program


def lower(expr: sp.Expr, grammar: Grammar | None = None, max_regs: int = MAX_REGS) -> Program:
    """Lower a (simplified) formula in x to a Program; ProgramError if it has no base-op form."""
    try:
        return _lower(expr, grammar, max_regs, share=True)
    except _TooManyRegisters:
        try:  # shared subexpressions stay live longer: a plain tree needs fewer registers
            return _lower(expr, grammar, max_regs, share=False)
        except _TooManyRegisters:
            raise ProgramError(f"formula needs more than {max_regs} registers") from None


class _TooManyRegisters(Exception):
    pass


def _lower(expr: sp.Expr, grammar: Grammar | None, max_regs: int, share: bool) -> Program:
    b = _Builder(grammar)
    params = trainables(expr)
    env = {X: -1, **{a: PARAM - j for j, a in enumerate(params)}}  # -1: the input; PARAM - j: constant j
    try:
        root = b.lower(expr, env)
    except RecursionError:
        raise ProgramError("formula too deep") from None
    if isinstance(root, float):
        return Program((Instr(ops.opcode("const"), 1, CONST, CONST, root),), 1, 1)
    if root == -1:
        return Program((), X_REG, 0)
    if root <= PARAM:
        root = b.node("copy", root)
    order = _schedule(b.nodes, root, share)
    prog = _allocate(b.nodes, order, root, max_regs)
    return replace(prog, params=start_values(expr)) if params else prog


def _schedule(nodes: list[_Node], root: int, share: bool) -> list[int]:
    """Post-order from root, the operand needing more registers first (Sethi-Ullman order).

    Without `share`, a node used twice is emitted twice (a tree): more work, fewer live registers.
    Returns a list of node ids; with share=False the same id may appear more than once.
    """
    need: dict[int, int] = {}

    def regs(n: int) -> int:
        if n in need:
            return need[n]
        kids = sorted((regs(a) for a in nodes[n].args if isinstance(a, int) and a >= 0), reverse=True)
        r = max([1] + [k + i for i, k in enumerate(kids)])
        need[n] = r
        return r

    order: list[int] = []
    seen: set[int] = set()

    def visit(n: int) -> None:
        if share and n in seen:
            return
        kids = [a for a in nodes[n].args if isinstance(a, int) and a >= 0]
        for k in sorted(dict.fromkeys(kids), key=regs, reverse=True):
            visit(k)
        seen.add(n)
        order.append(n)

    visit(root)
    return order


def _allocate(nodes: list[_Node], order: list[int], root: int, max_regs: int) -> Program:
    """Linear-scan register allocation; a value's register is freed after its last use."""
    # positions of each emitted node, and for each position the positions of its operands
    where: dict[int, int] = {}  # node -> position of its latest emission
    operands: list[list[int]] = []
    for pos, n in enumerate(order):
        operands.append([where[a] for a in nodes[n].args if isinstance(a, int) and a >= 0])
        where[n] = pos
    last: dict[int, int] = {}
    for pos, uses in enumerate(operands):
        for p in uses:
            last[p] = pos
    free = list(range(max_regs, 0, -1))
    reg_of: dict[int, int] = {}
    instrs: list[Instr] = []
    used = 0
    for pos, n in enumerate(order):
        node = nodes[n]
        if not free:
            raise _TooManyRegisters
        dst = free.pop()
        used = max(used, dst)
        it = iter(operands[pos])
        regs_c: list[int] = []
        c = node.c
        for a in node.args:
            if isinstance(a, float):
                regs_c.append(CONST)
                c = a
            elif a == -1:
                regs_c.append(X_REG)
            elif a <= PARAM:
                regs_c.append(a)
            else:
                regs_c.append(reg_of[next(it)])
        regs_c += [X_REG] * (2 - len(regs_c))
        instrs.append(Instr(ops.opcode(node.op), dst, regs_c[0], regs_c[1], c))
        reg_of[pos] = dst
        for p in set(operands[pos]):
            if last.get(p) == pos:
                free.append(reg_of[p])
        free.sort(reverse=True)
        if pos not in last and pos != len(order) - 1:
            free.append(dst)  # value never used (cannot happen for a tree, kept for safety)
    return Program(tuple(instrs), reg_of[len(order) - 1], used)


def lower_all(exprs, grammar: Grammar | None) -> list[Program | ProgramError]:
    """Lower each formula; a formula that cannot be lowered gives its ProgramError in its place.

    A formula met again is lowered once (lowering costs milliseconds; a population can repeat formulas)."""
    done: dict[sp.Expr, Program | ProgramError] = {}
    for e in exprs:
        if e not in done:
            try:
                done[e] = lower(e, grammar)
            except ProgramError as exc:
                done[e] = exc
    return [done[e] for e in exprs]
