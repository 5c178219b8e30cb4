"""One Triton kernel that runs every candidate's activation program, value and derivative together.

The torch interpreter (gpact.train.interpreters.Interpreter) launches a gather, an op and a scatter per
(instruction slot, op) group; on a GPU those launches, and the register file's trips through memory,
dominate. Here one kernel launch covers the whole population: program instance (c, block) loads a
block of candidate c's pre-activations, keeps x and 8 registers (value and slope) in registers, walks
candidate c's instructions with warp-uniform branches on the opcode, and writes act and act' once.

Each op's rule is the torch backend's (gpact.train.dual.apply_op), written with Triton's math; the
results agree to float32 rounding, not bit for bit. Ops Triton has no good form for (`SUPPORTED`
says which) make `triton_supports` false, and the batched evaluator keeps the torch interpreter.
Tested on CPU with TRITON_INTERPRET=1 (tests/test_triton_act.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from gpact import ops
from gpact.train.program import CONST, MAX_REGS, Program

SUPPORTED = frozenset(op.name for op in ops.TABLE if op.triton)  # the rows this kernel has a rule for
BLOCK = 1024

_C = {op.name: tl.constexpr(ops.opcode(op.name)) for op in ops.TABLE if op.triton}
_CONST, _COPY, _NEG, _ABS, _SIGN, _HEAVI = _C["const"], _C["copy"], _C["neg"], _C["abs"], _C["sign"], _C["heaviside"]
_EXP, _LOG, _SQRT, _RSQRT, _RECIP = _C["exp"], _C["log"], _C["sqrt"], _C["rsqrt"], _C["recip"]
_SIN, _COS, _TAN, _TANH, _SINH, _COSH, _ASINH = _C["sin"], _C["cos"], _C["tan"], _C["tanh"], _C["sinh"], \
    _C["cosh"], _C["asinh"]
_ERF, _ERFC, _SIGMOID, _SILU, _GELU, _SOFTPLUS = _C["erf"], _C["erfc"], _C["sigmoid"], _C["silu"], _C["gelu"], \
    _C["softplus"]
_RELU, _SINC, _POWI = _C["relu"], _C["sinc"], _C["powi"]
_ADD, _SUB, _MUL, _DIV, _MAX, _MIN = _C["add"], _C["sub"], _C["mul"], _C["div"], _C["max"], _C["min"]
_PI: tl.constexpr = tl.constexpr(math.pi)
_TWO_OVER_SQRT_PI: tl.constexpr = tl.constexpr(2.0 / math.sqrt(math.pi))
_INV_SQRT2: tl.constexpr = tl.constexpr(1.0 / math.sqrt(2.0))
_INV_SQRT_2PI: tl.constexpr = tl.constexpr(1.0 / math.sqrt(2.0 * math.pi))
assert MAX_REGS == 8 and CONST == -1, "the kernel spells out 8 registers and reads -1 as the immediate"


@triton.jit
def _pick(r, k, x, r1, r2, r3, r4, r5, r6, r7, r8):
    """Register r (0 = x, -1 = the immediate k)."""
    out = tl.where(r == 0, x, k)
    out = tl.where(r == 1, r1, out)
    out = tl.where(r == 2, r2, out)
    out = tl.where(r == 3, r3, out)
    out = tl.where(r == 4, r4, out)
    out = tl.where(r == 5, r5, out)
    out = tl.where(r == 6, r6, out)
    out = tl.where(r == 7, r7, out)
    out = tl.where(r == 8, r8, out)
    return out


@triton.jit
def _tanh(a):
    return 1.0 - 2.0 / (tl.exp(2.0 * a) + 1.0)


@triton.jit
def _op(op, a, da, b, db, k):
    """Value and slope of one op on dual numbers (see gpact.train.dual.apply_op for the reference rules)."""
    zero = a * 0.0
    v = a
    d = da
    if op == _CONST:
        v = zero + k
        d = zero
    elif op == _NEG:
        v = -a
        d = -da
    elif op == _ABS:
        v = tl.abs(a)
        d = tl.where(a > 0, da, tl.where(a < 0, -da, zero))
    elif op == _SIGN:
        v = tl.where(a > 0, 1.0, tl.where(a < 0, -1.0, 0.0)) + zero
        d = zero
    elif op == _HEAVI:
        v = tl.where(a > 0, 1.0, tl.where(a < 0, 0.0, 0.5)) + zero
        d = zero
    elif op == _EXP:
        v = tl.exp(a)
        d = v * da
    elif op == _LOG:
        v = tl.log(a)
        d = da / a
    elif op == _SQRT:
        v = tl.sqrt(a)
        d = da * (0.5 / v)
    elif op == _RSQRT:
        v = tl.rsqrt(a)
        d = da * (-0.5 * v * v * v)
    elif op == _RECIP:
        v = 1.0 / a
        d = da * -(v * v)
    elif op == _SIN:
        v = tl.sin(a)
        d = da * tl.cos(a)
    elif op == _COS:
        v = tl.cos(a)
        d = da * -tl.sin(a)
    elif op == _TAN:
        v = tl.sin(a) / tl.cos(a)
        d = da * (1.0 + v * v)
    elif op == _TANH:
        v = _tanh(a)
        d = da * (1.0 - v * v)
    elif op == _SINH:
        v = 0.5 * (tl.exp(a) - tl.exp(-a))
        d = da * 0.5 * (tl.exp(a) + tl.exp(-a))
    elif op == _COSH:
        v = 0.5 * (tl.exp(a) + tl.exp(-a))
        d = da * 0.5 * (tl.exp(a) - tl.exp(-a))
    elif op == _ASINH:
        m = tl.abs(a)
        v = tl.where(a < 0, -1.0, 1.0) * tl.log(m + tl.sqrt(m * m + 1.0))
        d = da * tl.rsqrt(a * a + 1.0)
    elif op == _ERF:
        v = tl.erf(a)
        d = da * _TWO_OVER_SQRT_PI * tl.exp(-a * a)
    elif op == _ERFC:
        v = 1.0 - tl.erf(a)
        d = da * -_TWO_OVER_SQRT_PI * tl.exp(-a * a)
    elif op == _SIGMOID:
        v = tl.sigmoid(a)
        d = da * v * (1.0 - v)
    elif op == _SILU:
        s = tl.sigmoid(a)
        v = a * s
        d = da * s * (1.0 + a * (1.0 - s))
    elif op == _GELU:
        cdf = 0.5 * (1.0 + tl.erf(a * _INV_SQRT2))
        v = a * cdf
        d = da * (cdf + a * tl.exp(-0.5 * a * a) * _INV_SQRT_2PI)
    elif op == _SOFTPLUS:
        e = tl.exp(tl.minimum(a, 20.0))
        v = tl.where(a > 20.0, a, tl.log(1.0 + e))
        d = da * tl.where(a > 20.0, 1.0, e / (e + 1.0))
    elif op == _RELU:
        v = tl.maximum(a, 0.0)
        d = tl.where(a > 0, da, zero)
    elif op == _SINC:
        pa = _PI * a
        safe = tl.where(a == 0, 1.0, a)
        v = tl.where(a == 0, 1.0, tl.sin(pa) / (_PI * safe))
        d = da * tl.where(a == 0, 0.0, (tl.cos(pa) - v) / safe)
    elif op == _POWI:
        p = zero + 1.0
        for _ in range(k.to(tl.int32) - 1):
            p = p * a
        v = p * a
        d = da * k * p
    elif op == _ADD:
        v = a + b
        d = da + db
    elif op == _SUB:
        v = a - b
        d = da - db
    elif op == _MUL:
        v = a * b
        d = da * b + a * db
    elif op == _DIV:
        v = a / b
        d = da / b - db * (v / b)
    elif op == _MAX:
        v = tl.maximum(a, b)
        d = tl.where(a > b, da, tl.where(a < b, db, (da + db) * 0.5))
    elif op == _MIN:
        v = tl.minimum(a, b)
        d = tl.where(a < b, da, tl.where(a > b, db, (da + db) * 0.5))
    return v, d


@triton.jit
def _act_kernel(z_ptr, v_ptr, d_ptr, code_ptr, imm_ptr, len_ptr, out_ptr, M, L, BLOCK: tl.constexpr):
    c = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    row = c.to(tl.int64) * M
    x = tl.load(z_ptr + row + offs, mask=mask, other=0.0)
    zero = x * 0.0
    one = zero + 1.0
    r1 = zero
    r2 = zero
    r3 = zero
    r4 = zero
    r5 = zero
    r6 = zero
    r7 = zero
    r8 = zero
    s1 = zero
    s2 = zero
    s3 = zero
    s4 = zero
    s5 = zero
    s6 = zero
    s7 = zero
    s8 = zero
    n = tl.load(len_ptr + c)
    for i in range(n):
        base = (c * L + i) * 4
        op = tl.load(code_ptr + base)
        dst = tl.load(code_ptr + base + 1)
        ra = tl.load(code_ptr + base + 2)
        rb = tl.load(code_ptr + base + 3)
        k = tl.load(imm_ptr + c * L + i)
        a = _pick(ra, k, x, r1, r2, r3, r4, r5, r6, r7, r8)
        da = _pick(ra, 0.0, one, s1, s2, s3, s4, s5, s6, s7, s8)
        b = _pick(rb, k, x, r1, r2, r3, r4, r5, r6, r7, r8)
        db = _pick(rb, 0.0, one, s1, s2, s3, s4, s5, s6, s7, s8)
        v, d = _op(op, a, da, b, db, k)
        r1 = tl.where(dst == 1, v, r1)
        r2 = tl.where(dst == 2, v, r2)
        r3 = tl.where(dst == 3, v, r3)
        r4 = tl.where(dst == 4, v, r4)
        r5 = tl.where(dst == 5, v, r5)
        r6 = tl.where(dst == 6, v, r6)
        r7 = tl.where(dst == 7, v, r7)
        r8 = tl.where(dst == 8, v, r8)
        s1 = tl.where(dst == 1, d, s1)
        s2 = tl.where(dst == 2, d, s2)
        s3 = tl.where(dst == 3, d, s3)
        s4 = tl.where(dst == 4, d, s4)
        s5 = tl.where(dst == 5, d, s5)
        s6 = tl.where(dst == 6, d, s6)
        s7 = tl.where(dst == 7, d, s7)
        s8 = tl.where(dst == 8, d, s8)
    out = tl.load(out_ptr + c)
    tl.store(v_ptr + row + offs, _pick(out, 0.0, x, r1, r2, r3, r4, r5, r6, r7, r8), mask=mask)
    tl.store(d_ptr + row + offs, _pick(out, 0.0, one, s1, s2, s3, s4, s5, s6, s7, s8), mask=mask)


def triton_supports(programs: Sequence[Program]) -> bool:
    """Whether every op of every program has a kernel rule (else the torch interpreter runs them)."""
    return all(ops.TABLE[i.op].triton for p in programs for i in p.instrs)


class TritonInterpreter:
    """Drop-in for gpact.train.interpreters.Interpreter (float32): one kernel launch per call."""

    def __init__(self, programs: Sequence[Program], device: torch.device | str):
        self.C = len(programs)
        self.L = max([len(p.instrs) for p in programs] + [1])
        code = torch.zeros(self.C, self.L, 4, dtype=torch.int32)
        imm = torch.zeros(self.C, self.L, dtype=torch.float32)
        for c, p in enumerate(programs):
            for i, ins in enumerate(p.instrs):
                code[c, i] = torch.tensor([ins.op, ins.dst, ins.a, ins.b])
                imm[c, i] = ins.c
        self.code, self.imm = code.to(device), imm.to(device)
        self.lens = torch.tensor([len(p.instrs) for p in programs], dtype=torch.int32, device=device)
        self.out = torch.tensor([p.out for p in programs], dtype=torch.int32, device=device)

    def __call__(self, z: torch.Tensor, deriv: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        if z.dtype != torch.float32:
            raise TypeError("the Triton kernel runs float32 only")
        z = z.contiguous()
        m = z.shape[1]
        v, d = torch.empty_like(z), torch.empty_like(z)
        grid = (self.C, triton.cdiv(m, BLOCK))
        _act_kernel[grid](z, v, d, self.code, self.imm, self.lens, self.out, m, self.L, BLOCK=BLOCK)
        return v, d if deriv else None
