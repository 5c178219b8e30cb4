"""One base op on dual numbers (value, d/dx): the rule every interpreter runs, read from the op registry.

`a`, `b` are values ([g, M] tensors, or [g, 1] immediates); `da`, `db` their derivatives, None meaning
zero (a constant). The Triton kernel must agree with this rule (tests/test_triton_act.py).
"""

from __future__ import annotations

import torch

from gpact import ops

Dual = tuple[torch.Tensor, torch.Tensor | None]


def apply_op(op: int, a: torch.Tensor, da: torch.Tensor | None = None, b: torch.Tensor | None = None,
             db: torch.Tensor | None = None, c: float | torch.Tensor = 0.0, deriv: bool = True) -> Dual:
    """Value and (if `deriv`) derivative of opcode `op`; `c` is the immediate (const's value, powi's exponent)."""
    row = ops.TABLE[op]
    c = c if isinstance(c, torch.Tensor) else torch.tensor([[c]], dtype=a.dtype, device=a.device)
    if row.name == "const":
        return c.expand_as(a), None
    if row.name == "copy":
        return a, da
    if row.name == "powi":
        k = int(c.reshape(-1)[0])  # interpreters split groups by exponent, so one k per call
        v = a**k
        if not deriv or da is None:
            return v, None
        return v, (k * a ** (k - 1) if k > 1 else torch.ones_like(a)) * da
    if row.arity == 1:
        v = row.torch(a)
        if not deriv or da is None or row.chain is None:
            return v, None
        return v, row.chain(da.expand_as(a), a, v)
    v = row.torch(a, b)
    return v, row.chain(a, da, b, db, v) if deriv else None
