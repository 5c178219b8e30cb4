"""The op registry: every operation gpact knows, one row each. Every other view is derived from here.

A row says, for one op: its name (the lowered program's opcode name), arity, the sympy function it is
(and the formula spellings that mean it), the torch function that computes it, its FLOP cost, its
value-and-slope rule on dual numbers, and whether the Triton kernel has a rule for it. The formula parser
(`expr.symbolic`), torch compilation (`expr.torchfn`), FLOP counting (`expr.flops`), lowering
(`train.program`), the batched interpreters (`train.dual`), the Triton kernel, export and the LLM's
vocabulary all read this table; adding an op is adding a row (tests/test_ops.py adds a throwaway one).

Lookups read `TABLE` at call time, so a row added by rebinding `TABLE` (a plugin, a test) is seen
everywhere. Opcodes are row positions: append, never insert, so the kernel's opcodes stay put.

Slope rules follow torch autograd for the same op, including the value at kinks (relu'(0) = 0,
|x|'(0) = 0, max ties split evenly), so the batched evaluator matches the autograd reference.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp
import torch
import torch.nn.functional as F

Tensor = torch.Tensor
# da * op'(a), given da (the operand's derivative, expanded to a's shape), a and the op's value v
Chain = Callable[[Tensor, Tensor, Tensor], Tensor]
# derivative of a binary op, given (a, da, b, db, v); da or db may be None (a constant operand)
Chain2 = Callable[[Tensor, "Tensor | None", Tensor, "Tensor | None", Tensor], "Tensor | None"]


@dataclass(frozen=True)
class Op:
    """One operation. `sympy` is the function formulas build (a class, or a builder such as sp.sqrt);
    `sympy_divisor` says that sympy's f(a) is this op at a / divisor (sympy's sinc is unnormalised)."""

    name: str
    arity: int
    torch: Callable[..., Tensor] | None = None  # the value
    chain: Chain | Chain2 | None = None  # the derivative rule; None: derivative 0 (or a program mechanic)
    cost: float = 1.0  # FLOPs per element
    sympy: Callable[..., sp.Expr] | None = None
    formula: bool = False  # `sympy` may be written in formulas and grammar definitions by its sympy name
    spellings: tuple[str, ...] = ()  # other names for it in formulas (abs, maximum, arcsinh, ...)
    operators: tuple[str, ...] = ()  # the Python operator it is (+, *, **): FLOP cost keys
    torch_aliases: tuple[Callable, ...] = ()  # other torch callables with the same semantics (F.relu)
    sympy_divisor: float = 1.0
    sympy_extra: tuple = ()  # trailing arguments sympy adds and this op fixes (Heaviside's value at 0)
    definition: str = ""  # the op in smaller terms (a, b): how an LLM answer's name is spelled out
    triton: bool = False  # the Triton kernel (train/kernels/triton_act.py) has a rule for it

    @property
    def key(self) -> str:
        """The name sympy prints for it ("Abs", "Max", "exp"): the FLOP-cost and formula key."""
        return getattr(self.sympy, "__name__", self.name) if self.sympy is not None else self.name


# ---------------------------------------------------------------------------------------------------------
# Rules that are not one torch call


def heaviside(v: torch.Tensor) -> torch.Tensor:
    """1 for v > 0, 0 for v < 0, 1/2 at 0 (sympy's convention). Export copies this source: torch names only."""
    return torch.where(v > 0, 1.0, torch.where(v < 0, 0.0, 0.5)).to(v.dtype)


def _slope(rule: Callable[[Tensor, Tensor], Tensor]) -> Chain:
    """A chain rule from op'(a) given (a, value)."""
    return lambda da, a, v: rule(a, v) * da


def _sinc_slope(a: Tensor, v: Tensor) -> Tensor:
    safe = torch.where(a == 0, 1.0, a).to(a.dtype)
    return torch.where(a == 0, 0.0, (torch.cos(math.pi * a) - v) / safe).to(a.dtype)


def _plus(d1: Tensor | None, d2: Tensor | None, sub: bool = False) -> Tensor | None:
    if d2 is None:
        return d1
    if d1 is None:
        return -d2 if sub else d2
    return d1 - d2 if sub else d1 + d2


def _times(f: Tensor, d: Tensor | None) -> Tensor | None:
    return None if d is None else f * d


def _div_chain(a, da, b, db, v):
    return _plus(None if da is None else da / b, _times(v / b, db), sub=True)


def _pick_chain(greater: bool) -> Chain2:
    """max / min: the derivative of the chosen side; ties take the mean of both (torch.maximum's backward)."""

    def chain(a, da, b, db, v):
        if da is None and db is None:
            return None
        zero = torch.zeros((), dtype=v.dtype, device=v.device)
        da_, db_ = (zero if da is None else da), (zero if db is None else db)
        first, second = (a > b, a < b) if greater else (a < b, a > b)
        return torch.where(first, da_, torch.where(second, db_, (da_ + db_) * 0.5))

    return chain


def _pow_chain(a, da, b, db, v):
    d_a = None if da is None else torch.where(b == 0, 0.0, b * torch.pow(a, b - 1)).to(v.dtype) * da
    d_b = None if db is None else torch.where((a == 0) & (b >= 0), 0.0, v * torch.log(a)).to(v.dtype) * db
    return _plus(d_a, d_b)


def _i1e_slope(a: Tensor, v: Tensor) -> Tensor:
    """torch's rule for i1e: 1/2 at 0, else i0e(a) - i1e(a) (sgn(a) + 1/a)."""
    safe = torch.where(a == 0, 1.0, a).to(a.dtype)
    return torch.where(a == 0, 0.5, torch.special.i0e(a) - v * (a.sgn() + 1 / safe)).to(a.dtype)


_aten = torch.ops.aten
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805  # torch's constants

# ---------------------------------------------------------------------------------------------------------
# The table. Program mechanics first (nop, const, copy, powi have no formula of their own).

TABLE: tuple[Op, ...] = (
    Op("nop", 0, cost=0, triton=True),
    Op("const", 0, cost=0, triton=True),  # the instruction's immediate
    Op("copy", 1, cost=0, triton=True),
    Op("neg", 1, torch.neg, lambda da, a, v: -da, operators=("neg",), definition="-a", triton=True),
    Op("abs", 1, torch.abs, lambda da, a, v: a.sign() * da, sympy=sp.Abs, formula=True,
       spellings=("abs", "absolute"), triton=True),
    Op("sign", 1, torch.sign, None, sympy=sp.sign, formula=True, triton=True),
    Op("heaviside", 1, heaviside, None, sympy=sp.Heaviside, formula=True, spellings=("heaviside",),
       sympy_extra=(sp.Rational(1, 2),), triton=True),
    Op("exp", 1, torch.exp, _slope(lambda a, v: v), 4, sp.exp, True, triton=True),
    Op("log", 1, torch.log, _slope(lambda a, v: 1 / a), 4, sp.log, True, triton=True),
    Op("sqrt", 1, torch.sqrt, _slope(lambda a, v: 0.5 / v), 2, sp.sqrt, True, triton=True),
    Op("rsqrt", 1, torch.rsqrt, _slope(lambda a, v: -0.5 * v * v * v), 3, triton=True),
    Op("recip", 1, torch.reciprocal, _slope(lambda a, v: -(v * v)), 1, definition="1/a", triton=True),
    Op("sin", 1, torch.sin, _slope(lambda a, v: torch.cos(a)), 4, sp.sin, True, triton=True),
    Op("cos", 1, torch.cos, _slope(lambda a, v: -torch.sin(a)), 4, sp.cos, True, triton=True),
    Op("tan", 1, torch.tan, _slope(lambda a, v: 1 + v * v), 6, sp.tan, True, triton=True),
    Op("tanh", 1, torch.tanh, lambda da, a, v: _aten.tanh_backward(da, v), 5, sp.tanh, True, triton=True),
    Op("sinh", 1, torch.sinh, _slope(lambda a, v: torch.cosh(a)), 5, sp.sinh, True, triton=True),
    Op("cosh", 1, torch.cosh, _slope(lambda a, v: torch.sinh(a)), 5, sp.cosh, True, triton=True),
    Op("asinh", 1, torch.asinh, _slope(lambda a, v: torch.rsqrt(a * a + 1)), 6, sp.asinh, True,
       spellings=("arcsinh",), triton=True),
    Op("atan", 1, torch.atan, _slope(lambda a, v: 1 / (a * a + 1)), 6, sp.atan, True, spellings=("arctan",)),
    Op("erf", 1, torch.erf, _slope(lambda a, v: _TWO_OVER_SQRT_PI * torch.exp(-a * a)), 6, sp.erf, True,
       triton=True),
    Op("erfc", 1, torch.erfc, _slope(lambda a, v: -_TWO_OVER_SQRT_PI * torch.exp(-a * a)), 6, sp.erfc, True,
       triton=True),
    # The usual activations: no sympy builtin (grammars define them), but a torch callable a primitive
    # may name, and autograd's own fused backward kernel for the slope (the reference's exact numbers).
    Op("sigmoid", 1, torch.sigmoid, lambda da, a, v: _aten.sigmoid_backward(da, v), 5,
       torch_aliases=(F.sigmoid,), definition="1/(1 + exp(-a))", triton=True),
    Op("silu", 1, F.silu, lambda da, a, v: _aten.silu_backward(da, a), 6, definition="a*sigmoid(a)", triton=True),
    Op("gelu", 1, F.gelu, lambda da, a, v: _aten.gelu_backward(da, a), 9,  # exact (erf) form
       definition="0.5*a*(1 + erf(0.7071067811865476*a))", triton=True),
    Op("softplus", 1, F.softplus, lambda da, a, v: _aten.softplus_backward(da, a, 1.0, 20.0), 6,
       definition="log(1 + exp(a))", triton=True),  # torch's: threshold 20
    Op("relu", 1, torch.relu, lambda da, a, v: _aten.threshold_backward(da, v, 0), 1, torch_aliases=(F.relu,),
       definition="max(a, 0)", triton=True),
    Op("sinc", 1, torch.sinc, _slope(_sinc_slope), 6, sp.sinc, sympy_divisor=math.pi,
       definition="sin(pi*a)/(pi*a)", triton=True),  # normalised (torch.sinc); sympy's sinc(a) is sinc(a / pi)
    Op("powi", 1, cost=1, triton=True),  # a ** c, c a small integer >= 1 (the immediate); cost per multiply
    Op("add", 2, torch.add, lambda a, da, b, db, v: _plus(da, db), 1, operators=("+",), definition="a + b",
       triton=True),
    Op("sub", 2, torch.sub, lambda a, da, b, db, v: _plus(da, db, sub=True), 1, operators=("-",),
       definition="a - b", triton=True),
    Op("mul", 2, torch.mul, lambda a, da, b, db, v: _plus(_times(b, da), _times(a, db)), 1, operators=("*",),
       definition="a*b", triton=True),
    Op("div", 2, torch.div, _div_chain, 1, operators=("/",), definition="a/b", triton=True),
    Op("max", 2, torch.maximum, _pick_chain(True), 1, sp.Max, True, spellings=("max", "maximum"), triton=True),
    Op("min", 2, torch.minimum, _pick_chain(False), 1, sp.Min, True, spellings=("min", "minimum"), triton=True),
    Op("pow", 2, torch.pow, _pow_chain, 8, operators=("**",), definition="a**b"),
    # More named activations (the grafs and aquasurf grammars import them): with a row, a formula using
    # them trains in the batched evaluator instead of one network at a time on the reference path.
    Op("elu", 1, F.elu, lambda da, a, v: _aten.elu_backward(da, 1.0, 1.0, 1.0, False, a), 6,
       definition="max(a, 0) + exp(min(a, 0)) - 1"),
    Op("selu", 1, F.selu, lambda da, a, v: _aten.elu_backward(da, _SELU_ALPHA, _SELU_SCALE, 1.0, False, a), 8,
       definition=f"{_SELU_SCALE}*(max(a, 0) + {_SELU_ALPHA}*(exp(min(a, 0)) - 1))"),
    Op("leaky_relu", 1, F.leaky_relu, lambda da, a, v: _aten.leaky_relu_backward(da, a, 0.01, False), 2,
       definition="max(a, 0.01*a)"),
    Op("softsign", 1, F.softsign, _slope(lambda a, v: 1 / (1 + a.abs()) ** 2), 3, definition="a/(1 + abs(a))"),
    Op("logsigmoid", 1, F.logsigmoid, _slope(lambda a, v: torch.sigmoid(-a)), 6, definition="-log(1 + exp(-a))"),
    Op("i0e", 1, torch.special.i0e, _slope(lambda a, v: torch.special.i1e(a) - a.sgn() * v), 10),
    Op("i1e", 1, torch.special.i1e, _slope(_i1e_slope), 10),
)


# ---------------------------------------------------------------------------------------------------------
# Views of the table (recomputed when TABLE is rebound)


@dataclass(frozen=True)
class _Index:
    opcode: dict[str, int]
    by_sympy: dict[object, Op]
    by_formula: dict[str, Op]  # formula name or spelling -> op
    by_torch: dict[object, Op]


def _build(table: tuple[Op, ...]) -> _Index:
    by_formula: dict[str, Op] = {}
    for op in table:
        if op.formula:
            by_formula[op.key] = op
            by_formula.update({s: op for s in op.spellings})
    by_torch: dict[object, Op] = {}
    for op in table:
        if op.torch is not None and op.arity == 1:
            for fn in (op.torch, *op.torch_aliases):
                by_torch.setdefault(fn, op)
    return _Index(
        opcode={op.name: i for i, op in enumerate(table)},
        by_sympy={op.sympy: op for op in table if isinstance(op.sympy, type)},
        by_formula=by_formula,
        by_torch=by_torch,
    )


_built: list[tuple[tuple[Op, ...], _Index]] = []  # (the table it was built from, the index)


def _index(table: tuple[Op, ...]) -> _Index:
    if not _built or _built[0][0] is not table:
        _built[:] = [(table, _build(table))]
    return _built[0][1]


def opcode(name: str) -> int:
    return _index(TABLE).opcode[name]


def get(name: str) -> Op:
    return TABLE[opcode(name)]


def for_sympy(func: object) -> Op | None:
    """The op a sympy function class is (sp.exp -> exp, sp.Max -> max), if any."""
    return _index(TABLE).by_sympy.get(func)


def for_formula(name: str) -> Op | None:
    """The op a name in a formula or grammar definition means ("exp", "Abs", "abs", "arctan"), if any."""
    return _index(TABLE).by_formula.get(name)


def for_torch(fn: object) -> Op | None:
    """The unary op a torch callable computes (a grammar's `torch: torch.nn.functional.gelu`), if any."""
    try:
        return _index(TABLE).by_torch.get(fn)
    except TypeError:  # unhashable callable
        return None


def unary_operand(expr: sp.Expr) -> tuple[Op, sp.Expr] | None:
    """(op, its operand) when `expr` is a unary registry op applied to one operand, else None.

    sympy may carry fixed trailing arguments (Heaviside(a, 1/2)); they must be the op's own convention.
    """
    op = for_sympy(expr.func)
    if op is None or op.arity != 1 or tuple(expr.args[1:]) != op.sympy_extra:
        return None
    return op, expr.args[0]


def formula_names() -> list[str]:
    """Every sympy function name formulas may use (not the other spellings)."""
    return sorted({op.key for op in TABLE if op.formula})


def spellings() -> dict[str, str]:
    """Other spellings of formula functions -> their sympy name ("abs" -> "Abs")."""
    return {s: op.key for op in TABLE if op.formula for s in op.spellings if s != op.key}


def costs() -> dict[str, float]:
    """Default FLOP cost per formula operation key: sympy names, Python operators, `**2` and `**3`."""
    out: dict[str, float] = {}
    for op in TABLE:
        if op.sympy is not None:
            out[op.key] = op.cost
        for sym in op.operators:
            out[sym] = op.cost
    powi = get("powi").cost
    out["**2"], out["**3"] = powi, 2 * powi
    return out


def torch_name(fn: object) -> str | None:
    """The dotted public torch name of a callable (torch.exp, torch.nn.functional.gelu), if it has one."""
    name = getattr(fn, "__name__", "")
    for prefix, module in (("torch", torch), ("torch.nn.functional", F), ("torch.special", torch.special)):
        if name and getattr(module, name, None) is fn:
            return f"{prefix}.{name}"
    with warnings.catch_warnings():  # some torch attributes warn when touched
        warnings.simplefilter("ignore")
        for prefix, module in (("torch", torch), ("torch.nn.functional", F), ("torch.special", torch.special)):
            for attr in dir(module):  # an alias (torch.special.expit is torch.sigmoid)
                if not attr.startswith("_") and getattr(module, attr, None) is fn:
                    return f"{prefix}.{attr}"
    return None


def torch_source(op: Op) -> str:
    """How generated Python calls the op: `torch.exp`, `torch.nn.functional.gelu`, or a helper of this module."""
    name = torch_name(op.torch)
    if name is not None:
        return name
    if getattr(op.torch, "__module__", None) == __name__:
        return op.torch.__name__  # a helper here (heaviside): export copies its source
    raise ValueError(f"op '{op.name}' has no importable torch name")
