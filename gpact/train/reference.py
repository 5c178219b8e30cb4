"""Reference evaluator: one candidate, one task, one seed at a time.

The correctness oracle and the naive baseline for batched evaluators: plain torch, nothing clever.
Whatever the activation does (NaN, overflow, raise), the result is a TrainResult, never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gpact.config import TrainConfig
from gpact.train.mlp import DEFAULT_CONFIG, forward, init_params
from gpact.train.tasks import Task

WORST = 1e6
"""The worst loss and score: diverged or non-finite trainings get it, finite losses are clamped to it."""

Activation = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainResult:
    """Outcome of one training. Losses are MSE in standardised units."""

    id_loss: float  # training MSE at the final parameters; WORST if diverged
    ood_loss: float  # MSE on the OOD split; WORST if diverged
    diverged: bool
    reason: str = ""  # "", "nonfinite", "diverged", "error: <short msg>"
    constants: tuple[tuple[float, ...], ...] = ()  # learned trainable constants, per hidden layer (p(0.8))


def _failed(reason: str) -> TrainResult:
    return TrainResult(WORST, WORST, True, reason)


def _error_reason(exc: Exception) -> str:
    msg = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return f"error: {msg[:120]}"


def _loss_or_reason(loss: torch.Tensor, clip: float) -> tuple[float, str]:
    """The loss as a float, and "" if it is acceptable or why not."""
    v = loss.item()
    if not math.isfinite(v):
        return v, "nonfinite"
    if v > clip:
        return v, "diverged"
    return v, ""


def train_reference(act: Activation, task: Task, seed: int, cfg: TrainConfig = DEFAULT_CONFIG) -> TrainResult:
    """Train the MLP of `cfg` with activation `act` on `task` from init seed `seed`; score OOD.

    Full-batch Adam on MSE for cfg.steps steps. The loss is checked every step (one scalar read),
    so a blow-up stops the run early. Non-finite gradients need no separate check: Adam turns them
    into non-finite parameters, which the next loss, or the final parameter check, catches.
    id_loss is the training MSE after the last update (not the loss before it).
    """
    dt = cfg.torch_dtype
    x, y, x_ood, y_ood = (t.to(dt) for t in (task.x_train, task.y_train, task.x_ood, task.y_ood))
    init = init_params(x.shape[1], cfg, seed)
    params = [(w.to(x.device, dt).requires_grad_(), b.to(x.device, dt).requires_grad_()) for w, b in init]
    flat = [t for layer in params for t in layer]
    consts, act = _layer_constants(act, cfg)
    try:
        with torch.enable_grad():
            groups = [{"params": flat}]
            if consts:
                groups.append({"params": consts, "lr": cfg.lr if cfg.const_lr is None else cfg.const_lr})
            opt = torch.optim.Adam(groups, lr=cfg.lr)
            for _ in range(cfg.steps):
                opt.zero_grad(set_to_none=True)
                loss = torch.mean((forward(params, x, act) - y) ** 2)
                _, reason = _loss_or_reason(loss, cfg.clip_loss)
                if reason:
                    return _failed(reason)
                loss.backward()
                opt.step()
        with torch.no_grad():
            # an activation may map NaN to a finite value (e.g. via torch.where), hiding NaN weights
            if not all(bool(torch.isfinite(t).all()) for t in flat):
                return _failed("nonfinite")
            id_loss, reason = _loss_or_reason(torch.mean((forward(params, x, act) - y) ** 2), cfg.clip_loss)
            if reason:
                return _failed(reason)
            ood_loss = torch.mean((forward(params, x_ood, act) - y_ood) ** 2).item()
    except Exception as exc:  # the activation is user/GP code: any failure is a score, not a crash
        return _failed(_error_reason(exc))
    if not math.isfinite(ood_loss):
        return _failed("nonfinite")
    learned = tuple(tuple(c.detach().double().tolist()) for c in consts)
    return TrainResult(min(id_loss, WORST), min(ood_loss, WORST), False, constants=learned)


def _layer_constants(act: Activation, cfg: TrainConfig) -> tuple[list[torch.Tensor], Activation | list]:
    """A formula with trainable constants (a ParamFn) gets its own copy of them per hidden layer, trained with
    the network; (those tensors, the activation of each layer). Anything else: ([], act)."""
    init = getattr(act, "init", None)
    if not init:
        return [], act
    consts = [torch.tensor(init, dtype=cfg.torch_dtype).requires_grad_() for _ in range(cfg.depth)]

    def layer(c: torch.Tensor) -> Activation:
        return lambda h: act.fn(h, *c.unbind())

    return consts, [layer(c) for c in consts]
