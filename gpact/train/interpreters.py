"""Activation interpreters: run every candidate's lowered Program on its rows, value and slope together.

Three backends of one contract (`Interpreter(programs, device, dtype)(z, deriv) -> (act(z), act'(z))`, row c
of z through program c), all applying `gpact.train.dual.apply_op`, so their numbers agree where they overlap:

- `Interpreter` groups candidates by (instruction slot, op), once per chunk: the kernels per step are
  bounded by program length x op set, whatever the formulas are (the portable GPU path);
- `LoopInterpreter` walks each candidate's program over cache-sized blocks (the CPU default);
- the Triton kernel (`gpact.train.kernels.triton_act`), one launch for the whole population on CUDA.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from gpact import ops
from gpact.errors import ConfigError
from gpact.train.dual import apply_op
from gpact.train.program import CONST, X_REG, Program

KERNELS = ("auto", "loop", "torch", "triton")

Rows = torch.Tensor | slice  # register rows: an index tensor, or a slice when they are consecutive


@dataclass(frozen=True)
class _Group:
    """The candidates that run the same op at the same instruction slot."""

    op: int
    n: int  # candidates in the group
    dst: Rows  # flat register rows (reg * C + candidate) written
    a: Rows | None  # flat register rows read, or None for the immediate
    b: Rows | None
    c: torch.Tensor  # [n, 1] immediates


def _read(regs: torch.Tensor, rows: Rows) -> torch.Tensor:
    return regs[rows] if isinstance(rows, slice) else regs.index_select(0, rows)


def _write(regs: torch.Tensor, rows: Rows, value: torch.Tensor) -> None:
    if isinstance(rows, slice):
        regs[rows] = value
    else:
        regs.index_copy_(0, rows, value.expand(len(rows), regs.shape[1]))


class Interpreter:
    """Runs C programs, one per candidate, on a [C, M] input; returns value and derivative, [C, M] each.

    The register file is a [(regs + 1) * C, M] buffer (row reg * C + c), reused across calls; register 0
    holds the input with derivative 1. Every instruction of every program becomes one row of a group;
    a group is one gather, one op, one scatter (views instead, where its rows are consecutive: always
    for a group of one, common when formulas differ).
    """

    def __init__(self, programs: Sequence[Program], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.C = len(programs)
        self.n_regs = max([p.n_regs for p in programs] + [0])
        self.device, self.dtype = torch.device(device), dtype
        self.groups = self._build_groups(programs)
        self.out = torch.tensor([p.out * self.C + i for i, p in enumerate(programs)], device=self.device)
        self.identity = all(p.out == 0 for p in programs)
        self._regs: tuple[torch.Tensor, torch.Tensor] | None = None

    def _rows(self, rows: list[int]) -> Rows:
        if rows == list(range(rows[0], rows[0] + len(rows))):
            return slice(rows[0], rows[0] + len(rows))
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def _build_groups(self, programs: Sequence[Program]) -> list[_Group]:
        C, groups = self.C, []
        for slot in range(max([len(p.instrs) for p in programs] + [0])):
            by_key: dict[tuple, list] = defaultdict(list)
            for i, p in enumerate(programs):
                if slot < len(p.instrs):
                    ins = p.instrs[slot]
                    arity = ops.TABLE[ins.op].arity
                    a_const = arity < 1 or ins.a == CONST
                    b_const = arity < 2 or ins.b == CONST
                    k = ins.c if ops.TABLE[ins.op].name == "powi" else None  # one exponent per group
                    by_key[(ins.op, a_const, b_const, k)].append((i, ins))
            for (op, a_const, b_const, k), rows in by_key.items():
                # powi's exponent is read on the host (a loop count): kept on the CPU, no device sync per step
                where = self.device if k is None else torch.device("cpu")
                groups.append(_Group(
                    op=op,
                    n=len(rows),
                    dst=self._rows([ins.dst * C + i for i, ins in rows]),
                    a=None if a_const else self._rows([ins.a * C + i for i, ins in rows]),
                    b=None if b_const else self._rows([ins.b * C + i for i, ins in rows]),
                    c=torch.tensor([[ins.c] for _, ins in rows], dtype=self.dtype, device=where),
                ))
        return groups

    def _registers(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = (self.n_regs + 1) * self.C
        if self._regs is None or self._regs[0].shape != (rows, m):
            values = torch.empty(rows, m, dtype=self.dtype, device=self.device)
            slopes = torch.zeros(rows, m, dtype=self.dtype, device=self.device)
            slopes[: self.C] = 1.0  # d x / d x
            self._regs = (values, slopes)
        return self._regs

    def __call__(self, z: torch.Tensor, deriv: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """act(z) and (if `deriv`) act'(z), row c of z through program c."""
        if self.identity:
            return z, torch.ones_like(z) if deriv else None
        m = z.shape[1]
        values, slopes = self._registers(m)
        values[: self.C].copy_(z)
        for g in self.groups:
            av = g.c if g.a is None else _read(values, g.a)
            bv = g.c if g.b is None else _read(values, g.b)
            ad = None if g.a is None or not deriv else _read(slopes, g.a)
            bd = None if g.b is None or not deriv else _read(slopes, g.b)
            if ops.TABLE[g.op].arity == 0:
                av = values.new_empty(g.n, m)
            v, d = apply_op(g.op, av, ad, bv, bd, g.c, deriv)
            _write(values, g.dst, v.expand(g.n, m))
            if deriv:
                _write(slopes, g.dst, torch.zeros((), dtype=self.dtype, device=self.device) if d is None else d)
        return values.index_select(0, self.out), slopes.index_select(0, self.out) if deriv else None


class LoopInterpreter:
    """The CPU form of Interpreter: same ops and numbers, walked candidate by candidate in cache-sized blocks.

    On a CPU, launches are cheap and memory traffic is what costs: running one candidate's whole program
    on a block of its row keeps the block in cache across instructions, where the grouped interpreter
    streams the whole register file through memory once per instruction slot.
    """

    BLOCK = 1 << 17  # floats per block (512 KiB in float32): big blocks, few calls; a block stays in L2-L3

    def __init__(self, programs: Sequence[Program], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.programs = list(programs)
        self.device, self.dtype = torch.device(device), dtype
        self.consts = [[torch.tensor([[i.c]], dtype=dtype, device=self.device) for i in p.instrs] for p in programs]
        self.arities = [[ops.TABLE[i.op].arity for i in p.instrs] for p in programs]  # read once, not per step

    def __call__(self, z: torch.Tensor, deriv: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        v_out = torch.empty_like(z)
        d_out = torch.empty_like(z) if deriv else None
        n_threads = min(torch.get_num_threads(), len(self.programs))
        if n_threads <= 1:
            self._run(range(len(self.programs)), z, v_out, d_out, deriv)
            return v_out, d_out
        # torch ops release the GIL: threads over disjoint candidates use the cores that small ops leave idle
        parts = [range(i, len(self.programs), n_threads) for i in range(n_threads)]
        list(_pool(n_threads).map(lambda part: self._run(part, z, v_out, d_out, deriv), parts))
        return v_out, d_out

    def _run(self, cands: range, z: torch.Tensor, v_out: torch.Tensor, d_out: torch.Tensor | None,
             deriv: bool) -> None:
        m = z.shape[1]
        for start in range(0, m, self.BLOCK):
            cols = slice(start, min(m, start + self.BLOCK))
            ones = torch.ones(1, cols.stop - cols.start, dtype=self.dtype, device=self.device)
            for c in cands:
                prog = self.programs[c]
                regs = {X_REG: (z[c: c + 1, cols], ones)}
                for ins, k, arity in zip(prog.instrs, self.consts[c], self.arities[c], strict=True):
                    a, da = (k, None) if arity < 1 or ins.a == CONST else regs[ins.a]
                    b, db = (k, None) if arity < 2 or ins.b == CONST else regs[ins.b]
                    if arity == 0:
                        a = ones
                    regs[ins.dst] = apply_op(ins.op, a, da if deriv else None, b, db if deriv else None, k, deriv)
                v, d = regs[prog.out]
                v_out[c: c + 1, cols] = v
                if deriv:
                    d_out[c: c + 1, cols] = 0.0 if d is None else d


@functools.cache
def _pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(n, thread_name_prefix="gpact-act")


def make_interpreter(programs: Sequence[Program], device: torch.device, dtype: torch.dtype = torch.float32,
                     kernel: str = "auto"):
    """The activation backend: on CPU the loop interpreter; on CUDA the Triton kernel (float32, every op
    supported), else the grouped torch interpreter.

    `kernel` (or the GPACT_KERNEL environment variable, when `kernel` is "auto") forces a choice; forcing
    "triton" where it cannot run is an error. With TRITON_INTERPRET=1 the kernel also runs on CPU (slowly).
    """
    kernel = os.environ.get("GPACT_KERNEL", "auto") if kernel == "auto" else kernel
    if kernel not in KERNELS:
        raise ConfigError(f"unknown kernel '{kernel}' (choose from {', '.join(KERNELS)})")
    if any(p.params for p in programs):  # trainable constants: one interpreter with their tangents
        from gpact.train.trainable import ParamInterpreter

        return ParamInterpreter(programs, device, dtype)
    if kernel == "loop" or (kernel == "auto" and device.type == "cpu"):
        return LoopInterpreter(programs, device, dtype)
    if kernel == "torch":
        return Interpreter(programs, device, dtype)
    try:
        from gpact.train.kernels.triton_act import TritonInterpreter, triton_supports
    except ImportError:
        if kernel == "triton":
            raise ConfigError("kernel 'triton' needs the triton package (pip install triton)") from None
        return Interpreter(programs, device, dtype)
    runs_here = device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"
    usable = runs_here and dtype == torch.float32 and triton_supports(programs)
    if kernel == "triton" and not usable:
        raise ConfigError("kernel 'triton' needs a CUDA device (or TRITON_INTERPRET=1), float32 and ops it "
                          "supports; use GPACT_KERNEL=loop or torch (gpact bench: --kernel)")
    return TritonInterpreter(programs, device) if usable else Interpreter(programs, device, dtype)


def run_programs(programs: Sequence[Program], x: torch.Tensor, deriv: bool = True):
    """Each program on the same input x (any shape); returns ([C, *x.shape] values, derivatives). Trainable
    constants, if any, at their start values."""
    if any(p.params for p in programs):
        from gpact.train.trainable import ParamInterpreter

        interp = ParamInterpreter(programs, x.device, x.dtype)
    else:
        interp = Interpreter(programs, x.device, x.dtype)
    flat = x.reshape(1, -1).expand(len(programs), -1).contiguous()
    v, d = interp(flat, deriv)
    shape = (len(programs), *x.shape)
    return v.reshape(shape), None if d is None else d.reshape(shape)


