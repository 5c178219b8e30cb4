"""sympy -> torch, through the op registry (`gpact.ops`); anything it doesn't know is a clear error.

Used to run grammar definitions, fingerprints and the reference evaluator. The result is a tree of
closures over torch ops, built once per expression (no string eval, no recursion limit in DEAP's
`compile`); autograd supplies gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce

import sympy as sp
import torch

from gpact import ops
from gpact.errors import FormulaError
from gpact.expr.symbolic import X, start_values, trainables

_Value = torch.Tensor | float
_Closure = Callable[[tuple[torch.Tensor, ...]], _Value]


def _t(v: _Value, like: torch.Tensor) -> torch.Tensor:
    return v if isinstance(v, torch.Tensor) else torch.full_like(like, v)


def to_torch(
    expr: sp.Expr,
    functions: Mapping[str, Callable[..., torch.Tensor]] | None = None,
    variables: tuple[sp.Symbol, ...] = (X,),
) -> Callable[..., torch.Tensor]:
    """Compile `expr` into fn(*tensors), one tensor per symbol in `variables` (default: x alone).

    `functions` supplies torch callables for opaque (named) primitives.
    """
    fns = dict(functions or {})
    closure = _build(expr, fns, {v: i for i, v in enumerate(variables)})

    def run(*zs: torch.Tensor) -> torch.Tensor:
        if len(zs) != len(variables):
            raise TypeError(f"expected {len(variables)} tensors, got {len(zs)}")
        out = _t(closure(zs), zs[0])
        # a formula of trainable constants alone is a 0-d tensor: give it x's shape (never shrink a broadcast one)
        return out if out.dim() >= zs[0].dim() else out.expand_as(zs[0])

    return run


@dataclass(frozen=True)
class ParamFn:
    """A formula with trainable constants as a torch function: `fn(x, *params)`, one 0-d tensor per constant
    (in `symbolic.trainables` order). Called with x alone it runs at the start values."""

    fn: Callable[..., torch.Tensor]
    init: tuple[float, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, *(torch.tensor(c, dtype=x.dtype, device=x.device) for c in self.init))


def to_torch_params(expr: sp.Expr, functions: Mapping[str, Callable[..., torch.Tensor]] | None = None
                    ) -> ParamFn:
    """`expr` as a ParamFn: its trainable constants (`p(0.8)`) become inputs after x."""
    return ParamFn(to_torch(expr, functions, (X, *trainables(expr))), start_values(expr))


def _build(e: sp.Expr, fns: dict, var: dict[sp.Symbol, int]) -> _Closure:
    if e in var:
        i = var[e]
        return lambda zs: zs[i]
    if not e.free_symbols and not e.atoms(sp.core.function.AppliedUndef):
        value = complex(e.evalf())
        if value.imag != 0:
            raise FormulaError(f"constant {e} is not real")
        c = value.real
        return lambda z: c
    if e.is_Symbol:
        raise FormulaError(f"unknown variable '{e}' (the input is 'x')")
    unary = ops.unary_operand(e)
    if unary is not None:
        op, arg = unary
        f, p, divisor = op.torch, _build(arg, fns, var), op.sympy_divisor
        if divisor != 1.0:
            return lambda z: f(_t(p(z), z[0]) / divisor)
        return lambda z: f(_t(p(z), z[0]))
    parts = [_build(a, fns, var) for a in e.args]
    if e.is_Add:
        return lambda z: reduce(lambda u, v: u + v, (p(z) for p in parts))
    if e.is_Mul:
        return lambda z: reduce(lambda u, v: u * v, (p(z) for p in parts))
    if e.is_Pow:
        return _pow(e, parts)
    func = e.func
    if isinstance(func, sp.core.function.UndefinedFunction):
        name = str(func)
        if name not in fns:
            raise FormulaError(f"no torch implementation for primitive '{name}'")
        fn = fns[name]
        return lambda z: fn(*(_t(p(z), z[0]) for p in parts))
    op = ops.for_sympy(func)
    if op is not None and op.arity == 2:  # Max, Min: n-ary in sympy, folded left
        f = op.torch
        return lambda z: reduce(f, (_t(p(z), z[0]) for p in parts))
    raise FormulaError(f"no torch mapping for sympy function '{func}'")


def _pow(e: sp.Pow, parts: list[_Closure]) -> _Closure:
    base, expo = parts
    n = e.exp
    if n.is_Integer and abs(int(n)) <= 8:
        k = int(n)
        if k >= 0:
            return lambda z: base(z) ** k
        return lambda z: 1.0 / (base(z) ** (-k))
    if n == sp.Rational(1, 2):
        return lambda z: torch.sqrt(_t(base(z), z[0]))
    if n == sp.Rational(-1, 2):
        return lambda z: torch.rsqrt(_t(base(z), z[0]))
    return lambda z: torch.pow(_t(base(z), z[0]), _t(expo(z), z[0]))
