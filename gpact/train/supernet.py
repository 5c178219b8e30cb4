"""The GrafS supernet cell: every slot of a template is a learned mixture over the slot's alternatives.

One `CellMixture` holds R cells (restarts) side by side: inputs carry the restart on their first axis, so R
supernets train as one stacked batch, the way the batched evaluator stacks networks. Each slot has a weight
vector alpha per restart over its alternatives (from the grammar's template) and one trainable beta per free
constant of each alternative (x + beta, beta*x, beta, the sigmoid(beta) mix). The alternatives' arithmetic
is the grammar's primitives (`Primitive.fn`, compiled from the op registry), so a cell computes exactly what
the tree of the same choices computes; nothing here defines an op.

Mixture weights: `dirichlet` (DrNAS) draws Dirichlet(ELU(alpha) + 1) by reparametrised gamma samples on every
call; `softmax` (DARTS) is softmax(alpha). Alternatives dropped by shrinking get weight exactly 0, so a slot
with one alternative left has weight exactly 1 on it. During search each alternative's output is clamped to
+-clamp (GrafS keeps unbounded ops within about +-10); the discretised cell is trained without it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from gpact.config import MIXTURES
from gpact.errors import ConfigError
from gpact.expr.grammar import Grammar
from gpact.expr.templates import PX, Choice, Choices, PArg, Pattern, PConst, PPrim, PSlot, Template


class CellMixture(torch.nn.Module):
    """R supernet cells of `template`; `forward(z)` takes z with the restart on axis 0."""

    def __init__(self, template: Template, grammar: Grammar, restarts: int, mixture: str = "dirichlet",
                 clamp: float = 10.0, seed: int = 0, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if mixture not in MIXTURES:
            raise ConfigError(f"mixture must be one of {', '.join(MIXTURES)}, got '{mixture}'")
        self.template, self.grammar, self.restarts = template, grammar, restarts
        self.mixture, self.clamp = mixture, clamp
        gen = torch.Generator().manual_seed(seed)
        self.slots = list(template.slots)
        self.alpha = torch.nn.ParameterDict()
        self.beta = torch.nn.ParameterDict()
        self.alive: dict[str, torch.Tensor] = {}
        for name, slot in template.slots.items():
            k = len(slot.patterns)
            self.alpha[name] = torch.nn.Parameter((torch.randn(restarts, k, generator=gen) * 1e-3).to(device, dtype))
            width = max(1, max(len(c) for c in slot.const_names))
            self.beta[name] = torch.nn.Parameter(torch.full((restarts, k, width), template.constant,
                                                            device=device, dtype=dtype))
            self.alive[name] = torch.ones(restarts, k, dtype=torch.bool, device=device)
        self._unbounded = self._find_unbounded() if clamp else {}

    # -- mixture weights --------------------------------------------------------------------------------------

    def weights(self, sample: bool = True) -> dict[str, torch.Tensor]:
        """[R, K] weights per slot, exactly 0 on dropped alternatives. `sample=False`: the Dirichlet's mean."""
        out = {}
        for name in self.slots:
            alpha, alive = self.alpha[name], self.alive[name]
            if self.mixture == "softmax":
                out[name] = torch.softmax(alpha.masked_fill(~alive, float("-inf")), dim=1)
                continue
            conc = F.elu(alpha) + 1
            g = torch.distributions.Gamma(conc, torch.ones_like(conc)).rsample() if sample else conc
            g = torch.where(alive, g.clamp_min(1e-30), torch.zeros_like(g))
            out[name] = g / g.sum(dim=1, keepdim=True)
        return out

    # -- the cell ----------------------------------------------------------------------------------------------

    def forward(self, z: torch.Tensor, weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        w = self.weights() if weights is None else weights
        out = self._eval(self.template.shape, (), {}, z, w)
        return out.expand_as(z) if out.shape != z.shape else out

    def _eval(self, p: Pattern, args: tuple, consts: dict, z: torch.Tensor, w: Mapping[str, torch.Tensor]):
        if isinstance(p, PX):
            return z
        if isinstance(p, PArg):
            return args[p.index]
        if isinstance(p, PConst):
            return consts[p.name] if p.value is None else torch.tensor(p.value, dtype=z.dtype, device=z.device)
        vals = tuple(self._eval(a, args, consts, z, w) for a in p.args)
        if isinstance(p, PPrim):
            return self.grammar.primitives[p.name].fn(*vals)
        assert isinstance(p, PSlot)
        return self._mix(p.name, vals, z, w[p.name])

    def _mix(self, name: str, vals: tuple, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Sum over the alternatives alive in any restart of weight x output (each restart its own weights):
        outputs stacked, one multiply and one sum, so the cost is a few kernels over the alternatives' own."""
        slot, shape = self.template.slots[name], (self.restarts,) + (1,) * (z.dim() - 1)
        live = self.alive[name].any(dim=0).nonzero().flatten().tolist()
        beta, full = self.beta[name], torch.broadcast_shapes(z.shape, *(v.shape for v in vals))
        outs = []
        for k in live:
            consts = {c: beta[:, k, j].view(shape) for j, c in enumerate(slot.const_names[k])}
            v = self._eval(slot.patterns[k], vals, consts, z, {})
            if self.clamp and self._unbounded[name][k]:
                v = v.clamp(-self.clamp, self.clamp)
            outs.append(v.expand(full))
        weights = w[:, live].T.reshape((len(live),) + shape)
        return (torch.stack(outs) * weights).sum(0)

    def _find_unbounded(self) -> dict[str, list[bool]]:
        """Per slot, the alternatives whose output can leave +-clamp (probed on inputs up to +-1e3 with the
        constants at their start): only those are clamped, as GrafS clamps its unbounded ops."""
        probe = torch.linspace(-1e3, 1e3, 2001, dtype=torch.float64)
        out = {}
        for name, slot in self.template.slots.items():
            args = (probe, probe.roll(7), probe.roll(13))
            flags = []
            for k, p in enumerate(slot.patterns):
                consts = {c: torch.tensor(self.template.constant, dtype=torch.float64) for c in slot.const_names[k]}
                with torch.no_grad():
                    v = self._eval(p, args[: max(1, slot.arity)], consts, probe, {})
                flags.append(bool(not torch.isfinite(v).all() or v.abs().max() > 1.01 * self.clamp))
            out[name] = flags
        return out

    # -- shrinking and discretising ------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Alternatives left per slot (the same in every restart: shrinking drops one per restart at a time)."""
        return {n: int(self.alive[n][0].sum()) for n in self.slots}

    def shrink(self) -> str | None:
        """Drop, from the slot with the most alternatives left (the first such in template order), each
        restart's alive alternative with the smallest alpha. Returns the slot, or None when all have one."""
        counts = self.counts()
        name = max(self.slots, key=lambda n: counts[n])
        if counts[name] <= 1:
            return None
        with torch.no_grad():
            masked = self.alpha[name].masked_fill(~self.alive[name], float("inf"))
            drop = masked.argmin(dim=1)
            self.alive[name] = self.alive[name].clone()
            self.alive[name][torch.arange(self.restarts, device=drop.device), drop] = False
        return name

    def argmax(self) -> list[dict[str, int]]:
        """Per restart, the alive alternative with the largest alpha in each slot."""
        out: list[dict[str, int]] = [{} for _ in range(self.restarts)]
        with torch.no_grad():
            for name in self.slots:
                best = self.alpha[name].masked_fill(~self.alive[name], float("-inf")).argmax(dim=1).tolist()
                for r, k in enumerate(best):
                    out[r][name] = int(k)
        return out

    def choices(self, picks: list[dict[str, int]], low: float = -1e9, high: float = 1e9, decimals: int = 6
                ) -> list[Choices]:
        """Template choices for per-restart picks, free constants at their trained beta (clipped to the
        grammar's constant range and rounded to its decimals, so the tree is one the grammar can write)."""
        out = []
        for r, pick in enumerate(picks):
            ch = {}
            for name, k in pick.items():
                names = self.template.slots[name].const_names[k]
                vals = [round(min(high, max(low, float(self.beta[name][r, k, j].detach()))), decimals)
                        for j in range(len(names))]
                ch[name] = Choice(k, tuple(zip(names, vals, strict=True)))
            out.append(ch)
        return out

    def fix(self, picks: list[dict[str, int]]) -> None:
        """Keep only the picked alternative in every slot (weight exactly 1 on it)."""
        for name in self.slots:
            alive = torch.zeros_like(self.alive[name])
            for r, pick in enumerate(picks):
                alive[r, pick[name]] = True
            self.alive[name] = alive
