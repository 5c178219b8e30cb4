"""Trainable constants in the batched trainer: each network learns its own copy of a formula's `p(c)` per layer.

A Program with trainable constants reads them as operands `PARAM - j` (`gpact.train.program`). This
interpreter runs such programs on dual numbers with one tangent per direction: d/dx (the slope the backward
pass multiplies by, as every interpreter gives) and d/dp_j for each constant (forward mode; formulas have few
constants, so a few extra tangents are cheaper than a reverse pass). The batched trainer calls three hooks
on it (`at`, `grad_hook`, `step`), which do nothing for formulas without trainable constants:

- `at(layer, stacks)` before each activation call: which layer, and which groups' pre-activations are side
  by side in it, so each element is computed with its own network's constant for that layer;
- `grad_hook(stack)` in the backward pass: dL/dp_j = sum over the layer's elements of dL/d act * d act/dp_j;
- `step(stack, step)` after the network's Adam step: the same Adam arithmetic on the constants, at the
  network's rate (or `TrainConfig.const_lr`), stopping when the network's steps are done.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch

from gpact import ops
from gpact.train.dual import apply_op
from gpact.train.program import CONST, X_REG, Program, param_index

Tangents = list[torch.Tensor | None]  # [d/dx, d/dp_0, ...]; None: zero


def const_rate(cfg, step: int) -> float:  # cfg: TrainConfig
    """A network's rate for its constants at `step`: `const_lr` (the network's own lr when None), 0 once done."""
    if step >= cfg.steps:
        return 0.0
    return cfg.lr if cfg.const_lr is None else cfg.const_lr


class _Constants:
    """One group's constants: values [P, layers, k] (P networks, candidate-major), gradients, optimiser."""

    def __init__(self, nets, programs: Sequence[Program], device, dtype, adam_cls):
        self.nets, self.n_cand = nets, len(programs)
        k = max(len(p.params) for p in programs)
        depth = nets[0].cfg.depth
        start = torch.zeros(self.n_cand, 1, 1, k, dtype=torch.float64)
        for c, p in enumerate(programs):
            start[c, 0, 0, : len(p.params)] = torch.tensor(p.params, dtype=torch.float64)
        # per (candidate, network, layer) its own copy, cast once to the training dtype (the fixed constant's value)
        self.values = start.expand(self.n_cand, len(nets), depth, k).reshape(-1, depth, k).to(device, dtype).clone()
        self.grads = torch.zeros_like(self.values)
        self.adam = adam_cls(self.values.view(-1), 0.0)
        self.rate: float | None = None

    def rates(self, step: int) -> torch.Tensor | float:
        lrs = [const_rate(n.cfg, step) for n in self.nets]
        if len(set(lrs)) == 1:
            return lrs[0]
        v = torch.tensor(lrs, dtype=self.values.dtype, device=self.values.device).repeat(self.n_cand)
        return v[:, None, None].expand_as(self.values).reshape(-1)

    def per_element(self, layer: int, per_net: int) -> torch.Tensor:
        """[k, n_cand, n_nets * per_net]: each element's own network's constants at `layer`."""
        v = self.values[:, layer, :].T.reshape(-1, self.n_cand, len(self.nets), 1)
        return v.expand(-1, -1, -1, per_net).reshape(v.shape[0], self.n_cand, -1)


class ParamInterpreter:
    """Runs programs with trainable constants: value, d/dx and, during training, d/dp_j per element."""

    def __init__(self, programs: Sequence[Program], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.programs = list(programs)
        self.device, self.dtype = torch.device(device), dtype
        self.k = max(len(p.params) for p in self.programs)
        self.consts = [[torch.tensor([[i.c]], dtype=dtype, device=self.device) for i in p.instrs] for p in programs]
        self.groups: dict[int, _Constants] = {}  # id(stack) -> its constants
        self.layer, self.parts, self.sizes = 0, [], []  # set by `at`
        self.saved: dict[tuple[int, int], torch.Tensor] = {}  # (id(stack), layer) -> d act/dp [k, P, N, W]

    # -- the trainer's hooks ------------------------------------------------------------------------------

    def start(self, groups: list[tuple[object, list]], adam_cls: Callable) -> None:
        """One set of constants per group of networks: [(its parameter stack, its nets)]."""
        for stack, nets in groups:
            self.groups[id(stack)] = _Constants(nets, self.programs, self.device, self.dtype, adam_cls)

    def at(self, layer: int, stacks: list, sizes: list[int]) -> None:
        """The next call's layer, and the groups (by parameter stack) whose columns it holds, `sizes` each."""
        self.layer, self.parts, self.sizes = layer, [id(s) for s in stacks], sizes

    def grad_hook(self, stack) -> Callable[[int, torch.Tensor], None]:
        group = self.groups[id(stack)]

        def hook(layer: int, gh: torch.Tensor) -> None:
            t = self.saved.pop((id(stack), layer))  # [k, P, elements]
            group.grads[:, layer, :] = (t * gh.reshape(1, gh.shape[0], -1)).sum(2).T
        return hook

    def step(self, stack, step: int) -> None:
        group = self.groups[id(stack)]
        rate = group.rates(step)
        if isinstance(rate, float) and rate == 0.0:
            return  # a zero rate leaves the constants exactly as they are
        group.adam.lr = rate
        group.adam.step(group.grads.view(-1))

    def learned(self, stack, results: list[list]) -> list[list]:
        """results[c][n] with each network's learned constants per layer (TrainResult.constants)."""
        group = self.groups[id(stack)]
        n_nets = len(group.nets)
        values = group.values.double().cpu()
        return [[dataclasses.replace(r, constants=tuple(
                    tuple(values[c * n_nets + n, layer, : len(self.programs[c].params)].tolist())
                    for layer in range(group.nets[n].cfg.depth)))
                 for n, r in enumerate(per_net)] for c, per_net in enumerate(results)]

    # -- the activation -----------------------------------------------------------------------------------

    def __call__(self, z: torch.Tensor, deriv: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        params = self._param_values(z)
        tangents = deriv and bool(self.parts)
        v_out = torch.empty_like(z)
        d_out = torch.empty_like(z) if deriv else None
        t_out = torch.zeros(self.k, *z.shape, dtype=z.dtype, device=z.device) if tangents else None
        for c, prog in enumerate(self.programs):
            v, ds = run_program(prog, z[c: c + 1], params[:, c: c + 1], deriv, tangents, self.consts[c])
            v_out[c: c + 1] = v
            if deriv:
                d_out[c: c + 1] = 0.0 if ds[0] is None else ds[0]
            if tangents:
                for j, d in enumerate(ds[1:]):
                    if d is not None:
                        t_out[j, c: c + 1] = d
        if tangents:
            self._save(t_out)
        return v_out, d_out

    def _param_values(self, z: torch.Tensor) -> torch.Tensor:
        """[k, n_cand, M]: the constants of each element's network at this layer (start values outside training)."""
        if not self.parts:  # outside the trainer (tests, plots): the start values everywhere
            start = torch.zeros(self.k, len(self.programs), 1, dtype=self.dtype, device=self.device)
            for c, p in enumerate(self.programs):
                start[: len(p.params), c, 0] = torch.tensor(p.params, dtype=torch.float64).to(self.dtype)
            return start.expand(-1, -1, z.shape[1])
        return torch.cat([self.groups[part].per_element(self.layer, size // len(self.groups[part].nets))
                          for part, size in zip(self.parts, self.sizes, strict=True)], 2)

    def _save(self, t: torch.Tensor) -> None:
        """Keep d act/dp of each group's block for its backward pass, as [k, P, elements per network]."""
        off = 0
        for part, size in zip(self.parts, self.sizes, strict=True):
            block = t[:, :, off: off + size].reshape(self.k, len(self.programs) * len(self.groups[part].nets), -1)
            self.saved[(part, self.layer)] = block
            off += size


def run_program(prog: Program, x: torch.Tensor, params: torch.Tensor, deriv: bool = True, tangents: bool = True,
                imm: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, Tangents]:
    """One program on x ([1, M]) with its constants' values `params` ([k, 1, M] or [k, 1, 1]): the value and
    [d/dx, d/dp_0, ...] (None: zero), each tangent by the op registry's dual rule (`gpact.train.dual`)."""
    n_t = 1 + (len(prog.params) if tangents else 0)
    if imm is None:
        imm = [torch.tensor([[i.c]], dtype=x.dtype, device=x.device) for i in prog.instrs]
    one = torch.ones(1, 1, dtype=x.dtype, device=x.device)
    zero: Tangents = [None] * n_t
    regs: dict[int, tuple[torch.Tensor, Tangents]] = {X_REG: (x, [one if deriv else None] + zero[1:])}

    def read(r: int, k: torch.Tensor) -> tuple[torch.Tensor, Tangents]:
        if r == CONST:
            return k, zero
        j = param_index(r)
        if j is not None:
            return params[j].expand_as(x), [one if t == 1 + j else None for t in range(n_t)]
        return regs[r]

    for ins, k in zip(prog.instrs, imm, strict=True):
        arity = ops.TABLE[ins.op].arity
        a, da = (torch.ones_like(x), zero) if arity < 1 else read(ins.a, k)
        b, db = (k, zero) if arity < 2 else read(ins.b, k)
        v, d0 = apply_op(ins.op, a, da[0], b, db[0], k, deriv)
        ds: Tangents = [d0]
        for t in range(1, n_t):
            ds.append(None if da[t] is None and db[t] is None else apply_op(ins.op, a, da[t], b, db[t], k, True)[1])
        regs[ins.dst] = (v.expand_as(x), ds)
    v, ds = regs[prog.out]
    return v, [None if d is None else d.expand_as(x) for d in ds]
