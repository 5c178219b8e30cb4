"""One-shot search (GrafS): train supernets whose cell is a mixture, shrink each slot to one alternative.

R restarts x T tasks networks train as one stack ([R*T, ...] weights, restart-major); restart r's T networks
share its cell (`CellMixture`), as in GrafS one cell is shared by every layer. The steps:

1. warm start: `warm_steps` weight steps with the base activation;
2. `search_steps` alternating first-order bi-level steps: one Adam step (betas (0.5, 0.999)) on alpha and beta
   on the architecture split, then one on the weights on the weight split;
3. progressive shrinking on a logarithmic schedule (dense early, sparse late, done by 60% of the steps):
   drop, from the slot with the most alternatives left, each restart's alternative with the smallest alpha;
4. the result per restart is the per-slot argmax at the best architecture-split score it reached.

The OOD protocol: only the training box is ever used. With `split="nested"` the training points nearest the
box's edge (the outer `band` share, by the largest per-coordinate distance from the box centre relative to its
half-width) are the architecture split and the rest train the weights, so alpha is chosen for extrapolating
from the inner part to the band: the same kind of shift the OOD range asks for, one level inside. `random`
splits the same share at random (an interpolation signal). The real OOD range (`Task.x_ood`) is never read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from gpact.config import GradientConfig, TrainConfig
from gpact.errors import ConfigError
from gpact.expr.grammar import Grammar
from gpact.expr.templates import Template
from gpact.train.mlp import init_params
from gpact.train.supernet import CellMixture
from gpact.train.tasks import Task

TRACE_POINTS = 40  # snapshots of the mixture weights per search (for alphas.png)


def split_indices(x: torch.Tensor, band: float, kind: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight-split, architecture-split) row indices of training inputs `x` [N, d]."""
    n = x.shape[0]
    n_arch = min(n - 1, max(1, round(band * n)))
    if kind == "nested":
        lo, hi = x.min(0).values, x.max(0).values
        mid, half = (lo + hi) / 2, ((hi - lo) / 2).clamp_min(1e-12)
        radius = ((x - mid).abs() / half).max(1).values
        order = torch.argsort(radius, stable=True)
    elif kind == "random":
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        raise ConfigError(f"unknown split '{kind}' (nested or random)")
    return order[: n - n_arch].sort().values, order[n - n_arch:].sort().values


def drop_steps(total_drops: int, search_steps: int) -> list[int]:
    """The search step after which each drop happens: log-spaced from 2% to 60% of the search (most drops
    early, when most of the cost is; the last 40% of the steps train the chosen cell's constants and weights)."""
    if total_drops == 0:
        return []
    lo, hi = max(1.0, 0.02 * search_steps), max(1.0, 0.6 * search_steps)
    if total_drops == 1:
        return [int(hi)]
    return [int(lo * (hi / lo) ** (i / (total_drops - 1))) for i in range(total_drops)]


@dataclass
class OneShotResult:
    picks: list[dict[str, int]]  # per restart: slot -> alternative index
    choices: list  # per restart: gpact.expr.templates Choices (constants at the trained betas)
    best_score: list[float]  # per restart: the best architecture-split score (mean log MSE over tasks)
    trace: list[dict] = field(default_factory=list)  # {"step", "weights": {slot: [[w per alt] per restart]}}
    seconds: float = 0.0


def _stack_data(tasks: Sequence[Task], idx: list[torch.Tensor], d_in: int, restarts: int, device, dtype):
    """[R*T, n, d_in] inputs and [R*T, n, 1] targets of each task's rows `idx[t]` (all the same length)."""
    xs, ys = [], []
    for t, rows in zip(tasks, idx, strict=True):
        x = t.x_train[rows]
        xs.append(torch.cat([x, x.new_zeros(x.shape[0], d_in - x.shape[1])], 1))
        ys.append(t.y_train[rows])
    return (torch.stack(xs).repeat(restarts, 1, 1).to(device, dtype),
            torch.stack(ys).repeat(restarts, 1, 1).to(device, dtype))


def _init(tasks: Sequence[Task], train: TrainConfig, seeds: Sequence[int], d_in: int, device, dtype):
    """Per layer (W [R*T, fi, fo], b [R*T, 1, fo]) leaves, network (r, t) from init_params(seed r*T + t)."""
    per_net = []
    for r in range(len(seeds)):
        for i, t in enumerate(tasks):
            params = init_params(t.x_train.shape[1], train, seeds[r] * 1000 + i)
            w0, b0 = params[0]
            params[0] = (torch.cat([w0, w0.new_zeros(d_in - w0.shape[0], w0.shape[1])]), b0)
            per_net.append(params)
    out = []
    for layer in range(len(per_net[0])):
        w = torch.stack([p[layer][0] for p in per_net]).to(device, dtype).requires_grad_()
        b = torch.stack([p[layer][1] for p in per_net]).unsqueeze(1).to(device, dtype).requires_grad_()
        out.append((w, b))
    return out


def network_forward(params, x: torch.Tensor, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The stacked MLPs on inputs x [P, n, d] (every input a network ever sees passes here)."""
    h = x
    for i, (w, b) in enumerate(params):
        h = torch.baddbmm(b, h, w)
        if i < len(params) - 1:
            h = act(h)
    return h


def search_cells(template: Template, grammar: Grammar, tasks: Sequence[Task], cfg: GradientConfig,
                 train: TrainConfig, seeds: Sequence[int], device: str | torch.device = "cpu") -> OneShotResult:
    """Train len(seeds) supernets (restarts) on `tasks`' training boxes and return each one's discretised cell.

    Deterministic for the same arguments on CPU: every random draw comes from torch's generator seeded with
    seeds[0] inside a forked RNG state (the caller's generators are left as they were).
    """
    if cfg.base not in grammar.primitives or grammar.primitives[cfg.base].arity != 1:
        raise ConfigError(f"gradient base activation '{cfg.base}' is not a unary primitive of grammar "
                          f"'{grammar.name}'")
    t0 = time.perf_counter()
    device = torch.device(device)
    forks = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forks):
        torch.manual_seed(seeds[0])
        result = _search(template, grammar, list(tasks), cfg, train, list(seeds), device)
    result.seconds = time.perf_counter() - t0
    return result


def _search(template, grammar, tasks, cfg, train, seeds, device) -> OneShotResult:
    dtype, R, T = train.torch_dtype, len(seeds), len(tasks)
    d_in = max(t.x_train.shape[1] for t in tasks)
    splits = [split_indices(t.x_train, cfg.band, cfg.split, seeds[0] * 7919 + i) for i, t in enumerate(tasks)]
    n_w, n_a = min(len(s[0]) for s in splits), min(len(s[1]) for s in splits)
    xw, yw = _stack_data(tasks, [s[0][:n_w] for s in splits], d_in, R, device, dtype)
    xa, ya = _stack_data(tasks, [s[1][:n_a] for s in splits], d_in, R, device, dtype)
    params = _init(tasks, train, seeds, d_in, device, dtype)
    cell = CellMixture(template, grammar, R, cfg.mixture, cfg.clamp, seed=seeds[0], device=device, dtype=dtype)
    w_opt = torch.optim.Adam([p for wb in params for p in wb], lr=train.lr)
    a_opt = torch.optim.Adam(cell.parameters(), lr=cfg.alpha_lr, betas=(0.5, 0.999))
    base = grammar.primitives[cfg.base].fn

    def per_net_mse(x, y, act):
        return ((network_forward(params, x, act) - y) ** 2).mean(dim=(1, 2))  # [R*T]

    def cell_act(h):  # [R*T, n, w] -> the restart's cell on its T networks
        return cell(h.reshape(R, -1, h.shape[-1])).reshape(h.shape)

    for _ in range(cfg.warm_steps):
        w_opt.zero_grad()
        per_net_mse(xw, yw, base).sum().backward()
        w_opt.step()
    drops = drop_steps(sum(len(s.patterns) - 1 for s in template.slots.values()), cfg.search_steps)
    every = max(1, cfg.search_steps // TRACE_POINTS)
    best = [math.inf] * R
    picks = cell.argmax()
    trace = []
    d = 0
    for step in range(cfg.search_steps):
        a_opt.zero_grad()  # architecture step on the architecture split
        mse = per_net_mse(xa, ya, cell_act)
        score = torch.log(mse.clamp_min(1e-12)).reshape(R, T).mean(1)
        torch.nan_to_num(score, nan=1e6, posinf=1e6).sum().backward()
        current = cell.argmax()
        for r, s in enumerate(score.detach().tolist()):
            if math.isfinite(s) and s < best[r]:
                best[r], picks[r] = s, current[r]
        a_opt.step()
        w_opt.zero_grad()  # weight step on the weight split
        torch.nan_to_num(per_net_mse(xw, yw, cell_act), nan=1e6, posinf=1e6).sum().backward()
        w_opt.step()
        while d < len(drops) and drops[d] <= step:
            cell.shrink()
            d += 1
        if step % every == 0 or step == cfg.search_steps - 1:
            with torch.no_grad():
                w = cell.weights(sample=False)
            trace.append({"step": step, "weights": {n: [[round(v, 4) for v in row] for row in w[n].tolist()]
                                                    for n in cell.slots}})
    while cell.shrink() is not None:  # a search too short for the schedule still ends with one per slot
        pass
    eph = grammar.ephemeral
    low, high, dec = (eph.low, eph.high, eph.decimals) if eph is not None else (-1e9, 1e9, 6)
    return OneShotResult(picks, cell.choices(picks, low, high, dec), best, trace)
