"""Cheap features that predict how well an activation trains (AQuaSurF, Bingham and Miikkulainen 2023).

- `output_features`: the function's outputs on AQuaSurF's 1,000 N(0, 1) inputs (seed 0, clipped to
  [-5, 5]; gpact.expr.fingerprint.equivalence_inputs), the same points on which the paper tells functions
  apart. Clipped to +-OUTPUT_CLIP so that one huge value does not swamp a distance.
- `fisher_features`: the eigenvalue spectrum of the K-FAC Fisher of the untrained gpact MLP (weights from
  gpact.train.mlp.init_params, one batch of a task): per layer A = E[a a^T] of the layer's inputs with a
  column of ones (the bias), G = E[g g^T] of the per-sample loss gradient with respect to its outputs; the
  layer's spectrum is every log(lambda_A) + log(lambda_G), binned over [-100, 100] (about one bin per 100
  weights, at least MIN_BINS) and turned into a CDF; layers concatenated.

Both take a whole batch of candidates at once on CPU or GPU: the formulas are lowered to programs and run
by the grouped interpreter (value and derivative together), the matrix products and eigendecompositions
are batched over candidates. `FeatureCache` keeps them per
fingerprint in a run folder, so a resumed run never computes them twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import sympy as sp
import torch

from gpact.config import TrainConfig
from gpact.expr.fingerprint import equivalence_inputs
from gpact.expr.grammar import Grammar
from gpact.expr.torchfn import to_torch
from gpact.train.interpreters import Interpreter
from gpact.train.mlp import init_params
from gpact.train.program import ProgramError, lower_all

OUTPUT_CLIP = 100.0
MIN_BINS = 16
RELATIVE_FLOOR = 1e-9
_LOG_FLOOR = 1e-30  # eigenvalues below this (zero, or negative by rounding) count as this
_RANGE = 100.0

Batch = Callable[[torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor | None]]


def activation_batch(exprs: Sequence[sp.Expr], grammar: Grammar, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float64) -> Batch:
    """f(z [K, M], deriv) -> (values, d/dz or None): candidate k's activation on row k, batched.

    Lowered programs run in the grouped interpreter (a fixed number of kernels for the whole batch); a formula
    that cannot be lowered runs its torch callable, with autograd for the derivative.
    """
    progs = lower_all(exprs, grammar)
    ok = [i for i, p in enumerate(progs) if not isinstance(p, ProgramError)]
    interp = Interpreter([progs[i] for i in ok], torch.device(device), dtype) if ok else None
    slow = [(i, to_torch(exprs[i], grammar.functions)) for i, p in enumerate(progs) if isinstance(p, ProgramError)]

    def run(z: torch.Tensor, deriv: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        v = torch.empty_like(z)
        d = torch.empty_like(z) if deriv else None
        if interp is not None:
            idx = torch.tensor(ok, device=z.device)
            vv, dd = interp(z[idx].contiguous(), deriv)
            v[idx] = vv
            if deriv:
                d[idx] = dd
        for i, fn in slow:
            zi = z[i].detach().clone().requires_grad_(deriv)
            with torch.enable_grad():
                out = torch.broadcast_to(torch.as_tensor(fn(zi), dtype=z.dtype), zi.shape)
                if deriv:
                    d[i] = torch.autograd.grad(out.sum(), zi, allow_unused=True)[0] if out.requires_grad else 0.0
            v[i] = out.detach()
        return v, d

    return run


def output_features(exprs: Sequence[sp.Expr], grammar: Grammar, points: int = 1000, seed: int = 0) -> np.ndarray:
    """[K, points] float64 outputs on AQuaSurF's inputs; non-finite values become +-OUTPUT_CLIP."""
    if not exprs:
        return np.zeros((0, points))
    x = equivalence_inputs(points, seed)
    with torch.no_grad():
        out, _ = activation_batch(exprs, grammar)(x[None, :].expand(len(exprs), -1).contiguous(), False)
    return np.clip(np.nan_to_num(out.numpy(), nan=OUTPUT_CLIP, posinf=OUTPUT_CLIP, neginf=-OUTPUT_CLIP),
                   -OUTPUT_CLIP, OUTPUT_CLIP)


def kfac_factors(act: Batch, k: int, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, seed: int = 0,
                 device: str = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (A [K, in+1, in+1], G [K, out, out]) of the untrained MLP for K activations, float64.

    Loss: squared error per sample, 0.5 (f(x) - y)^2, so the output gradient of a sample is f(x) - y, pushed
    back through the network by hand (the activation's derivative comes with its value); A and G are
    averages over the batch's samples.
    """
    params = [(w.double().to(device), b.double().to(device)) for w, b in init_params(x.shape[1], cfg, seed)]
    n = x.shape[0]
    h = x.double().to(device).expand(k, n, x.shape[1])
    inputs, derivs = [], []
    with torch.no_grad():
        for i, (w, b) in enumerate(params):
            inputs.append(h)
            h = h @ w + b
            if i < len(params) - 1:
                v, d = act(h.reshape(k, -1).contiguous(), True)
                h, _ = v.reshape(h.shape), derivs.append(d.reshape(h.shape))
        g = h - y.double().to(device)
        grads = [g]
        for i in range(len(params) - 1, 0, -1):
            g = (g @ params[i][0].T) * derivs[i - 1]
            grads.append(g)
        grads.reverse()
        factors = []
        for a, g in zip(inputs, grads, strict=True):
            g = _finite(g)
            a1 = torch.cat([_finite(a), torch.ones_like(a[..., :1])], -1)
            factors.append((a1.transpose(1, 2) @ a1 / n, g.transpose(1, 2) @ g / n))
    return factors


def _finite(t: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(t, nan=0.0, posinf=1e30, neginf=-1e30).clamp(-1e30, 1e30)


def layer_bins(n_weights: int) -> int:
    return max(MIN_BINS, n_weights // 100)


def fisher_features(exprs: Sequence[sp.Expr], grammar: Grammar, x: torch.Tensor, y: torch.Tensor,
                    cfg: TrainConfig, seed: int = 0, device: str = "cpu") -> np.ndarray:
    """[K, sum of bins] float64: per layer, the CDF of the K-FAC log-eigenvalue spectrum (see module doc)."""
    if not exprs:
        return np.zeros((0, 0))
    cdfs = []
    for a, g in kfac_factors(activation_batch(exprs, grammar, device), len(exprs), x, y, cfg, seed, device):
        spectrum = log_spectrum(a, g)
        bins = layer_bins(a.shape[1] * g.shape[1])
        edges = torch.linspace(-_RANGE, _RANGE, bins + 1, dtype=torch.float64, device=spectrum.device)
        idx = torch.bucketize(spectrum.clamp(-_RANGE, _RANGE), edges[1:-1])
        counts = torch.zeros(spectrum.shape[0], bins, dtype=torch.float64, device=spectrum.device)
        counts.scatter_add_(1, idx, torch.ones_like(spectrum))
        cdfs.append(torch.cumsum(counts, 1) / spectrum.shape[1])
    return torch.cat(cdfs, 1).cpu().numpy()


def log_spectrum(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """[K, nA * nG]: every log(lambda_A) + log(lambda_G), the log-eigenvalues of the block A (x) G."""
    la, lg = _log_eigenvalues(a), _log_eigenvalues(g)
    return (la[:, :, None] + lg[:, None, :]).reshape(a.shape[0], -1)


def _log_eigenvalues(m: torch.Tensor) -> torch.Tensor:
    """log of each eigenvalue, floored at RELATIVE_FLOOR times the largest: eigenvalues that are 0 in exact
    arithmetic come out as rounding noise (+-1e-17), which would otherwise land in arbitrary bins."""
    lam = torch.linalg.eigvalsh(m)
    floor = (lam.abs().amax(-1, keepdim=True) * RELATIVE_FLOOR).clamp_min(_LOG_FLOOR)
    return torch.maximum(lam, floor).log()


class FeatureCache:
    """Feature rows by fingerprint, in one .npz per feature kind inside a run folder (written atomically)."""

    def __init__(self, folder: str | Path, kind: str):
        self.path = Path(folder) / f"features-{kind}.npz"
        self.rows: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path, allow_pickle=False) as data:
                self.rows = dict(zip(data["keys"].tolist(), data["values"], strict=True))

    def get(self, keys: Sequence[str], compute: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """Rows for `keys`; `compute(indices)` makes the missing ones (indices into `keys`), which are saved."""
        missing = [i for i, k in enumerate(keys) if k not in self.rows]
        if missing:
            new = compute(missing)
            for i, row in zip(missing, new, strict=True):
                self.rows[keys[i]] = np.asarray(row, dtype=np.float64)
            self.save()
        return np.stack([self.rows[k] for k in keys]) if keys else np.zeros((0, 0))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        keys = list(self.rows)
        np.savez(tmp, keys=np.array(keys, dtype=str), values=np.stack([self.rows[k] for k in keys]))
        tmp.replace(self.path)
