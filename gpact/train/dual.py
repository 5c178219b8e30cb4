"""One base op on dual numbers (value and derivative): the torch backend's rule for every op of a Program.

Moved out of batched.py unchanged (`batched.apply_op` dispatches to `unary` / `binary`), so that program.py,
which folds constant unary ops with the same rule, imports it without an import circle. The Triton kernel
must agree with these rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

# `a`, `b` are values ([g, M] tensors, or [g, 1] immediates); `da`, `db` their
# derivatives, None meaning zero (a constant). Derivatives follow torch autograd's rules for the same op,
# including the value at kinks (relu'(0) = 0, |x|'(0) = 0, max ties split evenly).

_SQRT_2_OVER_PI = 2.0 / math.sqrt(math.pi)
Dual = tuple[torch.Tensor, torch.Tensor | None]


def _times(f: torch.Tensor, d: torch.Tensor | None) -> torch.Tensor | None:
    return None if d is None else f * d


def _plus(d1: torch.Tensor | None, d2: torch.Tensor | None, sub: bool = False) -> torch.Tensor | None:
    if d2 is None:
        return d1
    if d1 is None:
        return -d2 if sub else d2
    return d1 - d2 if sub else d1 + d2


def unary(name: str, a: torch.Tensor, da: torch.Tensor | None, c: torch.Tensor, deriv: bool) -> Dual:
    """Value and (if `deriv`) derivative of a unary op; `c` is the immediate (powi's exponent)."""
    if name == "copy":
        return a, da
    if name == "neg":
        return -a, None if da is None else -da
    if name == "abs":
        return a.abs(), _times(a.sign(), da) if deriv else None
    if name in ("sign", "heaviside"):
        v = a.sign() if name == "sign" else torch.where(a > 0, 1.0, torch.where(a < 0, 0.0, 0.5)).to(a.dtype)
        return v, None
    if name == "powi":
        k = int(c.reshape(-1)[0])  # groups are split by exponent, so one k per call
        v = a**k
        return v, _times(k * a ** (k - 1) if k > 1 else torch.ones_like(a), da) if deriv else None
    v = _UNARY_VALUE[name](a)
    if not deriv or da is None:
        return v, None
    if name in _FUSED_CHAIN:  # autograd's own backward kernel: one pass, the reference's exact numbers
        return v, _FUSED_CHAIN[name](da.expand_as(a), a, v)
    return v, _UNARY_SLOPE[name](a, v) * da


_aten = torch.ops.aten
# op -> (da, a, value) -> da * op'(a), as torch autograd computes it for the same op
_FUSED_CHAIN: dict[str, Callable] = {
    "gelu": lambda da, a, v: _aten.gelu_backward(da, a),
    "silu": lambda da, a, v: _aten.silu_backward(da, a),
    "sigmoid": lambda da, a, v: _aten.sigmoid_backward(da, v),
    "tanh": lambda da, a, v: _aten.tanh_backward(da, v),
    "softplus": lambda da, a, v: _aten.softplus_backward(da, a, 1.0, 20.0),
    "relu": lambda da, a, v: _aten.threshold_backward(da, v, 0),
}


_UNARY_VALUE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "rsqrt": torch.rsqrt, "recip": torch.reciprocal,
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "tanh": torch.tanh, "sinh": torch.sinh,
    "cosh": torch.cosh, "asinh": torch.asinh, "atan": torch.atan, "erf": torch.erf, "erfc": torch.erfc,
    "sigmoid": torch.sigmoid, "silu": F.silu, "gelu": F.gelu, "softplus": F.softplus, "relu": torch.relu,
    "sinc": torch.sinc,
}  # fmt: skip


def _sinc_slope(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    safe = torch.where(a == 0, 1.0, a).to(a.dtype)
    return torch.where(a == 0, 0.0, (torch.cos(math.pi * a) - v) / safe).to(a.dtype)


# d value / d a, given a and the value v (gelu, silu, sigmoid, tanh, softplus, relu: _FUSED_CHAIN)
_UNARY_SLOPE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "exp": lambda a, v: v,
    "log": lambda a, v: 1 / a,
    "sqrt": lambda a, v: 0.5 / v,
    "rsqrt": lambda a, v: -0.5 * v * v * v,
    "recip": lambda a, v: -(v * v),
    "sin": lambda a, v: torch.cos(a),
    "cos": lambda a, v: -torch.sin(a),
    "tan": lambda a, v: 1 + v * v,
    "sinh": lambda a, v: torch.cosh(a),
    "cosh": lambda a, v: torch.sinh(a),
    "asinh": lambda a, v: torch.rsqrt(a * a + 1),
    "atan": lambda a, v: 1 / (a * a + 1),
    "erf": lambda a, v: _SQRT_2_OVER_PI * torch.exp(-a * a),
    "erfc": lambda a, v: -_SQRT_2_OVER_PI * torch.exp(-a * a),
    "sinc": _sinc_slope,
}


def binary(name: str, a: torch.Tensor, da, b: torch.Tensor, db, deriv: bool) -> Dual:
    if name == "add":
        return a + b, _plus(da, db) if deriv else None
    if name == "sub":
        return a - b, _plus(da, db, sub=True) if deriv else None
    if name == "mul":
        return a * b, _plus(_times(b, da), _times(a, db)) if deriv else None
    if name == "div":
        v = a / b
        return v, _plus(None if da is None else da / b, _times(v / b, db), sub=True) if deriv else None
    if name in ("max", "min"):
        v = torch.maximum(a, b) if name == "max" else torch.minimum(a, b)
        if not deriv or (da is None and db is None):
            return v, None
        zero = torch.zeros((), dtype=v.dtype, device=v.device)
        da_, db_ = (zero if da is None else da), (zero if db is None else db)
        first = a > b if name == "max" else a < b
        second = a < b if name == "max" else a > b
        return v, torch.where(first, da_, torch.where(second, db_, (da_ + db_) * 0.5))
    if name == "pow":
        v = torch.pow(a, b)
        if not deriv:
            return v, None
        d_a = None if da is None else torch.where(b == 0, 0.0, b * torch.pow(a, b - 1)).to(v.dtype) * da
        d_b = None if db is None else torch.where((a == 0) & (b >= 0), 0.0, v * torch.log(a)).to(v.dtype) * db
        return v, _plus(d_a, d_b)
    raise ValueError(f"unknown binary op {name}")
